//! The autoscaler on a simulated fleet, driven by bursty backlog traces: each
//! tick (one `feederd_auto_scale_interval`), jobs arrive, idle slots take
//! pending jobs, the policy decides, launched nodes boot for a while, and
//! nodes idle for `max_inactivity` stop. Prints the table of every tick.

use nommer_fleet::policy::{decide, ScaleInputs};

const PER_NODE: u32 = 2;
const MAX_NODES: u32 = 5;
const BOOT_TICKS: u32 = 2;
const JOB_TICKS: u32 = 3;
const IDLE_TICKS: u32 = 4;

struct Node {
    booting_left: u32,
    jobs: Vec<u32>,
    idle_for: u32,
}

struct Row {
    tick: usize,
    backlog: u64,
    running: u32,
    booting: u32,
    launched: u32,
    stopped: u32,
}

fn simulate(arrivals: &[u32]) -> Vec<Row> {
    let mut nodes: Vec<Node> = Vec::new();
    let mut pending: u64 = 0;
    let mut launches: Vec<usize> = Vec::new();
    let mut rows = Vec::new();
    for tick in 0..arrivals.len() + 40 {
        pending += u64::from(arrivals.get(tick).copied().unwrap_or(0));
        for node in &mut nodes {
            if node.booting_left > 0 {
                node.booting_left -= 1;
                continue;
            }
            node.jobs.iter_mut().for_each(|left| *left -= 1);
            node.jobs.retain(|left| *left > 0);
            while node.jobs.len() < PER_NODE as usize && pending > 0 {
                node.jobs.push(JOB_TICKS);
                pending -= 1;
            }
            node.idle_for = if node.jobs.is_empty() {
                node.idle_for + 1
            } else {
                0
            };
        }
        let before = nodes.len();
        nodes.retain(|n| n.booting_left > 0 || n.idle_for < IDLE_TICKS);
        let stopped = (before - nodes.len()) as u32;
        let running = nodes.iter().filter(|n| n.booting_left == 0).count() as u32;
        let booting = nodes.len() as u32 - running;
        let busy: u64 = nodes.iter().map(|n| n.jobs.len() as u64).sum();
        let inputs = ScaleInputs {
            backlog: pending + busy,
            running,
            booting,
            per_node: PER_NODE,
            overflow_thresh: 2,
            max_nodes: MAX_NODES,
            launches_last_hour: launches.iter().filter(|t| tick - **t < 60).count() as u32,
            max_launches_per_hour: 30,
        };
        let decision = decide(&inputs);
        for _ in 0..decision.launch {
            nodes.push(Node {
                booting_left: BOOT_TICKS,
                jobs: Vec::new(),
                idle_for: 0,
            });
            launches.push(tick);
        }
        rows.push(Row {
            tick,
            backlog: inputs.backlog,
            running,
            booting,
            launched: decision.launch,
            stopped,
        });
    }
    rows
}

fn check(name: &str, arrivals: &[u32]) {
    let rows = simulate(arrivals);
    eprintln!("{name}\ntime  backlog  running  booting  decision");
    for r in &rows {
        let decision = match (r.launched, r.stopped) {
            (0, 0) => "hold".to_string(),
            (l, 0) => format!("launch {l}"),
            (0, s) => format!("{s} stopped idle"),
            (l, s) => format!("launch {l}, {s} stopped"),
        };
        eprintln!(
            "{:>4}  {:>7}  {:>7}  {:>7}  {decision}",
            r.tick, r.backlog, r.running, r.booting
        );
    }
    for r in &rows {
        assert!(
            r.running + r.booting + r.launched <= MAX_NODES,
            "{name}: over the maximum at {}",
            r.tick
        );
        assert!(
            r.launched == 0 || r.stopped == 0,
            "{name}: launched and stopped at once at {}",
            r.tick
        );
    }
    // No flapping: a launch never comes within the idle period after a stop
    // unless new work arrived in between.
    for (i, r) in rows.iter().enumerate().filter(|(_, r)| r.launched > 0) {
        for earlier in rows[i.saturating_sub(IDLE_TICKS as usize)..i].iter() {
            if earlier.stopped > 0 {
                let arrived: u32 = arrivals
                    .get(earlier.tick..=r.tick)
                    .map_or(0, |a| a.iter().sum());
                assert!(arrived > 0, "{name}: flapped at {}", r.tick);
            }
        }
    }
    let last = rows.last().unwrap();
    assert_eq!(last.backlog, 0, "{name}: work left");
    assert_eq!(last.running + last.booting, 0, "{name}: did not reach zero");
    assert!(
        rows.iter().any(|r| r.launched > 0),
        "{name}: never scaled up"
    );
}

#[test]
fn bursts_scale_up_to_the_maximum_and_back_to_zero() {
    check("one burst", &[40]);
    check(
        "bursts with gaps",
        &[12, 0, 0, 0, 0, 0, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 25, 1, 1, 1],
    );
    check("a trickle", &[1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1]);
    check("steady then silence", &[3; 20]);
}
