"""The README's screenshots (docs/screenshots/, 1280x720 and a phone), made from a real stack:
two channels, one LIVE with a publisher and one on its FALLBACK image, both sending to the
platform; a gallery with an image and a video. Checks each page shows what the picture is for."""

import os
import subprocess
import urllib.request
from pathlib import Path

from conftest import HEIGHT, REPO, TOKEN, WIDTH, create_channel, login, wait_playing, wait_text, wait_until

# the README's pictures: written to target/ on a normal run (a clean tree after the tests);
# TEST_DOCS_SCREENSHOTS=docs/screenshots refreshes the committed ones
DOCS = Path(os.environ.get("TEST_DOCS_SCREENSHOTS", REPO / "target" / "docs-screenshots"))
MAX_BYTES = 250 * 1024
FONT = "/usr/share/fonts/truetype/dejavu/DejaVuSans"


def make_media(tmp_path):
    brb, intro = tmp_path / "brb.png", tmp_path / "intro.mp4"
    text = (f"drawtext=fontfile={FONT}-Bold.ttf:text='Be right back':fontsize=96:fontcolor=white"
            ":x=(w-tw)/2:y=(h-th)/2-30,"
            f"drawtext=fontfile={FONT}.ttf:text='The stream continues in a moment':fontsize=36"
            ":fontcolor=white@0.8:x=(w-tw)/2:y=h/2+60")
    subprocess.run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi", "-i",
                    "gradients=s=1280x720:c0=0x1d2b64:c1=0x7b2ff7:x0=0:y0=0:x1=1280:y1=720:nb_colors=2",
                    "-frames:v", "1", "-vf", text, str(brb)], check=True)
    subprocess.run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-y",
                    "-f", "lavfi", "-i", "mandelbrot=s=640x360:r=25", "-f", "lavfi", "-i", "sine=f=330:sample_rate=48000",
                    "-t", "3", "-c:v", "libx264", "-preset", "veryfast", "-crf", "30", "-pix_fmt", "yuv420p",
                    "-c:a", "aac", "-b:a", "64k", "-shortest", str(intro)], check=True)
    return brb, intro


def upload(onair, path):
    req = urllib.request.Request(f"{onair.base}/api/media?name={path.name}", data=path.read_bytes(), method="POST",
                                 headers={"Authorization": f"Bearer {TOKEN}",
                                          "Content-Type": "application/octet-stream"})
    with urllib.request.urlopen(req, timeout=30) as r:
        assert r.status == 201, r.status


def save(page, name):
    DOCS.mkdir(parents=True, exist_ok=True)
    path = DOCS / name
    page.screenshot(path=str(path))  # the viewport, not the whole page
    size = path.stat().st_size
    print(f"{path.relative_to(REPO) if path.is_relative_to(REPO) else path}: {size // 1024} KiB")
    assert size < MAX_BYTES, f"{name} is {size} bytes"


def images_loaded(page, selector):
    page.wait_for_function(
        "([s]) => { const imgs = [...document.querySelectorAll(s)];"
        " return imgs.length > 0 && imgs.every(i => i.complete && i.naturalWidth > 0); }",
        arg=[selector], timeout=15000)


def test_readme_screenshots(request, browser, page, stack, tmp_path):
    onair, nginx = stack.onair, stack.nginx
    brb, intro = make_media(tmp_path)
    upload(onair, brb)
    upload(onair, intro)
    create_channel(onair, {"id": "studio", "name": "Studio", "keys": ["studio-key-0001"],
                           "destinations": [{"name": "youtube", "url": nginx.url("app2", "studio")}]})
    status, view = onair.call("POST", "/api/channels/studio/fallback", {"media": "brb.png"})
    assert status == 200 and view.get("id") == "studio", (status, view)
    # (what the answer says is test_media.py's business: the kept choice is what counts here)
    assert wait_until(10, lambda: onair.channel("studio")["fallback"].endswith("brb.png"), 0.1), \
        onair.channel("studio")["fallback"]
    ok = wait_until(30, lambda: all(d["state"] == "up" for v in (onair.channel(), onair.channel("studio"))
                                    for d in v["destinations"]), 0.25)
    assert ok, [onair.channel()["destinations"], onair.channel("studio")["destinations"]]
    assert onair.channel("studio")["on_air"] == "fallback"

    # a camera-like picture for the live channel: SMPTE bars with the time burned in
    stack.publisher.kill()
    sessions = {s["session"] for s in onair.channel()["sessions"]}
    stack.procs.spawn(
        ["ffmpeg", "-hide_banner", "-loglevel", "error", "-re",
         "-f", "lavfi", "-i", f"smptehdbars=s={WIDTH}x{HEIGHT}:r=30", "-f", "lavfi", "-i", "sine=f=440:sample_rate=48000",
         "-vf", f"drawtext=fontfile={FONT}-Bold.ttf:text='CAM 1  %{{localtime\\:%H\\\\\\:%M\\\\\\:%S}}'"
                ":fontsize=28:fontcolor=white:box=1:boxcolor=black@0.6:boxborderw=8:x=20:y=20",
         "-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency", "-g", "30", "-pix_fmt", "yuv420p",
         "-c:a", "aac", "-b:a", "96k", "-f", "flv", onair.publish_url()],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    live = wait_until(30, lambda: (lambda v: v["on_air"] == "live" and v["on_air_session"] not in sessions)(onair.channel()), 0.25)
    assert live, f"the new publisher is not on air: {onair.channel()}"

    # dashboard: LIVE and FALLBACK, both previews playing (the fallback one shows the image)
    login(page, stack.base)
    page.get_by_test_id("channel-studio").wait_for(timeout=10000)
    wait_text(page, "badge-default", "LIVE", 10000)
    wait_text(page, "badge-studio", "FALLBACK", 10000)
    for cid in ("default", "studio"):
        wait_playing(page, cid, 60000)
        wait_text(page, f"dest-state-{cid}-{'main' if cid == 'default' else 'youtube'}", "up", 10000)
    page.get_by_test_id("publisher-default").get_by_text("receiving").wait_for(timeout=10000)
    page.wait_for_timeout(1500)  # a few frames past the first
    save(page, "dashboard.png")

    # media: the image and the video, thumbnails loaded, the image in use
    page.goto(stack.base + "/#/media")
    for name in ("brb.png", "intro.mp4"):
        page.get_by_test_id(f"media-item-{name}").wait_for(timeout=10000)
    assert "image" in page.get_by_test_id("media-item-brb.png").text_content()
    assert "video" in page.get_by_test_id("media-item-intro.mp4").text_content()
    assert "fallback of studio" in page.get_by_test_id("media-item-brb.png").text_content()
    images_loaded(page, "[data-testid^=media-item-] img")
    save(page, "media.png")

    # destinations: the add form with the YouTube preset
    page.goto(stack.base + "/#/destinations")
    page.get_by_test_id("dest-row-main").wait_for(timeout=10000)
    wait_text(page, "dest-row-state-main", "up", 10000)
    page.get_by_test_id("dest-preset").select_option("youtube")
    assert page.get_by_test_id("dest-server").input_value() == "rtmp://a.rtmp.youtube.com/live2"
    assert page.get_by_test_id("dest-name").input_value() == "youtube"
    page.get_by_test_id("dest-key").fill("xxxx-xxxx-xxxx-xxxx")
    page.get_by_test_id("dest-form").scroll_into_view_if_needed()
    save(page, "destinations.png")

    # scripts: the shipped policy, loaded
    page.goto(stack.base + "/#/scripts")
    row = page.locator("[data-testid^=script-]", has_text="failover")
    row.first.wait_for(timeout=10000)
    assert "loaded" in row.first.text_content()
    save(page, "scripts.png")

    # the dashboard on a phone
    phone = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
    try:
        p = phone.new_page()
        phone.add_cookies(page.context.cookies())
        p.goto(stack.base + "/#/")
        wait_text(p, "badge-default", "LIVE", 10000)
        wait_playing(p, "default", 60000)
        p.wait_for_timeout(1000)
        save(p, "phone.png")
    finally:
        phone.close()
    page.goto(stack.base + "/#/")
    page.get_by_test_id("channel-studio").wait_for()
