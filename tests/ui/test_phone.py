"""Every page fits a phone (390x844): no sideways scrolling, nothing cut off, the nav usable."""

from conftest import login, shown_page, wait_playing

W, H = 390, 844

ROUTES = {"#/": "channel-default", "#/destinations": "dest-row-main", "#/media": "drop-zone",
          "#/scripts": "scripts-table", "#/events": "event-log"}

# html and body say overflow-x: hidden, which would hide a too-wide page from scrollWidth:
# measured with it lifted, and every visible element must end inside the screen. The screen's
# width is the phone's, not innerWidth: a mobile browser zooms out to fit a too-wide page, and
# innerWidth grows with it.
FITS = """([w]) => {
  document.documentElement.style.overflowX = 'visible';
  document.body.style.overflowX = 'visible';
  const wide = [...document.querySelectorAll('body *')].filter((e) => {
    const r = e.getBoundingClientRect();
    return r.width > 0 && r.height > 0 && (r.right > w + 0.5 || r.left < -0.5);
  }).map((e) => `${e.tagName.toLowerCase()}.${e.className}[${e.dataset.testid || ''}] ${Math.round(e.getBoundingClientRect().left)}..${Math.round(e.getBoundingClientRect().right)}`);
  const out = {scrollWidth: document.scrollingElement.scrollWidth, innerWidth: window.innerWidth,
               wide: wide.slice(0, 10)};
  document.documentElement.style.overflowX = '';
  document.body.style.overflowX = '';
  return out;
}"""

# a nav link is usable when it is on screen and nothing covers its middle
NAV = """() => [...document.querySelectorAll('#nav a')].map((a) => {
  const r = a.getBoundingClientRect();
  const hit = document.elementFromPoint(r.left + r.width / 2, r.top + r.height / 2);
  return {route: a.dataset.route, left: r.left, right: r.right, top: r.top, bottom: r.bottom,
          w: r.width, h: r.height, covered: !(hit === a || a.contains(hit))};
})"""


def test_phone_layout(request, browser, page, stack):
    phone = browser.new_context(viewport={"width": W, "height": H}, is_mobile=True, has_touch=True)
    p = shown_page(request, phone.new_page())
    login(p, stack.base)
    # something in every page: a switch with its reason (events, dashboard), the preview playing
    p.get_by_test_id("fall-back-default").tap()
    p.get_by_test_id("reason-default").get_by_text("switch").wait_for(timeout=10000)
    wait_playing(p, "default")
    assert p.evaluate("window.innerWidth") == W, "the page has no phone viewport (meta viewport?)"

    for route, testid in list(ROUTES.items())[1:] + [("#/", "channel-default")]:
        links = p.evaluate(NAV)
        assert [link["route"] for link in links] == ["/", "/destinations", "/media", "/scripts", "/events"]
        for link in links:
            assert link["w"] >= 24 and link["h"] >= 24, f"nav link too small to tap: {link}"
            assert link["left"] >= 0 and link["right"] <= W and link["top"] >= 0 and link["bottom"] <= H, \
                f"nav link off screen: {link}"
            assert not link["covered"], f"nav link covered: {link}"
        # go there through the nav, as a thumb would
        p.locator(f"#nav a[href='{route}']").tap()
        p.wait_for_function("([r]) => document.getElementById('view').dataset.page === r",
                            arg=[route[1:]], timeout=5000)
        p.get_by_test_id(testid).wait_for(timeout=10000)
        if route == "#/events":
            p.locator("[data-testid=event][data-kind=switched]").first.wait_for(timeout=5000)
        if route == "#/media":
            p.get_by_test_id("media-grid").wait_for(state="attached")
        p.wait_for_timeout(300)  # what loads after the first element
        fit = p.evaluate(FITS, [W])
        print(f"{route}: scrollWidth {fit['scrollWidth']} innerWidth {fit['innerWidth']}")
        assert fit["scrollWidth"] <= fit["innerWidth"] == W, f"{route} is wider than the phone: {fit}"
        assert not fit["wide"], f"{route}: elements past the screen's edge: {fit['wide']}"
    wait_playing(p, "default")  # the test's screenshot: the dashboard on a phone
