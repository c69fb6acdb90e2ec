"""The dashboard's preview and its Fall back / Go live buttons, checked on what the platform gets."""

import time

from conftest import HEIGHT, WIDTH, login, platform_colour, wait_text, wait_until

PREVIEW = "[data-testid=preview-default]"

# the slate's background is #161a24 (core/src/media/fallback.rs), testsrc is bright colour bars
def looks_like_slate(rgb):
    return rgb is not None and max(rgb) < 70 and rgb[2] >= rgb[0]


def looks_like_testsrc(rgb):
    return rgb is not None and sum(rgb) / 3 > 80


def test_preview_plays(page, stack):
    login(page, stack.base)
    # page load to first preview frame, with the session cookie already set
    page.goto(stack.base + "/")
    page.wait_for_function(
        f"() => {{ const v = document.querySelector('{PREVIEW}');"
        " return v && v.readyState >= 2 && v.currentTime > 0; }", timeout=20000)
    first_frame_s = page.evaluate("performance.now()") / 1000
    print(f"page load to first preview frame: {first_frame_s:.2f} s")

    t0 = page.evaluate(f"document.querySelector('{PREVIEW}').currentTime")
    time.sleep(5)
    t1 = page.evaluate(f"document.querySelector('{PREVIEW}').currentTime")
    assert t1 - t0 > 3, f"preview currentTime went {t0:.2f} → {t1:.2f} in 5 s"

    brightness = page.evaluate(f"""() => {{
        const v = document.querySelector('{PREVIEW}');
        const c = document.createElement('canvas');
        c.width = {WIDTH // 4}; c.height = {HEIGHT // 4};
        const g = c.getContext('2d');
        g.drawImage(v, 0, 0, c.width, c.height);
        const d = g.getImageData(0, 0, c.width, c.height).data;
        let sum = 0;
        for (let i = 0; i < d.length; i += 4) sum += (d[i] + d[i + 1] + d[i + 2]) / 3;
        return sum / (d.length / 4);
    }}""")
    print(f"preview frame mean brightness: {brightness:.1f}")
    assert brightness > 60, f"the preview frame is black (mean brightness {brightness:.1f})"


def test_fall_back_and_go_live(page, stack):
    login(page, stack.base)
    badge = page.get_by_test_id("badge-default")
    assert badge.text_content() == "LIVE"
    before = wait_until(20, lambda: platform_colour(stack.nginx), 0.5)
    assert looks_like_testsrc(before), f"the platform does not show the testsrc: {before}"

    clicked = time.monotonic()
    page.get_by_test_id("fall-back-default").click()
    wait_text(page, "badge-default", "FALLBACK", 1000)
    print(f"badge FALLBACK {time.monotonic() - clicked:.2f} s after the click")
    assert page.get_by_test_id("reason-default").text_content().strip(), "no reason shown"
    slate = wait_until(20, lambda: (lambda c: c if looks_like_slate(c) else None)(platform_colour(stack.nginx)), 0.2)
    assert slate, f"the platform never showed the slate (last {platform_colour(stack.nginx)}, live was {before})"
    assert stack.onair.channel()["on_air"] == "fallback"

    page.get_by_test_id("go-live-default").click()
    wait_text(page, "badge-default", "LIVE", 10000)
    back = wait_until(20, lambda: (lambda c: c if looks_like_testsrc(c) else None)(platform_colour(stack.nginx)), 0.2)
    assert back, "the platform did not get the live picture back"
