//! UniProt loads that must be exactly right or refused in plain words (issue 13, cases 3 and 20), through the real
//! binary, a local UniProt mirror over HTTP (`psystem_testkit::uniprot`) built from the real fixture entries, and a
//! real PostgreSQL:
//!
//! - a load that failed on a corrupted entry, rerun after the mirror serves a corrected file (with its new MD5 in
//!   `RELEASE.metalink`), ends with the protein tables equal to a clean load of the corrected file — whether the
//!   correction moved the entries (the old byte ranges cut the new file) or added entries past the old file's end;
//! - a `psystem worker` never works the units of a load split over another version of the file (a release without
//!   a manifest: the digest the load recorded), and the next run loads the new file;
//! - flat files written before UniProtKB release 9 (`STANDARD;` / `PRELIMINARY;` and the molecule type `PRT;` on
//!   the ID line) load, and an ID line the parser cannot read is refused without Rust debug text (`Some(…)`).
//!
//! They need `PSYSTEM_TEST_DATABASE_URL` (an admin URL; `scripts/test.sh` starts a cluster and sets it).

mod support;

use std::path::Path;

use psystem_testkit::db::TestDb;
use psystem_testkit::uniprot::{FlatEntry, MirrorRelease, UniprotMirror};
use sqlx::PgPool;
use support::{text, Env};

/// The protein tables and how their rows are ordered for the digest.
const TABLES: [(&str, &str); 6] = [
    ("protein", "accession"),
    ("protein_accession", "accession, secondary_accession"),
    ("protein_xref", "accession, ordinal"),
    ("protein_feature", "accession, ordinal"),
    ("protein_keyword", "accession, ordinal"),
    ("protein_reference", "accession, ordinal"),
];

/// Per protein table: its name, row count and the MD5 of its rows (as JSON without `loaded_at`, the time a row was
/// written) ordered by key.
async fn table_digests(url: &str) -> Vec<(String, i64, String)> {
    let pool = PgPool::connect(url).await.unwrap();
    let mut out = Vec::new();
    for (table, order) in TABLES {
        let (n, md5): (i64, String) = sqlx::query_as(&format!(
            "SELECT count(*), md5(coalesce(string_agg((to_jsonb(t) - 'loaded_at')::text, E'\\n' ORDER BY {order}), '')) \
             FROM uniprot.{table} t"
        ))
        .fetch_one(&pool)
        .await
        .unwrap();
        out.push((table.to_string(), n, md5));
    }
    pool.close().await;
    out
}

fn run_uniprot(env: &Env, url: &str, db: &str, extra: &[&str]) -> std::process::Output {
    let mut args = vec!["run", "uniprot", "--source-url", url, "--db", db];
    args.extend_from_slice(extra);
    env.run(&args)
}

/// Release `2024_01` of `entries` (all in `uniprot_sprot.dat.gz`), with or without its `RELEASE.metalink`.
fn release(entries: &[FlatEntry], metalink: bool) -> MirrorRelease {
    let mut r = MirrorRelease::with_entries("2024_01", entries.to_vec(), Vec::new()).unwrap();
    if !metalink {
        r.metalink = None;
    }
    r
}

/// The table digests after a clean load of `entries` (fresh mirror, database and home) with `args`.
async fn clean_load(
    entries: &[FlatEntry],
    metalink: bool,
    args: &[&str],
) -> Vec<(String, i64, String)> {
    let dir = tempfile::tempdir().unwrap();
    let mirror = UniprotMirror::build(dir.path(), &[release(entries, metalink)]).unwrap();
    let server = mirror.serve().await.unwrap();
    let db = TestDb::create().await;
    let out = run_uniprot(&Env::new(), &server.base_url(), db.url(), args);
    assert!(out.status.success(), "clean load: {}", text(&out));
    let digests = table_digests(db.url()).await;
    assert_eq!(
        digests[0].1 as usize,
        entries.len(),
        "the clean load holds every entry"
    );
    digests
}

/// The reviewed fixture entries (SWISS100 and UniProt's own test entries), about 3 MB of flat file.
fn good_entries() -> Vec<FlatEntry> {
    MirrorRelease::from_fixtures("2024_01").unwrap().sprot
}

/// `e` with the CRC64 on its SQ line changed to another valid one (each hex digit + 1): same length, bad checksum.
fn with_bad_crc64(e: &FlatEntry) -> FlatEntry {
    let sq = e.text.lines().find(|l| l.starts_with("SQ   ")).unwrap();
    let crc = sq.split_whitespace().rev().nth(1).unwrap();
    assert_eq!(crc.len(), 16, "{sq}");
    let bad: String = crc
        .chars()
        .map(|c| {
            std::char::from_digit((c.to_digit(16).unwrap() + 1) % 16, 16)
                .unwrap()
                .to_ascii_uppercase()
        })
        .collect();
    let text = e.text.replacen(sq, &sq.replacen(crc, &bad, 1), 1);
    assert_ne!(text, e.text);
    FlatEntry { text, ..e.clone() }
}

/// `e` without its last sequence line: the build that wrote it lost a line (shorter file, bad length and CRC64).
fn without_last_sequence_line(e: &FlatEntry) -> FlatEntry {
    let mut lines: Vec<&str> = e.text.lines().collect();
    let last = lines.len() - 2;
    assert!(lines[last].starts_with("     "), "{}", lines[last]);
    lines.remove(last);
    let text = lines.iter().map(|l| format!("{l}\n")).collect();
    FlatEntry { text, ..e.clone() }
}

/// Loads `broken` (it fails on `victim`, a corrupted entry), replaces the mirror's file by `corrected` (new MD5 in the
/// metalink), runs the same command again and asserts that it succeeds with the tables of a clean load of
/// `corrected`.
async fn fail_then_rerun_over_the_corrected_file(
    broken: Vec<FlatEntry>,
    corrected: Vec<FlatEntry>,
    victim: &str,
) {
    let args = ["--unit-size", "100KiB", "--workers", "2"];
    let want = clean_load(&corrected, true, &args).await;

    let dir = tempfile::tempdir().unwrap();
    let mirror = UniprotMirror::build(dir.path(), &[release(&broken, true)]).unwrap();
    let server = mirror.serve().await.unwrap();
    let db = TestDb::create().await;
    let env = Env::new();
    let out = run_uniprot(&env, &server.base_url(), db.url(), &args);
    assert!(
        !out.status.success(),
        "the corrupted entry fails the load: {}",
        text(&out)
    );
    assert!(
        text(&out).contains(victim),
        "the error names the entry: {}",
        text(&out)
    );

    // The mirror now serves the corrected file, with its MD5 in RELEASE.metalink.
    let metalink = |dir: &Path| {
        std::fs::read_to_string(dir.join("current_release/knowledgebase/complete/RELEASE.metalink"))
            .unwrap()
    };
    let before = metalink(dir.path());
    UniprotMirror::build(dir.path(), &[release(&corrected, true)]).unwrap();
    assert_ne!(
        before,
        metalink(dir.path()),
        "the corrected file has a new MD5"
    );

    let out = run_uniprot(&env, &server.base_url(), db.url(), &args);
    assert!(
        out.status.success(),
        "the rerun loads the corrected file: {}",
        text(&out)
    );
    assert_eq!(
        table_digests(db.url()).await,
        want,
        "the tables equal a clean load of the corrected file"
    );
    let pool = PgPool::connect(db.url()).await.unwrap();
    let (rows, verified): (i64, bool) = sqlx::query_as(
        "SELECT rows, verified FROM psystem.loads WHERE state = 'completed' ORDER BY id DESC LIMIT 1",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(
        rows as usize,
        corrected.len(),
        "the ledger counts every entry of the new file"
    );
    assert!(verified);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rerun_over_a_corrected_file_whose_entries_moved_loads_the_new_file() {
    let good = good_entries();
    let victim = good.len() / 3;
    let mut broken = good.clone();
    broken[victim] = without_last_sequence_line(&good[victim]);
    fail_then_rerun_over_the_corrected_file(broken, good.clone(), &good[victim].accession).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rerun_over_a_corrected_file_with_more_entries_loads_every_entry() {
    let good = good_entries();
    let victim = good.len() / 3;
    // The broken build has a bad CRC64 in one entry and lacks the last 20 entries; the corrected one has them all.
    let mut broken = good[..good.len() - 20].to_vec();
    broken[victim] = with_bad_crc64(&good[victim]);
    fail_then_rerun_over_the_corrected_file(broken, good.clone(), &good[victim].accession).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_never_works_units_split_over_another_version_of_the_file() {
    let good = good_entries();
    let first = good[..good.len() - 20].to_vec();
    let args = ["--unit-size", "100KiB", "--allow-unverified"];
    let want = clean_load(&good, false, &args).await;

    // A release without a manifest: the shared load records the digest of the file it was split over.
    let dir = tempfile::tempdir().unwrap();
    let mirror = UniprotMirror::build(dir.path(), &[release(&first, false)]).unwrap();
    let server = mirror.serve().await.unwrap();
    let db = TestDb::create().await;
    let coordinator = Env::new();
    let mut shared = args.to_vec();
    shared.extend(["--workers", "0", "--heartbeat-timeout", "2s"]);
    let out = run_uniprot(&coordinator, &server.base_url(), db.url(), &shared);
    assert!(out.status.success(), "{}", text(&out));

    // The mirror now serves another file under the same name; a worker joining the load must not use it.
    UniprotMirror::build(dir.path(), &[release(&good, false)]).unwrap();
    let worker = Env::new();
    let out = worker.run(&[
        "worker",
        "--db",
        db.url(),
        "--exit-when-idle",
        "--threads",
        "1",
        "--poll",
        "300ms",
    ]);
    let all = text(&out);
    assert!(
        all.contains("sha1 mismatch"),
        "the worker says why it does not join: {all}"
    );
    assert!(!all.contains("Some("), "{all}");
    let pool = PgPool::connect(db.url()).await.unwrap();
    let done: i64 =
        sqlx::query_scalar("SELECT count(*) FROM psystem.work_units WHERE state = 'done'")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(
        done, 0,
        "no unit of the old file was worked over the new one"
    );

    // The next run splits the new file and loads it.
    let out = run_uniprot(&coordinator, &server.base_url(), db.url(), &args);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        table_digests(db.url()).await,
        want,
        "the tables equal a clean load of the new file"
    );
}

/// `e` with its ID line in the format of UniProtKB before release 9: `STANDARD;` (reviewed) or `PRELIMINARY;`
/// (unreviewed), then the molecule type `PRT;`.
fn old_id_line(e: &FlatEntry) -> FlatEntry {
    let id = e.text.lines().next().unwrap();
    let length = id.split_whitespace().nth(3).unwrap();
    let status = if e.reviewed {
        "STANDARD;"
    } else {
        "PRELIMINARY;"
    };
    let old = format!(
        "ID   {:<11} {:<12}  PRT; {:>5} AA.",
        e.entry_name, status, length
    );
    FlatEntry {
        text: e.text.replacen(id, &old, 1),
        ..e.clone()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flat_file_from_before_release_9_loads_and_a_bad_status_is_refused_in_plain_words() {
    // Reviewed and unreviewed fixture entries, their ID lines written as before UniProtKB release 9.
    let entries: Vec<FlatEntry> = psystem_testkit::uniprot::fixture_entries()
        .unwrap()
        .iter()
        .map(old_id_line)
        .collect();
    assert!(
        entries[0].text.starts_with("ID   ")
            && entries[0]
                .text
                .lines()
                .next()
                .unwrap()
                .contains(" STANDARD; ")
    );
    let unreviewed = entries.iter().filter(|e| !e.reviewed).count();
    assert!(unreviewed > 0, "some entries are PRELIMINARY");
    let dir = tempfile::tempdir().unwrap();
    let mirror = UniprotMirror::build(dir.path(), &[release(&entries, true)]).unwrap();
    let server = mirror.serve().await.unwrap();
    let db = TestDb::create().await;
    let env = Env::new();
    let out = run_uniprot(&env, &server.base_url(), db.url(), &[]);
    assert!(out.status.success(), "{}", text(&out));
    let pool = PgPool::connect(db.url()).await.unwrap();
    let (n, reviewed): (i64, i64) =
        sqlx::query_as("SELECT count(*), count(*) FILTER (WHERE reviewed) FROM uniprot.protein")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(n as usize, entries.len());
    assert_eq!(
        (n - reviewed) as usize,
        unreviewed,
        "PRELIMINARY entries are unreviewed"
    );

    // An ID line whose status is neither: refused naming the file, line and status, no Rust debug text.
    let mut bad = entries.clone();
    bad[2] = FlatEntry {
        text: bad[2].text.replacen(" STANDARD; ", " CURATED;  ", 1),
        ..bad[2].clone()
    };
    let dir = tempfile::tempdir().unwrap();
    let mirror = UniprotMirror::build(dir.path(), &[release(&bad, true)]).unwrap();
    let server = mirror.serve().await.unwrap();
    let db = TestDb::create().await;
    let out = run_uniprot(&Env::new(), &server.base_url(), db.url(), &[]);
    assert!(!out.status.success(), "{}", text(&out));
    let all = text(&out);
    assert!(
        all.contains("uniprot_sprot.dat.gz:"),
        "names the file and line: {all}"
    );
    assert!(all.contains("`CURATED;`"), "names the status: {all}");
    assert!(!all.contains("Some("), "no Rust debug text: {all}");
}
