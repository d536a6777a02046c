//! `nommer sandbox`: run any command under exactly the confinement a job's
//! tool gets, so an operator can see what a job could do, and tests can prove
//! the sandbox with raw arguments, no option check in the way.

use crate::settings::Settings;
use nommer_media::process::{Confinement, ToolCommand, ToolError};
use nommer_media::sandbox::{Jail, Sandbox};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

pub struct SandboxArgs {
    /// The scratch directory: created if missing, and handed to the sandbox
    /// user as a job's is.
    pub dir: PathBuf,
    pub inputs: Vec<PathBuf>,
    pub max_output: Option<u64>,
    pub max_runtime: Option<u64>,
    pub command: Vec<String>,
}

/// The exit status of a command a limit stopped (it was killed).
const STOPPED: u8 = 128 + 9;

pub async fn run(settings: &Settings, args: SandboxArgs) -> anyhow::Result<u8> {
    let mut wanted = settings.sandbox();
    if let Some(max) = args.max_output {
        wanted.limits.max_output_bytes = max;
    }
    let sandbox = Sandbox::new(&wanted).map_err(|e| anyhow::anyhow!("{e}"))?;
    // The same check nommerd makes of its work_dir.
    sandbox
        .check_work_dir(&args.dir)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let dir = std::fs::canonicalize(&args.dir)?;
    sandbox.hand_over(&dir)?;
    let inputs = args
        .inputs
        .iter()
        .map(std::fs::canonicalize)
        .collect::<Result<Vec<_>, _>>()?;
    let who = match sandbox.identity() {
        Some(id) => format!(", as {} (uid {})", id.name, id.uid),
        None => String::new(),
    };
    eprintln!("nommer sandbox: {}{who}", sandbox.describe());
    let confinement = Confinement {
        sandbox: Arc::new(sandbox),
        jail: Jail {
            scratch: dir,
            inputs,
        },
        max_runtime: args.max_runtime.map(Duration::from_secs),
    };
    let result = ToolCommand::new(&args.command)
        .confined(Some(confinement))
        .run(|line| println!("{line}"))
        .await;
    match result {
        Ok(out) => {
            print_stderr(&out.stderr_tail);
            Ok(0)
        }
        Err(ToolError::Failed {
            exit_code,
            stderr_tail,
            ..
        }) => {
            print_stderr(&stderr_tail);
            Ok(exit_code.clamp(1, 255) as u8)
        }
        Err(ToolError::Limit { code, message, .. }) => {
            eprintln!("nommer sandbox: {code}: {message}");
            Ok(STOPPED)
        }
        Err(ToolError::Killed { program }) => {
            eprintln!("nommer sandbox: {program} was killed");
            Ok(STOPPED)
        }
        Err(e) => Err(e.into()),
    }
}

fn print_stderr(tail: &str) {
    if !tail.is_empty() {
        eprintln!("{tail}");
    }
}
