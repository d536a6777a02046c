//! The one wrapper every external tool (ffmpeg, ffprobe) runs under.
//!
//! - Children are spawned from one thread that lives as long as the process,
//!   with `PR_SET_PDEATHSIG = SIGKILL`: the kernel sends that signal when the
//!   *spawning thread* exits, so spawning from a short-lived runtime thread would
//!   kill the child early. With one permanent spawner thread the child dies with
//!   the process and never outlives its worker, even after a SIGKILL.
//! - Each child gets its own process group, so a terminal's Ctrl-C reaches the
//!   worker, which decides what happens to its jobs.
//! - Dropping a [`Running`] kills the child; exits are awaited with
//!   `waitid(WNOWAIT)` first, so a kill never reaches a recycled pid.
//! - stderr is kept as a bounded tail for error details.

use std::collections::VecDeque;
use std::io::{self, Read};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, OnceLock};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::oneshot;

/// How much of stderr is kept.
const STDERR_TAIL_BYTES: usize = 64 * 1024;

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
        stderr_tail: String,
    },
    #[error("{program} was stopped")]
    Killed { program: String },
    #[error("{program}: {source}")]
    Io { program: String, source: io::Error },
}

pub struct ToolCommand {
    pub program: String,
    pub args: Vec<String>,
    pub cwd: Option<PathBuf>,
}

impl ToolCommand {
    pub fn new(argv: &[String]) -> ToolCommand {
        ToolCommand {
            program: argv[0].clone(),
            args: argv[1..].to_vec(),
            cwd: None,
        }
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

/// A started tool. Dropping it kills the process.
pub struct Running {
    program: String,
    pid: i32,
    state: Arc<Mutex<ExitState>>,
    exit: Option<oneshot::Receiver<io::Result<ExitStatus>>>,
    stdout: Option<tokio::process::ChildStdout>,
    stderr_tail: Arc<Mutex<VecDeque<u8>>>,
    stderr_done: Option<oneshot::Receiver<()>>,
}

impl ToolCommand {
    pub async fn start(&self) -> Result<Running, ToolError> {
        let mut command = Command::new(&self.program);
        command
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(cwd) = &self.cwd {
            command.current_dir(cwd);
        }
        let parent = std::process::id() as i32;
        // SAFETY: only async-signal-safe calls between fork and exec.
        unsafe {
            command.pre_exec(move || {
                libc::setpgid(0, 0);
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(io::Error::last_os_error());
                }
                // The parent may have died before prctl took effect.
                if libc::getppid() != parent {
                    libc::_exit(1);
                }
                Ok(())
            });
        }
        let program = self.program_name();
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
                while let Ok(n) = stderr.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    let mut tail = tail.lock().unwrap();
                    tail.extend(&buf[..n]);
                    let excess = tail.len().saturating_sub(STDERR_TAIL_BYTES);
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

    fn stderr_text(&self) -> String {
        let tail = self.stderr_tail.lock().unwrap();
        let (a, b) = tail.as_slices();
        let mut bytes = a.to_vec();
        bytes.extend_from_slice(b);
        String::from_utf8_lossy(&bytes).trim().to_string()
    }

    /// Read stdout lines until the process ends; an error if it exits non-zero.
    pub async fn finish(mut self, mut on_line: impl FnMut(&str)) -> Result<ToolOutput, ToolError> {
        if let Some(stdout) = self.stdout.take() {
            let mut lines = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                on_line(&line);
            }
        }
        let status = match self.exit.take() {
            Some(exit) => exit.await.map_err(|_| ToolError::Killed {
                program: self.program.clone(),
            })?,
            None => {
                return Err(ToolError::Killed {
                    program: self.program.clone(),
                })
            }
        }
        .map_err(|source| ToolError::Io {
            program: self.program.clone(),
            source,
        })?;
        if let Some(done) = self.stderr_done.take() {
            let _ = done.await;
        }
        let stderr_tail = self.stderr_text();
        if status.success() {
            return Ok(ToolOutput { stderr_tail });
        }
        use std::os::unix::process::ExitStatusExt;
        if status.signal() == Some(libc::SIGKILL) {
            return Err(ToolError::Killed {
                program: self.program.clone(),
            });
        }
        Err(ToolError::Failed {
            program: self.program.clone(),
            status: status.to_string(),
            stderr_tail,
        })
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
