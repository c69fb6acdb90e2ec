// Dashboard: one card per channel with its on-air badge, preview, publisher, destinations,
// controls and OBS settings. Data comes from GET /api/channels, refetched when an event says
// something changed; a 1 s timer only advances the "since" clocks.

import { get, post } from './api.js';
import * as sse from './sse.js';
import { html, raw, duration, debounce, say, copy } from './util.js';

const chPath = (id) => `/api/channels/${encodeURIComponent(id)}`;

// A browser opens at most 6 HTTP/1.1 connections to onair and a preview holds one for good: the
// previews of all the tabs of a browser share SLOTS of them (Web Locks "onair-preview-N"), so the
// event stream (one per browser, see sse.js) and the page's requests always find a connection.
// A hidden tab plays no preview.
const SLOTS = 3;

/** Waits for a free preview slot; resolves with the function that frees it. */
function takeSlot(signal) {
  if (!(navigator.locks && navigator.locks.request)) return Promise.resolve(() => {});
  return new Promise((resolve, reject) => {
    let won = false;
    const others = new AbortController();
    signal.addEventListener('abort', () => { others.abort(); if (!won) reject(new Error('aborted')); });
    for (let i = 0; i < SLOTS; i++) {
      navigator.locks.request(`onair-preview-${i}`, { signal: others.signal }, () => {
        if (won || signal.aborted) return undefined; // another slot came first: free this one
        won = true;
        others.abort(); // withdraw the requests still waiting
        return new Promise((free) => resolve(free));
      }).catch(() => { /* withdrawn */ });
    }
  });
}

export function mount(el) {
  el.innerHTML = `
    <div class="page-head"><h1>Channels</h1></div>
    <p class="msg error" data-testid="dashboard-error" hidden></p>
    <div class="cards" data-testid="channels"></div>`;
  const grid = el.querySelector('.cards');
  const errorEl = el.querySelector('[data-testid=dashboard-error]');
  const cards = new Map(); // id → {el, view, at, player, retry, keys}
  let mediaNames = [];
  let alive = true;

  async function load() {
    try {
      const views = await get('/api/channels');
      if (!alive) return;
      say(errorEl, '');
      sync(views);
    } catch (e) {
      if (alive) say(errorEl, `Could not load channels: ${e.message}`);
    }
  }
  const refetch = debounce(load, 150);

  async function loadMedia() {
    try {
      const items = await get('/api/media');
      mediaNames = (items || []).map((m) => m.name);
    } catch { mediaNames = []; }
    if (alive) for (const c of cards.values()) fillMediaSelect(c);
  }

  function sync(views) {
    const seen = new Set();
    views.forEach((v, i) => {
      seen.add(v.id);
      let c = cards.get(v.id);
      if (!c) {
        c = { el: makeCard(v), view: null, player: null, retry: null, delay: 1000 };
        cards.set(v.id, c);
        fillMediaSelect(c);
      }
      if (grid.children[i] !== c.el) grid.insertBefore(c.el, grid.children[i] || null); // the API's order
      const wasStarted = c.view && c.view.state === 'started';
      c.view = v;
      c.at = performance.now();
      if (wasStarted === false && v.state === 'started') destroyPlayer(c); // restart on start
      update(c);
      ensurePlayer(c);
    });
    for (const [id, c] of cards) {
      if (!seen.has(id)) {
        destroyPlayer(c);
        c.el.remove();
        cards.delete(id);
      }
    }
    if (!views.length) grid.innerHTML = '<p class="empty">No channels.</p>';
    else grid.querySelector('.empty')?.remove();
  }

  function makeCard(v) {
    const id = v.id;
    const card = document.createElement('article');
    card.className = 'card channel';
    card.dataset.channel = id;
    card.dataset.testid = `channel-${id}`;
    card.innerHTML = html`
      <header class="channel-head">
        <div class="title"><h2 data-testid="name-${id}"></h2><span class="muted mono">${id}</span></div>
        <div class="onair">
          <span class="badge" data-testid="badge-${id}"></span>
          <span class="since muted" data-testid="since-${id}"></span>
        </div>
      </header>
      <p class="reason muted" data-testid="reason-${id}"></p>
      <div class="preview">
        <video data-testid="preview-${id}" muted autoplay playsinline></video>
        <div class="preview-note" data-testid="preview-note-${id}"></div>
      </div>
      <div class="controls">
        <button type="button" data-act="live" data-testid="go-live-${id}">Go live</button>
        <button type="button" data-act="fallback" class="amber" data-testid="fall-back-${id}">Fall back</button>
        <select data-act="fallback-to" data-testid="fall-back-to-${id}" aria-label="Fall back to media"></select>
        <button type="button" data-act="startstop" class="ghost" data-testid="startstop-${id}">Stop</button>
      </div>
      <p class="msg error" data-testid="channel-error-${id}" hidden></p>
      <div class="status" data-testid="status-${id}"></div>
      <details class="obs" data-testid="obs-${id}">
        <summary>OBS settings</summary>
        <div class="obs-body">
          <div class="row"><span class="label">Server</span>
            <code data-testid="obs-server-${id}">…</code>
            <button type="button" class="small ghost" data-act="copy-server" data-testid="copy-server-${id}">Copy</button></div>
          <div class="row"><span class="label">Stream Key</span>
            <span class="keys" data-testid="obs-key-${id}"><code>••••••••••••</code></span>
            <button type="button" class="small ghost" data-act="show-key" data-testid="show-key-${id}">Show</button>
            <button type="button" class="small ghost" data-act="copy-key" data-testid="copy-key-${id}">Copy</button></div>
          <p class="muted small-text">OBS → Settings → Stream → Service: Custom…</p>
          <button type="button" class="small danger" data-act="regenerate" data-testid="regenerate-key-${id}" hidden>Regenerate key</button>
          <p class="msg error" data-testid="obs-error-${id}" hidden></p>
        </div>
      </details>`;
    card.addEventListener('click', (ev) => {
      const b = ev.target.closest('button[data-act]');
      if (b) act(id, b.dataset.act, b);
    });
    card.querySelector('select[data-act]').addEventListener('change', (ev) => {
      const media = ev.target.value;
      ev.target.value = '';
      if (media) control(id, () => post(`${chPath(id)}/switch`, { source: 'fallback', media }));
    });
    card.querySelector('details').addEventListener('toggle', (ev) => {
      if (ev.target.open) loadObs(id, false);
    });
    return card;
  }

  function fillMediaSelect(c) {
    const sel = c.el.querySelector('select[data-act]');
    sel.innerHTML = html`<option value="" selected>Fall back to…</option>${
      mediaNames.map((n) => raw(html`<option value="${n}">${n}</option>`))}`;
    sel.disabled = !mediaNames.length || !c.view || c.view.state !== 'started';
  }

  function update(c) {
    const v = c.view, id = v.id, q = (t) => c.el.querySelector(`[data-testid="${t}-${id}"]`);
    q('name').textContent = v.name || v.id;
    const badge = q('badge');
    const kind = v.state !== 'started' ? 'stopped' : (v.on_air || 'stopped');
    badge.textContent = { live: 'LIVE', fallback: 'FALLBACK', stopped: 'STOPPED' }[kind];
    badge.className = `badge ${kind}`;
    badge.dataset.state = kind;
    q('reason').textContent = v.state === 'started' ? (v.on_air_reason || '') : 'Channel stopped';
    tick(c);
    const started = v.state === 'started';
    q('startstop').textContent = started ? 'Stop' : 'Start';
    for (const t of ['go-live', 'fall-back']) q(t).disabled = !started;
    q('fall-back-to').disabled = !started || !mediaNames.length;
    q('status').innerHTML = statusHtml(v);
  }

  function tick(c) {
    const v = c.view;
    const el = c.el.querySelector(`[data-testid="since-${v.id}"]`);
    if (v.state !== 'started' || v.on_air_for_s == null) { el.textContent = ''; return; }
    el.textContent = `for ${duration(v.on_air_for_s + (performance.now() - c.at) / 1000)}`;
  }

  // `encode WxH@FPS`, or copy mode's connection and, when a publisher did not fit, why
  function outputText(o) {
    if (!o) return '';
    if (o.mode !== 'copy') return `encode ${o.width}x${o.height}@${o.fps}`;
    const c = o.copy;
    if (!c) return `copy ${o.width}x${o.height}@${o.fps}`;
    return `copy ${c.connection}, sending ${c.sending}${c.refused ? ` (publisher refused: ${c.refused})` : ''}`;
  }

  function statusHtml(v) {
    const s = (v.sessions || []).find((x) => x.on_air) || (v.sessions || [])[0];
    const pub = s
      ? html`<span class="mono">${s.addr}</span> · ${s.kbps} kbit/s · publishing ${duration(s.publishing_s)}
          ${raw(s.stalled ? '<span class="tag amber">stalled</span>' : '<span class="tag ok">receiving</span>')}
          ${raw((v.sessions.length > 1) ? html` · ${v.sessions.length} sessions` : '')}`
      : '<span class="muted">nobody publishing</span>';
    const dests = (v.destinations || []).map((d) => raw(html`
      <tr data-testid="dest-${v.id}-${d.name}">
        <td data-label="Destination">${d.name}<div class="muted mono small-text wrap">${d.url}</div></td>
        <td data-label="State"><span class="state ${d.state}" data-testid="dest-state-${v.id}-${d.name}">${d.state}</span></td>
        <td data-label="Up for">${d.uptime_s != null ? duration(d.uptime_s) : '–'}</td>
        <td data-label="Attempts">${d.attempts ?? 0}</td>
        <td class="err" data-label="Last error">${d.last_error || ''}</td>
      </tr>`));
    return html`
      <div class="publisher" data-testid="publisher-${v.id}"><span class="label">Publisher</span> ${raw(pub)}</div>
      <div class="fallback-now" data-testid="fallback-${v.id}"><span class="label">Fallback</span> <span class="mono" title="${v.fallback || 'slate'}">${fallbackName(v.fallback)}</span></div>
      <div class="output-mode" data-testid="output-${v.id}"><span class="label">Output</span> ${outputText(v.output)}</div>
      ${raw(dests.length ? html`<div class="table-wrap"><table class="dests stack">
        <thead><tr><th>Destination</th><th>State</th><th>Up for</th><th>Attempts</th><th>Last error</th></tr></thead>
        <tbody>${dests}</tbody></table></div>` : '<p class="muted">No destinations.</p>')}`;
  }

  /** "image /srv/onair/media/brb.png" → "image brb.png" (the whole path in the title). */
  function fallbackName(f) {
    const m = /^(image|video) (.+)$/.exec(f || '');
    return m ? `${m[1]} ${m[2].split('/').pop()}` : (f || 'slate');
  }

  async function control(id, fn) {
    const errEl = cards.get(id)?.el.querySelector(`[data-testid="channel-error-${id}"]`);
    say(errEl, '');
    try { await fn(); } catch (e) { say(errEl, e.message); }
  }

  function act(id, what, button) {
    const c = cards.get(id);
    if (what === 'live' || what === 'fallback') {
      control(id, () => post(`${chPath(id)}/switch`, { source: what }));
    } else if (what === 'startstop') {
      const verb = c.view.state === 'started' ? 'stop' : 'start';
      control(id, () => post(`${chPath(id)}/${verb}`));
    } else if (what === 'show-key') {
      if (c.keys) { c.keys = null; renderKeys(c); } else loadObs(id, true);
    } else if (what === 'copy-server') {
      copy(c.el.querySelector(`[data-testid="obs-server-${id}"]`).textContent, button);
    } else if (what === 'copy-key') {
      fetchObs(id).then((o) => o && copy((o.stream_keys || [])[0] || '', button));
    } else if (what === 'regenerate') {
      if (!window.confirm(`Regenerate the stream key of ${id}? OBS stops publishing until you paste the new key.`)) return;
      control(id, async () => {
        const r = await post(`${chPath(id)}/keys/regenerate`);
        c.keys = r.stream_keys || [];
        renderKeys(c);
      });
    }
  }

  async function fetchObs(id) {
    const c = cards.get(id);
    const errEl = c.el.querySelector(`[data-testid="obs-error-${id}"]`);
    try {
      const o = await get(`${chPath(id)}/obs`);
      say(errEl, '');
      c.el.querySelector(`[data-testid="obs-server-${id}"]`).textContent = o.server;
      c.el.querySelector(`[data-testid="regenerate-key-${id}"]`).hidden = !o.can_regenerate;
      return o;
    } catch (e) {
      say(errEl, e.message);
      return null;
    }
  }

  async function loadObs(id, reveal) {
    const o = await fetchObs(id);
    const c = cards.get(id);
    if (o && c && reveal) { c.keys = o.stream_keys || []; renderKeys(c); }
  }

  function renderKeys(c) {
    const id = c.view.id;
    const box = c.el.querySelector(`[data-testid="obs-key-${id}"]`);
    box.innerHTML = c.keys
      ? c.keys.map((k) => html`<code class="key">${k}</code>`).join(' ')
      : '<code>••••••••••••</code>';
    c.el.querySelector(`[data-testid="show-key-${id}"]`).textContent = c.keys ? 'Hide' : 'Show';
  }

  function ensurePlayer(c) {
    const id = c.view.id;
    const note = c.el.querySelector(`[data-testid="preview-note-${id}"]`);
    if (c.view.state !== 'started') {
      destroyPlayer(c);
      note.textContent = 'Channel stopped';
      return;
    }
    if (document.hidden) { destroyPlayer(c); return; }
    if (c.player || c.retry || c.waiting) return;
    const mp = window.mpegts;
    if (!mp || !mp.getFeatureList().mseLivePlayback) {
      note.textContent = 'This browser cannot play the preview (no Media Source Extensions)';
      return;
    }
    const waiting = new AbortController();
    c.waiting = waiting;
    const slow = setTimeout(() => {
      note.textContent = `Preview paused: ${SLOTS} previews already play in this browser (close or hide one of them)`;
    }, 500);
    takeSlot(waiting.signal).then((free) => {
      clearTimeout(slow);
      if (c.waiting === waiting) c.waiting = null;
      if (waiting.signal.aborted || !alive || document.hidden || c.view.state !== 'started' || c.player) {
        free();
        return;
      }
      c.freeSlot = free;
      startPlayer(c, mp, note);
    }, () => clearTimeout(slow));
  }

  function startPlayer(c, mp, note) {
    const id = c.view.id;
    note.textContent = '';
    const video = c.el.querySelector('video');
    const player = mp.createPlayer(
      { type: 'flv', isLive: true, url: `${chPath(id)}/preview.flv`, hasAudio: true },
      { enableStashBuffer: false, liveBufferLatencyChasing: true },
    );
    c.player = player;
    player.on(mp.Events.ERROR, (type, detail) => {
      destroyPlayer(c);
      note.textContent = `Preview interrupted (${detail || type}); reconnecting…`;
      c.retry = setTimeout(() => { c.retry = null; if (alive) ensurePlayer(c); }, c.delay);
      c.delay = Math.min(c.delay * 2, 30000);
    });
    video.addEventListener('playing', () => { c.delay = 1000; note.textContent = ''; }, { once: true });
    player.attachMediaElement(video);
    player.load();
    Promise.resolve(player.play()).catch(() => {});
  }

  function destroyPlayer(c) {
    clearTimeout(c.retry);
    c.retry = null;
    if (c.waiting) { c.waiting.abort(); c.waiting = null; }
    if (c.player) {
      const p = c.player;
      c.player = null;
      try { p.pause(); p.unload(); p.detachMediaElement(); p.destroy(); } catch { /* already gone */ }
    }
    if (c.freeSlot) { c.freeSlot(); c.freeSlot = null; }
  }

  const onVisibility = () => { for (const c of cards.values()) if (c.view) ensurePlayer(c); };
  document.addEventListener('visibilitychange', onVisibility);

  const unsubscribe = sse.subscribe((name, data) => {
    const c = data && cards.get(data.channel);
    if (name === 'ingest-stats') {
      const s = c && (c.view.sessions || []).find((x) => x.session === data.session);
      if (s) {
        Object.assign(s, { kbps: data.kbps, stalled: data.stalled, on_air: data.on_air });
        c.el.querySelector(`[data-testid="status-${c.view.id}"]`).innerHTML = statusHtml(c.view);
        return;
      }
    } else if (name === 'switched' && c) {
      Object.assign(c.view, { on_air: data.to, on_air_reason: data.reason, on_air_for_s: 0 });
      c.at = performance.now();
      update(c);
    } else if (name === 'reconnected') {
      loadMedia();
    } else if (name === 'changed') {
      if (data.what === 'media') { loadMedia(); return; }
      if (data.what === 'scripts' || data.what === 'plugins') return;
    }
    refetch();
  });
  const clock = setInterval(() => { for (const c of cards.values()) tick(c); }, 1000);

  load();
  loadMedia();
  return () => {
    alive = false;
    unsubscribe();
    clearInterval(clock);
    document.removeEventListener('visibilitychange', onVisibility);
    for (const c of cards.values()) destroyPlayer(c);
  };
}
