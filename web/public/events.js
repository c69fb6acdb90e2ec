// The live event log: every event since the page loaded (the last 500), newest first,
// filtered by channel and by kind.

import * as sse from './sse.js';
import { html, raw } from './util.js';

const KEEP = 500;
const log = []; // newest first: {at, name, data}
let redraw = null;

export function startRecording() {
  sse.subscribe((name, data) => {
    if (name === 'reconnected') return;
    log.unshift({ at: new Date(), name, data });
    if (log.length > KEEP) log.length = KEEP;
    if (redraw) redraw();
  });
}

function summary(name, d) {
  const skip = new Set(['channel', 'event']);
  return Object.entries(d).filter(([k]) => !skip.has(k))
    .map(([k, v]) => `${k}=${typeof v === 'object' && v !== null ? JSON.stringify(v) : v}`).join('  ');
}

export function mount(el) {
  el.innerHTML = html`
    <div class="page-head"><h1>Events</h1>
      <div class="filters">
        <label class="inline">Channel <select data-testid="events-channel"><option value="">all</option></select></label>
        <label class="inline">Kind <select data-testid="events-kind"><option value="">all</option>
          ${sse.EVENT_NAMES.map((n) => raw(html`<option>${n}</option>`))}</select></label>
        <label class="inline check"><input type="checkbox" data-testid="events-stats"> ingest-stats</label>
      </div></div>
    <div class="card"><ol class="event-log" data-testid="event-log"></ol></div>`;
  const q = (t) => el.querySelector(`[data-testid="${t}"]`);
  const chan = q('events-channel'), kind = q('events-kind'), stats = q('events-stats');
  let pending = false;

  function draw() {
    pending = false;
    const channels = [...new Set(log.map((e) => e.data.channel).filter(Boolean))].sort();
    const keep = chan.value;
    chan.innerHTML = html`<option value="">all</option>${channels.map((c) => raw(html`<option>${c}</option>`))}`;
    chan.value = channels.includes(keep) ? keep : '';
    const shown = log.filter((e) => (!chan.value || e.data.channel === chan.value)
      && (kind.value ? e.name === kind.value : (stats.checked || e.name !== 'ingest-stats')));
    q('event-log').innerHTML = shown.length ? shown.map((e) => html`
      <li data-testid="event" data-kind="${e.name}">
        <time>${e.at.toLocaleTimeString()}</time>
        <span class="kind k-${e.name}">${e.name}</span>
        <span class="mono">${e.data.channel || ''}</span>
        <span class="detail mono">${summary(e.name, e.data)}</span></li>`).join('')
      : '<li class="muted">No events yet.</li>';
  }
  redraw = () => { if (!pending) { pending = true; requestAnimationFrame(draw); } };
  for (const s of [chan, kind, stats]) s.addEventListener('change', draw);
  draw();
  return () => { redraw = null; };
}
