#!/usr/bin/env python3
"""A/V sync across switches, measured on the content, not on timestamps.

The publisher (ffmpeg) sends a black picture with one white frame at every whole second and a
silent tone track with a 50 ms 1 kHz beep at the same instants. It comes and goes (`--cycles`,
`--live-s`, `--off-s`; the fault: `kill` = SIGKILL, `stall` = SIGSTOP then SIGCONT, `quit` = a
clean `q`, so the publisher unpublishes). A recorder copies what a viewer
receives (`--read-url`, e.g. onair's preview.flv or the platform's RTMP URL) to a file; afterwards
every flash (video PTS of a white frame after a dark one) is paired with the beep onset nearest to
it (within 300 ms) and their offset, beep minus flash, is the A/V sync of that second of output.

Prints one line per cycle (median offset of its flashes) and a summary: the offset's median,
spread, and the drift: the median over the last cycle minus the median over the first. A relay
that keeps lip sync shows the same offset in every cycle (the publisher's own, within an audio
frame); a timeline that slips at each switch shows the drift grow.
Needs: python3, ffmpeg and ffprobe on PATH.
"""
import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time

RATE = 48000


def publisher(url):
    video = ("color=c=black:s=640x360:r=30,"
             "drawbox=x=0:y=0:w=iw:h=ih:color=white:t=fill:enable='lt(mod(t,1),0.02)'")
    audio = f"aevalsrc='if(lt(mod(t,1),0.05),0.8*sin(2*PI*1000*t),0)':s={RATE}"
    return subprocess.Popen(
        ["ffmpeg", "-hide_banner", "-loglevel", "error", "-re", "-f", "lavfi", "-i", video,
         "-re", "-f", "lavfi", "-i", audio, "-c:v", "libx264", "-preset", "ultrafast",
         "-tune", "zerolatency", "-g", "30", "-pix_fmt", "yuv420p", "-c:a", "aac", "-b:a", "96k",
         "-f", "flv", url],
        stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def flashes(path):
    """Video PTS (s) of every white frame that follows a dark one."""
    pts = subprocess.run(
        ["ffprobe", "-v", "error", "-select_streams", "v", "-show_entries", "frame=pts_time",
         "-of", "csv=p=0", path], capture_output=True, text=True, check=True).stdout.split()
    pts = [p.split(",")[0] for p in pts]
    raw = subprocess.run(
        ["ffmpeg", "-v", "error", "-i", path, "-map", "0:v", "-fps_mode", "passthrough",
         "-vf", "scale=32:18,format=gray", "-f", "rawvideo", "-"],
        capture_output=True, check=True).stdout
    size = 32 * 18
    means = [sum(raw[i:i + size]) / size for i in range(0, len(raw) - size + 1, size)]
    n = min(len(pts), len(means))
    out, dark = [], True
    for t, m in zip(pts[:n], means[:n]):
        if m > 128 and dark:
            out.append(float(t))
        dark = m < 64
    return out


def beeps(path):
    """Audio PTS (s) of every beep onset: the first ms above the threshold after 200 ms quiet."""
    raw = subprocess.run(
        ["ffmpeg", "-v", "error", "-i", path, "-map", "0:a", "-af",
         "aresample=async=1:first_pts=0", "-ac", "1", "-ar", str(RATE), "-f", "s16le", "-"],
        capture_output=True, check=True).stdout
    samples = memoryview(raw).cast("h")
    block = RATE // 1000
    out, quiet = [], 1000
    for b in range(len(samples) // block):
        peak = max(abs(s) for s in samples[b * block:(b + 1) * block])
        if peak > 8000:
            if quiet >= 200:
                out.append(b / 1000)
            quiet = 0
        else:
            quiet += 1
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--publish-url", required=True)
    ap.add_argument("--read-url", required=True)
    ap.add_argument("--cycles", type=int, default=10)
    ap.add_argument("--live-s", type=float, default=8)
    ap.add_argument("--off-s", type=float, default=3)
    ap.add_argument("--fault", choices=["kill", "stall", "quit"], default="kill")
    a = ap.parse_args()

    work = tempfile.mkdtemp()
    rec_path = os.path.join(work, "rec.flv")
    rec = subprocess.Popen(["ffmpeg", "-hide_banner", "-loglevel", "error", "-i", a.read_url,
                            "-c", "copy", "-f", "flv", rec_path],
                           stdin=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(3)
    start = time.monotonic()
    windows = []  # (from, to) in seconds since the recording started, one per cycle
    for _ in range(a.cycles):
        p = publisher(a.publish_url)
        t0 = time.monotonic() - start
        time.sleep(a.live_s)
        if a.fault == "kill":
            p.kill()
        elif a.fault == "quit":
            p.communicate(b"q", timeout=10)
        else:
            p.send_signal(signal.SIGSTOP)
        windows.append((t0, time.monotonic() - start))
        time.sleep(a.off_s)
        if a.fault == "stall":
            p.send_signal(signal.SIGCONT)
            p.kill()
        p.wait()
    time.sleep(2)
    rec.send_signal(signal.SIGINT)
    rec.wait(timeout=10)

    v, b = flashes(rec_path), beeps(rec_path)
    pairs = []
    for f in v:
        near = min(b, key=lambda x: abs(x - f), default=None)
        if near is not None and abs(near - f) <= 0.3:
            pairs.append((f, near - f))
    if not pairs:
        print(f"FAIL: no flash/beep pairs ({len(v)} flashes, {len(b)} beeps)")
        return 1
    # cycles on the output's timeline: a pause of over 1.5 s between flashes starts a new one
    cycles, last = [], None
    for f, off in pairs:
        if last is None or f - last > 1.5:
            cycles.append([])
        cycles[-1].append(off * 1000)
        last = f
    for i, c in enumerate(cycles, 1):
        print(f"cycle {i}: {len(c)} seconds, A/V offset median {statistics.median(c):+.1f} ms "
              f"(min {min(c):+.1f}, max {max(c):+.1f})")
    offs = [o * 1000 for _, o in pairs]
    drift = statistics.median(cycles[-1]) - statistics.median(cycles[0])
    print(f"{len(pairs)} flashes paired over {len(cycles)} cycles ({len(v)} flashes, {len(b)} "
          f"beeps): A/V offset (beep - flash) median {statistics.median(offs):+.1f} ms, min "
          f"{min(offs):+.1f}, max {max(offs):+.1f}; drift last cycle - first {drift:+.1f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
