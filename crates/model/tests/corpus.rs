//! The option corpora through the submit check, without a server: every valid
//! job passes and its canonical form checks again to itself; every bad one is
//! refused with its code. The `file://` cases that depend on a configured
//! root are decided by feederd, and the end-to-end test (crates/nommer/tests/
//! options.rs) submits the whole corpus to one.

use nommer_model::options::{self, Allowlist};
use nommer_model::submit;
use serde_json::Value;

fn corpus(name: &str) -> Vec<Value> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/corpus")
        .join(name);
    serde_json::from_str::<Value>(&std::fs::read_to_string(path).unwrap())
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

fn body(job: &Value) -> Vec<u8> {
    job.to_string().replace("{root}", "/srv/media").into_bytes()
}

#[test]
fn every_bad_case_is_refused_with_its_code() {
    let mut wrong = Vec::new();
    for case in corpus("bad.json") {
        let expected = case["code"].as_str().unwrap();
        match submit::parse_body(&body(&case["job"]), Allowlist::builtin()) {
            Err(e) if e.code.as_str() == expected => {}
            // Outside the root: only feederd, which knows its roots, can say.
            Ok(_) if expected == "uri_not_allowed" => {}
            Err(e) => wrong.push(format!(
                "{}: expected {expected}, got {}: {}",
                case["why"], e.code, e.message
            )),
            Ok(_) => wrong.push(format!("{}: expected {expected}, accepted", case["why"])),
        }
    }
    assert!(
        wrong.is_empty(),
        "{} cases:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
}

#[test]
fn every_valid_job_passes_and_its_canonical_form_is_stable() {
    for case in corpus("good.json") {
        let job = serde_json::json!({
            "source_path": "file:///srv/media/in/source.mp4",
            "dest_path": format!("file:///srv/media/out/{}.{}", case["name"].as_str().unwrap(), case["dest_ext"].as_str().unwrap()),
            "job_options": case["job_options"],
        });
        let accepted = submit::parse_body(job.to_string().as_bytes(), Allowlist::builtin())
            .unwrap_or_else(|e| panic!("{}: {} {}", case["name"], e.code, e.message));
        // The stored form checks again to itself: what the worker runs is what was checked.
        let again = options::check_passes(accepted.passes.clone(), Allowlist::builtin()).unwrap();
        assert_eq!(again, accepted.passes, "{}", case["name"]);
        let reread = options::parse_passes(&accepted.job_options["options"]).unwrap();
        assert_eq!(reread, accepted.passes, "{}", case["name"]);
    }
}
