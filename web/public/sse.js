// The live event stream (`GET /api/events`): one EventSource, reconnecting by itself.
// Subscribers get (name, data) for every event; status listeners get true/false.

export const EVENT_NAMES = [
  'publish', 'unpublish', 'stall', 'resume', 'ingest-stats', 'switched',
  'destination-up', 'destination-down', 'destination-retry', 'changed',
];

const subscribers = new Set();
const statusListeners = new Set();
let source = null;
let opened = false; // a later open is a reconnect: pages refetch what they show

export function subscribe(fn) {
  subscribers.add(fn);
  return () => subscribers.delete(fn);
}

export function onStatus(fn) {
  statusListeners.add(fn);
  fn(source !== null && source.readyState === EventSource.OPEN);
  return () => statusListeners.delete(fn);
}

function setStatus(up) {
  for (const fn of statusListeners) fn(up);
}

export function connect() {
  if (source) return;
  source = new EventSource('/api/events', { withCredentials: true });
  opened = false;
  source.onopen = () => {
    setStatus(true);
    if (opened) notify('reconnected', {});
    opened = true;
  };
  source.onerror = () => {
    setStatus(false);
    // a refused stream (401, 503) is not retried by EventSource: retry it ourselves
    if (source && source.readyState === EventSource.CLOSED) {
      const dead = source;
      setTimeout(() => { if (source === dead) { source = null; connect(); opened = true; } }, 5000);
    }
  };
  for (const name of EVENT_NAMES) {
    source.addEventListener(name, (msg) => {
      let data = {};
      try { data = JSON.parse(msg.data); } catch { /* keep {} */ }
      notify(name, data);
    });
  }
}

function notify(name, data) {
  for (const fn of subscribers) {
    try { fn(name, data); } catch (e) { console.error('event handler', name, e); }
  }
}

export function disconnect() {
  if (source) source.close();
  source = null;
  setStatus(false);
}
