# Shared by the bench scripts: a private nginx-rtmp as the platform and onair around it, on free
# loopback ports, cleaned up on exit. Source it after `cd` to the repository root.
#   PROFILE=release|debug (default debug); EXTRA_TOML: more onair config after [http]
#   BENCH_BIN=PATH: run that onair binary instead (an A/B against another build; not ONAIR_*,
#   which onair reads as config)
root=$(pwd)
profile=${PROFILE:-debug}
if [ "$profile" = release ]; then cargo build -q --release -p onair; else cargo build -q -p onair; fi
bin=${BENCH_BIN:-$root/target/$profile/onair}

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
work=$(mktemp -d)
ngx_rtmp=$(free_port); ngx_http=$(free_port); rtmp=$(free_port); http=$(free_port)
token=bench-admin-token-0123456789
preview_key=bench-preview-key-0123
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true
  # onair gone before its time: say why
  if [ -n "${onair_pid:-}" ] && [ -s "$work/onair.log" ] && grep -qE "panicked| ERROR " "$work/onair.log"; then
    echo "onair's log (errors):" >&2; grep -E "panicked| ERROR " "$work/onair.log" | tail -5 >&2
  fi
  rm -rf "$work"
}
trap cleanup EXIT

# start_nginx: the platform, with /stat on $ngx_http
start_nginx() {
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
}

# restart_nginx: stops the platform and starts it again on the same ports
restart_nginx() {
  kill "$(cat "$work/nginx/nginx.pid")" 2>/dev/null || true
  sleep 1
  nginx -p "$work/nginx" -c "$work/nginx/nginx.conf" & pids+=($!)
}

# start_onair: onair with key bench-key-0001, 640x360, stall_timeout_ms 500, the repo's scripts,
# one destination on the nginx; sets $onair_pid and waits for the destination.
# FALLBACK_TOML: more keys for its [fallback] table (e.g. media = "/path/slate.png");
# OUTPUT_TOML: more keys for its [output] table (e.g. mode = "copy")
start_onair() {
  cat > "$work/onair.toml" <<CONF
data_dir = "$work/data"
[ingest]
rtmp_listen = "127.0.0.1:$rtmp"
keys = ["bench-key-0001"]
[fallback]
stall_timeout_ms = 500
${FALLBACK_TOML:-}
[output]
width = 640
height = 360
video_bitrate_kbps = 1000
${OUTPUT_TOML:-}
[http]
listen = "127.0.0.1:$http"
admin_token = "$token"
preview_key = "bench-preview-key-0123"
${EXTRA_TOML:-}
[scripts]
dir = "$root/scripts"
[[destination]]
name = "nginx"
url = "rtmp://127.0.0.1:$ngx_rtmp/app/out"
CONF
  "$bin" run -c "$work/onair.toml" > /dev/null 2> "$work/onair.log" & onair_pid=$!; pids+=($onair_pid)
  for _ in $(seq 100); do grep -q "destination up" "$work/onair.log" && break; sleep 0.1; done
}


# cores_used PID SECS: the cores PID uses (user + system time, /proc/PID/stat) over SECS, after
# a 5 s settle. PERF_STAT=1: also prints (stderr) perf's counts of context switches, page faults
# and CPU migrations per second over the same window. PERF_RECORD=DIR: also records a perf
# profile of the window to DIR/PID.data (read it with `perf report -i … --sort dso`),
# PERF_RECORD_ARGS: more `perf record` options (e.g. `-g`).
cores_used() {
  sleep 5
  local c0 t0 c1 t1
  c0=$(awk '{print $14 + $15}' "/proc/$1/stat"); t0=$(date +%s.%N)
  if [ -n "${PERF_STAT:-}" ]; then
    perf stat -x, -e context-switches,page-faults,cpu-migrations -p "$1" -- sleep "$2" 2>&1 \
      | awk -F, -v s="$2" -v p="$1" '$3 != "" { printf "  pid %s: %s %.0f/s\n", p, $3, $1 / s }' >&2
  elif [ -n "${PERF_RECORD:-}" ]; then
    mkdir -p "$PERF_RECORD"
    perf record -q ${PERF_RECORD_ARGS:-} -o "$PERF_RECORD/$1.data" -p "$1" -- sleep "$2" > /dev/null 2>&1
  else
    sleep "$2"
  fi
  c1=$(awk '{print $14 + $15}' "/proc/$1/stat"); t1=$(date +%s.%N)
  python3 -c "print(f'{($c1 - $c0) / 100 / ($t1 - $t0):.3f}')"
}
