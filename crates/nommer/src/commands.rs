//! Client commands, and the one-shot `run` and `demo`.

use crate::daemons;
use crate::settings::Settings;
use anyhow::Context;
use nommer_client::Client;
use nommer_model::api::Job;
use nommer_model::JobState;
use std::path::Path;
use tokio::net::TcpListener;

fn client(settings: &Settings) -> Client {
    Client::new(&settings.feederd_url, settings.api_token.clone())
}

fn read_job(path: &Path) -> anyhow::Result<serde_json::Value> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{} is not JSON", path.display()))
}

/// Print how a job ended; the exit code is 0 only for FINISHED.
fn report_end(job: &Job) -> u8 {
    for warning in &job.warnings {
        eprintln!("warning: {warning}");
    }
    if job.state == JobState::Finished {
        eprintln!("{} FINISHED -> {}", job.id, job.dest_path);
        return 0;
    }
    match &job.error_code {
        Some(code) => eprintln!("{} {} ({code})", job.id, job.state),
        None => eprintln!("{} {}", job.id, job.state),
    }
    if let Some(details) = &job.state_details {
        eprintln!("{details}");
    }
    1
}

pub async fn submit(settings: &Settings, path: &Path, wait: bool) -> anyhow::Result<u8> {
    let body = read_job(path)?;
    let client = client(settings);
    let job = client.submit(&body).await?;
    println!("{}", job.id);
    if !wait {
        return Ok(0);
    }
    let job = crate::wait::follow(&client, &job.id).await?;
    Ok(report_end(&job))
}

pub async fn status(settings: &Settings, id: &str, json: bool) -> anyhow::Result<u8> {
    let job = client(settings).job(id).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&job)?);
        return Ok(0);
    }
    println!("id:          {}", job.id);
    println!("state:       {}", job.state);
    if let Some(code) = &job.error_code {
        println!("error code:  {code}");
    }
    if let Some(details) = &job.state_details {
        println!("details:     {details}");
    }
    if let Some(p) = &job.progress {
        println!("progress:    {} {:.0}%", p.phase, p.percent);
    }
    println!("attempts:    {} of {}", job.attempts, job.max_attempts);
    println!("source:      {}", job.source_path);
    println!("dest:        {}", job.dest_path);
    if let Some(node) = &job.node_id {
        println!("node:        {node}");
    }
    if let Some(preset) = &job.preset {
        println!("preset:      {preset}");
    }
    for (index, output) in job.outputs.iter().enumerate() {
        print_output(index, output);
    }
    for warning in &job.warnings {
        println!("warning:     {warning}");
    }
    println!("created:     {}", job.created_at);
    println!("updated:     {}", job.updated_at);
    Ok(0)
}

/// One output of a job: where, how it went, what it made, its check.
fn print_output(index: usize, output: &serde_json::Value) {
    let text = |key: &str| output[key].as_str().unwrap_or("-").to_string();
    println!(
        "output {index}:    {} {} {}",
        text("kind"),
        text("state"),
        text("dest_path")
    );
    let mut made = Vec::new();
    if let Some(files) = output["file_count"].as_u64() {
        made.push(format!("{files} file(s)"));
    }
    if let Some(bytes) = output["bytes"].as_u64() {
        made.push(format!("{bytes} bytes"));
    }
    if let Some(duration) = output["duration_s"].as_f64() {
        made.push(format!("{duration:.3} s"));
    }
    if let Some(renditions) = output["renditions"].as_array() {
        let names: Vec<&str> = renditions.iter().filter_map(|r| r.as_str()).collect();
        made.push(format!("renditions {}", names.join(", ")));
    }
    if !made.is_empty() {
        println!("             {}", made.join(", "));
    }
    let qc = &output["qc"];
    if qc.is_object() {
        let verdict = match qc["passed"].as_bool() {
            Some(true) => "passed".to_string(),
            _ => format!("FAILED: {}", qc["failure"].as_str().unwrap_or("")),
        };
        println!(
            "  qc:        {verdict} ({})",
            qc["level"].as_str().unwrap_or("")
        );
        if let Some(metrics) = qc["metrics"].as_object() {
            let shown: Vec<String> = metrics.iter().map(|(k, v)| format!("{k} {v}")).collect();
            println!("  metrics:   {}", shown.join(", "));
        }
    }
}

pub async fn presets(settings: &Settings) -> anyhow::Result<u8> {
    let answer = client(settings).presets().await?;
    println!(
        "{:<24}  {:<8}  {:<8}  DESCRIPTION",
        "NAME", "ORIGIN", "KIND"
    );
    for preset in answer["presets"].as_array().into_iter().flatten() {
        let kind = match preset.get("outputs") {
            Some(outputs) => {
                let kinds: Vec<&str> = outputs
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|o| o["kind"].as_str())
                    .collect();
                kinds.join("+")
            }
            None => "file".into(),
        };
        println!(
            "{:<24}  {:<8}  {:<8}  {}",
            preset["name"].as_str().unwrap_or(""),
            preset["origin"].as_str().unwrap_or(""),
            kind,
            preset["description"].as_str().unwrap_or("")
        );
    }
    Ok(0)
}

pub async fn jobs(settings: &Settings, state: Option<&str>, limit: u32) -> anyhow::Result<u8> {
    let list = client(settings).jobs(state, limit, None).await?;
    println!("{:<50}  {:<11}  {:>5}  UPDATED", "ID", "STATE", "PCT");
    for job in list.jobs {
        let percent = job
            .progress
            .map(|p| format!("{:.0}", p.percent))
            .unwrap_or_default();
        println!(
            "{:<50}  {:<11}  {:>5}  {}",
            job.id, job.state, percent, job.updated_at
        );
    }
    Ok(0)
}

/// One row of the live table.
struct Row {
    id: String,
    state: String,
    percent: String,
    detail: String,
}

fn row_line(row: &Row) -> String {
    format!(
        "{:<50}  {:<11}  {:>5}  {}",
        row.id, row.state, row.percent, row.detail
    )
}

/// `nommer jobs --watch`: the list, then each change from the event stream.
/// On a terminal the table is redrawn in place; otherwise each change is a line.
pub async fn watch_jobs(
    settings: &Settings,
    state: Option<&str>,
    limit: u32,
) -> anyhow::Result<u8> {
    use std::io::IsTerminal;
    let client = client(settings);
    let tty = std::io::stdout().is_terminal();
    // The stream first: every change after the list is read is on it.
    let mut events = client.events(None).await?;
    let mut rows: Vec<Row> = client
        .jobs(state, limit, None)
        .await?
        .jobs
        .into_iter()
        .map(|job| Row {
            percent: job
                .progress
                .as_ref()
                .map(|p| format!("{:.0}", p.percent))
                .unwrap_or_default(),
            detail: job.dest_path.clone(),
            state: job.state.to_string(),
            id: job.id,
        })
        .collect();
    let draw = |rows: &[Row]| {
        let mut out = String::from("\x1b[H\x1b[2J");
        out.push_str(&format!(
            "{:<50}  {:<11}  {:>5}  DESTINATION\n",
            "ID", "STATE", "PCT"
        ));
        for row in rows.iter().take(limit as usize) {
            out.push_str(&row_line(row));
            out.push('\n');
        }
        out.push_str("\nlive from the event stream; Ctrl-C ends\n");
        print!("{out}");
    };
    if tty {
        draw(&rows);
    } else {
        println!("{:<50}  {:<11}  {:>5}  DESTINATION", "ID", "STATE", "PCT");
        for row in &rows {
            println!("{}", row_line(row));
        }
    }
    loop {
        let next = tokio::select! {
            next = events.next() => next?,
            _ = tokio::signal::ctrl_c() => return Ok(0),
        };
        let Some(event) = next else {
            anyhow::bail!("the event stream ended");
        };
        let id = event.data["job_id"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let job_state = event.data["state"].as_str().unwrap_or_default().to_string();
        if state.is_some_and(|s| s != job_state) && !rows.iter().any(|r| r.id == id) {
            continue;
        }
        let percent = match event.kind.as_str() {
            "progress" => format!(
                "{:.0}",
                event.data["progress"]["percent"].as_f64().unwrap_or(0.0)
            ),
            _ if job_state == "FINISHED" => "100".into(),
            _ => String::new(),
        };
        let index = match rows.iter().position(|r| r.id == id) {
            Some(i) => i,
            None => {
                let detail = match client.job(&id).await {
                    Ok(job) => job.dest_path,
                    Err(_) => String::new(),
                };
                rows.insert(
                    0,
                    Row {
                        id: id.clone(),
                        state: String::new(),
                        percent: String::new(),
                        detail,
                    },
                );
                0
            }
        };
        let row = &mut rows[index];
        let changed =
            row.state != job_state || (event.kind == "progress" && row.percent != percent);
        row.state = job_state;
        if !percent.is_empty() || event.kind == "state" {
            row.percent = percent;
        }
        if !changed {
            continue;
        }
        if tty {
            draw(&rows);
        } else {
            println!("{}", row_line(&rows[index]));
        }
    }
}

pub async fn cancel(settings: &Settings, id: &str) -> anyhow::Result<u8> {
    let job = client(settings).cancel(id).await?;
    println!(
        "{} {}{}",
        job.id,
        job.state,
        if job.state.is_terminal() {
            ""
        } else {
            " (cancel requested)"
        }
    );
    Ok(0)
}

pub async fn nodes(settings: &Settings) -> anyhow::Result<u8> {
    let list = client(settings).nodes().await?;
    println!(
        "{:<32}  {:<8}  {:<9}  {:>4}  {:<19}  {:<33}  LAST HEARTBEAT",
        "NODE", "FLEET", "STATE", "JOBS", "INSTANCE", "SANDBOX"
    );
    for node in list.nodes {
        println!(
            "{:<32}  {:<8}  {:<9}  {:>4}  {:<19}  {:<33}  {}",
            node.id,
            node.fleet,
            node.state,
            format!("{}/{}", node.running_jobs, node.max_jobs),
            node.instance_id.unwrap_or_else(|| "-".into()),
            node.sandbox.unwrap_or_else(|| "-".into()),
            node.last_heartbeat_at
        );
    }
    Ok(0)
}

/// feederd on a temporary store and a free loopback port, with one worker.
async fn one_shot(mut settings: Settings, body: serde_json::Value) -> anyhow::Result<Job> {
    let dir = tempfile::tempdir()?;
    // The sandbox user must reach the work directory inside it.
    std::fs::set_permissions(
        dir.path(),
        <std::fs::Permissions as std::os::unix::fs::PermissionsExt>::from_mode(0o711),
    )?;
    settings.store = format!("sqlite://{}", dir.path().join("nommer.db").display());
    settings.work_dir = Some(dir.path().join("work"));
    settings.api_tokens.clear();
    settings.worker_token = None;
    settings.worker_token_file = None;
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let running = daemons::start(&settings, listener, 1).await?;
    let client = Client::new(&running.url(), None);
    let result = async {
        let job = client.submit(&body).await?;
        crate::wait::follow(&client, &job.id).await
    }
    .await;
    running.stop().await;
    result
}

pub async fn run(settings: Settings, path: &Path) -> anyhow::Result<u8> {
    let body = read_job(path)?;
    let job = one_shot(settings, body).await?;
    Ok(report_end(&job))
}

pub async fn demo(settings: Settings) -> anyhow::Result<u8> {
    let dir = std::env::current_dir()?.join("nommer-demo");
    std::fs::create_dir_all(&dir)?;
    let source = dir.join("source.mp4");
    let output = dir.join("output.mp4");
    eprintln!("making a 10 s 1280x720 test clip: {}", source.display());
    make_clip(&settings.ffmpeg_path, &source, 10).await?;
    let body = demo_job(&source, &output);
    eprintln!("encoding it with the seed's two-pass example job");
    let job = one_shot(settings.clone(), body).await?;
    let code = report_end(&job);
    if code != 0 {
        return Ok(code);
    }
    println!("{}", output.display());
    let probe = nommer_media::probe::probe(&settings.ffprobe_path, &output, None).await?;
    println!("{}", probe.summary());
    Ok(0)
}

fn file_uri(path: &Path) -> String {
    let encoded: String = path
        .display()
        .to_string()
        .split('/')
        .map(percent_encode)
        .collect::<Vec<_>>()
        .join("/");
    format!("file://{encoded}")
}

fn percent_encode(segment: &str) -> String {
    segment
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            other => format!("%{other:02X}"),
        })
        .collect()
}

/// The seed's documented two-pass example, written as JSON.
pub fn demo_job(source: &Path, output: &Path) -> serde_json::Value {
    serde_json::json!({
        "source_path": file_uri(source),
        "dest_path": file_uri(output),
        "notify_url": null,
        "job_options": {"nommer": "media_nommer.ec2nommerd.nommers.ffmpeg.FFmpegNommer", "options": [
            {"infile_options": [], "outfile_options": [["threads", 0], ["vcodec", "libx264"], ["preset", "medium"], ["profile", "baseline"], ["b", "400k"], ["vf", "yadif,scale=640:-1"], ["pass", "1"], ["f", "mp4"], ["an", null]]},
            {"outfile_options": [["threads", 0], ["vcodec", "libx264"], ["preset", "medium"], ["profile", "baseline"], ["b", "400k"], ["vf", "yadif,scale=640:-1"], ["pass", "2"], ["acodec", "libfaac"], ["ab", "128k"], ["ar", "48000"], ["ac", "2"], ["f", "mp4"]]}
        ]}
    })
}

/// A test clip from ffmpeg's lavfi sources: moving test pattern and a tone.
pub async fn make_clip(ffmpeg: &str, path: &Path, seconds: u32) -> anyhow::Result<()> {
    let argv: Vec<String> = [
        ffmpeg,
        "-y",
        "-nostdin",
        "-loglevel",
        "error",
        "-f",
        "lavfi",
        "-i",
        &format!("testsrc2=size=1280x720:rate=25:duration={seconds}"),
        "-f",
        "lavfi",
        "-i",
        &format!("sine=frequency=440:sample_rate=48000:duration={seconds}"),
        "-c:v",
        "libx264",
        "-preset",
        "veryfast",
        "-pix_fmt",
        "yuv420p",
        "-c:a",
        "aac",
        "-shortest",
        &path.display().to_string(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    nommer_media::process::ToolCommand::new(&argv)
        .run(|_| {})
        .await
        .map_err(|e| anyhow::anyhow!("making the test clip: {e}"))?;
    Ok(())
}
