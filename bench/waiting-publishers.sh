#!/usr/bin/env bash
# What waiting publishers cost: onair's CPU with one publisher on air and 0 waiting, against the
# same with WAITING (8) more publishers connected to the same channel and waiting their turn
# (the queue example decides: the first stays on air). Every publisher sends the same
# pre-encoded 360p30 clip with `-c copy`, so the publishers themselves cost almost nothing.
# The two cases alternate ROUNDS times, SECONDS_EACH each after a 5 s settle; CPU is onair's
# user + system time (/proc/PID/stat). Prints cores per case and the difference.
#   PROFILE=release ROUNDS=3 SECONDS_EACH=20 WAITING=8 bench/waiting-publishers.sh
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
rounds=${ROUNDS:-3}
secs=${SECONDS_EACH:-20}
waiting=${WAITING:-8}
start_nginx

clip="$work/clip.flv"
ffmpeg -hide_banner -loglevel error -f lavfi -i "testsrc2=s=640x360:r=30" -f lavfi -i "sine=f=440:sample_rate=48000" \
  -t 30 -c:v libx264 -preset veryfast -b:v 1000k -g 60 -pix_fmt yuv420p -c:a aac -b:a 128k -ar 48000 -ac 2 \
  -f flv "$clip"

keys=$(for i in $(seq 0 "$waiting"); do printf '"bench-key-%04d",' "$i"; done)
mkdir -p "$work/scripts"
cp examples/queue/queue.lua examples/queue/failover.lua "$work/scripts/"
cat > "$work/onair.toml" <<CONF
data_dir = "$work/data"
[ingest]
rtmp_listen = "127.0.0.1:$rtmp"
keys = [${keys%,}]
max_connections_per_ip = 16  # every publisher here comes from 127.0.0.1
[http]
listen = "127.0.0.1:$http"
admin_token = "$token"
preview_key = "$preview_key"
[scripts]
dir = "$work/scripts"
[output]
width = 640
height = 360
fps = 30
video_bitrate_kbps = 1000
[[destination]]
name = "nginx"
url = "rtmp://127.0.0.1:$ngx_rtmp/app/onair"
CONF

"$bin" run -c "$work/onair.toml" > /dev/null 2> "$work/onair.log" & onair=$!; pids+=($onair)
for _ in $(seq 100); do grep -q "destination up" "$work/onair.log" && break; sleep 0.1; done
publish() {
  ffmpeg -hide_banner -loglevel error -re -stream_loop -1 -i "$clip" -c copy -f flv \
    "rtmp://127.0.0.1:$rtmp/live/bench-key-$(printf %04d "$1")" > /dev/null 2>&1 & pids+=($!)
  echo $!
}
publish 0 > /dev/null
for _ in $(seq 100); do grep -q 'to="live"' "$work/onair.log" && break; sleep 0.1; done

none=(); some=()
for r in $(seq "$rounds"); do
  none+=("$(cores_used "$onair" "$secs")")
  waiters=()
  for i in $(seq 1 "$waiting"); do waiters+=("$(publish "$i")"); done
  some+=("$(cores_used "$onair" "$secs")")
  decoding=$(curl -s -H "Authorization: Bearer $token" "http://127.0.0.1:$http/api/status" |
    python3 -c 'import json,sys; s=json.load(sys.stdin)["sessions"]; n=sum(x["decoding"] for x in s); print(len(s), "sessions,", n, "decoding")')
  echo "round $r: 0 waiting ${none[-1]} cores; $waiting waiting ${some[-1]} cores ($decoding)"
  kill "${waiters[@]}" 2>/dev/null || true
  sleep 2
done
python3 - "${none[*]}" "${some[*]}" "$waiting" <<'PY'
import sys, statistics as st
a = [float(x) for x in sys.argv[1].split()]; b = [float(x) for x in sys.argv[2].split()]
ma, mb = st.mean(a), st.mean(b)
print(f"onair with 1 on air: {ma:.3f} cores; with {sys.argv[3]} more waiting: {mb:.3f} cores; "
      f"difference {mb - ma:+.3f} cores ({mb / ma:.3f}x)")
PY
