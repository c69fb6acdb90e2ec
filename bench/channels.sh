#!/usr/bin/env bash
# CPU and RSS per channel: 1, 2 and 4 idle channels (fallback on air, 720p30, one destination
# each) and 2 live 720p30 channels (ffmpeg publishing to each), on this machine. Each case runs
# its own onair; CPU is measured over SECONDS_PER_CASE (default 20) after a 5 s settle.
#   PROFILE=release bench/channels.sh
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
secs=${SECONDS_PER_CASE:-20}
start_nginx

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
rss_kib() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }

# run_case N LIVE: onair with N channels, LIVE of them with a publisher
run_case() {
  local n=$1 live=$2 conf="$work/ch-$1-$2.toml" log="$work/ch-$1-$2.log"
  rm -rf "$work/data-$n-$live"
  {
    echo "data_dir = \"$work/data-$n-$live\""
    echo "[ingest]"; echo "rtmp_listen = \"127.0.0.1:$rtmp\""
    echo "[http]"; echo "listen = \"127.0.0.1:$http\""; echo "admin_token = \"$token\""; echo "preview_key = \"$preview_key\""
    echo "[output]"; echo "width = 1280"; echo "height = 720"; echo "fps = 30"; echo "video_bitrate_kbps = 2500"
    for i in $(seq "$n"); do
      echo "[[channel]]"; echo "id = \"c$i\""; echo "keys = [\"bench-key-c$i\"]"
      echo "[[channel.destination]]"; echo "name = \"nginx\""; echo "url = \"rtmp://127.0.0.1:$ngx_rtmp/app/c$i\""
    done
  } > "$conf"
  "$bin" run -c "$conf" > /dev/null 2> "$log" & local pid=$!
  for _ in $(seq 150); do [ "$(grep -c "destination up" "$log")" -ge "$n" ] && break; sleep 0.1; done
  local pubs=()
  for i in $(seq "$live"); do
    ffmpeg -hide_banner -loglevel error -re -f lavfi -i "testsrc2=s=1280x720:r=30" -f lavfi -i "sine=f=440:sample_rate=48000" \
      -c:v libx264 -preset ultrafast -tune zerolatency -g 60 -pix_fmt yuv420p -b:v 2500k -c:a aac -b:a 128k \
      -f flv "rtmp://127.0.0.1:$rtmp/live/bench-key-c$i" > /dev/null 2>&1 & pubs+=($!)
  done
  sleep 5
  local t0 c0 t1 c1
  t0=$(date +%s.%N); c0=$(cpu_ticks "$pid")
  sleep "$secs"
  t1=$(date +%s.%N); c1=$(cpu_ticks "$pid")
  local rss; rss=$(rss_kib "$pid")
  for p in "${pubs[@]}"; do kill "$p" 2>/dev/null || true; done
  kill "$pid"; wait "$pid" 2>/dev/null || true
  python3 - "$n" "$live" "$c0" "$c1" "$t0" "$t1" "$rss" <<'PY'
import sys
n, live, c0, c1, t0, t1, rss = sys.argv[1:]
n, live = int(n), int(live)
cores = (float(c1) - float(c0)) / 100 / (float(t1) - float(t0))
what = f"{n} channel(s), {live} live"
print(f"{what:24s} {cores:5.2f} cores  {cores / n:5.2f} per channel   RSS {int(rss) / 1024:6.0f} MiB  {int(rss) / 1024 / n:5.0f} MiB per channel")
PY
}

echo "onair ($profile) channels at 720p30, CPU over ${secs} s ($(nproc) cores):"
run_case 1 0
run_case 2 0
run_case 4 0
run_case 2 2
