//! The one wrapper every external tool (ffmpeg, ffprobe) runs under.
//!
//! - Children are spawned from one thread that lives as long as the process,
//!   with `PR_SET_PDEATHSIG = SIGKILL`: the kernel sends that signal when the
//!   *spawning thread* exits, so spawning from a short-lived runtime thread would
//!   kill the child early. With one permanent spawner thread the child dies with
//!   the process and never outlives its worker, even after a SIGKILL.
//! - Each child gets its own session and process group, so a terminal's
//!   Ctrl-C reaches the worker, which decides what happens to its jobs, and
//!   the child has no controlling terminal. When the child exits, whatever is
//!   left of its group is killed before the child is reaped (its pid, and so
//!   the group's, cannot be reused until then).
//! - Dropping a [`Running`] kills the child; exits are awaited with
//!   `waitid(WNOWAIT)` first, so a kill never reaches a recycled pid.
//! - stdout and stderr are read in lines of at most 64 KiB; the last 1 MiB
//!   of stderr is kept, and its last 64 KiB become error details.
//! - A confined command ([`Confinement`]) runs in the worker's sandbox
//!   (`sandbox/`), applied between fork and exec, under its limits: a
//!   wall-clock deadline, and the scratch directory's total size, checked
//!   every second. A limit that ends a tool is a [`ToolError::Limit`] with
//!   the limit's own code.

use crate::sandbox::{Jail, Sandbox};
use nommer_model::FailureCode;
use std::collections::VecDeque;
use std::io::{self, Read};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::oneshot;

/// The longest line read from a tool; the rest of a longer one is dropped.
pub const MAX_LINE_BYTES: usize = 64 * 1024;
/// How much of stderr is kept.
const STDERR_KEPT_BYTES: usize = 1024 * 1024;
/// How much of that tail an error carries.
const STDERR_DETAILS_BYTES: usize = 64 * 1024;

type SpawnRequest = (Command, oneshot::Sender<io::Result<Child>>);

fn spawner() -> &'static mpsc::Sender<SpawnRequest> {
    static SPAWNER: OnceLock<mpsc::Sender<SpawnRequest>> = OnceLock::new();
    SPAWNER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<SpawnRequest>();
        std::thread::Builder::new()
            .name("nommer-spawner".into())
            .spawn(move || {
                for (mut command, reply) in rx {
                    let _ = reply.send(command.spawn());
                }
            })
            .expect("spawn the process-spawner thread");
        tx
    })
}

#[derive(Debug, thiserror::Error)]
pub enum ToolError {
    #[error("could not start {program}: {source}")]
    Spawn { program: String, source: io::Error },
    #[error("{program} failed ({status}): {stderr_tail}")]
    Failed {
        program: String,
        status: String,
        /// As a shell reports it: the exit code, or 128 plus the signal.
        exit_code: i32,
        stderr_tail: String,
    },
    #[error("{program} was stopped")]
    Killed { program: String },
    #[error("{program}: {source}")]
    Io { program: String, source: io::Error },
    /// A sandbox limit ended the tool.
    #[error("{code}: {message}")]
    Limit {
        program: String,
        code: FailureCode,
        message: String,
    },
}

/// Run a command in a sandbox, confined to a jail, under a deadline.
#[derive(Clone)]
pub struct Confinement {
    pub sandbox: Arc<Sandbox>,
    pub jail: Jail,
    /// Wall-clock limit for this command.
    pub max_runtime: Option<Duration>,
}

pub struct ToolCommand {
    pub program: String,
    pub args: Vec<String>,
    /// Ignored under a confinement, whose scratch directory is the cwd.
    pub cwd: Option<PathBuf>,
    pub confinement: Option<Confinement>,
    /// Stop the tool when it writes nothing on stdout for this long: ffmpeg's
    /// `-progress` reports every half second while it works.
    pub max_silence: Option<Duration>,
}

impl ToolCommand {
    pub fn new(argv: &[String]) -> ToolCommand {
        ToolCommand {
            program: argv[0].clone(),
            args: argv[1..].to_vec(),
            cwd: None,
            confinement: None,
            max_silence: None,
        }
    }

    pub fn confined(mut self, confinement: Option<Confinement>) -> ToolCommand {
        self.confinement = confinement;
        self
    }

    /// Stop the tool, with `tool_stalled`, once it has been silent on stdout
    /// for `limit`.
    pub fn silent_for_at_most(mut self, limit: Option<Duration>) -> ToolCommand {
        self.max_silence = limit;
        self
    }

    fn program_name(&self) -> String {
        std::path::Path::new(&self.program)
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_else(|| self.program.clone())
    }
}

struct ExitState {
    exited: bool,
}

/// What the watcher of a confined tool checks.
struct Watch {
    deadline: Option<(Instant, Duration)>,
    silence: Option<Duration>,
    output: Option<OutputWatch>,
}

/// The scratch directory, the most a tool may add to it, and what it held
/// before the tool started (the job's source, say, which the tool did not write).
struct OutputWatch {
    dir: PathBuf,
    max: u64,
    before: u64,
}

/// A started tool. Dropping it kills the process.
pub struct Running {
    program: String,
    pid: i32,
    state: Arc<Mutex<ExitState>>,
    exit: Option<oneshot::Receiver<io::Result<ExitStatus>>>,
    stdout: Option<tokio::process::ChildStdout>,
    stderr_tail: Arc<Mutex<VecDeque<u8>>>,
    stderr_done: Option<oneshot::Receiver<()>>,
    watch: Watch,
}

impl ToolCommand {
    pub async fn start(&self) -> Result<Running, ToolError> {
        let program = self.program_name();
        let prepared = match &self.confinement {
            Some(c) => Some(
                c.sandbox
                    .prepare(std::path::Path::new(&self.program), &c.jail)
                    .map_err(|source| ToolError::Spawn {
                        program: program.clone(),
                        source,
                    })?,
            ),
            None => None,
        };
        let mut command = match &prepared {
            Some(prepared) => {
                let mut command = Command::new(&prepared.executable);
                command
                    .arg0(&self.program)
                    .env_clear()
                    .envs(prepared.env.iter().cloned());
                command
            }
            None => Command::new(&self.program),
        };
        command
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let cwd = match &self.confinement {
            Some(c) => Some(&c.jail.scratch),
            None => self.cwd.as_ref(),
        };
        if let Some(cwd) = cwd {
            command.current_dir(cwd);
        }
        let parent = std::process::id() as i32;
        // SAFETY: only async-signal-safe calls between fork and exec.
        unsafe {
            command.pre_exec(move || {
                // Its own session and process group, and no controlling terminal.
                libc::setsid();
                match &prepared {
                    Some(prepared) => prepared.apply_in_child(parent),
                    None => crate::sandbox::die_with(parent),
                }
            });
        }
        let watch = Watch {
            silence: self.max_silence,
            deadline: self
                .confinement
                .as_ref()
                .and_then(|c| c.max_runtime)
                .map(|limit| (Instant::now() + limit, limit)),
            output: self.confinement.as_ref().map(|c| OutputWatch {
                before: crate::sandbox::dir_bytes(&c.jail.scratch),
                dir: c.jail.scratch.clone(),
                max: c.sandbox.limits().max_output_bytes,
            }),
        };
        let (reply, answer) = oneshot::channel();
        spawner()
            .send((command, reply))
            .map_err(|_| ToolError::Spawn {
                program: program.clone(),
                source: io::Error::other("spawner thread is gone"),
            })?;
        let mut child = answer
            .await
            .map_err(|_| ToolError::Spawn {
                program: program.clone(),
                source: io::Error::other("spawner thread is gone"),
            })?
            .map_err(|source| ToolError::Spawn {
                program: program.clone(),
                source,
            })?;

        let pid = child.id() as i32;
        let stdout = child
            .stdout
            .take()
            .map(tokio::process::ChildStdout::from_std)
            .transpose()
            .map_err(|source| ToolError::Io {
                program: program.clone(),
                source,
            })?;
        let stderr_tail = Arc::new(Mutex::new(VecDeque::new()));
        let (stderr_tx, stderr_done) = oneshot::channel();
        if let Some(mut stderr) = child.stderr.take() {
            let tail = stderr_tail.clone();
            std::thread::spawn(move || {
                let mut buf = [0u8; 8192];
                let mut line_len = 0usize;
                while let Ok(n) = stderr.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    let mut tail = tail.lock().unwrap();
                    for &byte in &buf[..n] {
                        // Past MAX_LINE_BYTES a line's bytes are dropped up to its end.
                        if byte == b'\n' {
                            line_len = 0;
                        } else if line_len >= MAX_LINE_BYTES {
                            continue;
                        } else {
                            line_len += 1;
                        }
                        tail.push_back(byte);
                    }
                    let excess = tail.len().saturating_sub(STDERR_KEPT_BYTES);
                    tail.drain(..excess);
                }
                let _ = stderr_tx.send(());
            });
        }
        let state = Arc::new(Mutex::new(ExitState { exited: false }));
        let (exit_tx, exit) = oneshot::channel();
        let wait_state = state.clone();
        std::thread::spawn(move || {
            // Wait without reaping, mark exited, then reap: kill() never races a reused pid.
            let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
            unsafe {
                libc::waitid(
                    libc::P_PID,
                    pid as libc::id_t,
                    &mut info,
                    libc::WEXITED | libc::WNOWAIT,
                )
            };
            // The zombie still holds the group's id: nothing else can have it.
            unsafe { libc::kill(-pid, libc::SIGKILL) };
            wait_state.lock().unwrap().exited = true;
            let _ = exit_tx.send(child.wait());
        });
        Ok(Running {
            program,
            pid,
            state,
            exit: Some(exit),
            stdout,
            stderr_tail,
            stderr_done: Some(stderr_done),
            watch,
        })
    }

    /// Run to completion, feeding stdout lines to `on_line`.
    pub async fn run(&self, on_line: impl FnMut(&str)) -> Result<ToolOutput, ToolError> {
        self.start().await?.finish(on_line).await
    }
}

pub struct ToolOutput {
    pub stderr_tail: String,
}

impl Running {
    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// Kill the process group now (idempotent; no-op once exited).
    pub fn kill(&self) {
        let state = self.state.lock().unwrap();
        if !state.exited {
            unsafe {
                libc::kill(-self.pid, libc::SIGKILL);
                libc::kill(self.pid, libc::SIGKILL);
            }
        }
    }

    /// The end of stderr, at most `max` bytes of it.
    fn stderr_text(&self, max: usize) -> String {
        let tail = self.stderr_tail.lock().unwrap();
        let skip = tail.len().saturating_sub(max);
        let bytes: Vec<u8> = tail.iter().skip(skip).copied().collect();
        String::from_utf8_lossy(&bytes).trim().to_string()
    }

    /// A limit the watcher enforces, if one is passed now.
    async fn limit_passed(&self) -> Option<(FailureCode, String)> {
        if let Some((deadline, limit)) = self.watch.deadline {
            if Instant::now() >= deadline {
                return Some((
                    FailureCode::RuntimeExceeded,
                    format!(
                        "{} ran past its limit of {} s and was stopped",
                        self.program,
                        limit.as_secs_f64()
                    ),
                ));
            }
        }
        if let Some(watch) = &self.watch.output {
            let dir = watch.dir.clone();
            let used = tokio::task::spawn_blocking(move || crate::sandbox::dir_bytes(&dir))
                .await
                .unwrap_or(0);
            let written = used.saturating_sub(watch.before);
            if written > watch.max {
                return Some((
                    FailureCode::OutputTooLarge,
                    format!(
                        "{} wrote {written} bytes into the scratch directory, more than max_output_bytes ({}), and was stopped",
                        self.program, watch.max
                    ),
                ));
            }
        }
        None
    }

    /// Read stdout lines until the process ends; an error if it exits
    /// non-zero or passes a limit.
    pub async fn finish(mut self, mut on_line: impl FnMut(&str)) -> Result<ToolOutput, ToolError> {
        let killed = || ToolError::Killed {
            program: self.program.clone(),
        };
        let mut exit = self.exit.take().ok_or_else(killed)?;
        let mut lines = self.stdout.take().map(BoundedLines::new);
        let mut passed: Option<(FailureCode, String)> = None;
        let watching = self.watch.deadline.is_some()
            || self.watch.output.is_some()
            || self.watch.silence.is_some();
        let mut last_line = Instant::now();
        let mut tick = tokio::time::interval(crate::sandbox::OUTPUT_CHECK_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let deadline = self
            .watch
            .deadline
            .map(|(at, _)| tokio::time::Instant::from_std(at));
        // Limits hold until the process exits, even after it closes stdout.
        let exited = loop {
            tokio::select! {
                line = next_line(&mut lines) => match line {
                    Some(line) => {
                        last_line = Instant::now();
                        on_line(&line);
                    }
                    None => lines = None,
                },
                exited = &mut exit => break exited,
                _ = tick.tick(), if watching && passed.is_none() => {
                    let silent = self.watch.silence.filter(|limit| last_line.elapsed() >= *limit);
                    let hit = match silent {
                        Some(limit) => Some((
                            FailureCode::ToolStalled,
                            format!(
                                "{} reported nothing for {} s and was stopped",
                                self.program,
                                limit.as_secs_f64()
                            ),
                        )),
                        None => self.limit_passed().await,
                    };
                    if let Some(hit) = hit {
                        passed = Some(hit);
                        self.kill();
                    }
                }
                _ = sleep_until(deadline), if passed.is_none() => {
                    passed = self.limit_passed().await;
                    self.kill();
                }
            }
        };
        // What the tool wrote just before it exited.
        if let Some(lines) = lines.as_mut() {
            while let Ok(Some(line)) = lines.next_line().await {
                on_line(&line);
            }
        }
        let status = exited
            .map_err(|_| killed())?
            .map_err(|source| ToolError::Io {
                program: self.program.clone(),
                source,
            })?;
        if let Some(done) = self.stderr_done.take() {
            let _ = done.await;
        }
        let stderr_tail = self.stderr_text(STDERR_DETAILS_BYTES);
        let program = self.program.clone();
        if let Some((code, message)) = passed {
            return Err(ToolError::Limit {
                program,
                code,
                message,
            });
        }
        if status.success() {
            return Ok(ToolOutput { stderr_tail });
        }
        use std::os::unix::process::ExitStatusExt;
        if status.signal() == Some(libc::SIGKILL) {
            return Err(ToolError::Killed { program });
        }
        if let Some(code) = self.watch.classify(status, &stderr_tail) {
            let message = match code {
                FailureCode::OutputTooLarge => {
                    format!("{program} wrote a file larger than max_output_bytes")
                }
                _ => format!("{program} ran out of memory under max_tool_memory_bytes"),
            };
            return Err(ToolError::Limit {
                program,
                code,
                message: format!(
                    "{message}: {}",
                    nommer_model::tail_chars(&stderr_tail, 2000)
                ),
            });
        }
        Err(ToolError::Failed {
            program,
            status: status.to_string(),
            exit_code: status
                .code()
                .unwrap_or_else(|| 128 + status.signal().unwrap_or(0)),
            stderr_tail,
        })
    }
}

impl Watch {
    /// Which limit a failed exit shows, where it can be told apart from a
    /// crash: SIGXFSZ or EFBIG for the file size, ENOMEM for memory.
    fn classify(&self, status: ExitStatus, stderr: &str) -> Option<FailureCode> {
        use std::os::unix::process::ExitStatusExt;
        self.output.as_ref()?;
        if status.signal() == Some(libc::SIGXFSZ) || stderr.contains("File too large") {
            return Some(FailureCode::OutputTooLarge);
        }
        if stderr.contains("Cannot allocate memory") {
            return Some(FailureCode::MemoryExceeded);
        }
        None
    }
}

/// The next stdout line, `None` at its end; never resolves once stdout is gone.
async fn next_line<R: tokio::io::AsyncRead + Unpin>(
    lines: &mut Option<BoundedLines<R>>,
) -> Option<String> {
    match lines {
        Some(lines) => lines.next_line().await.ok().flatten(),
        None => std::future::pending().await,
    }
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Lines of at most [`MAX_LINE_BYTES`]; the rest of a longer line is dropped.
struct BoundedLines<R> {
    reader: BufReader<R>,
    line: Vec<u8>,
}

impl<R: tokio::io::AsyncRead + Unpin> BoundedLines<R> {
    fn new(reader: R) -> Self {
        BoundedLines {
            reader: BufReader::new(reader),
            line: Vec::new(),
        }
    }

    /// Cancel-safe: a partly read line stays in `self.line`.
    async fn next_line(&mut self) -> io::Result<Option<String>> {
        loop {
            let buf = self.reader.fill_buf().await?;
            if buf.is_empty() {
                if self.line.is_empty() {
                    return Ok(None);
                }
                return Ok(Some(self.take_line()));
            }
            let (used, ended) = match buf.iter().position(|&b| b == b'\n') {
                Some(at) => (at + 1, Some(at)),
                None => (buf.len(), None),
            };
            let content = &buf[..ended.unwrap_or(used)];
            let room = MAX_LINE_BYTES.saturating_sub(self.line.len());
            self.line
                .extend_from_slice(&content[..content.len().min(room)]);
            self.reader.consume(used);
            if ended.is_some() {
                return Ok(Some(self.take_line()));
            }
        }
    }

    fn take_line(&mut self) -> String {
        let line = String::from_utf8_lossy(&self.line)
            .trim_end_matches('\r')
            .to_string();
        self.line.clear();
        line
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.kill();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cmd(args: &[&str]) -> ToolCommand {
        ToolCommand::new(&args.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[tokio::test]
    async fn collects_stdout_and_stderr_tail() {
        let mut lines = Vec::new();
        let out = cmd(&["sh", "-c", "echo a; echo b; echo oops >&2"])
            .run(|l| lines.push(l.to_string()))
            .await
            .unwrap();
        assert_eq!(lines, ["a", "b"]);
        assert_eq!(out.stderr_tail, "oops");
    }

    #[tokio::test]
    async fn long_lines_are_cut_at_the_line_limit() {
        let mut lines = Vec::new();
        let script = format!(
            "head -c {} /dev/zero | tr '\\0' x; echo; echo after",
            MAX_LINE_BYTES * 3
        );
        cmd(&["sh", "-c", &script])
            .run(|l| lines.push(l.len()))
            .await
            .unwrap();
        assert_eq!(lines, [MAX_LINE_BYTES, 5]);
    }

    #[tokio::test]
    async fn failure_carries_stderr() {
        let err = cmd(&["sh", "-c", "echo broken >&2; exit 3"])
            .run(|_| {})
            .await
            .err()
            .unwrap();
        match err {
            ToolError::Failed {
                stderr_tail,
                status,
                ..
            } => {
                assert_eq!(stderr_tail, "broken");
                assert!(status.contains('3'));
            }
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn drop_kills_the_child() {
        let running = cmd(&["sleep", "30"]).start().await.unwrap();
        let pid = running.pid();
        drop(running);
        for _ in 0..50 {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            if unsafe { libc::kill(pid, 0) } != 0 {
                return;
            }
        }
        panic!("child {pid} still alive");
    }

    #[tokio::test]
    async fn missing_program_is_a_spawn_error() {
        let err = cmd(&["/nonexistent/tool"]).run(|_| {}).await.err().unwrap();
        assert!(matches!(err, ToolError::Spawn { .. }));
    }
}
