//! End-to-end tests of UniProt loads through the real binary: a mirror of the real UniProt fixture entries served
//! over HTTP (`psystem_testkit::uniprot`), a real PostgreSQL, and real worker processes.
//!
//! - every entry loads with the values the parser reads from its text, child rows included;
//! - a second release rewrites only the entries whose content changed (their row versions change, the others'
//!   do not), adds the new one and deletes the removed one;
//! - a metalink with a wrong MD5 refuses the load; a malformed entry fails with file, line and accession, or is
//!   skipped and listed with `--skip-bad-entries`;
//! - three `psystem worker` processes share one load while one of them is killed with SIGKILL halfway: its unit
//!   is reclaimed after the heartbeat timeout and every entry is loaded exactly once;
//! - FASTA and JSON export.
//!
//! They need `PSYSTEM_TEST_DATABASE_URL` (an admin URL; `scripts/test.sh` starts a cluster and sets it).

mod support;

use std::collections::{HashMap, HashSet};
use std::process::Child;
use std::time::Duration;

use psystem_testkit::db::TestDb;
use psystem_testkit::uniprot::{FlatEntry, MirrorRelease, UniprotMirror};
use sqlx::{PgPool, Row};
use support::{text, Env};

async fn pool(db: &TestDb) -> PgPool {
    PgPool::connect(db.url()).await.unwrap()
}

fn run_uniprot(env: &Env, url: &str, db: &str, extra: &[&str]) -> std::process::Output {
    let mut args = vec!["run", "uniprot", "--source-url", url, "--db", db];
    args.extend_from_slice(extra);
    env.run(&args)
}

/// The entries of `release` parsed by the library, by accession.
fn parsed(entries: &[FlatEntry]) -> HashMap<String, psystem_uniprot::Entry> {
    entries
        .iter()
        .map(|e| {
            let entry = psystem_uniprot::parse_entry(e.text.as_bytes()).unwrap_or_else(|err| {
                panic!("fixture entry {} does not parse: {err}", e.accession)
            });
            (e.accession.clone(), entry)
        })
        .collect()
}

/// A cross-reference row: database, id, properties, isoform.
type XrefRow = (String, String, Vec<String>, Option<String>);

/// Asserts that `uniprot.protein` and its child tables hold exactly `entries`, value by value.
async fn assert_tables_hold(pool: &PgPool, entries: &[FlatEntry]) {
    let expected = parsed(entries);
    let rows = sqlx::query(
        "SELECT accession, entry_name, reviewed, sequence, length, mass, crc64, sequence_md5, content_md5, \
         taxonomy_id, organism, protein_existence, sequence_version, entry_version, created::text AS created, \
         lineage, description::text AS description, comments::text AS comments FROM uniprot.protein",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    assert_eq!(rows.len(), expected.len(), "one row per entry");
    for row in &rows {
        let acc: String = row.get("accession");
        let e = expected
            .get(&acc)
            .unwrap_or_else(|| panic!("unexpected accession {acc}"));
        assert_eq!(row.get::<String, _>("entry_name"), e.entry_name, "{acc}");
        assert_eq!(
            row.get::<bool, _>("reviewed"),
            e.status == psystem_uniprot::Status::Reviewed,
            "{acc}"
        );
        assert_eq!(
            row.get::<String, _>("sequence"),
            e.sequence.residues,
            "{acc}"
        );
        assert_eq!(
            row.get::<i32, _>("length") as u32,
            e.sequence.length,
            "{acc}"
        );
        assert_eq!(
            row.get::<i64, _>("mass") as u64,
            e.sequence.molecular_weight,
            "{acc}"
        );
        assert_eq!(row.get::<String, _>("crc64"), e.sequence.crc64, "{acc}");
        assert_eq!(
            row.get::<String, _>("sequence_md5"),
            e.sequence_md5,
            "{acc}"
        );
        assert_eq!(row.get::<String, _>("content_md5"), e.content_md5, "{acc}");
        assert_eq!(
            row.get::<i64, _>("taxonomy_id") as u64,
            e.taxonomy.ncbi_taxid,
            "{acc}"
        );
        assert_eq!(row.get::<String, _>("organism"), e.organism, "{acc}");
        assert_eq!(
            row.get::<i16, _>("protein_existence") as u8,
            e.protein_existence.level,
            "{acc}"
        );
        assert_eq!(
            row.get::<i32, _>("sequence_version") as u32,
            e.dates.sequence_version
        );
        assert_eq!(
            row.get::<i32, _>("entry_version") as u32,
            e.dates.entry_version
        );
        assert_eq!(
            row.get::<String, _>("created"),
            e.dates.created.to_string(),
            "{acc}"
        );
        assert_eq!(row.get::<Vec<String>, _>("lineage"), e.lineage, "{acc}");
        let description: serde_json::Value =
            serde_json::from_str(&row.get::<String, _>("description")).unwrap();
        assert_eq!(
            description,
            serde_json::to_value(&e.description).unwrap(),
            "{acc}"
        );
        let comments: serde_json::Value =
            serde_json::from_str(&row.get::<String, _>("comments")).unwrap();
        assert_eq!(
            comments,
            serde_json::to_value(&e.comments).unwrap(),
            "{acc}"
        );
    }
    // Child rows: per entry, in file order.
    let xrefs = sqlx::query(
        "SELECT accession, database, id, properties, isoform FROM uniprot.protein_xref ORDER BY accession, ordinal",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    let mut by_acc: HashMap<String, Vec<XrefRow>> = HashMap::new();
    for r in &xrefs {
        by_acc.entry(r.get("accession")).or_default().push((
            r.get("database"),
            r.get("id"),
            r.get("properties"),
            r.get("isoform"),
        ));
    }
    for (acc, e) in &expected {
        let want: Vec<XrefRow> = e
            .cross_references
            .iter()
            .map(|x| {
                (
                    x.database.to_string(),
                    x.id.clone(),
                    x.properties.clone(),
                    x.isoform.clone(),
                )
            })
            .collect();
        assert_eq!(
            by_acc.remove(acc).unwrap_or_default(),
            want,
            "cross-references of {acc}"
        );
    }
    for (table, count) in [
        (
            "protein_feature",
            expected.values().map(|e| e.features.len()).sum::<usize>(),
        ),
        (
            "protein_keyword",
            expected.values().map(|e| e.keywords.len()).sum(),
        ),
        (
            "protein_reference",
            expected.values().map(|e| e.references.len()).sum(),
        ),
        (
            "protein_accession",
            expected
                .values()
                .map(|e| e.secondary_accessions.iter().collect::<HashSet<_>>().len())
                .sum(),
        ),
    ] {
        let n: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM uniprot.{table}"))
            .fetch_one(pool)
            .await
            .unwrap();
        assert_eq!(n as usize, count, "rows of {table}");
    }
    // Feature locations and qualifiers of one entry, value by value.
    let (acc, e) = expected
        .iter()
        .max_by_key(|(a, e)| (e.features.len(), a.as_str()))
        .unwrap();
    let features = sqlx::query(
        "SELECT type, start_position, end_position, isoform, qualifiers::text AS q FROM uniprot.protein_feature \
         WHERE accession = $1 ORDER BY ordinal",
    )
    .bind(acc)
    .fetch_all(pool)
    .await
    .unwrap();
    assert_eq!(features.len(), e.features.len());
    for (row, f) in features.iter().zip(&e.features) {
        assert_eq!(row.get::<String, _>("type"), f.feature_type);
        assert_eq!(
            row.get::<Option<i32>, _>("start_position")
                .map(|v| v as u32),
            f.location.start.value
        );
        assert_eq!(
            row.get::<Option<i32>, _>("end_position").map(|v| v as u32),
            f.location.end.value
        );
        assert_eq!(row.get::<Option<String>, _>("isoform"), f.location.sequence);
        let q: serde_json::Value = serde_json::from_str(&row.get::<String, _>("q")).unwrap();
        assert_eq!(q, serde_json::to_value(&f.qualifiers).unwrap());
    }
}

/// Row versions (`xmin`) of the protein rows, by accession: a rewritten row gets a new one.
async fn row_versions(pool: &PgPool) -> HashMap<String, String> {
    sqlx::query("SELECT accession, xmin::text AS v FROM uniprot.protein")
        .fetch_all(pool)
        .await
        .unwrap()
        .into_iter()
        .map(|r| (r.get("accession"), r.get("v")))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_release_loads_every_entry_and_the_next_rewrites_only_what_changed() {
    let dir = tempfile::tempdir().unwrap();
    let first = MirrorRelease::from_fixtures("2024_01").unwrap();
    let (second, changes) = first.successor("2024_02").unwrap();
    assert!(!changes.changed.is_empty() && changes.removed.len() == 1 && changes.added.len() == 1);
    let mirror = UniprotMirror::build(dir.path(), &[first.clone(), second.clone()]).unwrap();
    let server = mirror.serve().await.unwrap();
    let db = TestDb::create().await;
    let env = Env::new();
    let pool = pool(&db).await;

    let out = run_uniprot(
        &env,
        &server.base_url(),
        db.url(),
        &["--release", "2024_01", "--unit-size", "200KiB"],
    );
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(&format!("{} inserted", first.sprot.len())),
        "{}",
        text(&out)
    );
    assert_tables_hold(&pool, &first.sprot).await;
    let units: i64 = sqlx::query_scalar("SELECT count(*) FROM psystem.work_units")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert!(units > 3, "the file was split into several units ({units})");
    let before = row_versions(&pool).await;

    // The same release again is skipped.
    let again = run_uniprot(
        &env,
        &server.base_url(),
        db.url(),
        &["--release", "2024_01"],
    );
    assert!(again.status.success(), "{}", text(&again));
    assert!(
        String::from_utf8_lossy(&again.stdout).contains("already loaded"),
        "{}",
        text(&again)
    );

    // The next release (the current one): a few changed, one removed, one added.
    let out = run_uniprot(
        &env,
        &server.base_url(),
        db.url(),
        &["--unit-size", "150KiB", "--workers", "3"],
    );
    assert!(out.status.success(), "{}", text(&out));
    assert_tables_hold(&pool, &second.sprot).await;
    let after = row_versions(&pool).await;
    for (acc, version) in &after {
        if changes.changed.contains(acc) || changes.added.contains(acc) {
            assert_ne!(
                before.get(acc),
                Some(version),
                "{acc} changed: its row is new"
            );
        } else {
            assert_eq!(
                before.get(acc),
                Some(version),
                "{acc} is unchanged: its row was not rewritten"
            );
        }
    }
    assert!(!after.contains_key(&changes.removed[0]));
    let ledger = sqlx::query(
        "SELECT rows, rows_inserted, rows_updated, rows_deleted, verified FROM psystem.loads \
         WHERE release = '2024_02' AND state = 'completed'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(ledger.get::<i64, _>("rows") as usize, second.sprot.len());
    assert_eq!(ledger.get::<i64, _>("rows_inserted"), 1);
    assert_eq!(
        ledger.get::<i64, _>("rows_updated") as usize,
        changes.changed.len()
    );
    assert_eq!(ledger.get::<i64, _>("rows_deleted"), 1);
    assert!(ledger.get::<bool, _>("verified"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let unchanged = second.sprot.len() - changes.changed.len() - 1;
    assert!(
        stdout.contains(&format!("{unchanged} unchanged")),
        "{}",
        text(&out)
    );
    // No seen table is left behind.
    let leftovers: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_tables WHERE schemaname = 'uniprot' AND tablename LIKE '%psystem_seen%'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(leftovers, 0);

    // Exports: FASTA with UniProt headers and 60 residues a line, JSON lines with the child rows.
    let fasta_path = env.home.path().join("sprot.fasta");
    let out = env.run(&[
        "export",
        "uniprot",
        "--db",
        db.url(),
        "--format",
        "fasta",
        "--output",
        fasta_path.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let fasta = std::fs::read_to_string(&fasta_path).unwrap();
    let expected = parsed(&second.sprot);
    let mut records = 0;
    assert!(fasta.starts_with('>'));
    for record in fasta[1..].split("\n>") {
        records += 1;
        let (header, residues) = record.split_once('\n').unwrap();
        let mut parts = header.splitn(3, '|');
        assert_eq!(parts.next(), Some("sp"));
        let acc = parts.next().unwrap();
        let e = &expected[acc];
        let rest = parts.next().unwrap();
        assert!(rest.starts_with(&format!("{} ", e.entry_name)), "{header}");
        assert!(
            rest.contains(&format!(" OX={} ", e.taxonomy.ncbi_taxid)),
            "{header}"
        );
        assert!(
            rest.ends_with(&format!(
                " PE={} SV={}",
                e.protein_existence.level, e.dates.sequence_version
            )),
            "{header}"
        );
        let lines: Vec<&str> = residues.lines().filter(|l| !l.is_empty()).collect();
        assert!(lines.iter().all(|l| l.len() <= 60));
        assert!(lines[..lines.len() - 1].iter().all(|l| l.len() == 60));
        assert_eq!(lines.concat(), e.sequence.residues, "{acc}");
    }
    assert_eq!(records, second.sprot.len());
    // One header checked in full, against the fields UniProt's FASTA header is made of.
    let ywhab = expected
        .get("P31946")
        .expect("SWISS100 holds P31946 (1433B_HUMAN)");
    let header = fasta
        .lines()
        .find(|l| l.starts_with(">sp|P31946|"))
        .unwrap();
    assert_eq!(
        header,
        format!(
            ">sp|P31946|1433B_HUMAN {} OS=Homo sapiens OX=9606 GN=YWHAB PE={} SV={}",
            ywhab
                .description
                .recommended_name
                .as_ref()
                .unwrap()
                .full
                .as_ref()
                .unwrap()
                .value,
            ywhab.protein_existence.level,
            ywhab.dates.sequence_version
        )
    );
    let out = env.run(&[
        "export",
        "uniprot",
        "--db",
        db.url(),
        "--format",
        "json",
        "--accession",
        "P31946",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["accession"], "P31946");
    assert_eq!(
        doc["cross_references"].as_array().unwrap().len(),
        ywhab.cross_references.len()
    );
    assert_eq!(
        doc["features"].as_array().unwrap().len(),
        ywhab.features.len()
    );
    assert_eq!(doc["sequence"], ywhab.sequence.residues);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_md5_in_the_metalink_refuses_the_load() {
    let dir = tempfile::tempdir().unwrap();
    let mut release = MirrorRelease::from_fixtures("2024_01").unwrap();
    release.corrupt_md5_of = Some("uniprot_sprot.dat.gz".into());
    let mirror = UniprotMirror::build(dir.path(), &[release]).unwrap();
    let server = mirror.serve().await.unwrap();
    let db = TestDb::create().await;
    let env = Env::new();
    let out = run_uniprot(&env, &server.base_url(), db.url(), &[]);
    assert!(!out.status.success(), "{}", text(&out));
    let all = text(&out);
    assert!(all.contains("do not match the manifest"), "{all}");
    // Both digests are named: the manifest's and the file's.
    assert!(
        all.contains("md5 mismatch for uniprot_sprot.dat.gz"),
        "{all}"
    );
    assert!(
        all.contains("the manifest says") && all.contains("the file hashes to"),
        "{all}"
    );
    let pool = pool(&db).await;
    let loaded: Option<String> = sqlx::query_scalar("SELECT to_regclass('uniprot.protein')::text")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert!(loaded.is_none(), "nothing was loaded");
    let status: String =
        sqlx::query_scalar("SELECT status FROM psystem.files WHERE path = 'uniprot_sprot.dat.gz'")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(status, "mismatch");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_entry_fails_with_its_place_or_is_skipped_and_listed() {
    let dir = tempfile::tempdir().unwrap();
    let good = MirrorRelease::from_fixtures("2024_01").unwrap();
    let mut sprot = good.sprot.clone();
    // Entry 5 gets a sequence one residue short of what its ID and SQ lines announce.
    let victim = sprot[5].clone();
    let broken_text = {
        let seq_start = victim.text.find("\nSQ   ").unwrap();
        let first_residue = victim.text[seq_start..].find("\n     ").unwrap() + seq_start + 6;
        let mut t = victim.text.clone();
        t.remove(first_residue);
        t
    };
    assert_ne!(broken_text, victim.text);
    sprot[5] = FlatEntry {
        text: broken_text,
        ..victim.clone()
    };
    let release = MirrorRelease::with_entries("2024_01", sprot, Vec::new()).unwrap();
    let mirror = UniprotMirror::build(dir.path(), &[release]).unwrap();
    let server = mirror.serve().await.unwrap();
    let db = TestDb::create().await;
    let env = Env::new();

    let out = run_uniprot(
        &env,
        &server.base_url(),
        db.url(),
        &["--unit-size", "100KiB"],
    );
    assert!(!out.status.success(), "{}", text(&out));
    let all = text(&out);
    assert!(
        all.contains("uniprot_sprot.dat.gz:"),
        "the error names the file and line: {all}"
    );
    assert!(
        all.contains(&victim.accession),
        "the error names the accession: {all}"
    );
    let pool = pool(&db).await;
    let failed: String =
        sqlx::query_scalar("SELECT state FROM psystem.loads ORDER BY id DESC LIMIT 1")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(failed, "failed");

    let out = run_uniprot(
        &env,
        &server.base_url(),
        db.url(),
        &["--unit-size", "100KiB", "--skip-bad-entries"],
    );
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("1 malformed entry skipped"),
        "{}",
        text(&out)
    );
    assert!(stdout.contains(&victim.accession), "{}", text(&out));
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM uniprot.protein")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(n as usize, good.sprot.len() - 1);
    let victim_row: i64 =
        sqlx::query_scalar("SELECT count(*) FROM uniprot.protein WHERE accession = $1")
            .bind(&victim.accession)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(victim_row, 0);
}

/// A UniProt accession of the 6-character form `[A-NR-Z][0-9][A-Z][A-Z0-9]{2}[0-9]` for `n` < 129,600.
fn accession(n: usize) -> String {
    const ALNUM: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ";
    format!(
        "B{}Z{}{}{}",
        n % 10,
        ALNUM[(n / 10) % 36] as char,
        ALNUM[(n / 360) % 36] as char,
        (n / 12_960) % 10
    )
}

/// `copies` copies of the fixture entries with new accessions and entry names.
fn many_entries(copies: usize) -> Vec<FlatEntry> {
    let base: Vec<FlatEntry> = psystem_testkit::uniprot::fixture_entries()
        .unwrap()
        .into_iter()
        .filter(|e| e.reviewed)
        .collect();
    let mut out = Vec::new();
    for c in 0..copies {
        for e in &base {
            let n = out.len();
            let acc = accession(n);
            let name = format!("T{n}_TEST");
            let text = e
                .text
                .replacen(
                    &format!("AC   {};", e.accession),
                    &format!("AC   {acc};"),
                    1,
                )
                .replacen(
                    &format!("ID   {}", e.entry_name),
                    &format!("ID   {name:<w$}", w = e.entry_name.len().max(name.len())),
                    1,
                );
            let entry = FlatEntry::from_text(text).unwrap();
            assert_eq!(entry.accession, acc, "copy {c} of {}", e.accession);
            out.push(entry);
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_workers_share_a_load_and_a_killed_one_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let entries = many_entries(8);
    let release = MirrorRelease::with_entries("2024_01", entries.clone(), Vec::new()).unwrap();
    let mirror = UniprotMirror::build(dir.path(), &[release]).unwrap();
    let server = mirror.serve().await.unwrap();
    let db = TestDb::create().await;
    let pool = pool(&db).await;

    // The coordinator records the shared load and leaves the work to the workers.
    let coordinator = Env::new();
    let out = run_uniprot(
        &coordinator,
        &server.base_url(),
        db.url(),
        &[
            "--workers",
            "0",
            "--unit-size",
            "128KiB",
            "--heartbeat-timeout",
            "2s",
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("psystem worker"),
        "{}",
        text(&out)
    );
    let units: i64 = sqlx::query_scalar("SELECT count(*) FROM psystem.work_units")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert!(
        units >= 30,
        "enough units to kill a worker halfway ({units})"
    );

    // Three workers, each with its own home (its own download cache), as on three machines.
    let homes: Vec<Env> = (0..3).map(|_| Env::new()).collect();
    let mut workers: Vec<Child> = homes.iter().map(|h| h.spawn_worker(db.url())).collect();
    let victim_pid = workers[0].id();
    // Kill worker 0 while it holds a unit, after some units are done.
    support::wait_until_holding_a_unit(&pool, victim_pid, units / 4, units).await;
    workers[0].kill().unwrap(); // SIGKILL
    workers[0].wait().unwrap();
    for w in workers.iter_mut().skip(1) {
        let status = support::wait_for(w, "a surviving worker", Duration::from_secs(180));
        assert!(status.success(), "a surviving worker failed");
    }

    let state: String = sqlx::query_scalar("SELECT state FROM psystem.loads")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(state, "completed");
    let row =
        sqlx::query("SELECT count(*) AS n, count(DISTINCT accession) AS d FROM uniprot.protein")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(
        row.get::<i64, _>("n") as usize,
        entries.len(),
        "every entry once"
    );
    assert_eq!(row.get::<i64, _>("d") as usize, entries.len());
    let reclaimed: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM psystem.work_units WHERE attempts > 1 AND state = 'done'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert!(reclaimed >= 1, "the killed worker's unit was taken over");
    let by_worker: Vec<String> =
        sqlx::query_scalar("SELECT DISTINCT split_part(worker, '/', 1) FROM psystem.work_units")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert!(by_worker.len() >= 2, "units were shared: {by_worker:?}");
    assert_tables_hold(&pool, &entries).await;
}
