//! Correct or refuse (issue 13), through the `psystem` binary against a real PostgreSQL and a real local GHO
//! server: a restart of an `append` load leaves the table a clean load leaves (case 4); a key given twice in a
//! manifest is refused naming both lines (case 8); a manifest that does not load is reported with its file, line
//! and column by every command that names the plugin, and by the API with its own code (case 13); the log file is
//! plain text (case 21). Needs `PSYSTEM_TEST_DATABASE_URL` (see scripts/test.sh).

mod support;

use psystem_testkit::db::TestDb;
use std::path::{Path, PathBuf};
use std::time::Duration;
use support::*;

/// Row count and an md5 over every row (as text), in the order of all columns: equal digests, equal tables.
async fn digest(url: &str, table: &str) -> (i64, String) {
    let pool = sqlx::PgPool::connect(url).await.unwrap();
    let row: (i64, Option<String>) = sqlx::query_as(&format!(
        "SELECT count(*), md5(string_agg(t::text, E'\\n' ORDER BY t::text)) FROM \"{table}\" t"
    ))
    .fetch_one(&pool)
    .await
    .unwrap();
    pool.close().await;
    (row.0, row.1.unwrap_or_default())
}

async fn scalar(url: &str, sql: &str) -> i64 {
    let pool = sqlx::PgPool::connect(url).await.unwrap();
    let n: i64 = sqlx::query_scalar(sql).fetch_one(&pool).await.unwrap();
    pool.close().await;
    n
}

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A CSV of `rows` data rows `id,v,label`; the row with id `bad` (if any) has a `v` that is no integer.
fn csv(rows: u32, bad: Option<u32>) -> String {
    let mut s = String::from("id,v,label\n");
    for id in 1..=rows {
        if Some(id) == bad {
            s.push_str(&format!("{id},oops,row {id}\n"));
        } else {
            s.push_str(&format!("{id},{},row {id}\n", id * 3));
        }
    }
    s
}

/// A files plugin `name` (folder `name`) loading `data.csv` of its folder into `table`, append, 10 rows a page.
fn csv_plugin(env: &Env, name: &str, file: &Path, table: &str) -> PathBuf {
    env.add_plugin(
        name,
        &format!(
            "name: {name}\nsource: {{kind: files}}\netl:\n  rows:\n    file: {{path: {}, batch_rows: 10, casts: {{id: int64, v: int64, label: text}}}}\n    destination:\n      postgres: {{table: {table}, mode: append}}\n",
            file.display()
        ),
    )
}

// ---------------------------------------------------------------------------------------------------------------
// Case 4: a restart of an append load removes the abandoned load's rows.

#[tokio::test(flavor = "multi_thread")]
async fn restart_of_a_failed_csv_append_load_leaves_the_table_of_a_clean_load() {
    let db = TestDb::create().await;
    let env = Env::new();
    let data = env.home.path().join("data.csv");
    // 95 rows; row 72 (line 73) is bad: 7 pages of 10 commit, the 8th fails.
    std::fs::write(&data, csv(95, Some(72))).unwrap();
    csv_plugin(&env, "appendcsv", &data, "appended");
    let out = env.run(&["run", "appendcsv", "--db", db.url()]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert_eq!(count(db.url(), "appended").await, 70, "{}", text(&out));

    // The file is fixed: resume refuses it (other contents) and says to restart.
    std::fs::write(&data, csv(95, None)).unwrap();
    let out = env.run(&["resume", "appendcsv/rows", "--db", db.url()]);
    assert!(!out.status.success(), "{}", text(&out));
    assert!(stderr(&out).contains("restart"), "{}", text(&out));

    let restart = env.run(&["run", "appendcsv", "--restart", "--db", db.url()]);
    assert!(restart.status.success(), "{}", text(&restart));

    // The same file loaded cleanly into another database.
    let clean = TestDb::create().await;
    let env2 = Env::new();
    csv_plugin(&env2, "cleancsv", &data, "appended");
    let out = env2.run(&["run", "cleancsv", "--db", clean.url()]);
    assert!(out.status.success(), "{}", text(&out));
    let want = digest(clean.url(), "appended").await;
    assert_eq!(want.0, 95);
    assert_eq!(digest(db.url(), "appended").await, want);
    assert!(
        text(&restart).contains("removed the 70 rows"),
        "the user is told: {}",
        text(&restart)
    );
    // The ledger: the abandoned load is cancelled, the new one completed with all rows.
    assert_eq!(
        scalar(
            db.url(),
            "SELECT count(*) FROM psystem.loads WHERE job_key = 'appendcsv/rows' AND state = 'cancelled'"
        )
        .await,
        1
    );
    assert_eq!(
        scalar(
            db.url(),
            "SELECT rows FROM psystem.loads WHERE job_key = 'appendcsv/rows' AND state = 'completed'"
        )
        .await,
        95
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn restart_of_an_append_load_keeps_other_rows_and_refuses_when_its_rows_changed() {
    let db = TestDb::create().await;
    let env = Env::new();
    let data = env.home.path().join("data.csv");
    std::fs::write(&data, csv(95, Some(72))).unwrap();
    csv_plugin(&env, "appendcsv", &data, "appended");
    let pool = sqlx::PgPool::connect(db.url()).await.unwrap();
    // Rows of someone else in the same table, before and during the load, stay.
    let out = env.run(&["run", "appendcsv", "--db", db.url()]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    sqlx::query("INSERT INTO appended (id, v, label) VALUES (1000, 1, 'mine'), (1001, 2, 'mine')")
        .execute(&pool)
        .await
        .unwrap();
    // Someone changes a row the abandoned load wrote: its rows can no longer be told apart; nothing changes.
    sqlx::query("UPDATE appended SET label = 'edited' WHERE id = 5")
        .execute(&pool)
        .await
        .unwrap();
    std::fs::write(&data, csv(95, None)).unwrap();
    let before = digest(db.url(), "appended").await;
    let out = env.run(&["run", "appendcsv", "--restart", "--db", db.url()]);
    assert!(!out.status.success(), "{}", text(&out));
    let err = stderr(&out);
    assert!(
        err.contains("cannot tell them apart")
            && err.contains("psystem cancel appendcsv/rows")
            && err.contains("69 of them"),
        "{err}"
    );
    assert!(!err.contains("Some("), "{err}");
    assert_eq!(
        digest(db.url(), "appended").await,
        before,
        "nothing changed"
    );

    // Undo the edit (the row is deleted and written again by the user: still not the load's), so do the fix the
    // message asks for: delete the load's rows, cancel, run again.
    sqlx::query("DELETE FROM appended WHERE id < 1000")
        .execute(&pool)
        .await
        .unwrap();
    let out = env.run(&["cancel", "appendcsv/rows", "--db", db.url()]);
    assert!(out.status.success(), "{}", text(&out));
    let out = env.run(&["run", "appendcsv", "--db", db.url()]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(count(db.url(), "appended").await, 97);

    // A second failed load next to the user's rows: the restart removes the load's rows only.
    std::fs::write(&data, csv(95, Some(40))).unwrap();
    let out = env.run(&["run", "appendcsv", "--force", "--db", db.url()]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert_eq!(count(db.url(), "appended").await, 97 + 30);
    std::fs::write(&data, csv(95, None)).unwrap();
    let out = env.run(&["run", "appendcsv", "--restart", "--db", db.url()]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(count(db.url(), "appended").await, 97 + 95);
    assert_eq!(
        scalar(
            db.url(),
            "SELECT count(*) FROM appended WHERE label = 'mine'"
        )
        .await,
        2
    );
    pool.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn restart_of_a_paused_gho_append_load_leaves_the_fixture_exactly() {
    let db = TestDb::create().await;
    let (server, _dir) = gho_server(&["WSH_8"]);
    server.set_delay(Duration::from_millis(150));
    let env = Env::new();
    env.add_plugin("t", &wsh8_plugin(&server.api_url(), "ghoappend", "append"));
    let out = env
        .run_and_interrupt(
            &["run", "wsh8test", "--db", db.url(), "--page-size", "10"],
            Duration::from_millis(200),
        )
        .await;
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    let paused = count(db.url(), "ghoappend").await;
    assert!(paused > 0 && paused < 165, "{paused}");
    server.set_delay(Duration::ZERO);
    let out = env.run(&[
        "run",
        "wsh8test",
        "--restart",
        "--db",
        db.url(),
        "--page-size",
        "25",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    assert_table_equals_fixture(db.url(), "ghoappend").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_kill_during_a_restart_leaves_the_old_table_or_the_new_one() {
    use rand::Rng;
    let db = TestDb::create().await;
    let (server, _dir) = gho_server(&["WSH_8"]);
    server.set_delay(Duration::from_millis(150));
    let env = Env::new();
    env.add_plugin(
        "t",
        &wsh8_plugin(&server.api_url(), "killedrestart", "append"),
    );
    let out = env
        .run_and_interrupt(
            &["run", "wsh8test", "--db", db.url(), "--page-size", "10"],
            Duration::from_millis(300),
        )
        .await;
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    server.set_delay(Duration::from_millis(80)); // 17 pages: a load takes 1.4 s or more, longer than any wait
                                                 // The rows in the table are always those of the one load that is not cancelled: never the abandoned load's
                                                 // rows next to the new load's.
    let held = "SELECT COALESCE(sum(rows), 0)::bigint FROM psystem.loads WHERE job_key = 'wsh8test/WSH_8' AND state <> 'cancelled'";
    let mut rng = rand::rng();
    for round in 0..6 {
        let mut child = env
            .cmd()
            .args([
                "run",
                "wsh8test",
                "--restart",
                "--db",
                db.url(),
                "--page-size",
                "10",
                "--no-progress",
            ])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let wait = rng.random_range(0..900);
        tokio::time::sleep(Duration::from_millis(wait)).await;
        child.kill().unwrap(); // SIGKILL
        let _ = child.wait();
        let rows = count(db.url(), "killedrestart").await;
        assert_eq!(
            rows,
            scalar(db.url(), held).await,
            "round {round}, killed after {wait} ms"
        );
        assert!(
            scalar(
                db.url(),
                "SELECT count(*) FROM psystem.loads WHERE job_key = 'wsh8test/WSH_8' AND state NOT IN ('cancelled', 'completed')"
            )
            .await
                <= 1
        );
    }
    server.set_delay(Duration::ZERO);
    let out = env.run(&["run", "wsh8test", "--restart", "--db", db.url()]);
    assert!(out.status.success(), "{}", text(&out));
    assert_table_equals_fixture(db.url(), "killedrestart").await;
}

// ---------------------------------------------------------------------------------------------------------------
// Case 8: a key given twice.

#[tokio::test(flavor = "multi_thread")]
async fn a_key_given_twice_in_a_manifest_is_refused_naming_both_lines() {
    let env = Env::new();
    let path = env.add_plugin(
        "dup",
        "name: dup\nrun: e\netl:\n  e:\n    indicator: WSH_8\n  f:\n    indicator: WSH_2\n  e:\n    indicator: WSH_3\n",
    );
    for args in [
        &["plugins", "show", "dup"][..],
        &["run", "dup", "--db", "postgres://nobody@127.0.0.1:1/none"],
    ] {
        let out = env.run(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", text(&out));
        let err = stderr(&out);
        assert!(
            err.contains(&format!("{}:8:3", path.display()))
                && err.contains("ETL entry `e`")
                && err.contains("line 4 column 3")
                && err.contains("line 8 column 3"),
            "{args:?}: {err}"
        );
    }
    let list = env.run(&["plugins", "list"]);
    assert!(stderr(&list).contains("line 4 column 3"), "{}", text(&list));

    // At a deeper level: a field of the destination, and a column of the transform.
    let path = env.add_plugin(
        "dup",
        "name: dup\netl:\n  e:\n    indicator: WSH_8\n    destination:\n      postgres:\n        table: one\n        mode: append\n        table: two\n",
    );
    let err = stderr(&env.run(&["plugins", "show", "dup"]));
    assert!(
        err.contains(&format!("{}:9:9", path.display()))
            && err.contains("etl.e.destination.postgres.table")
            && err.contains("line 7 column 9"),
        "{err}"
    );
    let columns = "      columns: {Id: a, Value: b, Id: c}";
    env.add_plugin(
        "dup",
        &format!("name: dup\netl:\n  e:\n    indicator: WSH_8\n    transform:\n{columns}\n"),
    );
    let err = stderr(&env.run(&["plugins", "show", "dup"]));
    let (first, second) = (
        columns.find("Id").unwrap() + 1,
        columns.rfind("Id").unwrap() + 1,
    );
    assert!(
        err.contains("etl.e.transform.columns.Id")
            && err.contains(&format!("line 6 column {first}"))
            && err.contains(&format!("line 6 column {second}")),
        "{err}"
    );
}

// ---------------------------------------------------------------------------------------------------------------
// Case 13: a manifest that does not load is reported, not "no plugin named".

#[tokio::test(flavor = "multi_thread")]
async fn a_broken_manifest_is_reported_with_file_line_and_column_by_every_command() {
    let db = TestDb::create().await;
    let env = Env::new();
    let data = env.home.path().join("bad.csv");
    std::fs::write(&data, csv(30, Some(15))).unwrap();
    let good = format!(
        "name: mine\nsource: {{kind: files}}\netl:\n  e:\n    file: {{path: {}, batch_rows: 5, casts: {{v: int64}}}}\n    destination:\n      postgres: {{table: minetable, mode: append}}\n",
        data.display()
    );
    // The folder's name is not the plugin's: both find it.
    let path = env.add_plugin("myfolder", &good);
    let out = env.run(&["run", "mine", "--db", db.url()]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "a failed job to resume: {}",
        text(&out)
    );

    // (manifest text, line of the error when we know it, words of the message)
    let broken: Vec<(String, Option<usize>, &str)> = vec![
        (
            good.replace("    destination:", "    colums: {a: b}\n    destination:"),
            Some(6),
            "unknown field `colums`",
        ),
        (
            good.replace("batch_rows: 5", "batch_rows: many"),
            Some(5),
            "invalid type",
        ),
        (
            good.replace("mode: append", "mode: sideways"),
            Some(7),
            "unknown variant `sideways`",
        ),
        (good.replace("etl:\n", "etl: [\n"), None, ""),
    ];
    for (text_, known_line, words) in &broken {
        std::fs::write(&path, text_).unwrap();
        // What `plugins list` says about the file (file:line:column: message) is what every command says.
        let list = env.run(&["plugins", "list"]);
        let listed = stderr(&list);
        let at = listed
            .lines()
            .find_map(|l| l.strip_prefix("warning: "))
            .filter(|l| l.starts_with(&path.display().to_string()))
            .unwrap_or_else(|| panic!("plugins list: {listed}"))
            .to_string();
        let (line, column) = {
            let rest = &at[path.display().to_string().len() + 1..];
            let mut parts = rest.splitn(3, ':');
            let l: usize = parts.next().unwrap().parse().unwrap();
            let c: usize = parts.next().unwrap().parse().unwrap();
            (l, c)
        };
        if let Some(want) = known_line {
            assert_eq!(*want, line, "{at}");
        }
        assert!(column > 0, "{at}");
        for (what, name) in [("name", "mine"), ("folder", "myfolder")] {
            for args in [
                vec!["run", name, "--db", db.url()],
                vec!["plugins", "show", name],
                vec!["plugins", "disable", name],
            ] {
                let out = env.run(&args);
                let err = stderr(&out);
                assert_eq!(out.status.code(), Some(2), "{what} {args:?}: {err}");
                assert!(
                    err.contains(&at) && err.contains(words) && !err.contains("no plugin named"),
                    "{what} {args:?}, expected {at}: {err}"
                );
            }
        }
        // `cancel` needs no manifest when the database is known, so it is checked once, after the loop.
        let args = ["resume", "mine/e", "--db", db.url()];
        let out = env.run(&args);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(
            err.contains(&at) && err.contains(words) && !err.contains("no plugin named"),
            "{args:?}: {err}"
        );
        // The API, as the desktop app calls it: its own code, not plugin_not_found.
        let api = psystem_api::Api::new(
            psystem_core::Home::at(env.home.path()),
            Path::new(env!("CARGO_MANIFEST_DIR")).join("assets"),
        );
        let err = api
            .plan(&psystem_api::runs::RunRequest {
                plugin: "mine".into(),
                db_url: Some(db.url().to_string()),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), "invalid_manifest", "{err}");
        assert!(err.to_string().contains(&at), "{err}");
        let err = api.plugin_show("myfolder").unwrap_err();
        assert_eq!(err.code(), "invalid_manifest", "{err}");
    }
    // With the manifest still broken, the failed job can be abandoned: `cancel` needs only the database.
    let out = env.run(&["cancel", "mine/e", "--db", db.url()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(
        env.status()["jobs"]["mine/e"]["state"].as_str(),
        Some("cancelled"),
        "{}",
        text(&out)
    );

    // A name no manifest gives is still "no plugin named".
    let out = env.run(&["run", "nothere", "--db", db.url()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("no plugin named `nothere`"),
        "{}",
        text(&out)
    );

    // A broken user plugin that would replace a bundled one is reported, not passed over for the bundled one.
    let over = env.add_plugin(
        "who_gho",
        "name: who_gho\netl:\n  WSH_8:\n    indicatr: WSH_8\n",
    );
    let out = env.run(&["plugins", "show", "who_gho"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        stderr(&out).contains(&format!("{}:4:5", over.display())),
        "{}",
        text(&out)
    );
}

// ---------------------------------------------------------------------------------------------------------------
// Case 21: the log file is plain text.

#[tokio::test(flavor = "multi_thread")]
async fn the_log_file_holds_no_terminal_colour_codes() {
    let db = TestDb::create().await;
    // A GHO indicator whose rows carry a field the schema does not know: the run logs a warning.
    let dir = tempfile::tempdir().unwrap();
    let mut doc: serde_json::Value =
        serde_json::from_slice(&std::fs::read(fixture_path()).unwrap()).unwrap();
    for row in doc["value"].as_array_mut().unwrap() {
        row["ExtraField"] = serde_json::json!("x");
    }
    std::fs::write(dir.path().join("WSH_8.json"), doc.to_string()).unwrap();
    let server = psystem_testkit::gho_server::GhoServer::start(dir.path()).unwrap();
    let env = Env::new();
    let out = env
        .cmd()
        .args([
            "run",
            "who_gho",
            "WSH_8",
            "--db",
            db.url(),
            "--source-url",
            &server.api_url(),
        ])
        .env("RUST_LOG", "info")
        .env("CLICOLOR_FORCE", "1")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let log = std::fs::read(env.home.path().join("logs/psystem.log")).unwrap();
    let log_text = String::from_utf8_lossy(&log);
    assert!(
        log_text.contains("WARN") && log_text.contains("ExtraField"),
        "the warning is logged: {log_text}"
    );
    assert!(
        !log.contains(&0x1b),
        "ESC in the log file: {}",
        log_text.replace('\x1b', "<ESC>")
    );
}
