//! Load modes, checkpoints, resume, atomicity, job locks, the ledger and quoting, on a real PostgreSQL.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow_array::{ArrayRef, Int64Array, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema};
use common::{batch, count, rows, setup, spec, staging_tables, table_exists};
use psystem_core::{Counters, JobState, LoadMode, TableRef};
use psystem_postgres::{
    migrate, redact_url, Destination, DestinationError, LoadSpec, LEDGER_VERSION,
};
use psystem_testkit::db::TestDb;
use serde_json::json;

#[tokio::test]
async fn append_twice_doubles_the_rows() {
    let (_db, dest) = setup().await;
    let page = batch(&[(1, "a", 1.0), (2, "b", 2.0), (3, "c", 3.0)]);
    for run in 0..2 {
        let mut load = dest
            .open_load(spec("append", "t", LoadMode::Append, &[]), false)
            .await
            .unwrap();
        assert!(!load.resumed, "run {run}: a completed load is not resumed");
        dest.commit_page(&mut load, &page, json!({"page": 1}), 100, Some(3))
            .await
            .unwrap();
        dest.finish_load(&mut load).await.unwrap();
    }
    assert_eq!(count(dest.pool(), "t").await, 6);
    let loads = dest.loads(Some("append"), 10).await.unwrap();
    assert_eq!(loads.len(), 2);
    assert!(loads
        .iter()
        .all(|l| l.state == JobState::Completed && l.finished_at.is_some()));
    assert!(loads[0].id > loads[1].id, "newest first");
}

#[tokio::test]
async fn merge_twice_keeps_one_row_per_key_and_updated_values_win() {
    let (_db, dest) = setup().await;
    let first = batch(&[(1, "a", 1.0), (2, "b", 2.0)]);
    let second = batch(&[(2, "B", 20.0), (3, "c", 3.0), (3, "c-last", 30.0)]);
    for page in [&first, &second, &second] {
        let mut load = dest
            .open_load(spec("merge", "m", LoadMode::Merge, &["id"]), false)
            .await
            .unwrap();
        dest.commit_page(&mut load, page, json!({"page": 1}), 0, None)
            .await
            .unwrap();
        dest.finish_load(&mut load).await.unwrap();
    }
    assert_eq!(
        rows(dest.pool(), "m").await,
        vec![
            (1, Some("a".into()), Some(1.0)),
            (2, Some("B".into()), Some(20.0)),
            (3, Some("c-last".into()), Some(30.0)), // duplicate key inside one page: the last row wins
        ]
    );
    // The counters count rows received, including the in-page duplicate.
    let last = &dest.loads(Some("merge"), 1).await.unwrap()[0];
    assert_eq!(
        last.counters,
        Counters {
            pages: 1,
            rows: 3,
            bytes: 0
        }
    );
}

#[tokio::test]
async fn merge_with_a_composite_key_and_nulls() {
    let (_db, dest) = setup().await;
    let mut s = spec("merge2", "m2", LoadMode::Merge, &["id", "name"]);
    s.schema = common::schema();
    let page = RecordBatch::try_new(
        common::schema(),
        vec![
            Arc::new(Int64Array::from(vec![1, 1, 2])) as ArrayRef,
            Arc::new(StringArray::from(vec!["x", "y", "x"])),
            Arc::new(arrow_array::Float64Array::from(vec![
                Some(1.0),
                None,
                Some(2.0),
            ])),
        ],
    )
    .unwrap();
    for value in [None, Some(5.0)] {
        let mut load = dest.open_load(s.clone(), false).await.unwrap();
        dest.commit_page(&mut load, &page, json!(1), 0, None)
            .await
            .unwrap();
        let update = RecordBatch::try_new(
            common::schema(),
            vec![
                Arc::new(Int64Array::from(vec![1])) as ArrayRef,
                Arc::new(StringArray::from(vec!["x"])),
                Arc::new(arrow_array::Float64Array::from(vec![value])),
            ],
        )
        .unwrap();
        dest.commit_page(&mut load, &update, json!(2), 0, None)
            .await
            .unwrap();
        dest.finish_load(&mut load).await.unwrap();
        let got = rows(dest.pool(), "m2").await;
        assert_eq!(got.len(), 3);
        assert_eq!(
            got[0],
            (1, Some("x".into()), value),
            "a NULL replaces a value and back"
        );
    }
}

#[tokio::test]
async fn merge_into_a_table_without_a_unique_key_is_refused() {
    let (_db, dest) = setup().await;
    sqlx::raw_sql("CREATE TABLE public.nokey (id bigint, name text, value double precision)")
        .execute(dest.pool())
        .await
        .unwrap();
    match dest
        .open_load(spec("nokey", "nokey", LoadMode::Merge, &["id"]), false)
        .await
        .unwrap_err()
    {
        DestinationError::MissingUniqueKey { table, columns } => {
            assert_eq!(table, "public.nokey");
            assert_eq!(columns, vec!["id".to_string()]);
        }
        e => panic!("unexpected {e}"),
    }
    // A unique index on exactly the key is enough.
    sqlx::raw_sql("CREATE UNIQUE INDEX ON public.nokey (id)")
        .execute(dest.pool())
        .await
        .unwrap();
    let mut load = dest
        .open_load(spec("nokey", "nokey", LoadMode::Merge, &["id"]), false)
        .await
        .unwrap();
    dest.commit_page(
        &mut load,
        &batch(&[(1, "a", 1.0), (1, "b", 2.0)]),
        json!(1),
        0,
        None,
    )
    .await
    .unwrap();
    assert_eq!(
        rows(dest.pool(), "nokey").await,
        vec![(1, Some("b".into()), Some(2.0))]
    );
    // Merge without a primary key is a spec error.
    assert!(matches!(
        dest.open_load(spec("x", "x", LoadMode::Merge, &[]), false)
            .await
            .unwrap_err(),
        DestinationError::InvalidSpec { .. }
    ));
}

#[tokio::test]
async fn replace_swaps_in_a_complete_table_and_leaves_no_staging_table() {
    let (_db, dest) = setup().await;
    let pool = dest.pool().clone();
    let mut old = dest
        .open_load(spec("replace", "r", LoadMode::Replace, &["id"]), false)
        .await
        .unwrap();
    dest.commit_page(
        &mut old,
        &batch(&[(1, "old", 1.0), (2, "old", 2.0)]),
        json!(1),
        0,
        None,
    )
    .await
    .unwrap();
    dest.finish_load(&mut old).await.unwrap();
    assert_eq!(count(&pool, "r").await, 2);
    assert!(staging_tables(&pool).await.is_empty());

    let mut load = dest
        .open_load(spec("replace", "r", LoadMode::Replace, &["id"]), false)
        .await
        .unwrap();
    let staging = load
        .staging
        .clone()
        .expect("a replace load has a staging table");
    assert_eq!(
        staging,
        TableRef::new("public", format!("r__psystem_load_{}", load.load_id))
    );
    let record = dest.load_by_id(load.load_id).await.unwrap().unwrap();
    assert_eq!(record.staging_table.as_deref(), Some(staging.name.as_str()));
    dest.commit_page(&mut load, &batch(&[(10, "new", 10.0)]), json!(1), 0, None)
        .await
        .unwrap();
    dest.commit_page(
        &mut load,
        &batch(&[(11, "new", 11.0), (12, "new", 12.0)]),
        json!(2),
        0,
        None,
    )
    .await
    .unwrap();
    // While the load runs, readers still see the old rows.
    assert_eq!(
        rows(&pool, "r")
            .await
            .iter()
            .map(|r| r.0)
            .collect::<Vec<_>>(),
        vec![1, 2]
    );
    assert_eq!(staging_tables(&pool).await, vec![staging.name.clone()]);
    dest.finish_load(&mut load).await.unwrap();
    assert_eq!(
        rows(&pool, "r")
            .await
            .iter()
            .map(|r| r.0)
            .collect::<Vec<_>>(),
        vec![10, 11, 12]
    );
    assert!(
        staging_tables(&pool).await.is_empty(),
        "no staging table left"
    );
    let pkey: String = sqlx::query_scalar(
        "SELECT conname::text FROM pg_constraint WHERE conrelid = 'public.r'::regclass AND contype = 'p'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(pkey, "r_pkey");
    let record = dest.load_by_id(load.load_id).await.unwrap().unwrap();
    assert_eq!(record.state, JobState::Completed);
}

#[tokio::test]
async fn replace_of_a_missing_table_creates_it_only_at_the_end() {
    let (_db, dest) = setup().await;
    let mut load = dest
        .open_load(spec("fresh", "fresh", LoadMode::Replace, &[]), false)
        .await
        .unwrap();
    dest.commit_page(&mut load, &batch(&[(1, "x", 1.0)]), json!(1), 0, None)
        .await
        .unwrap();
    assert!(!table_exists(dest.pool(), "public.fresh").await);
    dest.finish_load(&mut load).await.unwrap();
    assert_eq!(count(dest.pool(), "fresh").await, 1);
}

#[tokio::test]
async fn resume_after_a_crash_continues_from_the_committed_checkpoint() {
    let (_db, dest) = setup().await;
    for mode in [LoadMode::Append, LoadMode::Replace, LoadMode::Merge] {
        let table = format!("crash_{mode}");
        let s = spec(&table, &table, mode, &["id"]);
        let mut load = dest.open_load(s.clone(), false).await.unwrap();
        dest.commit_page(
            &mut load,
            &batch(&[(1, "a", 1.0), (2, "b", 2.0)]),
            json!({"next_skip": 2}),
            1000,
            Some(5),
        )
        .await
        .unwrap();
        dest.commit_page(
            &mut load,
            &batch(&[(3, "c", 3.0)]),
            json!({"next_skip": 3}),
            500,
            None,
        )
        .await
        .unwrap();
        let id = load.load_id;
        drop(load); // the process dies here

        // Even a fresh connection (a new process) resumes it.
        let dest2 = Destination::connect(&dest_url(&dest)).await.unwrap();
        let mut load = dest2.open_load(s.clone(), false).await.unwrap();
        assert!(load.resumed, "{mode}");
        assert_eq!(load.load_id, id);
        assert_eq!(load.position, Some(json!({"next_skip": 3})));
        assert_eq!(
            load.counters,
            Counters {
                pages: 2,
                rows: 3,
                bytes: 1500
            }
        );
        assert_eq!(load.total_rows, Some(5));
        dest2
            .commit_page(
                &mut load,
                &batch(&[(4, "d", 4.0), (5, "e", 5.0)]),
                json!({"next_skip": 5}),
                10,
                None,
            )
            .await
            .unwrap();
        dest2.finish_load(&mut load).await.unwrap();
        assert_eq!(
            rows(dest.pool(), &table)
                .await
                .iter()
                .map(|r| r.0)
                .collect::<Vec<_>>(),
            vec![1, 2, 3, 4, 5],
            "{mode}"
        );
        let record = dest.load_by_id(id).await.unwrap().unwrap();
        assert_eq!(
            record.counters,
            Counters {
                pages: 3,
                rows: 5,
                bytes: 1510
            }
        );
        assert_eq!(record.position, Some(json!({"next_skip": 5})));
        assert_eq!(record.state, JobState::Completed);
    }
    assert!(staging_tables(dest.pool()).await.is_empty());
}

/// The URL of the destination's database (the tests connect without a password).
fn dest_url(dest: &Destination) -> String {
    dest.redacted_url().to_string()
}

#[tokio::test]
async fn resume_from_paused_and_failed_and_a_mismatching_resume_is_refused() {
    let (_db, dest) = setup().await;
    let s = spec("pf", "pf", LoadMode::Append, &[]);
    let mut load = dest.open_load(s.clone(), false).await.unwrap();
    dest.commit_page(&mut load, &batch(&[(1, "a", 1.0)]), json!(1), 0, None)
        .await
        .unwrap();
    dest.set_state(load.load_id, JobState::Paused, None)
        .await
        .unwrap();
    // A paused load does not take pages.
    assert!(matches!(
        dest.commit_page(&mut load, &batch(&[(2, "b", 2.0)]), json!(2), 0, None)
            .await
            .unwrap_err(),
        DestinationError::LoadNotActive { .. }
    ));
    let resumed = dest.open_load(s.clone(), false).await.unwrap();
    assert!(resumed.resumed);
    dest.set_state(resumed.load_id, JobState::Failed, Some("source went away"))
        .await
        .unwrap();
    let record = dest.load_by_id(resumed.load_id).await.unwrap().unwrap();
    assert_eq!(
        (record.state, record.last_error.as_deref()),
        (JobState::Failed, Some("source went away"))
    );
    let mut other = s.clone();
    other.table = TableRef::new("public", "elsewhere");
    assert!(matches!(
        dest.open_load(other, false).await.unwrap_err(),
        DestinationError::ResumeMismatch { .. }
    ));
    let again = dest.open_load(s, false).await.unwrap();
    assert_eq!(again.load_id, resumed.load_id);
    assert_eq!(again.position, Some(json!(1)));
    let record = dest.load_by_id(again.load_id).await.unwrap().unwrap();
    assert_eq!((record.state, record.last_error), (JobState::Running, None));
}

#[tokio::test]
async fn restart_starts_over_and_cancels_the_unfinished_load() {
    let (_db, dest) = setup().await;
    let s = spec("restart", "rs", LoadMode::Replace, &[]);
    let mut load = dest.open_load(s.clone(), false).await.unwrap();
    dest.commit_page(
        &mut load,
        &batch(&[(1, "a", 1.0)]),
        json!({"p": 1}),
        10,
        None,
    )
    .await
    .unwrap();
    let old_id = load.load_id;
    drop(load);
    let mut fresh = dest.open_load(s.clone(), true).await.unwrap();
    assert!(!fresh.resumed);
    assert_ne!(fresh.load_id, old_id);
    assert_eq!(fresh.position, None);
    assert_eq!(fresh.counters, Counters::default());
    let old = dest.load_by_id(old_id).await.unwrap().unwrap();
    assert_eq!(old.state, JobState::Cancelled);
    assert!(old.finished_at.is_some());
    assert_eq!(
        staging_tables(dest.pool()).await,
        vec![fresh.staging.clone().unwrap().name],
        "the old staging table is dropped"
    );
    dest.commit_page(
        &mut fresh,
        &batch(&[(7, "z", 7.0)]),
        json!({"p": 1}),
        0,
        None,
    )
    .await
    .unwrap();
    dest.finish_load(&mut fresh).await.unwrap();
    assert_eq!(
        rows(dest.pool(), "rs").await,
        vec![(7, Some("z".into()), Some(7.0))]
    );
    assert!(staging_tables(dest.pool()).await.is_empty());
}

#[tokio::test]
async fn a_handle_of_a_restarted_load_can_no_longer_commit() {
    let (_db, dest) = setup().await;
    let s = spec("stale", "stale", LoadMode::Append, &[]);
    let mut stale = dest.open_load(s.clone(), false).await.unwrap();
    let _fresh = dest.open_load(s, true).await.unwrap();
    match dest
        .commit_page(&mut stale, &batch(&[(1, "a", 1.0)]), json!(1), 0, None)
        .await
        .unwrap_err()
    {
        DestinationError::LoadNotActive { load_id, state } => {
            assert_eq!(load_id, stale.load_id);
            assert_eq!(state, "cancelled");
        }
        e => panic!("unexpected {e}"),
    }
    assert_eq!(count(dest.pool(), "stale").await, 0);
    assert!(matches!(
        dest.finish_load(&mut stale).await.unwrap_err(),
        DestinationError::LoadNotActive { .. }
    ));
}

#[tokio::test]
async fn two_handles_of_one_load_never_write_a_page_twice() {
    let (_db, dest) = setup().await;
    let s = spec("twice", "twice", LoadMode::Append, &[]);
    let mut first = dest.open_load(s.clone(), false).await.unwrap();
    let mut second = dest.open_load(s, false).await.unwrap();
    assert_eq!(first.load_id, second.load_id);
    dest.commit_page(&mut first, &batch(&[(1, "a", 1.0)]), json!(1), 0, None)
        .await
        .unwrap();
    match dest
        .commit_page(&mut second, &batch(&[(1, "a", 1.0)]), json!(1), 0, None)
        .await
        .unwrap_err()
    {
        DestinationError::StaleHandle {
            expected, found, ..
        } => assert_eq!((expected, found), (0, 1)),
        e => panic!("unexpected {e}"),
    }
    assert_eq!(count(dest.pool(), "twice").await, 1);
    assert!(matches!(
        dest.finish_load(&mut second).await.unwrap_err(),
        DestinationError::StaleHandle { .. }
    ));
    dest.finish_load(&mut first).await.unwrap();
}

#[tokio::test]
async fn cancelling_a_replace_load_drops_its_staging_table() {
    let (_db, dest) = setup().await;
    let load = dest
        .open_load(spec("cancel", "c", LoadMode::Replace, &[]), false)
        .await
        .unwrap();
    assert_eq!(staging_tables(dest.pool()).await.len(), 1);
    dest.set_state(load.load_id, JobState::Cancelled, None)
        .await
        .unwrap();
    assert!(staging_tables(dest.pool()).await.is_empty());
    assert!(matches!(
        dest.set_state(999_999, JobState::Paused, None)
            .await
            .unwrap_err(),
        DestinationError::LoadNotFound { load_id: 999_999 }
    ));
}

#[tokio::test]
async fn a_zero_row_page_still_commits_its_checkpoint() {
    let (_db, dest) = setup().await;
    let mut load = dest
        .open_load(spec("empty", "e", LoadMode::Merge, &["id"]), false)
        .await
        .unwrap();
    dest.commit_page(
        &mut load,
        &batch(&[]),
        json!({"next": "cursor-2"}),
        42,
        Some(0),
    )
    .await
    .unwrap();
    assert_eq!(
        load.counters,
        Counters {
            pages: 1,
            rows: 0,
            bytes: 42
        }
    );
    let record = dest.load_by_id(load.load_id).await.unwrap().unwrap();
    assert_eq!(record.position, Some(json!({"next": "cursor-2"})));
    assert_eq!(record.total_rows, Some(0));
}

/// A page whose COPY fails (NUL in the last row, or a server-side error) moves neither rows nor checkpoint.
#[tokio::test]
async fn rows_and_checkpoint_are_atomic() {
    let (_db, dest) = setup().await;
    let pool = dest.pool().clone();
    for mode in [LoadMode::Append, LoadMode::Replace, LoadMode::Merge] {
        let table = format!("atomic_{mode}");
        let mut load = dest
            .open_load(spec(&table, &table, mode, &["id"]), false)
            .await
            .unwrap();
        dest.commit_page(
            &mut load,
            &batch(&[(1, "a", 1.0)]),
            json!({"page": 1}),
            10,
            Some(100),
        )
        .await
        .unwrap();
        let target = load
            .staging
            .clone()
            .map(|s| s.name)
            .unwrap_or(table.clone());
        let before = (load.position.clone(), load.counters);

        // ~3 MiB of rows so that chunks reach the server before the NUL in the very last row.
        let long = "x".repeat(1000);
        let mut page: Vec<(i64, &str, f64)> =
            (0..3000).map(|i| (100 + i, long.as_str(), 0.0)).collect();
        page.push((9999, "bad\0value", 0.0));
        match dest
            .commit_page(&mut load, &batch(&page), json!({"page": 2}), 10, Some(100))
            .await
            .unwrap_err()
        {
            DestinationError::NulInText { column, row } => {
                assert_eq!((column.as_str(), row), ("name", 3000), "{mode}")
            }
            e => panic!("{mode}: unexpected {e}"),
        }
        assert_eq!(
            count(&pool, &target).await,
            1,
            "{mode}: no row of the failed page"
        );
        assert_eq!(
            (load.position.clone(), load.counters),
            before,
            "{mode}: the handle did not move"
        );
        let record = dest.load_by_id(load.load_id).await.unwrap().unwrap();
        assert_eq!(
            (record.position, record.counters),
            before,
            "{mode}: the ledger did not move"
        );

        // A server-side failure in the middle of the page (a duplicate primary key in the COPY for append and
        // replace, a CHECK constraint violated by the upsert for merge) also rolls back everything.
        let bad = if mode == LoadMode::Merge {
            sqlx::raw_sql(&format!(
                "ALTER TABLE public.\"{table}\" ADD CHECK (value < 1000)"
            ))
            .execute(&pool)
            .await
            .unwrap();
            batch(&[(2, "b", 2.0), (3, "too big", 5000.0), (4, "c", 3.0)])
        } else {
            batch(&[(2, "b", 2.0), (1, "duplicate", 2.0), (3, "c", 3.0)])
        };
        let err = dest
            .commit_page(&mut load, &bad, json!({"page": 2}), 10, None)
            .await
            .unwrap_err();
        assert!(
            matches!(err, DestinationError::Database { .. }),
            "{mode}: {err}"
        );
        assert_eq!(count(&pool, &target).await, 1, "{mode}");
        let record = dest.load_by_id(load.load_id).await.unwrap().unwrap();
        assert_eq!((record.position, record.counters), before, "{mode}");

        // The connection pool is healthy afterwards and the load goes on.
        dest.commit_page(
            &mut load,
            &batch(&[(2, "b", 2.0)]),
            json!({"page": 2}),
            10,
            None,
        )
        .await
        .unwrap();
        assert_eq!(
            load.counters,
            Counters {
                pages: 2,
                rows: 2,
                bytes: 20
            }
        );
        dest.finish_load(&mut load).await.unwrap();
        assert_eq!(count(&pool, &table).await, 2, "{mode}");
    }
}

#[tokio::test]
async fn a_page_with_another_schema_is_refused() {
    let (_db, dest) = setup().await;
    let mut load = dest
        .open_load(spec("schema", "s", LoadMode::Append, &[]), false)
        .await
        .unwrap();
    let other = RecordBatch::try_new(
        Arc::new(Schema::new(vec![Field::new("id", DataType::Utf8, true)])),
        vec![Arc::new(StringArray::from(vec!["1"])) as ArrayRef],
    )
    .unwrap();
    assert!(matches!(
        dest.commit_page(&mut load, &other, json!(1), 0, None)
            .await
            .unwrap_err(),
        DestinationError::BatchSchemaMismatch { .. }
    ));
    assert_eq!(load.counters, Counters::default());
}

#[tokio::test]
async fn an_existing_table_must_have_the_columns_with_their_types() {
    let (_db, dest) = setup().await;
    sqlx::raw_sql(
        "CREATE TABLE public.narrow (id bigint, value double precision, extra int DEFAULT 5)",
    )
    .execute(dest.pool())
    .await
    .unwrap();
    match dest
        .open_load(spec("narrow", "narrow", LoadMode::Append, &[]), false)
        .await
        .unwrap_err()
    {
        DestinationError::SchemaMismatch { table, missing } => {
            assert_eq!(table, "public.narrow");
            assert_eq!(missing, vec!["name".to_string()]);
        }
        e => panic!("unexpected {e}"),
    }
    sqlx::raw_sql("ALTER TABLE public.narrow ADD COLUMN name int")
        .execute(dest.pool())
        .await
        .unwrap();
    match dest
        .open_load(spec("narrow", "narrow", LoadMode::Append, &[]), false)
        .await
        .unwrap_err()
    {
        DestinationError::ColumnTypeMismatch {
            column,
            expected,
            found,
            ..
        } => {
            assert_eq!(
                (column.as_str(), expected.as_str(), found.as_str()),
                ("name", "text", "integer")
            );
        }
        e => panic!("unexpected {e}"),
    }
    // The failed opens left no load behind.
    assert!(dest.loads(Some("narrow"), 10).await.unwrap().is_empty());
    // varchar takes text; extra columns get their defaults.
    sqlx::raw_sql("ALTER TABLE public.narrow DROP COLUMN name, ADD COLUMN name varchar(20)")
        .execute(dest.pool())
        .await
        .unwrap();
    let mut load = dest
        .open_load(spec("narrow", "narrow", LoadMode::Append, &[]), false)
        .await
        .unwrap();
    dest.commit_page(&mut load, &batch(&[(1, "a", 1.0)]), json!(1), 0, None)
        .await
        .unwrap();
    let extra: i32 = sqlx::query_scalar("SELECT extra FROM public.narrow")
        .fetch_one(dest.pool())
        .await
        .unwrap();
    assert_eq!(extra, 5);
}

#[tokio::test]
async fn identifiers_with_spaces_quotes_and_upper_case_work_in_every_mode() {
    let (_db, dest) = setup().await;
    let schema = Arc::new(Schema::new(vec![
        Field::new("Id Col", DataType::Int64, false),
        Field::new("say \"hi\"", DataType::Utf8, true),
        Field::new("UPPER", DataType::Utf8, true),
        Field::new("x'); DROP TABLE y; --", DataType::Utf8, true),
    ]));
    let page = |v: &str| {
        RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(Int64Array::from(vec![1, 2])) as ArrayRef,
                Arc::new(StringArray::from(vec![v, v])),
                Arc::new(StringArray::from(vec!["U", "U"])),
                Arc::new(StringArray::from(vec!["'; --", "\""])),
            ],
        )
        .unwrap()
    };
    for mode in [LoadMode::Append, LoadMode::Merge, LoadMode::Replace] {
        let table = TableRef::new("Weird \"Schema\"", format!("My \"Odd\" Table {mode}"));
        let s = LoadSpec {
            job_key: format!("quoting {mode}"),
            plugin: "p".into(),
            entry: "e".into(),
            source_kind: "files".into(),
            table: table.clone(),
            mode,
            primary_key: if mode == LoadMode::Append {
                vec![]
            } else {
                vec!["Id Col".into()]
            },
            schema: schema.clone(),
            source_fingerprint: None,
            ids: None,
        };
        for v in ["first", "second"] {
            let mut load = dest.open_load(s.clone(), false).await.unwrap();
            dest.commit_page(&mut load, &page(v), json!(1), 0, None)
                .await
                .unwrap();
            dest.finish_load(&mut load).await.unwrap();
        }
        let sql = format!(
            "SELECT count(*), max(\"say \"\"hi\"\"\") FROM {}",
            psystem_postgres::quote_table(&table)
        );
        let (n, last): (i64, String) = sqlx::query_as(&sql).fetch_one(dest.pool()).await.unwrap();
        let expected = if mode == LoadMode::Append { 4 } else { 2 };
        assert_eq!((n, last.as_str()), (expected, "second"), "{mode}");
    }
    assert!(staging_tables(dest.pool()).await.is_empty());
}

#[tokio::test]
async fn long_table_names_get_a_valid_staging_name() {
    let (_db, dest) = setup().await;
    let name = "é".repeat(31); // 62 bytes
    let mut load = dest
        .open_load(spec("long", &name, LoadMode::Replace, &["id"]), false)
        .await
        .unwrap();
    let staging = load.staging.clone().unwrap();
    assert!(
        staging.name.len() <= 63
            && staging
                .name
                .ends_with(&format!("__psystem_load_{}", load.load_id))
    );
    dest.commit_page(&mut load, &batch(&[(1, "a", 1.0)]), json!(1), 0, None)
        .await
        .unwrap();
    dest.finish_load(&mut load).await.unwrap();
    assert_eq!(count(dest.pool(), &name).await, 1);
    // A name PostgreSQL would truncate is refused.
    let too_long = "t".repeat(64);
    assert!(matches!(
        dest.open_load(spec("long2", &too_long, LoadMode::Append, &[]), false)
            .await
            .unwrap_err(),
        DestinationError::InvalidIdentifier { .. }
    ));
}

#[tokio::test]
async fn job_lock_is_exclusive_until_released_or_dropped() {
    let (_db, dest) = setup().await;
    let mut first = dest.try_lock_job("job-a").await.unwrap().expect("free job");
    first.check().await.unwrap();
    assert!(
        dest.try_lock_job("job-a").await.unwrap().is_none(),
        "held by the first lock"
    );
    let other = dest.try_lock_job("job-b").await.unwrap();
    assert!(other.is_some(), "another job is independent");
    first.release().await.unwrap();
    let second = dest.try_lock_job("job-a").await.unwrap().expect("released");
    assert!(dest.try_lock_job("job-a").await.unwrap().is_none());
    drop(second);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if dest.try_lock_job("job-a").await.unwrap().is_some() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the lock was not released after drop"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // A job lock does not block open_load of the same job (different lock space).
    let _held = dest.try_lock_job("job-c").await.unwrap().unwrap();
    tokio::time::timeout(
        Duration::from_secs(10),
        dest.open_load(spec("job-c", "jc", LoadMode::Append, &[]), false),
    )
    .await
    .expect("open_load must not wait for the job lock")
    .unwrap();
}

#[tokio::test]
async fn migrate_twice_is_a_no_op() {
    let (db, dest) = setup().await;
    let mut conn = dest.pool().acquire().await.unwrap();
    assert_eq!(migrate(&mut conn).await.unwrap(), 0);
    assert_eq!(migrate(&mut conn).await.unwrap(), 0);
    let versions: Vec<i32> =
        sqlx::query_scalar("SELECT version FROM psystem.schema_migrations ORDER BY 1")
            .fetch_all(&mut *conn)
            .await
            .unwrap();
    assert_eq!(versions, (1..=LEDGER_VERSION).collect::<Vec<_>>());
    drop(conn);
    // Connecting again (a second process) does not re-apply anything either, and concurrent connects agree.
    let (a, b) = tokio::join!(
        Destination::connect(db.url()),
        Destination::connect(db.url())
    );
    a.unwrap();
    b.unwrap();
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM psystem.schema_migrations")
        .fetch_one(dest.pool())
        .await
        .unwrap();
    assert_eq!(n, LEDGER_VERSION as i64);
    // A ledger from the future is refused.
    sqlx::query("INSERT INTO psystem.schema_migrations (version) VALUES (999)")
        .execute(dest.pool())
        .await
        .unwrap();
    assert!(matches!(
        Destination::connect(db.url()).await.unwrap_err(),
        DestinationError::LedgerTooNew { found: 999, .. }
    ));
}

#[tokio::test]
async fn migrate_creates_the_ledger_on_an_empty_database() {
    let db = TestDb::create().await;
    let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(db.url())
        .await
        .unwrap();
    assert_eq!(migrate(&mut conn).await.unwrap(), LEDGER_VERSION as usize);
    for table in [
        "psystem.loads",
        "psystem.checkpoints",
        "psystem.schema_migrations",
    ] {
        let exists: bool = sqlx::query_scalar("SELECT to_regclass($1) IS NOT NULL")
            .bind(table)
            .fetch_one(&mut conn)
            .await
            .unwrap();
        assert!(exists, "{table}");
    }
    let index: bool =
        sqlx::query_scalar("SELECT to_regclass('psystem.loads_job_key_state_idx') IS NOT NULL")
            .fetch_one(&mut conn)
            .await
            .unwrap();
    assert!(index);
}

#[tokio::test]
async fn connection_errors_never_show_the_password() {
    let url = "postgres://postgres:supersecret@127.0.0.1:1/nowhere";
    let err = Destination::connect(url).await.unwrap_err();
    let mut chain = format!("{err} {err:?}");
    let mut source = std::error::Error::source(&err);
    while let Some(s) = source {
        chain.push_str(&format!(" {s} {s:?}"));
        source = s.source();
    }
    assert!(!chain.contains("supersecret"), "{chain}");
    assert!(chain.contains("postgres:***@127.0.0.1:1"), "{chain}");
    assert_eq!(
        redact_url(url),
        "postgres://postgres:***@127.0.0.1:1/nowhere"
    );
    assert_eq!(redact_url("postgres://u@h/d"), "postgres://u@h/d");
}

#[tokio::test]
async fn loads_lists_and_filters() {
    let (_db, dest) = setup().await;
    for job in ["x", "y", "x"] {
        let mut load = dest
            .open_load(spec(job, "lst", LoadMode::Append, &[]), true)
            .await
            .unwrap();
        dest.finish_load(&mut load).await.unwrap();
    }
    assert_eq!(dest.loads(None, 10).await.unwrap().len(), 3);
    assert_eq!(dest.loads(None, 2).await.unwrap().len(), 2);
    let xs = dest.loads(Some("x"), 10).await.unwrap();
    assert_eq!(xs.len(), 2);
    let r = &xs[0];
    assert_eq!(
        (r.plugin.as_str(), r.entry.as_str(), r.source_kind.as_str()),
        ("test-plugin", "test-entry", "files")
    );
    assert_eq!(
        (r.table.clone(), r.mode),
        (TableRef::new("public", "lst"), LoadMode::Append)
    );
    assert!(dest.load_by_id(123_456).await.unwrap().is_none());
    let preview = dest
        .preview(&TableRef::new("public", "lst"), 5)
        .await
        .unwrap();
    assert!(preview.rows.is_empty());
}

#[test]
fn test_db_works_without_a_runtime_and_is_dropped() {
    let db = TestDb::create_blocking();
    let name = db.name().to_string();
    let admin = std::env::var("PSYSTEM_TEST_DATABASE_URL").unwrap();
    drop(db);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let exists: bool = rt.block_on(async {
        let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&admin)
            .await
            .unwrap();
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
            .bind(&name)
            .fetch_one(&mut conn)
            .await
            .unwrap()
    });
    assert!(!exists, "the test database {name} was not dropped");
}
