//! State reports, batched: every job's reports go through one task that sends
//! whatever queued up while its previous request was in flight. An idle worker
//! sends each report at once; a busy one sends one request for many.

use nommer_client::{Client, ClientError};
use nommer_model::api::{
    JobStateReport, StateReportBatch, StateReportResult, MAX_REPORTS_PER_BATCH,
};
use tokio::sync::{mpsc, oneshot};

type Answer = oneshot::Sender<Result<(), ClientError>>;

#[derive(Clone)]
pub struct Reporter {
    queue: mpsc::UnboundedSender<(JobStateReport, Answer)>,
}

impl Reporter {
    pub fn spawn(client: Client) -> Reporter {
        let (queue, rx) = mpsc::unbounded_channel();
        tokio::spawn(run(client, rx));
        Reporter { queue }
    }

    /// Send one report (in the next batch); feederd's answer to it.
    pub async fn report(&self, report: JobStateReport) -> Result<(), ClientError> {
        let (tx, rx) = oneshot::channel();
        let gone = || ClientError::Transport("the reporter has stopped".into());
        self.queue.send((report, tx)).map_err(|_| gone())?;
        rx.await.map_err(|_| gone())?
    }
}

async fn run(client: Client, mut rx: mpsc::UnboundedReceiver<(JobStateReport, Answer)>) {
    // A feederd older than the batch route gets one request per report.
    let mut single = false;
    let mut batch = Vec::new();
    while rx.recv_many(&mut batch, MAX_REPORTS_PER_BATCH).await > 0 {
        let (reports, answers): (Vec<_>, Vec<_>) = std::mem::take(&mut batch).into_iter().unzip();
        if single {
            one_by_one(&client, reports, answers).await;
            continue;
        }
        let request = StateReportBatch { reports };
        match client.report_states(&request).await {
            Ok(answer) => {
                let mut results = answer.results.into_iter();
                for answer in answers {
                    let _ = answer.send(outcome(results.next()));
                }
            }
            Err(ClientError::Api {
                status: 404 | 405, ..
            }) => {
                tracing::info!("feederd has no batch report route; reporting one by one");
                single = true;
                one_by_one(&client, request.reports, answers).await;
            }
            Err(e) => {
                for answer in answers {
                    let _ = answer.send(Err(e.clone()));
                }
            }
        }
    }
}

/// One report's answer from its place in the batch's results.
fn outcome(result: Option<StateReportResult>) -> Result<(), ClientError> {
    let Some(result) = result else {
        return Err(ClientError::Transport(
            "feederd answered fewer reports than were sent".into(),
        ));
    };
    match result.error {
        None => Ok(()),
        Some(e) => Err(ClientError::Api {
            status: nommer_model::ErrorCode::parse(&e.error_code).map_or(500, |c| c.http_status()),
            code: e.error_code,
            message: e.message,
        }),
    }
}

async fn one_by_one(client: &Client, reports: Vec<JobStateReport>, answers: Vec<Answer>) {
    for (report, answer) in reports.into_iter().zip(answers) {
        let single = nommer_model::api::StateReport {
            task: report.task,
            token: report.token,
            state: report.state,
            details: report.details,
            warnings: report.warnings,
            error_code: report.error_code,
            result: report.result,
            tasks: report.tasks,
        };
        let result = client
            .report_state(&report.job_id, &single)
            .await
            .map(|_| ());
        let _ = answer.send(result);
    }
}
