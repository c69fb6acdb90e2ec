#!/usr/bin/env bash
# Installs everything onair needs to build and test on a fresh Debian 12 machine.
# Idempotent: safe to run again. Needs root (or sudo) for apt.
set -euo pipefail
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
PKGS=(
  pkg-config build-essential
  libgstreamer1.0-dev libgstreamer-plugins-base1.0-dev libgstreamer-plugins-bad1.0-dev
  gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-bad gstreamer1.0-plugins-ugly
  gstreamer1.0-libav gstreamer1.0-tools gstreamer1.0-x
  ffmpeg nginx-light libnginx-mod-rtmp curl python3 python3-venv fonts-dejavu-core glib-networking
  chromium
)
# Node and npm for the control room's front-end libraries (web/package.json): Debian's packages,
# unless a Node with npm is already installed (e.g. from NodeSource, whose nodejs includes npm)
if ! command -v npm >/dev/null 2>&1; then PKGS+=(nodejs npm); fi
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  $SUDO apt-get update
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y --no-install-recommends "${missing[@]}"
fi
# the packaged nginx starts a system instance on :80; tests run their own private nginx instead
$SUDO systemctl disable --now nginx >/dev/null 2>&1 || true
# WASM plugins (plugins/) build for the component-model target
if command -v rustup >/dev/null 2>&1; then
  rustup target list --installed | grep -qx wasm32-wasip2 || rustup target add wasm32-wasip2
fi
# the control room's JavaScript libraries, embedded into the binary at build time
(cd "$(dirname "$0")/../web" && npm ci --no-audit --no-fund)
# the browser tests (tests/ui): pytest-playwright in a virtualenv, driving /usr/bin/chromium;
# the API tests (tests/api): schemathesis
root="$(cd "$(dirname "$0")/.." && pwd)"
if [ ! -x "$root/.venv/bin/python" ]; then /usr/bin/python3 -m venv "$root/.venv"; fi
"$root/.venv/bin/pip" install --quiet --disable-pip-version-check -r "$root/tests/ui/requirements.txt" \
    -r "$root/tests/api/requirements.txt"
