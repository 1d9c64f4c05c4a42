//! Credentials never leave the exporter through what an operator echoes back. An operator or a
//! gateway that repeats the request in its error body (seen: T2 the plain password, 1NCE
//! `client_id:secret`, MTS the `Basic …` header) hands the exporter its own secret as
//! "error text". Every HTTP driver of the conformance suite runs in the real binary, at
//! `--log.level debug` with `--storage.path`, against a login that echoes the request; the
//! canary secret must then appear in no output: logs, `/`, `/api/v1/lines`, `/metrics`,
//! `/probe?debug=true`, nor the storage files — in plain, base64 or URL-encoded form.

use base64::Engine;

use super::conformance::SUBJECTS;
use super::{Fault, MockOperator};
use crate::binary::Exporter;

const CANARY: &str = "canary-S3cr3t+/=&x";

/// The forms in which the canary could leak.
fn forms() -> Vec<String> {
    let b64 = base64::engine::general_purpose::STANDARD;
    vec![
        CANARY.to_string(),
        "canary-S3cr3t".to_string(),
        b64.encode(CANARY),
        url::form_urlencoded::byte_serialize(CANARY.as_bytes()).collect(),
        b64.encode(CANARY.as_bytes())[..12].to_string(),
    ]
}

fn storage_files(e: &Exporter) -> String {
    let mut out = String::new();
    // Everything the exporter wrote (state, journal, token files); not the config it was given.
    for entry in walk(&e.dir) {
        if entry.file_name().is_some_and(|n| n != "esim.yaml") {
            out.push_str(&String::from_utf8_lossy(&std::fs::read(&entry).unwrap_or_default()));
        }
    }
    out
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            files.extend(walk(&path));
        } else {
            files.push(path);
        }
    }
    files
}

#[test]
fn an_echoed_request_never_carries_a_credential_into_any_output() {
    let mock = MockOperator::start_background();
    let mut redacted_somewhere = 0;
    for subject in SUBJECTS {
        let driver = subject.driver;
        mock.clear_faults();
        // Every request of the account is echoed back as a 400 (the login, or a key-per-request
        // driver's data request).
        let status = if driver == "t2" || driver == "onence" || driver == "1nce" { 400 } else { 500 };
        mock.faults(driver, "*", Fault::Echo(status), 1000);
        let config = (subject.config)(&mock.base_url(driver), CANARY).replacen(
            "accounts:",
            "global: {poll_interval: 1h, timeout: 5s}\naccounts:",
            1,
        );
        let e = Exporter::start_with(&format!("canary-{driver}"), &config, &["--storage.path", "state.json"]);
        e.wait_until("the line failed", |e| e.get("/api/v1/lines").1.contains("\"last_error\""));
        let outputs = [
            ("/probe?debug=true", e.get("/probe?target=subject-line&debug=true").1),
            ("/api/v1/lines", e.get("/api/v1/lines").1),
            ("/", e.get("/").1),
            ("/metrics", e.get("/metrics").1),
        ];
        // The final save on SIGTERM writes the storage file.
        let mut e = e;
        e.signal("TERM");
        assert_eq!(e.wait_exit(std::time::Duration::from_secs(10)), Some(0));
        let outputs = outputs.into_iter().chain([("log", e.log()), ("storage files", storage_files(&e))]);
        for (place, text) in outputs {
            for form in forms() {
                assert!(!text.contains(&form), "{driver}: the canary ({form}) is in {place}:\n{text}");
            }
            redacted_somewhere += usize::from(text.contains("<redacted>"));
        }
        assert!(mock.count(driver, "*") > 0 || !mock.requests(driver).is_empty(), "{driver}: the echo was asked");
    }
    assert!(redacted_somewhere > 0, "no driver passed the echoed text on at all: the test proves nothing");
}
