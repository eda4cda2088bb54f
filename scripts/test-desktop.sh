#!/usr/bin/env bash
# The desktop app's tests: installs what they need (webkit, Xvfb, WebKitWebDriver, imagemagick, tauri-driver, the
# UI's npm packages), builds the UI and the release app, then runs the shell's unit tests and the end-to-end tests of
# the real app (tauri-driver + WebKitWebDriver under Xvfb, against a real PostgreSQL and local test servers).
# Screenshots of every screen land in docs/screenshots/.
#
# Needs PSYSTEM_TEST_DATABASE_URL (an admin URL; scripts/test.sh sets it, or see scripts/test-cluster.sh).
# Builds in $PSYSTEM_DESKTOP_TARGET_DIR (default ~/.cache/psystem/target-tauri): never the engine's target folder.
set -euo pipefail
cd "$(dirname "$0")/.."
: "${PSYSTEM_TEST_DATABASE_URL:?set PSYSTEM_TEST_DATABASE_URL to an admin URL of a PostgreSQL server (scripts/test.sh does)}"
t0=$(date +%s)
stamp() { echo "[test-desktop] $* ($(( $(date +%s) - t0 )) s)"; }

need=()
pkg-config --exists webkit2gtk-4.1 2>/dev/null || need+=(libwebkit2gtk-4.1-dev)
command -v xvfb-run >/dev/null 2>&1 || need+=(xvfb)
command -v xauth >/dev/null 2>&1 || need+=(xauth)
command -v WebKitWebDriver >/dev/null 2>&1 || need+=(webkit2gtk-driver)
[ -x /usr/bin/import ] || need+=(imagemagick)
if [ ${#need[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  echo "Installing: ${need[*]}"
  # apt's sandbox user cannot write a /tmp that is not world-writable; fall back to running its helpers as root.
  $SUDO apt-get update -qq || $SUDO apt-get -o APT::Sandbox::User=root update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
if ! command -v tauri-driver >/dev/null 2>&1 && [ ! -x "$HOME/.cargo/bin/tauri-driver" ]; then
  cargo install tauri-driver@2.1.0 --locked   # pinned: crates.io's "latest" is a 3.0 alpha
fi
node_major=$(node --version 2>/dev/null | sed -E 's/^v([0-9]+).*/\1/' || true)
if [ -z "$node_major" ] || [ "$node_major" -lt 20 ]; then
  echo "The UI needs Node.js 20 or newer (found: $(node --version 2>/dev/null || echo none)); install it, e.g. from" \
    "https://nodejs.org or NodeSource's Debian packages, then run this again." >&2
  exit 1
fi
stamp "system packages, Node $(node --version) and tauri-driver ready"

# The UI: npm ci when node_modules is missing or older than package-lock.json, then vite build into ui/dist.
if [ ! -f ui/node_modules/.package-lock.json ] || [ ui/package-lock.json -nt ui/node_modules/.package-lock.json ]; then
  (cd ui && npm ci --no-audit --no-fund)
fi
(cd ui && npm run build)
stamp "UI built (ui/dist)"
(cd ui && npm test)
stamp "UI unit tests passed (Vitest)"

export CARGO_TARGET_DIR="${PSYSTEM_DESKTOP_TARGET_DIR:-$HOME/.cache/psystem/target-tauri}"
manifest=src-tauri/Cargo.toml
cargo build --release --manifest-path "$manifest" --features tauri/custom-protocol
stamp "release app built: $CARGO_TARGET_DIR/release/psystem-desktop"

# Unit tests of the shell (saved databases, keychain fallback, connection test): no display needed.
cargo test --release --manifest-path "$manifest" --features tauri/custom-protocol -p psystem-desktop --lib
stamp "unit tests passed"

# End-to-end: the real app under Xvfb. The test package (src-tauri/tests, no psystem crate) is built on its own so
# that it does not change the app's dependency features; it drives $CARGO_TARGET_DIR/release/psystem-desktop.
export PSYSTEM_DESKTOP_BIN="$CARGO_TARGET_DIR/release/psystem-desktop"
xvfb-run -a -s "-screen 0 1280x800x24" \
  cargo test --release --manifest-path "$manifest" -p psystem-desktop-e2e --test e2e -- --nocapture
stamp "end-to-end tests passed; screenshots in docs/screenshots/"
