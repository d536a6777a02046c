//! The fault soak: a PostgreSQL cluster of two feederd replicas and several
//! nommerd workers, under a steady mix of jobs, while seeded faults come
//! together (killed and frozen processes, a crashing database, a webhook
//! receiver that goes away, full disks, cut storage connections). Then every
//! job, event, webhook and output is checked: nothing lost, nothing twice,
//! nothing out of order, nothing corrupt.
//!
//! ```text
//! scripts/soak.sh [--minutes M] [--seed S]
//! ```
//!
//! RELIABILITY.md has the figures and what each fault does to a job.

pub mod cluster;
pub mod faults;
pub mod load;
pub mod receiver;
pub mod report;
pub mod rng;

use report::{Phases, Report};
use std::path::PathBuf;
use std::time::{Duration, Instant};

pub struct Settings {
    /// How long faults are injected.
    pub minutes: f64,
    pub seed: u64,
    /// The `nommer` binary under test.
    pub nommer: PathBuf,
    pub workers: usize,
    /// Keep the daemons' logs (always kept when the run fails).
    pub keep_logs: bool,
}

/// How long after the faults stop a job may take to end before it counts
/// as lost.
const DRAIN: Duration = Duration::from_secs(300);
/// How long after that a webhook may still be on its way: the notifier's
/// longest backoff (10 min) after a receiver outage.
const WEBHOOK_DRAIN: Duration = Duration::from_secs(660);

fn epoch_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

pub async fn run(settings: Settings) -> anyhow::Result<Report> {
    let fault_s = settings.minutes * 60.0;
    // A full run is 20 minutes; shorter runs shorten the receiver's outages
    // and the calm phase alike.
    let scale = (settings.minutes / 20.0).clamp(0.1, 1.0);
    let calm = Duration::from_secs_f64((120.0 * scale).max(20.0));
    let mut rng = rng::Rng::new(settings.seed);
    let plan = faults::schedule(&mut rng, fault_s, settings.workers, scale);

    let mut cluster = cluster::Cluster::start(&settings.nommer, settings.workers).await?;
    load::make_sources(&cluster.s3.root)?;
    let mut receiver = receiver::Receiver::start().await?;
    eprintln!(
        "soak: {} faults planned over {:.0} s after {:.0} s without; logs in {}",
        plan.len(),
        fault_s,
        calm.as_secs_f64(),
        cluster.dir.display()
    );

    let started = Instant::now();
    let faults_from = started + calm;
    let faults_until = faults_from + Duration::from_secs_f64(fault_s);
    let load = tokio::spawn(load::run(
        load::Plan {
            front: cluster.front.clone(),
            notify_url: receiver.url(),
            store_url: cluster.store_url.clone(),
            s3_root: cluster.s3.root.clone(),
            every: Duration::from_millis(500),
            backlog: 24,
            end: faults_until,
        },
        rng.fork(),
    ));
    tokio::time::sleep_until(faults_from.into()).await;
    let phases_from_ms = epoch_ms();
    let injected =
        faults::inject(&mut cluster, &mut receiver, plan, faults_from, faults_until).await;
    let phases = Phases {
        faults_from: phases_from_ms,
        faults_until: epoch_ms(),
    };
    // An error returns at once: the cluster stops (and keeps its logs) as
    // it is dropped.
    let injected = match injected {
        Ok(injected) => injected,
        Err(e) => {
            load.abort();
            return Err(e);
        }
    };
    let load = load.await?;
    eprintln!("soak: faults over; draining");

    // The drain: every job ends and every event is delivered, or time runs out.
    let drain_from = Instant::now();
    loop {
        let jobs = report::unfinished(&cluster.store_url).await;
        let events = report::undelivered(&cluster.store_url).await;
        if jobs == Some(0) && events == Some(0) {
            break;
        }
        let waited = drain_from.elapsed();
        if waited > DRAIN + WEBHOOK_DRAIN || (waited > DRAIN && jobs != Some(0)) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let drained_s = drain_from.elapsed().as_secs_f64();
    let crashed = cluster.crashed();
    let mut report = report::judge(
        &cluster.store_url,
        &cluster.s3.root,
        &load,
        &receiver.seen(),
        phases,
    )
    .await?;
    report.seed = settings.seed;
    report.minutes = settings.minutes;
    report.faults = injected;
    report.crashed = crashed;
    report.drained_s = drained_s;
    report.scratch_left_bytes = cluster.scratch_used();
    let keep = settings.keep_logs || !report.passed();
    cluster.shut_down(keep);
    if keep {
        eprintln!("soak: logs kept in {}", cluster.dir.display());
    }
    Ok(report)
}
