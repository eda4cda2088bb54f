//! End-to-end tests of the `psystem` binary against a real PostgreSQL and a real local GHO OData server.
//! They need `PSYSTEM_TEST_DATABASE_URL` (an admin URL; `scripts/test.sh` starts a cluster and sets it).

mod support;

use psystem_testkit::db::TestDb;
use psystem_testkit::gho_server::Fault;
use std::time::Duration;
use support::*;

#[tokio::test(flavor = "multi_thread")]
async fn seed_config_loads_unchanged_and_runs_through_its_tag() {
    let db = TestDb::create().await;
    let (server, _dir) = gho_server(&["NCD_CCS_BreastCancer", "NCDMORT3070"]);
    let env = Env::new();
    let show = env.run(&["plugins", "show", "GHOTopOSTGRES", "--json"]);
    assert!(show.status.success(), "{}", text(&show));
    let detail: serde_json::Value = serde_json::from_slice(&show.stdout).unwrap();
    assert_eq!(detail["name"], "GHOTopOSTGRES");
    assert_eq!(
        detail["etl"][0]["destination_url"],
        "$GHOTopOSTGRES_DATABASE_URL"
    );

    // The seed's `!GHOTopOSTGRES_DATABASE_URL` tag gives the destination.
    let out = env
        .cmd()
        .env("GHOTopOSTGRES_DATABASE_URL", db.url())
        .args([
            "run",
            "GHOTopOSTGRES",
            "NCD_CCS_BreastCancer",
            "--source-url",
            &server.api_url(),
            "--page-size",
            "40",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let pool = sqlx::PgPool::connect(db.url()).await.unwrap();
    let cols: Vec<String> = sqlx::query_scalar(
        "SELECT column_name::text FROM information_schema.columns WHERE table_name = 'ncd_ccs_breastcancer' ORDER BY ordinal_position",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(
        cols,
        [
            "Id",
            "Country",
            "TimeDimType",
            "TimeDim",
            "Region",
            "Value",
            "NumericValue",
            "Date"
        ]
    );
    let (n, countries): (i64, i64) =
        sqlx::query_as("SELECT count(*), count(DISTINCT \"Country\") FROM ncd_ccs_breastcancer")
            .fetch_one(&pool)
            .await
            .unwrap();
    let fixture = fixture_rows();
    assert_eq!(n as usize, fixture.len());
    let distinct: std::collections::BTreeSet<_> = fixture
        .iter()
        .map(|r| r["SpatialDim"].as_str().unwrap())
        .collect();
    assert_eq!(countries as usize, distinct.len());

    // The default entry (`run: NCDMORT3070`) keeps only Id and Value.
    let out = env
        .cmd()
        .env("GHOTopOSTGRES_DATABASE_URL", db.url())
        .args(["run", "GHOTopOSTGRES", "--source-url", &server.api_url()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM ncdmort3070 WHERE \"Value\" IS NOT NULL")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(
        n as usize,
        fixture.iter().filter(|r| !r["Value"].is_null()).count()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn wsh8_loads_every_value_exactly() {
    let db = TestDb::create().await;
    let (server, _dir) = gho_server(&["WSH_8"]);
    let env = Env::new();
    let out = env.run(&[
        "run",
        "who_gho",
        "WSH_8",
        "--db",
        db.url(),
        "--source-url",
        &server.api_url(),
        "--page-size",
        "25",
        "--json",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let result: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(result["outcome"]["state"], "completed");
    assert_eq!(result["outcome"]["counters"]["rows"], 165);
    assert_eq!(result["outcome"]["counters"]["pages"], 7);
    assert_eq!(result["preview"]["rows"].as_array().unwrap().len(), 5);
    assert_table_equals_fixture(db.url(), "gho_wsh_8").await;
    // Requests paged with a stable order and asked for the count.
    let reqs = server.requests();
    assert!(
        reqs.iter()
            .all(|r| r.orderby.as_deref() == Some("Id") && r.count == Some(true)),
        "{reqs:?}"
    );

    let status = env.status();
    let job = &status["jobs"]["who_gho/WSH_8"];
    assert_eq!(job["state"].as_str(), Some("completed"));
    assert_eq!(job["rows"].as_u64(), Some(165));
    assert_eq!(job["total_rows"].as_u64(), Some(165));

    // Merge mode: a second run gives the same table, not twice the rows.
    let out = env.run(&[
        "run",
        "who_gho",
        "WSH_8",
        "--db",
        db.url(),
        "--source-url",
        &server.api_url(),
        "--page-size",
        "100",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    assert_table_equals_fixture(db.url(), "gho_wsh_8").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn disabled_plugin_is_refused_and_the_state_survives() {
    let db = TestDb::create().await;
    let (server, _dir) = gho_server(&["WSH_8"]);
    let env = Env::new();
    let off = env.run(&["plugins", "disable", "who_gho"]);
    assert!(off.status.success(), "{}", text(&off));
    // A new process sees the state (settings.yaml, since who_gho is bundled).
    let list = env.run(&["plugins", "list", "--json"]);
    let list: serde_json::Value = serde_json::from_slice(&list.stdout).unwrap();
    let who = list["plugins"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "who_gho")
        .unwrap();
    assert_eq!(who["enabled"], false);
    let run = env.run(&[
        "run",
        "who_gho",
        "--db",
        db.url(),
        "--source-url",
        &server.api_url(),
    ]);
    assert_eq!(run.status.code(), Some(2), "{}", text(&run));
    let err = String::from_utf8_lossy(&run.stderr);
    assert!(
        err.contains("disabled") && err.contains("psystem plugins enable who_gho"),
        "{err}"
    );
    assert!(
        server.requests().is_empty(),
        "a disabled plugin must not touch the source"
    );

    // A user plugin: its own file is edited, comments kept.
    let path = env.add_plugin(
        "mine",
        &wsh8_plugin(&server.api_url(), "mine", "append")
            .replace("enabled: true", "enabled: true  # on or off"),
    );
    assert!(env
        .run(&["plugins", "disable", "wsh8test"])
        .status
        .success());
    let text_after = std::fs::read_to_string(&path).unwrap();
    assert!(
        text_after.contains("# test plugin") && text_after.contains("enabled: false  # on or off"),
        "{text_after}"
    );
    assert_eq!(
        env.run(&["run", "wsh8test", "--db", db.url()])
            .status
            .code(),
        Some(2)
    );
    assert!(env.run(&["plugins", "enable", "wsh8test"]).status.success());
    let ok = env.run(&["run", "wsh8test", "--db", db.url()]);
    assert!(ok.status.success(), "{}", text(&ok));
    assert_eq!(count(db.url(), "mine").await, 165);
}

#[tokio::test(flavor = "multi_thread")]
async fn invalid_manifest_names_file_line_and_column() {
    let env = Env::new();
    let path = env.add_plugin(
        "bad",
        "name: bad\netl:\n  e:\n    indicator: X\n    colums: {Id: Id}\n",
    );
    let out = env.run(&["run", "bad"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let list = env.run(&["plugins", "list"]);
    let err = String::from_utf8_lossy(&list.stderr);
    assert!(
        err.contains(&format!("{}:5:5", path.display())) && err.contains("unknown field `colums`"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn faults_end_in_retried_success_or_a_clear_error_never_a_duplicate() {
    let db = TestDb::create().await;
    let (server, _dir) = gho_server(&["WSH_8"]);
    let env = Env::new();
    env.add_plugin("t", &wsh8_plugin(&server.api_url(), "faults", "append"));

    // Retried: a 500, a 429 with Retry-After, a truncated body, a connection reset.
    server.inject(Fault::Status(500));
    server.inject(Fault::TooManyRequests {
        retry_after_secs: 1,
    });
    server.inject(Fault::TruncatedBody);
    server.inject(Fault::ConnectionReset);
    let out = env.run(&["run", "wsh8test", "--db", db.url(), "--page-size", "30"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_table_equals_fixture(db.url(), "faults").await;

    // Not retried: a 404 fails the job with a clear error; the committed pages stay; resume completes it.
    let (server2, _dir2) = gho_server(&["WSH_8"]);
    let env2 = Env::new();
    env2.add_plugin("t", &wsh8_plugin(&server2.api_url(), "faults2", "append"));
    server2.inject(Fault::Delay(Duration::from_millis(1)));
    server2.inject(Fault::Delay(Duration::from_millis(1)));
    server2.inject(Fault::Status(404));
    let out = env2.run(&["run", "wsh8test", "--db", db.url(), "--page-size", "30"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("404")
            && err.contains("page 3")
            && err.contains("psystem resume wsh8test/WSH_8"),
        "{err}"
    );
    assert_eq!(
        count(db.url(), "faults2").await,
        60,
        "two pages committed before the failure"
    );
    let status = env2.status();
    assert_eq!(
        status["jobs"]["wsh8test/WSH_8"]["state"].as_str(),
        Some("failed")
    );
    assert!(status["jobs"]["wsh8test/WSH_8"]["last_error"]
        .as_str()
        .unwrap()
        .contains("404"));
    let out = env2.run(&["resume", "wsh8test/WSH_8"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_table_equals_fixture(db.url(), "faults2").await;

    // A body that is not an OData envelope: a clear error, nothing committed from it.
    let (server3, _dir3) = gho_server(&["WSH_8"]);
    let env3 = Env::new();
    env3.add_plugin("t", &wsh8_plugin(&server3.api_url(), "faults3", "append"));
    server3.inject(Fault::NotOData);
    let out = env3.run(&["run", "wsh8test", "--db", db.url(), "--page-size", "30"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("OData"),
        "{}",
        text(&out)
    );
    assert_eq!(count(db.url(), "faults3").await, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn ctrl_c_pauses_at_a_checkpoint_and_resume_finishes() {
    let db = TestDb::create().await;
    let (server, _dir) = gho_server(&["WSH_8"]);
    server.set_delay(Duration::from_millis(150));
    let env = Env::new();
    env.add_plugin("t", &wsh8_plugin(&server.api_url(), "paused", "append"));
    let out = env
        .run_and_interrupt(
            &["run", "wsh8test", "--db", db.url(), "--page-size", "10"],
            Duration::from_millis(200),
        )
        .await;
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("psystem resume wsh8test/WSH_8"),
        "{}",
        text(&out)
    );
    let status = env.status();
    let job = &status["jobs"]["wsh8test/WSH_8"];
    assert_eq!(job["state"].as_str(), Some("paused"));
    let rows = job["rows"].as_i64().unwrap();
    assert!(
        rows > 0 && rows < 165,
        "paused mid-way: {rows}\n{}\n{}",
        std::fs::read_to_string(env.home.path().join("status.yaml")).unwrap(),
        text(&out)
    );
    assert_eq!(
        count(db.url(), "paused").await,
        rows,
        "status.yaml mirrors the database"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        count(db.url(), "paused").await,
        rows,
        "nothing moves while paused"
    );
    server.set_delay(Duration::ZERO);
    let out = env.run(&["resume"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("Resuming"),
        "{}",
        text(&out)
    );
    assert_table_equals_fixture(db.url(), "paused").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn kill_9_at_random_moments_then_resume_gives_the_uninterrupted_table() {
    use rand::Rng;
    let (server, _dir) = gho_server(&["WSH_8"]);
    server.set_delay(Duration::from_millis(40)); // 17 pages: a load takes about a second
    let mut rng = rand::rng();
    let mut killed_mid_load = 0;
    for round in 0..20 {
        let db = TestDb::create().await;
        let env = Env::new();
        env.add_plugin("t", &wsh8_plugin(&server.api_url(), "killed", "append"));
        let mut child = env
            .cmd()
            .args([
                "run",
                "wsh8test",
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
        // Every fourth round kills at a random moment after the start (often before the first commit); the others
        // at a random moment after the first committed page, whatever the machine's speed.
        let wait = if round % 4 == 0 {
            rng.random_range(0..400)
        } else {
            env.wait_for_first_page().await;
            rng.random_range(0..500)
        };
        tokio::time::sleep(Duration::from_millis(wait)).await;
        child.kill().unwrap(); // SIGKILL
        let _ = child.wait();
        // Resume the job status.yaml recorded; killed before its first status write, run it again (which
        // resumes an unfinished load in the database, if the kill came after the load was opened).
        let has_status = env.home.path().join("status.yaml").exists();
        let committed = count_if_exists(db.url(), "killed").await;
        if committed > 0 && committed < 165 {
            killed_mid_load += 1;
        }
        let out = if has_status {
            env.run(&[
                "resume",
                "wsh8test/WSH_8",
                "--db",
                db.url(),
                "--no-progress",
            ])
        } else {
            env.run(&[
                "run",
                "wsh8test",
                "--db",
                db.url(),
                "--page-size",
                "10",
                "--no-progress",
            ])
        };
        assert!(
            out.status.success(),
            "round {round} (killed after {wait} ms): {}",
            text(&out)
        );
        assert_table_equals_fixture(db.url(), "killed").await;
    }
    assert!(
        killed_mid_load >= 5,
        "only {killed_mid_load} of 20 kills landed mid-load: the test is not testing resume"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn fresh_database_with_an_old_status_file_is_reconciled() {
    let db1 = TestDb::create().await;
    let db2 = TestDb::create().await;
    let (server, _dir) = gho_server(&["WSH_8"]);
    server.set_delay(Duration::from_millis(100));
    let env = Env::new();
    env.add_plugin("t", &wsh8_plugin(&server.api_url(), "moved", "append"));
    let _ = env
        .run_and_interrupt(
            &["run", "wsh8test", "--db", db1.url(), "--page-size", "10"],
            Duration::from_millis(700),
        )
        .await;
    let before = env.status()["jobs"]["wsh8test/WSH_8"]["rows"]
        .as_u64()
        .unwrap();
    assert!(before > 0);
    server.set_delay(Duration::ZERO);
    // The user points the job at a new, empty database: status.yaml is ahead of it.
    let out = env.run(&["resume", "wsh8test/WSH_8", "--db", db2.url()]);
    assert!(out.status.success(), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("status.yaml says") && err.contains("starting from page 1"),
        "{err}"
    );
    assert_table_equals_fixture(db2.url(), "moved").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn no_secret_in_status_logs_output_or_ledger() {
    let db = TestDb::create().await;
    let (server, _dir) = gho_server(&["WSH_8"]);
    let secret = "Sup3r-s3cret-pw";
    let pool = sqlx::PgPool::connect(db.url()).await.unwrap();
    let role = format!("psystem_pw_{}", db.name());
    sqlx::query(&format!("CREATE ROLE \"{role}\" LOGIN PASSWORD '{secret}'"))
        .execute(&pool)
        .await
        .unwrap();
    sqlx::query(&format!(
        "GRANT ALL ON DATABASE \"{}\" TO \"{role}\"",
        db.name()
    ))
    .execute(&pool)
    .await
    .unwrap();
    sqlx::query(&format!(
        "ALTER DATABASE \"{}\" OWNER TO \"{role}\"",
        db.name()
    ))
    .execute(&pool)
    .await
    .unwrap();
    let mut url = url::Url::parse(db.url()).unwrap();
    url.set_username(&role).unwrap();
    url.set_password(Some(secret)).unwrap();
    let env = Env::new();
    env.add_plugin("t", &wsh8_plugin(&server.api_url(), "secretive", "merge"));
    let out = env
        .cmd()
        .env("RUST_LOG", "debug")
        .args(["run", "wsh8test", "--db", url.as_str(), "-vv"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let everything = format!(
        "{}{}{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        std::fs::read_to_string(env.home.path().join("status.yaml")).unwrap(),
        std::fs::read_to_string(env.home.path().join("logs/psystem.log")).unwrap(),
    );
    assert!(
        everything.contains("***") || everything.contains(&role),
        "the destination is shown, redacted"
    );
    assert!(
        !everything.contains(secret),
        "the password leaked:\n{everything}"
    );
    let ledger: String = sqlx::query_scalar(
        "SELECT coalesce(string_agg(to_jsonb(l)::text, ' '), '') FROM psystem.loads l",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert!(!ledger.is_empty() && !ledger.contains(secret), "{ledger}");
    pool.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn without_a_database_it_loads_into_the_local_cluster_it_manages() {
    struct Down<'a>(&'a Env);
    impl Drop for Down<'_> {
        fn drop(&mut self) {
            let _ = self.0.run(&["db", "down"]);
        }
    }
    let (server, _dir) = gho_server(&["WSH_8"]);
    let env = Env::new();
    let _down = Down(&env);
    let out = env.run(&["run", "who_gho", "--source-url", &server.api_url()]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("local database"),
        "{}",
        text(&out)
    );
    let url = env.run(&["db", "url"]);
    let url = String::from_utf8(url.stdout).unwrap().trim().to_string();
    assert!(url.starts_with("postgres://"), "{url}");
    assert_table_equals_fixture(&url, "gho_wsh_8").await;
    let status = env.run(&["db", "status", "--json"]);
    let status: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(status["running"], true);
    let down = env.run(&["db", "down", "--json"]);
    let down: serde_json::Value = serde_json::from_slice(&down.stdout).unwrap();
    assert_eq!(down["running"], false);
}

#[tokio::test(flavor = "multi_thread")]
async fn replace_load_paused_then_cancelled_leaves_no_trace_and_reruns_from_the_start() {
    let db = TestDb::create().await;
    let (server, _dir) = gho_server(&["WSH_8"]);
    server.set_delay(Duration::from_millis(100));
    let env = Env::new();
    env.add_plugin("t", &wsh8_plugin(&server.api_url(), "swapped", "replace"));
    let out = env
        .run_and_interrupt(
            &["run", "wsh8test", "--db", db.url(), "--page-size", "10"],
            Duration::from_millis(600),
        )
        .await;
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    // A replace load shows readers nothing until it is complete.
    assert_eq!(count_if_exists(db.url(), "swapped").await, 0);
    let pool = sqlx::PgPool::connect(db.url()).await.unwrap();
    let staging = "SELECT count(*) FROM pg_tables WHERE tablename LIKE 'swapped%psystem%'";
    let n: i64 = sqlx::query_scalar(staging).fetch_one(&pool).await.unwrap();
    assert_eq!(n, 1, "one staging table while paused");

    let out = env.run(&["cancel", "wsh8test/WSH_8", "--db", db.url()]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        env.status()["jobs"]["wsh8test/WSH_8"]["state"].as_str(),
        Some("cancelled")
    );
    let n: i64 = sqlx::query_scalar(staging).fetch_one(&pool).await.unwrap();
    assert_eq!(n, 0, "cancel drops the staging table");

    server.set_delay(Duration::ZERO);
    let out = env.run(&["run", "wsh8test", "--db", db.url(), "--page-size", "10"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        !String::from_utf8_lossy(&out.stderr).contains("Resuming"),
        "{}",
        text(&out)
    );
    assert_table_equals_fixture(db.url(), "swapped").await;
    let n: i64 = sqlx::query_scalar(staging).fetch_one(&pool).await.unwrap();
    assert_eq!(n, 0, "no staging table left after the swap");
    pool.close().await;
}
