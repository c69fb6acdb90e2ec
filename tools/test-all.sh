#!/usr/bin/env bash
# Runs every test: the WASM plugins are built (the host tests load them), the plugins' own unit
# tests run on the host target, then the workspace's unit, Lua API, WASM host and end-to-end
# tests, then the control room in a real browser (tests/ui: pytest-playwright driving Debian's
# chromium against the binary cargo just built), schemathesis against the API's OpenAPI
# document (tests/api), then 60 s of fuzzing per fuzz target. Run
# tools/setup-debian.sh first (the README's test command does).
set -euo pipefail
cd "$(dirname "$0")/.."
bash plugins/build.sh
host=$(rustc -vV | sed -n 's/^host: //p')
(cd plugins && cargo test --target "$host" --workspace)
cargo test --workspace
cargo build -p onair
.venv/bin/pytest tests/ui -q
# schemathesis against /api/openapi.json: no 5xx with the token or a login, no 2xx without credentials
bash tests/api/schemathesis.sh
# a fuzz smoke: every target, coverage-guided from the seed corpus, 60 s each (bench/fuzz.sh; about 5 minutes in all)
SECONDS_PER_TARGET=60 bash bench/fuzz.sh
