#!/usr/bin/env bash
# A/V sync across switches, on the content (bench/avsync.py): a publisher with a flash and a beep
# every second comes and goes CYCLES times (LIVE_S on air, OFF_S away, FAULT kill|stall|quit); the
# viewer is onair's output at the platform (nginx-rtmp). Prints each cycle's A/V offset and the
# drift from the first cycle to the last.
#   CYCLES=100 PROFILE=release bench/avsync.sh
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
start_nginx
start_onair
python3 bench/avsync.py --publish-url "rtmp://127.0.0.1:$rtmp/live/bench-key-0001" \
  --read-url "rtmp://127.0.0.1:$ngx_rtmp/app/out" --cycles "${CYCLES:-10}" \
  --live-s "${LIVE_S:-8}" --off-s "${OFF_S:-3}" --fault "${FAULT:-kill}"
