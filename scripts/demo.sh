#!/usr/bin/env bash
# The main job, end to end: installs what is needed, builds psystem, serves the bundled real data from local
# servers and loads it through the real HTTP paths into the local PostgreSQL database that psystem manages
# (~/.psystem/postgres, or $PSYSTEM_HOME/postgres): the WHO GHO indicator WSH_8 (165 rows, OData API), then an
# Open Targets release (assets/demo/opentargets: target, disease, interaction, credible_set — verified against
# its release_data_integrity), then a UniProtKB release (assets/demo/uniprot: 100 Swiss-Prot entries, verified
# against its RELEASE.metalink), and prints summaries.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/psystem/target}
echo "Building psystem…"
cargo build --quiet -p psystem -p psystem-testkit --bins
bin=$CARGO_TARGET_DIR/debug
log=$(mktemp)
mlog=$(mktemp)
"$bin/gho-server" --dir assets/demo/who_gho >"$log" 2>&1 &
server=$!
"$bin/mirror-server" --dir assets/demo/opentargets --port 0 >"$mlog" 2>&1 &
mirror=$!
ulog=$(mktemp)
"$bin/mirror-server" --dir assets/demo/uniprot --port 0 >"$ulog" 2>&1 &
umirror=$!
trap 'kill $server $mirror $umirror 2>/dev/null || true; rm -f "$log" "$mlog" "$ulog"' EXIT
for _ in $(seq 1 50); do grep -q "http://" "$log" && break; sleep 0.1; done
api=$(grep -o 'http://[^ ]*/api' "$log" | head -n 1)
[ -n "$api" ] || { cat "$log" >&2; echo "the GHO test server did not start" >&2; exit 1; }
echo "Serving assets/demo/who_gho at $api"
"$bin/psystem" db up
"$bin/psystem" run who_gho WSH_8 --source-url "$api" --page-size 50 --db "$("$bin/psystem" db url)"
echo
echo "Query it: psql \"$("$bin/psystem" db url)\" -c 'select count(*) from gho_wsh_8'"

for _ in $(seq 1 50); do grep -q "http://" "$mlog" && break; sleep 0.1; done
releases=$(grep -o 'http://[^ ]*/' "$mlog" | head -n 1)
[ -n "$releases" ] || { cat "$mlog" >&2; echo "the release mirror did not start" >&2; exit 1; }
echo
echo "Serving the Open Targets release mirror assets/demo/opentargets at $releases"
"$bin/psystem" releases list opentargets --source-url "$releases"
"$bin/psystem" run opentargets target disease interaction credible_set --source-url "$releases" \
  --db "$("$bin/psystem" db url)"
echo
echo "Query it: psql \"$("$bin/psystem" db url)\" -c 'select id, \"approvedSymbol\", biotype from opentargets.target limit 5'"

for _ in $(seq 1 50); do grep -q "http://" "$ulog" && break; sleep 0.1; done
uniprot=$(grep -o 'http://[^ ]*/' "$ulog" | head -n 1)
[ -n "$uniprot" ] || { cat "$ulog" >&2; echo "the UniProt mirror did not start" >&2; exit 1; }
echo
echo "Serving the UniProt release mirror assets/demo/uniprot at $uniprot"
"$bin/psystem" releases list uniprot --source-url "$uniprot"
"$bin/psystem" run uniprot --source-url "$uniprot" --db "$("$bin/psystem" db url)" --unit-size 512KiB
"$bin/psystem" export uniprot --db "$("$bin/psystem" db url)" --format fasta --limit 2
echo
echo "Query it: psql \"$("$bin/psystem" db url)\" -c 'select accession, entry_name, protein_name, gene, length from uniprot.protein limit 5'"
