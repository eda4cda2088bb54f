#!/usr/bin/env bash
# The UniProt benchmark (docs/BENCHMARKS.md, "UniProt"): parse throughput on one core, and entries/s into
# PostgreSQL with 1, 2 and 4 workers.
#
#   scripts/bench-uniprot.sh                         # 200 MB of flat file, a throwaway PostgreSQL cluster
#   MB=1000 WORKERS="1 2 4" scripts/bench-uniprot.sh
#   PSYSTEM_BENCH_DATABASE_URL=postgres://postgres@127.0.0.1:55432/postgres scripts/bench-uniprot.sh
#
# Builds the release binaries; builds a flat file of MB megabytes by repeating the real fixture entries with
# rewritten accessions (uniprot-parse-bench --keep), gzips it and lays it out as a UniProt release mirror
# (current_release/knowledgebase/complete/ with reldate.txt and a Metalink 3.0 RELEASE.metalink holding its real
# MD5); measures the parser alone (uniprot-parse-bench, best of 3, one core), then for each worker count a first
# load into a fresh database (`psystem run uniprot --workers N`), and, with the largest count, a second run of an
# identical release (every entry unchanged: only MD5 lookups). Each load runs under /usr/bin/time -v.
# Prints a Markdown table and writes it to $WORK/results.md.
#
# Environment: MB (200), WORKERS ("1 2 4"), UNIT (16MiB), WORK (/tmp/psystem-bench/uniprot-$MB),
# PSYSTEM_BENCH_DATABASE_URL (admin URL; default: a throwaway cluster from scripts/test-cluster.sh, fsync off).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
MB=${MB:-200}
WORKERS=${WORKERS:-"1 2 4"}
UNIT=${UNIT:-16MiB}
WORK=${WORK:-/tmp/psystem-bench/uniprot-$MB}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/psystem/target}
BIN=$CARGO_TARGET_DIR/release

if [ ! -x /usr/bin/time ]; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends time >/dev/null
fi
command -v psql >/dev/null 2>&1 || bash scripts/setup.sh

echo "Building release binaries (psystem, uniprot-parse-bench) …"
cargo build --release --quiet -p psystem-uniprot --bin uniprot-parse-bench --features bench-mimalloc
cargo build --release --quiet -p psystem --bin psystem

mkdir -p "$WORK/logs"
LOGS=$WORK/logs
MIRROR=$WORK/mirror
DIR=$MIRROR/current_release/knowledgebase/complete
if [ ! -f "$DIR/RELEASE.metalink" ] || [ "${REGEN:-0}" = 1 ]; then
  rm -rf "$MIRROR"; mkdir -p "$DIR"
  echo "== build a ${MB} MB flat file from the fixtures"
  "$BIN/uniprot-parse-bench" --mb "$MB" --runs 1 --keep "$WORK" >"$LOGS/build.log"
  gzip -c -6 "$WORK/bench.dat" >"$DIR/uniprot_sprot.dat.gz"
  printf 'UniProt Knowledgebase Release 2099_01 consists of:\nUniProtKB/Swiss-Prot Release 2099_01 of 01-Jan-2099\nUniProtKB/TrEMBL Release 2099_01 of 01-Jan-2099\n' >"$DIR/reldate.txt"
  cat >"$DIR/RELEASE.metalink" <<XML
<metalink xmlns="http://www.metalinker.org/" version="3.0">
  <version>2099_01</version>
  <files>
    <file name="uniprot_sprot.dat.gz">
      <size>$(stat -c %s "$DIR/uniprot_sprot.dat.gz")</size>
      <verification><hash type="md5">$(md5sum "$DIR/uniprot_sprot.dat.gz" | cut -d' ' -f1)</hash></verification>
    </file>
  </files>
</metalink>
XML
fi
PLAIN_BYTES=$(stat -c %s "$WORK/bench.dat")
GZ_BYTES=$(stat -c %s "$DIR/uniprot_sprot.dat.gz")
ENTRIES=$(grep -c '^//' "$WORK/bench.dat")

cleanup() { :; }
if [ -n "${PSYSTEM_BENCH_DATABASE_URL:-}" ]; then
  ADMIN_URL=$PSYSTEM_BENCH_DATABASE_URL
else
  pgdir=$(mktemp -d /tmp/psystem-bench-pg.XXXXXX); chmod 755 "$pgdir"
  eval "$(bash scripts/test-cluster.sh start "$pgdir")"
  ADMIN_URL=$PSYSTEM_TEST_DATABASE_URL
  cleanup() { bash "$ROOT/scripts/test-cluster.sh" stop "$pgdir"; rm -rf "$pgdir"; }
fi
BENCH_HOME=$(mktemp -d /tmp/psystem-bench-home.XXXXXX)
trap 'rm -rf "$BENCH_HOME"; cleanup' EXIT
DB_NAME=psystem_bench_uniprot
DB_URL=$(python3 -c 'import sys,urllib.parse as u; p=u.urlsplit(sys.argv[1]); print(u.urlunsplit(p._replace(path="/"+sys.argv[2])))' "$ADMIN_URL" "$DB_NAME")

echo "== parse only (one core, best of 3)"
"$BIN/uniprot-parse-bench" --file "$WORK/bench.dat" --runs 3 >"$LOGS/parse.log" 2>&1
PARSE_JSON=$(grep '^{' "$LOGS/parse.log" | tail -1)
PARSE_MBS=$(python3 -c 'import json,sys; d=json.loads(sys.argv[1]); print(round(d.get("mb_per_s") or d.get("mb_per_cpu_s"),1))' "$PARSE_JSON")

ROWS_MD=""
run_load() { # run_load NAME WORKERS [fresh]
  local name=$1 w=$2 fresh=${3:-1}
  local tag="${name// /_}-$w"
  if [ "$fresh" = 1 ]; then
    psql -X -q "$ADMIN_URL" -c "DROP DATABASE IF EXISTS $DB_NAME WITH (FORCE)" -c "CREATE DATABASE $DB_NAME"
    rm -rf "$BENCH_HOME"/status.yaml
  fi
  echo "== $name ($w worker(s))"
  PSYSTEM_HOME=$BENCH_HOME /usr/bin/time -v -o "$LOGS/$tag.time" "$BIN/psystem" run uniprot \
    --source-url "file://$MIRROR/" --db "$DB_URL" --workers "$w" --unit-size "$UNIT" --force >"$LOGS/$tag.log" 2>&1 \
    || { echo "   FAILED (see $LOGS/$tag.log)"; tail -3 "$LOGS/$tag.log"; return; }
  local wall rss cpu
  wall=$(awk -F': ' '/Elapsed \(wall clock\)/ {n=split($2,p,":"); s=0; for(i=1;i<=n;i++) s=s*60+p[i]; print s}' "$LOGS/$tag.time")
  rss=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$LOGS/$tag.time")
  cpu=$(awk -F': ' '/User time/ {u=$2} /System time/ {s=$2} END {print u+s}' "$LOGS/$tag.time")
  tail -1 "$LOGS/$tag.log" | sed 's/^/   /'
  ROWS_MD+="| $name | $w | $ENTRIES | ${wall} s | $(python3 -c "print(f'{$ENTRIES/$wall:,.0f}')") | $(python3 -c "print(f'{$PLAIN_BYTES/1e6/$wall:.1f}')") | $((rss / 1024)) MB | ${cpu} s |"$'\n'
}
for w in $WORKERS; do run_load "first load" "$w"; done
LAST=$(echo "$WORKERS" | awk '{print $NF}')
run_load "same release again (all unchanged)" "$LAST" 0

CORES=$(nproc)
{
  echo "UniProt benchmark: ${MB} MB flat file ($PLAIN_BYTES bytes, $GZ_BYTES gzip), $ENTRIES entries, units of $UNIT,"
  echo "PostgreSQL $(psql -X -q -At "$ADMIN_URL" -c 'SHOW server_version'), $CORES cores. Parse only (one core): $PARSE_MBS MB/s."
  echo
  echo "| step | workers | entries | wall | entries/s | MB/s of flat file | peak RSS | psystem CPU (user+sys) |"
  echo "|---|---|---|---|---|---|---|---|"
  printf '%s' "$ROWS_MD"
  echo
  echo "Rows written by a first load: $(psql -X -q -At "$DB_URL" -c "SELECT string_agg(t || ' ' || n, ', ') FROM (SELECT 'protein' t, count(*) n FROM uniprot.protein UNION ALL SELECT 'protein_xref', count(*) FROM uniprot.protein_xref UNION ALL SELECT 'protein_feature', count(*) FROM uniprot.protein_feature UNION ALL SELECT 'protein_reference', count(*) FROM uniprot.protein_reference UNION ALL SELECT 'protein_keyword', count(*) FROM uniprot.protein_keyword UNION ALL SELECT 'protein_accession', count(*) FROM uniprot.protein_accession) x")."
} | tee "$WORK/results.md"
