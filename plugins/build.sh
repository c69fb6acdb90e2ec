#!/usr/bin/env bash
# Builds every plugin as a WebAssembly component (wasm32-wasip2, release) and lists the results.
# Outputs: ../target/plugins/wasm32-wasip2/release/*.wasm (the target and target dir are set in
# .cargo/config.toml). Needs the target: rustup target add wasm32-wasip2
set -euo pipefail
cd "$(dirname "$0")"
if command -v rustup >/dev/null && ! rustup target list --installed | grep -qx wasm32-wasip2; then
    rustup target add wasm32-wasip2
fi
cargo build --release "$@"
out=../target/plugins/wasm32-wasip2/release
for wasm in "$out"/*.wasm; do
    printf '%10d  %s\n' "$(wc -c <"$wasm")" "$(realpath "$wasm")"
done
