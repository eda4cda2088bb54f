//! Protein loads (UniProt entries into the protein tables, unit by unit) on a real PostgreSQL: the error paths of
//! the unit transaction — a unit taken over by another worker writes nothing, a duplicate accession fails its unit,
//! a source error rolls the unit back — and the finish rules.

use std::time::Duration;

use psystem_postgres::protein::{
    attach_protein_load, open_protein_load, EntryBatch, EntryBatches, ProteinLoad, ProteinLoadSpec,
};
use psystem_postgres::release_load::{BoxError, UnitSpec};
use psystem_postgres::work_units::shared_loads;
use psystem_postgres::{Destination, DestinationError};
use psystem_testkit::db::TestDb;
use psystem_uniprot::{Entry, EntryReader};

/// The 100 real entries of SWISS100.dat.
fn entries() -> Vec<Entry> {
    let path = psystem_testkit::uniprot::fixture_dir().join("debian_libswiss-perl/SWISS100.dat");
    EntryReader::new(std::fs::File::open(&path).unwrap())
        .map(|e| e.unwrap())
        .collect()
}

fn spec(units: usize, timeout: Duration) -> ProteinLoadSpec {
    ProteinLoadSpec {
        job_key: "uniprot/sprot".into(),
        plugin: "uniprot".into(),
        entry: "sprot".into(),
        release: "2024_01".into(),
        dataset: "sprot".into(),
        schema: "uniprot".into(),
        table: "protein".into(),
        units: (0..units)
            .map(|i| UnitSpec::new(format!("{i:015}"), 1000))
            .collect(),
        verified: true,
        heartbeat_timeout: timeout,
        worker_spec: serde_json::json!({"kind": "uniprot", "heartbeat_timeout_secs": timeout.as_secs_f64()}),
        file_digest: None,
    }
}

fn batches(items: Vec<Result<Vec<Entry>, BoxError>>) -> EntryBatches {
    let (tx, rx) = tokio::sync::mpsc::channel(items.len().max(1));
    for item in items {
        tx.try_send(item.map(|entries| EntryBatch {
            entries,
            skipped: Vec::new(),
        }))
        .unwrap();
    }
    rx
}

async fn count(dest: &Destination, table: &str) -> i64 {
    sqlx::query_scalar(&format!("SELECT count(*) FROM uniprot.{table}"))
        .fetch_one(dest.pool())
        .await
        .unwrap()
}

async fn write(
    dest: &Destination,
    load: &ProteinLoad,
    worker: &str,
    entries: Vec<Entry>,
) -> Result<psystem_postgres::protein::ProteinUnitReport, DestinationError> {
    let unit = load.queue().claim(dest, worker).await.unwrap().unwrap();
    load.write_unit(dest, &unit, batches(vec![Ok(entries)]))
        .await
}

#[tokio::test]
async fn units_write_entries_and_finish_deletes_what_the_release_lacks() {
    let db = TestDb::create().await;
    let dest = Destination::connect(db.url()).await.unwrap();
    let all = entries();
    let load = open_protein_load(&dest, spec(2, Duration::from_secs(60)), false)
        .await
        .unwrap();
    // Finishing early changes nothing and keeps the load open.
    assert!(matches!(
        load.finish(&dest).await,
        Err(DestinationError::UnitsNotDone { pending: 2, .. })
    ));
    let r = write(&dest, &load, "w", all[..60].to_vec()).await.unwrap();
    assert_eq!(
        (r.entries, r.inserted, r.updated, r.unchanged),
        (60, 60, 0, 0)
    );
    let r = write(&dest, &load, "w", all[60..].to_vec()).await.unwrap();
    assert_eq!(r.inserted, 40);
    let done = load.finish(&dest).await.unwrap();
    assert_eq!((done.units.entries, done.deleted), (100, 0));
    assert_eq!(count(&dest, "protein").await, 100);
    let xrefs: usize = all.iter().map(|e| e.cross_references.len()).sum();
    assert_eq!(count(&dest, "protein_xref").await as usize, xrefs);
    // A second finish is refused: the load is completed.
    assert!(matches!(
        load.finish(&dest).await,
        Err(DestinationError::LoadNotActive { .. })
    ));

    // Next release: 90 entries, one of them changed; the other 10 are deleted with their child rows.
    let mut next = spec(1, Duration::from_secs(60));
    next.release = "2024_02".into();
    let load = open_protein_load(&dest, next, false).await.unwrap();
    let mut changed = all[..90].to_vec();
    changed[0].content_md5 = "0".repeat(32);
    let r = write(&dest, &load, "w", changed).await.unwrap();
    assert_eq!((r.inserted, r.updated, r.unchanged), (0, 1, 89));
    let done = load.finish(&dest).await.unwrap();
    assert_eq!(done.deleted, 10);
    assert_eq!(count(&dest, "protein").await, 90);
    let orphans: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM uniprot.protein_xref x WHERE NOT EXISTS \
         (SELECT 1 FROM uniprot.protein p WHERE p.accession = x.accession)",
    )
    .fetch_one(dest.pool())
    .await
    .unwrap();
    assert_eq!(orphans, 0, "child rows of deleted entries are gone");
}

#[tokio::test]
async fn a_unit_taken_over_by_another_worker_writes_nothing() {
    let db = TestDb::create().await;
    let dest = Destination::connect(db.url()).await.unwrap();
    let all = entries();
    let load = open_protein_load(&dest, spec(1, Duration::from_millis(500)), false)
        .await
        .unwrap();
    let stale = load.queue().claim(&dest, "a").await.unwrap().unwrap();
    // No heartbeat: after the timeout, worker b takes the unit over.
    assert!(load.queue().claim(&dest, "b").await.unwrap().is_none());
    tokio::time::sleep(Duration::from_millis(700)).await;
    let worker = attach_protein_load(&dest, load.load_id()).await.unwrap();
    let taken = worker.queue().claim(&dest, "b").await.unwrap().unwrap();
    assert_eq!((taken.id, taken.attempt), (stale.id, 2));
    assert!(matches!(
        load.queue().heartbeat(&dest, &stale).await,
        Err(DestinationError::UnitLost { .. })
    ));
    // The slow worker comes back: its write is refused and nothing of it stays.
    let late = load
        .write_unit(&dest, &stale, batches(vec![Ok(all[..10].to_vec())]))
        .await;
    assert!(
        matches!(late, Err(DestinationError::UnitLost { .. })),
        "{late:?}"
    );
    assert_eq!(count(&dest, "protein").await, 0);
    worker
        .write_unit(&dest, &taken, batches(vec![Ok(all.clone())]))
        .await
        .unwrap();
    assert_eq!(count(&dest, "protein").await, 100);
    assert!(
        shared_loads(&dest).await.unwrap().is_empty(),
        "no unit left to join"
    );
}

#[tokio::test]
async fn a_duplicate_accession_or_a_source_error_fails_the_unit_and_writes_nothing() {
    let db = TestDb::create().await;
    let dest = Destination::connect(db.url()).await.unwrap();
    let all = entries();
    let load = open_protein_load(&dest, spec(3, Duration::from_secs(60)), false)
        .await
        .unwrap();
    write(&dest, &load, "w", all[..5].to_vec()).await.unwrap();
    // Unit 2 repeats an accession of unit 1: the seen table's key refuses it.
    let dup = write(&dest, &load, "w", vec![all[5].clone(), all[0].clone()]).await;
    match dup {
        Err(DestinationError::DuplicateAccession { accession, .. }) => {
            assert_eq!(accession, all[0].primary_accession)
        }
        other => panic!("expected a duplicate accession, got {other:?}"),
    }
    assert_eq!(
        count(&dest, "protein").await,
        5,
        "nothing of the failed unit stays"
    );
    // Unit 3: the parser fails after a good batch: nothing of it stays either.
    let unit = load.queue().claim(&dest, "w").await.unwrap().unwrap();
    let err = load
        .write_unit(
            &dest,
            &unit,
            batches(vec![
                Ok(all[10..20].to_vec()),
                Err("uniprot_sprot.dat.gz:1234: entry P99999: malformed SQ line".into()),
            ]),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, DestinationError::UnitSource { .. }), "{err}");
    assert!(err.to_string().contains(&unit.key), "{err}");
    assert_eq!(count(&dest, "protein").await, 5);
}
