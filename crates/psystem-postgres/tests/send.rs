//! The destination's futures are `Send` for any lifetime, so callers can `tokio::spawn` them (a compile-time
//! check that also runs once).

mod common;

use psystem_core::{JobState, LoadMode, TableRef};
use psystem_postgres::{migrate, Destination};
use psystem_testkit::db::TestDb;
use sqlx::Connection;

#[tokio::test]
async fn destination_futures_can_be_spawned() {
    let db = TestDb::create().await;
    let url = db.url().to_string();
    tokio::spawn(async move {
        let mut conn = sqlx::PgConnection::connect(&url).await.unwrap();
        migrate(&mut conn).await.unwrap();
        let dest = Destination::connect(&url).await.unwrap();
        let lock = dest.try_lock_job("spawned").await.unwrap().unwrap();
        let mut load = dest
            .open_load(
                common::spec("spawned", "spawned", LoadMode::Merge, &["id"]),
                false,
            )
            .await
            .unwrap();
        dest.commit_page(
            &mut load,
            &common::batch(&[(1, "a", 1.0)]),
            serde_json::json!(1),
            0,
            None,
        )
        .await
        .unwrap();
        dest.finish_load(&mut load).await.unwrap();
        dest.set_state(load.load_id, JobState::Completed, None)
            .await
            .unwrap();
        assert_eq!(dest.loads(None, 5).await.unwrap().len(), 1);
        assert!(dest.load_by_id(load.load_id).await.unwrap().is_some());
        assert_eq!(
            dest.preview(&TableRef::new("public", "spawned"), 5)
                .await
                .unwrap()
                .rows
                .len(),
            1
        );
        lock.release().await.unwrap();
    })
    .await
    .unwrap();
}
