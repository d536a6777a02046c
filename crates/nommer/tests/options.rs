//! The option allowlist end to end: the bad-input corpus refused at submit
//! with its code, the valid corpus accepted and a sample of it encoded, the
//! canonical filtergraphs run by ffmpeg exactly as they were checked, and the
//! refusals only a worker can make (its own check, symlinks swapped in after
//! submit).

mod common;

use common::*;
use nommer_model::options::{check_passes, modernize, parse_passes, Allowlist, Pass};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

fn corpus(name: &str) -> Vec<Value> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("../model/tests/corpus/{name}"));
    let text = std::fs::read_to_string(&path).unwrap();
    serde_json::from_str::<Value>(&text)
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

/// A file root with a source in `in/`, an empty `out/`, and the siblings the
/// corpus uses to try prefix tricks.
fn media_root() -> (tempfile::TempDir, PathBuf) {
    let dir = traversable_tempdir();
    let root = dir.path().join("media");
    std::fs::create_dir_all(root.join("in")).unwrap();
    std::fs::create_dir_all(root.join("out")).unwrap();
    std::fs::create_dir_all(dir.path().join("media-evil")).unwrap();
    std::fs::create_dir_all(dir.path().join("mediaevil")).unwrap();
    std::fs::copy(
        clip("options-src.mp4", 1, "320x240"),
        root.join("in/source.mp4"),
    )
    .unwrap();
    (dir, root)
}

fn with_root(job: &Value, root: &Path) -> Value {
    let text = job
        .to_string()
        .replace("{root}", &root.display().to_string());
    serde_json::from_str(&text).unwrap()
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            found.extend(files_under(&path));
        } else {
            found.push(path);
        }
    }
    found
}

#[tokio::test(flavor = "multi_thread")]
async fn the_bad_corpus_is_refused_at_submit_with_its_code() {
    let cases = corpus("bad.json");
    assert!(cases.len() >= 100, "the corpus holds {} cases", cases.len());
    let (dir, root) = media_root();
    let feederd = Feederd::start(&format!("file_roots = [\"{}\"]\n", root.display()));
    let api = Api::new(&feederd.url);
    let mut wrong = Vec::new();
    for case in &cases {
        let body = with_root(&case["job"], &root);
        let response = api
            .http
            .post(format!("{}/v1/jobs", api.url))
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let answer: Value = response.json().await.unwrap();
        let code = answer["error_code"].as_str().unwrap_or("");
        if status != 400 || code != case["code"].as_str().unwrap() {
            wrong.push(format!(
                "{} ({}): expected {}, got {status} {code}: {}",
                case["why"], case["class"], case["code"], answer["message"]
            ));
        }
    }
    assert!(
        wrong.is_empty(),
        "{} of {} cases:\n{}",
        wrong.len(),
        cases.len(),
        wrong.join("\n")
    );
    let jobs = api.get("/v1/jobs").await;
    assert_eq!(jobs["jobs"].as_array().map(Vec::len), Some(0), "{jobs}");
    assert!(files_under(&root.join("out")).is_empty());
    drop(dir);
}

/// The passes as the check makes them, for a corpus entry.
fn checked(job_options: &Value) -> Vec<Pass> {
    let mut passes = parse_passes(&job_options["options"]).unwrap();
    modernize(&mut passes);
    check_passes(passes, Allowlist::builtin()).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_valid_corpus_is_accepted_and_a_sample_encodes() {
    let cases = corpus("good.json");
    assert!(cases.len() >= 50, "the corpus holds {} jobs", cases.len());
    let (dir, root) = media_root();
    let config = format!("file_roots = [\"{}\"]\n", root.display());
    let job = |case: &Value| {
        let dest = root.join(format!(
            "out/{}.{}",
            case["name"].as_str().unwrap(),
            case["dest_ext"].as_str().unwrap()
        ));
        json!({"source_path": file_uri(&root.join("in/source.mp4")), "dest_path": file_uri(&dest),
               "job_options": case["job_options"]})
    };
    {
        // No worker: every job is only stored.
        let feederd = Feederd::start(&config);
        let api = Api::new(&feederd.url);
        for case in &cases {
            let response = api
                .http
                .post(format!("{}/v1/jobs", api.url))
                .json(&job(case))
                .send()
                .await
                .unwrap();
            let status = response.status().as_u16();
            let answer: Value = response.json().await.unwrap();
            assert_eq!(status, 201, "{}: {answer}", case["name"]);
            // What is stored (and leased) is the canonical form.
            let stored = parse_passes(&answer["job_options"]["options"]).unwrap();
            assert_eq!(stored, checked(&case["job_options"]), "{}", case["name"]);
        }
    }
    let sample: Vec<&Value> = cases.iter().filter(|c| c["encode"] == true).collect();
    assert_eq!(sample.len(), 10);
    let feederd = Feederd::start(&config);
    let _worker = feederd.worker(2, "");
    let api = Api::new(&feederd.url);
    let mut ids = Vec::new();
    for case in &sample {
        ids.push((api.submit_id(&job(case)).await, *case));
    }
    for (id, case) in ids {
        let done = api
            .wait_for(&id, &["FINISHED", "ERROR"], Duration::from_secs(240))
            .await;
        assert_eq!(done["state"], "FINISHED", "{}: {done}", case["name"]);
        let dest = root.join(format!(
            "out/{}.{}",
            case["name"].as_str().unwrap(),
            case["dest_ext"].as_str().unwrap()
        ));
        let probe = probe(&dest);
        let streams = probe["streams"].as_array().unwrap();
        assert!(!streams.is_empty(), "{}: {probe}", case["name"]);
        if case["name"] == "web_medium" {
            // The seed's scale='640:trunc(ow/a/2)*2': 640 wide, an even height.
            let video = stream(&probe, "video");
            assert_eq!(video["width"], 640, "{probe}");
            assert_eq!(video["height"].as_u64().unwrap() % 2, 0);
        }
    }
    drop(dir);
}

/// A graph to run: its flag, its text, the media it filters, and the
/// pass's `-map`s (a labelled filter_complex output needs its map).
type GraphCase = (String, String, &'static str, Vec<String>);

/// Every graph a corpus job or a tricky case gives.
fn graphs() -> Vec<GraphCase> {
    let mut found = Vec::new();
    for case in corpus("good.json") {
        for pass in case["job_options"]["options"].as_array().unwrap() {
            let pairs: Vec<&Value> = ["infile_options", "outfile_options"]
                .iter()
                .flat_map(|list| pass[*list].as_array().into_iter().flatten())
                .collect();
            let maps: Vec<String> = pairs
                .iter()
                .filter(|pair| pair[0] == "map")
                .map(|pair| pair[1].as_str().unwrap().to_string())
                .collect();
            for pair in &pairs {
                let flag = pair[0].as_str().unwrap();
                let base = flag.split(':').next().unwrap();
                let media = match (base, flag) {
                    ("af", _) | ("filter", "filter:a") => "audio",
                    ("vf" | "filter" | "filter_complex" | "lavfi", _) => "video",
                    _ => continue,
                };
                found.push((
                    flag.to_string(),
                    pair[1].as_str().unwrap().to_string(),
                    media,
                    maps.clone(),
                ));
            }
        }
    }
    for (graph, media) in [
        ("scale=100:200:bicubic", "video"),
        ("crop=32:32:1:2", "video"),
        ("crop=w=32:h=32:keep_aspect=1", "video"),
        ("pad=400:h=300:x=10:y=10,setsar=1", "video"),
        ("split[a][b];[a]scale=64:-2[c];[b][c]overlay=10:10", "video"),
        ("drawtext=text='10\\:30, ok':x=10:y=10", "video"),
        ("drawtext=text=a\\\\\\:b\\,c:fontsize=20", "video"),
        (" scale = 'iw/2' : -2 , format = yuv420p ", "video"),
        ("volume='0.5',aresample=44100", "audio"),
    ] {
        let flag = if media == "audio" { "af" } else { "vf" };
        found.push((flag.to_string(), graph.to_string(), media, Vec::new()));
    }
    found
}

/// The options ffmpeg set on each filter of a graph, from its debug log.
fn settings(
    flag: &str,
    graph: &str,
    media: &str,
    maps: &[String],
) -> (bool, Vec<(String, String, String)>) {
    let input = clip("options-src.mp4", 1, "320x240");
    let mut command = Command::new("ffmpeg");
    command
        .args(["-hide_banner", "-nostdin", "-v", "debug", "-i"])
        .arg(&input);
    command.arg(format!("-{flag}")).arg(graph);
    for map in maps {
        command.arg("-map").arg(map);
    }
    if flag == "filter_complex" || flag == "lavfi" {
        // The graph's outputs are what the maps name.
    } else if media == "audio" {
        command.arg("-vn");
    } else {
        command.arg("-an");
    }
    let out = command
        .args(["-frames:v", "2", "-t", "0.2", "-f", "null", "-"])
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    let mut found = Vec::new();
    for line in log.lines() {
        let Some(rest) = line.strip_prefix("[Parsed_") else {
            continue;
        };
        let Some((filter, rest)) = rest.split_once(" @ ") else {
            continue;
        };
        let Some(setting) = rest.split_once("] Setting '").map(|(_, s)| s) else {
            continue;
        };
        let Some((key, value)) = setting.split_once("' to value '") else {
            continue;
        };
        found.push((
            filter.to_string(),
            key.to_string(),
            value.trim_end_matches('\'').to_string(),
        ));
    }
    (out.status.success(), found)
}

#[test]
fn canonical_graphs_run_exactly_as_checked() {
    let cases = graphs();
    assert!(cases.len() >= 15, "only {} graphs", cases.len());
    for (flag, graph, media, maps) in cases {
        let pass = json!([{"outfile_options": [[flag, graph]]}]);
        let canonical = checked(&json!({"options": pass}))
            .into_iter()
            .flat_map(|p| p.global_options.into_iter().chain(p.outfile_options))
            .next()
            .unwrap()
            .value
            .as_str()
            .unwrap()
            .to_string();
        let (ok_submitted, submitted) = settings(&flag, &graph, media, &maps);
        let (ok_canonical, ran) = settings(&flag, &canonical, media, &maps);
        assert!(
            ok_canonical,
            "ffmpeg refuses the canonical -{flag} {canonical}"
        );
        assert_eq!(ok_submitted, ok_canonical, "-{flag} {graph}");
        assert_eq!(submitted, ran, "-{flag} \"{graph}\" ran as \"{canonical}\"");
        assert!(
            !ran.is_empty() || !canonical.contains('='),
            "no settings logged for {canonical}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_worker_runs_its_own_check_before_anything() {
    // feederd allows a flag this worker does not: the job ends in ERROR with
    // the check's code, and the file the flag names is never written.
    let (dir, root) = media_root();
    let feederd = Feederd::start(&format!(
        "file_roots = [\"{}\"]\nextra_allowed_options = [{{name = \"vstats_file\", kind = \"text\", place = \"output\"}}]\n",
        root.display()
    ));
    let _worker = feederd.worker(1, "");
    let api = Api::new(&feederd.url);
    let stats = root.join("out/vstats.log");
    let body = ffmpeg_job(
        &root.join("in/source.mp4"),
        &root.join("out/a.mp4"),
        json!([{"outfile_options": [["c:v", "libx264"], ["preset", "ultrafast"], ["vstats_file", stats.display().to_string()]]}]),
    );
    let id = api.submit_id(&body).await;
    let done = api
        .ends_in_error(&id, "option_not_allowed", Duration::from_secs(60))
        .await;
    assert!(
        done["state_details"]
            .as_str()
            .unwrap_or("")
            .contains("vstats_file"),
        "{done}"
    );
    assert!(!stats.exists() && !root.join("out/a.mp4").exists());
    drop(dir);
}

#[tokio::test(flavor = "multi_thread")]
async fn symlinks_swapped_in_after_submit_cannot_escape() {
    let (dir, root) = media_root();
    let outside = dir.path().join("secret");
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::write(outside.join("passwd"), "secret").unwrap();
    std::fs::copy(root.join("in/source.mp4"), root.join("in/b.mp4")).unwrap();
    std::fs::create_dir_all(root.join("out/sub")).unwrap();
    // feederd has roots; the worker has none of its own and takes feederd's from the lease.
    let feederd = Feederd::start(&format!("file_roots = [\"{}\"]\n", root.display()));
    let api = Api::new(&feederd.url);
    let copy = |src: &Path, dest: &Path| {
        json!({"source_path": file_uri(src), "dest_path": file_uri(dest),
               "job_options": {"nommer": "copy", "options": [{}]}})
    };
    let read_out = api
        .submit_id(&copy(&root.join("in/b.mp4"), &root.join("out/b.mp4")))
        .await;
    let write_out = api
        .submit_id(&copy(
            &root.join("in/source.mp4"),
            &root.join("out/sub/c.mp4"),
        ))
        .await;
    // After the check: the source becomes a link out, the destination directory too.
    std::fs::remove_file(root.join("in/b.mp4")).unwrap();
    std::os::unix::fs::symlink(outside.join("passwd"), root.join("in/b.mp4")).unwrap();
    std::fs::remove_dir(root.join("out/sub")).unwrap();
    std::os::unix::fs::symlink(&outside, root.join("out/sub")).unwrap();
    let _worker = feederd.worker(2, "");
    for id in [&read_out, &write_out] {
        api.ends_in_error(id, "uri_not_allowed", Duration::from_secs(60))
            .await;
    }
    assert!(!root.join("out/b.mp4").exists());
    assert_eq!(
        std::fs::read_dir(&outside).unwrap().count(),
        1,
        "a file was written outside the root"
    );
    drop(dir);
}

#[test]
fn the_tables_match_the_ffmpeg_build() {
    // Each table is made from, or checked against, the ffmpeg the tests use:
    // arity and place of every fftools row, the AVOptions and filter options
    // as `-h` and the debug log show them.
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    for script in [
        &["scripts/allowlist/verify-fftools.py"][..],
        &["scripts/allowlist/gen-avoptions.py", "--check"][..],
        &["scripts/allowlist/gen-filters.py", "--check"][..],
    ] {
        let out = Command::new("python3")
            .args(script)
            .current_dir(&root)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{script:?}:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_expression_that_never_ends_is_stopped_as_stalled() {
    // FFmpeg's expressions have `while`: an allowed filter can spin forever
    // without a frame out. ffmpeg then reports nothing on -progress, and the
    // worker stops it after max_tool_stall instead of max_job_runtime.
    let (dir, root) = media_root();
    let feederd = Feederd::start(&format!("file_roots = [\"{}\"]\n", root.display()));
    let _worker = feederd.worker(1, "max_tool_stall = 3\n");
    let api = Api::new(&feederd.url);
    let body = ffmpeg_job(
        &root.join("in/source.mp4"),
        &root.join("out/a.mp4"),
        json!([{"outfile_options": [["c:v", "libx264"], ["vf", "setpts='while(1,1)'"]]}]),
    );
    let started = std::time::Instant::now();
    let id = api.submit_id(&body).await;
    api.ends_in_error(&id, "tool_stalled", Duration::from_secs(60))
        .await;
    assert!(
        started.elapsed() < Duration::from_secs(45),
        "stopped after {:?}",
        started.elapsed()
    );
    assert!(!root.join("out/a.mp4").exists());
    drop(dir);
}
