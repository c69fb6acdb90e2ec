"""Many dashboard tabs in one browser keep working: the browser's 6 connections to onair are not
all held by event streams and previews (one shared event stream, at most 3 previews, none in a
hidden tab)."""

import time

from conftest import login, shown_page, wait_text

TABS = 5  # 2 connections each (events, preview) were 10: the 4th tab did not even load
PLAYING = """() => { const v = document.querySelector('[data-testid=preview-default]');
  return v !== null && v.readyState >= 2 && v.currentTime > 0; }"""


def playing(pages):
    return [p.evaluate(PLAYING) for p in pages]


def wait_for(fn, timeout_s, what):
    end = time.monotonic() + timeout_s
    while True:
        v = fn()
        if v:
            return v
        assert time.monotonic() < end, f"{what} (last: {v})"
        time.sleep(0.2)


def hide(page):
    """What the browser does when the tab goes to the background (headless tabs stay visible)."""
    page.evaluate("""() => {
        Object.defineProperty(document, 'hidden', { value: true, configurable: true });
        Object.defineProperty(document, 'visibilityState', { value: 'hidden', configurable: true });
        document.dispatchEvent(new Event('visibilitychange'));
    }""")


def test_many_tabs_in_one_browser(request, browser, page, stack):
    ctx = browser.new_context(viewport={"width": 1280, "height": 720})
    first = ctx.new_page()
    login(first, stack.base)
    pages = [first]
    for _ in range(TABS - 1):
        p = ctx.new_page()
        p.goto(stack.base + "/#/")
        p.get_by_test_id("channel-default").wait_for(timeout=15000)
        pages.append(p)
    wait_for(lambda: sum(playing(pages)) == 3, 60, "3 previews should play")
    time.sleep(1)
    assert sum(playing(pages)) == 3, playing(pages)
    waiting = [p for p, on in zip(pages, playing(pages)) if not on]
    for p in waiting:
        assert "Preview paused" in p.get_by_test_id("preview-note-default").text_content()
    for p in pages:
        wait_text(p, "sse-status", "live", 10000)

    # the last tab's click goes through, and every tab learns the switch from the event stream
    last = pages[-1]
    with last.expect_response(lambda r: r.url.endswith("/api/channels/default/switch"), timeout=5000) as resp:
        last.get_by_test_id("fall-back-default").click()
    assert resp.value.ok, resp.value.status
    for p in pages:
        wait_text(p, "badge-default", "FALLBACK", 3000)

    # a tab that goes to the background gives its preview to a waiting one
    player = next(p for p, on in zip(pages, playing(pages)) if on)
    hide(player)
    wait_for(lambda: not player.evaluate(PLAYING), 5, "the hidden tab still plays")
    wait_for(lambda: any(playing(waiting)), 20, "no waiting tab took the freed preview")

    # closing the tab that holds the event stream: another one opens it, and clicks still work
    pages[0].close()
    rest = pages[1:]
    with last.expect_response(lambda r: r.url.endswith("/api/channels/default/switch"), timeout=5000) as resp:
        last.get_by_test_id("go-live-default").click()
    assert resp.value.ok, resp.value.status
    for p in rest:
        wait_text(p, "badge-default", "LIVE", 10000)
    for p in rest[:-1]:
        p.close()
    shown_page(request, last)
    wait_for(lambda: last.evaluate(PLAYING), 30, "the one tab left plays no preview")
