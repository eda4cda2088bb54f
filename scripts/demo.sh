#!/usr/bin/env bash
# The main job, end to end: installs what is needed, builds psystem, serves the bundled real WHO GHO indicator
# WSH_8 (165 rows) from a local OData server, and loads it through the real HTTP path into the local PostgreSQL
# database that psystem manages (~/.psystem/postgres, or $PSYSTEM_HOME/postgres), then prints a summary and rows.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/psystem/target}
echo "Building psystem…"
cargo build --quiet -p psystem -p psystem-testkit --bins
bin=$CARGO_TARGET_DIR/debug
log=$(mktemp)
"$bin/gho-server" --dir assets/demo/who_gho >"$log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null || true; rm -f "$log"' EXIT
for _ in $(seq 1 50); do grep -q "http://" "$log" && break; sleep 0.1; done
api=$(grep -o 'http://[^ ]*/api' "$log" | head -n 1)
[ -n "$api" ] || { cat "$log" >&2; echo "the GHO test server did not start" >&2; exit 1; }
echo "Serving assets/demo/who_gho at $api"
"$bin/psystem" db up
"$bin/psystem" run who_gho WSH_8 --source-url "$api" --page-size 50 --db "$("$bin/psystem" db url)"
echo
echo "Query it: psql \"$("$bin/psystem" db url)\" -c 'select count(*) from gho_wsh_8'"
