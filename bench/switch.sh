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
#   FAULTS=stall CYCLES=100 LIVE_S=2 OFF_S=2 bench/switch.sh
#   OUTPUT_TOML='mode = "copy"' bench/switch.sh                # copy mode
set -euo pipefail
cd "$(dirname "$0")/.."
meter=${SWITCHMETER:-$(pwd)/../shared/tools/switchmeter}
cycles=${CYCLES:-3}
live_s=${LIVE_S:-5}
off_s=${OFF_S:-5}
[ -x "$meter" ] || { echo "switchmeter not found at $meter (set SWITCHMETER)"; exit 2; }

. bench/lib.sh
start_nginx
start_onair

# switchmeter's publisher sends mono AAC (a lavfi sine); copy mode refuses it on its stereo
# connection (a misfit, by design: OBS sends stereo), so in copy mode the publisher's ffmpeg is
# wrapped to encode stereo (`-ac 2` before the output); the viewer's ffmpeg is left alone
meter_args=()
if printf '%s' "${OUTPUT_TOML:-}" | grep -q copy; then
  cat > "$work/ffmpeg-stereo" <<'SH'
#!/bin/sh
case " $* " in *" -c:a aac "*) last=$(eval echo \${$#}); n=$(($# - 1)); args=""; i=0
  for a in "$@"; do i=$((i + 1)); [ $i -le $n ] && args="$args '$a'"; done
  eval exec ffmpeg $args -ac 2 "'$last'";; esac
exec ffmpeg "$@"
SH
  chmod +x "$work/ffmpeg-stereo"
  meter_args=(--ffmpeg "$work/ffmpeg-stereo")
fi

status=0
for fault in ${FAULTS:-kill stall quit}; do
  out=$("$meter" --publish-url "rtmp://127.0.0.1:$rtmp/live/bench-key-0001" \
        --read-url "rtmp://127.0.0.1:$ngx_rtmp/app/out" --fault "$fault" --cycles "$cycles" \
        --live-s "$live_s" --off-s "$off_s" --relay-pid "$onair_pid" "${meter_args[@]}" 2>&1) || status=1
  cpu=$(printf '%s\n' "$out" | sed -n 's/.*"relay_cpu_cores": \([0-9.]*\).*/\1/p')
  skew=$(printf '%s\n' "$out" | sed -n 's/.*"av_end_skew_ms": \(-*[0-9.]*\).*/\1/p')
  rss=$(awk '/VmRSS/ {print $2}' "/proc/$onair_pid/status" 2>/dev/null)
  echo "$fault: $(printf '%s\n' "$out" | tail -n 1); A/V skew at the end ${skew:-?} ms; relay cpu ${cpu:-?} cores; RSS ${rss:-?} KiB"
  # switchmeter's errors, if any, from its JSON report (every line but the last)
  printf '%s\n' "$out" | sed '$d' | python3 -c 'import json,sys
try: [print("  error:", e) for e in json.load(sys.stdin).get("errors", [])]
except ValueError: pass'
done
reconnects=$(grep -c "destination up" "$work/onair.log" || true)
echo "output connections opened during the run: $reconnects (1 = never re-opened)"
[ "$reconnects" = 1 ] || status=1
exit $status
