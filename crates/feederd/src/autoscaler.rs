//! The autoscaler: every `feederd_auto_scale_interval`, on the leader only,
//! it looks at the backlog and the fleet, launches what the policy says
//! (`nommer_fleet::policy`), stops idle local workers, and terminates zombies:
//! machines that never registered within `boot_grace`, or whose heartbeats
//! stopped for `zombie_after`. Their leases expire and their jobs are retried
//! elsewhere. Every decision is logged with its inputs and kept for
//! `GET /v1/fleet`.

use crate::AppState;
use nommer_fleet::members::{Fleet, Member};
use nommer_fleet::policy::{decide, Decision, ScaleInputs};
use nommer_model::rfc3339;
use serde::Serialize;
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const KEPT: usize = 100;

#[derive(Debug, Clone)]
pub struct FleetSettings {
    pub max_nodes: u32,
    pub per_node: u32,
    pub overflow_thresh: u32,
    pub interval: Duration,
    pub max_launches_per_hour: u32,
    /// Local workers idle this long are stopped (EC2 ones stop themselves).
    pub max_inactivity: Duration,
    pub boot_grace: Duration,
    pub zombie_after: Duration,
}

#[derive(Debug, Clone, Serialize)]
pub struct DecisionRecord {
    pub at: String,
    pub inputs: ScaleInputs,
    pub decision: Decision,
}

#[derive(Debug, Clone, Serialize)]
pub struct FleetEvent {
    pub at: String,
    pub node: String,
    /// launched, stopped_idle, terminated_itself, zombie_terminated, launch_failed
    pub event: String,
    pub details: String,
}

pub struct FleetState {
    pub fleet: Fleet,
    pub settings: FleetSettings,
    decisions: Mutex<VecDeque<DecisionRecord>>,
    events: Mutex<VecDeque<FleetEvent>>,
    launches: Mutex<VecDeque<SystemTime>>,
    idle_since: Mutex<HashMap<String, SystemTime>>,
    seen_leaving: Mutex<HashSet<String>>,
}

fn now_text() -> String {
    rfc3339(nommer_model::now_ms())
}

fn ms(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH).unwrap_or_default().as_millis() as i64
}

impl FleetState {
    pub fn new(fleet: Fleet, settings: FleetSettings) -> FleetState {
        FleetState {
            fleet,
            settings,
            decisions: Mutex::default(),
            events: Mutex::default(),
            launches: Mutex::default(),
            idle_since: Mutex::default(),
            seen_leaving: Mutex::default(),
        }
    }

    fn event(&self, node: &str, event: &str, details: String) {
        tracing::warn!(node = %node, event, details = %details, "fleet event");
        let mut events = self.events.lock().unwrap();
        events.push_back(FleetEvent {
            at: now_text(),
            node: node.to_string(),
            event: event.to_string(),
            details,
        });
        while events.len() > KEPT {
            events.pop_front();
        }
    }

    pub fn decisions(&self) -> Vec<DecisionRecord> {
        self.decisions.lock().unwrap().iter().cloned().collect()
    }

    pub fn events(&self) -> Vec<FleetEvent> {
        self.events.lock().unwrap().iter().cloned().collect()
    }
}

/// The autoscaler's loop: one [`tick`] per `feederd_auto_scale_interval`.
pub struct Autoscaler(pub Arc<FleetState>);

#[async_trait::async_trait]
impl crate::loops::Worker for Autoscaler {
    fn name(&self) -> &'static str {
        "autoscaler"
    }

    async fn work(&mut self, state: &AppState) -> anyhow::Result<crate::loops::Next> {
        tick(state, &self.0).await?;
        Ok(crate::loops::Next::Idle(self.0.settings.interval))
    }
}

async fn tick(state: &AppState, fleet: &FleetState) -> anyhow::Result<()> {
    let s = &fleet.settings;
    let members = fleet.fleet.members().await?;
    let nodes = state.store.list_nodes().await?;
    let now = SystemTime::now();
    let now_ms = ms(now);
    let (mut running, mut booting) = (0u32, 0u32);
    for member in &members {
        let node = nodes.iter().find(|n| match &member.instance_id {
            Some(instance) => n.instance_id.as_deref() == Some(instance.as_str()),
            None => n.id == member.id,
        });
        let age = now.duration_since(member.launched_at).unwrap_or_default();
        let Some(node) = node else {
            if age > s.boot_grace {
                zombie(
                    fleet,
                    member,
                    format!("never registered in {} s", age.as_secs()),
                )
                .await;
            } else {
                booting += 1;
            }
            continue;
        };
        let silent = Duration::from_millis((now_ms - node.last_heartbeat_at).max(0) as u64);
        if node.state.has_left() {
            if fleet.seen_leaving.lock().unwrap().insert(member.id.clone()) {
                let event = if node.state == nommer_model::NodeState::Terminated {
                    "terminated_itself"
                } else {
                    "left"
                };
                fleet.event(
                    &member.id,
                    event,
                    format!("the node reported {}", node.state),
                );
            }
            if silent > s.zombie_after {
                zombie(
                    fleet,
                    member,
                    format!("still up {} s after it said goodbye", silent.as_secs()),
                )
                .await;
            }
            continue;
        }
        if silent > s.zombie_after {
            zombie(
                fleet,
                member,
                format!("no heartbeat for {} s", silent.as_secs()),
            )
            .await;
            continue;
        }
        running += 1;
        if matches!(fleet.fleet, Fleet::Local(_)) {
            stop_if_idle(fleet, member, node.running_jobs, now).await;
        }
    }

    // The backlog is work, not jobs: a job of many tasks asks for many slots.
    let tasks = state.store.count_tasks().await?;
    let backlog = tasks.pending + tasks.running;
    let launches_last_hour = {
        let mut launches = fleet.launches.lock().unwrap();
        while launches
            .front()
            .is_some_and(|t| now.duration_since(*t).unwrap_or_default() > Duration::from_secs(3600))
        {
            launches.pop_front();
        }
        launches.len() as u32
    };
    let inputs = ScaleInputs {
        backlog,
        running,
        booting,
        per_node: s.per_node,
        overflow_thresh: s.overflow_thresh,
        max_nodes: s.max_nodes,
        launches_last_hour,
        max_launches_per_hour: s.max_launches_per_hour,
    };
    let decision = decide(&inputs);
    if decision.launch > 0 {
        tracing::info!(fleet = fleet.fleet.kind(), backlog, running, booting, capacity = (running + booting) * s.per_node, launch = decision.launch, reason = %decision.reason, "autoscaler launching");
        match fleet.fleet.launch(decision.launch).await {
            Ok(launched) => {
                fleet
                    .launches
                    .lock()
                    .unwrap()
                    .extend(launched.iter().map(|_| now));
                for member in &launched {
                    fleet.event(&member.id, "launched", decision.reason.clone());
                }
            }
            Err(e) => fleet.event("-", "launch_failed", e.to_string()),
        }
    } else {
        tracing::debug!(fleet = fleet.fleet.kind(), backlog, running, booting, reason = %decision.reason, "autoscaler holding");
    }
    let mut decisions = fleet.decisions.lock().unwrap();
    decisions.push_back(DecisionRecord {
        at: now_text(),
        inputs,
        decision,
    });
    while decisions.len() > KEPT {
        decisions.pop_front();
    }
    Ok(())
}

async fn zombie(fleet: &FleetState, member: &Member, why: String) {
    match fleet.fleet.stop(&member.id).await {
        Ok(()) => fleet.event(&member.id, "zombie_terminated", why),
        Err(e) => fleet.event(&member.id, "zombie_terminate_failed", format!("{why}: {e}")),
    }
}

async fn stop_if_idle(fleet: &FleetState, member: &Member, running_jobs: u32, now: SystemTime) {
    let idle_for = {
        let mut idle = fleet.idle_since.lock().unwrap();
        if running_jobs > 0 {
            idle.remove(&member.id);
            return;
        }
        let since = *idle.entry(member.id.clone()).or_insert(now);
        let idle_for = now.duration_since(since).unwrap_or_default();
        if idle_for <= fleet.settings.max_inactivity {
            return;
        }
        idle.remove(&member.id);
        idle_for
    };
    if fleet.fleet.stop(&member.id).await.is_ok() {
        fleet.event(
            &member.id,
            "stopped_idle",
            format!("idle for {} s", idle_for.as_secs()),
        );
    }
}

/// `GET /v1/fleet`: the fleet's members, recent decisions and events.
/// The fleet this feederd scales: its kind, members and recent decisions.
#[utoipa::path(get, path = "/v1/fleet", tag = "nodes", responses((status = 200, body = Object)))]
pub async fn fleet_view(
    axum::extract::State(state): axum::extract::State<AppState>,
) -> crate::error::ApiResult<axum::Json<serde_json::Value>> {
    let Some(fleet) = &state.fleet else {
        return Ok(axum::Json(serde_json::json!({"fleet": "static"})));
    };
    let members: Vec<serde_json::Value> = fleet
        .fleet
        .members()
        .await
        .unwrap_or_default()
        .iter()
        .map(|m| {
            serde_json::json!({"id": m.id, "instance_id": m.instance_id, "launched_at": rfc3339(ms(m.launched_at))})
        })
        .collect();
    let s = &fleet.settings;
    Ok(axum::Json(serde_json::json!({
        "fleet": fleet.fleet.kind(),
        "leader": state.leadership.is_leader(),
        "max_nodes": s.max_nodes,
        "per_node": s.per_node,
        "overflow_thresh": s.overflow_thresh,
        "interval_s": s.interval.as_secs(),
        "max_launches_per_hour": s.max_launches_per_hour,
        "members": members,
        "decisions": fleet.decisions(),
        "events": fleet.events(),
    })))
}
