//! The faults: what each does, when it comes (a seeded schedule), and the
//! injector that carries the schedule out and undoes each fault in time.

use crate::cluster::{Cluster, LEASE_TTL_S};
use crate::receiver::Receiver;
use crate::rng::Rng;
use std::collections::BTreeMap;
use std::io::Write;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum FaultKind {
    WorkerKilled,
    LeaderKilled,
    FollowerKilled,
    PostgresRestarted,
    ReceiverDown,
    WorkerFrozen,
    ScratchFull,
    StorageCut,
}

impl FaultKind {
    pub const ALL: [FaultKind; 8] = [
        FaultKind::WorkerKilled,
        FaultKind::LeaderKilled,
        FaultKind::FollowerKilled,
        FaultKind::PostgresRestarted,
        FaultKind::ReceiverDown,
        FaultKind::WorkerFrozen,
        FaultKind::ScratchFull,
        FaultKind::StorageCut,
    ];

    pub fn describe(self) -> &'static str {
        match self {
            FaultKind::WorkerKilled => "nommerd SIGKILLed",
            FaultKind::LeaderKilled => "leader feederd SIGKILLed",
            FaultKind::FollowerKilled => "follower feederd SIGKILLed",
            FaultKind::PostgresRestarted => "PostgreSQL stopped (immediate) and restarted",
            FaultKind::ReceiverDown => "webhook receiver down",
            FaultKind::WorkerFrozen => "nommerd SIGSTOPped past its lease",
            FaultKind::ScratchFull => "worker scratch tmpfs filled",
            FaultKind::StorageCut => "storage connection cut mid-transfer",
        }
    }

    /// How long a fault lasts before it is undone.
    fn hold_s(self, rng: &mut Rng, scale: f64) -> f64 {
        match self {
            FaultKind::WorkerKilled => rng.between(1.0, 3.0),
            FaultKind::LeaderKilled | FaultKind::FollowerKilled => rng.between(1.0, 4.0),
            FaultKind::PostgresRestarted => rng.between(1.0, 5.0),
            FaultKind::ReceiverDown => rng.between(60.0, 300.0) * scale,
            FaultKind::WorkerFrozen => LEASE_TTL_S as f64 + rng.between(2.0, 6.0),
            FaultKind::ScratchFull => rng.between(3.0, 10.0),
            FaultKind::StorageCut => 0.0,
        }
    }

    /// The mean gap between two faults of this kind, in seconds of a
    /// full-length run. The receiver's outages follow one another instead.
    fn mean_gap_s(self) -> f64 {
        match self {
            FaultKind::WorkerKilled => 8.0,
            FaultKind::LeaderKilled => 40.0,
            FaultKind::FollowerKilled => 40.0,
            FaultKind::PostgresRestarted => 60.0,
            FaultKind::ReceiverDown => 150.0,
            FaultKind::WorkerFrozen => 12.0,
            FaultKind::ScratchFull => 15.0,
            FaultKind::StorageCut => 1.0,
        }
    }
}

/// One planned fault: when (seconds into the fault phase), what, on which
/// worker (where it matters), and for how long before it is undone.
#[derive(Debug, Clone)]
pub struct Planned {
    pub at_s: f64,
    pub kind: FaultKind,
    pub target: usize,
    pub hold_s: f64,
}

/// The whole fault phase, drawn from the seed before the run starts.
/// `scale` (at most 1) shortens the receiver's outages for short runs: a
/// full run takes it down for 1 to 5 minutes at a time.
pub fn schedule(rng: &mut Rng, seconds: f64, workers: usize, scale: f64) -> Vec<Planned> {
    let mut plan = Vec::new();
    for kind in FaultKind::ALL {
        let mut rng = rng.fork();
        let mut at = rng.gap(kind.mean_gap_s());
        if kind == FaultKind::ReceiverDown {
            at = rng.between(0.1, 0.3) * seconds;
        }
        while at < seconds {
            let hold_s = kind.hold_s(&mut rng, scale);
            plan.push(Planned {
                at_s: at,
                kind,
                target: rng.below(workers),
                hold_s,
            });
            at += match kind {
                FaultKind::ReceiverDown => hold_s + rng.gap(kind.mean_gap_s() * scale),
                _ => rng.gap(kind.mean_gap_s()),
            };
        }
    }
    // A short run still sees every kind once.
    for kind in FaultKind::ALL {
        if !plan.iter().any(|p| p.kind == kind) {
            let mut rng = rng.fork();
            plan.push(Planned {
                at_s: rng.between(0.1, 0.6) * seconds,
                kind,
                target: rng.below(workers),
                hold_s: kind.hold_s(&mut rng, scale),
            });
        }
    }
    plan.sort_by(|a, b| a.at_s.total_cmp(&b.at_s));
    plan
}

/// What undoes a fault, and when.
#[derive(Debug)]
enum Undo {
    RestartWorker(usize),
    RestartReplica(usize),
    StartPostgres,
    ReceiverUp,
    Thaw(usize),
    Unfill(std::path::PathBuf),
}

/// Faults injected, by kind; storage cuts are counted by the proxy.
pub type Injected = BTreeMap<FaultKind, u64>;

/// Carry out `plan` from `start`, then undo whatever is still in force.
/// A fault that cannot land now (its worker is already down, a replica is
/// already restarting, the database is down) is skipped and not counted.
pub async fn inject(
    cluster: &mut Cluster,
    receiver: &mut Receiver,
    plan: Vec<Planned>,
    start: Instant,
    end: Instant,
) -> anyhow::Result<Injected> {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()?;
    let mut injected = Injected::new();
    let mut timeline = std::fs::File::create(cluster.dir.join("faults.log"))?;
    let mut undo: Vec<(Instant, Undo)> = Vec::new();
    let mut plan = plan.into_iter().peekable();
    let cuts_before = cluster.storage.cuts();
    loop {
        let next_fault = plan.peek().map(|p| start + Duration::from_secs_f64(p.at_s));
        let next_undo = undo.iter().map(|(at, _)| *at).min();
        let next = [next_fault, next_undo, Some(end)]
            .into_iter()
            .flatten()
            .min()
            .expect("end is always there");
        tokio::time::sleep_until(next.into()).await;
        cluster.check();
        let now = Instant::now();
        if now >= end {
            break;
        }
        // Undo first: a worker restarted now may be the next fault's target.
        let (due, later): (Vec<_>, Vec<_>) = undo.into_iter().partition(|(at, _)| *at <= now);
        undo = later;
        for (_, action) in due {
            apply(cluster, receiver, action).await?;
        }
        while let Some(p) = plan.next_if(|p| start + Duration::from_secs_f64(p.at_s) <= now) {
            let hold = now + Duration::from_secs_f64(p.hold_s);
            let Some(action) = land(cluster, receiver, &http, &p).await? else {
                continue;
            };
            // The timeline beside the daemons' logs, to read a failed run by.
            let _ = writeln!(
                timeline,
                "{:8.2} s  {:<44} {:?}, undone after {:.1} s",
                now.duration_since(start).as_secs_f64(),
                p.kind.describe(),
                action,
                p.hold_s
            );
            undo.push((hold, action));
            *injected.entry(p.kind).or_default() += 1;
        }
    }
    cluster.storage.disarm();
    for (_, action) in undo {
        apply(cluster, receiver, action).await?;
    }
    cluster.recover()?;
    receiver.up().await?;
    injected.insert(
        FaultKind::StorageCut,
        u64::from(cluster.storage.cuts() - cuts_before),
    );
    Ok(injected)
}

/// Inject one fault; what will undo it, or None when it did not land.
async fn land(
    cluster: &mut Cluster,
    receiver: &mut Receiver,
    http: &reqwest::Client,
    p: &Planned,
) -> anyhow::Result<Option<Undo>> {
    let worker_ok = |c: &Cluster| {
        let w = &c.workers[p.target];
        w.running() && !w.stopped
    };
    let both_replicas = |c: &Cluster| c.replicas.iter().all(|r| r.running());
    Ok(match p.kind {
        // Counted by the proxy as the cuts happen, not as they are armed.
        FaultKind::StorageCut => {
            cluster.storage.arm();
            None
        }
        FaultKind::WorkerKilled if worker_ok(cluster) => {
            cluster.workers[p.target].kill();
            Some(Undo::RestartWorker(p.target))
        }
        FaultKind::WorkerFrozen if worker_ok(cluster) => {
            cluster.workers[p.target].freeze();
            Some(Undo::Thaw(p.target))
        }
        FaultKind::ScratchFull if worker_ok(cluster) => {
            let filler = cluster.workers[p.target]
                .scratch
                .as_ref()
                .map(|s| s.join("filler"));
            match filler {
                Some(path) if !path.exists() => {
                    let path = tokio::task::block_in_place(|| cluster.fill_scratch(p.target))?;
                    Some(Undo::Unfill(path))
                }
                _ => None,
            }
        }
        FaultKind::LeaderKilled | FaultKind::FollowerKilled
            if both_replicas(cluster) && cluster.pg_up =>
        {
            let Some(leader) = cluster.leader(http).await else {
                return Ok(None);
            };
            let victim = match p.kind {
                FaultKind::LeaderKilled => leader,
                _ => 1 - leader,
            };
            cluster.replicas[victim].kill();
            Some(Undo::RestartReplica(victim))
        }
        FaultKind::PostgresRestarted if cluster.pg_up => {
            tokio::task::block_in_place(|| cluster.stop_pg());
            Some(Undo::StartPostgres)
        }
        FaultKind::ReceiverDown if receiver.is_up() => {
            receiver.down().await;
            Some(Undo::ReceiverUp)
        }
        _ => None,
    })
}

async fn apply(cluster: &mut Cluster, receiver: &mut Receiver, action: Undo) -> anyhow::Result<()> {
    match action {
        Undo::RestartWorker(i) => cluster.restart_worker(i)?,
        Undo::RestartReplica(i) => cluster.restart_replica(i)?,
        Undo::StartPostgres => tokio::task::block_in_place(|| cluster.start_pg()),
        Undo::ReceiverUp => receiver.up().await?,
        Undo::Thaw(i) => cluster.workers[i].thaw(),
        Undo::Unfill(path) => {
            let _ = std::fs::remove_file(path);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_run_plans_over_a_thousand_faults_the_same_way_for_one_seed() {
        let plan = schedule(&mut Rng::new(16), 1200.0, 4, 1.0);
        assert!(plan.len() >= 1000, "{} faults planned", plan.len());
        let again = schedule(&mut Rng::new(16), 1200.0, 4, 1.0);
        assert_eq!(
            plan.iter()
                .map(|p| (p.at_s, p.kind, p.target))
                .collect::<Vec<_>>(),
            again
                .iter()
                .map(|p| (p.at_s, p.kind, p.target))
                .collect::<Vec<_>>()
        );
        for kind in FaultKind::ALL {
            assert!(plan.iter().any(|p| p.kind == kind), "no {kind:?} planned");
        }
        let outages: Vec<_> = plan
            .iter()
            .filter(|p| p.kind == FaultKind::ReceiverDown)
            .collect();
        assert!(outages.iter().all(|p| (60.0..300.0).contains(&p.hold_s)));
        for pair in outages.windows(2) {
            assert!(
                pair[0].at_s + pair[0].hold_s < pair[1].at_s,
                "outages overlap"
            );
        }
    }

    #[test]
    fn a_short_run_still_plans_every_kind() {
        for seed in 0..50 {
            let plan = schedule(&mut Rng::new(seed), 120.0, 4, 0.1);
            for kind in FaultKind::ALL {
                assert!(
                    plan.iter().any(|p| p.kind == kind),
                    "seed {seed}: no {kind:?}"
                );
            }
            assert!(plan
                .iter()
                .filter(|p| p.kind == FaultKind::WorkerFrozen)
                .all(|p| p.hold_s > LEASE_TTL_S as f64));
        }
    }
}
