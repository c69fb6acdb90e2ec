#!/usr/bin/env bash
# Measures what a viewer sees through onair while the publisher fails, with ../shared/tools/switchmeter
# (or $SWITCHMETER): a private nginx-rtmp on free loopback ports is the platform, onair runs with
# stall_timeout_ms = 500, and each fault (kill, stall, quit) runs 3 cycles. Prints switchmeter's
# summary line per fault, the A/V skew at the viewer at the end (video pts − audio pts of the last
# frames: drift accumulated over the run) and the relay's CPU and RSS, and exits non-zero if any
# fault reports FAIL or the output connection was re-opened.
#
#   bench/switch.sh                 # debug build, as the tests use
#   PROFILE=release bench/switch.sh
#   CYCLES=100 LIVE_S=2 OFF_S=2 bench/switch.sh     # the cycle soak (about 25 minutes)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
meter=${SWITCHMETER:-$root/../shared/tools/switchmeter}
profile=${PROFILE:-debug}
cycles=${CYCLES:-3}
live_s=${LIVE_S:-5}
off_s=${OFF_S:-5}
[ -x "$meter" ] || { echo "switchmeter not found at $meter (set SWITCHMETER)"; exit 2; }

if [ "$profile" = release ]; then cargo build -q --release -p onair; else cargo build -q -p onair; fi
bin=$root/target/$profile/onair

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
work=$(mktemp -d)
ngx_rtmp=$(free_port); ngx_http=$(free_port); rtmp=$(free_port); http=$(free_port)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

mkdir -p "$work/nginx/logs" "$work/nginx/tmp"
cat > "$work/nginx/nginx.conf" <<CONF
daemon off;
master_process off;
worker_processes 1;
pid $work/nginx/nginx.pid;
error_log $work/nginx/logs/error.log;
load_module /usr/lib/nginx/modules/ngx_rtmp_module.so;
events { worker_connections 128; }
rtmp { server { listen 127.0.0.1:$ngx_rtmp; application app { live on; } } }
http { access_log off; client_body_temp_path $work/nginx/tmp;
  server { listen 127.0.0.1:$ngx_http; location /stat { rtmp_stat all; } } }
CONF
nginx -p "$work/nginx" -c "$work/nginx/nginx.conf" & pids+=($!)

cat > "$work/onair.toml" <<CONF
data_dir = "$work/data"
[ingest]
rtmp_listen = "127.0.0.1:$rtmp"
keys = ["bench-key-0001"]
[fallback]
stall_timeout_ms = 500
[output]
width = 640
height = 360
video_bitrate_kbps = 1000
[http]
listen = "127.0.0.1:$http"
[scripts]
dir = "$root/scripts"
[[destination]]
name = "nginx"
url = "rtmp://127.0.0.1:$ngx_rtmp/app/out"
CONF
"$bin" run -c "$work/onair.toml" 2> "$work/onair.log" & onair_pid=$!; pids+=($onair_pid)
for _ in $(seq 100); do grep -q "destination up" "$work/onair.log" && break; sleep 0.1; done

status=0
for fault in kill stall quit; do
  out=$("$meter" --publish-url "rtmp://127.0.0.1:$rtmp/live/bench-key-0001" \
        --read-url "rtmp://127.0.0.1:$ngx_rtmp/app/out" --fault "$fault" --cycles "$cycles" \
        --live-s "$live_s" --off-s "$off_s" --relay-pid "$onair_pid" 2>&1) || status=1
  cpu=$(printf '%s\n' "$out" | sed -n 's/.*"relay_cpu_cores": \([0-9.]*\).*/\1/p')
  skew=$(printf '%s\n' "$out" | sed -n 's/.*"av_end_skew_ms": \(-*[0-9.]*\).*/\1/p')
  rss=$(awk '/VmRSS/ {print $2}' "/proc/$onair_pid/status" 2>/dev/null)
  echo "$fault: $(printf '%s\n' "$out" | tail -n 1); A/V skew at the end ${skew:-?} ms; relay cpu ${cpu:-?} cores; RSS ${rss:-?} KiB"
done
reconnects=$(grep -c "destination up" "$work/onair.log" || true)
echo "output connections opened during the run: $reconnects (1 = never re-opened)"
[ "$reconnects" = 1 ] || status=1
exit $status
