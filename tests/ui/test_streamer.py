"""A streamer signs up, gets a key shown once, publishes with it, and sees on their own page that
they are on air and first in the queue (examples/queue); a new key ends the running publish."""

import os
import shutil
from pathlib import Path

import pytest

from conftest import REPO, start_publisher, wait_until

# the README's picture of the streamer page, as test_screenshots.py makes the others
DOCS = Path(os.environ.get("TEST_DOCS_SCREENSHOTS", REPO / "target" / "docs-screenshots"))
NAME = "dj-river"
PASSWORD = "river password 1"


@pytest.mark.onair_config("[accounts]\nsignup = true\n")
def test_sign_up_publish_and_see_your_place(page, stack):
    onair = stack.onair
    for f in ("queue.lua", "failover.lua"):
        shutil.copy(REPO / "examples" / "queue" / f, onair.scripts_dir / f)
    assert wait_until(10, lambda: "script loaded script=queue.lua" in onair.log_text()), onair.log_text()

    page.goto(stack.base + "/signup.html")
    page.get_by_test_id("signup-name").fill(NAME)
    page.get_by_test_id("signup-password").fill(PASSWORD)
    page.get_by_test_id("signup-submit").click()
    page.get_by_test_id("stream-key").wait_for(timeout=10000)
    key = page.get_by_test_id("stream-key").text_content()
    assert key.startswith("live_") and len(key) == 45, key
    server = page.get_by_test_id("obs-server").text_content()
    assert server == f"rtmp://127.0.0.1:{onair.rtmp_port}/live", server
    # the account list shows only a hint of the key
    status, accounts = onair.call("GET", "/api/streamers")
    assert status == 200 and [a["name"] for a in accounts] == [NAME], accounts
    assert key not in str(accounts)

    publisher = start_publisher(stack.procs, f"{server}/{key}")
    page.get_by_test_id("to-streamer-page").click()
    page.get_by_test_id("streamer-page").wait_for(timeout=10000)
    assert page.get_by_test_id("streamer-name").text_content() == NAME
    # the stack's own publisher was first: this streamer waits, second in the queue
    page.wait_for_function(
        "() => document.querySelector('[data-testid=queue-place]').textContent === 'Place 2 of 2 in the queue'",
        timeout=20000)
    # the state comes from its own request, made before the queue's: it may show on the next refresh
    page.wait_for_function(
        "() => document.querySelector('[data-testid=streamer-state]').textContent"
        ".startsWith('Connected to channel default, waiting')",
        timeout=10000)
    # the first one leaves: the page updates by itself to on air, first in the queue
    stack.publisher.kill()
    page.wait_for_function(
        "() => document.querySelector('[data-testid=streamer-state]').textContent.startsWith('On air')",
        timeout=20000)
    page.wait_for_function(
        "() => document.querySelector('[data-testid=queue-place]').textContent.includes('first in the queue')",
        timeout=10000)
    DOCS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(DOCS / "streamer.png"))
    # the key is not on this page: only its hint
    assert key not in page.evaluate("document.documentElement.outerHTML")
    assert page.get_by_test_id("key-hint").text_content().endswith(key[-4:])
    status, st = onair.call("GET", "/api/status")
    assert [s.get("account") for s in st["sessions"]] == [NAME], st["sessions"]

    # a new key: shown once, the old one's publish ends
    page.on("dialog", lambda d: d.accept())
    page.get_by_test_id("regenerate-key").click()
    page.get_by_test_id("stream-key").wait_for(timeout=10000)
    new_key = page.get_by_test_id("stream-key").text_content()
    assert new_key != key and new_key.startswith("live_")
    assert wait_until(10, lambda: publisher.poll() is not None), "the old key's publish went on"
    page.wait_for_function(
        "() => document.querySelector('[data-testid=streamer-state]').textContent.startsWith('Not publishing')",
        timeout=10000)
    # the page's own refreshes (every 2 s) do not take the new key away before it is copied
    page.wait_for_timeout(4500)
    assert page.get_by_test_id("stream-key").text_content() == new_key
