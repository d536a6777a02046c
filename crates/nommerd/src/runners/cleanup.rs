//! `cleanup` tasks: once a chunked job has ended, however it ended, remove
//! everything under its work prefix.

use super::{Runner, TaskRun};
use crate::pipeline::End;
use nommer_model::{FailureCode, JobState, TaskKind};
use serde_json::json;

pub struct Cleanup;

#[async_trait::async_trait]
impl Runner for Cleanup {
    fn kind(&self) -> TaskKind {
        TaskKind::Cleanup
    }

    async fn run(&self, run: TaskRun<'_>) -> End {
        let Some(prefix) = run.grant.work_uri.as_deref().filter(|p| !p.is_empty()) else {
            return End::failed(
                FailureCode::StorageFailed,
                "a cleanup task without its work prefix",
            );
        };
        let (pipeline, task) = (run.pipeline, run.task);
        let removed = match pipeline
            .stoppable(task, run.storage.remove_prefix(prefix))
            .await
        {
            Ok(Ok(removed)) => removed,
            Ok(Err(e)) => return e.into(),
            Err(stop) => return End::Stopped(stop),
        };
        tracing::info!(job_id = %task.job_id, removed, "intermediates removed");
        pipeline
            .finish(
                task,
                JobState::Downloading,
                Some(json!({"removed": removed})),
                Vec::new(),
                Vec::new(),
            )
            .await
    }
}
