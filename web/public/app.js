// The control room: session check, login, header, hash routes. Each page module exports
// mount(el) → unmount().

import { get, post, setCsrf, setUnauthorizedHandler, ApiError } from './api.js';
import * as sse from './sse.js';
import { say } from './util.js';
import * as dashboard from './dashboard.js';
import * as destinations from './destinations.js';
import * as media from './media.js';
import * as scripts from './scripts.js';
import * as events from './events.js';

const ROUTES = {
  '/': dashboard,
  '/destinations': destinations,
  '/media': media,
  '/scripts': scripts,
  '/events': events,
};

const $ = (id) => document.getElementById(id);
let unmount = null;
let signedIn = false;

function routePath() {
  const h = location.hash.replace(/^#/, '') || '/';
  return h.split('?')[0];
}

function render() {
  if (unmount) { unmount(); unmount = null; }
  const view = $('view');
  view.innerHTML = '';
  if (!signedIn) return;
  const path = routePath();
  const page = ROUTES[path] || dashboard;
  for (const a of document.querySelectorAll('#nav a')) {
    a.classList.toggle('active', a.dataset.route === path);
  }
  view.dataset.page = path;
  unmount = page.mount(view) || null;
}

function showApp(session) {
  signedIn = true;
  setCsrf(session.csrf || null);
  $('login').hidden = true;
  $('nav').hidden = false;
  $('who').hidden = false;
  $('user').textContent = session.user || '';
  $('logout').hidden = session.auth === 'open' || !session.user;
  const banner = $('banner');
  if (session.auth === 'open') {
    banner.innerHTML = 'No admin user: create one with <code>onair user add NAME</code>';
    banner.hidden = false;
  } else {
    banner.hidden = true;
  }
  sse.connect();
  render();
}

function showLogin(users) {
  signedIn = false;
  setCsrf(null);
  sse.disconnect();
  if (unmount) { unmount(); unmount = null; }
  $('view').innerHTML = '';
  $('nav').hidden = true;
  $('who').hidden = true;
  $('banner').hidden = true;
  $('login').hidden = false;
  $('no-users').hidden = users !== 0;
  $('login-form').querySelector('[name=password]').value = '';
}

// The first-start setup link: http://HOST/#setup=TOKEN (the fragment never reaches a server
// or a proxy log). The token is taken out of the address bar at once.
let setupToken = null;

function showSetup() {
  $('login').hidden = true;
  $('nav').hidden = true;
  $('who').hidden = true;
  $('setup').hidden = false;
}

$('setup-form').addEventListener('submit', async (ev) => {
  ev.preventDefault();
  const form = ev.target;
  const err = $('setup-error');
  say(err, '');
  const button = form.querySelector('button');
  button.disabled = true;
  try {
    const r = await post('/api/setup', {
      token: setupToken,
      name: form.querySelector('[name=name]').value,
      password: form.querySelector('[name=password]').value,
    }, { quiet401: true });
    setupToken = null;
    $('setup').hidden = true;
    showApp({ user: r.user, csrf: r.csrf, auth: 'session' });
  } catch (e) {
    say(err, e.message);
    if (e instanceof ApiError && e.status === 409) {
      setupToken = null;
      $('setup').hidden = true;
      showLogin(undefined);
    }
  } finally {
    button.disabled = false;
  }
});

async function boot() {
  const m = location.hash.match(/^#setup=([0-9a-f]+)$/);
  if (m) {
    setupToken = m[1];
    history.replaceState(null, '', location.pathname + location.search);
  }
  try {
    const s = await get('/api/session', { quiet401: true });
    showApp(s);
  } catch (e) {
    if (e instanceof ApiError && e.status === 401) {
      if (setupToken && e.body.setup) { showSetup(); return; }
      showLogin(e.body.users);
    } else {
      showLogin(undefined);
      say($('login-error'), e.message);
    }
  }
}

$('login-form').addEventListener('submit', async (ev) => {
  ev.preventDefault();
  const form = ev.target;
  const err = $('login-error');
  say(err, '');
  const button = form.querySelector('button');
  button.disabled = true;
  try {
    const r = await post('/api/login', {
      name: form.querySelector('[name=name]').value,
      password: form.querySelector('[name=password]').value,
    }, { quiet401: true });
    showApp({ user: r.user, csrf: r.csrf, auth: 'session' });
  } catch (e) {
    say(err, e.message);
    form.querySelector('[name=password]').value = '';
  } finally {
    button.disabled = false;
  }
});

$('logout').addEventListener('click', async () => {
  try { await post('/api/logout'); } catch { /* signed out either way */ }
  showLogin(undefined);
});

setUnauthorizedHandler(() => showLogin(undefined));

sse.onStatus((up) => {
  const el = document.querySelector('[data-testid=sse-status]');
  el.dataset.state = up ? 'up' : 'down';
  el.querySelector('.sse-text').textContent = up ? 'live' : 'reconnecting…';
});

events.startRecording();
window.addEventListener('hashchange', render);
boot();
