"""Measures, printed (run with -s), not asserted tightly: onair's CPU with 0 and with 5 dashboards
open, and how far the preview lags behind what the platform gets."""

import os
import subprocess
import threading
import time

from conftest import login, wait_playing, wait_until

WINDOW_S = 20
PAGES = 5
TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid):
    """utime + stime of process `pid`, in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK  # fields 14 and 15 of stat(5)


def cores_over(pid, seconds):
    c0, t0 = cpu_seconds(pid), time.monotonic()
    time.sleep(seconds)
    return (cpu_seconds(pid) - c0) / (time.monotonic() - t0)


def video_time(page):
    return page.evaluate("document.querySelector('[data-testid=preview-default]').currentTime")


class PlatformViewer:
    """ffmpeg watching the platform (nginx): the wall-clock time and mean brightness of every frame."""

    W, H = 32, 18

    def __init__(self, procs, url):
        self.frames = []  # (time.time(), brightness)
        self.proc = procs.spawn(
            ["ffmpeg", "-hide_banner", "-loglevel", "error", "-fflags", "nobuffer", "-flags", "low_delay",
             "-i", url, "-vf", f"scale={self.W}:{self.H}", "-f", "rawvideo", "-pix_fmt", "gray", "-"],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        n = self.W * self.H
        while True:
            buf = self.proc.stdout.read(n)
            if len(buf) < n:
                return
            self.frames.append((time.time(), sum(buf) / n))


SAMPLER = """() => {
  const v = document.querySelector('[data-testid=preview-default]');
  const c = document.createElement('canvas');
  c.width = 32; c.height = 18;
  const g = c.getContext('2d', { willReadFrequently: true });
  window.__frames = [];
  const each = () => {
    g.drawImage(v, 0, 0, c.width, c.height);
    const d = g.getImageData(0, 0, c.width, c.height).data;
    let sum = 0;
    for (let i = 0; i < d.length; i += 4) sum += (d[i] + d[i + 1] + d[i + 2]) / 3;
    window.__frames.push([Date.now() / 1000, sum / (d.length / 4)]);
    v.requestVideoFrameCallback(each);
  };
  v.requestVideoFrameCallback(each);
}"""


def first_dark(frames, after):
    """Time of the first frame after `after` as dark as the slate (testsrc is bright)."""
    return next((t for t, b in frames if t >= after and b < 60), None)


def test_measure_cpu_and_preview_latency(browser, page, stack):
    pid = stack.onair.proc.pid
    # for the latency, at the end: a viewer of the platform, started now as it takes seconds to
    # show its first frame (it reads from nginx: onair's work is the same in both windows)
    viewer = PlatformViewer(stack.procs, stack.nginx.url("app", "main"))
    time.sleep(1)  # past the stack's start
    idle = cores_over(pid, WINDOW_S)

    # 5 dashboards in one browser, each in a context of its own: the tabs of one context share
    # 3 preview slots (6 connections per browser profile and host, see dashboard.js)
    login(page, stack.base)
    contexts = [browser.new_context(viewport={"width": 1280, "height": 720}) for _ in range(PAGES - 1)]
    pages = [page]
    for ctx in contexts:
        ctx.add_cookies(page.context.cookies())
        pages.append(ctx.new_page())
    for p in pages[1:]:
        p.goto(stack.base + "/#/", wait_until="commit")
    for p in pages:
        wait_playing(p, "default", 60000)
    time.sleep(1)
    t0 = [video_time(p) for p in pages]
    watched = cores_over(pid, WINDOW_S)
    played = [video_time(p) - a for p, a in zip(pages, t0)]
    print(f"\nonair CPU over {WINDOW_S} s: 0 dashboards {idle:.3f} cores, {PAGES} dashboards {watched:.3f} cores,"
          f" ratio {watched / idle:.2f} (+{(watched - idle) / PAGES:.3f} cores per dashboard)")
    print(f"preview seconds played per page in the window: {[round(x, 1) for x in played]}")
    assert idle > 0 and watched > 0
    assert all(x > WINDOW_S / 4 for x in played), f"a preview stalled while measured: {played}"
    for ctx in contexts:
        ctx.close()

    # latency: a switch to the slate, seen by the preview and by a viewer of the platform
    page.evaluate(SAMPLER)
    assert wait_until(20, lambda: len(viewer.frames) > 30 and viewer.frames[-1][1] > 80, 0.2), \
        f"the platform viewer sees no testsrc: {viewer.frames[-3:]}"
    assert wait_until(5, lambda: page.evaluate("window.__frames.length") > 30, 0.2), "no preview frames"
    switched = time.time()
    status, _ = stack.onair.call("POST", "/api/channels/default/switch", {"source": "fallback"})
    assert status in (200, 202), status
    wait_until(15, lambda: first_dark(viewer.frames, switched)
               and first_dark(page.evaluate("window.__frames"), switched), 0.2)
    platform = first_dark(viewer.frames, switched)
    preview = first_dark(page.evaluate("window.__frames"), switched)
    if platform and preview:
        print(f"slate after the switch: on the platform (ffmpeg viewer) {platform - switched:.2f} s,"
              f" in the preview {preview - switched:.2f} s: the preview is {preview - platform:+.2f} s"
              " behind the platform")
    else:
        print(f"latency not measured: platform {platform}, preview {preview}")
