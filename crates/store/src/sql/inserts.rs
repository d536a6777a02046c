//! Submissions that arrive together share one multi-row INSERT: one
//! statement and one commit for many jobs. A lone submission goes at once;
//! while one INSERT runs, the next batch gathers.

use super::rows::{self, JOB_COLUMNS};
use crate::*;
use sqlx::AnyPool;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::sync::{mpsc, oneshot};

/// Rows per INSERT: 15 values each stays far below both backends' limits.
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
        let result = insert_all(&writer, &sealed).await;
        statements.fetch_add(1, Ordering::Relaxed);
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

/// One INSERT for every job; their tasks come from the jobs_tasks trigger and
/// the PENDING events from the jobs_event trigger, in the same statement.
async fn insert_all(writer: &AnyPool, batch: &[Sealed]) -> StoreResult<HashMap<String, JobRecord>> {
    let values: Vec<String> = (0..batch.len())
        .map(|i| {
            let p = |n: usize| format!("${}", i * 15 + n);
            format!(
                "({}, 'PENDING', {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {t}, {t}, {t})",
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
                t = p(15),
            )
        })
        .collect();
    let sql = format!(
        "INSERT INTO jobs (id, state, warnings, max_attempts, max_runtime_s, source_path, dest_path, secret_uris, notify_url, notify_url_shown, submitted_by, nommer, job_options, tasks_total, tasks_plan, created_at, updated_at, state_changed_at)
         VALUES {} RETURNING {JOB_COLUMNS}",
        values.join(", ")
    );
    let mut query = sqlx::query(&sql);
    for Sealed {
        job,
        secret_uris,
        notify_url,
    } in batch
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
            .bind(job.created_at);
    }
    let inserted = query.fetch_all(writer).await?;
    inserted
        .iter()
        .map(|row| rows::job(row).map(|job| (job.id.clone(), job)))
        .collect()
}
