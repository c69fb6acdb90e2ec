// Media gallery: upload (drag-and-drop or picker, XMLHttpRequest for the progress bar), the
// items with thumbnail and facts, preview, "Use as fallback" for a channel, delete.

import { get, post, del, getCsrf, parseJson } from './api.js';
import * as sse from './sse.js';
import { html, raw, bytes, duration, debounce, say } from './util.js';

export function mount(el) {
  el.innerHTML = `
    <div class="page-head"><h1>Media</h1>
      <label class="inline">Fallback for channel <select data-testid="media-channel"></select></label>
      <button type="button" class="ghost small" data-testid="use-slate">Use the slate</button></div>
    <p class="msg" data-testid="media-message" hidden></p>
    <label class="dropzone card" data-testid="drop-zone">
      <input type="file" accept="image/*,video/*" multiple data-testid="upload-input">
      <strong>Drop an image or a video here</strong> or <span class="link">choose a file</span>
      <span class="muted small-text">PNG or JPEG stills, or a video that loops with its audio</span>
    </label>
    <div class="upload">
      <progress max="100" value="0" data-testid="upload-progress" hidden></progress>
      <span data-testid="upload-status" class="muted"></span>
    </div>
    <p class="msg error" data-testid="upload-error" hidden></p>
    <div class="media-grid" data-testid="media-grid"></div>`;
  const q = (t) => el.querySelector(`[data-testid="${t}"]`);
  const grid = q('media-grid');
  const chanSel = q('media-channel');
  const progress = q('upload-progress');
  let items = [];
  let alive = true;
  const open = new Set(); // names whose preview is shown

  async function loadChannels() {
    try {
      const views = await get('/api/channels');
      const keep = chanSel.value;
      chanSel.innerHTML = views.map((v) => html`<option value="${v.id}">${v.name || v.id}</option>`).join('');
      if (views.some((v) => v.id === keep)) chanSel.value = keep;
    } catch (e) { say(q('media-message'), e.message); }
  }

  async function load() {
    try {
      items = await get('/api/media');
      if (alive) render();
    } catch (e) { if (alive) say(q('media-message'), `Could not load the gallery: ${e.message}`); }
  }
  const refetch = debounce(load, 150);

  function render() {
    grid.innerHTML = items.length ? items.map((m) => html`
      <article class="card media-item" data-testid="media-item-${m.name}" data-name="${m.name}">
        <button type="button" class="thumb" data-act="preview" title="Preview">
          <img src="${m.thumbnail}" alt="" loading="lazy" width="320" height="180"></button>
        <h3 class="wrap">${m.name}</h3>
        <p class="muted small-text">${m.kind}${raw(m.width ? html` · ${m.width}×${m.height}` : '')}
          ${raw(m.duration_s != null ? html` · ${duration(m.duration_s)}` : '')} · ${bytes(m.size_bytes)}</p>
        ${raw((m.used_by || []).length ? html`<p class="small-text"><span class="tag amber">fallback of ${m.used_by.join(', ')}</span></p>` : '')}
        ${raw(open.has(m.name) ? (m.kind === 'video'
    ? html`<video class="full" src="${m.url}" controls preload="metadata" data-testid="media-preview-${m.name}"></video>`
    : html`<img class="full" src="${m.url}" alt="${m.name}" data-testid="media-preview-${m.name}">`) : '')}
        <div class="buttons">
          <button type="button" class="small" data-act="use" data-testid="use-fallback-${m.name}">Use as fallback</button>
          <button type="button" class="small ghost" data-act="preview" data-testid="preview-media-${m.name}">${open.has(m.name) ? 'Close' : 'Preview'}</button>
          <button type="button" class="small danger" data-act="delete" data-testid="delete-media-${m.name}">Delete</button>
        </div>
        <p class="msg error" data-testid="media-error-${m.name}" hidden></p>
      </article>`).join('') : '<p class="empty muted">No media yet: upload an image or a video.</p>';
  }

  grid.addEventListener('click', async (ev) => {
    const b = ev.target.closest('[data-act]');
    const item = ev.target.closest('[data-name]');
    if (!b || !item) return;
    const name = item.dataset.name;
    const errEl = item.querySelector('.msg.error');
    say(errEl, '');
    if (b.dataset.act === 'preview') {
      if (open.has(name)) open.delete(name); else open.add(name);
      render();
    } else if (b.dataset.act === 'use') {
      setFallback(name, errEl);
    } else if (b.dataset.act === 'delete') {
      if (!window.confirm(`Delete ${name}?`)) return;
      try { await del(`/api/media/${encodeURIComponent(name)}`); load(); } catch (e) { say(errEl, e.message); }
    }
  });

  async function setFallback(name, errEl) {
    const ch = chanSel.value;
    if (!ch) return say(errEl || q('media-message'), 'Pick a channel first');
    try {
      await post(`/api/channels/${encodeURIComponent(ch)}/fallback`, { media: name });
      say(q('media-message'), `${ch} now falls back to ${name ?? 'the slate'}`, 'ok');
      load();
    } catch (e) { say(errEl || q('media-message'), e.message); }
  }
  q('use-slate').addEventListener('click', () => setFallback(null, null));

  function upload(file) {
    return new Promise((resolve) => {
      const xhr = new XMLHttpRequest();
      xhr.open('POST', `/api/media?name=${encodeURIComponent(file.name)}`);
      const csrf = getCsrf();
      if (csrf) xhr.setRequestHeader('X-CSRF-Token', csrf);
      xhr.setRequestHeader('Content-Type', file.type || 'application/octet-stream');
      progress.hidden = false;
      progress.value = 0;
      q('upload-status').textContent = `Uploading ${file.name}… 0 %`;
      xhr.upload.onprogress = (e) => {
        if (!e.lengthComputable) return;
        const pct = Math.floor((e.loaded / e.total) * 100);
        progress.value = Math.min(pct, 99); // 100 % once onair has taken the file
        q('upload-status').textContent = `Uploading ${file.name}… ${progress.value} %`;
      };
      xhr.onload = () => {
        if (xhr.status >= 200 && xhr.status < 300) {
          progress.value = 100;
          q('upload-status').textContent = `${file.name} uploaded: 100 %`;
          resolve(true);
        } else {
          const body = parseJson(xhr.responseText) || {};
          q('upload-status').textContent = '';
          say(q('upload-error'), `${file.name} refused (${xhr.status}): ${body.error || xhr.statusText}`);
          resolve(false);
        }
      };
      xhr.onerror = () => {
        q('upload-status').textContent = '';
        say(q('upload-error'), `${file.name}: the upload failed (the connection closed; is the file too large?)`);
        resolve(false);
      };
      xhr.send(file);
    });
  }

  async function uploadAll(files) {
    say(q('upload-error'), '');
    for (const f of files) await upload(f);
    load();
  }

  const zone = q('drop-zone');
  zone.addEventListener('dragover', (ev) => { ev.preventDefault(); zone.classList.add('over'); });
  zone.addEventListener('dragleave', () => zone.classList.remove('over'));
  zone.addEventListener('drop', (ev) => {
    ev.preventDefault();
    zone.classList.remove('over');
    if (ev.dataTransfer.files.length) uploadAll([...ev.dataTransfer.files]);
  });
  q('upload-input').addEventListener('change', (ev) => {
    const files = [...ev.target.files];
    ev.target.value = '';
    if (files.length) uploadAll(files);
  });

  const unsubscribe = sse.subscribe((name, data) => {
    if (name === 'reconnected' || (name === 'changed' && data.what === 'channels')) {
      loadChannels();
      refetch();
    } else if (name === 'changed' && data.what === 'media') refetch();
  });

  loadChannels();
  load();
  return () => { alive = false; unsubscribe(); };
}
