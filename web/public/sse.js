// The live event stream (`GET /api/events`): one EventSource per browser, reconnecting by itself.
// Subscribers get (name, data) for every event; status listeners get true/false.
//
// A browser opens at most 6 HTTP/1.1 connections to onair, and an event stream holds one for
// good: one per tab would leave a third dashboard tab (each also holding its previews) without a
// connection for its clicks. So the tabs of one browser share a stream: the tab holding the Web
// Lock "onair-events" opens it and passes every event on over a BroadcastChannel; when it
// closes, another tab takes the lock and opens its own. Without Web Locks (a page served over
// plain http to a LAN address is no secure context) every tab opens its own.

export const EVENT_NAMES = [
  'publish', 'unpublish', 'stall', 'resume', 'ingest-stats', 'switched',
  'destination-up', 'destination-down', 'destination-retry', 'changed',
];

const LOCK = 'onair-events';
const shared = typeof BroadcastChannel === 'function' && !!(navigator.locks && navigator.locks.request);

const subscribers = new Set();
const statusListeners = new Set();
let source = null;
let up = false;
let opened = false; // a later open is a reconnect: pages refetch what they show
let channel = null; // the BroadcastChannel while connected (shared mode)
let resign = null; // ends this tab's turn as the stream's holder
let abort = null; // withdraws this tab's request for the lock
let followed = false; // another tab's stream fed this one

export function subscribe(fn) {
  subscribers.add(fn);
  return () => subscribers.delete(fn);
}

export function onStatus(fn) {
  statusListeners.add(fn);
  fn(up);
  return () => statusListeners.delete(fn);
}

function setStatus(state) {
  up = state;
  for (const fn of statusListeners) fn(state);
}

export function connect() {
  if (!shared) { open(false); return; }
  if (channel) return;
  channel = new BroadcastChannel(LOCK);
  channel.onmessage = (m) => {
    const msg = m.data || {};
    if (msg.type === 'event' || msg.type === 'status') followed = true;
    if (msg.type === 'event') notify(msg.name, msg.data);
    else if (msg.type === 'status' && !source) setStatus(msg.up);
    else if (msg.type === 'hello' && source) channel.postMessage({ type: 'status', up });
  };
  channel.postMessage({ type: 'hello' }); // the holder answers with its status
  abort = new AbortController();
  navigator.locks.request(LOCK, { signal: abort.signal }, () => new Promise((done) => {
    resign = done;
    // when another tab held the stream until now, what was sent between its end and this open
    // is lost: this first open counts as a reconnect, for every tab
    open(followed);
  })).catch(() => { /* withdrawn by disconnect() */ });
}

/** Opens this tab's EventSource; `wasFollowing`: its first open is a reconnect. */
function open(wasFollowing) {
  if (source) return;
  source = new EventSource('/api/events', { withCredentials: true });
  opened = wasFollowing;
  const mine = source;
  source.onopen = () => {
    publishStatus(true);
    if (opened) publish('reconnected', {});
    opened = true;
  };
  source.onerror = () => {
    publishStatus(false);
    // a refused stream (401, 503) is not retried by EventSource: retry it ourselves
    if (source === mine && mine.readyState === EventSource.CLOSED) {
      setTimeout(() => { if (source === mine) { source = null; open(true); } }, 5000);
    }
  };
  for (const name of EVENT_NAMES) {
    source.addEventListener(name, (msg) => {
      let data = {};
      try { data = JSON.parse(msg.data); } catch { /* keep {} */ }
      publish(name, data);
    });
  }
}

/** An event of this tab's stream: to this tab and to the others. */
function publish(name, data) {
  notify(name, data);
  if (channel) channel.postMessage({ type: 'event', name, data });
}

function publishStatus(state) {
  setStatus(state);
  if (channel) channel.postMessage({ type: 'status', up: state });
}

function notify(name, data) {
  for (const fn of subscribers) {
    try { fn(name, data); } catch (e) { console.error('event handler', name, e); }
  }
}

export function disconnect() {
  if (source) {
    source.close();
    if (channel) channel.postMessage({ type: 'status', up: false });
  }
  source = null;
  followed = false;
  if (abort) abort.abort();
  if (resign) resign();
  abort = resign = null;
  if (channel) channel.close();
  channel = null;
  setStatus(false);
}
