"""Login, logout and the failed-login limit, through the login form."""

import re

from playwright.sync_api import expect

from conftest import PASSWORD, login, session_cookie, submit_login


def test_login_logout_and_lockout(page, stack):
    base = stack.base
    # wrong password: an error, no session cookie, still the login form
    status = login(page, base, password="wrong horse", expect_ok=False)
    assert status == 401
    err = page.get_by_test_id("login-error")
    expect(err).to_contain_text("wrong name or password")
    assert not session_cookie(page)
    assert page.get_by_test_id("channel-default").count() == 0

    # right password: the dashboard with the channel's card
    assert submit_login(page, PASSWORD, expect_ok=True) == 200
    assert session_cookie(page), "no onair_session cookie after login"
    assert page.get_by_test_id("login").is_hidden()
    assert page.get_by_test_id("user").text_content() == "admin"

    # logout: the login form again, and the API refuses the page's requests
    page.get_by_test_id("logout").click()
    page.get_by_test_id("login-form").wait_for()
    assert page.get_by_test_id("channel-default").count() == 0
    assert page.evaluate("fetch('/api/channels').then(r => r.status)") == 401
    assert not session_cookie(page)

    # 5 wrong logins, then the right password is refused too
    for i in range(5):
        status = submit_login(page, f"wrong {i}")
        assert status in (401, 429), status
        expect(page.get_by_test_id("login-error")).to_have_text(re.compile(r"\S"))
    status = submit_login(page, PASSWORD)
    assert status == 429, f"6th login answered {status}"
    err = page.get_by_test_id("login-error")
    expect(err).to_contain_text("too many failed logins")
    expect(err).to_be_visible()
    assert not session_cookie(page)
    assert page.get_by_test_id("login-form").is_visible()
