//! The machines a fleet has started: local nommerd processes or EC2
//! instances, counted, launched and stopped the same way.

use crate::config::{Ec2Config, CLUSTER_TAG};
use crate::ec2::{Ec2Client, LaunchSpec};
use std::collections::BTreeMap;
use std::process::Stdio;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// The node id it registers with (local), or its instance id (EC2).
    pub id: String,
    pub instance_id: Option<String>,
    pub launched_at: SystemTime,
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct FleetError(pub String);

/// nommerd processes that feederd starts on its own machine.
pub struct LocalFleet {
    program: std::path::PathBuf,
    args: Vec<String>,
    env: Vec<(String, String)>,
    prefix: String,
    next: Mutex<u32>,
    children: Mutex<Vec<(Member, tokio::process::Child)>>,
}

impl LocalFleet {
    /// Each child runs `program args... --node-id PREFIX-N`.
    pub fn new(
        program: std::path::PathBuf,
        args: Vec<String>,
        env: Vec<(String, String)>,
        prefix: &str,
    ) -> LocalFleet {
        LocalFleet {
            program,
            args,
            env,
            prefix: prefix.to_string(),
            next: Mutex::new(0),
            children: Mutex::new(Vec::new()),
        }
    }

    /// Living children (the exited are reaped).
    pub fn members(&self) -> Vec<Member> {
        let mut children = self.children.lock().unwrap();
        children.retain_mut(|(_, child)| matches!(child.try_wait(), Ok(None)));
        children.iter().map(|(m, _)| m.clone()).collect()
    }

    pub fn launch(&self, count: u32) -> Result<Vec<Member>, FleetError> {
        let mut launched = Vec::new();
        for _ in 0..count {
            let n = {
                let mut next = self.next.lock().unwrap();
                *next += 1;
                *next
            };
            let id = format!("{}-local-{n}", self.prefix);
            let mut command = tokio::process::Command::new(&self.program);
            command
                .args(&self.args)
                .args(["--node-id", &id])
                .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
                .stdin(Stdio::null())
                .kill_on_drop(false);
            // SAFETY: prctl in the child before exec; async-signal-safe.
            unsafe {
                command.pre_exec(|| {
                    // The worker goes (handing its leases back) if feederd dies.
                    libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
                    Ok(())
                });
            }
            let child = command
                .spawn()
                .map_err(|e| FleetError(format!("cannot start {}: {e}", self.program.display())))?;
            let member = Member {
                id,
                instance_id: None,
                launched_at: SystemTime::now(),
            };
            self.children.lock().unwrap().push((member.clone(), child));
            launched.push(member);
        }
        Ok(launched)
    }

    /// SIGTERM: the worker hands back or finishes its jobs and exits.
    pub fn stop(&self, id: &str) {
        let children = self.children.lock().unwrap();
        for (member, child) in children.iter() {
            if member.id == id {
                if let Some(pid) = child.id() {
                    // SAFETY: kill(2) on our own unreaped child.
                    unsafe { libc::kill(pid as i32, libc::SIGTERM) };
                }
            }
        }
    }

    /// SIGTERM to every child (feederd is stopping).
    pub fn stop_all(&self) {
        for member in self.members() {
            self.stop(&member.id);
        }
    }
}

/// Instances tagged with this cluster's name, in one region.
pub struct Ec2Fleet {
    pub client: Ec2Client,
    pub config: Ec2Config,
    /// Rendered at each launch, so a worker token reloaded on SIGHUP reaches
    /// the instances launched after it.
    pub user_data: Box<dyn Fn() -> String + Send + Sync>,
}

impl Ec2Fleet {
    fn cluster_filter(&self) -> Vec<(&'static str, Vec<String>)> {
        vec![
            ("tag:nommer:cluster", vec![self.config.cluster.clone()]),
            (
                "instance-state-name",
                vec!["pending".into(), "running".into()],
            ),
        ]
    }

    pub async fn members(&self) -> Result<Vec<Member>, FleetError> {
        let instances = self
            .client
            .describe_instances(&self.cluster_filter())
            .await
            .map_err(|e| FleetError(e.to_string()))?;
        Ok(instances
            .into_iter()
            .map(|i| Member {
                launched_at: i
                    .launch_time
                    .as_deref()
                    .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                    .map(|t| {
                        SystemTime::UNIX_EPOCH
                            + Duration::from_millis(t.timestamp_millis().max(0) as u64)
                    })
                    .unwrap_or_else(SystemTime::now),
                instance_id: Some(i.id.clone()),
                id: i.id,
            })
            .collect())
    }

    pub async fn launch(&self, count: u32) -> Result<Vec<Member>, FleetError> {
        let mut tags: BTreeMap<String, String> = self.config.tags.clone();
        tags.insert(CLUSTER_TAG.into(), self.config.cluster.clone());
        tags.entry("Name".into())
            .or_insert_with(|| format!("nommerd-{}", self.config.cluster));
        let spec = LaunchSpec {
            image_id: self.config.ami.clone(),
            instance_type: self.config.instance_type.clone(),
            security_group_ids: self.config.security_group_ids.clone(),
            subnet_id: self.config.subnet_id.clone(),
            key_name: self.config.key_name.clone(),
            iam_instance_profile: self.config.iam_instance_profile.clone(),
            spot: self.config.spot,
            terminate_on_shutdown: true,
            user_data: (self.user_data)(),
            tags,
        };
        let ids = self
            .client
            .run_instances(&spec, count)
            .await
            .map_err(|e| FleetError(e.to_string()))?;
        Ok(ids
            .into_iter()
            .map(|id| Member {
                instance_id: Some(id.clone()),
                id,
                launched_at: SystemTime::now(),
            })
            .collect())
    }

    pub async fn stop(&self, id: &str) -> Result<(), FleetError> {
        self.client
            .terminate_instances(&[id.to_string()])
            .await
            .map_err(|e| FleetError(e.to_string()))
    }
}

/// The fleet feederd scales.
pub enum Fleet {
    Local(LocalFleet),
    Ec2(Box<Ec2Fleet>),
}

impl Fleet {
    pub fn kind(&self) -> &'static str {
        match self {
            Fleet::Local(_) => "local",
            Fleet::Ec2(_) => "ec2",
        }
    }

    pub async fn members(&self) -> Result<Vec<Member>, FleetError> {
        match self {
            Fleet::Local(local) => Ok(local.members()),
            Fleet::Ec2(ec2) => ec2.members().await,
        }
    }

    pub async fn launch(&self, count: u32) -> Result<Vec<Member>, FleetError> {
        match self {
            Fleet::Local(local) => local.launch(count),
            Fleet::Ec2(ec2) => ec2.launch(count).await,
        }
    }

    pub async fn stop(&self, id: &str) -> Result<(), FleetError> {
        match self {
            Fleet::Local(local) => {
                local.stop(id);
                Ok(())
            }
            Fleet::Ec2(ec2) => ec2.stop(id).await,
        }
    }
}
