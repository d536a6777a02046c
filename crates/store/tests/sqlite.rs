//! The conformance suite against the embedded SQLite store (a file per case).

use nommer_store::conformance::{self, CASES, POLICY};
use nommer_store::sql::{PoolSettings, SqlStore};

#[tokio::test]
async fn sqlite_conformance() {
    for case in CASES {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("store.db").display());
        let store = SqlStore::open(&url, POLICY, &PoolSettings::default())
            .await
            .unwrap();
        conformance::run(case, &store).await;
        eprintln!("ok: {case}");
    }
}

#[tokio::test]
async fn sqlite_in_memory_opens() {
    let store = SqlStore::open("sqlite::memory:", POLICY, &PoolSettings::default())
        .await
        .unwrap();
    conformance::run("lifecycle_and_events", &store).await;
}

#[tokio::test]
async fn a_store_of_the_previous_release_is_carried_forward() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("store.db").display());
    conformance::upgrade_from_the_previous_release(&url).await;
}
