//! End-to-end tests of the real release app (`psystem-desktop` built with `--features tauri/custom-protocol`),
//! driven through tauri-driver + WebKitWebDriver with fantoccini, under Xvfb, against a real PostgreSQL
//! (`PSYSTEM_TEST_DATABASE_URL`), the local GHO OData test server and a local Open Targets release mirror.
//!
//! Run with `scripts/test-desktop.sh` (it installs what is needed and runs `xvfb-run -a cargo test … --test e2e`).
//! The app binary is `$PSYSTEM_DESKTOP_BIN`, else `psystem-desktop` in the target folder this test was built in
//! (`cargo build --release … --features tauri/custom-protocol` first). This package needs no psystem crate: the
//! test checks the app's effects through files (settings.yaml, status.yaml) and SQL.
//! Screenshots of each screen go to `docs/screenshots/<screen>.png`.

mod support;

use fantoccini::{Client, Locator};
use psystem_testkit::db::TestDb;
use psystem_testkit::gho_server::GhoServer;
use psystem_testkit::mirror::MirrorServer;
use psystem_testkit::opentargets::{build_release, OtLayout};
use std::path::{Path, PathBuf};
use std::time::Duration;
use support::*;

/// Rows of the WSH_8 fixture (`assets/demo/who_gho/WSH_8.json`).
const WSH8_ROWS: i64 = 165;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

fn app_binary() -> PathBuf {
    if let Some(p) = std::env::var_os("PSYSTEM_DESKTOP_BIN") {
        return PathBuf::from(p);
    }
    // <target>/<profile>/deps/e2e-<hash> → <target>/<profile>/psystem-desktop
    let exe = std::env::current_exe().unwrap();
    let bin = exe
        .parent()
        .and_then(Path::parent)
        .unwrap()
        .join("psystem-desktop");
    assert!(
        bin.exists(),
        "{} is missing: build the app first (cargo build --release --manifest-path src-tauri/Cargo.toml --features \
         tauri/custom-protocol) or set PSYSTEM_DESKTOP_BIN",
        bin.display()
    );
    bin
}

async fn count(pool: &sqlx::PgPool, table: &str) -> i64 {
    sqlx::query_scalar::<_, i64>(&format!("SELECT count(*) FROM {table}"))
        .fetch_one(pool)
        .await
        .unwrap_or(0)
}

fn status_state(home: &Path, key: &str) -> Option<String> {
    let text = std::fs::read_to_string(home.join("status.yaml")).ok()?;
    let v: serde_yaml_ng::Value = serde_yaml_ng::from_str(&text).ok()?;
    v.get("jobs")?
        .get(key)?
        .get("state")?
        .as_str()
        .map(str::to_string)
}

/// The plugin the pause test loads: WSH_8 from the local server, 10 rows a page (17 pages).
fn slow_gho_plugin(api: &str) -> String {
    format!(
        "name: slowgho\ncreator: e2e\ndescription: WSH_8 from the local test server, 10 rows a page\nenabled: true\nrun: wsh8\n\
         source:\n  kind: gho_odata\n  api: {api}\n  page_size: 10\netl:\n  wsh8:\n    indicator: WSH_8\n    destination:\n      \
         postgres:\n        table: slow_wsh8\n"
    )
}

/// A release plugin over the local mirror (two releases of the `target` dataset).
fn release_plugin(url: &str) -> String {
    format!(
        "name: ot\ncreator: e2e\ndescription: Open Targets fixture mirror\nenabled: true\nrun: target\nsource:\n  kind: release\n  \
         provider: opentargets\n  url: {url}\netl:\n  target:\n    dataset: target\n    aliases: [targets]\n    flatten: {{depth: 1, separator: _}}\n    \
         destination:\n      postgres:\n        schema: ot\n        table: target\n        mode: replace\n"
    )
}

/// Flips one byte in the middle of the first `.parquet` file under `dir` (same size, different checksum).
fn corrupt_one_parquet(dir: &Path) {
    fn find(dir: &Path) -> Option<PathBuf> {
        for e in std::fs::read_dir(dir).ok()? {
            let p = e.ok()?.path();
            if p.is_dir() {
                if let Some(f) = find(&p) {
                    return Some(f);
                }
            } else if p.extension().is_some_and(|x| x == "parquet") {
                return Some(p);
            }
        }
        None
    }
    let file = find(dir).expect("a parquet file in the 24.09 release");
    let mut bytes = std::fs::read(&file).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&file, bytes).unwrap();
}

struct Fixture {
    home: tempfile::TempDir,
    _gho_dir: tempfile::TempDir,
    gho: GhoServer,
    _mirror_dir: tempfile::TempDir,
    _mirror: MirrorServer,
    db: TestDb,
}

async fn fixture() -> Fixture {
    assert!(
        std::env::var_os("PSYSTEM_TEST_DATABASE_URL").is_some(),
        "the desktop E2E tests need PSYSTEM_TEST_DATABASE_URL (an admin URL of a PostgreSQL server) and a display; \
         run scripts/test-desktop.sh"
    );
    let db = TestDb::create().await;
    let home = tempfile::tempdir().unwrap();

    let gho_dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        repo().join("assets/demo/who_gho/WSH_8.json"),
        gho_dir.path().join("WSH_8.json"),
    )
    .unwrap();
    let gho = GhoServer::start(gho_dir.path()).unwrap();

    let mirror_dir = tempfile::tempdir().unwrap();
    build_release(
        mirror_dir.path(),
        "24.09",
        OtLayout::EtlParquet,
        &["target"],
    )
    .unwrap();
    build_release(mirror_dir.path(), "25.03", OtLayout::Output, &["target"]).unwrap();
    // An error path: one byte of 24.09's data file changed after its checksum manifest was written.
    corrupt_one_parquet(&mirror_dir.path().join("24.09"));
    let mirror = MirrorServer::start(mirror_dir.path().to_path_buf())
        .await
        .unwrap();

    let plugins = home.path().join("plugins");
    for (folder, text) in [
        ("slowgho", slow_gho_plugin(&gho.api_url())),
        ("ot", release_plugin(&mirror.base_url())),
    ] {
        std::fs::create_dir_all(plugins.join(folder)).unwrap();
        std::fs::write(plugins.join(folder).join("plugin.yaml"), text).unwrap();
    }
    // A saved database, active: the test database (no password: trust authentication).
    std::fs::write(
        home.path().join("databases.yaml"),
        format!(
            "active: e2e\ndatabases:\n  - name: e2e\n    url: {}\n    password: none\n",
            db.url()
        ),
    )
    .unwrap();
    Fixture {
        home,
        _gho_dir: gho_dir,
        gho,
        _mirror_dir: mirror_dir,
        _mirror: mirror,
        db,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_app_end_to_end() {
    let f = std::sync::Arc::new(fixture().await);
    let log = f.home.path().join("tauri-driver.log");
    let driver = Driver::start(
        &[
            ("PSYSTEM_HOME", f.home.path().display().to_string()),
            (
                "PSYSTEM_ASSETS",
                repo().join("assets").display().to_string(),
            ),
            ("DATABASE_URL", f.db.url().to_string()),
            ("RUST_LOG", "info".to_string()),
        ],
        &log,
    );
    let c = driver.session(&app_binary()).await;
    let (c2, f2) = (c.clone(), f.clone());
    // On its own task so that a failed assertion (a panic) still leaves the window to photograph.
    let result = match tokio::spawn(async move { scenario(&c2, &f2).await }).await {
        Ok(r) => r,
        Err(e) => Err(match e.try_into_panic() {
            Ok(p) => p
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "panic".into()),
            Err(e) => e.to_string(),
        }),
    };
    if result.is_err() {
        if let Ok(png) = c.screenshot().await {
            let shot = std::env::temp_dir().join("psystem-e2e-failure.png");
            let _ = std::fs::write(&shot, png);
            eprintln!("screenshot of the failure: {}", shot.display());
        }
    }
    let _ = c.close().await;
    drop(driver);
    if let Err(e) = result {
        let driver_log = std::fs::read_to_string(&log).unwrap_or_default();
        panic!(
            "{e}\n--- tauri-driver and app log (last 4000 chars)\n{}",
            tail(&driver_log, 4000)
        );
    }
}

fn tail(s: &str, n: usize) -> &str {
    let start = s.len().saturating_sub(n);
    let start = (start..s.len())
        .find(|i| s.is_char_boundary(*i))
        .unwrap_or(0);
    &s[start..]
}

/// The scenario; an `Err` carries what failed (panics inside fail the test as well).
async fn scenario(c: &Client, f: &Fixture) -> Result<(), String> {
    let pool = sqlx::PgPool::connect(f.db.url()).await.unwrap();
    let home = f.home.path();

    // ---- Plugins: toggle a bundled plugin; the state is persisted (settings.yaml) ----
    nav(c, "plugins").await;
    let toggle = tid("plugin-toggle-who_gho");
    let before = wait_for(30, "the who_gho toggle", || async {
        let e = c.find(Locator::Css(&toggle)).await.ok()?;
        e.attr("aria-checked").await.ok().flatten()
    })
    .await;
    assert_eq!(before, "true", "who_gho is enabled by default");
    click(c, "plugin-toggle-who_gho", 5).await;
    wait_for(10, "the toggle to say aria-checked=false", || async {
        let e = c.find(Locator::Css(&toggle)).await.ok()?;
        (e.attr("aria-checked").await.ok().flatten()? == "false").then_some(())
    })
    .await;
    // A bundled plugin's state is kept in settings.yaml (`plugins: {who_gho: {enabled: false}}`). The switch
    // flips at once and the file is written when the app's command returns: wait for it.
    let settings_path = home.join("settings.yaml");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    loop {
        let text = std::fs::read_to_string(&settings_path).unwrap_or_default();
        let settings: serde_yaml_ng::Value =
            serde_yaml_ng::from_str(&text).unwrap_or(serde_yaml_ng::Value::Null);
        if settings["plugins"]["who_gho"]["enabled"].as_bool() == Some(false) {
            break;
        }
        if std::time::Instant::now() > deadline {
            return Err(format!(
                "settings.yaml does not say who_gho is disabled within 15 s: {text:?}"
            ));
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let after = c
        .find(Locator::Css(&toggle))
        .await
        .map_err(|e| format!("the who_gho toggle: {e}"))?
        .attr("aria-checked")
        .await
        .map_err(|e| format!("the who_gho toggle: {e}"))?;
    assert_eq!(after.as_deref(), Some("false"), "the switch stayed off");
    screenshot(c, "plugins").await;

    // ---- Releases: the test plugin's releases newest first; Verify → every badge says verified ----
    nav(c, "releases").await;
    let picker = wait_for(30, "the releases plugin picker", || async {
        c.find(Locator::Css(&tid("releases-plugin"))).await.ok()
    })
    .await;
    picker
        .select_by_value("ot")
        .await
        .map_err(|e| format!("selecting plugin ot: {e}"))?;
    let names = wait_for(30, "releases 25.03 and 24.09", || async {
        let rows = c
            .find_all(Locator::Css("[data-testid^=\"release-2\"]"))
            .await
            .ok()?;
        let mut names = Vec::new();
        for r in rows {
            names.push(r.attr("data-testid").await.ok().flatten()?);
        }
        (names.len() == 2).then_some(names)
    })
    .await;
    assert_eq!(names, ["release-25.03", "release-24.09"], "newest first");
    click(c, "release-25.03", 5).await;
    click(c, "release-verify", 30).await;
    // The files (and their badges) show once the dataset is opened.
    let open_files = "[data-testid=\"dataset-target\"] button[aria-label^=\"Show files\"]";
    let opener = wait_for(30, "the dataset's file list button", || async {
        c.find(Locator::Css(open_files)).await.ok()
    })
    .await;
    opener
        .click()
        .await
        .map_err(|e| format!("opening the file list: {e}"))?;
    let badges = wait_for(60, "every file badge to say verified", || async {
        let badges = c.find_all(Locator::Css(&tid("file-badge"))).await.ok()?;
        let mut texts = Vec::new();
        for b in badges {
            texts.push(b.text().await.ok()?.trim().to_lowercase());
        }
        (!texts.is_empty() && texts.iter().all(|t| t == "verified")).then_some(texts)
    })
    .await;
    assert!(!badges.is_empty());
    let recorded: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM psystem.files WHERE source = 'ot' AND release = '25.03' AND status = 'verified'",
    )
    .fetch_one(&pool)
    .await
    .map_err(|e| format!("psystem.files: {e}"))?;
    assert_eq!(
        recorded as usize,
        badges.len(),
        "verdicts recorded in psystem.files"
    );
    screenshot(c, "releases").await;
    // 24.09 has a changed file: Verify says mismatch (and psystem.files records it).
    click(c, "release-24.09", 5).await;
    click(c, "release-verify", 30).await;
    // The dataset is `targets` in this (older) layout; the UI may keep its file list open from 25.03.
    tokio::time::sleep(Duration::from_millis(500)).await;
    if let Ok(opener) = c
        .find(Locator::Css(
            "[data-testid^=\"dataset-\"] button[aria-label^=\"Show files\"]",
        ))
        .await
    {
        opener
            .click()
            .await
            .map_err(|e| format!("opening the file list: {e}"))?;
    }
    wait_for(60, "a file badge saying mismatch", || async {
        let badges = c.find_all(Locator::Css(&tid("file-badge"))).await.ok()?;
        for b in badges {
            if b.text().await.ok()?.trim().to_lowercase() == "mismatch" {
                return Some(());
            }
        }
        None
    })
    .await;
    let mismatched: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM psystem.files WHERE source = 'ot' AND release = '24.09' AND status = 'mismatch'",
    )
    .fetch_one(&pool)
    .await
    .map_err(|e| format!("psystem.files: {e}"))?;
    assert_eq!(mismatched, 1, "the mismatch is recorded in psystem.files");

    // ---- A slow GHO load: progress, Pause (status.yaml paused, row count still), Resume → 165 rows ----
    f.gho.set_delay(Duration::from_millis(400));
    nav(c, "plugins").await;
    click(c, "plugin-run-slowgho-wsh8", 20).await;
    nav(c, "jobs").await;
    let card = "job-slowgho__wsh8";
    wait_for(60, "the job card to show committed rows", || async {
        let rows = first_number(&inner_text(c, card, "job-rows").await?)?;
        (rows > 0).then_some(())
    })
    .await;
    click_in(c, card, "job-pause", 5).await;
    wait_for(30, "status.yaml to say paused", || async {
        (status_state(home, "slowgho/wsh8").as_deref() == Some("paused")).then_some(())
    })
    .await;
    wait_for(10, "the card to say paused", || async {
        (inner_text(c, card, "job-state")
            .await?
            .trim()
            .to_lowercase()
            == "paused")
            .then_some(())
    })
    .await;
    let n1 = count(&pool, "public.slow_wsh8").await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let n2 = count(&pool, "public.slow_wsh8").await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let n3 = count(&pool, "public.slow_wsh8").await;
    assert!(n1 > 0 && n1 < WSH8_ROWS, "paused part-way: {n1} rows");
    assert_eq!(
        (n1, n1),
        (n2, n3),
        "the row count stops growing while paused"
    );
    screenshot(c, "jobs").await;
    f.gho.set_delay(Duration::from_millis(20));
    click_in(c, card, "job-resume", 10).await;
    wait_for(120, "the resumed job to complete", || async {
        (inner_text(c, card, "job-state")
            .await?
            .trim()
            .to_lowercase()
            == "completed")
            .then_some(())
    })
    .await;
    assert_eq!(count(&pool, "public.slow_wsh8").await, WSH8_ROWS);
    assert_eq!(
        status_state(home, "slowgho/wsh8").as_deref(),
        Some("completed")
    );
    let rows_text = inner_text(c, card, "job-rows").await.unwrap_or_default();
    assert_eq!(
        first_number(&rows_text),
        Some(WSH8_ROWS as u64),
        "card rows: {rows_text}"
    );

    // ---- Kids First participants (bundled plugin, real fixture) → ID cache lookup ----
    nav(c, "plugins").await;
    click(c, "plugin-run-kidsfirst_study-participant", 20).await;
    nav(c, "jobs").await;
    wait_for(120, "the participant load to complete", || async {
        (inner_text(c, "job-kidsfirst_study__participant", "job-state")
            .await?
            .trim()
            .to_lowercase()
            == "completed")
            .then_some(())
    })
    .await;
    let target_id: String = sqlx::query_scalar(
        "SELECT target_id FROM psystem.id_cache WHERE entity = 'participant' AND unique_key = 'pid001'",
    )
    .fetch_one(&pool)
    .await
    .map_err(|e| format!("pid001 (PID001 as a keystring: lower case) in psystem.id_cache: {e}"))?;
    nav(c, "idcache").await;
    click(c, "idcache-entity-participant", 30).await;
    let search = wait_for(20, "the ID cache search box", || async {
        c.find(Locator::Css(&tid("idcache-search"))).await.ok()
    })
    .await;
    search
        .send_keys("pid001")
        .await
        .map_err(|e| format!("typing in the search box: {e}"))?;
    let row = wait_for(30, "an ID cache row for pid001", || async {
        // textContent: the rows are absolutely positioned (virtualised), which WebDriver's visible text may skip.
        let texts = c
            .execute(
                "return Array.from(document.querySelectorAll('[data-testid=\"idcache-row\"]')).map(e => e.textContent)",
                vec![],
            )
            .await
            .ok()?;
        texts
            .as_array()?
            .iter()
            .filter_map(|t| t.as_str())
            .find(|t| t.to_lowercase().contains("pid001"))
            .map(str::to_string)
    })
    .await;
    assert!(
        row.contains(&target_id),
        "row `{row}` shows target ID {target_id}"
    );
    screenshot(c, "idcache").await;

    // ---- History: the loads of this run are listed ----
    nav(c, "history").await;
    wait_for(30, "history rows", || async {
        let rows = c
            .find_all(Locator::Css(
                "[data-testid^=\"run-\"]:not([data-testid=\"run-detail\"])",
            ))
            .await
            .ok()?;
        (rows.len() >= 2).then_some(())
    })
    .await;
    screenshot(c, "history").await;

    // ---- Databases: the saved, active database; Test connection reaches the server ----
    nav(c, "databases").await;
    let active = wait_for(20, "the active database in the top bar", || async {
        text_of(c, "active-db").await
    })
    .await;
    assert!(active.contains("e2e"), "top bar: {active}");
    click(c, "db-test-e2e", 20).await;
    let result = wait_for(30, "the connection test result", || async {
        let t = text_of(c, "db-test-result-e2e").await?;
        (!t.trim().is_empty()).then_some(t)
    })
    .await;
    assert!(result.contains("15"), "server version shown: {result}");
    screenshot(c, "databases").await;
    Ok(())
}
