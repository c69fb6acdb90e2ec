#!/usr/bin/env bash
# The stream under HTTP load: a publisher is live (switchmeter's viewer watches the platform)
# while 200 clients poll /api/status and 50 hold /api/events open for SECONDS (default 60).
# Prints the API latency (p50/p99/max) and switchmeter's line, whose "max delivery pause" is
# the longest wait between two frames at the viewer during the load.
#   bench/http-load.sh        PROFILE=release SECONDS_LOAD=60 bench/http-load.sh
#   AUTH=session: the clients use a control-room login (session cookie) instead of the token
set -euo pipefail
cd "$(dirname "$0")/.."
meter=${SWITCHMETER:-$(pwd)/../shared/tools/switchmeter}
secs=${SECONDS_LOAD:-60}
EXTRA_TOML="max_sse_clients = 64"
. bench/lib.sh
start_nginx
start_onair
# one cycle: live for the load's length (+ margins), then a clean quit
"$meter" --publish-url "rtmp://127.0.0.1:$rtmp/live/bench-key-0001" \
  --read-url "rtmp://127.0.0.1:$ngx_rtmp/app/out" --fault quit --cycles 1 \
  --live-s "$((secs + 10))" --off-s 2 --relay-pid "$onair_pid" > "$work/meter.out" 2>&1 &
meter_pid=$!
for _ in $(seq 200); do grep -q "switched" "$work/onair.log" && break; sleep 0.1; done
sleep 3
auth=()
if [ "${AUTH:-token}" = session ]; then
  echo "bench-password-0123" | "$bin" user add bench -c "$work/onair.toml" > /dev/null
  cookie=$(curl -s -c - -H "Content-Type: application/json" \
    --data-binary '{"name":"bench","password":"bench-password-0123"}' \
    "http://127.0.0.1:$http/api/login" | awk '/onair_session/ {print $NF}')
  [ -n "$cookie" ] || { echo "login failed"; exit 1; }
  auth=(--cookie "$cookie")
fi
echo "clients authenticate with: ${AUTH:-token}"
python3 bench/httpload.py "$http" "$token" --clients 200 --sse 50 --seconds "$secs" "${auth[@]}"
wait "$meter_pid" || true
echo "stream during the load: $(tail -n 1 "$work/meter.out")"
sed '$d' "$work/meter.out" | python3 -c 'import json,sys
try: [print("  error:", e) for e in json.load(sys.stdin).get("errors", [])]
except ValueError: pass'
