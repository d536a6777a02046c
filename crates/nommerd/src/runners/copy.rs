//! `copy` tasks: the source goes to the destination unchanged. Where the
//! destination takes a stream, it is copied straight there during
//! DOWNLOADING (ENCODING has nothing to do; UPLOADING is the commit);
//! otherwise through the scratch directory.

use super::{Runner, TaskRun};
use crate::pipeline::{retried, End};
use nommer_model::{JobState, TaskKind};

pub struct Copy;

#[async_trait::async_trait]
impl Runner for Copy {
    fn kind(&self) -> TaskKind {
        TaskKind::Copy
    }

    async fn run(&self, mut run: TaskRun<'_>) -> End {
        if !run.storage.streams_to(run.dest) {
            let input = match run.pipeline.download(&mut run).await {
                Ok(input) => input,
                Err(end) => return end,
            };
            return run.pipeline.upload(&run, &input).await;
        }
        let (pipeline, task) = (run.pipeline, run.task);
        tracing::info!(job_id = %task.job_id, task = task.task, attempt = run.grant.attempt, source = %run.source, dest = %run.dest, "copying");
        let progress = pipeline.transfer_progress(task, "copying", 0.0, 95.0);
        let (staged, copied) = match pipeline
            .stoppable(task, run.storage.stage_copy(run.source, run.dest, progress))
            .await
        {
            Ok(Ok(done)) => done,
            Ok(Err(e)) => return e.into(),
            Err(stop) => return End::Stopped(stop),
        };
        tracing::info!(job_id = %task.job_id, task = task.task, bytes = copied.bytes, retries = copied.retries, "copied");
        for state in [JobState::Encoding, JobState::Uploading] {
            let warnings = if state == JobState::Encoding {
                retried("copy", copied)
            } else {
                Vec::new()
            };
            if let Err(end) = pipeline.report(task, state, None, warnings).await {
                staged.abort().await;
                return end;
            }
        }
        pipeline.commit(task, staged).await
    }
}
