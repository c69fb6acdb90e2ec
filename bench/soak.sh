#!/usr/bin/env bash
# A long show: a publisher that comes and goes every 2 minutes (60 s live, 60 s away, switchmeter
# measuring the viewer) and the platform restarted every 10 minutes, for DURATION_S (default
# 3600). The viewer watches onair's preview (the platform's restarts would cut a viewer there).
# Samples onair's RSS, open file descriptors and threads every 30 s and prints their
# growth after the first 5 minutes, then switchmeter's line for the whole run.
#   bench/soak.sh             DURATION_S=900 PROFILE=release bench/soak.sh
set -euo pipefail
cd "$(dirname "$0")/.."
meter=${SWITCHMETER:-$(pwd)/../shared/tools/switchmeter}
duration=${DURATION_S:-3600}
. bench/lib.sh
start_nginx
start_onair
cycles=$(( duration / 120 ))
"$meter" --publish-url "rtmp://127.0.0.1:$rtmp/live/bench-key-0001" \
  --read-url "http://127.0.0.1:$http/preview.flv?key=$preview_key" --fault kill --cycles "$cycles" \
  --live-s 60 --off-s 60 --max-arrival-gap-ms 15000 --relay-pid "$onair_pid" > "$work/meter.out" 2>&1 &
meter_pid=$!
sample() {
  local rss fds threads
  rss=$(awk '/VmRSS/ {print $2}' "/proc/$onair_pid/status")
  threads=$(awk '/Threads/ {print $2}' "/proc/$onair_pid/status")
  fds=$(ls "/proc/$onair_pid/fd" | wc -l)
  echo "$1 $rss $fds $threads"
}
start=$(date +%s)
next_restart=$(( start + 600 ))
echo "t_s rss_kib fds threads" > "$work/samples"
while kill -0 "$meter_pid" 2>/dev/null; do
  now=$(date +%s)
  sample $(( now - start )) >> "$work/samples"
  if [ "$now" -ge "$next_restart" ]; then
    restart_nginx
    next_restart=$(( now + 600 ))
  fi
  sleep 30
done
wait "$meter_pid" || true
cat "$work/samples"
awk 'NR > 1 && $1 >= 300 && !base { base = $2; f = $3; t = $4 } NR > 1 { last = $2; lf = $3; lt = $4 }
     END { if (base) printf "after 5 min → end: RSS %d → %d KiB (%+.1f %%), fds %d → %d, threads %d → %d\n",
           base, last, (last - base) * 100 / base, f, lf, t, lt }' "$work/samples"
echo "output connections opened: $(grep -c 'destination up' "$work/onair.log") (a platform restart every 10 min re-opens one each time)"
echo "viewer: $(tail -n 1 "$work/meter.out")"
# keep what explains a failure: the bench's folder is removed on exit
keep=${KEEP_DIR:-/tmp/onair-soak-$(date +%Y%m%d-%H%M%S)}
mkdir -p "$keep" && cp "$work/meter.out" "$work/onair.log" "$work/samples" "$keep/" && echo "switchmeter output, onair log and samples kept in $keep"
