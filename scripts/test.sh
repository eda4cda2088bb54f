#!/usr/bin/env bash
# Installs what the tests need, starts a throwaway PostgreSQL cluster, and runs every test of the workspace
# against it (unit tests, integration tests against real PostgreSQL and a real local HTTP server, and the CLI's
# end-to-end tests, including the kill -9 / resume runs), then the desktop app's UI, shell and end-to-end tests.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/psystem/target}
pgdir=$(mktemp -d /tmp/psystem-test-pg.XXXXXX)
chmod 755 "$pgdir"
trap 'bash scripts/test-cluster.sh stop "$pgdir"; rm -rf "$pgdir"' EXIT
eval "$(bash scripts/test-cluster.sh start "$pgdir")"
echo "Test database server: $PSYSTEM_TEST_DATABASE_URL"
cargo fmt --all --check
cargo clippy --workspace --all-targets --quiet -- -D warnings
cargo build --workspace --bins --quiet
cargo test --workspace --no-fail-fast
# The desktop app: UI unit tests, the shell's tests and the end-to-end tests of the real app under Xvfb
# (installs webkit, Xvfb, WebKitWebDriver and tauri-driver when missing; builds in its own target folder).
bash scripts/test-desktop.sh
