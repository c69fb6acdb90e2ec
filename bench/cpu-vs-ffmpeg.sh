#!/usr/bin/env bash
# onair's CPU against a plain ffmpeg decode + encode doing the same job, on this machine.
# A pre-encoded clip (moving test picture + tone, as OBS would send it) is published to onair with
# `-c copy`; onair decodes, switches, encodes H.264 High CBR + AAC and sends it to nginx-rtmp. The
# baseline is one ffmpeg reading the same clip and encoding it with the same settings to the same
# nginx. They run alternately, ROUNDS times, SECONDS_EACH each (after a 5 s settle); CPU is the
# process's user + system time (/proc/PID/stat). Prints cores and the ratio.
#   CASE=one: a 720p30 clip, one 720p30 2500 kbit/s encode (default)
#   CASE=copy: a 720p30 clip, onair in copy mode (`output.mode = "copy"`) against an
#             `ffmpeg -c copy` relay taking the same publish over RTMP; then onair's idle cost in
#             copy mode (started, nobody publishing: the fallback GOP looped) for SECONDS_EACH
#   CASE=two: a 1080p30 clip, two encodes: 1080p30 6000 kbit/s and a 720p30 3000 kbit/s profile
#             (ffmpeg: one process, the decoded picture split and scaled, two x264 + two AAC)
#   FFMPEG_THREADS=1: ffmpeg's decoder and x264 on one thread each, as onair runs them up to
#             1080p30 (the default is ffmpeg's own thread choice)
#   FFMPEG_INPUT=rtmp: ffmpeg takes the clip as onair does, published to it over RTMP
#             (`-listen 1`, the same `-c copy` publisher), so both pay for the ingest; the
#             default reads the file itself
#   PROFILE=release ROUNDS=3 SECONDS_EACH=20 bench/cpu-vs-ffmpeg.sh
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
rounds=${ROUNDS:-3}
secs=${SECONDS_EACH:-20}
case_=${CASE:-one}
x264="-preset veryfast -tune zerolatency -g 60 -keyint_min 60 -sc_threshold 0 -profile:v high -pix_fmt yuv420p"
aac="-c:a aac -b:a 160k -ar 48000 -ac 2"
dec_threads=(); enc_params="nal-hrd=cbr:force-cfr=1"
if [ "${FFMPEG_THREADS:-}" = 1 ]; then dec_threads=(-threads 1); enc_params="$enc_params:threads=1"; fi
cbr() { echo "-c:v libx264 $x264 -b:v ${1}k -maxrate ${1}k -bufsize ${1}k -x264-params $enc_params"; }
ff_rtmp=$(free_port)
# the baseline's input: the clip itself, or its publish
ffmpeg_in() {
  if [ "${FFMPEG_INPUT:-file}" = rtmp ]; then
    echo "-listen 1 -i rtmp://127.0.0.1:$ff_rtmp/live/bench-key-0001"
  else
    echo "-re -stream_loop -1 -i $clip"
  fi
}
start_nginx

if [ "$case_" = two ]; then
  size=1920x1080; width=1920; height=1080; kbps=6000; clip_kbps=8000
  what="1080p30 6000 kbit/s + 720p30 3000 kbit/s (two encodes)"
  profile_toml='[profile.small]
width = 1280
height = 720
fps = 30
video_bitrate_kbps = 3000
audio_bitrate_kbps = 160
keyframe_interval_s = 2
x264_preset = "veryfast"'
  second_dest="[[destination]]
name = \"nginx-720\"
url = \"rtmp://127.0.0.1:$ngx_rtmp/app/onair720\"
profile = \"small\""
  ffmpeg_out() {
    # shellcheck disable=SC2046
    ffmpeg -hide_banner -loglevel error "${dec_threads[@]}" $(ffmpeg_in) \
      -filter_complex "[0:v]split=2[a][b];[b]scale=1280:720[c]" \
      -map "[a]" -map 0:a $(cbr 6000) $aac -f flv "rtmp://127.0.0.1:$ngx_rtmp/app/ffmpeg" \
      -map "[c]" -map 0:a $(cbr 3000) $aac -f flv "rtmp://127.0.0.1:$ngx_rtmp/app/ffmpeg720" \
      > /dev/null 2>&1 &
  }
elif [ "$case_" = copy ]; then
  size=1280x720; width=1280; height=720; kbps=2500; clip_kbps=4000
  what="720p30 copy mode (the publisher's 4000 kbit/s H.264 + AAC forwarded) against ffmpeg -c copy"
  profile_toml='mode = "copy"'; second_dest=""
  FFMPEG_INPUT=rtmp
  ffmpeg_out() {
    # shellcheck disable=SC2046
    ffmpeg -hide_banner -loglevel error $(ffmpeg_in) -c copy -f flv \
      "rtmp://127.0.0.1:$ngx_rtmp/app/ffmpeg" > /dev/null 2>&1 &
  }
else
  size=1280x720; width=1280; height=720; kbps=2500; clip_kbps=4000
  what="720p30 H.264 veryfast CBR 2500 kbit/s + AAC 160 kbit/s"
  profile_toml=""; second_dest=""
  ffmpeg_out() {
    # shellcheck disable=SC2046
    ffmpeg -hide_banner -loglevel error "${dec_threads[@]}" $(ffmpeg_in) \
      $(cbr $kbps) $aac -f flv "rtmp://127.0.0.1:$ngx_rtmp/app/ffmpeg" > /dev/null 2>&1 &
  }
fi

clip="$work/clip.flv"
ffmpeg -hide_banner -loglevel error -f lavfi -i "testsrc2=s=$size:r=30" -f lavfi -i "sine=f=440:sample_rate=48000" \
  -t 30 -c:v libx264 -preset veryfast -b:v ${clip_kbps}k -g 60 -pix_fmt yuv420p -c:a aac -b:a 160k -ar 48000 -ac 2 \
  -f flv "$clip"

cat > "$work/onair.toml" <<CONF
data_dir = "$work/data"
[ingest]
rtmp_listen = "127.0.0.1:$rtmp"
keys = ["bench-key-0001"]
[http]
listen = "127.0.0.1:$http"
admin_token = "$token"
preview_key = "$preview_key"
[output]
width = $width
height = $height
fps = 30
video_bitrate_kbps = $kbps
audio_bitrate_kbps = 160
keyframe_interval_s = 2
x264_preset = "veryfast"
$profile_toml
[[destination]]
name = "nginx"
url = "rtmp://127.0.0.1:$ngx_rtmp/app/onair"
$second_dest
CONF

run_onair() {
  "$bin" run -c "$work/onair.toml" > /dev/null 2> "$work/onair.log" & local pid=$!
  for _ in $(seq 100); do grep -q "destination up" "$work/onair.log" && break; sleep 0.1; done
  ffmpeg -hide_banner -loglevel error -re -stream_loop -1 -i "$clip" -c copy -f flv \
    "rtmp://127.0.0.1:$rtmp/live/bench-key-0001" > /dev/null 2>&1 & local pub=$!
  for _ in $(seq 100); do grep -q 'to="live"' "$work/onair.log" && break; sleep 0.1; done
  cores_used "$pid" "$secs"
  kill "$pub" "$pid" 2>/dev/null || true; wait "$pub" "$pid" 2>/dev/null || true
}

run_ffmpeg() {
  ffmpeg_out; local pid=$! pub=
  if [ "${FFMPEG_INPUT:-file}" = rtmp ]; then
    sleep 1 # ffmpeg listening (a probe would take its one connection)
    ffmpeg -hide_banner -loglevel error -re -stream_loop -1 -i "$clip" -c copy -f flv \
      "rtmp://127.0.0.1:$ff_rtmp/live/bench-key-0001" > /dev/null 2>&1 & pub=$!
  fi
  cores_used "$pid" "$secs"
  kill $pub "$pid" 2>/dev/null || true; wait $pub "$pid" 2>/dev/null || true
}

echo "$what, ${secs} s per run, $(nproc) cores ($profile onair; ffmpeg threads: ${FFMPEG_THREADS:-auto}, input: ${FFMPEG_INPUT:-file})"
o=(); f=()
for r in $(seq "$rounds"); do
  o+=("$(run_onair)"); f+=("$(run_ffmpeg)")
  echo "round $r: onair ${o[-1]} cores, ffmpeg ${f[-1]} cores"
done
if [ "$case_" = copy ]; then
  # idle: started, nobody publishing
  "$bin" run -c "$work/onair.toml" > /dev/null 2> "$work/onair.log" & idle_pid=$!
  for _ in $(seq 100); do grep -q "destination up" "$work/onair.log" && break; sleep 0.1; done
  echo "idle copy-mode channel (fallback GOP looped to nginx): $(cores_used "$idle_pid" "$secs") cores"
  kill "$idle_pid" 2>/dev/null || true; wait "$idle_pid" 2>/dev/null || true
fi
python3 - "${o[*]}" "${f[*]}" <<'PY'
import statistics, sys
o = [float(x) for x in sys.argv[1].split()]
f = [float(x) for x in sys.argv[2].split()]
mo, mf = statistics.median(o), statistics.median(f)
print(f"median: onair {mo:.3f} cores, ffmpeg {mf:.3f} cores, ratio onair/ffmpeg {mo / mf:.2f}x")
PY
