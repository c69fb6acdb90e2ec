// Scripts and plugins: what runs, which generation, since when, and the last error.

import { get } from './api.js';
import * as sse from './sse.js';
import { html, raw, clockTime, debounce, say } from './util.js';

export function mount(el) {
  el.innerHTML = `
    <div class="page-head"><h1>Scripts and plugins</h1></div>
    <p class="msg error" data-testid="scripts-page-error" hidden></p>
    <section class="card"><h2>Lua scripts</h2><div class="table-wrap"><table class="stack" data-testid="scripts-table">
      <thead><tr><th>Script</th><th>State</th><th>Generation</th><th>Loaded</th><th>Routes</th><th>Last error</th></tr></thead>
      <tbody></tbody></table></div></section>
    <section class="card"><h2>WASM plugins</h2><div class="table-wrap"><table class="stack" data-testid="plugins-table">
      <thead><tr><th>Plugin</th><th>State</th><th>World</th><th>Generation</th><th>Loaded</th><th>Last error</th></tr></thead>
      <tbody></tbody></table></div></section>`;
  const q = (t) => el.querySelector(`[data-testid="${t}"]`);
  let alive = true;

  const state = (x) => (x.quarantined ? html`<span class="tag amber">quarantined</span>`
    : x.loaded ? html`<span class="tag ok">loaded</span>` : html`<span class="tag red">not loaded</span>`);

  // fills a table's body from a list the API answers, one row each
  async function fill(path, table, row, empty) {
    try {
      const list = await get(path);
      if (!alive) return;
      q(table).tBodies[0].innerHTML = list.length ? list.map(row).join('')
        : `<tr><td colspan="6" class="muted">${empty}</td></tr>`;
    } catch (e) { if (alive) say(q('scripts-page-error'), e.message); }
  }

  const loadScripts = () => fill('/api/scripts', 'scripts-table', (s) => html`
        <tr data-testid="script-${s.name}">
          <td class="mono" data-label="Script">${s.name}</td><td data-label="State">${raw(state(s))}${raw(s.time_limit_trips ? html` <span class="muted small-text">${s.time_limit_trips} time-limit trips</span>` : '')}</td>
          <td data-label="Generation">${s.generation}</td><td data-label="Loaded">${clockTime(s.loaded_at)}</td>
          <td class="mono small-text" data-label="Routes">${(s.routes || []).join(', ') || '–'}</td>
          <td class="err mono wrap" data-label="Last error" data-testid="script-error-${s.name}">${s.last_error || ''}</td>
        </tr>`, 'No scripts.');

  const loadPlugins = () => fill('/api/plugins', 'plugins-table', (p) => html`
        <tr data-testid="plugin-${p.name}">
          <td class="mono" data-label="Plugin">${p.name}</td><td data-label="State">${raw(state(p))}</td>
          <td class="mono small-text" data-label="World">${p.world || '–'}${p.version ? ` @${p.version}` : ''}</td>
          <td data-label="Generation">${p.generation}</td><td data-label="Loaded">${clockTime(p.loaded_at)}</td>
          <td class="err mono wrap" data-label="Last error" data-testid="plugin-error-${p.name}">${p.last_error || ''}</td>
        </tr>`, 'No plugins.');

  const reloadScripts = debounce(loadScripts, 150);
  const reloadPlugins = debounce(loadPlugins, 150);
  const unsubscribe = sse.subscribe((name, data) => {
    const all = name === 'reconnected';
    if (all || (name === 'changed' && data.what === 'scripts')) reloadScripts();
    if (all || (name === 'changed' && data.what === 'plugins')) reloadPlugins();
  });
  loadScripts();
  loadPlugins();
  return () => { alive = false; unsubscribe(); };
}
