//! One suite of behaviour every backend must show. Each backend's test file
//! runs every case here against a fresh store with [`POLICY`].

mod scheduling;

use crate::*;
use nommer_model::api::{LeaseReport, NodeReport, Progress};
use nommer_model::JobId;
use scheduling::*;

pub const POLICY: LeasePolicy = LeasePolicy {
    ttl_ms: 30_000,
    retry_backoff_ms: 10_000,
    retry_backoff_max_ms: 300_000,
};

const T0: i64 = 1_800_000_000_000;

pub fn node(id: &str) -> NodeReport {
    NodeReport {
        node_id: id.into(),
        instance_id: None,
        fleet: nommer_model::FleetKind::Static,
        hostname: Some("test".into()),
        version: "test".into(),
        max_jobs: 2,
        running_jobs: 0,
        state: nommer_model::NodeState::Active,
        sandbox: Some("landlock-abi-7+net+scope+seccomp".into()),
    }
}

pub fn new_job(now: i64, notify: bool) -> NewJob {
    NewJob {
        id: JobId::generate(now).0,
        source_uri: "s3://KEY:SECRET@bucket/in.mp4".into(),
        dest_uri: "file:///out/b.mp4".into(),
        source_path: "s3://REDACTED@bucket/in.mp4".into(),
        dest_path: "file:///out/b.mp4".into(),
        notify_url: notify.then(|| "http://127.0.0.1:9/hook".to_string()),
        submitted_by: Some("app".into()),
        nommer: "ffmpeg".into(),
        job_options: serde_json::json!({"nommer": "ffmpeg", "options": [{}]}),
        warnings: vec!["w".into()],
        max_attempts: 3,
        max_runtime_s: None,
        tasks: vec![nommer_model::tasks::TaskPlan::of(
            nommer_model::TaskKind::Ffmpeg,
        )],
        work_uri: None,
        priority: 0,
        queue: "default".into(),
        notify_format: nommer_model::kinds::NotifyFormat::Form,
        retry_of: None,
        created_at: now,
    }
}

/// The states of a job's events, oldest first.
async fn event_states(store: &dyn Store, id: &str) -> Vec<JobState> {
    let events = store.job_events(id).await.unwrap();
    events.iter().map(|e| e.state).collect()
}

macro_rules! cases {
    ($($name:ident),* $(,)?) => {
        /// Every case, by name, for the backends' test files.
        pub const CASES: &[&str] = &[$(stringify!($name)),*];

        pub async fn run(name: &str, store: &dyn Store) {
            match name {
                $(stringify!($name) => $name(store).await,)*
                other => panic!("no conformance case {other}"),
            }
        }
    };
}

cases!(
    lifecycle_and_events,
    fencing_refuses_stale_tokens,
    expiry_requeues_then_fails,
    cancel_pending_and_leased,
    transitions_are_checked,
    deliveries_in_order_per_job,
    abandon_only_pending,
    release_does_not_count,
    a_node_failure_counts_and_waits_the_backoff,
    list_pages_newest_first,
    nodes_are_tracked_and_lost,
    an_expired_lease_not_yet_reaped_can_be_renewed,
    jobs_are_counted_by_state,
    statements_per_job_lifecycle,
    submissions_together_each_get_their_own,
    a_batch_of_reports_is_answered_one_by_one,
    error_codes_runtime_limits_and_sandboxes_are_kept,
    owners_and_notify_urls,
    tasks_are_fenced_each_on_its_own,
    the_tasks_of_one_job_go_to_one_claimer_each,
    a_job_of_several_tasks_goes_through_each_state_once,
    a_failed_task_fails_its_job_and_cancels_the_rest,
    a_cancel_reaches_every_task,
    unfinished_work_is_counted_from_the_index,
    a_canceled_task_handed_back_ends_canceled,
    a_plan_adds_tasks_and_waiting_ones_run_in_turn,
    a_canceled_chunked_job_still_cleans_up,
    a_cancel_while_planning_cancels_what_the_plan_adds,
    presets_are_written_read_and_deleted,
    fair_share_serves_each_token_in_turn,
    higher_priority_runs_first,
    queues_cap_and_pause,
    idempotency_keys_replay_or_refuse,
    event_feed_and_redelivery,
    retention_prunes_ended_jobs,
    concurrent_claims_keep_a_queue_to_its_limit,
);

async fn presets_are_written_read_and_deleted(store: &dyn Store) {
    let body = serde_json::json!({"name": "mine", "description": "", "outputs": []});
    assert!(store.get_preset("mine").await.unwrap().is_none());
    assert!(store.put_preset("mine", &body, T0).await.unwrap(), "new");
    let changed = serde_json::json!({"name": "mine", "description": "changed", "outputs": []});
    assert!(
        !store.put_preset("mine", &changed, T0 + 1).await.unwrap(),
        "replaced"
    );
    assert_eq!(
        store.get_preset("mine").await.unwrap(),
        Some(changed.clone())
    );
    store.put_preset("another", &body, T0 + 2).await.unwrap();
    let names: Vec<_> = store
        .list_presets()
        .await
        .unwrap()
        .iter()
        .map(|p| p["name"].clone())
        .collect();
    assert_eq!(names.len(), 2);
    assert!(store.delete_preset("mine").await.unwrap());
    assert!(!store.delete_preset("mine").await.unwrap());
    assert_eq!(store.list_presets().await.unwrap().len(), 1);
}

async fn a_cancel_while_planning_cancels_what_the_plan_adds(store: &dyn Store) {
    use JobState::*;
    let job = store.insert_job(&chunked_job(T0)).await.unwrap();
    let plan = claim_all(store, "n1", 8, T0).await.remove(0);
    store.cancel(&job.id, T0 + 1).await.unwrap();
    // The plan's worker finishes before its heartbeat brings the cancel.
    to_uploading(store, &plan).await;
    let added = two_chunks();
    let done = HolderReport {
        adds: &added,
        ..holder(&job.id, 0, &plan.token, Finished)
    };
    let change = report(store, done).await.unwrap();
    assert_eq!(change.job_state, Canceled);
    let tasks = store.job_tasks(&job.id).await.unwrap();
    assert!(
        tasks
            .iter()
            .filter(|t| t.kind.counts_for_job() && t.task > 0)
            .all(|t| t.state == Canceled),
        "{tasks:?}"
    );
    // Only the cleanup is left to run.
    let left = claim_all(store, "n1", 8, T0 + 10).await;
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].task.kind, nommer_model::TaskKind::Cleanup);
    // A plan may add only what a plan makes.
    let other = store.insert_job(&chunked_job(T0 + 20)).await.unwrap();
    let plan = claim_all(store, "n1", 8, T0 + 20).await.remove(0);
    to_uploading(store, &plan).await;
    let cleanup = vec![nommer_model::tasks::TaskPlan::of(
        nommer_model::TaskKind::Cleanup,
    )];
    let bad = HolderReport {
        adds: &cleanup,
        ..holder(&other.id, 0, &plan.token, Finished)
    };
    assert!(store.report_states(&[bad], T0 + 25).await.is_err());
}

/// A chunked job as submitted: its plan, and its cleanup, which waits.
fn chunked_job(now: i64) -> NewJob {
    let mut job = new_job(now, true);
    let request = nommer_model::chunked::ChunkRequest {
        chunk_seconds: 10.0,
        scene_cuts: false,
    };
    job.tasks = nommer_model::chunked::start_tasks(request);
    job.work_uri = Some(format!("file:///out/.nommer-{}/", job.id));
    job
}

/// What a plan of two chunks adds: the chunks, the audio, the assemble.
fn two_chunks() -> Vec<nommer_model::tasks::TaskPlan> {
    use nommer_model::chunked::{AssembleSpec, ChunkSpec, Rate};
    let rate = Rate { num: 25, den: 1 };
    let chunks = vec![
        ChunkSpec {
            index: 0,
            start: 0,
            end: 250,
            rate,
            seek: 0.0,
        },
        ChunkSpec {
            index: 1,
            start: 250,
            end: 500,
            rate,
            seek: 9.98,
        },
    ];
    nommer_model::chunked::planned_tasks(AssembleSpec {
        chunks,
        rate,
        frames: 500,
        audio: true,
        audio_seconds: Some(20.0),
    })
}

/// Run a leased task from DOWNLOADING to UPLOADING, where it may finish.
async fn to_uploading(store: &dyn Store, c: &Claimed) {
    for state in [JobState::Encoding, JobState::Uploading] {
        report(store, holder(&c.job.id, c.task.task, &c.token, state))
            .await
            .unwrap();
    }
}

/// Run a leased task from DOWNLOADING to FINISHED.
async fn finish(store: &dyn Store, c: &Claimed) -> TaskChange {
    to_uploading(store, c).await;
    report(
        store,
        holder(&c.job.id, c.task.task, &c.token, JobState::Finished),
    )
    .await
    .unwrap()
}

async fn a_plan_adds_tasks_and_waiting_ones_run_in_turn(store: &dyn Store) {
    use nommer_model::TaskKind;
    use JobState::*;
    let job = store.insert_job(&chunked_job(T0)).await.unwrap();
    // Only the plan is claimable; the cleanup waits and is not backlog.
    assert_eq!(store.count_tasks().await.unwrap().pending, 1);
    let claimed = claim_all(store, "n1", 8, T0).await;
    assert_eq!(claimed.len(), 1);
    let plan = &claimed[0];
    assert_eq!(plan.task.kind, TaskKind::Plan);
    // Only a plan adds tasks, and only as it finishes.
    let added = two_chunks();
    let early = HolderReport {
        adds: &added,
        ..holder(&job.id, 0, &plan.token, Encoding)
    };
    assert!(store.report_states(&[early], T0 + 5).await.is_err());
    to_uploading(store, plan).await;
    let result = serde_json::json!({"frames": 500});
    let done = HolderReport {
        adds: &added,
        result: Some(&result),
        ..holder(&job.id, 0, &plan.token, Finished)
    };
    let change = report(store, done).await.unwrap();
    assert!(change.unblocked);
    assert_ne!(
        change.job_state, Finished,
        "the job goes on with its chunks"
    );
    let tasks = store.job_tasks(&job.id).await.unwrap();
    let kinds: Vec<TaskKind> = tasks.iter().map(|t| t.kind).collect();
    use TaskKind::*;
    assert_eq!(kinds, [Plan, Cleanup, Audio, Chunk, Chunk, Assemble]);
    assert_eq!(tasks[0].result, Some(result));
    let progress = job_now(store, &job.id).await.progress.unwrap();
    assert_eq!(
        (progress.tasks_done, progress.tasks_total),
        (Some(1), Some(5))
    );
    // The chunks and the audio run; the assemble waits for them.
    let work = claim_all(store, "n1", 8, T0 + 10).await;
    let kinds: Vec<TaskKind> = work.iter().map(|c| c.task.kind).collect();
    assert_eq!(kinds, [Audio, Chunk, Chunk]);
    // A plan is the job's download; its chunks are its encoding.
    assert_eq!(job_now(store, &job.id).await.state, Downloading);
    for c in &work[1..] {
        assert_eq!(finish(store, c).await.job_state, Encoding);
    }
    let shown = job_now(store, &job.id).await.progress.unwrap();
    assert_eq!((shown.chunks_done, shown.chunks_total), (Some(2), Some(2)));
    assert!(claim_all(store, "n1", 8, T0 + 20).await.is_empty());
    assert!(finish(store, &work[0]).await.unblocked);
    let assemble = claim_all(store, "n1", 8, T0 + 30).await;
    assert_eq!(assemble.len(), 1);
    assert_eq!(assemble[0].task.kind, Assemble);
    assert_eq!(assemble[0].task.spec.assemble.as_ref().unwrap().frames, 500);
    let done = finish(store, &assemble[0]).await;
    assert_eq!(done.job_state, Finished);
    assert!(done.unblocked, "the job's end releases its cleanup");
    // The cleanup runs after the end, and leaves the job as it ended.
    let cleanup = claim_all(store, "n1", 8, T0 + 40).await;
    assert_eq!(cleanup.len(), 1);
    assert_eq!(cleanup[0].task.kind, Cleanup);
    assert_eq!(finish(store, &cleanup[0]).await.job_state, Finished);
    assert_eq!(
        event_states(store, &job.id).await,
        vec![Pending, Downloading, Encoding, Uploading, Finished]
    );
}

async fn a_canceled_chunked_job_still_cleans_up(store: &dyn Store) {
    use JobState::*;
    let job = store.insert_job(&chunked_job(T0)).await.unwrap();
    let plan = claim_all(store, "n1", 8, T0).await.remove(0);
    to_uploading(store, &plan).await;
    let added = two_chunks();
    let done = HolderReport {
        adds: &added,
        ..holder(&job.id, 0, &plan.token, Finished)
    };
    report(store, done).await.unwrap();
    let running = claim_all(store, "n1", 1, T0 + 10).await.remove(0);
    let job_shown = store.cancel(&job.id, T0 + 20).await.unwrap();
    assert_ne!(job_shown.state, Canceled, "a chunk is still running");
    // The running chunk stops; the job ends; its cleanup may then run.
    let stopped = report(
        store,
        holder(&job.id, running.task.task, &running.token, Canceled),
    )
    .await
    .unwrap();
    assert_eq!(stopped.job_state, Canceled);
    assert!(stopped.unblocked);
    let tasks = store.job_tasks(&job.id).await.unwrap();
    let cleanup = tasks
        .iter()
        .find(|t| t.kind == nommer_model::TaskKind::Cleanup)
        .unwrap();
    assert_eq!(cleanup.state, Pending);
    let claimed = claim_all(store, "n1", 8, T0 + 30).await;
    assert_eq!(claimed.len(), 1, "only the cleanup is left to run");
    assert_eq!(claimed[0].task.kind, nommer_model::TaskKind::Cleanup);
    assert!(tasks
        .iter()
        .filter(|t| t.kind.counts_for_job())
        .all(|t| t.state.is_terminal()));
}

/// A worker that hands back a task a cancel was waiting for (it shut down
/// before its heartbeat brought the cancel) does not make it run again.
async fn a_canceled_task_handed_back_ends_canceled(store: &dyn Store) {
    let job = store.insert_job(&new_job(T0, false)).await.unwrap();
    let lease = store.claim(&node("n1"), 1, T0).await.unwrap().remove(0);
    let flagged = store.cancel(&job.id, T0 + 1).await.unwrap();
    assert_eq!(flagged.state, JobState::Downloading);
    let back = store
        .release(
            &job.id,
            0,
            &lease.token,
            "worker shutting down",
            None,
            T0 + 2,
        )
        .await
        .unwrap();
    assert_eq!(
        (back.state, back.job_state),
        (JobState::Canceled, JobState::Canceled)
    );
    assert!(store
        .claim(&node("n2"), 1, T0 + 3)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        event_states(store, &job.id).await,
        vec![JobState::Pending, JobState::Downloading, JobState::Canceled]
    );
}

/// A job carried out by `n` ffmpeg tasks.
pub fn job_of_tasks(now: i64, n: usize) -> NewJob {
    let mut job = new_job(now, true);
    job.tasks = vec![nommer_model::tasks::TaskPlan::of(nommer_model::TaskKind::Ffmpeg); n];
    job
}

fn holder<'a>(job_id: &'a str, task: u32, token: &'a str, to: JobState) -> HolderReport<'a> {
    HolderReport {
        job_id,
        task,
        token,
        to,
        details: None,
        warnings: &[],
        error_code: None,
        result: None,
        adds: &[],
    }
}

/// The job as it now is.
async fn job_now(store: &dyn Store, id: &str) -> JobRecord {
    store.get_job(id).await.unwrap().unwrap()
}

/// One report, its inner result.
async fn report(store: &dyn Store, r: HolderReport<'_>) -> StoreResult<TaskChange> {
    store.report_states(&[r], T0 + 5).await.unwrap().remove(0)
}

/// The lease of each task of a job, by task number.
async fn claim_all(store: &dyn Store, node_id: &str, max: u32, now: i64) -> Vec<Claimed> {
    let mut n = node(node_id);
    n.max_jobs = max;
    let mut claimed = store.claim(&n, max, now).await.unwrap();
    claimed.sort_by_key(|c| c.task.task);
    claimed
}

async fn tasks_are_fenced_each_on_its_own(store: &dyn Store) {
    let job = store.insert_job(&job_of_tasks(T0, 2)).await.unwrap();
    let leases = claim_all(store, "n1", 2, T0).await;
    assert_eq!(leases.len(), 2, "both tasks go to the one node");
    assert_ne!(leases[0].token, leases[1].token);
    let (t0, t1) = (&leases[0].token, &leases[1].token);
    // Task 1's token does not move task 0, nor does a token of another job.
    assert!(matches!(
        report(store, holder(&job.id, 0, t1, JobState::Encoding)).await,
        Err(StoreError::LeaseLost)
    ));
    assert!(matches!(
        report(store, holder(&job.id, 7, t0, JobState::Encoding)).await,
        Err(StoreError::NotFound)
    ));
    let moved = report(store, holder(&job.id, 0, t0, JobState::Encoding))
        .await
        .unwrap();
    assert_eq!((moved.task, moved.state), (0, JobState::Encoding));
    // A heartbeat renews each lease by its own task and token only.
    let lease = |task: u32, token: &str| LeaseReport {
        job_id: job.id.clone(),
        task,
        token: token.to_string(),
        progress: None,
    };
    let statuses = store
        .heartbeat(
            &node("n1"),
            &[lease(0, t0), lease(1, t0), lease(1, t1)],
            T0 + 6,
        )
        .await
        .unwrap();
    let valid: Vec<(u32, bool)> = statuses.iter().map(|s| (s.task, s.valid)).collect();
    assert_eq!(valid, vec![(0, true), (1, false), (1, true)]);
    // A hand-back frees only its task.
    store
        .release(&job.id, 1, t1, "shutting down", None, T0 + 7)
        .await
        .unwrap();
    let tasks = store.job_tasks(&job.id).await.unwrap();
    let states: Vec<JobState> = tasks.iter().map(|t| t.state).collect();
    assert_eq!(states, vec![JobState::Encoding, JobState::Pending]);
    assert_eq!(
        store.get_job(&job.id).await.unwrap().unwrap().state,
        JobState::Encoding,
        "a task handed back does not move its job back"
    );
}

async fn the_tasks_of_one_job_go_to_one_claimer_each(store: &dyn Store) {
    let job = store.insert_job(&job_of_tasks(T0, 6)).await.unwrap();
    let claims = (0..4).map(|i| async move { claim_all(store, &format!("n{i}"), 2, T0 + 1).await });
    let claimed: Vec<Claimed> = futures::future::join_all(claims)
        .await
        .into_iter()
        .flatten()
        .collect();
    let mut numbers: Vec<u32> = claimed.iter().map(|c| c.task.task).collect();
    numbers.sort_unstable();
    assert_eq!(numbers, vec![0, 1, 2, 3, 4, 5], "each task leased once");
    let tasks = store.job_tasks(&job.id).await.unwrap();
    assert!(tasks
        .iter()
        .all(|t| t.state == JobState::Downloading && t.attempts == 1));
    // The job went PENDING -> DOWNLOADING once, however many claims.
    assert_eq!(
        event_states(store, &job.id).await,
        vec![JobState::Pending, JobState::Downloading]
    );
}

async fn a_job_of_several_tasks_goes_through_each_state_once(store: &dyn Store) {
    use JobState::*;
    let job = store.insert_job(&job_of_tasks(T0, 2)).await.unwrap();
    let first = claim_all(store, "n1", 1, T0).await.remove(0);
    assert_eq!(first.task.task, 0);
    assert_eq!(job_now(store, &job.id).await.state, Downloading);
    let second = claim_all(store, "n2", 1, T0).await.remove(0);
    report(store, holder(&job.id, 0, &first.token, Encoding))
        .await
        .unwrap();
    assert_eq!(job_now(store, &job.id).await.state, Encoding);
    // Task 1's lease is lost: it is retried, and the job does not go back.
    let changes = store.reap_expired(T0 + POLICY.ttl_ms + 10).await.unwrap();
    let reaped: Vec<(u32, JobState, JobState)> = changes
        .iter()
        .map(|c| (c.task, c.state, c.job_state))
        .collect();
    assert!(reaped.contains(&(1, Pending, Encoding)), "{reaped:?}");
    drop(second);
    // Task 0 was reaped too (the clock passed its lease): lease it again.
    let later = T0 + POLICY.ttl_ms + 10 + POLICY.retry_backoff_max_ms;
    let again = claim_all(store, "n1", 2, later).await;
    assert_eq!(again.len(), 2);
    let (t0, t1) = (&again[0].token, &again[1].token);
    for state in [Encoding, Uploading, Finished] {
        let change = report(store, holder(&job.id, 0, t0, state)).await.unwrap();
        assert_eq!(change.state, state);
    }
    let shown = job_now(store, &job.id).await;
    assert_eq!(shown.state, Uploading, "one task of two finished");
    let progress = shown.progress.unwrap();
    assert_eq!(
        (progress.tasks_done, progress.tasks_total),
        (Some(1), Some(2))
    );
    for state in [Encoding, Uploading] {
        report(store, holder(&job.id, 1, t1, state)).await.unwrap();
    }
    let done = report(store, holder(&job.id, 1, t1, Finished))
        .await
        .unwrap();
    assert_eq!(done.job_state, Finished);
    let shown = job_now(store, &job.id).await;
    assert_eq!(shown.progress.unwrap().tasks_done, Some(2));
    assert_eq!(
        event_states(store, &job.id).await,
        vec![Pending, Downloading, Encoding, Uploading, Finished]
    );
    let tasks = store.job_tasks(&job.id).await.unwrap();
    assert!(tasks
        .iter()
        .all(|t| t.finished_at.is_some() && t.started_at.is_some()));
    assert_eq!(tasks[1].attempts, 2);
}

async fn a_failed_task_fails_its_job_and_cancels_the_rest(store: &dyn Store) {
    let job = store.insert_job(&job_of_tasks(T0, 3)).await.unwrap();
    let leases = claim_all(store, "n1", 2, T0).await;
    let failed = HolderReport {
        details: Some("ffmpeg said no"),
        error_code: Some("tool_failed"),
        result: None,
        adds: &[],
        ..holder(&job.id, 0, &leases[0].token, JobState::Error)
    };
    let change = report(store, failed).await.unwrap();
    assert_eq!(change.job_state, JobState::Error);
    let shown = store.get_job(&job.id).await.unwrap().unwrap();
    assert_eq!(shown.state, JobState::Error);
    assert_eq!(shown.error_code.as_deref(), Some("tool_failed"));
    assert_eq!(shown.state_details.as_deref(), Some("ffmpeg said no"));
    let tasks = store.job_tasks(&job.id).await.unwrap();
    assert_eq!(tasks[2].state, JobState::Canceled, "the waiting task ends");
    assert!(tasks[1].cancel_requested, "the running one is told to stop");
    let lease = LeaseReport {
        job_id: job.id.clone(),
        task: 1,
        token: leases[1].token.clone(),
        progress: None,
    };
    let status = store
        .heartbeat(&node("n1"), &[lease], T0 + 6)
        .await
        .unwrap();
    assert!(status[0].cancel_requested);
    report(
        store,
        holder(&job.id, 1, &leases[1].token, JobState::Canceled),
    )
    .await
    .unwrap();
    assert_eq!(
        store.get_job(&job.id).await.unwrap().unwrap().state,
        JobState::Error,
        "an ended job stays as it ended"
    );
    let events = event_states(store, &job.id).await;
    assert_eq!(events.iter().filter(|s| s.is_terminal()).count(), 1);
}

async fn a_cancel_reaches_every_task(store: &dyn Store) {
    let job = store.insert_job(&job_of_tasks(T0, 2)).await.unwrap();
    let lease = claim_all(store, "n1", 1, T0).await.remove(0);
    let shown = store.cancel(&job.id, T0 + 1).await.unwrap();
    assert_eq!(shown.state, JobState::Downloading, "one task still runs");
    let tasks = store.job_tasks(&job.id).await.unwrap();
    assert_eq!(tasks[1].state, JobState::Canceled);
    assert!(tasks[0].cancel_requested);
    let change = report(store, holder(&job.id, 0, &lease.token, JobState::Canceled))
        .await
        .unwrap();
    assert_eq!(change.job_state, JobState::Canceled);
    assert!(matches!(
        store.cancel(&job.id, T0 + 9).await,
        Err(StoreError::Terminal(JobState::Canceled))
    ));
}

async fn unfinished_work_is_counted_from_the_index(store: &dyn Store) {
    for i in 0..3 {
        store.insert_job(&new_job(T0 + i, false)).await.unwrap();
    }
    store.insert_job(&job_of_tasks(T0 + 5, 3)).await.unwrap();
    let leases = claim_all(store, "n1", 2, T0 + 10).await;
    let counts = store.count_tasks().await.unwrap();
    assert_eq!(
        counts,
        TaskCounts {
            pending: 4,
            running: 2
        }
    );
    for (i, lease) in leases.iter().enumerate() {
        let to = if i == 0 {
            JobState::Error
        } else {
            JobState::Canceled
        };
        report(
            store,
            holder(&lease.job.id, lease.task.task, &lease.token, to),
        )
        .await
        .unwrap();
    }
    // Counted twice: the second count reads the totals the first folded in.
    for _ in 0..2 {
        let mut counts = store.count_jobs().await.unwrap();
        counts.sort_by_key(|(state, _)| state.as_str());
        assert_eq!(
            counts,
            vec![
                (JobState::Canceled, 1),
                (JobState::Error, 1),
                (JobState::Pending, 2)
            ]
        );
    }
}

/// A store written by the previous release's migrations (0001-0004), with a
/// job waiting, a job leased and a job finished, opened by this one: the
/// waiting job is leased and finishes, the leased one's worker finishes it
/// under the token it already holds, and nothing else changes.
pub async fn upgrade_from_the_previous_release(url: &str) {
    let old = crate::sql::migrate_to(url, 4).await.unwrap();
    let insert = "INSERT INTO jobs (id, state, state_details, warnings, progress, attempts, max_attempts, source_path, dest_path,
        secret_uris, notify_url, nommer, job_options, run_after, lease_token, node_id, lease_expires_at, cancel_requested,
        created_at, updated_at, state_changed_at, submitted_by)
        VALUES ($1, $2, NULL, '[]', NULL, $3, 3, 's3://REDACTED@b/in.mp4', 'file:///out/o.mp4',
        '{\"source\":\"s3://K:S@b/in.mp4\",\"dest\":\"file:///out/o.mp4\"}', NULL, 'ffmpeg',
        '{\"nommer\":\"ffmpeg\",\"options\":[{}]}', $4, $5, $6, $7, 0, $4, $4, $4, 'app')";
    // id, state, attempts, lease token, node, lease expiry
    type OldRow<'a> = (
        &'a str,
        &'a str,
        i64,
        Option<&'a str>,
        Option<&'a str>,
        Option<i64>,
    );
    let rows: [OldRow; 3] = [
        ("j1-waiting", "PENDING", 0, None, None, None),
        (
            "j2-leased",
            "DOWNLOADING",
            1,
            Some("oldtoken"),
            Some("n-old"),
            Some(T0 + 10 * POLICY.ttl_ms),
        ),
        ("j3-done", "FINISHED", 1, None, Some("n-old"), None),
    ];
    for (id, state, attempts, token, node_id, expires) in rows {
        sqlx::query(insert)
            .bind(id)
            .bind(state)
            .bind(attempts)
            .bind(T0)
            .bind(token)
            .bind(node_id)
            .bind(expires)
            .execute(&old)
            .await
            .unwrap();
    }
    old.close().await;
    let store = crate::sql::SqlStore::open(url, POLICY, &crate::sql::PoolSettings::default())
        .await
        .unwrap();
    let tasks = store.job_tasks("j2-leased").await.unwrap();
    assert_eq!(tasks.len(), 1);
    assert_eq!(
        (
            tasks[0].state,
            tasks[0].node_id.as_deref(),
            tasks[0].attempts
        ),
        (JobState::Downloading, Some("n-old"), 1)
    );
    let leased = store.claim(&node("n-new"), 5, T0 + 1).await.unwrap();
    let ids: Vec<&str> = leased.iter().map(|c| c.job.id.as_str()).collect();
    assert_eq!(ids, vec!["j1-waiting"], "only the waiting job is claimable");
    assert_eq!(leased[0].source_uri, "s3://K:S@b/in.mp4");
    for (id, token) in [
        ("j1-waiting", leased[0].token.as_str()),
        ("j2-leased", "oldtoken"),
    ] {
        for state in [JobState::Encoding, JobState::Uploading, JobState::Finished] {
            store
                .report_state(id, 0, token, state, None, &[], T0 + 2)
                .await
                .unwrap();
        }
        assert_eq!(
            store.get_job(id).await.unwrap().unwrap().state,
            JobState::Finished
        );
    }
    let mut counts = store.count_jobs().await.unwrap();
    counts.sort_by_key(|(state, _)| state.as_str());
    assert_eq!(counts, vec![(JobState::Finished, 3)]);
}

/// A job keeps the name of the token that submitted it, and lists filter by
/// it; its notify_url is shown without query string or userinfo, and only
/// the notifier is handed the URL as given.
async fn owners_and_notify_urls(store: &dyn Store) {
    let mut mine = new_job(T0, true);
    mine.notify_url = Some("https://hook:pw@app.example/done?token=s3cr3t".into());
    let mine = store.insert_job(&mine).await.unwrap();
    assert_eq!(mine.submitted_by.as_deref(), Some("app"));
    assert_eq!(
        mine.notify_url.as_deref(),
        Some("https://REDACTED@app.example/REDACTED?REDACTED")
    );
    let mut theirs = new_job(T0 + 1, false);
    theirs.submitted_by = Some("other".into());
    let theirs = store.insert_job(&theirs).await.unwrap();
    let listed = |owner| JobQuery {
        submitted_by: owner,
        limit: 10,
        ..Default::default()
    };
    let ids = |jobs: Vec<JobRecord>| jobs.into_iter().map(|j| j.id).collect::<Vec<_>>();
    assert_eq!(
        ids(store.list_jobs(&listed(Some("app"))).await.unwrap()),
        vec![mine.id.clone()]
    );
    assert_eq!(
        ids(store.list_jobs(&listed(None)).await.unwrap()),
        vec![theirs.id.clone(), mine.id.clone()]
    );
    let got = store.get_job(&mine.id).await.unwrap().unwrap();
    assert_eq!(got.notify_url, mine.notify_url);
    assert_eq!(got.to_api().submitted_by.as_deref(), Some("app"));
    // The lease (PENDING -> DOWNLOADING) is the first state change to deliver.
    store.claim(&node("n1"), 1, T0).await.unwrap();
    let due = store.due_deliveries(T0 + 10, 10).await.unwrap();
    assert_eq!(
        due[0].notify_url.as_deref(),
        Some("https://hook:pw@app.example/done?token=s3cr3t")
    );
}

/// A worker's coded ERROR keeps its code; a job's own runtime limit reaches
/// its lease; a node's sandbox is what it last reported.
async fn error_codes_runtime_limits_and_sandboxes_are_kept(store: &dyn Store) {
    let mut limited = new_job(T0, false);
    limited.max_runtime_s = Some(90);
    let job = store.insert_job(&limited).await.unwrap();
    assert_eq!(job.max_runtime_s, Some(90));
    assert_eq!(job.error_code, None);
    let lease = store.claim(&node("n1"), 1, T0).await.unwrap().remove(0);
    assert_eq!(lease.job.max_runtime_s, Some(90));
    // A code on a report that is not ERROR is not kept.
    let encoding = HolderReport {
        task: 0,
        job_id: &job.id,
        token: &lease.token,
        to: JobState::Encoding,
        details: None,
        warnings: &[],
        error_code: Some("tool_failed"),
        result: None,
        adds: &[],
    };
    let error = HolderReport {
        to: JobState::Error,
        details: Some("ffmpeg wrote too much"),
        error_code: Some("output_too_large"),
        result: None,
        adds: &[],
        ..encoding
    };
    let results = store
        .report_states(&[encoding, error], T0 + 1)
        .await
        .unwrap();
    assert_eq!(results[0].as_ref().unwrap().state, JobState::Encoding);
    assert_eq!(results[1].as_ref().unwrap().job_state, JobState::Error);
    let stored = store.get_job(&job.id).await.unwrap().unwrap();
    assert_eq!(stored.error_code.as_deref(), Some("output_too_large"));

    let mut changed = node("sandboxed");
    store.heartbeat(&changed, &[], T0).await.unwrap();
    changed.sandbox = Some("off".into());
    store.heartbeat(&changed, &[], T0 + 1).await.unwrap();
    let nodes = store.list_nodes().await.unwrap();
    let listed = nodes.iter().find(|n| n.id == "sandboxed").unwrap();
    assert_eq!(listed.to_api().sandbox.as_deref(), Some("off"));
}

/// The regression guard on the hot path: SQL statements a job costs from
/// submit to FINISHED. Raising it needs a reason (and BENCHMARKS.md updated).
/// Six with tasks: the submit's INSERT makes the job's tasks (the
/// jobs_tasks trigger), the claim reads its jobs in the same statement, and
/// each report is one statement (a job of one task follows it by trigger).
/// Seven with fair share: a submit's batch numbers each owner's jobs with
/// one upsert (`fair_shares`) before its INSERT.
pub const STATEMENTS_PER_JOB: u64 = 7;

async fn statements_per_job_lifecycle(store: &dyn Store) {
    let before = store.statements();
    let job = store.insert_job(&new_job(T0, true)).await.unwrap();
    let lease = store.claim(&node("n1"), 1, T0).await.unwrap();
    for state in [JobState::Encoding, JobState::Uploading, JobState::Finished] {
        store
            .report_state(&job.id, 0, &lease[0].token, state, None, &[], T0 + 1)
            .await
            .unwrap();
    }
    assert_eq!(store.statements() - before, STATEMENTS_PER_JOB);
}

/// The restart grace relies on this: until the reaper takes a lease, its
/// holder's heartbeat renews it, however late.
async fn an_expired_lease_not_yet_reaped_can_be_renewed(store: &dyn Store) {
    let job = store.insert_job(&new_job(T0, false)).await.unwrap();
    let lease = store.claim(&node("n1"), 1, T0).await.unwrap();
    let late = T0 + 5 * POLICY.ttl_ms;
    let report = LeaseReport {
        task: 0,
        job_id: job.id.clone(),
        token: lease[0].token.clone(),
        progress: None,
    };
    let status = store.heartbeat(&node("n1"), &[report], late).await.unwrap();
    assert!(status[0].valid);
    assert!(store.reap_expired(late + 1).await.unwrap().is_empty());
    let task = store.job_tasks(&job.id).await.unwrap().remove(0);
    assert_eq!(task.lease_expires_at, Some(late + POLICY.ttl_ms));
    assert_eq!(task.attempts, 1);
    assert_eq!(store.get_job(&job.id).await.unwrap().unwrap().attempts, 1);
}

async fn jobs_are_counted_by_state(store: &dyn Store) {
    assert!(store.count_jobs().await.unwrap().is_empty());
    for i in 0..3 {
        store.insert_job(&new_job(T0 + i, false)).await.unwrap();
    }
    store.claim(&node("n1"), 1, T0 + 10).await.unwrap();
    let mut counts = store.count_jobs().await.unwrap();
    counts.sort_by_key(|(state, _)| state.as_str());
    assert_eq!(
        counts,
        vec![(JobState::Downloading, 1), (JobState::Pending, 2)]
    );
}

async fn lifecycle_and_events(store: &dyn Store) {
    let job = store.insert_job(&new_job(T0, true)).await.unwrap();
    assert_eq!(job.state, JobState::Pending);
    assert_eq!(job.warnings, vec!["w".to_string()]);
    let claimed = store.claim(&node("n1"), 5, T0 + 1).await.unwrap();
    assert_eq!(claimed.len(), 1);
    let lease = &claimed[0];
    assert_eq!(lease.source_uri, "s3://KEY:SECRET@bucket/in.mp4");
    assert_eq!(lease.task.state, JobState::Downloading);
    assert_eq!(lease.task.attempts, 1);
    assert_eq!(job_now(store, &job.id).await.state, JobState::Downloading);
    assert!(store
        .claim(&node("n2"), 5, T0 + 2)
        .await
        .unwrap()
        .is_empty());
    for state in [JobState::Encoding, JobState::Uploading] {
        store
            .report_state(&job.id, 0, &lease.token, state, None, &[], T0 + 3)
            .await
            .unwrap();
    }
    let done = store
        .report_state(
            &job.id,
            0,
            &lease.token,
            JobState::Finished,
            None,
            &["late".into()],
            T0 + 4,
        )
        .await
        .unwrap();
    assert_eq!(done.state, JobState::Finished);
    let done = store.get_job(&job.id).await.unwrap().unwrap();
    assert_eq!(done.state, JobState::Finished);
    assert_eq!(done.warnings, vec!["w".to_string(), "late".to_string()]);
    let states = event_states(store, &job.id).await;
    use JobState::*;
    assert_eq!(
        states,
        [Pending, Downloading, Encoding, Uploading, Finished]
    );
    let events = store.job_events(&job.id).await.unwrap();
    assert_eq!(events[0].delivery, "none", "submission notifies no one");
    assert!(events[1..].iter().all(|e| e.delivery == "pending"));
}

async fn fencing_refuses_stale_tokens(store: &dyn Store) {
    let job = store.insert_job(&new_job(T0, false)).await.unwrap();
    let first = store.claim(&node("n1"), 1, T0).await.unwrap().remove(0);
    // The lease expires unrenewed and another node takes the job.
    store.reap_expired(T0 + POLICY.ttl_ms + 1).await.unwrap();
    let later = T0 + POLICY.ttl_ms + POLICY.retry_backoff_ms + 2;
    let second = store.claim(&node("n2"), 1, later).await.unwrap().remove(0);
    assert_ne!(first.token, second.token);
    let err = store
        .report_state(
            &job.id,
            0,
            &first.token,
            JobState::Encoding,
            None,
            &[],
            later,
        )
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::LeaseLost), "{err:?}");
    let beats = store
        .heartbeat(
            &node("n1"),
            &[LeaseReport {
                task: 0,
                job_id: job.id.clone(),
                token: first.token.clone(),
                progress: None,
            }],
            later,
        )
        .await
        .unwrap();
    assert!(!beats[0].valid);
    assert!(store
        .release(&job.id, 0, &first.token, "x", None, later)
        .await
        .is_err());
    store
        .report_state(
            &job.id,
            0,
            &second.token,
            JobState::Encoding,
            None,
            &[],
            later,
        )
        .await
        .unwrap();
}

async fn expiry_requeues_then_fails(store: &dyn Store) {
    let job = store.insert_job(&new_job(T0, true)).await.unwrap();
    let mut now = T0;
    for attempt in 1..=3u32 {
        let lease = store.claim(&node("n1"), 1, now).await.unwrap();
        assert_eq!(lease.len(), 1, "attempt {attempt}");
        assert_eq!(lease[0].task.attempts, attempt);
        // A heartbeat keeps it alive past one TTL.
        let progress = Progress {
            phase: "encoding".into(),
            percent: 40.0,
            ..Default::default()
        };
        let report = LeaseReport {
            task: 0,
            job_id: job.id.clone(),
            token: lease[0].token.clone(),
            progress: Some(progress),
        };
        now += POLICY.ttl_ms - 1;
        assert!(store.heartbeat(&node("n1"), &[report], now).await.unwrap()[0].valid);
        assert!(store.reap_expired(now + 1).await.unwrap().is_empty());
        assert_eq!(
            store
                .get_job(&job.id)
                .await
                .unwrap()
                .unwrap()
                .progress
                .unwrap()
                .percent,
            40.0
        );
        now += POLICY.ttl_ms + 1;
        let changes = store.reap_expired(now).await.unwrap();
        let expected = if attempt < 3 {
            JobState::Pending
        } else {
            JobState::Error
        };
        let changes: Vec<_> = changes
            .into_iter()
            .map(|c| (c.job_id, c.job_state))
            .collect();
        assert_eq!(changes, vec![(job.id.clone(), expected)]);
        if attempt < 3 {
            // Backoff: not claimable until it has passed.
            assert!(store.claim(&node("n1"), 1, now).await.unwrap().is_empty());
            now += POLICY.backoff_ms(attempt) + 1;
        }
    }
    let failed = store.get_job(&job.id).await.unwrap().unwrap();
    assert_eq!(failed.state, JobState::Error);
    assert_eq!(failed.error_code.as_deref(), Some("lease_expired"));
    assert!(failed
        .state_details
        .unwrap()
        .contains("no attempts are left"));
    let retries = store
        .job_events(&job.id)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.state == JobState::Pending && e.delivery == "pending")
        .count();
    assert_eq!(retries, 2, "each retry is an event with a webhook");
}

async fn cancel_pending_and_leased(store: &dyn Store) {
    let pending = store.insert_job(&new_job(T0, false)).await.unwrap();
    assert_eq!(
        store.cancel(&pending.id, T0).await.unwrap().state,
        JobState::Canceled
    );
    assert!(matches!(
        store.cancel(&pending.id, T0).await,
        Err(StoreError::Terminal(JobState::Canceled))
    ));
    let running = store.insert_job(&new_job(T0 + 1, false)).await.unwrap();
    let lease = store.claim(&node("n1"), 1, T0 + 1).await.unwrap().remove(0);
    let flagged = store.cancel(&running.id, T0 + 2).await.unwrap();
    assert_eq!(flagged.state, JobState::Downloading);
    assert!(flagged.cancel_requested);
    let report = LeaseReport {
        task: 0,
        job_id: running.id.clone(),
        token: lease.token.clone(),
        progress: None,
    };
    assert!(
        store
            .heartbeat(&node("n1"), &[report], T0 + 3)
            .await
            .unwrap()[0]
            .cancel_requested
    );
    let done = store
        .report_state(
            &running.id,
            0,
            &lease.token,
            JobState::Canceled,
            Some("canceled"),
            &[],
            T0 + 4,
        )
        .await
        .unwrap();
    assert_eq!(done.state, JobState::Canceled);
    assert!(matches!(
        store.cancel("0".repeat(50).as_str(), T0).await,
        Err(StoreError::NotFound)
    ));
}

async fn transitions_are_checked(store: &dyn Store) {
    let job = store.insert_job(&new_job(T0, false)).await.unwrap();
    let lease = store.claim(&node("n1"), 1, T0).await.unwrap().remove(0);
    let skip = store
        .report_state(&job.id, 0, &lease.token, JobState::Finished, None, &[], T0)
        .await;
    assert!(
        matches!(skip, Err(StoreError::InvalidTransition { .. })),
        "{skip:?}"
    );
    store
        .report_state(
            &job.id,
            0,
            &lease.token,
            JobState::Error,
            Some(&"x".repeat(5000)),
            &[],
            T0,
        )
        .await
        .unwrap();
    let job = store.get_job(&job.id).await.unwrap().unwrap();
    assert_eq!(
        job.state_details.unwrap().chars().count(),
        nommer_model::DETAILS_MAX_CHARS
    );
    // A finished job never changes again, whoever asks.
    let again = store
        .report_state(&job.id, 0, &lease.token, JobState::Encoding, None, &[], T0)
        .await;
    assert!(again.is_err());
    assert!(store
        .reap_expired(T0 + 10 * POLICY.ttl_ms)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        store.get_job(&job.id).await.unwrap().unwrap().state,
        JobState::Error
    );
}

async fn deliveries_in_order_per_job(store: &dyn Store) {
    let a = store.insert_job(&new_job(T0, true)).await.unwrap();
    let lease = store.claim(&node("n1"), 1, T0).await.unwrap().remove(0);
    store
        .report_state(
            &a.id,
            0,
            &lease.token,
            JobState::Encoding,
            None,
            &[],
            T0 + 1,
        )
        .await
        .unwrap();
    let due = store.due_deliveries(T0 + 5, 10).await.unwrap();
    assert_eq!(
        due.len(),
        1,
        "only the first undelivered event of a job is due"
    );
    assert_eq!(due[0].state, JobState::Downloading);
    let attempt = AttemptRecord {
        attempt: 1,
        attempted_at: T0 + 5,
        status_code: Some(500),
        error: None,
        duration_ms: 3,
    };
    store
        .record_delivery(
            due[0].seq,
            &attempt,
            DeliveryOutcome::Retry {
                next_attempt_at: T0 + 1000,
            },
        )
        .await
        .unwrap();
    assert!(
        store.due_deliveries(T0 + 6, 10).await.unwrap().is_empty(),
        "the retry blocks later events"
    );
    let due = store.due_deliveries(T0 + 1000, 10).await.unwrap();
    assert_eq!(due[0].state, JobState::Downloading);
    let ok = AttemptRecord {
        attempt: 2,
        attempted_at: T0 + 1000,
        status_code: Some(200),
        error: None,
        duration_ms: 2,
    };
    store
        .record_delivery(due[0].seq, &ok, DeliveryOutcome::Delivered)
        .await
        .unwrap();
    let due = store.due_deliveries(T0 + 1001, 10).await.unwrap();
    assert_eq!(due[0].state, JobState::Encoding);
    store
        .record_delivery(due[0].seq, &ok, DeliveryOutcome::Failed)
        .await
        .unwrap();
    assert!(store
        .due_deliveries(T0 + 2000, 10)
        .await
        .unwrap()
        .is_empty());
    let history = store.deliveries(&a.id).await.unwrap();
    assert_eq!(history.len(), 2);
    assert_eq!(history[0].0.delivery, "delivered");
    assert_eq!(history[0].1.len(), 2);
    assert_eq!(history[0].1[0].status_code, Some(500));
    assert_eq!(history[1].0.delivery, "failed");
    assert_eq!(
        history[0].0.webhook_id(),
        format!("msg_{}_{}", a.id, history[0].0.seq)
    );
}

async fn abandon_only_pending(store: &dyn Store) {
    let idle = store.insert_job(&new_job(T0, true)).await.unwrap();
    let busy = store.insert_job(&new_job(T0 + 1, false)).await.unwrap();
    let _ = busy;
    let lease = store.claim(&node("n1"), 1, T0 + 2).await.unwrap().remove(0);
    assert_eq!(lease.job.id, idle.id, "oldest first");
    let waiting = store.get_job(&busy.id).await.unwrap().unwrap();
    let threshold = 1_000;
    let mut now = T0 + 2;
    // The leased job heartbeats for far longer than the threshold.
    for _ in 0..5 {
        now += 900;
        let report = LeaseReport {
            task: 0,
            job_id: idle.id.clone(),
            token: lease.token.clone(),
            progress: None,
        };
        store.heartbeat(&node("n1"), &[report], now).await.unwrap();
    }
    let abandoned = store.abandon_stale(now, threshold).await.unwrap();
    assert_eq!(abandoned, vec![waiting.id.clone()]);
    assert_eq!(
        store.get_job(&idle.id).await.unwrap().unwrap().state,
        JobState::Downloading
    );
    assert_eq!(
        store.get_job(&waiting.id).await.unwrap().unwrap().state,
        JobState::Abandoned
    );
}

async fn release_does_not_count(store: &dyn Store) {
    let job = store.insert_job(&new_job(T0, true)).await.unwrap();
    let lease = store.claim(&node("n1"), 1, T0).await.unwrap().remove(0);
    let back = store
        .release(
            &job.id,
            0,
            &lease.token,
            "worker shutting down",
            None,
            T0 + 1,
        )
        .await
        .unwrap();
    assert_eq!(back.state, JobState::Pending);
    let back = store.get_job(&job.id).await.unwrap().unwrap();
    assert_eq!(back.state, JobState::Pending);
    assert_eq!(back.attempts, 0);
    assert!(back.state_details.unwrap().contains("worker shutting down"));
    let again = store.claim(&node("n2"), 1, T0 + 1).await.unwrap();
    assert_eq!(again.len(), 1, "claimable at once");
}

/// A task its node could not run (the scratch disk filled) is retried
/// elsewhere after the backoff; the attempt counts, and once none are left
/// the job ends ERROR with the code the worker gave.
async fn a_node_failure_counts_and_waits_the_backoff(store: &dyn Store) {
    let job = store.insert_job(&new_job(T0, true)).await.unwrap();
    let mut now = T0;
    for attempt in 1..=3 {
        let lease = store.claim(&node("n1"), 1, now).await.unwrap().remove(0);
        let back = store
            .release(
                &job.id,
                0,
                &lease.token,
                "the scratch disk filled",
                Some("storage_failed"),
                now + 1,
            )
            .await
            .unwrap();
        let stored = store.get_job(&job.id).await.unwrap().unwrap();
        assert_eq!(stored.attempts, attempt);
        if attempt < 3 {
            assert_eq!(back.state, JobState::Pending);
            assert!(
                store
                    .claim(&node("n2"), 1, now + 2)
                    .await
                    .unwrap()
                    .is_empty(),
                "a node failure waits the backoff"
            );
            assert!(stored.state_details.unwrap().contains("retrying in"));
            now += 1 + POLICY.backoff_ms(attempt);
        } else {
            assert_eq!(back.state, JobState::Error);
            assert_eq!(stored.error_code.as_deref(), Some("storage_failed"));
            assert!(stored
                .state_details
                .unwrap()
                .contains("no attempts are left"));
        }
    }
}

async fn list_pages_newest_first(store: &dyn Store) {
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(store.insert_job(&new_job(T0 + i, false)).await.unwrap().id);
    }
    let page = |limit, before| JobQuery {
        limit,
        before,
        ..Default::default()
    };
    let in_state = |state| JobQuery {
        state: Some(state),
        limit: 10,
        ..Default::default()
    };
    let page = store.list_jobs(&page(2, None)).await.unwrap();
    assert_eq!(
        page.iter().map(|j| j.id.clone()).collect::<Vec<_>>(),
        vec![ids[4].clone(), ids[3].clone()]
    );
    let next = store
        .list_jobs(&JobQuery {
            limit: 2,
            before: Some(&page[1].id),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(next[0].id, ids[2]);
    store.claim(&node("n"), 1, T0 + 10).await.unwrap();
    let pending = store.list_jobs(&in_state(JobState::Pending)).await.unwrap();
    assert_eq!(pending.len(), 4);
    assert!(
        store
            .list_jobs(&in_state(JobState::Downloading))
            .await
            .unwrap()[0]
            .id
            == ids[0]
    );
}

async fn nodes_are_tracked_and_lost(store: &dyn Store) {
    store.heartbeat(&node("a"), &[], T0).await.unwrap();
    store.heartbeat(&node("b"), &[], T0 + 10_000).await.unwrap();
    let lost = store.mark_lost_nodes(T0 + 12_000, 5_000).await.unwrap();
    assert_eq!(lost, vec!["a".to_string()]);
    let nodes = store.list_nodes().await.unwrap();
    let a = nodes.iter().find(|n| n.id == "a").unwrap();
    assert_eq!(a.state, nommer_model::NodeState::Lost);
    assert_eq!(
        nodes.iter().find(|n| n.id == "b").unwrap().state,
        nommer_model::NodeState::Active
    );
    // A lost node that comes back is active again.
    store.heartbeat(&node("a"), &[], T0 + 13_000).await.unwrap();
    assert_eq!(
        store
            .list_nodes()
            .await
            .unwrap()
            .iter()
            .find(|n| n.id == "a")
            .unwrap()
            .state,
        nommer_model::NodeState::Active
    );
}

/// Concurrent submissions share INSERTs; each caller still gets its own job,
/// with its own PENDING event.
async fn submissions_together_each_get_their_own(store: &dyn Store) {
    let jobs: Vec<NewJob> = (0..40).map(|i| new_job(T0 + i, i % 2 == 0)).collect();
    let inserted = futures::future::join_all(jobs.iter().map(|job| store.insert_job(job))).await;
    for (job, record) in jobs.iter().zip(inserted) {
        let record = record.unwrap();
        assert_eq!(record.id, job.id);
        assert_eq!(record.created_at, job.created_at);
        // A record shows the notify_url redacted (the full one stays sealed).
        let shown = job
            .notify_url
            .as_deref()
            .map(nommer_model::uri::redact_notify_url);
        assert_eq!(record.notify_url, shown);
        let events = store.job_events(&job.id).await.unwrap();
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].state, JobState::Pending);
        assert_eq!(events[0].delivery, "none", "submission notifies no one");
    }
    let counts = store.count_jobs().await.unwrap();
    assert_eq!(counts, vec![(JobState::Pending, 40)]);
}

/// One refused report in a batch fails alone; the others are applied, in order.
async fn a_batch_of_reports_is_answered_one_by_one(store: &dyn Store) {
    let a = store.insert_job(&new_job(T0, true)).await.unwrap();
    let b = store.insert_job(&new_job(T0 + 1, false)).await.unwrap();
    let leases = store.claim(&node("n1"), 2, T0 + 2).await.unwrap();
    let token = |id: &str| {
        leases
            .iter()
            .find(|c| c.job.id == id)
            .unwrap()
            .token
            .clone()
    };
    let (ta, tb) = (token(&a.id), token(&b.id));
    assert_ne!(ta, tb, "each job leased together gets its own token");
    let warnings = ["resumed once".to_string()];
    let report = |job_id, token, to, warnings| HolderReport {
        task: 0,
        job_id,
        token,
        to,
        details: None,
        warnings,
        error_code: None,
        result: None,
        adds: &[],
    };
    let results = store
        .report_states(
            &[
                report(&a.id, &ta, JobState::Encoding, &warnings[..]),
                report(&b.id, "stale", JobState::Encoding, &[]),
                report(&a.id, &ta, JobState::Uploading, &[]),
                report(&b.id, &tb, JobState::Finished, &[]),
            ],
            T0 + 3,
        )
        .await
        .unwrap();
    assert_eq!(results[0].as_ref().unwrap().state, JobState::Encoding);
    assert!(matches!(results[1], Err(StoreError::LeaseLost)));
    let a_now = results[2].as_ref().unwrap();
    assert_eq!(a_now.state, JobState::Uploading);
    let a_job = store.get_job(&a.id).await.unwrap().unwrap();
    assert_eq!(
        a_job.warnings,
        vec!["w".to_string(), "resumed once".to_string()]
    );
    assert_eq!(
        store.job_tasks(&a.id).await.unwrap()[0].lease_expires_at,
        Some(T0 + 3 + POLICY.ttl_ms),
        "a report renews the lease"
    );
    assert!(matches!(
        results[3],
        Err(StoreError::InvalidTransition {
            from: JobState::Downloading,
            to: JobState::Finished
        })
    ));
    assert_eq!(
        event_states(store, &a.id).await,
        vec![
            JobState::Pending,
            JobState::Downloading,
            JobState::Encoding,
            JobState::Uploading
        ]
    );
    let b_now = store.get_job(&b.id).await.unwrap().unwrap();
    assert_eq!(b_now.state, JobState::Downloading);
}
