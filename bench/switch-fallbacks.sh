#!/usr/bin/env bash
# The delivery pause at a switch for every kind of fallback: bench/switch.sh (switchmeter around
# onair and nginx-rtmp, faults kill and stall) once with the built-in slate, once with a PNG image
# and once with a looping video clip (H.264 + AAC, 4 s) as [fallback] media. Prints, per kind,
# switchmeter's summary for each fault; "max delivery pause" is the longest wait between two
# frames arriving at the viewer, and a kill's to_fallback time is the output latency (the
# disconnect is seen at once, so the rest is the path from the switch to the viewer).
#   PROFILE=release CYCLES=5 bench/switch-fallbacks.sh
set -euo pipefail
cd "$(dirname "$0")/.."
media=$(mktemp -d)
trap 'rm -rf "$media"' EXIT
ffmpeg -hide_banner -loglevel error -f lavfi -i "testsrc2=s=640x360" -frames:v 1 "$media/still.png"
ffmpeg -hide_banner -loglevel error -f lavfi -i "smptebars=s=640x360:r=30" -f lavfi -i "sine=f=880:sample_rate=48000" \
  -t 4 -c:v libx264 -preset veryfast -g 30 -pix_fmt yuv420p -c:a aac -b:a 128k -shortest "$media/loop.mp4"
for kind in slate image video; do
  case $kind in
    slate) toml="" ;;
    image) toml="media = \"$media/still.png\"" ;;
    video) toml="media = \"$media/loop.mp4\"" ;;
  esac
  echo "== fallback: $kind"
  FALLBACK_TOML="$toml" FAULTS="${FAULTS:-kill stall}" CYCLES="${CYCLES:-3}" bash bench/switch.sh || echo "($kind: switch.sh reported a failure)"
done
