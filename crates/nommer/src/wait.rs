//! `--wait`: follow a job to its end with a progress bar.

use indicatif::{ProgressBar, ProgressStyle};
use nommer_client::Client;
use nommer_model::api::Job;
use nommer_model::JobState;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(1);

/// Follow the job until it is terminal; returns its last view. Each request
/// answers at a state change at once, or after a second with fresh progress.
pub async fn follow(client: &Client, id: &str) -> anyhow::Result<Job> {
    let bar = ProgressBar::new(100);
    bar.set_style(
        ProgressStyle::with_template("{spinner} {prefix:>12} [{bar:32}] {pos:>3}% {msg}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    bar.enable_steady_tick(Duration::from_millis(120));
    let mut last_state = None;
    loop {
        let asked = std::time::Instant::now();
        let job = match last_state {
            None => client.job(id).await?,
            Some(seen) => {
                let job = client.job_changed(id, seen, WAIT).await?;
                // A feederd without long-polls answers at once: poll then.
                if job.state == seen && asked.elapsed() < WAIT / 2 {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                job
            }
        };
        if last_state != Some(job.state) {
            bar.println(format!("{} {}", job.id, job.state));
            last_state = Some(job.state);
        }
        let progress = job.progress.clone().unwrap_or_default();
        bar.set_prefix(if progress.phase.is_empty() {
            job.state.as_str().to_lowercase()
        } else {
            progress.phase.clone()
        });
        bar.set_position(progress.percent.clamp(0.0, 100.0) as u64);
        let mut message = Vec::new();
        if let (Some(done), Some(total)) = (progress.chunks_done, progress.chunks_total) {
            message.push(format!("chunks {done}/{total}"));
        }
        if let Some(fps) = progress.fps.filter(|f| *f > 0.0) {
            message.push(format!("{fps:.0} fps"));
        }
        if let Some(speed) = progress.speed {
            message.push(format!("{speed:.2}x"));
        }
        if let Some(eta) = progress.eta_seconds {
            message.push(format!("ETA {eta:.0}s"));
        }
        bar.set_message(message.join("  "));
        if job.state.is_terminal() {
            if job.state == JobState::Finished {
                bar.set_position(100);
            }
            bar.finish_and_clear();
            return Ok(job);
        }
    }
}
