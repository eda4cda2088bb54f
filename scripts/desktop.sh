#!/usr/bin/env bash
# Builds and starts the psystem desktop app: the UI (npm ci, vite build → ui/dist) and the release binary with the
# UI embedded (--features tauri/custom-protocol). Needs the packages of scripts/test-desktop.sh
# (libwebkit2gtk-4.1-dev) and a display. PSYSTEM_HOME, PSYSTEM_ASSETS and
# DATABASE_URL are honoured by the app.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! pkg-config --exists webkit2gtk-4.1 2>/dev/null; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq || $SUDO apt-get -o APT::Sandbox::User=root update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends libwebkit2gtk-4.1-dev >/dev/null
fi
if [ ! -f ui/node_modules/.package-lock.json ] || [ ui/package-lock.json -nt ui/node_modules/.package-lock.json ]; then
  (cd ui && npm ci --no-audit --no-fund)
fi
(cd ui && npm run build)
export CARGO_TARGET_DIR="${PSYSTEM_DESKTOP_TARGET_DIR:-$HOME/.cache/psystem/target-tauri}"
cargo build --release --manifest-path src-tauri/Cargo.toml --features tauri/custom-protocol
exec "$CARGO_TARGET_DIR/release/psystem-desktop"
