"""A script with a syntax error shows its file:line in red on the scripts page."""

import re

from conftest import login


def test_script_syntax_error_shown(page, stack):
    login(page, stack.base)
    page.goto(stack.base + "/#/scripts")
    page.locator("[data-testid^=script-error-]").first.wait_for()
    # written while the page is open: the page learns it from the event stream
    (stack.onair.scripts_dir / "broken.lua").write_text(
        '-- a handler left unterminated\nonair.on("publish", function(ev)\n  onair.log("publish")\n')
    cell = page.locator("[data-testid^=script-error-]", has_text=re.compile(r"broken\.lua:\d+"))
    cell.wait_for(timeout=10000)
    text = cell.text_content()
    assert re.search(r"broken\.lua:\d+", text), text
    colour = cell.evaluate("e => getComputedStyle(e).color")
    r, g, b = (int(x) for x in re.findall(r"\d+", colour)[:3])
    assert r > 150 and g < 100 and b < 100, f"error not red: {colour}"
    # the shipped policy still runs
    ok = page.locator("[data-testid^=script-error-]", has_text=re.compile(r"failover"))
    assert ok.count() == 0
