"""Adding, disabling and validating a destination through the form, checked on nginx; a
destination with an encoding profile, and a recording into a folder."""

import tempfile
import time
from pathlib import Path

import pytest

from conftest import grab_rgb, login, wait_text, wait_until


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


SMALL = ('[profile.small]\nwidth = 320\nheight = 180\nfps = 15\nvideo_bitrate_kbps = 300\n'
         'x264_preset = "ultrafast"\n')
# pytest's tmp_path is under the temp folder: recordings added at run time may write there
RECORDING_ROOTS = f'[recording]\nroots = ["{tempfile.gettempdir()}"]\n'


def destinations(stack):
    status, listed = stack.onair.call("GET", "/api/channels/default/destinations")
    assert status == 200, listed
    return {d["name"]: d for d in listed}


@pytest.mark.onair_config(SMALL + RECORDING_ROOTS)
def test_profile_and_recording(page, stack, tmp_path):
    nginx = stack.nginx
    login(page, stack.base)
    page.goto(stack.base + "/#/destinations")
    page.get_by_test_id("dest-row-main").wait_for()
    form = page.get_by_test_id("dest-form")
    assert page.get_by_test_id("dest-row-profile-main").text_content().strip() == "channel encode"

    # the Profile select: the channel's encode first, then every profile with its encode
    profile = page.get_by_test_id("dest-profile")
    options = profile.locator("option").all_text_contents()
    assert options[0] == "Channel's encode (640x360@30, 800 kbit/s)", options
    assert "small — 320x180@15, 300 kbit/s" in options, options
    assert "twitch-720p60 — 1280x720@60, 4500 kbit/s" in options, options

    # an RTMP destination with the small profile: nginx gets 320x180
    page.get_by_test_id("dest-preset").select_option("custom")
    page.get_by_test_id("dest-name").fill("low")
    page.get_by_test_id("dest-server").fill(f"rtmp://127.0.0.1:{nginx.rtmp_port}/app2")
    page.get_by_test_id("dest-key").fill("low")
    profile.select_option("small")
    page.get_by_test_id("dest-submit").click()
    page.get_by_test_id("dest-row-low").wait_for(timeout=5000)
    assert destinations(stack)["low"]["profile"] == "small"
    assert page.get_by_test_id("dest-row-profile-low").text_content().strip() == "small"
    pub = wait_until(15, lambda: [p for p in nginx.publishers("app2") if p["stream"] == "low"], 0.25)
    assert pub, "nginx never saw a publisher on app2/low"
    assert grab_rgb(nginx.url("app2", "low"), 320, 180), "app2/low is not 320x180"
    wait_text(page, "dest-row-state-low", "up", 15000)

    # Edit → the channel's encode: the same URL (its key kept, though the list redacts it)
    page.get_by_test_id("dest-edit-low").click()
    assert profile.input_value() == "small"
    profile.select_option("")
    page.get_by_test_id("dest-submit").click()
    wait_text(page, "dest-row-profile-low", "channel encode", 5000)
    assert destinations(stack)["low"]["profile"] is None
    again = wait_until(15, lambda: [p for p in nginx.publishers("app2")
                                    if p["stream"] == "low" and p["id"] != pub[0]["id"]], 0.25)
    assert again, f"app2/low did not come back: {nginx.publishers('app2')}"

    # a recording: the File path replaces Server URL and Stream Key; an .mp4 grows in tmp_path
    page.get_by_test_id("dest-preset").select_option("recording")
    assert page.get_by_test_id("dest-server").is_hidden() and page.get_by_test_id("dest-key").is_hidden()
    assert page.get_by_test_id("dest-file").input_value() == \
        "file:///var/lib/onair/recordings/{channel}-{utc}.mp4"
    assert page.get_by_test_id("dest-name").input_value() == "recording"
    assert page.get_by_test_id("dest-segment").input_value() == "60"
    page.get_by_test_id("dest-file").fill(f"file://{tmp_path}/{{utc}}.mp4")
    page.get_by_test_id("dest-max-gib").fill("2")
    page.get_by_test_id("dest-submit").click()
    page.get_by_test_id("dest-row-recording").wait_for(timeout=5000)
    d = destinations(stack)["recording"]
    assert (d["kind"], d["profile"], d["segment_minutes"], d["max_total_gib"]) == ("recording", None, 60, 2), d
    grown = wait_until(15, lambda: [f for f in tmp_path.glob("*.mp4") if f.stat().st_size > 0], 0.25)
    assert grown, f"no .mp4 with data in {tmp_path}: {list(tmp_path.iterdir())}"
    assert page.get_by_test_id("dest-row-kind-recording").text_content().strip() == "Recording"
    assert page.get_by_test_id("dest-row-folder-recording").text_content().strip() == f"{tmp_path}/"
    assert page.get_by_test_id("dest-preset").input_value() == "twitch"  # the form was reset

    # a recording that cannot write (a file where its folder should be): its row shows why
    (tmp_path / "taken").write_text("")
    page.get_by_test_id("dest-preset").select_option("recording")
    page.get_by_test_id("dest-name").fill("stuck")
    page.get_by_test_id("dest-file").fill(f"file://{tmp_path}/taken/{{utc}}.mp4")
    page.get_by_test_id("dest-submit").click()
    page.get_by_test_id("dest-row-error-stuck").wait_for(timeout=10000)
    assert f"{tmp_path}/taken" in page.get_by_test_id("dest-row-error-stuck").text_content()

    # Edit it into a folder that can be made: it records there
    page.get_by_test_id("dest-edit-stuck").click()
    assert page.get_by_test_id("dest-file").input_value() == f"file://{tmp_path}/taken/{{utc}}.mp4"
    assert page.get_by_test_id("dest-segment").is_disabled()
    page.get_by_test_id("dest-file").fill(f"file://{tmp_path}/fixed/{{utc}}.mp4")
    page.get_by_test_id("dest-submit").click()
    fixed = wait_until(15, lambda: [f for f in tmp_path.glob("fixed/*.mp4") if f.stat().st_size > 0], 0.25)
    assert fixed, f"nothing recorded in {tmp_path}/fixed: {list(tmp_path.rglob('*'))}"
    d = destinations(stack)["stuck"]
    want = (f"file://{tmp_path}/fixed/{{utc}}.mp4", 60, None)  # minutes and GiB as added
    assert (d["url"], d["segment_minutes"], d["max_total_gib"]) == want, d

    # no {utc} in the file name: the server's message next to the File path, nothing created
    page.get_by_test_id("dest-preset").select_option("recording")
    page.get_by_test_id("dest-name").fill("nameless")
    page.get_by_test_id("dest-file").fill(f"file://{tmp_path}/bad/take.mp4")
    with page.expect_response(lambda r: r.url.endswith("/destinations") and r.request.method == "POST") as resp:
        page.get_by_test_id("dest-submit").click()
    assert resp.value.status == 400 and resp.value.json().get("field") == "url"
    field_error = form.get_by_test_id("field-error-file")
    field_error.wait_for()
    assert resp.value.json()["message"] in field_error.text_content()
    assert "{utc}" in field_error.text_content()
    assert form.get_by_test_id("field-error-url").is_hidden()
    assert "nameless" not in destinations(stack)
    assert page.get_by_test_id("dest-row-nameless").count() == 0
    assert not (tmp_path / "bad").exists()

    # a folder outside recording.roots: refused, the message names the key, nothing created
    elsewhere = Path("/var/onair-ui-elsewhere")
    page.get_by_test_id("dest-preset").select_option("recording")
    page.get_by_test_id("dest-name").fill("elsewhere")
    page.get_by_test_id("dest-file").fill(f"file://{elsewhere}/{{utc}}.mp4")
    with page.expect_response(lambda r: r.url.endswith("/destinations") and r.request.method == "POST") as resp:
        page.get_by_test_id("dest-submit").click()
    assert resp.value.status == 400 and resp.value.json().get("field") == "url"
    assert "recording.roots" in resp.value.json()["message"]
    assert wait_until(5, lambda: "recording.roots" in field_error.text_content())
    assert "elsewhere" not in destinations(stack)
    assert not elsewhere.exists()
