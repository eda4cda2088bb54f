//! Dataset loads of a release (work units, replace, merge, schema evolution, the files ledger) on a real
//! PostgreSQL.
#![allow(clippy::type_complexity)]

use std::sync::Arc;
use std::time::Duration;

use arrow_array::{
    ArrayRef, Float32Array, Float64Array, Int32Array, Int64Array, RecordBatch, StringArray,
};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use psystem_core::{LoadMode, TableRef};
use psystem_postgres::copy_binary::CopyOptions;
use psystem_postgres::release_load::{
    file_checks, last_completed_dataset, open_dataset_load, record_file_check, BatchIter, BoxError,
    DatasetLoad, DatasetLoadSpec, FileCheck, FileStatus, UnitSpec, UnitState, ROW_HASH_COLUMN,
};
use psystem_postgres::{Destination, DestinationError};
use psystem_testkit::db::TestDb;
use sqlx::PgPool;

async fn setup() -> (TestDb, Destination) {
    let db = TestDb::create().await;
    let dest = Destination::connect(db.url()).await.expect("connect");
    (db, dest)
}

/// `id bigint, name text, value double precision`.
fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("name", DataType::Utf8, true),
        Field::new("value", DataType::Float64, true),
    ]))
}

fn batch(rows: &[(i64, &str, f64)]) -> RecordBatch {
    let ids: ArrayRef = Arc::new(Int64Array::from(
        rows.iter().map(|r| r.0).collect::<Vec<_>>(),
    ));
    let names: ArrayRef = Arc::new(StringArray::from(
        rows.iter().map(|r| r.1).collect::<Vec<_>>(),
    ));
    let values: ArrayRef = Arc::new(Float64Array::from(
        rows.iter().map(|r| r.2).collect::<Vec<_>>(),
    ));
    RecordBatch::try_new(schema(), vec![ids, names, values]).unwrap()
}

fn spec(job: &str, table: &str, mode: LoadMode, pk: &[&str], units: &[&str]) -> DatasetLoadSpec {
    DatasetLoadSpec {
        job_key: job.into(),
        plugin: "opentargets".into(),
        entry: "target".into(),
        source_kind: "opentargets".into(),
        release: "25.03".into(),
        dataset: "target".into(),
        table: TableRef::new("public", table),
        mode,
        primary_key: pk.iter().map(|s| s.to_string()).collect(),
        schema: schema(),
        units: units.iter().map(|u| UnitSpec::new(*u, 100)).collect(),
        verified: true,
        allow_casts: false,
        copy_options: CopyOptions::default(),
        heartbeat_timeout: Duration::from_secs(60),
        worker_spec: None,
    }
}

fn ok(batches: Vec<RecordBatch>) -> BatchIter<std::vec::IntoIter<Result<RecordBatch, BoxError>>> {
    BatchIter(batches.into_iter().map(Ok).collect::<Vec<_>>().into_iter())
}

/// Claims and copies every unit; `data(key)` gives the batches of a unit.
async fn copy_all(dest: &Destination, load: &DatasetLoad, data: &dyn Fn(&str) -> Vec<RecordBatch>) {
    while let Some(unit) = load.claim_unit(dest, "w1").await.unwrap() {
        load.copy_unit(dest, &unit, ok(data(&unit.key)))
            .await
            .unwrap();
    }
}

async fn rows(pool: &PgPool, table: &str) -> Vec<(i64, Option<String>, Option<f64>)> {
    sqlx::query_as(&format!(
        "SELECT id, name, value FROM public.\"{table}\" ORDER BY id"
    ))
    .fetch_all(pool)
    .await
    .unwrap()
}

async fn staging_tables(pool: &PgPool) -> Vec<String> {
    sqlx::query_scalar(
        "SELECT tablename::text FROM pg_tables WHERE tablename LIKE '%\\_\\_psystem\\_stage\\_%'",
    )
    .fetch_all(pool)
    .await
    .unwrap()
}

async fn exec(pool: &PgPool, sql: &str) {
    sqlx::query(sql)
        .execute(pool)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

async fn scalar<T>(pool: &PgPool, sql: &str) -> T
where
    T: for<'r> sqlx::Decode<'r, sqlx::Postgres> + sqlx::Type<sqlx::Postgres> + Send + Unpin,
{
    sqlx::query_scalar(sql)
        .fetch_one(pool)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

/// Loads `data` (one batch per unit) into `table` with `mode`.
async fn load(
    dest: &Destination,
    s: DatasetLoadSpec,
    data: Vec<(&str, Vec<(i64, &str, f64)>)>,
) -> Result<psystem_postgres::release_load::FinishReport, DestinationError> {
    let load = open_dataset_load(dest, s, false).await?;
    let data: Vec<(String, RecordBatch)> = data
        .into_iter()
        .map(|(k, r)| (k.to_string(), batch(&r)))
        .collect();
    copy_all(dest, &load, &|key| {
        data.iter()
            .filter(|(k, _)| k == key)
            .map(|(_, b)| b.clone())
            .collect()
    })
    .await;
    load.finish(dest).await
}

#[tokio::test]
async fn first_load_then_replace_keeps_the_users_objects() {
    let (_db, dest) = setup().await;
    let pool = dest.pool().clone();
    let s = spec(
        "ot/25.03/target",
        "target",
        LoadMode::Replace,
        &["id"],
        &["a.parquet", "b.parquet"],
    );
    let r = load(
        &dest,
        s.clone(),
        vec![
            ("a.parquet", vec![(1, "a", 1.0), (2, "b", 2.0)]),
            ("b.parquet", vec![(3, "c", 3.0)]),
        ],
    )
    .await
    .unwrap();
    assert!(r.created);
    assert_eq!((r.rows, r.inserted), (3, 3));
    let pk: String = scalar(&pool, "SELECT conname::text FROM pg_constraint WHERE conrelid = 'public.target'::regclass AND contype = 'p'").await;
    assert_eq!(pk, "target_pkey");
    let id = last_completed_dataset(
        &dest,
        "opentargets",
        "25.03",
        "target",
        &TableRef::new("public", "target"),
    )
    .await
    .unwrap();
    assert!(id.is_some());
    let (ins, verified, release): (Option<i64>, Option<bool>, Option<String>) =
        sqlx::query_as("SELECT rows_inserted, verified, release FROM psystem.loads WHERE id = $1")
            .bind(id.unwrap())
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(
        (ins, verified, release.as_deref()),
        (Some(3), Some(true), Some("25.03"))
    );

    // What a user adds to the table.
    exec(
        &pool,
        "DO $$ BEGIN CREATE ROLE psystem_reader_rl NOLOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END $$",
    )
    .await;
    for sql in [
        "CREATE INDEX my_name_idx ON public.target (lower(name))",
        "ALTER TABLE public.target ADD CONSTRAINT value_positive CHECK (value > 0)",
        "COMMENT ON TABLE public.target IS 'targets of the release'",
        "COMMENT ON COLUMN public.target.name IS 'approved symbol'",
        "GRANT SELECT ON public.target TO psystem_reader_rl",
        "GRANT UPDATE (name) ON public.target TO psystem_reader_rl",
        "CREATE TABLE public.notes (target_id bigint REFERENCES public.target (id), note text)",
        "INSERT INTO public.notes VALUES (2, 'keep me')",
    ] {
        exec(&pool, sql).await;
    }

    let mut s2 = s.clone();
    s2.release = "25.06".into();
    s2.job_key = "ot/25.06/target".into();
    let r = load(
        &dest,
        s2,
        vec![
            ("a.parquet", vec![(2, "B", 20.0), (4, "d", 4.0)]),
            ("b.parquet", vec![(5, "e", 5.0)]),
        ],
    )
    .await
    .unwrap();
    assert!(!r.created);
    assert_eq!(r.inserted, 3);
    assert_eq!(
        storage_options(&pool, "target").await,
        (None, None),
        "the replaced table has the server's autovacuum settings"
    );
    assert_eq!(
        rows(&pool, "target").await,
        vec![
            (2, Some("B".into()), Some(20.0)),
            (4, Some("d".into()), Some(4.0)),
            (5, Some("e".into()), Some(5.0))
        ]
    );
    let idx: String = scalar(
        &pool,
        "SELECT indexdef FROM pg_indexes WHERE indexname = 'my_name_idx'",
    )
    .await;
    assert!(idx.contains("lower(name)"), "{idx}");
    let check: i64 = scalar(&pool, "SELECT count(*) FROM pg_constraint WHERE conrelid = 'public.target'::regclass AND conname = 'value_positive'").await;
    assert_eq!(check, 1);
    let comment: Option<String> = scalar(
        &pool,
        "SELECT obj_description('public.target'::regclass, 'pg_class')",
    )
    .await;
    assert_eq!(comment.as_deref(), Some("targets of the release"));
    let col_comment: Option<String> = scalar(
        &pool,
        "SELECT col_description('public.target'::regclass, 2)",
    )
    .await;
    assert_eq!(col_comment.as_deref(), Some("approved symbol"));
    let can_select: bool = scalar(
        &pool,
        "SELECT has_table_privilege('psystem_reader_rl', 'public.target', 'SELECT')",
    )
    .await;
    let can_update_name: bool = scalar(
        &pool,
        "SELECT has_column_privilege('psystem_reader_rl', 'public.target', 'name', 'UPDATE')",
    )
    .await;
    let can_update_value: bool = scalar(
        &pool,
        "SELECT has_column_privilege('psystem_reader_rl', 'public.target', 'value', 'UPDATE')",
    )
    .await;
    assert!(can_select && can_update_name && !can_update_value);
    let fk: i64 = scalar(&pool, "SELECT count(*) FROM pg_constraint WHERE conrelid = 'public.notes'::regclass AND contype = 'f' AND confrelid = 'public.target'::regclass").await;
    assert_eq!(
        fk, 1,
        "the foreign key of another table points to the new table"
    );
    let pk: String = scalar(&pool, "SELECT conname::text FROM pg_constraint WHERE conrelid = 'public.target'::regclass AND contype = 'p'").await;
    assert_eq!(pk, "target_pkey");
    // The check constraint is enforced on the new table.
    assert!(sqlx::query("INSERT INTO public.target VALUES (9, 'x', -1)")
        .execute(&pool)
        .await
        .is_err());
    assert!(staging_tables(&pool).await.is_empty());

    // A replace that breaks a restored foreign key fails and changes nothing.
    let mut s3 = s.clone();
    s3.job_key = "ot/25.09/target".into();
    let err = load(
        &dest,
        s3,
        vec![("a.parquet", vec![(7, "g", 7.0)]), ("b.parquet", vec![])],
    )
    .await
    .unwrap_err();
    assert!(matches!(err, DestinationError::Database { .. }), "{err}");
    assert_eq!(rows(&pool, "target").await.len(), 3);
    assert!(staging_tables(&pool).await.is_empty());

    // A dependent view makes the replace fail, naming the view.
    exec(&pool, "DELETE FROM public.notes").await;
    exec(
        &pool,
        "CREATE VIEW public.target_names AS SELECT name FROM public.target",
    )
    .await;
    let mut s4 = s.clone();
    s4.job_key = "ot/25.12/target".into();
    let err = load(
        &dest,
        s4,
        vec![("a.parquet", vec![(7, "g", 7.0)]), ("b.parquet", vec![])],
    )
    .await
    .unwrap_err();
    match &err {
        DestinationError::DependentViews { views, .. } => {
            assert_eq!(views, &vec!["target_names".to_string()])
        }
        e => panic!("{e}"),
    }
    assert_eq!(rows(&pool, "target").await.len(), 3);
    assert!(staging_tables(&pool).await.is_empty());
}

#[tokio::test]
async fn merge_updates_inserts_deletes_and_leaves_unchanged_rows_alone() {
    let (_db, dest) = setup().await;
    let pool = dest.pool().clone();
    let s = spec("m", "m", LoadMode::Merge, &["id"], &["p0", "p1"]);
    load(
        &dest,
        s.clone(),
        vec![
            ("p0", vec![(1, "a", 1.0), (2, "b", 2.0)]),
            ("p1", vec![(3, "c", 3.0), (4, "d", 4.0)]),
        ],
    )
    .await
    .unwrap();
    let xmin_before: String = scalar(&pool, "SELECT xmin::text FROM public.m WHERE id = 1").await;
    let r = load(
        &dest,
        s,
        vec![
            ("p0", vec![(1, "a", 1.0), (2, "B", 2.5)]),
            ("p1", vec![(3, "c", 3.0), (5, "e", 5.0)]),
        ],
    )
    .await
    .unwrap();
    assert_eq!((r.inserted, r.updated, r.deleted, r.rows), (1, 1, 1, 4));
    assert_eq!(
        rows(&pool, "m").await,
        vec![
            (1, Some("a".into()), Some(1.0)),
            (2, Some("B".into()), Some(2.5)),
            (3, Some("c".into()), Some(3.0)),
            (5, Some("e".into()), Some(5.0)),
        ]
    );
    let xmin_after: String = scalar(&pool, "SELECT xmin::text FROM public.m WHERE id = 1").await;
    assert_eq!(xmin_before, xmin_after, "an unchanged row is not rewritten");
    let counts: (Option<i64>, Option<i64>, Option<i64>) = sqlx::query_as(
        "SELECT rows_inserted, rows_updated, rows_deleted FROM psystem.loads WHERE job_key = 'm' ORDER BY id DESC LIMIT 1",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(counts, (Some(1), Some(1), Some(1)));
}

#[tokio::test]
async fn duplicate_keys_fail_with_examples_and_change_nothing() {
    let (_db, dest) = setup().await;
    let pool = dest.pool().clone();
    let s = spec("d", "d", LoadMode::Replace, &["id"], &["p0", "p1"]);
    load(
        &dest,
        s.clone(),
        vec![("p0", vec![(1, "a", 1.0)]), ("p1", vec![(2, "b", 2.0)])],
    )
    .await
    .unwrap();
    let err = load(
        &dest,
        s.clone(),
        vec![
            ("p0", vec![(1, "x", 1.0), (7, "y", 1.0)]),
            ("p1", vec![(7, "z", 2.0), (1, "w", 1.0), (7, "q", 1.0)]),
        ],
    )
    .await
    .unwrap_err();
    match &err {
        DestinationError::DuplicateKeys {
            columns,
            count,
            examples,
            ..
        } => {
            assert_eq!(columns, &vec!["id".to_string()]);
            assert_eq!(*count, 2);
            assert_eq!(examples, &vec!["(7) ×3".to_string(), "(1) ×2".to_string()]);
        }
        e => panic!("{e}"),
    }
    assert!(err.to_string().contains("(7) ×3"), "{err}");
    assert_eq!(rows(&pool, "d").await.len(), 2);
    assert!(staging_tables(&pool).await.is_empty());
    let state: String = scalar(
        &pool,
        "SELECT state FROM psystem.loads WHERE job_key = 'd' ORDER BY id DESC LIMIT 1",
    )
    .await;
    assert_eq!(state, "failed");
    // The same key in a merge: also refused.
    let mut m = spec("d2", "d", LoadMode::Merge, &["id"], &["p0"]);
    m.units = vec![UnitSpec::new("p0", 1)];
    let err = load(&dest, m, vec![("p0", vec![(1, "x", 1.0), (1, "y", 1.0)])])
        .await
        .unwrap_err();
    assert!(
        matches!(err, DestinationError::DuplicateKeys { .. }),
        "{err}"
    );
    assert_eq!(rows(&pool, "d").await[0].1.as_deref(), Some("a"));
    // Identical copies of an unchanged row (nothing to write for them) and copies of a new key: both refused.
    for (label, data) in [
        (
            "an unchanged row twice",
            vec![(1, "a", 1.0), (2, "b", 2.0), (1, "a", 1.0)],
        ),
        (
            "a new key twice",
            vec![(1, "a", 1.0), (2, "b", 2.0), (9, "n", 9.0), (9, "n", 9.0)],
        ),
    ] {
        let mut m = spec("d3", "d", LoadMode::Merge, &["id"], &["p0"]);
        m.units = vec![UnitSpec::new("p0", 1)];
        let err = load(&dest, m, vec![("p0", data)]).await.unwrap_err();
        match &err {
            DestinationError::DuplicateKeys { count, .. } => assert_eq!(*count, 1, "{label}"),
            e => panic!("{label}: {e}"),
        }
        assert_eq!(
            rows(&pool, "d").await,
            vec![
                (1, Some("a".into()), Some(1.0)),
                (2, Some("b".into()), Some(2.0))
            ],
            "{label}: nothing changed"
        );
        assert!(staging_tables(&pool).await.is_empty(), "{label}");
    }
}

/// `reloptions` of the table named `name` and of its TOAST table.
async fn storage_options(pool: &PgPool, name: &str) -> (Option<Vec<String>>, Option<Vec<String>>) {
    sqlx::query_as(
        "SELECT c.reloptions::text[], t.reloptions::text[] FROM pg_class c \
         LEFT JOIN pg_class t ON t.oid = c.reltoastrelid WHERE c.relname = $1",
    )
    .bind(name)
    .fetch_one(pool)
    .await
    .unwrap()
}

/// `relpersistence` of the table named `name`: `p` logged, `u` unlogged.
async fn persistence_of(pool: &PgPool, name: &str) -> String {
    sqlx::query_scalar("SELECT relpersistence::text FROM pg_class WHERE relname = $1")
        .bind(name)
        .fetch_one(pool)
        .await
        .unwrap()
}

/// (id, psystem_row_hash) of `public.h`, by id.
async fn row_hashes(pool: &PgPool) -> Vec<(i64, Option<i64>)> {
    sqlx::query_as("SELECT id, psystem_row_hash FROM public.h ORDER BY id")
        .fetch_all(pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn merges_compare_row_hashes_and_stage_unlogged() {
    let (_db, dest) = setup().await;
    let pool = dest.pool().clone();
    let s = spec("h", "h", LoadMode::Merge, &["id"], &["p0"]);
    let data = vec![(1, "a", 1.0), (2, "b", 2.0), (3, "", 3.0)];
    // A first load stages into a logged table (it becomes the table).
    let first = open_dataset_load(&dest, s.clone(), false).await.unwrap();
    let persistence = persistence_of(&pool, &first.staging().name).await;
    assert_eq!(persistence, "p");
    // Staging tables are not autovacuumed; the table they become is.
    let off = Some(vec!["autovacuum_enabled=false".to_string()]);
    assert_eq!(
        storage_options(&pool, &first.staging().name).await,
        (off.clone(), off.clone())
    );
    let batch_of = |rows: Vec<(i64, &'static str, f64)>| move |_: &str| vec![batch(&rows)];
    copy_all(&dest, &first, &batch_of(data.clone())).await;
    first.finish(&dest).await.unwrap();
    assert_eq!(storage_options(&pool, "h").await, (None, None));
    let hashes = row_hashes(&pool).await;
    assert!(hashes.iter().all(|(_, h)| h.is_some()), "{hashes:?}");
    let distinct: std::collections::HashSet<_> = hashes.iter().map(|(_, h)| *h).collect();
    assert_eq!(
        distinct.len(),
        3,
        "different rows, different hashes: {hashes:?}"
    );

    // A merge into the existing table stages into an unlogged table; the same rows change nothing.
    let again = open_dataset_load(&dest, s.clone(), false).await.unwrap();
    let persistence = persistence_of(&pool, &again.staging().name).await;
    assert_eq!(persistence, "u");
    assert_eq!(
        storage_options(&pool, &again.staging().name).await,
        (off.clone(), off.clone())
    );
    copy_all(&dest, &again, &batch_of(data.clone())).await;
    let r = again.finish(&dest).await.unwrap();
    assert_eq!((r.inserted, r.updated, r.deleted), (0, 0, 0));
    let after = row_hashes(&pool).await;
    assert_eq!(after, hashes, "the same rows hash the same in another load");

    // A table without the hash column (loaded before psystem kept hashes): every row counts as changed once.
    exec(&pool, "ALTER TABLE public.h DROP COLUMN psystem_row_hash").await;
    let r = load(&dest, s.clone(), vec![("p0", data.clone())])
        .await
        .unwrap();
    assert_eq!((r.inserted, r.updated, r.deleted), (0, 3, 0));
    let refilled = row_hashes(&pool).await;
    assert_eq!(refilled, hashes);
    let r = load(&dest, s.clone(), vec![("p0", data.clone())])
        .await
        .unwrap();
    assert_eq!((r.inserted, r.updated, r.deleted), (0, 0, 0));

    // A row edited by hand with its hash cleared counts as changed and is restored; "" and NULL differ.
    exec(
        &pool,
        "UPDATE public.h SET name = 'edited', psystem_row_hash = NULL WHERE id = 1",
    )
    .await;
    let r = load(
        &dest,
        s.clone(),
        vec![("p0", vec![(1, "a", 1.0), (2, "b", 2.0), (3, "", 3.0)])],
    )
    .await
    .unwrap();
    assert_eq!((r.inserted, r.updated, r.deleted), (0, 1, 0));
    assert_eq!(rows(&pool, "h").await[0], (1, Some("a".into()), Some(1.0)));

    // The table is dropped while a merge is staged: the unlogged staging table becomes a logged table.
    let orphan = open_dataset_load(&dest, s.clone(), false).await.unwrap();
    copy_all(&dest, &orphan, &batch_of(data.clone())).await;
    exec(&pool, "DROP TABLE public.h").await;
    let r = orphan.finish(&dest).await.unwrap();
    assert!(r.created);
    assert_eq!(
        persistence_of(&pool, "h").await,
        "p",
        "a table psystem creates is logged"
    );
    assert_eq!(storage_options(&pool, "h").await, (None, None));
    assert_eq!(rows(&pool, "h").await.len(), 3);
}

#[tokio::test]
async fn units_copied_concurrently_from_two_connections() {
    let (_db, dest) = setup().await;
    let keys: Vec<String> = (0..6).map(|i| format!("part-{i}.parquet")).collect();
    let key_refs: Vec<&str> = keys.iter().map(|k| k.as_str()).collect();
    let load = Arc::new(
        open_dataset_load(
            &dest,
            spec("c", "c", LoadMode::Replace, &["id"], &key_refs),
            false,
        )
        .await
        .unwrap(),
    );
    let mut tasks = Vec::new();
    for w in 0..2 {
        let (dest, load) = (dest.clone(), load.clone());
        tasks.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            while let Some(unit) = load
                .claim_unit(&dest, &format!("worker-{w}"))
                .await
                .unwrap()
            {
                let n: i64 = unit.key[5..6].parse().unwrap();
                let rows: Vec<(i64, &str, f64)> =
                    (0..1000).map(|i| (n * 1000 + i, "x", i as f64)).collect();
                tokio::time::sleep(Duration::from_millis(20)).await;
                load.copy_unit(&dest, &unit, ok(vec![batch(&rows)]))
                    .await
                    .unwrap();
                mine.push(unit.key);
            }
            mine
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    all.sort();
    assert_eq!(all, keys, "every unit copied exactly once");
    let p = load.progress(&dest).await.unwrap();
    assert_eq!((p.done, p.rows, p.pending), (6, 6000, 0));
    let load = Arc::try_unwrap(load).unwrap();
    let r = load.finish(&dest).await.unwrap();
    assert_eq!(r.rows, 6000);
    assert_eq!(rows(dest.pool(), "c").await.len(), 6000);
}

#[tokio::test]
async fn a_unit_whose_source_fails_midway_leaves_nothing() {
    let (_db, dest) = setup().await;
    let pool = dest.pool().clone();
    let load = open_dataset_load(
        &dest,
        spec("e", "e", LoadMode::Replace, &["id"], &["bad.parquet"]),
        false,
    )
    .await
    .unwrap();
    let unit = load.claim_unit(&dest, "w").await.unwrap().unwrap();
    let items: Vec<Result<RecordBatch, BoxError>> = vec![
        Ok(batch(&[(1, "a", 1.0), (2, "b", 2.0)])),
        Err("truncated row group".into()),
        Ok(batch(&[(3, "c", 3.0)])),
    ];
    let err = load
        .copy_unit(&dest, &unit, BatchIter(items.into_iter()))
        .await
        .unwrap_err();
    match &err {
        DestinationError::UnitSource { unit, source, .. } => {
            assert_eq!(unit, "bad.parquet");
            assert_eq!(source.to_string(), "truncated row group");
        }
        e => panic!("{e}"),
    }
    assert!(err.to_string().contains("bad.parquet"));
    let n: i64 = scalar(
        &pool,
        &format!(
            "SELECT count(*) FROM {}",
            psystem_postgres::quote_table(load.staging())
        ),
    )
    .await;
    assert_eq!(n, 0);
    // Two attempts allowed: the first failure makes it pending, the second failed.
    assert_eq!(
        load.fail_unit(&dest, &unit, "truncated", 2).await.unwrap(),
        UnitState::Pending
    );
    let unit = load.claim_unit(&dest, "w").await.unwrap().unwrap();
    assert_eq!(unit.attempt, 2);
    assert_eq!(
        load.fail_unit(&dest, &unit, "truncated", 2).await.unwrap(),
        UnitState::Failed
    );
    assert!(load.claim_unit(&dest, "w").await.unwrap().is_none());
    // Finishing with a failed unit is refused and changes nothing.
    let err = load.finish(&dest).await.unwrap_err();
    match &err {
        DestinationError::UnitsNotDone {
            failed, examples, ..
        } => {
            assert_eq!(*failed, 1);
            assert_eq!(examples, &vec!["bad.parquet (failed)".to_string()]);
        }
        e => panic!("{e}"),
    }
    // A resume makes failed units pending again and the load can complete.
    let load = open_dataset_load(
        &dest,
        spec("e", "e", LoadMode::Replace, &["id"], &["bad.parquet"]),
        false,
    )
    .await
    .unwrap();
    assert!(load.resumed());
    copy_all(&dest, &load, &|_| vec![batch(&[(1, "a", 1.0)])]).await;
    load.finish(&dest).await.unwrap();
    assert_eq!(rows(&pool, "e").await.len(), 1);
}

#[tokio::test]
async fn a_killed_load_resumes_and_ends_like_a_clean_one() {
    let (_db, dest) = setup().await;
    let pool = dest.pool().clone();
    let data = |key: &str| -> Vec<RecordBatch> {
        let n: i64 = key[1..].parse().unwrap();
        vec![batch(&[(n * 10, "x", 1.0), (n * 10 + 1, "y", 2.0)])]
    };
    let units = ["u0", "u1", "u2"];
    // Clean load into `clean`.
    let clean = open_dataset_load(
        &dest,
        spec("clean", "clean", LoadMode::Replace, &["id"], &units),
        false,
    )
    .await
    .unwrap();
    copy_all(&dest, &clean, &data).await;
    clean.finish(&dest).await.unwrap();

    // Interrupted: one unit done, one claimed (running) when the process "dies".
    let first = open_dataset_load(
        &dest,
        spec("k", "k", LoadMode::Replace, &["id"], &units),
        false,
    )
    .await
    .unwrap();
    let u = first.claim_unit(&dest, "w").await.unwrap().unwrap();
    first.copy_unit(&dest, &u, ok(data(&u.key))).await.unwrap();
    let _running = first.claim_unit(&dest, "w").await.unwrap().unwrap();
    let load_id = first.load_id();
    drop(first);
    let again = open_dataset_load(
        &dest,
        spec("k", "k", LoadMode::Replace, &["id"], &units),
        false,
    )
    .await
    .unwrap();
    assert!(again.resumed());
    assert_eq!(again.load_id(), load_id);
    let p = again.progress(&dest).await.unwrap();
    assert_eq!((p.done, p.pending, p.running, p.rows), (1, 2, 0, 2));
    copy_all(&dest, &again, &data).await;
    again.finish(&dest).await.unwrap();
    assert_eq!(rows(&pool, "k").await, rows(&pool, "clean").await);
    assert_eq!(rows(&pool, "k").await.len(), 6);

    // A staging table that lost rows (e.g. truncated) makes the resume copy every unit again.
    let first = open_dataset_load(
        &dest,
        spec("k2", "k2", LoadMode::Replace, &["id"], &units),
        false,
    )
    .await
    .unwrap();
    let u = first.claim_unit(&dest, "w").await.unwrap().unwrap();
    first.copy_unit(&dest, &u, ok(data(&u.key))).await.unwrap();
    exec(
        &pool,
        &format!(
            "TRUNCATE {}",
            psystem_postgres::quote_table(first.staging())
        ),
    )
    .await;
    drop(first);
    let again = open_dataset_load(
        &dest,
        spec("k2", "k2", LoadMode::Replace, &["id"], &units),
        false,
    )
    .await
    .unwrap();
    assert_eq!(again.progress(&dest).await.unwrap().pending, 3);
    copy_all(&dest, &again, &data).await;
    again.finish(&dest).await.unwrap();
    assert_eq!(rows(&pool, "k2").await, rows(&pool, "clean").await);

    // Other files than the unfinished load's: refused.
    let _open = open_dataset_load(
        &dest,
        spec("k3", "k3", LoadMode::Replace, &["id"], &units),
        false,
    )
    .await
    .unwrap();
    let err = open_dataset_load(
        &dest,
        spec("k3", "k3", LoadMode::Replace, &["id"], &["u0"]),
        false,
    )
    .await
    .unwrap_err();
    assert!(
        matches!(err, DestinationError::ResumeMismatch { .. }),
        "{err}"
    );
}

#[tokio::test]
async fn a_stale_heartbeat_lets_another_worker_reclaim_the_unit() {
    let (_db, dest) = setup().await;
    let pool = dest.pool().clone();
    let load = open_dataset_load(
        &dest,
        spec("h", "h", LoadMode::Replace, &["id"], &["only"]),
        false,
    )
    .await
    .unwrap();
    let a = load.claim_unit(&dest, "worker-a").await.unwrap().unwrap();
    load.heartbeat(&dest, &a).await.unwrap();
    assert!(
        load.claim_unit(&dest, "worker-b").await.unwrap().is_none(),
        "a fresh heartbeat keeps the unit"
    );
    exec(
        &pool,
        "UPDATE psystem.work_units SET heartbeat_at = now() - interval '5 minutes'",
    )
    .await;
    let b = load
        .claim_unit(&dest, "worker-b")
        .await
        .unwrap()
        .expect("reclaimed");
    assert_eq!((b.key.as_str(), b.attempt), ("only", 2));
    // The first worker has lost it: heartbeat, copy and failure report all say so, and nothing is written.
    assert!(matches!(
        load.heartbeat(&dest, &a).await,
        Err(DestinationError::UnitLost { .. })
    ));
    let err = load
        .copy_unit(&dest, &a, ok(vec![batch(&[(1, "a", 1.0)])]))
        .await
        .unwrap_err();
    assert!(matches!(err, DestinationError::UnitLost { .. }), "{err}");
    assert!(matches!(
        load.fail_unit(&dest, &a, "x", 3).await,
        Err(DestinationError::UnitLost { .. })
    ));
    load.copy_unit(&dest, &b, ok(vec![batch(&[(2, "b", 2.0)])]))
        .await
        .unwrap();
    load.finish(&dest).await.unwrap();
    assert_eq!(
        rows(&pool, "h").await,
        vec![(2, Some("b".into()), Some(2.0))]
    );
}

fn drift_schema(int_type: DataType, float_type: DataType, extra: bool) -> SchemaRef {
    let mut fields = vec![
        Field::new("id", DataType::Int64, false),
        Field::new("n", int_type, true),
        Field::new("f", float_type, true),
    ];
    if extra {
        fields.push(Field::new("added", DataType::Utf8, true));
    } else {
        fields.push(Field::new("dropped", DataType::Utf8, true));
    }
    Arc::new(Schema::new(fields))
}

async fn drift_load(
    dest: &Destination,
    job: &str,
    mode: LoadMode,
    schema: SchemaRef,
    allow_casts: bool,
    cols: Vec<ArrayRef>,
) -> Result<psystem_postgres::release_load::FinishReport, DestinationError> {
    let mut s = spec(job, "drift", mode, &["id"], &["p"]);
    s.schema = schema.clone();
    s.allow_casts = allow_casts;
    let load = open_dataset_load(dest, s, false).await?;
    let b = RecordBatch::try_new(schema, cols).unwrap();
    copy_all(dest, &load, &|_| vec![b.clone()]).await;
    load.finish(dest).await
}

#[tokio::test]
async fn schema_drift_adds_widens_keeps_and_refuses() {
    for mode in [LoadMode::Merge, LoadMode::Replace] {
        let (_db, dest) = setup().await;
        let pool = dest.pool().clone();
        let first = drift_load(
            &dest,
            "drift",
            mode,
            drift_schema(DataType::Int32, DataType::Float32, false),
            false,
            vec![
                Arc::new(Int64Array::from(vec![1, 2])),
                Arc::new(Int32Array::from(vec![10, 20])),
                Arc::new(Float32Array::from(vec![0.5, 1.5])),
                Arc::new(StringArray::from(vec!["old1", "old2"])),
            ],
        )
        .await
        .unwrap();
        assert!(first.created);
        exec(
            &pool,
            "ALTER TABLE public.drift ALTER COLUMN dropped SET NOT NULL",
        )
        .await;
        let r = drift_load(
            &dest,
            "drift",
            mode,
            drift_schema(DataType::Int64, DataType::Float64, true),
            false,
            vec![
                Arc::new(Int64Array::from(vec![2, 3])),
                Arc::new(Int64Array::from(vec![5_000_000_000, 30])),
                Arc::new(Float64Array::from(vec![2.25, 3.5])),
                Arc::new(StringArray::from(vec!["new2", "new3"])),
            ],
        )
        .await
        .unwrap_or_else(|e| panic!("{mode}: {e}"));
        assert_eq!(r.added_columns, vec!["added".to_string()], "{mode}");
        assert_eq!(
            r.widened_columns,
            vec![
                ("n".to_string(), "integer".to_string(), "bigint".to_string()),
                (
                    "f".to_string(),
                    "real".to_string(),
                    "double precision".to_string()
                )
            ],
            "{mode}"
        );
        assert_eq!(r.missing_columns, vec!["dropped".to_string()], "{mode}");
        let got: Vec<(i64, i64, f64, Option<String>, Option<String>)> =
            sqlx::query_as("SELECT id, n, f, added, dropped FROM public.drift ORDER BY id")
                .fetch_all(&pool)
                .await
                .unwrap();
        // merge keeps the values of a missing column in updated rows; replace has only the release's rows.
        let kept = if mode == LoadMode::Merge {
            Some("old2".to_string())
        } else {
            None
        };
        assert_eq!(
            got,
            vec![
                (2, 5_000_000_000, 2.25, Some("new2".into()), kept),
                (3, 30, 3.5, Some("new3".into()), None)
            ],
            "{mode}"
        );

        // bigint → boolean is not a widening.
        let bool_schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("n", DataType::Boolean, true),
        ]));
        let cols = || -> Vec<ArrayRef> {
            vec![
                Arc::new(Int64Array::from(vec![2])),
                Arc::new(arrow_array::BooleanArray::from(vec![true])),
            ]
        };
        let err = drift_load(&dest, "drift", mode, bool_schema.clone(), false, cols())
            .await
            .unwrap_err();
        match &err {
            DestinationError::IncompatibleColumn {
                column,
                existing,
                incoming,
                ..
            } => {
                assert_eq!(
                    (column.as_str(), existing.as_str(), incoming.as_str()),
                    ("n", "bigint", "boolean")
                );
            }
            e => panic!("{mode}: {e}"),
        }
        assert!(
            err.to_string().contains("`n`")
                && err.to_string().contains("bigint")
                && err.to_string().contains("boolean")
        );
        assert!(staging_tables(&pool).await.is_empty());
        let t: String = scalar(&pool, "SELECT format_type(atttypid, NULL) FROM pg_attribute WHERE attrelid = 'public.drift'::regclass AND attname = 'n'").await;
        assert_eq!(t, "bigint");
        // With allow_casts the column is converted (bigint has no direct cast to boolean: through text).
        exec(&pool, "UPDATE public.drift SET n = 1").await;
        let r = drift_load(&dest, "drift", mode, bool_schema, true, cols())
            .await
            .unwrap_or_else(|e| panic!("{mode}: {e}"));
        assert_eq!(
            r.retyped_columns,
            vec![("n".to_string(), "bigint".to_string(), "boolean".to_string())]
        );
        let t: String = scalar(&pool, "SELECT format_type(atttypid, NULL) FROM pg_attribute WHERE attrelid = 'public.drift'::regclass AND attname = 'n'").await;
        assert_eq!(t, "boolean");
        let v: Option<bool> = scalar(&pool, "SELECT n FROM public.drift WHERE id = 2").await;
        assert_eq!(v, Some(true));
    }
}

#[tokio::test]
async fn a_hostile_column_name_is_quoted_everywhere() {
    let (_db, dest) = setup().await;
    let pool = dest.pool().clone();
    let hostile = "a\"; DROP TABLE x; --";
    let schema: SchemaRef = Arc::new(Schema::new(vec![
        Field::new(hostile, DataType::Int64, false),
        Field::new("v", DataType::Utf8, true),
    ]));
    exec(&pool, "CREATE TABLE public.x (i int)").await;
    for (mode, values) in [
        (LoadMode::Replace, vec!["a", "b"]),
        (LoadMode::Merge, vec!["A", "B"]),
    ] {
        let mut s = spec("hostile", "we\"ird", mode, &[hostile], &["p"]);
        s.schema = schema.clone();
        let load = open_dataset_load(&dest, s, false).await.unwrap();
        let b = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(Int64Array::from(vec![1, 2])),
                Arc::new(StringArray::from(values)),
            ],
        )
        .unwrap();
        copy_all(&dest, &load, &|_| vec![b.clone()]).await;
        load.finish(&dest).await.unwrap();
    }
    let got: Vec<String> = sqlx::query_scalar("SELECT v FROM public.\"we\"\"ird\" ORDER BY 1")
        .fetch_all(&pool)
        .await
        .unwrap();
    assert_eq!(got, vec!["A", "B"]);
    let x: i64 = scalar(
        &pool,
        "SELECT count(*) FROM pg_tables WHERE tablename = 'x'",
    )
    .await;
    assert_eq!(x, 1, "table x survived");
}

#[tokio::test]
async fn the_files_ledger_upserts_and_reads_back() {
    let (_db, dest) = setup().await;
    let mut check = FileCheck {
        source: "opentargets".into(),
        release: "25.03".into(),
        path: "output/target/part-0.parquet".into(),
        size: Some(1234),
        algorithm: Some("sha1".into()),
        expected: Some("aa".into()),
        computed: Some("bb".into()),
        status: FileStatus::Mismatch,
        detail: Some("checksum differs".into()),
        verified_at: None,
    };
    record_file_check(&dest, &check).await.unwrap();
    check.computed = Some("aa".into());
    check.status = FileStatus::Verified;
    check.detail = None;
    record_file_check(&dest, &check).await.unwrap();
    let other = FileCheck {
        path: "output/disease/part-0.parquet".into(),
        status: FileStatus::Unverified,
        size: None,
        ..check.clone()
    };
    record_file_check(&dest, &other).await.unwrap();
    let got = file_checks(&dest, "opentargets", "25.03").await.unwrap();
    assert_eq!(got.len(), 2);
    assert_eq!(got[0].path, "output/disease/part-0.parquet");
    assert_eq!(got[1].status, FileStatus::Verified);
    assert_eq!(got[1].computed.as_deref(), Some("aa"));
    assert_eq!(got[1].size, Some(1234));
    assert!(got[1].verified_at.is_some());
    assert!(file_checks(&dest, "opentargets", "24.09")
        .await
        .unwrap()
        .is_empty());
    // A size that does not fit a bigint is refused.
    let huge = FileCheck {
        size: Some(u64::MAX),
        ..check
    };
    assert!(matches!(
        record_file_check(&dest, &huge).await,
        Err(DestinationError::InvalidSpec { .. })
    ));
}

#[tokio::test]
async fn invalid_specs_are_refused() {
    let (_db, dest) = setup().await;
    let err = open_dataset_load(&dest, spec("i", "i", LoadMode::Merge, &[], &["p"]), false)
        .await
        .unwrap_err();
    assert!(matches!(err, DestinationError::InvalidSpec { .. }), "{err}");
    let err = open_dataset_load(
        &dest,
        spec("i", "i", LoadMode::Replace, &["id"], &["p", "p"]),
        false,
    )
    .await
    .unwrap_err();
    assert!(matches!(err, DestinationError::InvalidSpec { .. }), "{err}");
    // A release column with the name of psystem's row hash column.
    let mut reserved = spec("i", "i", LoadMode::Replace, &["id"], &["p"]);
    reserved.schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new(ROW_HASH_COLUMN, DataType::Int64, true),
    ]));
    let err = open_dataset_load(&dest, reserved, false).await.unwrap_err();
    assert!(
        matches!(err, DestinationError::InvalidSpec { .. })
            && err.to_string().contains(ROW_HASH_COLUMN),
        "{err}"
    );
    // A batch with other columns is refused and leaves nothing.
    let load = open_dataset_load(
        &dest,
        spec("i", "i", LoadMode::Replace, &["id"], &["p"]),
        false,
    )
    .await
    .unwrap();
    let unit = load.claim_unit(&dest, "w").await.unwrap().unwrap();
    let other = RecordBatch::try_new(
        Arc::new(Schema::new(vec![Field::new("id", DataType::Utf8, false)])),
        vec![Arc::new(StringArray::from(vec!["1"]))],
    )
    .unwrap();
    let err = load
        .copy_unit(&dest, &unit, ok(vec![other]))
        .await
        .unwrap_err();
    assert!(
        matches!(err, DestinationError::BatchSchemaMismatch { .. }),
        "{err}"
    );
    load.abort(&dest, "given up").await.unwrap();
    assert!(staging_tables(dest.pool()).await.is_empty());
}
