// Small helpers shared by the pages: escaping, formatting, flash messages.

const ESC = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' };

/** Escapes any value for HTML text and attribute values. */
export function esc(v) {
  return String(v ?? '').replace(/[&<>"']/g, (c) => ESC[c]);
}

/** Tagged template: every interpolated value is escaped unless wrapped with raw(). */
export function html(strings, ...values) {
  return strings.reduce((out, s, i) => {
    if (i === 0) return s;
    const v = values[i - 1];
    const text = v && v.__raw !== undefined ? v.__raw
      : Array.isArray(v) ? v.map((x) => (x && x.__raw !== undefined ? x.__raw : esc(x))).join('')
        : esc(v);
    return out + text + s;
  }, '');
}

export const raw = (s) => ({ __raw: String(s) });

/** 3725 → "1:02:05", 65 → "1:05", null → "–". */
export function duration(s) {
  if (s === null || s === undefined || Number.isNaN(s)) return '–';
  s = Math.max(0, Math.floor(s));
  const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), sec = s % 60;
  const mm = h ? String(m).padStart(2, '0') : String(m);
  return `${h ? h + ':' : ''}${mm}:${String(sec).padStart(2, '0')}`;
}

export function bytes(n) {
  if (n === null || n === undefined) return '–';
  const u = ['B', 'KiB', 'MiB', 'GiB'];
  let i = 0;
  while (n >= 1024 && i < u.length - 1) { n /= 1024; i++; }
  return `${i ? n.toFixed(1) : n} ${u[i]}`;
}

export function clockTime(unixSeconds) {
  if (!unixSeconds) return '–';
  return new Date(unixSeconds * 1000).toLocaleString();
}

/** Calls fn at most once per `ms`, with the latest arguments. */
export function debounce(fn, ms) {
  let t = null;
  return (...args) => {
    clearTimeout(t);
    t = setTimeout(() => fn(...args), ms);
  };
}

/** Shows `text` in el (class "msg error" or "msg ok"); empty text hides it. */
export function say(el, text, kind = 'error') {
  if (!el) return;
  el.textContent = text || '';
  el.className = `msg ${kind}`;
  el.hidden = !text;
}

/** Copies text to the clipboard; the button says "Copied" for a moment. */
export async function copy(text, button) {
  try {
    await navigator.clipboard.writeText(text);
  } catch {
    const t = document.createElement('textarea');
    t.value = text;
    document.body.appendChild(t);
    t.select();
    document.execCommand('copy');
    t.remove();
  }
  if (button) {
    const label = button.textContent;
    button.textContent = 'Copied';
    setTimeout(() => { button.textContent = label; }, 1200);
  }
}
