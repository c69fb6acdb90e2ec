"""First start as a newcomer meets it (issue 26, hole 3): no admin token, no user. The API is
closed to every request, including one from this machine's loopback such as a reverse proxy's
plain `proxy_pass http://127.0.0.1:PORT;`, and the one-time setup link onair prints creates the
first admin in the browser."""

import re
import urllib.error
import urllib.request

import pytest
from playwright.sync_api import expect

from conftest import session_cookie, wait_until


def status_of(url, method="GET", headers=None, data=None):
    req = urllib.request.Request(url, method=method, headers=headers or {}, data=data)
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


@pytest.mark.onair_first_start
def test_first_start_is_closed_and_the_setup_link_makes_the_admin(page, stack):
    base = stack.base
    onair = stack.onair
    # what nginx's default proxy_pass sends: loopback peer, Host 127.0.0.1:PORT, no X-Forwarded-*
    assert status_of(base + "/api/channels/default/obs") == 401, "stream keys handed out"
    assert status_of(base + "/api/switch", "POST", {"Content-Type": "application/json"},
                     b'{"source":"fallback"}') == 401, "switched without a login"

    link = wait_until(10, lambda: re.search(r"http://\S+/#setup=([0-9a-f]{32})",
                                            onair.stdout.read_text(errors="replace")))
    assert link, f"no setup link on stdout:\n{onair.stdout.read_text(errors='replace')}"
    token = link.group(1)
    assert token not in onair.log_text(), "the setup token reached the log"
    # a wrong token is refused and creates nothing
    assert status_of(base + "/api/setup", "POST", {"Content-Type": "application/json"},
                     b'{"token":"00000000000000000000000000000000","name":"x","password":"long enough"}') == 403

    page.goto(link.group(0))
    page.get_by_test_id("setup-form").wait_for()
    assert "setup=" not in page.url, "the token stays in the address bar"
    page.get_by_test_id("setup-name").fill("ops")
    page.get_by_test_id("setup-password").fill("short")
    page.get_by_test_id("setup-password").evaluate("el => el.removeAttribute('minlength')")
    page.get_by_test_id("setup-submit").click()
    expect(page.get_by_test_id("setup-error")).to_contain_text("password")
    page.get_by_test_id("setup-password").fill("correct horse battery")
    page.get_by_test_id("setup-submit").click()
    expect(page.get_by_test_id("user")).to_have_text("ops")
    assert session_cookie(page), "no session after setup"
    page.get_by_test_id("channel-default").wait_for()
    assert page.get_by_test_id("setup").is_hidden()

    # the link is spent: the same token again answers 409 and the page shows the login form
    assert status_of(base + "/api/setup", "POST", {"Content-Type": "application/json"},
                     ('{"token":"%s","name":"intruder","password":"long enough"}' % token).encode()) == 409
    other = page.context.browser.new_context()
    p2 = other.new_page()
    p2.goto(link.group(0))
    p2.get_by_test_id("login-form").wait_for()
    assert p2.get_by_test_id("setup").is_hidden()
    other.close()
    # still closed to an anonymous request from loopback
    assert status_of(base + "/api/channels/default/obs") == 401
