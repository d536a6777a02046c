//! The autoscaler's decision, as a pure function of what it sees.
//!
//! It starts from the original formula (SPEC §6.7): with `u` unfinished jobs
//! (pending and running), `n` nodes and capacity `n × per_node`, launch when
//! there are no nodes and some backlog, or when the backlog exceeds capacity
//! by more than `overflow_thresh`; launch `floor(overage / per_node)`, at
//! least one. Its defects are fixed: the total never exceeds `max_nodes`
//! (the original capped the launch count at the maximum, not at what was left
//! under it), booting nodes count as capacity (no double launch while they
//! boot), and launches per hour are capped. Scaling down is idleness: a node
//! idle for `max_inactivity` stops (EC2 nodes terminate themselves; feederd
//! stops its local ones), so with no backlog the fleet reaches zero.

use serde::Serialize;

#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
pub struct ScaleInputs {
    /// Unfinished work: tasks PENDING plus tasks leased.
    pub backlog: u64,
    /// Nodes registered and taking jobs.
    pub running: u32,
    /// Nodes launched that have not registered yet.
    pub booting: u32,
    pub per_node: u32,
    pub overflow_thresh: u32,
    pub max_nodes: u32,
    pub launches_last_hour: u32,
    pub max_launches_per_hour: u32,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Decision {
    pub launch: u32,
    pub reason: String,
}

impl Decision {
    fn hold(reason: &str) -> Decision {
        Decision {
            launch: 0,
            reason: reason.into(),
        }
    }
}

pub fn decide(i: &ScaleInputs) -> Decision {
    let n = i.running + i.booting;
    if n >= i.max_nodes {
        return Decision::hold("at the node maximum");
    }
    if i.backlog == 0 {
        return Decision::hold("no backlog");
    }
    let per = u64::from(i.per_node.max(1));
    let capacity = u64::from(n) * per;
    let thresh = if n > 0 {
        u64::from(i.overflow_thresh)
    } else {
        0
    };
    let overage = i.backlog.saturating_sub(capacity + thresh);
    if overage == 0 {
        return Decision::hold("capacity covers the backlog");
    }
    let hourly_left = i.max_launches_per_hour.saturating_sub(i.launches_last_hour);
    if hourly_left == 0 {
        return Decision::hold("launch cap per hour reached");
    }
    let wanted = (overage / per).max(1);
    let launch = wanted
        .min(u64::from(i.max_nodes - n))
        .min(u64::from(hourly_left)) as u32;
    Decision {
        launch,
        reason: format!("backlog {} over capacity {capacity}", i.backlog),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inputs(backlog: u64, running: u32) -> ScaleInputs {
        ScaleInputs {
            backlog,
            running,
            booting: 0,
            per_node: 2,
            overflow_thresh: 2,
            max_nodes: 3,
            launches_last_hour: 0,
            max_launches_per_hour: 100,
        }
    }

    /// The original's table (SPEC §6.7), with its overshoot fixed: the cells
    /// that took the total past 3 now stop at 3.
    #[test]
    fn the_original_table_without_the_overshoot() {
        let columns = [1u64, 2, 3, 4, 5, 6, 7, 8, 9, 10, 20];
        let expected: [[u32; 11]; 4] = [
            [1, 1, 1, 2, 2, 3, 3, 3, 3, 3, 3],
            [0, 0, 0, 0, 1, 1, 1, 2, 2, 2, 2],
            [0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1],
            [0; 11],
        ];
        for (n, row) in expected.iter().enumerate() {
            for (u, want) in columns.iter().zip(row) {
                let got = decide(&inputs(*u, n as u32)).launch;
                assert_eq!(got, *want, "n={n} u={u}");
                assert!(n as u32 + got <= 3);
            }
        }
    }

    #[test]
    fn booting_nodes_count_and_the_hourly_cap_holds() {
        let mut i = inputs(20, 0);
        i.booting = 2;
        assert_eq!(decide(&i).launch, 1);
        let mut i = inputs(20, 0);
        i.max_nodes = 50;
        i.launches_last_hour = 18;
        i.max_launches_per_hour = 20;
        assert_eq!(decide(&i).launch, 2);
        i.launches_last_hour = 20;
        assert_eq!(decide(&i), Decision::hold("launch cap per hour reached"));
    }
}
