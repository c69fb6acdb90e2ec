#!/usr/bin/env bash
# CPU cost of a visible overlay: two onair instances run side by side for $SECONDS_RUN seconds at
# 1280x720@30 on the slate, one with the scoreboard layer shown, one without, and the script prints
# both CPU figures (cores) and their ratio. Needs plugins/build.sh to have run.
#
#   bench/overlay-cpu.sh            # debug build, as the tests use
#   PROFILE=release bench/overlay-cpu.sh
#   PUBLISH=1 PROFILE=release bench/overlay-cpu.sh   # each instance also ingests a live 720p30 feed
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
profile=${PROFILE:-debug}
run_s=${SECONDS_RUN:-20}
if [ "$profile" = release ]; then cargo build -q --release -p onair; else cargo build -q -p onair; fi
bin=$root/target/$profile/onair
wasm=$root/target/plugins/wasm32-wasip2/release/scoreboard.wasm
[ -f "$wasm" ] || { echo "missing $wasm: run plugins/build.sh"; exit 2; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

started=""
start() { # name overlay(0/1); sets $started to the pid
  local d=$work/$1; mkdir -p "$d/scripts" "$d/plugins"
  cp "$root/scripts/failover.lua" "$d/scripts/"
  cp "$wasm" "$d/plugins/"
  if [ "$2" = 1 ]; then
    cat > "$d/scripts/overlay.lua" <<'LUA'
onair.after(0, function()
  onair.overlay.set("scoreboard", { plugin = "scoreboard", x = 40, y = 40, width = 840, height = 132,
    data = { home = { name = "IND", score = "187/4" }, away = { name = "AUS", score = 154 }, clock = "18.3 ov" } })
  onair.overlay.text("lower-third", "onair overlay benchmark", { x = 40, y = 620, size = 44 })
end)
LUA
  fi
  local rtmp_port; rtmp_port=$(free_port)
  cat > "$d/onair.toml" <<CONF
[ingest]
rtmp_listen = "127.0.0.1:$rtmp_port"
[http]
listen = "127.0.0.1:$(free_port)"
[output]
width = 1280
height = 720
CONF
  (cd "$d" && exec "$bin" run -c onair.toml > /dev/null 2> onair.log) &
  started=$!
  pids+=("$started")
  if [ "${PUBLISH:-0}" = 1 ]; then
    sleep 1
    ffmpeg -hide_banner -loglevel error -re -f lavfi -i "testsrc2=s=1280x720:r=30" -c:v libx264 \
      -preset ultrafast -tune zerolatency -g 30 -b:v 2500k -pix_fmt yuv420p -f flv \
      "rtmp://127.0.0.1:$rtmp_port/live/bench-key-0001" > /dev/null 2>&1 &
    pids+=($!)
  fi
}
cpu() { awk '{print $14+$15}' "/proc/$1/stat"; }
start plain 0; plain=$started
start overlay "${OVERLAY:-1}"; overlay=$started
sleep 5  # warm up: start-up and the first render are not the steady state
grep -q "overlay layer not shown" "$work/overlay/onair.log" && { echo "the overlay failed:"; grep overlay "$work/overlay/onair.log"; exit 1; }
a0=$(cpu "$plain"); b0=$(cpu "$overlay"); t0=$(date +%s.%N)
sleep "$run_s"
a1=$(cpu "$plain"); b1=$(cpu "$overlay"); t1=$(date +%s.%N)
python3 - "$a0" "$a1" "$b0" "$b1" "$t0" "$t1" "$(getconf CLK_TCK)" <<'PY'
import sys
a0,a1,b0,b1,t0,t1,hz = map(float, sys.argv[1:])
wall = t1 - t0
plain = (a1 - a0) / hz / wall
over = (b1 - b0) / hz / wall
feed = "a live 720p30 feed" if __import__("os").environ.get("PUBLISH") == "1" else "the slate"
print(f"without overlay: {plain:.3f} cores; with scoreboard + text overlay: {over:.3f} cores; ratio {over/plain:.3f} ({(over/plain-1)*100:+.1f} %) over {wall:.0f} s at 1280x720@30 on {feed}")
PY
