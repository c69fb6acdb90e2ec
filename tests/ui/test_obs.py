"""The dashboard's OBS panel: server and hidden key, Show, Copy, and Regenerate (checked on ingest)."""

from conftest import STREAM_KEY, login, start_publisher, wait_until

OLD_KEY = "studio-key-0001"


def page_text(page):
    """Everything the page holds as text or markup (hidden elements and attributes included)."""
    return page.evaluate("document.documentElement.outerHTML")


def clipboard(page):
    return page.evaluate("navigator.clipboard.readText()")


def key_texts(page, cid):
    return page.get_by_test_id(f"obs-key-{cid}").locator("code.key").all_text_contents()


def test_obs_panel_show_copy_regenerate(page, stack):
    onair = stack.onair
    page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=stack.base)
    status, obs = onair.call("GET", "/api/channels/default/obs")
    assert status == 200, obs
    server = f"rtmp://127.0.0.1:{onair.rtmp_port}/live"
    assert obs["server"] == server, obs
    keys = obs["stream_keys"]
    assert STREAM_KEY in keys and obs["can_regenerate"] is False, obs

    login(page, stack.base)
    page.get_by_test_id("obs-default").locator("summary").click()
    server_el = page.get_by_test_id("obs-server-default")
    page.wait_for_function(
        "([s]) => document.querySelector('[data-testid=obs-server-default]').textContent === s",
        arg=[server], timeout=10000)
    assert server_el.is_visible()
    # the key is nowhere in the page before Show, not even hidden
    assert page.get_by_test_id("obs-key-default").is_visible()
    html = page_text(page)
    for k in keys:
        assert k not in html, f"stream key {k!r} in the page before Show"
    assert page.get_by_test_id("regenerate-key-default").is_hidden(), "config channel offers Regenerate"

    # both rows have a copy button that copies what the row stands for
    for row in ("server", "key"):
        assert page.get_by_test_id(f"copy-{row}-default").is_visible(), f"no copy button for {row}"
    page.get_by_test_id("copy-server-default").click()
    assert wait_until(5, lambda: clipboard(page) == server), f"copied server: {clipboard(page)!r}"
    page.get_by_test_id("copy-key-default").click()
    assert wait_until(5, lambda: clipboard(page) == keys[0]), f"copied key: {clipboard(page)!r}"
    for k in keys:
        assert k not in page_text(page), "Copy revealed the key in the page"

    page.get_by_test_id("show-key-default").click()
    page.get_by_test_id("obs-key-default").locator("code.key").first.wait_for(timeout=5000)
    assert key_texts(page, "default") == keys
    assert page.get_by_test_id("show-key-default").text_content() == "Hide"
    page.get_by_test_id("show-key-default").click()
    page.get_by_test_id("obs-key-default").locator("code.key").first.wait_for(state="detached", timeout=5000)
    assert all(k not in page_text(page) for k in keys), "Hide left the key in the page"

    # a run-time channel: Regenerate gives a new key; the old one no longer publishes
    status, v = onair.call("POST", "/api/channels", {"id": "studio", "keys": [OLD_KEY]})
    assert status == 201, (status, v)
    page.get_by_test_id("channel-studio").wait_for(timeout=10000)  # from the `changed` event
    page.get_by_test_id("obs-studio").locator("summary").click()
    regen = page.get_by_test_id("regenerate-key-studio")
    regen.wait_for(timeout=5000)
    page.get_by_test_id("show-key-studio").click()
    page.wait_for_function(
        "() => document.querySelectorAll('[data-testid=obs-key-studio] code.key').length > 0", timeout=5000)
    assert key_texts(page, "studio") == [OLD_KEY]
    dialogs = []
    page.once("dialog", lambda d: (dialogs.append(d.message), d.accept()))
    with page.expect_response(lambda r: r.url.endswith("/api/channels/studio/keys/regenerate")) as resp:
        regen.click()
    assert resp.value.status == 200, resp.value.text()
    assert dialogs and "Regenerate" in dialogs[0], dialogs
    page.wait_for_function(
        "([old]) => { const k = [...document.querySelectorAll('[data-testid=obs-key-studio] code.key')];"
        " return k.length === 1 && k[0].textContent !== old; }", arg=[OLD_KEY], timeout=5000)
    new_key = key_texts(page, "studio")[0]
    assert new_key and new_key != OLD_KEY
    status, obs = onair.call("GET", "/api/channels/studio/obs")
    assert status == 200 and obs["stream_keys"] == [new_key], obs
    assert page.get_by_test_id("channel-error-studio").is_hidden()
    page.get_by_test_id("copy-key-studio").click()
    assert wait_until(5, lambda: clipboard(page) == new_key), f"copied key: {clipboard(page)!r}"

    refusals = onair.log_text().count("unknown stream key")
    old = start_publisher(stack.procs, onair.publish_url(OLD_KEY))
    refused = wait_until(20, lambda: onair.log_text().count("unknown stream key") > refusals, 0.2)
    assert refused, f"no refusal logged for the old key:\n{onair.log_text()[-3000:]}"
    assert wait_until(20, lambda: old.poll() is not None, 0.2), "ffmpeg with the old key still runs"
    assert onair.channel("studio")["sessions"] == []

    start_publisher(stack.procs, onair.publish_url(new_key))
    live = wait_until(30, lambda: (lambda v: v["sessions"] and v["on_air"] == "live")(onair.channel("studio")), 0.25)
    assert live, f"the new key does not publish: {onair.channel('studio')}"
    page.get_by_test_id("publisher-studio").get_by_text("receiving").wait_for(timeout=10000)
