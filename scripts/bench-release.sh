#!/usr/bin/env bash
# The release-load benchmark (docs/BENCHMARKS.md, "Release loads").
#
#   scripts/bench-release.sh                      # 2M rows, a throwaway PostgreSQL cluster
#   ROWS=20000000 scripts/bench-release.sh        # the 20M row (peak RSS at 20M)
#   PSYSTEM_BENCH_DATABASE_URL=postgres://postgres@127.0.0.1:55432/postgres scripts/bench-release.sh
#
# Builds the release binaries, generates release A (ROWS rows in FILES Parquet files) and the changed release B
# (CHANGE% of rows revised, CHANGE/2% of ids replaced), measures the floor (the server's own
# `COPY … FROM '<file>' (FORMAT binary)` of A's rows), then psystem's first load of A into a fresh database, the
# same first load into a table without a primary key (the floor's end state), the merge of B, and a full refresh
# with B — each under /usr/bin/time -v (wall time, maximum resident set size).
# Prints a Markdown table and writes it, with one JSON line per step, to $WORK/results.{md,jsonl}.
#
# Environment: ROWS (2000000), FILES (8), CHANGE (10), SEED (1), WORK (/tmp/psystem-bench/rows-$ROWS: the
# releases, reused when complete unless REGEN=1), PSYSTEM_BENCH_DATABASE_URL (an admin URL of a server on this
# machine — the floor's COPY reads a server-side file; default: a throwaway cluster from scripts/test-cluster.sh,
# fsync off), KEEP=1 keeps the benchmark database. The user must be a superuser (COPY from a file, CHECKPOINT,
# CREATE DATABASE).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

# ---- psystem's command lines: the only lines to change when `psystem run` changes. -------------------------
# $1 = release folder root (holds A and B), $2 = database URL. psystem runs with PSYSTEM_HOME=$BENCH_HOME, whose
# plugins/ holds crates/psystem-bench/plugin/opentargets-bench (a plugin named `opentargets` with the entry
# `bench_entity`, taking the bundled plugin's place).
psystem_first_load() {
  "$PSYSTEM" run opentargets bench_entity --source-url "file://$1" --release "$RELEASE_A" --db "$2" --mode replace
}
psystem_first_load_unkeyed() {
  "$PSYSTEM" run opentargets bench_entity_unkeyed --source-url "file://$1" --release "$RELEASE_A" --db "$2" --mode replace
}
psystem_merge() {
  "$PSYSTEM" run opentargets bench_entity --source-url "file://$1" --release "$RELEASE_B" --db "$2" --mode merge
}
psystem_full_refresh() {
  "$PSYSTEM" run opentargets bench_entity --source-url "file://$1" --release "$RELEASE_B" --db "$2" --mode replace --force
}
# -------------------------------------------------------------------------------------------------------------

ROWS=${ROWS:-2000000}
FILES=${FILES:-8}
CHANGE=${CHANGE:-10}
SEED=${SEED:-1}
WORK=${WORK:-/tmp/psystem-bench/rows-$ROWS}
RELEASE_A=25.03
RELEASE_B=25.06
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/psystem/target}
BIN=$CARGO_TARGET_DIR/release
PSYSTEM=$BIN/psystem

if [ ! -x /usr/bin/time ]; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  echo "Installing GNU time (/usr/bin/time)"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends time >/dev/null
fi
command -v psql >/dev/null 2>&1 || bash scripts/setup.sh

echo "Building release binaries (psystem, release-gen, copy-floor) …"
cargo build --release --quiet -p psystem-bench --bins
if ! cargo build --release --quiet -p psystem --bin psystem; then
  echo "psystem did not build: its steps are marked failed" >&2
  PSYSTEM=false
fi

mkdir -p "$WORK"
chmod 755 "$WORK" "$(dirname "$WORK")"
LOGS=$WORK/logs
mkdir -p "$LOGS"
RESULTS_MD=$WORK/results.md
RESULTS_JSON=$WORK/results.jsonl
: >"$RESULTS_JSON"

# ---- database --------------------------------------------------------------------------------------------
cleanup() { :; }
if [ -n "${PSYSTEM_BENCH_DATABASE_URL:-}" ]; then
  ADMIN_URL=$PSYSTEM_BENCH_DATABASE_URL
else
  pgdir=$(mktemp -d /tmp/psystem-bench-pg.XXXXXX)
  chmod 755 "$pgdir"
  eval "$(bash scripts/test-cluster.sh start "$pgdir")"
  ADMIN_URL=$PSYSTEM_TEST_DATABASE_URL
  cleanup() { bash "$ROOT/scripts/test-cluster.sh" stop "$pgdir"; rm -rf "$pgdir"; }
fi
BENCH_HOME=$(mktemp -d /tmp/psystem-bench-home.XXXXXX)
trap 'rm -rf "$BENCH_HOME"; cleanup' EXIT
mkdir -p "$BENCH_HOME/plugins"
cp -r crates/psystem-bench/plugin/opentargets-bench "$BENCH_HOME/plugins/"
DB_NAME=psystem_bench
# The URL of database $DB_NAME on the admin URL's server: replace the path, keep the query string.
DB_URL=$(python3 -c 'import sys,urllib.parse as u; p=u.urlsplit(sys.argv[1]); print(u.urlunsplit(p._replace(path="/"+sys.argv[2])))' "$ADMIN_URL" "$DB_NAME")
SERVER_VERSION=$(psql -X -q -At "$ADMIN_URL" -c "SHOW server_version")
psql -X -q "$ADMIN_URL" -c "DROP DATABASE IF EXISTS $DB_NAME WITH (FORCE)" -c "CREATE DATABASE $DB_NAME"
[ "${KEEP:-0}" = 1 ] || trap 'psql -X -q "$ADMIN_URL" -c "DROP DATABASE IF EXISTS $DB_NAME WITH (FORCE)" || true; rm -rf "$BENCH_HOME"; cleanup' EXIT

# ---- measuring -------------------------------------------------------------------------------------------
# timed NAME ROWS CMD…: runs CMD under /usr/bin/time -v, appends a JSON line to $RESULTS_JSON, never fails.
timed() {
  local name=$1 rows=$2; shift 2
  local log=$LOGS/$name.log tv=$LOGS/$name.time status=ok
  echo "== $name"
  # bash -c so that the psystem_* shell functions (exported below) can be timed too; GNU time reports the
  # largest resident set of the process tree it waited for.
  /usr/bin/time -v -o "$tv" bash -c '"$@"' _ "$@" >"$log" 2>&1 || status=failed
  tail -n 3 "$log" | sed 's/^/   /'
  local wall rss
  wall=$(awk -F': ' '/Elapsed \(wall clock\)/ {n=split($2,p,":"); s=0; for(i=1;i<=n;i++) s=s*60+p[i]; print s}' "$tv")
  rss=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$tv")
  printf '{"step":"%s","status":"%s","rows":%s,"wall_seconds":%s,"max_rss_kb":%s}\n' \
    "$name" "$status" "$rows" "${wall:-null}" "${rss:-null}" >>"$RESULTS_JSON"
  [ "$status" = ok ] || echo "   FAILED (see $log)"
}

# ---- releases --------------------------------------------------------------------------------------------
gen() { # gen RELEASE CHANGE
  local dir=$WORK/releases/$1
  if [ "${REGEN:-0}" != 1 ] && [ -f "$dir/release_data_integrity.sha1" ]; then
    echo "== generate $1: reusing $dir"
    return
  fi
  rm -rf "$dir"
  timed "generate_$1" "$ROWS" "$BIN/release-gen" --out "$WORK/releases" --release "$1" --rows "$ROWS" \
    --files "$FILES" --seed "$SEED" --change "$2"
  [ -f "$dir/release_data_integrity.sha1" ] || { echo "release-gen failed, see $LOGS/generate_$1.log" >&2; exit 1; }
}
mkdir -p "$WORK/releases"
chmod 755 "$WORK/releases"
gen "$RELEASE_A" 0
gen "$RELEASE_B" "$CHANGE"

# ---- floor -----------------------------------------------------------------------------------------------
timed floor "$ROWS" "$BIN/copy-floor" --db "$DB_URL" --release-dir "$WORK/releases/$RELEASE_A" \
  --copy-file "$WORK/floor.pgcopy" --primary-key id
FLOOR_JSON=$(grep '"tool":"copy-floor"' "$LOGS/floor.log" || true)
[ -n "$FLOOR_JSON" ] || { echo "copy-floor failed, see $LOGS/floor.log" >&2; exit 1; }
echo "$FLOOR_JSON" >>"$RESULTS_JSON"
FLOOR_RPS=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["rows_per_s"])' "$FLOOR_JSON")
KEYED_RPS=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["keyed_rows_per_s"])' "$FLOOR_JSON")

# ---- psystem ---------------------------------------------------------------------------------------------
export PSYSTEM_HOME=$BENCH_HOME PSYSTEM_BENCH_DATABASE_URL=$DB_URL PSYSTEM RELEASE_A RELEASE_B
export -f psystem_first_load psystem_first_load_unkeyed psystem_merge psystem_full_refresh
# settle: before each step, untimed, what the server would have done by the time a user runs it — autovacuum of
# the tables the previous step loaded (VACUUM ANALYZE of the database) and a checkpoint (as before each floor
# run). Back to back, a step would otherwise wait for the server to cancel the previous step's autovacuum
# (deadlock_timeout, 1 s) and write its dirty buffers.
settle() {
  psql -X -q "$DB_URL" -c "VACUUM (ANALYZE)" -c "CHECKPOINT" >/dev/null
}
settle; timed first_load "$ROWS" psystem_first_load "$WORK/releases" "$DB_URL"
settle; timed first_load_unkeyed "$ROWS" psystem_first_load_unkeyed "$WORK/releases" "$DB_URL"
settle; timed merge "$ROWS" psystem_merge "$WORK/releases" "$DB_URL"
settle; timed full_refresh "$ROWS" psystem_full_refresh "$WORK/releases" "$DB_URL"

# ---- table -----------------------------------------------------------------------------------------------
python3 - "$RESULTS_JSON" "$FLOOR_RPS" "$KEYED_RPS" "$ROWS" "$CHANGE" "$SERVER_VERSION" "$(nproc)" >"$RESULTS_MD" <<'EOF'
import json, sys
path, floor, keyed, rows, change, version, cores = sys.argv[1:]
floor = float(floor)
keyed = float(keyed)
steps = [json.loads(l) for l in open(path) if '"step"' in l]
print(f"{int(rows):,} rows, release B: {change}% revised, {float(change)/2:g}% replaced; PostgreSQL {version}; {cores} cores")
print()
print("| step | rows | wall s | rows/s | % of floor | % of keyed floor | target | peak RSS MB |")
print("|---|---:|---:|---:|---:|---:|---|---:|")
targets = {"first_load": 0.80, "first_load_unkeyed": 0.80, "merge": 0.40, "full_refresh": None}
for s in steps:
    name = s["step"]
    wall = s["wall_seconds"]
    rss = s["max_rss_kb"]
    rss_mb = f"{rss / 1024:.0f}" if rss else "–"
    if s["status"] != "ok":
        print(f"| {name} | {s['rows']:,} | – | failed | – | – | – | – |")
        continue
    rps = s["rows"] / wall if wall else 0
    if name == "floor":
        print(f"| floor (copy-floor process, encode + 3 COPY runs) | {s['rows']:,} | {wall:.2f} | – | – | – | – | {rss_mb} |")
        print(f"| **floor: server COPY … (FORMAT binary), best of 3** | {s['rows']:,} | {s['rows']/floor:.2f} | {floor:,.0f} | 100% | – | – | – |")
        print(f"| keyed floor: the same COPY + ADD PRIMARY KEY (id), best of 3 | {s['rows']:,} | {s['rows']/keyed:.2f} | {keyed:,.0f} | {100 * keyed / floor:.0f}% | 100% | – | – |")
        continue
    pct, kpct, target = "–", "–", "–"
    if name in targets:
        pct = f"{100 * rps / floor:.0f}%"
        kpct = f"{100 * rps / keyed:.0f}%"
        t = targets[name]
        if t is not None:
            ok = rps >= t * floor and (rss or 0) <= 256 * 1024
            target = f"≥ {t:.0%}, ≤ 256 MB: {'met' if ok else 'MISSED'}"
        else:
            target = f"≤ 256 MB: {'met' if (rss or 0) <= 256 * 1024 else 'MISSED'}"
    print(f"| {name} | {s['rows']:,} | {wall:.2f} | {rps:,.0f} | {pct} | {kpct} | {target} | {rss_mb} |")
EOF
echo
cat "$RESULTS_MD"
echo
echo "Results: $RESULTS_MD, $RESULTS_JSON; logs: $LOGS"
