// Destinations of one channel: the list with state and enable switch, and a form to add or
// change one (platform preset → Server URL; url = server + "/" + stream key; the Recording
// preset → a file:// path instead) with its encoding profile (GET /api/profiles).

import { get, post, patch, del } from './api.js';
import * as sse from './sse.js';
import { html, raw, debounce, say } from './util.js';

export const PRESETS = [
  { id: 'twitch', label: 'Twitch', server: 'rtmp://live.twitch.tv/app' },
  { id: 'youtube', label: 'YouTube', server: 'rtmp://a.rtmp.youtube.com/live2' },
  { id: 'kick', label: 'Kick', server: 'rtmps://fa723fc1b171.global-contribute.live-video.net/app' },
  { id: 'facebook', label: 'Facebook', server: 'rtmps://live-api-s.facebook.com:443/rtmp' },
  { id: 'recording', label: 'Recording (file)', server: '' },
  { id: 'custom', label: 'Custom', server: '' },
];

export const RECORDING_URL = 'file:///var/lib/onair/recordings/{channel}-{utc}.mp4';

// The fields a 400 can name; a recording's url error shows next to its File path ("file").
const FIELDS = ['name', 'url', 'file', 'profile', 'segment_minutes', 'max_total_gib', 'enabled'];

/** "1280x720@60, 4500 kbit/s" for a profile or a channel's output. */
const encodeLabel = (p) => `${p.width}x${p.height}@${p.fps}, ${p.video_bitrate_kbps} kbit/s`;

/** A number input's value for the API: undefined when empty, NaN when not a number. */
function number(input) {
  if (input.validity.badInput) return NaN;
  return input.value.trim() === '' ? undefined : Number(input.value);
}

/** An RTMP URL without its stream key (the last path segment). */
const serverOf = (url) => url.slice(0, url.lastIndexOf('/'));

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
      <thead><tr><th>Name</th><th>URL</th><th>Profile</th><th>State</th><th>Enabled</th><th></th></tr></thead>
      <tbody></tbody></table></div></div>
    <form class="card form" data-testid="dest-form" novalidate>
      <h2 data-testid="dest-form-title">Add a destination</h2>
      <label>Platform <select name="preset" data-testid="dest-preset">
        ${PRESETS.map((p) => raw(html`<option value="${p.id}">${p.label}</option>`))}</select></label>
      <label>Name <input name="name" data-testid="dest-name" placeholder="twitch" autocomplete="off">
        <span class="field-error" data-testid="field-error-name" hidden></span></label>
      <label data-kind="rtmp">Server URL <input name="server" data-testid="dest-server" placeholder="rtmp://…" autocomplete="off">
        <span class="field-error" data-testid="field-error-url" hidden></span></label>
      <label data-kind="rtmp">Stream Key <input name="key" type="password" data-testid="dest-key" autocomplete="off"
        placeholder="as the platform shows it">
        <span class="hint">Kept secret: the lists show it redacted.</span></label>
      <label data-kind="recording" hidden>File path <input name="file" data-testid="dest-file" autocomplete="off"
        placeholder="${RECORDING_URL}">
        <span class="field-error" data-testid="field-error-file" hidden></span>
        <span class="hint"><code>{utc}</code> (required) becomes each file's start time, e.g.
          2026-11-23T19-30-00Z; <code>{channel}</code> and <code>{destination}</code> are filled in.
          Fragmented MP4: a file plays while it is written.</span></label>
      <label data-kind="recording" hidden>Minutes per file <input name="segment" type="number" min="1" max="1440"
        step="1" value="60" data-testid="dest-segment">
        <span class="field-error" data-testid="field-error-segment_minutes" hidden></span></label>
      <label data-kind="recording" hidden>Keep at most (GiB) <input name="maxGib" type="number" min="0" step="any"
        data-testid="dest-max-gib" placeholder="no limit">
        <span class="field-error" data-testid="field-error-max_total_gib" hidden></span>
        <span class="hint">The oldest files of this recording are deleted beyond it. Empty: no limit.</span></label>
      <label>Profile <select name="profile" data-testid="dest-profile"></select>
        <span class="field-error" data-testid="field-error-profile" hidden></span>
        <span class="hint">The encode it receives; each profile in use adds one encoder.</span></label>
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
  const f = Object.fromEntries(['preset', 'name', 'server', 'key', 'file', 'segment', 'maxGib', 'profile', 'enabled']
    .map((n) => [n, form.elements.namedItem(n)]));
  const chanSel = q('dest-channel');
  let channel = channelFromHash();
  let editing = null; // name of the destination being edited
  let listed = new Map(); // name → DestinationView, as last listed
  let alive = true;
  const recording = () => f.preset.value === 'recording';

  /** Fills the Profile select, keeping the choice being made. */
  function fillProfiles(output, profiles) {
    const keep = f.profile.value;
    f.profile.innerHTML = html`<option value="">Channel's encode (${encodeLabel(output)})</option>`
      + Object.entries(profiles).map(([n, p]) => html`<option value="${n}">${n} — ${encodeLabel(p)}</option>`).join('');
    f.profile.value = keep;
    if (f.profile.selectedIndex < 0) f.profile.value = '';
  }

  /** The URL cell: a recording shows a badge, its folder and its file names; RTMP the URL. */
  function where(d) {
    if (d.kind !== 'recording') return html`<span class="mono">${d.url}</span>`;
    const path = d.url.replace(/^file:\/\//, '');
    const cut = path.lastIndexOf('/') + 1;
    const limit = d.max_total_gib ? `, at most ${d.max_total_gib} GiB` : '';
    return html`<span class="tag red" data-testid="dest-row-kind-${d.name}">Recording</span>
      <div class="mono" data-testid="dest-row-folder-${d.name}">${path.slice(0, cut)}</div>
      <div class="hint">${path.slice(cut)}, a file every ${d.segment_minutes || 60} min${limit}</div>`;
  }

  async function load() {
    try {
      const [views, profiles] = await Promise.all([get('/api/channels'), get('/api/profiles')]);
      if (!alive) return;
      if (!channel || !views.some((v) => v.id === channel)) channel = views[0]?.id || null;
      chanSel.innerHTML = views.map((v) => html`<option value="${v.id}">${v.name || v.id}</option>`).join('');
      chanSel.value = channel || '';
      if (!channel) { q('dest-table').tBodies[0].innerHTML = ''; return; }
      const view = views.find((v) => v.id === channel);
      fillProfiles(view.output, profiles);
      const list = await get(`/api/channels/${encodeURIComponent(channel)}/destinations`);
      if (!alive) return;
      listed = new Map(list.map((d) => [d.name, d]));
      const status = new Map((view.destinations || []).map((d) => [d.name, d]));
      q('dest-table').tBodies[0].innerHTML = list.length ? list.map((d) => {
        const st = status.get(d.name) || {};
        const state = st.state || (d.enabled ? '…' : 'disabled');
        return html`<tr data-testid="dest-row-${d.name}" data-name="${d.name}">
          <td data-label="Name">${d.name}${raw(d.owner === 'config' ? ' <span class="tag">config</span>' : '')}</td>
          <td class="wrap" data-label="URL">${raw(where(d))}</td>
          <td data-label="Profile" data-testid="dest-row-profile-${d.name}">${raw(d.profile
            ? html`${d.profile}` : '<span class="muted">channel encode</span>')}</td>
          <td data-label="State"><span class="state ${state}" data-testid="dest-row-state-${d.name}">${state}</span>
            ${raw(st.last_error ? html`<div class="err small-text" data-testid="dest-row-error-${d.name}">${st.last_error}</div>` : '')}</td>
          <td data-label="Enabled"><label class="switch"><input type="checkbox" data-act="toggle" data-testid="dest-toggle-${d.name}"
            ${raw(d.enabled ? 'checked' : '')} aria-label="Enabled"><span></span></label></td>
          <td class="actions">${raw(d.owner === 'config' ? '' : html`
            <button type="button" class="small ghost" data-act="edit" data-testid="dest-edit-${d.name}">Edit</button>
            <button type="button" class="small danger" data-act="remove" data-testid="dest-remove-${d.name}">Remove</button>`)}</td>
        </tr>`;
      }).join('') : '<tr><td colspan="6" class="muted">No destinations yet: add one below.</td></tr>';
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
    f.segment.disabled = f.maxGib.disabled = false;
    q('dest-form-title').textContent = 'Add a destination';
    q('dest-submit').textContent = 'Add destination';
    q('dest-cancel').hidden = true;
    applyPreset();
    clearErrors();
  }

  /** Shows the inputs of the preset's kind: Server URL + Stream Key, or the recording's. */
  function showKind() {
    const kind = recording() ? 'recording' : 'rtmp';
    for (const el of form.querySelectorAll('[data-kind]')) el.hidden = el.dataset.kind !== kind;
  }

  function applyPreset() {
    const p = PRESETS.find((x) => x.id === f.preset.value);
    showKind();
    if (p && p.id === 'recording') f.file.value = RECORDING_URL;
    else if (p) f.server.value = p.server;
    if (p && !editing && (!f.name.value || PRESETS.some((x) => x.id === f.name.value))) {
      f.name.value = p.id === 'custom' ? '' : p.id;
    }
  }
  f.preset.addEventListener('change', applyPreset);

  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    clearErrors();
    const fieldError = (field, text) => {
      const at = field === 'url' && recording() ? 'file' : field;
      say(q(`field-error-${at}`), text, 'field-error');
    };
    const server = f.server.value.trim().replace(/\/+$/, '');
    const key = f.key.value.trim();
    const url = recording() ? f.file.value.trim() : key ? `${server}/${key}` : server;
    const base = `/api/channels/${encodeURIComponent(channel)}/destinations`;
    try {
      if (editing) {
        const body = { enabled: f.enabled.checked, profile: f.profile.value };
        // The listed URL's key is redacted: a new RTMP URL needs the key typed again.
        if (recording() || key) body.url = url;
        else if (server !== serverOf(listed.get(editing)?.url || '')) {
          fieldError('url', 'Type the stream key again to change the server URL.');
          return;
        }
        await patch(`${base}/${encodeURIComponent(editing)}`, body);
      } else {
        const body = { name: f.name.value.trim(), url, enabled: f.enabled.checked };
        if (f.profile.value) body.profile = f.profile.value;
        if (recording()) {
          body.segment_minutes = number(f.segment);
          body.max_total_gib = number(f.maxGib);
          const m = body.segment_minutes;
          if (m !== undefined && !(Number.isInteger(m) && m >= 0)) {
            fieldError('segment_minutes', 'a whole number of minutes, 1 to 1440');
            return;
          }
          if (Number.isNaN(body.max_total_gib)) {
            fieldError('max_total_gib', 'a number of GiB, or empty for no limit');
            return;
          }
        }
        await post(base, body);
      }
      resetForm();
      load();
    } catch (e) {
      if (FIELDS.includes(e.field)) fieldError(e.field, e.fieldMessage || e.message);
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
        const d = listed.get(name);
        resetForm();
        editing = name;
        f.name.value = name;
        f.name.readOnly = true;
        f.preset.value = d.kind === 'recording' ? 'recording' : 'custom';
        showKind();
        if (d.kind === 'recording') {
          // Only the path, the profile and the switch change: minutes and GiB are set when added.
          f.file.value = d.url;
          f.segment.value = d.segment_minutes || 60;
          f.maxGib.value = d.max_total_gib ?? '';
          f.segment.disabled = f.maxGib.disabled = true;
        } else {
          f.server.value = serverOf(d.url);
        }
        f.profile.value = d.profile || '';
        f.enabled.checked = d.enabled;
        q('dest-form-title').textContent = `Change ${name}`;
        q('dest-submit').textContent = 'Save';
        q('dest-cancel').hidden = false;
        (d.kind === 'recording' ? f.file : f.key).focus();
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
