// The streamer's pages: sign-up (signup.html) and their own page (streamer.html) with the OBS
// settings, whether they are live or waiting, and their place in the queue (when a queue
// script serves /queue-json). The page refreshes itself every 2 s.

const page = document.body.dataset.page;
let csrf = null;

async function call(method, path, body) {
  const headers = { 'content-type': 'application/json' };
  if (csrf && method !== 'GET') headers['x-csrf-token'] = csrf;
  const r = await fetch(path, { method, headers, body: body ? JSON.stringify(body) : undefined });
  const text = await r.text();
  let json = null;
  try { json = text ? JSON.parse(text) : null; } catch { json = null; }
  if (!r.ok) {
    const e = new Error((json && json.error) || `HTTP ${r.status}`);
    e.status = r.status;
    throw e;
  }
  return json;
}

function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === 'testid') e.dataset.testid = v; else e.setAttribute(k, v);
  }
  for (const c of children) e.append(c);
  return e;
}

/** OBS's Stream settings, laid out as OBS asks for them; `key` only when it is known. */
function obsSettings(a, key) {
  const box = document.getElementById('obs-settings');
  const copy = (text, testid) => {
    const b = el('button', { type: 'button', class: 'ghost', testid }, 'Copy');
    b.addEventListener('click', () => navigator.clipboard && navigator.clipboard.writeText(text));
    return b;
  };
  const rows = [
    ['Service', el('code', {}, a.obs.service)],
    ['Server', el('code', { testid: 'obs-server' }, a.obs.server), copy(a.obs.server, 'copy-server')],
    key
      ? ['Stream Key', el('code', { testid: 'stream-key' }, key), copy(key, 'copy-key')]
      : ['Stream Key', el('code', { testid: 'key-hint' }, a.key_hint), ' (hidden: make a new one if lost)'],
  ];
  box.replaceChildren(el('dl', { class: 'obs' }, ...rows.flatMap(([k, ...v]) => [el('dt', {}, k), el('dd', {}, ...v)])));
}

function showError(id, e) {
  const p = document.getElementById(id);
  p.textContent = e.message;
  p.hidden = false;
}

async function queuePlace(name) {
  const p = document.getElementById('queue-place');
  let q;
  try { q = await call('GET', '/queue-json'); } catch { p.hidden = true; return; }
  if (!Array.isArray(q)) { p.hidden = true; return; }
  // streamers who left and may come back (after a restart) keep a place but are not counted
  const active = q.filter((e) => e.state !== 'away');
  const i = active.findIndex((e) => e.name === name);
  p.textContent = i < 0 ? `Not in the queue (${active.length} in it)`
    : active[i].state === 'on-air' ? 'You are first in the queue: on air'
      : `Place ${i + 1} of ${active.length} in the queue`;
  p.hidden = false;
}

async function refresh() {
  let me;
  try { me = await call('GET', '/api/streamer/me'); } catch (e) {
    if (e.status === 401) { showLogin(); return; }
    throw e;
  }
  csrf = me.csrf;
  document.getElementById('login').hidden = true;
  document.getElementById('me').hidden = false;
  document.getElementById('who').hidden = false;
  document.getElementById('streamer-name').textContent = me.name;
  document.getElementById('state').textContent = !me.enabled ? 'Your account is disabled.'
    : me.on_air ? `On air on channel ${me.channel}.`
    : me.publishing ? `Connected to channel ${me.channel}, waiting to go on air.`
    : `Not publishing. Start streaming in OBS to go to channel ${me.channel}.`;
  // a key just made stays shown until the page is left: it cannot be seen again
  if (!document.querySelector('[data-testid=stream-key]')) obsSettings(me, null);
  await queuePlace(me.name);
}

function showLogin() {
  csrf = null;
  document.getElementById('login').hidden = false;
  document.getElementById('me').hidden = true;
  document.getElementById('who').hidden = true;
}

if (page === 'signup') {
  document.getElementById('signup-form').addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const f = new FormData(ev.target);
    document.getElementById('signup-error').hidden = true;
    try {
      const a = await call('POST', '/api/streamer/signup', { name: f.get('name'), password: f.get('password') });
      ev.target.hidden = true;
      document.getElementById('created').hidden = false;
      obsSettings(a, a.key);
    } catch (e) { showError('signup-error', e); }
  });
} else {
  document.getElementById('login-form').addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const f = new FormData(ev.target);
    document.getElementById('login-error').hidden = true;
    try {
      await call('POST', '/api/streamer/login', { name: f.get('name'), password: f.get('password') });
      await refresh();
    } catch (e) { showError('login-error', e); }
  });
  document.getElementById('logout').addEventListener('click', async () => {
    await call('POST', '/api/streamer/logout').catch(() => {});
    showLogin();
  });
  document.getElementById('regenerate').addEventListener('click', async () => {
    if (!confirm('Make a new stream key? The old one stops working and a running stream ends.')) return;
    const a = await call('POST', '/api/streamer/key');
    obsSettings(a, a.key);
    document.getElementById('new-key-note').hidden = false;
  });
  refresh();
  setInterval(() => { if (!document.getElementById('me').hidden) refresh().catch(() => {}); }, 2000);
}
