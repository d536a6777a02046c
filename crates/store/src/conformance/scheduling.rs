//! Conformance cases for scheduling and the job's life around it: fair
//! share, priorities, queues, idempotent submits, the event feed,
//! redelivery and retention.

use super::{claim_all, finish, job_now, new_job, T0};
use crate::*;

fn owned(owner: &str, now: i64) -> NewJob {
    let mut job = new_job(now, false);
    job.submitted_by = Some(owner.into());
    job
}

fn ids(claimed: &[Claimed]) -> Vec<String> {
    claimed.iter().map(|c| c.job.id.clone()).collect()
}

/// A token with one job waiting starts it within one claim while another
/// token has a thousand queued; each token's jobs go in submission order.
pub async fn fair_share_serves_each_token_in_turn(store: &dyn Store) {
    let many: Vec<NewJob> = (0..1000).map(|i| owned("big", T0 + i)).collect();
    let inserted = futures::future::join_all(many.iter().map(|job| store.insert_job(job))).await;
    let big: Vec<String> = inserted.into_iter().map(|r| r.unwrap().id).collect();
    let first = claim_all(store, "n1", 1, T0 + 2000).await;
    assert_eq!(ids(&first), vec![big[0].clone()], "the oldest job first");
    let small = store.insert_job(&owned("small", T0 + 2001)).await.unwrap();
    let next = ids(&claim_all(store, "n2", 2, T0 + 2002).await);
    assert!(
        next.contains(&small.id),
        "the lone job of another token starts in the next claim: {next:?}"
    );
    assert!(
        next.contains(&big[1]),
        "and the big token's next one beside it"
    );
    // Two tokens with work: they take turns.
    let smalls: Vec<String> = {
        let mut out = Vec::new();
        for i in 0..3 {
            out.push(
                store
                    .insert_job(&owned("small", T0 + 2010 + i))
                    .await
                    .unwrap()
                    .id,
            );
        }
        out
    };
    let turns = ids(&claim_all(store, "n3", 6, T0 + 2020).await);
    let mut sorted = turns.clone();
    sorted.sort();
    let mut expected = vec![big[2].clone(), big[3].clone(), big[4].clone()];
    expected.extend(smalls.iter().cloned());
    expected.sort();
    assert_eq!(sorted, expected, "three of each token in six claims");
}

/// Higher priority first, whoever submitted it and whenever.
pub async fn higher_priority_runs_first(store: &dyn Store) {
    let mut made = Vec::new();
    for (i, priority) in [0, 10, -5, 50].into_iter().enumerate() {
        let mut job = owned("app", T0 + i as i64);
        job.priority = priority;
        made.push((priority, store.insert_job(&job).await.unwrap().id));
    }
    let mut order = Vec::new();
    for n in 0..4 {
        let claimed = claim_all(store, &format!("n{n}"), 1, T0 + 10).await;
        order.push(claimed[0].job.id.clone());
    }
    made.sort_by_key(|(priority, _)| -priority);
    let expected: Vec<String> = made.into_iter().map(|(_, id)| id).collect();
    assert_eq!(order, expected);
    assert_eq!(job_now(store, &order[0]).await.priority, 50);
}

/// A queue's `max_concurrency` counts its running tasks; a paused queue
/// leases nothing but keeps its jobs; the list shows each queue's depth.
pub async fn queues_cap_and_pause(store: &dyn Store) {
    store
        .sync_queues(&[("default".into(), None), ("slow".into(), Some(1))], T0)
        .await
        .unwrap();
    let mut slow = Vec::new();
    for i in 0..3 {
        let mut job = owned("app", T0 + i);
        job.queue = "slow".into();
        slow.push(store.insert_job(&job).await.unwrap().id);
    }
    let plain = store.insert_job(&owned("app", T0 + 5)).await.unwrap();
    let claimed = claim_all(store, "n1", 4, T0 + 10).await;
    let mut got = ids(&claimed);
    got.sort();
    let mut expected = vec![slow[0].clone(), plain.id.clone()];
    expected.sort();
    assert_eq!(
        got, expected,
        "one of the slow queue, and the default's job"
    );
    let mut running: Vec<String> = store
        .running_tasks(10)
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.job_id)
        .collect();
    running.sort();
    assert_eq!(running, expected, "the tasks leased now");
    assert!(
        claim_all(store, "n2", 4, T0 + 11).await.is_empty(),
        "slow is full"
    );
    let queues = store.list_queues().await.unwrap();
    let slow_queue = queues.iter().find(|q| q.name == "slow").unwrap();
    assert_eq!(
        (
            slow_queue.max_concurrency,
            slow_queue.pending,
            slow_queue.running
        ),
        (Some(1), 2, 1)
    );
    let leased = claimed.iter().find(|c| c.job.id == slow[0]).unwrap();
    finish(store, leased).await;
    assert!(store.set_queue_paused("slow", true, T0 + 12).await.unwrap());
    assert!(!store
        .set_queue_paused("nosuch", true, T0 + 12)
        .await
        .unwrap());
    assert!(
        claim_all(store, "n2", 4, T0 + 13).await.is_empty(),
        "a paused queue leases nothing"
    );
    store
        .sync_queues(&[("slow".into(), Some(1))], T0 + 14)
        .await
        .unwrap();
    let queues = store.list_queues().await.unwrap();
    assert!(
        queues.iter().any(|q| q.name == "slow" && q.paused),
        "a restart's config keeps the pause"
    );
    assert!(store
        .set_queue_paused("slow", false, T0 + 15)
        .await
        .unwrap());
    assert_eq!(
        ids(&claim_all(store, "n2", 4, T0 + 16).await),
        vec![slow[1].clone()]
    );
}

fn key(scope: &str, digest: &str, expired_before: i64) -> IdempotencyKey {
    IdempotencyKey {
        scope: scope.into(),
        key: "order-17".into(),
        digest: digest.into(),
        expired_before,
    }
}

/// A key gives back its first job for the same body, refuses another body,
/// belongs to one scope, and can be used again once it has expired.
pub async fn idempotency_keys_replay_or_refuse(store: &dyn Store) {
    let first = match store
        .insert_job_once(&owned("app", T0), &key("app", "d1", T0 - 1))
        .await
        .unwrap()
    {
        Inserted::New(job) => job,
        other => panic!("the first submit inserts: {other:?}"),
    };
    match store
        .insert_job_once(&owned("app", T0 + 1), &key("app", "d1", T0 - 1))
        .await
        .unwrap()
    {
        Inserted::Replayed(job) => assert_eq!(job.id, first.id),
        other => panic!("the same body replays: {other:?}"),
    }
    assert!(matches!(
        store
            .insert_job_once(&owned("app", T0 + 2), &key("app", "d2", T0 - 1))
            .await
            .unwrap(),
        Inserted::Conflict
    ));
    assert!(
        matches!(
            store
                .insert_job_once(&owned("other", T0 + 3), &key("other", "d2", T0 - 1))
                .await
                .unwrap(),
            Inserted::New(_)
        ),
        "another token's key is its own"
    );
    let again = store
        .insert_job_once(&owned("app", T0 + 4), &key("app", "d2", T0 + 1))
        .await
        .unwrap();
    assert!(
        matches!(&again, Inserted::New(job) if job.id != first.id),
        "an expired key is used again: {again:?}"
    );
    let mut counts = store.count_jobs().await.unwrap();
    counts.sort_by_key(|(s, _)| s.as_str());
    assert_eq!(
        counts,
        vec![(JobState::Pending, 3)],
        "no job was lost or doubled"
    );
}

/// The feed of events after a cursor, for every job or one; one event
/// delivered again on request.
pub async fn event_feed_and_redelivery(store: &dyn Store) {
    let a = store.insert_job(&new_job(T0, true)).await.unwrap();
    let b = store.insert_job(&new_job(T0, false)).await.unwrap();
    let lease = claim_all(store, "n1", 2, T0 + 1).await;
    for c in &lease {
        finish(store, c).await;
    }
    let all = store.events_after(0, None, 100).await.unwrap();
    assert!(all.windows(2).all(|w| w[0].seq < w[1].seq), "oldest first");
    let of_a = store.events_after(0, Some(&a.id), 100).await.unwrap();
    assert!(of_a.iter().all(|e| e.job_id == a.id));
    assert_eq!(of_a.last().unwrap().state, JobState::Finished);
    let cursor = of_a[1].seq;
    let rest = store.events_after(cursor, Some(&a.id), 100).await.unwrap();
    assert_eq!(rest.len(), of_a.len() - 2, "resumes after the cursor");
    let finished = of_a.last().unwrap();
    deliver_all(store, T0 + 100).await;
    assert!(store
        .redeliver(&a.id, finished.seq, T0 + 200)
        .await
        .unwrap());
    let b_events = store.events_after(0, Some(&b.id), 100).await.unwrap();
    assert!(
        !store
            .redeliver(&b.id, b_events[1].seq, T0 + 200)
            .await
            .unwrap(),
        "a job without a notify_url has nothing to deliver"
    );
    assert!(
        !store
            .redeliver(&b.id, finished.seq, T0 + 200)
            .await
            .unwrap(),
        "another job's event"
    );
    let due = store.due_deliveries(T0 + 201, 10).await.unwrap();
    let event = due
        .iter()
        .find(|e| e.seq == finished.seq)
        .expect("due again, and only it");
    assert_eq!(due.len(), 1, "{due:?}");
    assert_eq!(
        event.webhook_id(),
        finished.webhook_id(),
        "the same webhook-id"
    );
}

/// Record every due webhook as delivered, until none is left.
async fn deliver_all(store: &dyn Store, now: i64) {
    loop {
        let due = store.due_deliveries(now, 100).await.unwrap();
        if due.is_empty() {
            return;
        }
        for event in due {
            let ok = AttemptRecord {
                attempt: 1,
                attempted_at: now,
                status_code: Some(204),
                error: None,
                duration_ms: 1,
            };
            store
                .record_delivery(event.seq, &ok, DeliveryOutcome::Delivered)
                .await
                .unwrap();
        }
    }
}

/// Ended jobs past retention go with everything of theirs; running ones,
/// and recent ones, stay; the counts follow.
pub async fn retention_prunes_ended_jobs(store: &dyn Store) {
    let old = store.insert_job(&new_job(T0, true)).await.unwrap();
    let key = key("app", "d", T0 - 1);
    let Inserted::New(keyed) = store
        .insert_job_once(&new_job(T0, false), &key)
        .await
        .unwrap()
    else {
        panic!("a new key inserts");
    };
    let waiting = store.insert_job(&new_job(T0, false)).await.unwrap();
    let lease = claim_all(store, "n1", 2, T0 + 1).await;
    let mut ended = Vec::new();
    for c in lease.iter().filter(|c| c.job.id != waiting.id) {
        finish(store, c).await;
        ended.push(c.job.id.clone());
    }
    ended.sort();
    let mut expected = vec![old.id.clone(), keyed.id.clone()];
    expected.sort();
    assert_eq!(ended, expected);
    assert_eq!(store.prune(T0, 10).await.unwrap().jobs, 0, "not old enough");
    let pruned = store.prune(T0 + 1_000, 10).await.unwrap();
    assert_eq!(pruned.jobs, 1, "the job without webhooks");
    assert_eq!(pruned.nodes, 1, "the node unseen since");
    assert!(store.get_job(&keyed.id).await.unwrap().is_none());
    assert!(
        store.get_job(&old.id).await.unwrap().is_some(),
        "a job with webhooks still to deliver is kept"
    );
    deliver_all(store, T0 + 100).await;
    let pruned = store.prune(T0 + 1_000, 10).await.unwrap();
    assert_eq!(pruned.jobs, 1, "once they are delivered");
    for id in [&old.id, &keyed.id] {
        assert!(store.get_job(id).await.unwrap().is_none());
        assert!(store.job_events(id).await.unwrap().is_empty());
        assert!(store.job_tasks(id).await.unwrap().is_empty());
        assert!(store.deliveries(id).await.unwrap().is_empty());
    }
    assert!(store.get_job(&waiting.id).await.unwrap().is_some());
    let mut counts = store.count_jobs().await.unwrap();
    counts.sort_by_key(|(s, _)| s.as_str());
    let unfinished: Vec<_> = counts.iter().filter(|(_, n)| *n > 0).cloned().collect();
    assert!(
        unfinished.iter().all(|(s, _)| *s != JobState::Finished),
        "pruned jobs are no longer counted: {counts:?}"
    );
    assert!(
        matches!(
            store
                .insert_job_once(&new_job(T0 + 2_000, false), &key)
                .await
                .unwrap(),
            Inserted::New(_)
        ),
        "the pruned job's key went with it"
    );
}

/// Claims at once on one replica fill a limited queue to its limit and no
/// further, and the unlimited queue's tasks all go.
pub async fn concurrent_claims_keep_a_queue_to_its_limit(store: &dyn Store) {
    store
        .sync_queues(&[("default".into(), None), ("gpu".into(), Some(3))], T0)
        .await
        .unwrap();
    let mut gpu_jobs = std::collections::HashSet::new();
    for i in 0..10 {
        let mut job = owned("app", T0 + i);
        job.queue = "gpu".into();
        gpu_jobs.insert(store.insert_job(&job).await.unwrap().id);
    }
    for i in 0..4 {
        store.insert_job(&owned("app", T0 + 20 + i)).await.unwrap();
    }
    let mut claimed = Vec::new();
    // Rounds of six claims at once, until one round takes nothing.
    for round in 0..5 {
        let claims = (0..6)
            .map(|i| async move { claim_all(store, &format!("n{round}-{i}"), 2, T0 + 100).await });
        let got: Vec<Claimed> = futures::future::join_all(claims)
            .await
            .into_iter()
            .flatten()
            .collect();
        if got.is_empty() {
            break;
        }
        claimed.extend(got);
    }
    let gpu = claimed
        .iter()
        .filter(|c| gpu_jobs.contains(&c.job.id))
        .count();
    assert_eq!(gpu, 3, "the limited queue fills to its limit, no further");
    assert_eq!(claimed.len(), 7, "and every unlimited task goes");
    let queues = store.list_queues().await.unwrap();
    let q = queues.iter().find(|q| q.name == "gpu").unwrap();
    assert_eq!((q.running, q.pending), (3, 7));
}
