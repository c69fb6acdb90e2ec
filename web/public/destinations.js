// Destinations of one channel: the list with state and enable switch, and a form to add or
// change one (platform preset → Server URL; url = server + "/" + stream key).

import { get, post, patch, del } from './api.js';
import * as sse from './sse.js';
import { html, raw, debounce, say } from './util.js';

export const PRESETS = [
  { id: 'twitch', label: 'Twitch', server: 'rtmp://live.twitch.tv/app' },
  { id: 'youtube', label: 'YouTube', server: 'rtmp://a.rtmp.youtube.com/live2' },
  { id: 'kick', label: 'Kick', server: 'rtmps://fa723fc1b171.global-contribute.live-video.net/app' },
  { id: 'facebook', label: 'Facebook', server: 'rtmps://live-api-s.facebook.com:443/rtmp' },
  { id: 'custom', label: 'Custom', server: '' },
];

const FIELDS = ['name', 'url', 'enabled'];

function channelFromHash() {
  const q = new URLSearchParams(location.hash.split('?')[1] || '');
  return q.get('channel');
}

export function mount(el) {
  el.innerHTML = html`
    <div class="page-head"><h1>Destinations</h1>
      <label class="inline">Channel <select data-testid="dest-channel"></select></label></div>
    <p class="msg error" data-testid="dest-error" hidden></p>
    <div class="card"><div class="table-wrap"><table class="stack" data-testid="dest-table">
      <thead><tr><th>Name</th><th>URL</th><th>State</th><th>Enabled</th><th></th></tr></thead>
      <tbody></tbody></table></div></div>
    <form class="card form" data-testid="dest-form" novalidate>
      <h2 data-testid="dest-form-title">Add a destination</h2>
      <label>Platform <select name="preset" data-testid="dest-preset">
        ${PRESETS.map((p) => raw(html`<option value="${p.id}">${p.label}</option>`))}</select></label>
      <label>Name <input name="name" data-testid="dest-name" placeholder="twitch" autocomplete="off">
        <span class="field-error" data-testid="field-error-name" hidden></span></label>
      <label>Server URL <input name="server" data-testid="dest-server" placeholder="rtmp://…" autocomplete="off">
        <span class="field-error" data-testid="field-error-url" hidden></span></label>
      <label>Stream Key <input name="key" type="password" data-testid="dest-key" autocomplete="off"
        placeholder="as the platform shows it">
        <span class="hint">Kept secret: the lists show it redacted.</span></label>
      <label class="check"><input type="checkbox" name="enabled" data-testid="dest-enabled" checked> Enabled
        <span class="field-error" data-testid="field-error-enabled" hidden></span></label>
      <p class="msg error" data-testid="dest-form-error" hidden></p>
      <div class="buttons">
        <button type="submit" data-testid="dest-submit">Add destination</button>
        <button type="button" class="ghost" data-testid="dest-cancel" hidden>Cancel</button>
      </div>
    </form>`;
  const q = (t) => el.querySelector(`[data-testid="${t}"]`);
  const form = q('dest-form');
  const f = Object.fromEntries(['preset', 'name', 'server', 'key', 'enabled']
    .map((n) => [n, form.elements.namedItem(n)]));
  const chanSel = q('dest-channel');
  let channel = channelFromHash();
  let editing = null; // name of the destination being edited
  let alive = true;

  async function load() {
    try {
      const views = await get('/api/channels');
      if (!alive) return;
      if (!channel || !views.some((v) => v.id === channel)) channel = views[0]?.id || null;
      chanSel.innerHTML = views.map((v) => html`<option value="${v.id}">${v.name || v.id}</option>`).join('');
      chanSel.value = channel || '';
      if (!channel) { q('dest-table').tBodies[0].innerHTML = ''; return; }
      const view = views.find((v) => v.id === channel);
      const list = await get(`/api/channels/${encodeURIComponent(channel)}/destinations`);
      if (!alive) return;
      const status = new Map((view.destinations || []).map((d) => [d.name, d]));
      q('dest-table').tBodies[0].innerHTML = list.length ? list.map((d) => {
        const st = status.get(d.name) || {};
        const state = st.state || (d.enabled ? '…' : 'disabled');
        return html`<tr data-testid="dest-row-${d.name}" data-name="${d.name}">
          <td data-label="Name">${d.name}${raw(d.owner === 'config' ? ' <span class="tag">config</span>' : '')}</td>
          <td class="mono wrap" data-label="URL">${d.url}</td>
          <td data-label="State"><span class="state ${state}" data-testid="dest-row-state-${d.name}">${state}</span>
            ${raw(st.last_error ? html`<div class="err small-text">${st.last_error}</div>` : '')}</td>
          <td data-label="Enabled"><label class="switch"><input type="checkbox" data-act="toggle" data-testid="dest-toggle-${d.name}"
            ${raw(d.enabled ? 'checked' : '')} aria-label="Enabled"><span></span></label></td>
          <td class="actions">${raw(d.owner === 'config' ? '' : html`
            <button type="button" class="small ghost" data-act="edit" data-testid="dest-edit-${d.name}">Edit</button>
            <button type="button" class="small danger" data-act="remove" data-testid="dest-remove-${d.name}">Remove</button>`)}</td>
        </tr>`;
      }).join('') : '<tr><td colspan="5" class="muted">No destinations yet: add one below.</td></tr>';
      say(q('dest-error'), '');
    } catch (e) {
      if (alive) say(q('dest-error'), e.message);
    }
  }
  const refetch = debounce(load, 150);

  function clearErrors() {
    for (const f of FIELDS) say(q(`field-error-${f}`), '', 'field-error');
    say(q('dest-form-error'), '');
  }

  function resetForm() {
    editing = null;
    form.reset();
    f.name.readOnly = false;
    q('dest-form-title').textContent = 'Add a destination';
    q('dest-submit').textContent = 'Add destination';
    q('dest-cancel').hidden = true;
    applyPreset();
    clearErrors();
  }

  function applyPreset() {
    const p = PRESETS.find((x) => x.id === f.preset.value);
    if (p && p.id !== 'custom') f.server.value = p.server;
    else if (p) f.server.value = '';
    if (p && !editing && (!f.name.value || PRESETS.some((x) => x.id === f.name.value))) {
      f.name.value = p.id === 'custom' ? '' : p.id;
    }
  }
  f.preset.addEventListener('change', applyPreset);

  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    clearErrors();
    const server = f.server.value.trim().replace(/\/+$/, '');
    const key = f.key.value.trim();
    const url = key ? `${server}/${key}` : server;
    const base = `/api/channels/${encodeURIComponent(channel)}/destinations`;
    try {
      if (editing) {
        const body = { enabled: f.enabled.checked };
        if (key || !server.includes('…')) body.url = url;
        await patch(`${base}/${encodeURIComponent(editing)}`, body);
      } else {
        await post(base, { name: f.name.value.trim(), url, enabled: f.enabled.checked });
      }
      resetForm();
      load();
    } catch (e) {
      const field = FIELDS.includes(e.field) ? e.field : null;
      if (field) say(q(`field-error-${field}`), e.fieldMessage || e.message, 'field-error');
      else say(q('dest-form-error'), e.message);
    }
  });
  q('dest-cancel').addEventListener('click', resetForm);

  q('dest-table').addEventListener('click', async (ev) => {
    const b = ev.target.closest('[data-act]');
    const row = ev.target.closest('tr[data-name]');
    if (!b || !row) return;
    const name = row.dataset.name;
    const base = `/api/channels/${encodeURIComponent(channel)}/destinations/${encodeURIComponent(name)}`;
    try {
      if (b.dataset.act === 'toggle') {
        await post(`${base}/${b.checked ? 'enable' : 'disable'}`);
      } else if (b.dataset.act === 'remove') {
        if (!window.confirm(`Remove destination ${name}? Its connection closes.`)) return;
        await del(base);
      } else if (b.dataset.act === 'edit') {
        resetForm();
        editing = name;
        f.name.value = name;
        f.name.readOnly = true;
        f.preset.value = 'custom';
        const url = row.children[1].textContent;
        f.server.value = url.slice(0, url.lastIndexOf('/'));
        f.enabled.checked = row.querySelector('[data-act=toggle]').checked;
        q('dest-form-title').textContent = `Change ${name}`;
        q('dest-submit').textContent = 'Save';
        q('dest-cancel').hidden = false;
        f.key.focus();
        return;
      }
      say(q('dest-error'), '');
      load();
    } catch (e) {
      say(q('dest-error'), e.message);
      load();
    }
  });

  chanSel.addEventListener('change', () => {
    channel = chanSel.value;
    history.replaceState(null, '', `#/destinations?channel=${encodeURIComponent(channel)}`);
    resetForm();
    load();
  });

  const unsubscribe = sse.subscribe((name, data) => {
    if (name === 'reconnected') { refetch(); return; }
    if (name === 'ingest-stats' || name === 'switched') return;
    if (name === 'changed' && !['destinations', 'channels'].includes(data.what)) return;
    if (data.channel && data.channel !== channel) return;
    refetch();
  });

  resetForm();
  load();
  return () => { alive = false; unsubscribe(); };
}
