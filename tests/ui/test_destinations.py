"""Adding, disabling and validating a destination through the form, checked on nginx."""

import time

from conftest import login, wait_text, wait_until


def test_add_disable_destination(page, stack):
    nginx = stack.nginx
    login(page, stack.base)
    first = nginx.publishers("app")
    assert len(first) == 1, first
    first_at = time.monotonic()

    page.goto(stack.base + "/#/destinations")
    page.get_by_test_id("dest-row-main").wait_for()
    form = page.get_by_test_id("dest-form")

    # a bad URL: the 400's message next to the URL field, nothing added
    page.get_by_test_id("dest-preset").select_option("custom")
    page.get_by_test_id("dest-name").fill("bad")
    page.get_by_test_id("dest-server").fill("http://127.0.0.1/app2")
    page.get_by_test_id("dest-key").fill("k2")
    with page.expect_response(lambda r: r.url.endswith("/destinations") and r.request.method == "POST") as resp:
        page.get_by_test_id("dest-submit").click()
    assert resp.value.status == 400
    field_error = form.get_by_test_id("field-error-url")
    field_error.wait_for()
    assert field_error.text_content().strip()
    assert resp.value.json().get("field") == "url"
    assert resp.value.json()["message"] in field_error.text_content()
    assert page.get_by_test_id("dest-row-bad").count() == 0

    # the Custom preset, server + stream key: nginx sees the new publisher on app2/k2
    page.get_by_test_id("dest-preset").select_option("custom")
    assert page.get_by_test_id("dest-server").input_value() == ""
    page.get_by_test_id("dest-name").fill("second")
    page.get_by_test_id("dest-server").fill(f"rtmp://127.0.0.1:{nginx.rtmp_port}/app2")
    page.get_by_test_id("dest-key").fill("k2")
    page.get_by_test_id("dest-submit").click()
    page.get_by_test_id("dest-row-second").wait_for(timeout=5000)
    assert field_error.is_hidden()
    pub = wait_until(15, lambda: [p for p in nginx.publishers("app2") if p["stream"] == "k2"], 0.25)
    assert pub, "nginx never saw a publisher on app2/k2"
    wait_text(page, "dest-row-state-second", "up", 15000)

    # disable: it leaves nginx, the row says disabled
    page.get_by_test_id("dest-toggle-second").click()
    gone = wait_until(10, lambda: not nginx.publishers("app2"), 0.25)
    assert gone, f"app2 still has a publisher: {nginx.publishers('app2')}"
    wait_text(page, "dest-row-state-second", "disabled", 5000)

    # the first destination's connection was never reopened: same client, older
    now = nginx.publishers("app")
    elapsed_ms = (time.monotonic() - first_at) * 1000
    assert len(now) == 1 and now[0]["id"] == first[0]["id"], f"main reconnected: {first} → {now}"
    assert now[0]["time_ms"] >= first[0]["time_ms"] + elapsed_ms * 0.8, (first, now, elapsed_ms)
