#!/usr/bin/env bash
# What each output costs: one channel at 720p30 with a live publisher (ffmpeg, 720p30) and
#   base       one destination (the channel's encode)
#   +recording the same, plus a recording of that encode (fragmented MP4, no second encode)
#   +profile   the same as base, plus a destination with a 640x360@30 1000 kbit/s profile
#              (a second encoder after the one switch)
# Cases alternate (ROUNDS, default 2) so that machine noise spreads over all of them; CPU is
# measured over SECONDS_PER_CASE (default 20) after a 5 s settle. Prints cores and the ratio to
# the base measured in the same run.
#   PROFILE=release bench/outputs.sh
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
secs=${SECONDS_PER_CASE:-20}
rounds=${ROUNDS:-2}
start_nginx

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

# run_case NAME EXTRA_DESTINATION_TOML → prints cores
run_case() {
  local name=$1 extra=$2 conf="$work/$1.toml" log="$work/$1.log"
  rm -rf "$work/data-$name" "$work/rec"
  cat > "$conf" <<CONF
data_dir = "$work/data-$name"
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
video_bitrate_kbps = 2500
[profile.sd]
width = 640
height = 360
video_bitrate_kbps = 1000
[[destination]]
name = "nginx"
url = "rtmp://127.0.0.1:$ngx_rtmp/app/$name"
$extra
CONF
  "$bin" run -c "$conf" > /dev/null 2> "$log" & local pid=$!
  for _ in $(seq 150); do grep -q "rtmp ingest ready" "$log" && break; sleep 0.1; done
  ffmpeg -hide_banner -loglevel error -re -f lavfi -i "testsrc2=s=1280x720:r=30" -f lavfi -i "sine=f=440:sample_rate=48000" \
    -c:v libx264 -preset ultrafast -tune zerolatency -g 60 -pix_fmt yuv420p -b:v 2500k -c:a aac -b:a 128k \
    -f flv "rtmp://127.0.0.1:$rtmp/live/bench-key-0001" > /dev/null 2>&1 & local pub=$!
  sleep 5
  if ! kill -0 "$pid" 2>/dev/null; then echo "onair ($name) exited:" >&2; tail -5 "$log" >&2; exit 1; fi
  local t0 c0 t1 c1
  t0=$(date +%s.%N); c0=$(cpu_ticks "$pid")
  sleep "$secs"
  t1=$(date +%s.%N); c1=$(cpu_ticks "$pid")
  kill "$pub" 2>/dev/null || true
  kill "$pid"; wait "$pid" 2>/dev/null || true
  wait "$pub" 2>/dev/null || true
  python3 -c "import sys; print((float(sys.argv[2]) - float(sys.argv[1])) / 100 / (float(sys.argv[4]) - float(sys.argv[3])))" "$c0" "$c1" "$t0" "$t1"
}

declare -A sum
cases=(base +recording +profile)
declare -A extra=(
  [base]=""
  [+recording]=$'[[destination]]\nname = "rec"\nurl = "file://'"$work"'/rec/{utc}.mp4"'
  [+profile]=$'[[destination]]\nname = "sd"\nurl = "rtmp://127.0.0.1:'"$ngx_rtmp"$'/app/sd"\nprofile = "sd"'
)
for r in $(seq "$rounds"); do
  for c in "${cases[@]}"; do
    v=$(run_case "$c" "${extra[$c]}")
    echo "round $r  $c: $v cores"
    sum[$c]=$(python3 -c "print(${sum[$c]:-0} + $v)")
  done
done
echo "onair ($profile), 720p30 live, mean of $rounds rounds of ${secs} s ($(nproc) cores):"
for c in "${cases[@]}"; do
  python3 -c "
b = ${sum[base]} / $rounds; v = ${sum[$c]} / $rounds
print(f'  {\"$c\":11s} {v:5.2f} cores  {v / b:5.2f}x base')"
done
