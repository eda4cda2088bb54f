#!/usr/bin/env bash
# Builds the desktop app's Debian package with the tauri CLI (ui/ devDependency @tauri-apps/cli): the UI
# (npm ci, vite build), the release binary with the UI embedded, and
# $CARGO_TARGET_DIR/release/bundle/deb/psystem_<version>_amd64.deb — /usr/bin/psystem-desktop, a desktop entry,
# icons, and the bundled plugins under /usr/share/psystem/assets (where an installed app looks for them).
# Depends: libwebkit2gtk-4.1-0, libgtk-3-0. Needs libwebkit2gtk-4.1-dev to build (scripts/desktop.sh installs it).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -f ui/node_modules/.package-lock.json ] || [ ui/package-lock.json -nt ui/node_modules/.package-lock.json ]; then
  (cd ui && npm ci --no-audit --no-fund)
fi
(cd ui && npm run build)
export CARGO_TARGET_DIR="${PSYSTEM_DESKTOP_TARGET_DIR:-$HOME/.cache/psystem/target-tauri}"
# The CLI finds the config beside src-tauri/Cargo.toml (src-tauri/tauri.conf.json, a symlink to the root file).
(cd ui && TAURI_APP_PATH=../src-tauri npx tauri build --bundles deb)
ls -l "$CARGO_TARGET_DIR"/release/bundle/deb/*.deb
