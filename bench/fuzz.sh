#!/usr/bin/env bash
# Runs every fuzz target in fuzz/ for SECONDS (default 60) each, starting from the seed corpus in
# fuzz/corpus/<target> (new inputs go to target/fuzz-corpus/<target>, the seeds stay as they
# are), and prints executions and crashes per target. Needs a nightly toolchain and cargo-fuzz
# (`cargo install cargo-fuzz`). A crash leaves its input in fuzz/artifacts/<target>/ and makes
# this script exit non-zero.
#   SECONDS_PER_TARGET=600 bench/fuzz.sh            # all targets
#   SECONDS_PER_TARGET=60 bench/fuzz.sh chunk_stream
set -uo pipefail
cd "$(dirname "$0")/.."
secs=${SECONDS_PER_TARGET:-60}
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    targets=(chunk_stream handshake flv_tags config_toml routes)
fi
san=${SANITIZER:-none}   # safe Rust: the sanitizer costs speed and finds little; SANITIZER=address to use it
(cd fuzz && cargo +nightly fuzz build -s "$san") || exit 1
status=0
for t in "${targets[@]}"; do
    work="target/fuzz-corpus/$t"
    mkdir -p "$work"
    log=$(mktemp)
    (cd fuzz && cargo +nightly fuzz run -s "$san" "$t" "../$work" "corpus/$t" -- \
        -max_total_time="$secs" -print_final_stats=1 -rss_limit_mb=4096) >"$log" 2>&1
    rc=$?
    execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1)
    per_s=$(grep -o 'stat::average_exec_per_sec: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1)
    if [ $rc -eq 0 ]; then
        echo "$t: ${execs:-?} executions in ${secs} s (${per_s:-?}/s), 0 crashes"
    else
        echo "$t: CRASH after ${execs:-?} executions (exit $rc); input in fuzz/artifacts/$t/"
        grep -m5 -E 'panicked|ERROR|SUMMARY' "$log"
        status=1
    fi
    rm -f "$log"
done
exit $status
