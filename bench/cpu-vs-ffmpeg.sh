#!/usr/bin/env bash
# onair's CPU against a plain ffmpeg decode + encode doing the same job, on this machine.
# A pre-encoded 720p30 clip (moving test picture + tone, as OBS would send it) is published to
# onair with `-c copy`; onair decodes, switches, encodes 720p30 H.264 High CBR + AAC and sends
# it to nginx-rtmp. The baseline is one ffmpeg reading the same clip and encoding it with the
# same settings to the same nginx. They run alternately, ROUNDS times, SECONDS each (after a 5 s
# settle); CPU is the process's user + system time (/proc/PID/stat). Prints cores and the ratio.
#   PROFILE=release ROUNDS=3 SECONDS_EACH=20 bench/cpu-vs-ffmpeg.sh
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
rounds=${ROUNDS:-3}
secs=${SECONDS_EACH:-20}
kbps=2500
start_nginx

clip="$work/clip.flv"
ffmpeg -hide_banner -loglevel error -f lavfi -i "testsrc2=s=1280x720:r=30" -f lavfi -i "sine=f=440:sample_rate=48000" \
  -t 30 -c:v libx264 -preset veryfast -b:v 4000k -g 60 -pix_fmt yuv420p -c:a aac -b:a 160k -ar 48000 -ac 2 \
  -f flv "$clip"

cat > "$work/onair.toml" <<CONF
data_dir = "$work/data"
[ingest]
rtmp_listen = "127.0.0.1:$rtmp"
keys = ["bench-key-0001"]
[http]
listen = "127.0.0.1:$http"
admin_token = "$token"
preview_key = "$preview_key"
[output]
width = 1280
height = 720
fps = 30
video_bitrate_kbps = $kbps
audio_bitrate_kbps = 160
keyframe_interval_s = 2
x264_preset = "veryfast"
[[destination]]
name = "nginx"
url = "rtmp://127.0.0.1:$ngx_rtmp/app/onair"
CONF

run_onair() {
  "$bin" run -c "$work/onair.toml" > /dev/null 2> "$work/onair.log" & local pid=$!
  for _ in $(seq 100); do grep -q "destination up" "$work/onair.log" && break; sleep 0.1; done
  ffmpeg -hide_banner -loglevel error -re -stream_loop -1 -i "$clip" -c copy -f flv \
    "rtmp://127.0.0.1:$rtmp/live/bench-key-0001" > /dev/null 2>&1 & local pub=$!
  for _ in $(seq 100); do grep -q 'to="live"' "$work/onair.log" && break; sleep 0.1; done
  cores_used "$pid" "$secs"
  kill "$pub" "$pid" 2>/dev/null || true; wait "$pub" "$pid" 2>/dev/null || true
}

run_ffmpeg() {
  ffmpeg -hide_banner -loglevel error -re -stream_loop -1 -i "$clip" \
    -c:v libx264 -preset veryfast -tune zerolatency -b:v ${kbps}k -maxrate ${kbps}k -bufsize ${kbps}k \
    -g 60 -keyint_min 60 -sc_threshold 0 -x264-params nal-hrd=cbr:force-cfr=1 -profile:v high -pix_fmt yuv420p \
    -c:a aac -b:a 160k -ar 48000 -ac 2 -f flv "rtmp://127.0.0.1:$ngx_rtmp/app/ffmpeg" > /dev/null 2>&1 & local pid=$!
  cores_used "$pid" "$secs"
  kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true
}

echo "720p30 H.264 veryfast CBR ${kbps} kbit/s + AAC 160 kbit/s, ${secs} s per run, $(nproc) cores ($profile onair)"
o=(); f=()
for r in $(seq "$rounds"); do
  o+=("$(run_onair)"); f+=("$(run_ffmpeg)")
  echo "round $r: onair ${o[-1]} cores, ffmpeg ${f[-1]} cores"
done
python3 - "${o[*]}" "${f[*]}" <<'PY'
import statistics, sys
o = [float(x) for x in sys.argv[1].split()]
f = [float(x) for x in sys.argv[2].split()]
mo, mf = statistics.median(o), statistics.median(f)
print(f"median: onair {mo:.3f} cores, ffmpeg {mf:.3f} cores, ratio onair/ffmpeg {mo / mf:.2f}x")
PY
