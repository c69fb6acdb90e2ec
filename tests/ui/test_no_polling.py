"""The dashboard does not poll: while nothing happens it asks onair nothing; an event makes it refetch."""

import time
from urllib.parse import urlparse

from conftest import login, wait_playing, wait_text

QUIET_S = 8


def is_stream(path):
    return path == "/api/events" or path.endswith("/preview.flv")


def test_dashboard_does_not_poll(page, stack):
    login(page, stack.base)
    wait_playing(page, "default")
    # the page's own event stream, to tell when the `switched` event reached it (same module)
    page.evaluate("""async () => {
        const sse = await import('/sse.js');
        window.__events = [];
        sse.subscribe((name, data) => window.__events.push({name, channel: data.channel, t: performance.now()}));
    }""")
    requests = []
    page.on("request", lambda r: requests.append(
        {"method": r.method, "path": urlparse(r.url).path, "t": time.monotonic()}))
    page.wait_for_timeout(1000)  # let the loads of the page's start finish
    settled = len(requests)
    page.wait_for_timeout(QUIET_S * 1000)  # not time.sleep: request events are delivered while waiting
    page.evaluate("1")  # and the last ones with the next call
    quiet = [r for r in requests[settled:] if r["path"].startswith("/api/")]
    print(f"/api/ requests in {QUIET_S} s of quiet: {[(r['method'], r['path']) for r in quiet]}")
    polled = [r for r in quiet if not is_stream(r["path"])]
    assert not polled, f"the dashboard polled: {polled}"
    assert len([r for r in quiet if r["path"] == "/api/events"]) == 0, "the event stream was reopened"
    stats = page.evaluate("window.__events.filter(e => e.name === 'ingest-stats').length")
    print(f"events received meanwhile: {stats} ingest-stats")

    # an event makes the page refetch the channels
    clicked = time.monotonic()
    page.get_by_test_id("fall-back-default").click()
    wait_text(page, "badge-default", "FALLBACK", 5000)
    page.wait_for_function("""() => {
        const ev = window.__events.find(e => (e.name === 'switched' || e.name === 'changed') && e.channel === 'default');
        return ev && performance.getEntriesByType('resource').some(
            r => new URL(r.name).pathname === '/api/channels' && r.startTime > ev.t);
    }""", timeout=5000)
    after = [r for r in requests if r["t"] >= clicked and r["path"].startswith("/api/")]
    print(f"/api/ requests after the click: {[(r['method'], r['path']) for r in after]}")
    assert ("POST", "/api/channels/default/switch") in [(r["method"], r["path"]) for r in after]
    assert ("GET", "/api/channels") in [(r["method"], r["path"]) for r in after], after
