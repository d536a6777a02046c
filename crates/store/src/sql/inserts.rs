//! Submissions that arrive together share one multi-row INSERT: one
//! statement and one commit for many jobs. A lone submission goes at once;
//! while one INSERT runs, the next batch gathers. Each job is numbered for
//! fair share in the same transaction ([`number_jobs`]).

use super::rows::{self, JOB_COLUMNS};
use crate::*;
use sqlx::{AnyConnection, AnyPool};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::sync::{mpsc, oneshot};

/// Rows per INSERT: 20 values each stays far below both backends' limits.
const MAX_ROWS: usize = 100;

/// A job to insert, its URIs already sealed.
pub struct Sealed {
    pub job: NewJob,
    pub secret_uris: String,
    pub notify_url: Option<String>,
}

type Pending = (Sealed, oneshot::Sender<StoreResult<JobRecord>>);

#[derive(Clone)]
pub struct Inserter {
    queue: mpsc::UnboundedSender<Pending>,
}

impl Inserter {
    pub fn spawn(writer: AnyPool, statements: Arc<AtomicU64>, jobs: Arc<Notify>) -> Inserter {
        let (queue, rx) = mpsc::unbounded_channel();
        tokio::spawn(run(writer, statements, jobs, rx));
        Inserter { queue }
    }

    pub async fn insert(&self, job: Sealed) -> StoreResult<JobRecord> {
        let (tx, rx) = oneshot::channel();
        let stopped = || StoreError::Other("the store has shut down".into());
        self.queue.send((job, tx)).map_err(|_| stopped())?;
        rx.await.map_err(|_| stopped())?
    }
}

async fn run(
    writer: AnyPool,
    statements: Arc<AtomicU64>,
    jobs: Arc<Notify>,
    mut rx: mpsc::UnboundedReceiver<Pending>,
) {
    let mut batch = Vec::new();
    while rx.recv_many(&mut batch, MAX_ROWS).await > 0 {
        let (sealed, answers): (Vec<Sealed>, Vec<_>) =
            std::mem::take(&mut batch).into_iter().unzip();
        let result = insert_numbered(&writer, &sealed).await;
        statements.fetch_add(1 + owners(&sealed).len() as u64, Ordering::Relaxed);
        match result {
            Ok(mut by_id) => {
                for (sealed, answer) in sealed.iter().zip(answers) {
                    let record = by_id.remove(&sealed.job.id).ok_or_else(|| {
                        StoreError::Other("the INSERT returned no row for a job".into())
                    });
                    let _ = answer.send(record);
                }
                jobs.notify_waiters();
            }
            Err(e) => {
                for answer in answers {
                    let _ = answer.send(Err(e.clone()));
                }
            }
        }
    }
}

/// The numbering and the INSERT, each on its own: a number taken by a batch
/// that then fails leaves a gap, which orders nothing wrong, and the
/// submit pays no transaction.
async fn insert_numbered(
    writer: &AnyPool,
    batch: &[Sealed],
) -> StoreResult<HashMap<String, JobRecord>> {
    let mut conn = writer.acquire().await?;
    insert_all(&mut conn, batch).await
}

/// Who a job's fair share belongs to: its token, or everyone without tokens.
fn owner(job: &NewJob) -> &str {
    job.submitted_by.as_deref().unwrap_or("")
}

/// Each (owner, priority) of the batch with its number of jobs, sorted, so
/// concurrent batches on two replicas lock their `fair_shares` rows in one
/// order and never wait on each other in a cycle.
fn owners(batch: &[Sealed]) -> Vec<((&str, i32), i64)> {
    let mut owners: std::collections::BTreeMap<(&str, i32), i64> = Default::default();
    for sealed in batch {
        *owners
            .entry((owner(&sealed.job), sealed.job.priority))
            .or_default() += 1;
    }
    owners.into_iter().collect()
}

/// Number each job for fair share: an owner's jobs of one priority take
/// consecutive numbers in submission order, starting no earlier than the
/// head of that priority's claim order (the next task a claim would take
/// there, in an open queue), so a token that had nothing queued takes its
/// turn next instead of after every job already waiting. One upsert per
/// (owner, priority) in the batch, which also orders concurrent submits by
/// the same owner on PostgreSQL (its row's lock).
async fn number_jobs(conn: &mut AnyConnection, batch: &[Sealed]) -> StoreResult<Vec<i64>> {
    let now = batch
        .iter()
        .map(|s| s.job.created_at)
        .max()
        .unwrap_or_default();
    let mut next: HashMap<(&str, i32), i64> = HashMap::new();
    for ((name, priority), n) in owners(batch) {
        let last: i64 = sqlx::query_scalar(
            "WITH head AS (
               SELECT COALESCE(
                 (SELECT fair_seq FROM tasks WHERE state = 'PENDING' AND priority = $3 AND run_after <= $4
                    AND queue IN (SELECT name FROM queues WHERE paused = 0)
                  ORDER BY fair_seq LIMIT 1) - 1,
                 (SELECT MAX(last_seq) FROM fair_shares WHERE priority = $3), 0) AS h)
             INSERT INTO fair_shares (owner, priority, last_seq) SELECT $1, $3, h + $2 FROM head WHERE true
             ON CONFLICT (owner, priority) DO UPDATE SET last_seq = CASE
               WHEN fair_shares.last_seq > excluded.last_seq - $2 THEN fair_shares.last_seq + $2
               ELSE excluded.last_seq END
             RETURNING last_seq",
        )
        .bind(name)
        .bind(n)
        .bind(priority as i64)
        .bind(now)
        .fetch_one(&mut *conn)
        .await?;
        next.insert((name, priority), last - n + 1);
    }
    Ok(batch
        .iter()
        .map(|sealed| {
            let key = (owner(&sealed.job), sealed.job.priority);
            let seq = next.get_mut(&key).expect("every owner numbered");
            *seq += 1;
            *seq - 1
        })
        .collect())
}

/// Columns bound per job in [`insert_all`].
const BOUND: usize = 20;

/// One INSERT for every job; their tasks come from the jobs_tasks trigger and
/// the PENDING events from the jobs_event trigger, in the same statement.
pub async fn insert_all(
    conn: &mut AnyConnection,
    batch: &[Sealed],
) -> StoreResult<HashMap<String, JobRecord>> {
    let seqs = number_jobs(conn, batch).await?;
    let values: Vec<String> = (0..batch.len())
        .map(|i| {
            let p = |n: usize| format!("${}", i * BOUND + n);
            format!(
                "({}, 'PENDING', {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {t}, {t}, {t})",
                p(1),
                p(2),
                p(3),
                p(4),
                p(5),
                p(6),
                p(7),
                p(8),
                p(9),
                p(10),
                p(11),
                p(12),
                p(13),
                p(14),
                p(15),
                p(16),
                p(17),
                p(18),
                p(19),
                t = p(20),
            )
        })
        .collect();
    let sql = format!(
        "INSERT INTO jobs (id, state, warnings, max_attempts, max_runtime_s, source_path, dest_path, secret_uris, notify_url, notify_url_shown, submitted_by, nommer, job_options, tasks_total, tasks_plan, priority, queue, fair_seq, notify_format, retry_of, created_at, updated_at, state_changed_at)
         VALUES {} RETURNING {JOB_COLUMNS}",
        values.join(", ")
    );
    let mut query = sqlx::query(&sql);
    for (
        Sealed {
            job,
            secret_uris,
            notify_url,
        },
        seq,
    ) in batch.iter().zip(seqs)
    {
        query = query
            .bind(&job.id)
            .bind(serde_json::to_string(&job.warnings).unwrap_or_default())
            .bind(job.max_attempts as i64)
            .bind(job.max_runtime_s.map(|s| s as i64))
            .bind(&job.source_path)
            .bind(&job.dest_path)
            .bind(secret_uris)
            .bind(notify_url)
            .bind(
                job.notify_url
                    .as_deref()
                    .map(nommer_model::uri::redact_notify_url),
            )
            .bind(&job.submitted_by)
            .bind(&job.nommer)
            .bind(job.job_options.to_string())
            // The tasks its progress counts (a cleanup does not count).
            .bind(job.tasks.iter().filter(|t| t.kind.counts_for_job()).count() as i64)
            .bind(serde_json::to_string(&job.tasks).unwrap_or_default())
            .bind(job.priority as i64)
            .bind(&job.queue)
            .bind(seq)
            .bind(job.notify_format.as_str())
            .bind(&job.retry_of)
            .bind(job.created_at);
    }
    let inserted = query.fetch_all(&mut *conn).await?;
    inserted
        .iter()
        .map(|row| rows::job(row).map(|job| (job.id.clone(), job)))
        .collect()
}
