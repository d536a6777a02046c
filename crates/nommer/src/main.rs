//! `nommer`: the one binary. Daemons (feederd, nommerd), client commands
//! (submit, status, jobs, cancel, nodes), and the one-shot `run` and `demo`.

mod commands;
mod daemons;
mod sandbox;
mod settings;
mod wait;

use clap::{Parser, Subcommand};
use settings::{Overrides, Settings};
use std::path::PathBuf;

#[derive(Parser)]
#[command(
    name = "nommer",
    version,
    about = "media-nommer: distributed media encoding with FFmpeg"
)]
struct Cli {
    /// TOML configuration file (also NOMMER_CONFIG).
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    /// feederd's URL, for workers and client commands.
    #[arg(long, global = true)]
    feederd: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the orchestrator: API, store, leases, webhooks.
    Feederd {
        /// Address to listen on (default 127.0.0.1:8001).
        #[arg(long)]
        listen: Option<String>,
        /// Job store: sqlite://PATH or postgres://USER:PASSWORD@HOST/DB.
        #[arg(long)]
        store: Option<String>,
        /// Also run N workers in this process.
        #[arg(long)]
        local_workers: Option<u32>,
        /// Allow listening beyond loopback without API and worker tokens.
        #[arg(long)]
        insecure: bool,
    },
    /// Run a worker.
    Nommerd {
        /// Jobs run at once (the seed's MAX_ENCODING_JOBS_PER_EC2_INSTANCE, default 2).
        #[arg(long)]
        max_jobs: Option<u32>,
        /// Where jobs get their scratch directories.
        #[arg(long)]
        work_dir: Option<PathBuf>,
        /// This node's id (default: hostname and a random suffix).
        #[arg(long)]
        node_id: Option<String>,
    },
    /// Submit a job file; prints the job id.
    Submit {
        job: PathBuf,
        /// Draw progress until the job ends; exit non-zero unless it FINISHED.
        #[arg(long)]
        wait: bool,
    },
    /// Show a job.
    Status {
        id: String,
        #[arg(long)]
        json: bool,
    },
    /// List jobs, newest first.
    Jobs {
        #[arg(long)]
        state: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: u32,
        /// Keep the table live from the event stream (Ctrl-C ends it); a
        /// line per change when stdout is not a terminal.
        #[arg(long)]
        watch: bool,
    },
    /// Cancel a job.
    Cancel { id: String },
    /// List the worker nodes feederd knows.
    Nodes,
    /// List the presets a job may name.
    Presets,
    /// Run one job with no daemon: a temporary store and an in-process worker.
    Run { job: PathBuf },
    /// Encode a generated test clip end to end with the seed's two-pass example.
    Demo,
    /// Print the effective configuration, secrets redacted.
    Config,
    /// Run a command under exactly the sandbox a job's tool gets.
    Sandbox {
        /// The scratch directory (read-write; created if missing, and handed
        /// to the sandbox user as a job's is).
        #[arg(long)]
        dir: PathBuf,
        /// A read-only input outside DIR (repeatable).
        #[arg(long = "input")]
        inputs: Vec<PathBuf>,
        /// Bytes the command may write (one file, and DIR in all).
        #[arg(long)]
        max_output: Option<u64>,
        /// Seconds the command may run.
        #[arg(long)]
        max_runtime: Option<u64>,
        /// The command and its arguments, after `--`.
        #[arg(last = true, required = true)]
        command: Vec<String>,
    },
}

fn init_logging(default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("NOMMER_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let daemon = matches!(
        cli.command,
        Command::Feederd { .. } | Command::Nommerd { .. }
    );
    init_logging(if daemon { "info" } else { "warn" });
    let mut overrides = Overrides {
        feederd_url: cli.feederd.clone(),
        ..Default::default()
    };
    match &cli.command {
        Command::Feederd {
            listen,
            store,
            local_workers,
            insecure,
        } => {
            overrides.listen = listen.clone();
            overrides.store = store.clone();
            overrides.local_workers = *local_workers;
            overrides.insecure = insecure.then_some(true);
        }
        Command::Nommerd {
            max_jobs,
            work_dir,
            node_id,
        } => {
            overrides.max_encoding_jobs_per_ec2_instance = *max_jobs;
            overrides.work_dir = work_dir.clone();
            overrides.node_id = node_id.clone();
        }
        _ => {}
    }
    if let Some(path) = &cli.config {
        // Workers that feederd starts (the local fleet) read the same file.
        // Set while this process is still single-threaded.
        if let Ok(path) = std::path::absolute(path) {
            std::env::set_var("NOMMER_CONFIG", path);
        }
    }
    let settings = match Settings::load(cli.config.as_deref(), &overrides) {
        Ok(settings) => settings,
        Err(e) => {
            eprintln!("nommer: {e:#}");
            return std::process::ExitCode::from(2);
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("start the runtime");
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Feederd { .. } => daemons::feederd(settings).await.map(|_| 0),
            Command::Nommerd { .. } => daemons::nommerd(settings).await.map(|_| 0),
            Command::Submit { job, wait } => commands::submit(&settings, &job, wait).await,
            Command::Status { id, json } => commands::status(&settings, &id, json).await,
            Command::Jobs {
                state,
                limit,
                watch: true,
            } => commands::watch_jobs(&settings, state.as_deref(), limit).await,
            Command::Jobs { state, limit, .. } => {
                commands::jobs(&settings, state.as_deref(), limit).await
            }
            Command::Cancel { id } => commands::cancel(&settings, &id).await,
            Command::Nodes => commands::nodes(&settings).await,
            Command::Presets => commands::presets(&settings).await,
            Command::Run { job } => commands::run(settings, &job).await,
            Command::Demo => commands::demo(settings).await,
            Command::Config => {
                print!("{}", settings.redacted_toml());
                Ok(0)
            }
            Command::Sandbox {
                dir,
                inputs,
                max_output,
                max_runtime,
                command,
            } => {
                let args = sandbox::SandboxArgs {
                    dir,
                    inputs,
                    max_output,
                    max_runtime,
                    command,
                };
                sandbox::run(&settings, args).await
            }
        }
    });
    match result {
        Ok(code) => std::process::ExitCode::from(code),
        Err(e) => {
            eprintln!("nommer: {e:#}");
            std::process::ExitCode::from(1)
        }
    }
}
