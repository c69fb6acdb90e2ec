"""The events page: a switch shows up within a second; the kind and channel filters."""

import time

from conftest import create_channel, login, start_publisher, wait_until

ROWS = "[data-testid=event]"


def rows(page):
    """The log's rows as shown: [(kind, channel)]."""
    return [tuple(r) for r in page.locator(ROWS).evaluate_all(
        "els => els.map(e => [e.dataset.kind, e.querySelector('.mono').textContent])")]


def test_events_page_and_filters(page, stack):
    onair = stack.onair
    login(page, stack.base)
    page.goto(stack.base + "/#/events")
    page.get_by_test_id("event-log").wait_for()

    # a second channel with a publisher: its publish and switched events, while the page is open
    create_channel(onair, {"id": "studio", "keys": ["studio-key-0001"]})
    start_publisher(stack.procs, onair.publish_url("studio-key-0001"))
    page.locator(f"{ROWS}[data-kind=publish]", has_text="studio").wait_for(timeout=30000)
    assert wait_until(20, lambda: onair.channel("studio")["on_air"] == "live", 0.25)

    # Fall back on the dashboard in another tab: the row is here within 1 s
    dash = page.context.new_page()
    try:
        dash.goto(stack.base + "/#/")
        dash.get_by_test_id("fall-back-default").wait_for()
        assert ("switched", "default") not in rows(page)
        clicked = time.monotonic()
        dash.get_by_test_id("fall-back-default").click()
        left_ms = max(1.0 - (time.monotonic() - clicked), 0.05) * 1000
        page.wait_for_function(
            "() => [...document.querySelectorAll('[data-testid=event][data-kind=switched]')]"
            ".some(e => e.querySelector('.mono').textContent === 'default')", timeout=left_ms)
        print(f"switched row {time.monotonic() - clicked:.2f} s after the click")
    finally:
        dash.close()
    row = page.locator(f"{ROWS}[data-kind=switched]", has_text="default").first
    assert "to=fallback" in row.text_content(), row.text_content()

    everything = rows(page)
    assert ("publish", "studio") in everything and ("switched", "default") in everything, everything

    kind = page.get_by_test_id("events-kind")
    chan = page.get_by_test_id("events-channel")
    kind.select_option("publish")
    shown = rows(page)
    assert shown and all(k == "publish" for k, _ in shown), shown
    assert ("switched", "default") not in shown

    kind.select_option("switched")
    shown = rows(page)
    assert ("switched", "default") in shown and ("switched", "studio") in shown, shown
    assert all(k == "switched" for k, _ in shown), shown
    chan.select_option("studio")
    shown = rows(page)
    assert shown and all(c == "studio" for _, c in shown), shown
    assert ("switched", "default") not in shown

    kind.select_option("")
    chan.select_option("default")
    shown = rows(page)
    assert ("switched", "default") in shown and all(c == "default" for _, c in shown), shown
    assert ("publish", "studio") not in shown
