//! End-to-end tests of clinical tables with the ID cache: the bundled `kidsfirst_study` plugin (real Kids First
//! fixture files) against a real PostgreSQL. Needs `PSYSTEM_TEST_DATABASE_URL` (see scripts/test.sh).

mod support;

use psystem_testkit::db::TestDb;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use support::*;

fn study_data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("assets/plugins/kidsfirst_study/data")
        .join(name)
}

/// (participant_id → target_id) of the participant table.
async fn participant_ids(url: &str) -> BTreeMap<String, String> {
    let pool = sqlx::PgPool::connect(url).await.unwrap();
    let rows: Vec<(String, String)> =
        sqlx::query_as("SELECT participant_id, target_id FROM participant")
            .fetch_all(&pool)
            .await
            .unwrap();
    pool.close().await;
    rows.into_iter().collect()
}

async fn scalar(url: &str, sql: &str) -> i64 {
    let pool = sqlx::PgPool::connect(url).await.unwrap();
    let n: i64 = sqlx::query_scalar(sql).fetch_one(&pool).await.unwrap();
    pool.close().await;
    n
}

fn ok(o: &std::process::Output) {
    assert!(o.status.success(), "{}", text(o));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_study_loads_with_stable_target_ids_and_resolved_references() {
    let db = TestDb::create().await;
    let env = Env::new();
    ok(&env.run(&["run", "kidsfirst_study", "--all", "--db", db.url()]));

    let ids = participant_ids(db.url()).await;
    assert_eq!(ids.len(), 9);
    let code = |id: &str| {
        id.len() == 11
            && id.starts_with("PT_")
            && id[3..]
                .chars()
                .all(|c| "0123456789ABCDEFGHJKMNPQRSTVWXYZ".contains(c))
    };
    assert!(ids.values().all(|id| code(id)), "{ids:?}");
    // Every biospecimen, diagnosis and phenotype points at its participant's target ID.
    for table in ["biospecimen", "diagnosis", "phenotype"] {
        let bad = scalar(
            db.url(),
            &format!("SELECT count(*) FROM {table} x LEFT JOIN participant p ON p.participant_id = x.participant_id WHERE x.participant_id_target_id IS DISTINCT FROM p.target_id"),
        )
        .await;
        assert_eq!(bad, 0, "{table}");
    }
    assert_eq!(
        scalar(db.url(), "SELECT count(*) FROM biospecimen").await,
        16
    );
    // (PID005, flu) appears twice in clinical.tsv: one diagnosis entity.
    assert_eq!(scalar(db.url(), "SELECT count(*) FROM diagnosis").await, 13);

    // A second run finds everything loaded and skips it; --force loads again and keeps every ID.
    let again = env.run(&["run", "kidsfirst_study", "--all", "--db", db.url()]);
    ok(&again);
    assert_eq!(
        String::from_utf8_lossy(&again.stdout)
            .matches("Skipped")
            .count(),
        4,
        "{}",
        text(&again)
    );
    ok(&env.run(&[
        "run",
        "kidsfirst_study",
        "participant",
        "--force",
        "--db",
        db.url(),
    ]));
    assert_eq!(participant_ids(db.url()).await, ids);

    // Dropping the tables and loading again gives every entity its old target ID.
    let pool = sqlx::PgPool::connect(db.url()).await.unwrap();
    let before: Vec<(String, String)> =
        sqlx::query_as("SELECT sample_id, target_id FROM biospecimen ORDER BY 1")
            .fetch_all(&pool)
            .await
            .unwrap();
    sqlx::query("DROP TABLE participant, phenotype, diagnosis, biospecimen")
        .execute(&pool)
        .await
        .unwrap();
    ok(&env.run(&["run", "kidsfirst_study", "--all", "--db", db.url()]));
    assert_eq!(participant_ids(db.url()).await, ids);
    let after: Vec<(String, String)> =
        sqlx::query_as("SELECT sample_id, target_id FROM biospecimen ORDER BY 1")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(before, after);
    // first_seen_run stays, last_seen_run moves on.
    let (first, last): (i64, i64) = sqlx::query_as(
        "SELECT min(first_seen_run), min(last_seen_run) FROM psystem.id_cache WHERE entity = 'participant'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert!(last > first, "first {first} last {last}");
    pool.close().await;

    // Run metrics: nulls and distinct values per column, time per phase.
    let runs = env.run(&["runs", "list", "--db", db.url(), "--json"]);
    ok(&runs);
    let runs: serde_json::Value = serde_json::from_slice(&runs.stdout).unwrap();
    let participant_load = runs
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["entry"] == "participant")
        .unwrap()["id"]
        .as_i64()
        .unwrap();
    let show = env.run(&[
        "runs",
        "show",
        &participant_load.to_string(),
        "--db",
        db.url(),
        "--json",
    ]);
    ok(&show);
    let show: serde_json::Value = serde_json::from_slice(&show.stdout).unwrap();
    let m = &show["metrics"];
    assert_eq!(m["rows_written"], 9);
    assert_eq!(m["columns"]["gender"]["nulls"], 6, "{m}");
    assert_eq!(m["columns"]["gender"]["distinct"], 2, "{m}");
    assert_eq!(m["columns"]["target_id"]["distinct"], 9, "{m}");
    assert!(m["phase_ms"].get("load").is_some(), "{m}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_renamed_and_reordered_file_gives_the_same_ids() {
    let db = TestDb::create().await;
    let env = Env::new();
    ok(&env.run(&["run", "kidsfirst_study", "participant", "--db", db.url()]));
    let ids = participant_ids(db.url()).await;

    // The same participants, rows reversed, in a file with another name, read by another plugin.
    let text_in = std::fs::read_to_string(study_data("family_and_phenotype.tsv")).unwrap();
    let mut lines: Vec<&str> = text_in.lines().collect();
    let data = lines.split_off(2);
    let reversed: Vec<&str> = lines.into_iter().chain(data.into_iter().rev()).collect();
    let dir = env.home.path().join("plugins/reordered");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("renamed_participants.tsv"),
        reversed.join("\n") + "\n",
    )
    .unwrap();
    env.add_plugin(
        "reordered",
        "name: reordered\nsource: {kind: files}\netl:\n  people:\n    file: {path: renamed_participants.tsv}\n    transform:\n      columns: {participant: participant_id, gender: gender}\n    entity: participant\n    unique_key: [participant_id]\n    target_id: {prefix: PT_}\n    destination:\n      postgres: {table: people}\n",
    );
    ok(&env.run(&["run", "reordered", "--db", db.url()]));
    let pool = sqlx::PgPool::connect(db.url()).await.unwrap();
    let people: BTreeMap<String, String> =
        sqlx::query_as::<_, (String, String)>("SELECT participant_id, target_id FROM people")
            .fetch_all(&pool)
            .await
            .unwrap()
            .into_iter()
            .collect();
    assert_eq!(people, ids);

    // A changed unique key for the entity is refused until its cache entries are cleared.
    env.add_plugin(
        "rekeyed",
        "name: rekeyed\nsource: {kind: files}\netl:\n  people:\n    file: {path: ../reordered/renamed_participants.tsv}\n    transform:\n      columns: {participant: participant_id, gender: gender}\n    entity: participant\n    unique_key: [participant_id, gender]\n    destination:\n      postgres: {table: people2}\n",
    );
    let refused = env.run(&["run", "rekeyed", "--db", db.url()]);
    assert_eq!(refused.status.code(), Some(1), "{}", text(&refused));
    assert!(
        String::from_utf8_lossy(&refused.stderr)
            .contains("psystem idcache clear --entity participant"),
        "{}",
        text(&refused)
    );
    assert_eq!(count_if_exists(db.url(), "people2").await, 0);
    ok(&env.run(&[
        "idcache",
        "clear",
        "--entity",
        "participant",
        "--yes",
        "--db",
        db.url(),
    ]));
    ok(&env.run(&["run", "rekeyed", "--db", db.url()]));
    assert_eq!(count_if_exists(db.url(), "people2").await, 9);
    pool.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn unresolved_references_fail_with_the_keys_and_self_references_resolve_in_a_second_pass() {
    let db = TestDb::create().await;
    let env = Env::new();
    // Biospecimens alone: their participants are in no cache and not in this run.
    let out = env.run(&["run", "kidsfirst_study", "biospecimen", "--db", db.url()]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("participant")
            && err.contains("pid001")
            && err.contains("not in the ID cache"),
        "{err}"
    );
    assert_eq!(
        count_if_exists(db.url(), "biospecimen").await,
        0,
        "nothing of the failed page is committed"
    );

    // Participants whose mother is a participant further down the file (a later page): deferred, then resolved.
    let dir = env.home.path().join("plugins/family");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("people.csv"),
        "id,mother\nkid1,mum1\nkid2,mum2\nkid3,\nmum1,\nmum2,gran\ngran,\n",
    )
    .unwrap();
    env.add_plugin(
        "family",
        "name: family\nsource: {kind: files}\netl:\n  people:\n    file: {path: people.csv, batch_rows: 2}\n    entity: person\n    unique_key: [id]\n    references: {mother: person}\n    destination:\n      postgres: {table: person}\n",
    );
    ok(&env.run(&["run", "family", "--db", db.url()]));
    let pool = sqlx::PgPool::connect(db.url()).await.unwrap();
    let rows: Vec<(String, Option<String>, Option<String>)> = sqlx::query_as(
        "SELECT p.id, p.mother_target_id, m.target_id FROM person p LEFT JOIN person m ON m.id = p.mother ORDER BY p.id",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(rows.len(), 6);
    for (id, got, want) in rows {
        assert_eq!(got, want, "mother of {id}");
    }
    pool.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn idcache_commands_list_search_show_export_import_and_clear() {
    let db = TestDb::create().await;
    let env = Env::new();
    ok(&env.run(&["run", "kidsfirst_study", "--all", "--db", db.url()]));
    let ids = participant_ids(db.url()).await;
    let json = |args: &[&str]| -> serde_json::Value {
        let mut a = args.to_vec();
        a.extend(["--db", db.url(), "--json"]);
        let o = env.run(&a);
        ok(&o);
        serde_json::from_slice(&o.stdout).unwrap()
    };
    let entities = json(&["idcache", "entities"]);
    let names: Vec<&str> = entities
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["entity"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["biospecimen", "diagnosis", "participant", "phenotype"]
    );
    let page = json(&[
        "idcache",
        "list",
        "--entity",
        "participant",
        "--page-size",
        "4",
        "--page",
        "3",
    ]);
    assert_eq!(page["total"], 9);
    assert_eq!(page["entries"].as_array().unwrap().len(), 1, "{page}");
    let found = json(&[
        "idcache",
        "search",
        "PID00",
        "--entity",
        "phenotype",
        "--sort",
        "id",
        "--desc",
    ]);
    assert_eq!(found["total"], 9);
    let pt = &ids["PID004"];
    let shown = json(&["idcache", "show", "--entity", "participant", pt]);
    assert_eq!(shown["unique_key"], "pid004");

    let file = env.home.path().join("participants.csv");
    ok(&env.run(&[
        "idcache",
        "export",
        "--entity",
        "participant",
        "--output",
        file.to_str().unwrap(),
        "--db",
        db.url(),
    ]));
    assert_eq!(std::fs::read_to_string(&file).unwrap().lines().count(), 10);
    let cleared = env.run(&[
        "idcache",
        "clear",
        "--entity",
        "participant",
        "--db",
        db.url(),
    ]);
    assert!(
        !cleared.status.success(),
        "clear asks for --yes when not on a terminal"
    );
    ok(&env.run(&[
        "idcache",
        "clear",
        "--entity",
        "participant",
        "--yes",
        "--db",
        db.url(),
    ]));
    assert_eq!(
        json(&["idcache", "list", "--entity", "participant"])["total"],
        0
    );
    let report = json(&[
        "idcache",
        "import",
        "--entity",
        "participant",
        file.to_str().unwrap(),
    ]);
    assert_eq!(report["inserted"], 9);
    assert_eq!(
        json(&["idcache", "show", "--entity", "participant", "pid004"])["target_id"],
        pt.as_str()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dry_run_reports_changes_and_leaves_the_database_unchanged() {
    let db = TestDb::create().await;
    let env = Env::new();
    // On an empty database: everything would be new, and nothing is created (not even the ledger).
    let out = env.run(&[
        "run",
        "kidsfirst_study",
        "--all",
        "--dry-run",
        "--db",
        db.url(),
        "--json",
    ]);
    ok(&out);
    let reports: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let by_job = |job: &str| {
        reports
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["job"] == job)
            .unwrap()["report"]
            .clone()
    };
    assert_eq!(by_job("kidsfirst_study/participant")["inserted"], 9);
    assert_eq!(by_job("kidsfirst_study/participant")["new_ids"], 9);
    assert_eq!(
        by_job("kidsfirst_study/biospecimen")["unresolved_references"],
        0,
        "participants of the same run count"
    );
    assert_eq!(
        scalar(
            db.url(),
            "SELECT count(*) FROM pg_namespace WHERE nspname = 'psystem'"
        )
        .await,
        0
    );

    ok(&env.run(&["run", "kidsfirst_study", "--all", "--db", db.url()]));
    // A changed participants file: PID001's gender changes, PID009 goes, PID010 comes.
    let original = std::fs::read_to_string(study_data("family_and_phenotype.tsv")).unwrap();
    let changed: String = original
        .lines()
        .filter(|l| !l.contains("PID009"))
        .map(|l| {
            if l.contains("PID001") {
                l.replace("\tF\t", "\tM\t")
            } else {
                l.to_string()
            }
        })
        .chain(["[ignore]\tPID010\t \t \tF\tSP010\t7\tTRUE\tFALSE\t7\tFALSE".to_string()])
        .collect::<Vec<_>>()
        .join("\n");
    let dir = env.home.path().join("plugins/changed");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("p.tsv"), changed + "\n").unwrap();
    for (mode, deleted) in [("merge", 0), ("replace", 1)] {
        env.add_plugin(
            "changed",
            &format!("name: changed\nsource: {{kind: files}}\netl:\n  participant:\n    file: {{path: p.tsv}}\n    transform:\n      columns: {{participant: participant_id, gender: gender}}\n    entity: participant\n    unique_key: [participant_id]\n    destination:\n      postgres: {{table: participant, mode: {mode}}}\n"),
        );
        let dump = |label: &str| {
            let o = std::process::Command::new("pg_dump")
                .args(["--no-owner", "--data-only", db.url()])
                .output()
                .unwrap();
            assert!(
                o.status.success(),
                "pg_dump {label}: {}",
                String::from_utf8_lossy(&o.stderr)
            );
            // pg_dump ≥ 15.14 brackets its output with `\restrict KEY` / `\unrestrict KEY` lines, KEY random.
            String::from_utf8(o.stdout)
                .unwrap()
                .lines()
                .filter(|l| !l.starts_with("\\restrict") && !l.starts_with("\\unrestrict"))
                .collect::<Vec<_>>()
                .join("\n")
        };
        let before = dump("before");
        let out_dir = env.home.path().join(format!("dry-{mode}"));
        let out = env.run(&[
            "run",
            "changed",
            "--dry-run",
            "--output",
            out_dir.to_str().unwrap(),
            "--db",
            db.url(),
            "--json",
        ]);
        ok(&out);
        let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let r = &r[0]["report"];
        assert_eq!(
            (
                r["inserted"].as_u64(),
                r["updated"].as_u64(),
                r["deleted"].as_u64(),
                r["new_ids"].as_u64()
            ),
            (Some(1), Some(1), Some(deleted), Some(1)),
            "{mode}: {r}"
        );
        assert!(
            out_dir
                .join("participant.parquet")
                .metadata()
                .unwrap()
                .len()
                > 0
        );
        let after = dump("after");
        assert!(
            before.len() > 1000 && before.contains("PID001"),
            "the dump holds the data"
        );
        assert!(
            before == after,
            "{mode}: a dry run changed the database:\n--- before\n{before}\n--- after\n{after}"
        );
    }

    // The real load (replace): PID009 leaves the table but keeps its cache entry, whose last_seen_run shows when
    // it was last seen; PID010 gets a new ID; PID001 keeps its ID.
    let ids = participant_ids(db.url()).await;
    ok(&env.run(&["run", "changed", "--db", db.url()]));
    let now = participant_ids(db.url()).await;
    assert_eq!(now.get("PID001"), ids.get("PID001"));
    assert!(!now.contains_key("PID009") && now.contains_key("PID010"));
    let pool = sqlx::PgPool::connect(db.url()).await.unwrap();
    let seen: BTreeMap<String, i64> = sqlx::query_as::<_, (String, i64)>(
        "SELECT unique_key, last_seen_run FROM psystem.id_cache WHERE entity = 'participant'",
    )
    .fetch_all(&pool)
    .await
    .unwrap()
    .into_iter()
    .collect();
    assert_eq!(seen.len(), 10, "{seen:?}");
    assert!(seen["pid009"] < seen["pid001"], "{seen:?}");
    pool.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn gho_time_window_loads_only_those_years() {
    let db = TestDb::create().await;
    let (server, _dir) = gho_server(&["WSH_8"]);
    let env = Env::new();
    // Every WSH_8 row is for 2004.
    let out = env.run(&[
        "run",
        "who_gho",
        "--db",
        db.url(),
        "--source-url",
        &server.api_url(),
        "--since",
        "2005",
    ]);
    ok(&out);
    assert_eq!(count(db.url(), "gho_wsh_8").await, 0);
    let out = env.run(&[
        "run",
        "who_gho",
        "--db",
        db.url(),
        "--source-url",
        &server.api_url(),
        "--since",
        "2004",
        "--until",
        "2004",
    ]);
    ok(&out);
    assert_eq!(count(db.url(), "gho_wsh_8").await, 165);
    assert!(server
        .requests()
        .iter()
        .any(|r| r.filter.as_deref() == Some("TimeDim ge 2004 and TimeDim le 2004")));
}

#[tokio::test(flavor = "multi_thread")]
async fn files_outside_the_modification_window_are_skipped_and_the_inference_is_reported() {
    let db = TestDb::create().await;
    let env = Env::new();
    let out = env.run(&[
        "run",
        "kidsfirst_study",
        "participant",
        "--until",
        "2000",
        "--db",
        db.url(),
    ]);
    ok(&out);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("outside the --since/--until window"),
        "{}",
        text(&out)
    );
    assert_eq!(count_if_exists(db.url(), "participant").await, 0);
    let out = env.run(&[
        "run",
        "kidsfirst_study",
        "participant",
        "--since",
        "2000",
        "--db",
        db.url(),
        "--no-progress",
    ]);
    ok(&out);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("age (hrs)_2: Int64, inferred")
            && err.contains("renamed: repeats `age (hrs)`"),
        "{err}"
    );
    assert!(err.contains("specimens: List(Utf8), multi-valued"), "{err}");
    assert_eq!(count_if_exists(db.url(), "participant").await, 9);
}
