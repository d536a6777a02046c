//! A chunked job's source, fetched once per worker for all of that job's
//! tasks here: the plan, every chunk this worker takes, and the audio. It
//! lives in `work_dir/input-JOB-NONCE-N/` (the nonce this worker's: workers
//! in one process, or local workers, share a `work_dir`; N this fetch's), handed to the sandbox user and given to
//! each tool as a read-only input (the sandbox's `Jail::inputs`), and goes
//! a while after the last task of its job on this worker ends.

use crate::pipeline::End;
use nommer_model::FailureCode;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::OnceCell;

/// How long a job's source stays after its last task here ended: long
/// enough for the worker to lease the job's next chunk.
pub const INPUT_LINGER: Duration = Duration::from_secs(60);

pub struct Inputs {
    entries: Mutex<HashMap<String, Arc<Entry>>>,
    nonce: u32,
    /// Each entry's own directory: one being removed is never reused.
    made: std::sync::atomic::AtomicU64,
}

impl Default for Inputs {
    fn default() -> Self {
        Inputs {
            entries: Mutex::default(),
            nonce: rand::random(),
            made: Default::default(),
        }
    }
}

struct Entry {
    dir: PathBuf,
    /// The source's path, once fetched.
    ready: OnceCell<PathBuf>,
    users: AtomicUsize,
}

/// A task's hold on its job's source: while any is held it stays.
pub struct Held {
    inputs: Arc<Inputs>,
    job_id: String,
    entry: Arc<Entry>,
}

impl Held {
    /// The directory the tools may read.
    pub fn dir(&self) -> &PathBuf {
        &self.entry.dir
    }
}

impl Inputs {
    /// Hold the job's source, fetching it with `fetch` (into the directory
    /// it is given) unless a task here already did. Tasks that ask at once
    /// wait for one fetch.
    pub async fn hold<F, Fut>(
        self: &Arc<Self>,
        work_dir: &std::path::Path,
        job_id: &str,
        fetch: F,
    ) -> Result<(Held, PathBuf), End>
    where
        F: FnOnce(PathBuf) -> Fut,
        Fut: std::future::Future<Output = Result<PathBuf, End>>,
    {
        let entry = {
            let mut entries = self.entries.lock().unwrap();
            let entry = entries.entry(job_id.to_string()).or_insert_with(|| {
                Arc::new(Entry {
                    dir: work_dir.join(format!(
                        "input-{job_id}-{:08x}-{}",
                        self.nonce,
                        self.made.fetch_add(1, Ordering::SeqCst)
                    )),
                    ready: OnceCell::new(),
                    users: AtomicUsize::new(0),
                })
            });
            entry.users.fetch_add(1, Ordering::SeqCst);
            entry.clone()
        };
        let held = Held {
            inputs: self.clone(),
            job_id: job_id.to_string(),
            entry: entry.clone(),
        };
        let path = entry
            .ready
            .get_or_try_init(|| async {
                let mut builder = tokio::fs::DirBuilder::new();
                builder.recursive(true).mode(0o700);
                builder.create(&entry.dir).await.map_err(|e| {
                    End::failed(
                        FailureCode::StorageFailed,
                        format!(
                            "cannot create the input directory {}: {e}",
                            entry.dir.display()
                        ),
                    )
                })?;
                fetch(entry.dir.clone()).await
            })
            .await?
            .clone();
        Ok((held, path))
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        if self.entry.users.fetch_sub(1, Ordering::SeqCst) != 1 {
            return;
        }
        let (inputs, job_id, entry) =
            (self.inputs.clone(), self.job_id.clone(), self.entry.clone());
        let remove = async move {
            tokio::time::sleep(INPUT_LINGER).await;
            {
                let mut entries = inputs.entries.lock().unwrap();
                let same = entries.get(&job_id).is_some_and(|e| Arc::ptr_eq(e, &entry));
                if !same || entry.users.load(Ordering::SeqCst) != 0 {
                    return;
                }
                entries.remove(&job_id);
            }
            if let Err(e) = tokio::fs::remove_dir_all(&entry.dir).await {
                if e.kind() != std::io::ErrorKind::NotFound {
                    tracing::warn!(job_id = %job_id, error = %e, "cannot remove the job's input directory");
                }
            }
        };
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(remove);
            }
            Err(_) => {
                let _ = std::fs::remove_dir_all(&self.entry.dir);
            }
        }
    }
}
