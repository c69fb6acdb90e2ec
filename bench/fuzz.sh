#!/usr/bin/env bash
# Runs every fuzz target in fuzz/ for SECONDS_PER_TARGET (default 60) each, starting from the
# seed corpus in fuzz/corpus/<target> (new inputs go to target/fuzz-corpus/<target>; the seeds
# stay as they are), and prints executions and crashes per target. A crash leaves its input in
# fuzz/artifacts/<target>/ and makes this script exit non-zero.
#
# Coverage-guided libFuzzer on the stable toolchain: the targets are built with the same
# SanitizerCoverage flags cargo-fuzz passes (`-Cpasses=sancov-module …`, `--cfg fuzzing`), without
# a sanitizer (safe Rust: a panic or an overflow is the crash). No nightly or cargo-fuzz needed;
# `cargo +nightly fuzz run TARGET` works as well for ASan runs. Each target runs with the stack
# its code runs on in onair (`ulimit -s`: the main thread's stack) and inputs up to 1 MiB.
#   SECONDS_PER_TARGET=600 bench/fuzz.sh            # all targets
#   SECONDS_PER_TARGET=60 bench/fuzz.sh chunk_stream
set -uo pipefail
cd "$(dirname "$0")/.."
secs=${SECONDS_PER_TARGET:-60}
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    targets=(chunk_stream handshake flv_tags config_toml routes)
fi
host=$(rustc -vV | sed -n 's/^host: //p')
flags="-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4"
flags+=" -Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table"
flags+=" -Cllvm-args=-sanitizer-coverage-trace-compares --cfg fuzzing -Cdebug-assertions -Coverflow-checks"
# --target keeps the flags off build scripts and proc macros
(cd fuzz && RUSTFLAGS="$flags" cargo build --release --bins --target "$host" \
    --target-dir ../target/fuzz-stable) || exit 1
bin="target/fuzz-stable/$host/release"
status=0
for t in "${targets[@]}"; do
    work="target/fuzz-corpus/$t"
    mkdir -p "$work" "fuzz/artifacts/$t"
    log=$(mktemp)
    # the stack and input sizes the code really meets: network input is read on a tokio
    # worker (2 MiB stack) and may be as large as the limits allow (a 1 MiB input covers the
    # 16 KiB pre-publish and 64 KiB command caps and a large chunk); the config is the
    # operator's own file, read on the main thread (8 MiB)
    case $t in
        config_toml) stack_kib=8192 max_len=65536 ;;
        *) stack_kib=2048 max_len=1048576 ;;
    esac
    (ulimit -s "$stack_kib" && exec "$bin/$t" "$work" "fuzz/corpus/$t" -max_total_time="$secs" \
        -print_final_stats=1 -max_len="$max_len" -rss_limit_mb=4096 \
        -artifact_prefix="fuzz/artifacts/$t/") >"$log" 2>&1
    rc=$?
    execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1)
    per_s=$(grep -o 'stat::average_exec_per_sec: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1)
    if [ $rc -eq 0 ]; then
        echo "$t: ${execs:-?} executions in ${secs} s (${per_s:-?}/s), 0 crashes (stack ${stack_kib} KiB, max_len $max_len)"
    else
        echo "$t: CRASH after ${execs:-?} executions (exit $rc); input in fuzz/artifacts/$t/"
        grep -m5 -E 'panicked|ERROR|SUMMARY' "$log"
        status=1
    fi
    rm -f "$log"
done
exit $status
