//! The tool sandbox, proved with raw arguments through `nommer sandbox` (no
//! option check in the way), and through real jobs: what a job's ffmpeg can
//! reach, and the limits that end it.

mod common;

use common::*;
use serde_json::json;
use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// `nommer sandbox --dir DIR [extra...] -- argv...`
fn sandboxed(dir: &Path, extra: &[&str], argv: &[&str]) -> Output {
    Command::new(BIN)
        .arg("sandbox")
        .arg("--dir")
        .arg(dir)
        .args(extra)
        .arg("--")
        .args(argv)
        .output()
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).to_string()
}

fn is_root() -> bool {
    unsafe { libc::geteuid() == 0 }
}

/// A scratch directory for one test, in a parent the sandbox user can pass.
fn scratch() -> (tempfile::TempDir, std::path::PathBuf) {
    let root = traversable_tempdir();
    let dir = root.path().join("scratch");
    (root, dir)
}

#[test]
fn an_encode_inside_the_directory_works_and_the_node_says_what_it_enforces() {
    let (_root, dir) = scratch();
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(clip("clip.mp4", 2, "320x240"), dir.join("in.mp4")).unwrap();
    let said = ffmpeg_works(
        &dir,
        &[
            "-i",
            "in.mp4",
            "-c:v",
            "libx264",
            "-vf",
            "scale=160:-2,drawtext=text=hi",
            "-c:a",
            "aac",
            "out.mp4",
        ],
    );
    let probe = probe(&dir.join("out.mp4"));
    assert_eq!(stream(&probe, "video")["width"], 160);
    assert_eq!(stream(&probe, "audio")["codec_name"], "aac");
    // This kernel has Landlock ABI 6 or later: everything is enforced.
    assert!(
        said.contains("landlock-abi-") && said.contains("+net+scope+seccomp"),
        "{said}"
    );
}

#[test]
fn movie_and_amovie_cannot_read_files_outside() {
    let (_root, dir) = scratch();
    let outside = clip("outside.mp4", 1, "160x120");
    let movie = format!("movie={}", outside.display());
    for graph in ["amovie=/etc/passwd", &movie] {
        let said = ffmpeg_fails(
            &dir,
            &[
                "-f",
                "lavfi",
                "-i",
                graph,
                "-frames:v",
                "1",
                "-f",
                "framemd5",
                "leak.txt",
            ],
        );
        assert!(said.contains("Permission denied"), "{said}");
        assert!(!dir.join("leak.txt").exists());
    }
    // The same graph unconfined reads the file: the refusal is the sandbox's.
    let open = Command::new("ffmpeg")
        .args([
            "-nostdin",
            "-loglevel",
            "error",
            "-f",
            "lavfi",
            "-i",
            &movie,
        ])
        .args(["-frames:v", "1", "-f", "null", "-"])
        .output()
        .unwrap();
    assert!(open.status.success(), "{}", text(&open.stderr));
    // Named as a read-only input, it may be read, and still not written.
    let out = sandboxed(
        &dir,
        &["--input", &outside.display().to_string()],
        &[
            "sh",
            "-c",
            &format!(
                "read -r line < {0} && echo read; echo x >> {0}",
                outside.display()
            ),
        ],
    );
    assert_eq!(text(&out.stdout).trim(), "read", "{}", text(&out.stderr));
    assert!(!out.status.success());
}

#[test]
fn writes_outside_the_directory_fail() {
    let (root, dir) = scratch();
    let beside = root.path().join("beside.txt");
    let under_tmp = std::env::temp_dir().join(format!("nommer-escape-{}", std::process::id()));
    for target in [&beside, &under_tmp] {
        let out = sandboxed(
            &dir,
            &[],
            &["sh", "-c", &format!("echo x > {}", target.display())],
        );
        assert!(!out.status.success());
        assert!(!target.exists(), "{} was written", target.display());
        let path = target.display().to_string();
        ffmpeg_fails(
            &dir,
            &[
                "-f",
                "lavfi",
                "-i",
                "testsrc=duration=1",
                "-f",
                "mp4",
                &path,
            ],
        );
        assert!(
            !target.exists(),
            "{} was written by ffmpeg",
            target.display()
        );
    }
}

#[test]
fn no_symlink_fifo_or_socket_can_be_made_even_in_the_directory() {
    let (_root, dir) = scratch();
    for argv in [
        vec!["ln", "-s", "/etc/shadow", "output.mp4"],
        vec!["mkfifo", "output.mp4"],
    ] {
        let out = sandboxed(&dir, &[], &argv);
        assert!(!out.status.success(), "{argv:?} worked");
        assert!(
            !dir.join("output.mp4").exists() && dir.join("output.mp4").symlink_metadata().is_err()
        );
    }
    // Plain files and directories are fine.
    let out = sandboxed(&dir, &[], &["mkdir", "-p", "a/b"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(dir.join("a/b").is_dir());
}

/// Run ffmpeg with `args` in the sandbox; it must fail. Its stderr.
fn ffmpeg_fails(dir: &Path, args: &[&str]) -> String {
    let out = ffmpeg_in(dir, args);
    assert!(!out.status.success(), "ffmpeg {args:?} succeeded");
    text(&out.stderr)
}

/// Run ffmpeg with `args` in the sandbox, quietly; it must succeed. Its stderr.
fn ffmpeg_works(dir: &Path, args: &[&str]) -> String {
    let quiet: Vec<&str> = ["-loglevel", "error"].iter().chain(args).copied().collect();
    let out = ffmpeg_in(dir, &quiet);
    assert!(out.status.success(), "{}", text(&out.stderr));
    text(&out.stderr)
}

fn ffmpeg_in(dir: &Path, args: &[&str]) -> Output {
    let argv: Vec<&str> = ["ffmpeg", "-nostdin"].iter().chain(args).copied().collect();
    sandboxed(dir, &[], &argv)
}

/// The tool has exited, so anything it sent would be queued by now.
fn nothing_arrived<T: std::fmt::Debug>(received: std::io::Result<T>) {
    assert!(
        matches!(&received, Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
        "something came through: {received:?}"
    );
}

#[test]
fn a_tcp_connect_to_a_loopback_listener_fails() {
    let (_root, dir) = scratch();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("tcp://{}", listener.local_addr().unwrap());
    let said = ffmpeg_fails(&dir, &["-i", &url, "-f", "null", "-"]);
    assert!(said.contains("Operation not permitted"), "{said}");
    listener.set_nonblocking(true).unwrap();
    nothing_arrived(listener.accept());
}

#[test]
fn a_udp_send_fails() {
    let (_root, dir) = scratch();
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let url = format!("udp://{}", socket.local_addr().unwrap());
    ffmpeg_fails(
        &dir,
        &["-f", "lavfi", "-i", "sine=duration=1", "-f", "mpegts", &url],
    );
    socket.set_nonblocking(true).unwrap();
    nothing_arrived(socket.recv(&mut [0u8; 2048]));
}

#[test]
fn a_unix_socket_outside_cannot_be_reached() {
    let (root, dir) = scratch();
    let path = root.path().join("service.sock");
    let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
    let url = format!("unix:{}", path.display());
    ffmpeg_fails(&dir, &["-i", &url, "-f", "null", "-"]);
    listener.set_nonblocking(true).unwrap();
    nothing_arrived(listener.accept());
}

#[test]
fn another_program_cannot_be_started_nor_a_process_made() {
    let (_root, dir) = scratch();
    // exec of another program, in place of the shell.
    let out = sandboxed(&dir, &[], &["sh", "-c", "exec ls /"]);
    assert!(!out.status.success());
    assert!(text(&out.stdout).is_empty(), "{}", text(&out.stdout));
    assert!(
        text(&out.stderr).contains("Permission denied"),
        "{}",
        text(&out.stderr)
    );
    // A child process: the shell cannot fork, so nothing can outlive the tool.
    let out = sandboxed(
        &dir,
        &[],
        &["sh", "-c", "(echo in a subshell); echo after $?"],
    );
    assert!(
        !text(&out.stdout).contains("in a subshell"),
        "{}",
        text(&out.stdout)
    );
    assert!(text(&out.stderr).contains("fork"), "{}", text(&out.stderr));
    // The shell itself runs, and so do threads (x264 makes several).
    let out = sandboxed(&dir, &[], &["sh", "-c", "echo builtin"]);
    assert_eq!(text(&out.stdout).trim(), "builtin");
    ffmpeg_works(
        &dir,
        &[
            "-f",
            "lavfi",
            "-i",
            "testsrc=duration=1",
            "-c:v",
            "libx264",
            "-threads",
            "4",
            "-f",
            "null",
            "-",
        ],
    );
}

#[test]
fn the_tool_runs_unprivileged_with_a_clean_environment() {
    let (_root, dir) = scratch();
    let out = sandboxed(&dir, &[], &["id", "-u"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let uid: u32 = text(&out.stdout).trim().parse().unwrap();
    let expected = if is_root() {
        65534 // nobody
    } else {
        unsafe { libc::geteuid() }
    };
    assert_eq!(uid, expected);

    let out = Command::new(BIN)
        .args(["sandbox", "--dir"])
        .arg(&dir)
        .args(["--", "env"])
        .env("NOMMER_WORKER_TOKEN", "worker-secret")
        .env("AWS_SECRET_ACCESS_KEY", "aws-secret")
        .env("AWS_ACCESS_KEY_ID", "AKIAEXAMPLE")
        .output()
        .unwrap();
    let env = text(&out.stdout);
    assert!(out.status.success());
    assert!(!env.contains("NOMMER_") && !env.contains("AWS_"), "{env}");
    assert!(!env.contains("secret"), "{env}");
    let home = format!("HOME={}", std::fs::canonicalize(&dir).unwrap().display());
    assert!(env.lines().any(|l| l == home), "{env}");
}

#[test]
fn an_inherited_descriptor_is_not_there() {
    let (_root, dir) = scratch();
    // `true` is not a special builtin: a failed redirection does not end the shell.
    let check = "if { true <&7; } 2>/dev/null; then echo open; else echo closed; fi";
    let with_fd7 = |command: &mut Command| -> String {
        let file = std::fs::File::open("/etc/hostname").unwrap();
        use std::os::fd::AsRawFd;
        let fd = file.as_raw_fd();
        // Descriptor 7, without close-on-exec, in the started process.
        unsafe {
            command.pre_exec(move || {
                if libc::dup2(fd, 7) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let out = command.stderr(Stdio::null()).output().unwrap();
        drop(file);
        text(&out.stdout).trim().to_string()
    };
    // Unconfined, the shell sees it: the test can tell.
    assert_eq!(with_fd7(Command::new("sh").args(["-c", check])), "open");
    let mut confined = Command::new(BIN);
    confined
        .args(["sandbox", "--dir"])
        .arg(&dir)
        .args(["--", "sh", "-c", check]);
    assert_eq!(with_fd7(&mut confined), "closed");
}

#[test]
fn a_runaway_output_stops_at_max_output() {
    let (_root, dir) = scratch();
    let out = sandboxed(
        &dir,
        &["--max-output", "1000000"],
        &["dd", "if=/dev/urandom", "of=big", "bs=65536", "count=100"],
    );
    assert_eq!(out.status.code(), Some(137), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("output_too_large"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(std::fs::metadata(dir.join("big")).unwrap().len(), 1_000_000);

    // Many files each under the limit: the directory's total stops them.
    let out = sandboxed(
        &dir,
        &["--max-output", "3000000"],
        &[
            "ffmpeg",
            "-nostdin",
            "-loglevel",
            "error",
            "-re",
            "-f",
            "lavfi",
            "-i",
            "testsrc=size=320x240:rate=25",
            "-c:v",
            "rawvideo",
            "-f",
            "segment",
            "-segment_time",
            "0.2",
            "part%03d.nut",
        ],
    );
    assert_eq!(out.status.code(), Some(137), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("output_too_large: ffmpeg wrote"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn a_command_past_max_runtime_is_killed() {
    let (_root, dir) = scratch();
    let started = Instant::now();
    let out = sandboxed(&dir, &["--max-runtime", "1"], &["sleep", "30"]);
    assert_eq!(out.status.code(), Some(137));
    assert!(
        text(&out.stderr).contains("runtime_exceeded"),
        "{}",
        text(&out.stderr)
    );
    assert!(started.elapsed() < Duration::from_secs(20));
}

#[test]
fn a_work_dir_the_sandbox_user_cannot_reach_is_refused() {
    if !is_root() {
        // Only a root worker switches to the sandbox user.
        return;
    }
    use std::os::unix::fs::PermissionsExt;
    let root = traversable_tempdir();
    let private = root.path().join("private");
    std::fs::create_dir(&private).unwrap();
    std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o700)).unwrap();
    let work = private.join("work");
    let out = sandboxed(&work, &[], &["true"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains(&format!("{} is not searchable", private.display())),
        "{}",
        text(&out.stderr)
    );

    // nommerd refuses to start on it, naming the directory.
    let feederd = Feederd::start("");
    let mut nommerd = Command::new(BIN)
        .args(["--feederd", &feederd.url, "nommerd", "--work-dir"])
        .arg(&work)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let status = nommerd.wait().unwrap();
    let mut said = String::new();
    nommerd
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut said)
        .unwrap();
    assert!(!status.success());
    assert!(said.contains(&private.display().to_string()), "{said}");
}

#[tokio::test]
async fn a_job_past_its_runtime_ends_runtime_exceeded() {
    let feederd = Feederd::start("");
    let worker = feederd.worker(1, "max_job_runtime = 3600\n");
    let api = Api::new(&feederd.url);
    let source = clip("long.mp4", 20, "1280x720");
    let dest = feederd.dir.path().join("never.mp4");
    let mut body = ffmpeg_job(&source, &dest, slow_options());
    body["max_runtime_s"] = json!(2);
    let id = api.submit_id(&body).await;
    let job = api
        .ends_in_error(&id, "runtime_exceeded", Duration::from_secs(60))
        .await;
    assert_eq!(job["max_runtime_s"], 2);
    let status = Command::new(BIN)
        .args(["--feederd", &feederd.url, "status", &id])
        .output()
        .unwrap();
    assert!(
        text(&status.stdout).contains("error code:  runtime_exceeded"),
        "{}",
        text(&status.stdout)
    );
    assert!(!dest.exists());
    let left: Vec<_> = std::fs::read_dir(worker.scratch_dir()).unwrap().collect();
    assert!(left.is_empty(), "{left:?}");

    // The node reports what its sandbox enforces.
    let nodes = api.get("/v1/nodes").await;
    let sandbox = nodes["nodes"][0]["sandbox"].as_str().unwrap().to_string();
    assert!(sandbox.starts_with("landlock-abi-"), "{nodes}");
    let listed = Command::new(BIN)
        .args(["--feederd", &feederd.url, "nodes"])
        .output()
        .unwrap();
    assert!(text(&listed.stdout).contains(&sandbox));
}

#[tokio::test]
async fn a_job_past_max_output_bytes_ends_output_too_large_and_leaves_nothing() {
    let feederd = Feederd::start("");
    let worker = feederd.worker(1, "max_output_bytes = 400000\n");
    let api = Api::new(&feederd.url);
    let source = clip("clip.mp4", 2, "320x240");
    let dest = feederd.dir.path().join("huge.mkv");
    let options = json!([{"outfile_options": [["c:v", "rawvideo"], ["an", null]]}]);
    let id = api.submit_id(&ffmpeg_job(&source, &dest, options)).await;
    api.ends_in_error(&id, "output_too_large", Duration::from_secs(60))
        .await;
    assert!(!dest.exists());
    let left: Vec<_> = std::fs::read_dir(worker.scratch_dir()).unwrap().collect();
    assert!(left.is_empty(), "{left:?}");
}
