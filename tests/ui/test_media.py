"""Media gallery: upload with progress, use as fallback (checked on the platform), refusals."""

import os
import subprocess

from playwright.sync_api import expect

from conftest import login, platform_colour, wait_text, wait_until, wait_value


def is_magenta(rgb):
    return rgb is not None and rgb[0] > 180 and rgb[1] < 90 and rgb[2] > 180


def test_upload_use_as_fallback_and_refusals(page, stack, tmp_path):
    png = tmp_path / "magenta.png"
    subprocess.run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi",
                    "-i", "color=magenta:s=640x360", "-frames:v", "1", str(png)], check=True)
    login(page, stack.base)
    page.goto(stack.base + "/#/media")
    page.get_by_test_id("drop-zone").wait_for()

    page.get_by_test_id("upload-input").set_input_files(str(png))
    wait_value(page, "upload-progress", 100, 15000)
    assert "100 %" in page.get_by_test_id("upload-status").text_content()
    item = page.get_by_test_id("media-item-magenta.png")
    item.wait_for(timeout=10000)
    assert "image" in item.text_content()
    assert page.get_by_test_id("upload-error").is_hidden()

    page.get_by_test_id("media-channel").select_option("default")
    with page.expect_response(lambda r: r.url.endswith("/api/channels/default/fallback")) as resp:
        page.get_by_test_id("use-fallback-magenta.png").click()
    assert resp.value.status == 200, resp.value.text()

    page.goto(stack.base + "/#/")
    page.get_by_test_id("fall-back-default").click()
    wait_text(page, "badge-default", "FALLBACK", 5000)
    magenta = wait_until(20, lambda: (lambda c: c if is_magenta(c) else None)(platform_colour(stack.nginx)), 0.2)
    assert magenta, f"the platform does not show magenta: {platform_colour(stack.nginx)}"

    # refusals: deleting the fallback in use, a file that is no picture, a file over the limit
    page.goto(stack.base + "/#/media")
    page.get_by_test_id("media-item-magenta.png").wait_for()
    page.once("dialog", lambda d: d.accept())
    with page.expect_response(lambda r: r.url.endswith("/api/media/magenta.png")) as resp:
        page.get_by_test_id("delete-media-magenta.png").click()
    assert resp.value.status == 409, resp.value.status
    refused = page.get_by_test_id("media-error-magenta.png")
    expect(refused).to_contain_text('in use as the fallback of channel "default"')
    assert stack.onair.channel()["fallback"].endswith("magenta.png")
    kept = stack.onair.media_files()
    fake = tmp_path / "x.png"
    fake.write_text("this is not a picture\n")
    with page.expect_response(lambda r: "/api/media?name=x.png" in r.url) as resp:
        page.get_by_test_id("upload-input").set_input_files(str(fake))
    assert resp.value.status == 400, resp.value.status
    err = page.get_by_test_id("upload-error")
    err.wait_for()
    assert "x.png" in err.text_content() and "not an image or a video" in err.text_content()

    big = tmp_path / "big.mp4"
    big.write_bytes(os.urandom(4 << 20))
    page.evaluate("document.querySelector('[data-testid=upload-error]').hidden = true")
    page.get_by_test_id("upload-input").set_input_files(str(big))
    err.wait_for(timeout=20000)
    text = err.text_content()
    assert "big.mp4" in text and "max_upload_mib" in text, text
    page.wait_for_timeout(1000)
    assert stack.onair.media_files() == kept, f"files left behind: {stack.onair.media_files()} (had {kept})"
    names = page.locator("[data-testid^=media-item-]").evaluate_all("els => els.map(e => e.dataset.name)")
    assert names == ["magenta.png"], names


def test_fallback_answer_is_the_new_view(page, stack, tmp_path):
    """POST /api/channels/ID/fallback answers the channel's view with the choice in it, as the page
    (and any client) may show it at once."""
    png = tmp_path / "blue.png"
    subprocess.run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi",
                    "-i", "color=blue:s=640x360", "-frames:v", "1", str(png)], check=True)
    login(page, stack.base)
    page.goto(stack.base + "/#/media")
    page.get_by_test_id("upload-input").set_input_files(str(png))
    page.get_by_test_id("media-item-blue.png").wait_for(timeout=15000)
    page.get_by_test_id("media-channel").select_option("default")
    with page.expect_response(lambda r: r.url.endswith("/api/channels/default/fallback")) as resp:
        page.get_by_test_id("use-fallback-blue.png").click()
    assert resp.value.status == 200, resp.value.text()
    answer = resp.value.json()
    page.get_by_test_id("media-item-blue.png").get_by_text("fallback of default").wait_for(timeout=5000)
    kept = wait_until(5, lambda: (lambda f: f if f.endswith("blue.png") else None)(stack.onair.channel()["fallback"]))
    assert kept, f"the choice was not kept: {stack.onair.channel()['fallback']}"
    assert answer.get("id") == "default" and answer.get("fallback") == kept, \
        f"the answer is not the new view: fallback {answer.get('fallback')!r}, kept {kept!r}"
