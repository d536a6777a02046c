//! The same conformance suite against PostgreSQL (a database per case), plus
//! what only a shared database has: concurrent claims from several replicas
//! and leadership.

use nommer_store::conformance::{self, new_job, node, CASES, POLICY};
use nommer_store::leader::Leadership;
use nommer_store::sql::{PoolSettings, SqlStore};
use nommer_store::Store;
use nommer_testkit::postgres::PgServer;
use std::collections::HashSet;
use std::time::Duration;

async fn store(url: &str) -> SqlStore {
    SqlStore::open(url, POLICY, &PoolSettings::default())
        .await
        .unwrap()
}

#[tokio::test]
async fn postgres_conformance() {
    let server = PgServer::shared();
    for case in CASES {
        let url = server.fresh_database().await;
        conformance::run(case, &store(&url).await).await;
        eprintln!("ok: {case}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replicas_claiming_at_once_never_share_a_job() {
    let url = PgServer::shared().fresh_database().await;
    let a = store(&url).await;
    let b = store(&url).await;
    let now = 1_800_000_000_000;
    for i in 0..200 {
        a.insert_job(&new_job(now + i, false)).await.unwrap();
    }
    let (a, b) = (std::sync::Arc::new(a), std::sync::Arc::new(b));
    let mut tasks = Vec::new();
    for i in 0..8 {
        let store = if i % 2 == 0 { a.clone() } else { b.clone() };
        tasks.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            loop {
                let claimed = store
                    .claim(&node(&format!("n{i}")), 3, now + 1000)
                    .await
                    .unwrap();
                if claimed.is_empty() {
                    return mine;
                }
                mine.extend(claimed.into_iter().map(|c| c.job.id));
            }
        }));
    }
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await.unwrap());
    }
    let unique: HashSet<_> = all.iter().collect();
    assert_eq!(all.len(), 200, "every job claimed once");
    assert_eq!(unique.len(), 200, "no job claimed twice");
}

#[tokio::test]
async fn a_job_written_on_one_replica_wakes_waiters_on_another() {
    let url = PgServer::shared().fresh_database().await;
    let a = store(&url).await;
    let b = store(&url).await;
    // Let b's listener connect before the write.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let signal = b.jobs_signal();
    let woken = signal.notified();
    a.insert_job(&new_job(1_800_000_000_000, false))
        .await
        .unwrap();
    tokio::time::timeout(Duration::from_secs(2), woken)
        .await
        .expect("replica b was not woken by replica a's job");
}

#[tokio::test]
async fn one_leader_at_a_time_and_a_new_one_when_it_goes() {
    let url = PgServer::shared().fresh_database().await;
    let (stop_a, rx_a) = tokio::sync::watch::channel(false);
    let (_stop_b, rx_b) = tokio::sync::watch::channel(false);
    let mut a = Leadership::postgres(&url, "a", rx_a);
    tokio::time::timeout(Duration::from_secs(5), a.wait_until_leader())
        .await
        .expect("a became leader");
    let b = Leadership::postgres(&url, "b", rx_b);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(a.is_leader() && !b.is_leader(), "exactly one leader");
    stop_a.send(true).unwrap();
    let mut b = b;
    tokio::time::timeout(Duration::from_secs(5), b.wait_until_leader())
        .await
        .expect("b took over within seconds");
    assert!(!a.is_leader());
}
