//! The floor on a real PostgreSQL (`PSYSTEM_TEST_DATABASE_URL`): the COPY file holds exactly the generated
//! rows, flattened as psystem flattens them; and its failures.

use std::fs::File;
use std::os::unix::fs::{MetadataExt, PermissionsExt};

use arrow_array::cast::AsArray;
use arrow_array::Array;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use psystem_bench::floor::{encode_release, run_floor, FloorError, FloorSpec};
use psystem_bench::generate::{write_release, GenSpec};
use psystem_testkit::db::TestDb;
use sqlx::{Connection, PgConnection, Row};

/// A temp folder the server process (another OS user) can read.
fn shared_tempdir() -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    tmp
}

fn release(out: &std::path::Path, rows: u64) -> std::path::PathBuf {
    let mut spec = GenSpec::new(out, "25.03", rows);
    spec.files = 2;
    spec.row_group_rows = 500;
    write_release(&spec).unwrap().release_dir
}

#[tokio::test]
async fn floor_loads_every_row_as_psystem_flattens_it() {
    let db = TestDb::create().await;
    let tmp = shared_tempdir();
    let dir = release(tmp.path(), 2000);
    let copy_file = tmp.path().join("floor.pgcopy");
    let encoded = encode_release(&dir, "bench_entity", &copy_file).unwrap();
    assert_eq!(encoded.rows, 2000);
    assert_eq!(encoded.files.len(), 2);
    let columns: Vec<_> = encoded
        .schema
        .fields()
        .iter()
        .map(|f| f.name().as_str())
        .collect();
    assert_eq!(
        columns,
        [
            "id",
            "name",
            "description",
            "score",
            "location_chromosome",
            "location_start",
            "location_end",
            "synonyms"
        ]
    );
    let mode = std::fs::metadata(&copy_file).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o644);
    let bytes = std::fs::read(&copy_file).unwrap();
    assert!(bytes.starts_with(b"PGCOPY\n\xff\r\n\0"));
    assert!(bytes.ends_with(&[0xff, 0xff]));
    assert_eq!(bytes.len() as u64, encoded.copy_bytes);

    let spec = FloorSpec {
        db_url: db.url().to_string(),
        table: "bench floor".into(), // needs quoting
        runs: 2,
        keep_table: true,
        primary_key: vec!["id".into()],
    };
    let result = run_floor(&spec, &encoded).await.unwrap();
    assert_eq!(result.rows, 2000);
    assert_eq!(result.run_seconds.len(), 2);
    assert!(result.best_seconds > 0.0 && result.best_seconds <= result.run_seconds[0]);
    assert!(result.rows_per_s > 0.0);
    assert!(result.table_bytes > 0);
    assert!(result.server_version.starts_with(char::is_numeric));
    // The keyed floor: each run's COPY + ADD PRIMARY KEY, never shorter than its COPY.
    assert_eq!(result.keyed_run_seconds.len(), 2);
    for (keyed, copy) in result.keyed_run_seconds.iter().zip(&result.run_seconds) {
        assert!(keyed >= copy, "{keyed} < {copy}");
    }
    assert!(result.keyed_best_seconds.unwrap() >= result.best_seconds);

    // Column types are the ones psystem would create.
    let mut conn = PgConnection::connect(db.url()).await.unwrap();
    let types: Vec<(String, String)> = sqlx::query_as(
        "SELECT attname::text, format_type(atttypid, atttypmod) FROM pg_attribute
         WHERE attrelid = '\"bench floor\"'::regclass AND attnum > 0 ORDER BY attnum",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap();
    let types: Vec<_> = types.iter().map(|(n, t)| format!("{n} {t}")).collect();
    assert_eq!(
        types,
        [
            "id text",
            "name text",
            "description text",
            "score double precision",
            "location_chromosome text",
            "location_start bigint",
            "location_end bigint",
            "synonyms text[]"
        ]
    );
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM \"bench floor\"")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(count, 2000);

    // Every value of the first file arrives unchanged (tabs, newlines, quotes, backslashes, NULL structs).
    let first = &encoded.files[0];
    let reader = ParquetRecordBatchReaderBuilder::try_new(File::open(first).unwrap())
        .unwrap()
        .build()
        .unwrap();
    let mut checked = 0;
    let mut null_locations = 0;
    for batch in reader {
        let batch = batch.unwrap();
        let id = batch.column(0).as_string::<i32>();
        let desc = batch.column(2).as_string::<i32>();
        let loc = batch.column(4).as_struct();
        let syn = batch.column(5).as_list::<i32>();
        for i in 0..batch.num_rows() {
            let row = sqlx::query(
                "SELECT description, location_chromosome, location_start, synonyms
                 FROM \"bench floor\" WHERE id = $1",
            )
            .bind(id.value(i))
            .fetch_one(&mut conn)
            .await
            .unwrap();
            let d: Option<String> = row.get(0);
            assert_eq!(d.as_deref(), desc.is_valid(i).then(|| desc.value(i)));
            let chrom: Option<String> = row.get(1);
            let start: Option<i64> = row.get(2);
            if loc.is_null(i) {
                null_locations += 1;
                assert_eq!(
                    (chrom, start),
                    (None, None),
                    "a NULL struct gives NULL columns"
                );
            } else {
                assert_eq!(
                    chrom.as_deref(),
                    Some(loc.column(0).as_string::<i32>().value(i))
                );
            }
            let synonyms: Vec<String> = row.get(3);
            let expected: Vec<String> = syn
                .value(i)
                .as_string::<i32>()
                .iter()
                .map(|s| s.unwrap().to_string())
                .collect();
            assert_eq!(synonyms, expected);
            checked += 1;
        }
    }
    assert_eq!(checked, 1000);
    assert!(null_locations > 0);
    conn.close().await.unwrap();
}

#[tokio::test]
async fn floor_drops_its_table_unless_kept() {
    let db = TestDb::create().await;
    let tmp = shared_tempdir();
    let dir = release(tmp.path(), 100);
    let encoded = encode_release(&dir, "bench_entity", &tmp.path().join("f.pgcopy")).unwrap();
    let spec = FloorSpec {
        db_url: db.url().to_string(),
        table: "bench_floor".into(),
        runs: 1,
        keep_table: false,
        primary_key: Vec::new(),
    };
    run_floor(&spec, &encoded).await.unwrap();
    let mut conn = PgConnection::connect(db.url()).await.unwrap();
    let exists: bool = sqlx::query_scalar("SELECT to_regclass('bench_floor') IS NOT NULL")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert!(!exists);
}

#[tokio::test]
async fn floor_reports_a_file_the_server_cannot_read() {
    let db = TestDb::create().await;
    let shared = shared_tempdir();
    let dir = release(shared.path(), 100);
    // A private folder (mode 0700, owned by the test's user): the server process cannot open the file,
    // unless the tests run as the server's own user.
    let private = tempfile::tempdir().unwrap();
    std::fs::set_permissions(private.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
    let encoded = encode_release(&dir, "bench_entity", &private.path().join("f.pgcopy")).unwrap();
    let mut conn = PgConnection::connect(db.url()).await.unwrap();
    // The server's OS user owns its data directory.
    let data_directory: String = sqlx::query_scalar("SELECT current_setting('data_directory')")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    let same_user = std::fs::metadata(&data_directory).map(|m| m.uid()).ok() == Some(our_uid());
    let spec = FloorSpec {
        db_url: db.url().to_string(),
        table: "bench_floor".into(),
        runs: 1,
        keep_table: false,
        primary_key: Vec::new(),
    };
    match run_floor(&spec, &encoded).await {
        Err(e @ FloorError::Database { .. }) => {
            let msg = e.to_string();
            assert!(msg.contains("COPY \"bench_floor\" FROM"), "{msg}");
            assert!(msg.contains("f.pgcopy"), "{msg}");
        }
        Ok(_) if same_user => {} // the server runs as us: it may read the folder
        other => panic!("expected a Database error, got {other:?}"),
    }
    // The failed run leaves no table behind.
    let exists: bool = sqlx::query_scalar("SELECT to_regclass('bench_floor') IS NOT NULL")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert!(!exists);
}

/// Our effective uid: the owner of a file we just created.
fn our_uid() -> u32 {
    let f = tempfile::NamedTempFile::new().unwrap();
    f.as_file().metadata().unwrap().uid()
}

#[tokio::test]
async fn floor_errors_name_what_failed() {
    // No Parquet files.
    let tmp = shared_tempdir();
    std::fs::create_dir_all(tmp.path().join("r/output/bench_entity")).unwrap();
    std::fs::write(tmp.path().join("r/output/bench_entity/_SUCCESS"), b"").unwrap();
    match encode_release(&tmp.path().join("r"), "bench_entity", &tmp.path().join("x")) {
        Err(FloorError::NoFiles(p)) => assert!(p.ends_with("output/bench_entity")),
        other => panic!("expected NoFiles, got {other:?}"),
    }
    // A missing dataset folder.
    match encode_release(&tmp.path().join("r"), "nope", &tmp.path().join("x")) {
        Err(e @ FloorError::Io { .. }) => assert!(e.to_string().contains("nope"), "{e}"),
        other => panic!("expected Io, got {other:?}"),
    }
    // A file that is not Parquet.
    std::fs::write(
        tmp.path()
            .join("r/output/bench_entity/part-00000-x-c000.snappy.parquet"),
        b"not parquet at all",
    )
    .unwrap();
    match encode_release(&tmp.path().join("r"), "bench_entity", &tmp.path().join("x")) {
        Err(e @ FloorError::Parquet { .. }) => assert!(e.to_string().contains("part-00000"), "{e}"),
        other => panic!("expected Parquet, got {other:?}"),
    }
    // A server that does not answer: a Database error naming the (redacted) URL.
    let dir = release(&tmp.path().join("ok"), 10);
    let encoded = encode_release(&dir, "bench_entity", &tmp.path().join("ok.pgcopy")).unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let spec = FloorSpec {
        db_url: format!("postgres://me:secret@127.0.0.1:{port}/db"),
        table: "t".into(),
        runs: 1,
        keep_table: false,
        primary_key: Vec::new(),
    };
    match run_floor(&spec, &encoded).await {
        Err(e @ FloorError::Database { .. }) => {
            let msg = e.to_string();
            assert!(msg.contains("connecting to"), "{msg}");
            assert!(!msg.contains("secret"), "the password is redacted: {msg}");
        }
        other => panic!("expected Database, got {other:?}"),
    }
}
