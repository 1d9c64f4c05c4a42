//! Fuzzing on the stable toolchain, bounded by `ESIM_FUZZ_SECONDS` per target (default 3; CI
//! gives each 20): the config loader, every HTTP driver's response decoding (through the mock
//! operator, as the driver really reads it), and the exposition renderer with a round trip
//! through a parser (label escaping never breaks the format). The USSD decoder has its own
//! target in `ussd.rs`. A panic prints the seed and the input; set `ESIM_FUZZ_SEED` to replay.
//! Every crash found becomes a regression case of its own (a config case, a driver fixture).

use std::time::{Duration, Instant};

use esim_exporter::config;

use crate::drivers::conformance::SUBJECTS;
use crate::drivers::{secret_of, Built, Fault, MockOperator};
use crate::support::repo;

/// A small mutational fuzzer: a corpus, tokens of the input language, a xorshift generator.
pub struct Mutator {
    corpus: Vec<Vec<u8>>,
    tokens: &'static [&'static str],
    rng: u64,
    pub seed: u64,
    deadline: Instant,
    started: Instant,
    pub execs: u64,
}

impl Mutator {
    pub fn new(corpus: Vec<Vec<u8>>, tokens: &'static [&'static str]) -> Mutator {
        assert!(!corpus.is_empty(), "a fuzz target needs a corpus");
        let seconds: u64 = std::env::var("ESIM_FUZZ_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(3);
        let seed: u64 = std::env::var("ESIM_FUZZ_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64
        });
        let started = Instant::now();
        Mutator {
            corpus,
            tokens,
            rng: seed | 1,
            seed,
            deadline: started + Duration::from_secs(seconds),
            started,
            execs: 0,
        }
    }

    fn next(&mut self) -> u64 {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        self.rng
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    /// The next input (a corpus entry, mutated 1–4 times, at most `max_len` bytes), or `None`
    /// once the time is up.
    pub fn input(&mut self, max_len: usize) -> Option<Vec<u8>> {
        if Instant::now() >= self.deadline {
            return None;
        }
        self.execs += 1;
        let pick = self.below(self.corpus.len());
        let mut input = self.corpus[pick].clone();
        for _ in 0..1 + self.below(4) {
            let at = self.below(input.len() + 1);
            match self.below(7) {
                0 if !input.is_empty() => {
                    let i = at.min(input.len() - 1);
                    input[i] ^= 1 << self.below(8);
                }
                1 if !input.is_empty() => {
                    let i = at.min(input.len() - 1);
                    input[i] = [0u8, 0x7f, 0x80, 0xff, b'"', b',', b'\n', b'9'][self.below(8)];
                }
                2 => {
                    let token = self.tokens[self.below(self.tokens.len())].as_bytes();
                    input.splice(at..at, token.iter().copied());
                }
                3 if !input.is_empty() => {
                    let end = (at + 1 + self.below(16)).min(input.len());
                    input.drain(at.min(end)..end);
                }
                4 => {
                    let pick = self.below(self.corpus.len());
                    let other = self.corpus[pick].clone();
                    let from = self.below(other.len());
                    input.splice(at..at, other[from..].iter().copied());
                }
                5 => input.truncate(at),
                _ => {
                    let end = (at + self.below(32)).min(input.len());
                    let copy = input[at..end].to_vec();
                    input.splice(end..end, copy);
                }
            }
        }
        input.truncate(max_len);
        Some(input)
    }

    /// Keeps an input that did something new (bounded corpus).
    pub fn keep(&mut self, input: Vec<u8>) {
        if self.corpus.len() < 4096 {
            self.corpus.push(input);
        }
    }

    pub fn report(&self, target: &str) {
        let elapsed = self.started.elapsed().as_secs_f64();
        println!(
            "{target}: {} executions in {elapsed:.1} s ({:.0}/s), corpus {}, seed {}",
            self.execs,
            self.execs as f64 / elapsed,
            self.corpus.len(),
            self.seed
        );
        assert!(self.execs > 0, "{target}: no execution");
    }

    /// The panic message for `input`.
    pub fn crash(&self, target: &str, input: &[u8]) -> String {
        format!(
            "{target} panicked (ESIM_FUZZ_SEED={}) on input:\n{}",
            self.seed,
            String::from_utf8_lossy(input).escape_debug()
        )
    }
}

fn files_in(dir: &str, ext: &str) -> Vec<Vec<u8>> {
    crate::support::files_with_extension(&repo().join(dir), ext)
        .iter()
        .map(|p| std::fs::read(p).expect("corpus file"))
        .collect()
}

const YAML_TOKENS: &[&str] = &[
    ": ",
    "- ",
    "{",
    "}",
    "[",
    "]",
    ",",
    "\n  ",
    "\n    ",
    "\"",
    "'",
    "&a ",
    "*a",
    "!!str ",
    "~",
    "null",
    "1e400",
    "-1",
    "0x7f",
    "99999999999999999999999",
    "${ESIM_FUZZ}",
    "lines:\n",
    "accounts:\n",
    "driver: demo",
    "driver: mts",
    "poll_interval: ",
    "timeout: ",
    "rate_limit: 1/s",
    "labels: {",
    "discover: {",
    "alert: {",
    "balance_below: ",
    "data_below: 1GB",
    "\u{202e}",
    "\u{0}",
    "é",
    "<<: *a",
    "? ",
    "|\n  ",
    ">\n  ",
    "#",
    "\t",
];

/// The config loader: any text gives a `Config` or errors with positions, never a panic.
#[test]
fn fuzz_config_loader() {
    let mut corpus = files_in("tests/config/good", "yaml");
    corpus.extend(files_in("tests/config/bad", "yaml"));
    corpus.extend(files_in("tests/config/warn", "yaml"));
    corpus.extend(files_in("config", "yaml"));
    let mut fuzz = Mutator::new(corpus, YAML_TOKENS);
    let mut kinds = std::collections::HashSet::new();
    while let Some(input) = fuzz.input(16 << 10) {
        let text = String::from_utf8_lossy(&input).into_owned();
        let t0 = Instant::now();
        let outcome =
            std::panic::catch_unwind(|| match config::parse("fuzz.yaml", &text, esim_exporter::drivers::REGISTRY) {
                Ok(c) => format!("ok {} {}", c.lines.len(), c.accounts.len()),
                Err(e) => e.diagnostics.first().map(|d| d.message.chars().take(24).collect()).unwrap_or_default(),
            });
        // Slow is not a crash, but worth knowing (alias-heavy inputs near the YAML budget).
        if t0.elapsed() > Duration::from_secs(1) {
            let head: String = String::from_utf8_lossy(&input).chars().take(120).collect();
            println!("config loader: slow input ({:.1?}): {}", t0.elapsed(), head.escape_debug());
        }
        match outcome {
            Ok(kind) => {
                if kinds.insert(kind) {
                    fuzz.keep(input);
                }
            }
            Err(_) => panic!("{}", fuzz.crash("config::parse", &input)),
        }
    }
    fuzz.report("config loader");
}

const JSON_TOKENS: &[&str] = &[
    "{",
    "}",
    "[",
    "]",
    ",",
    ":",
    "\"",
    "null",
    "true",
    "false",
    "-",
    "0",
    "1e400",
    "-1e400",
    "NaN",
    "Infinity",
    "1.7976931348623157e308",
    "18446744073709551616",
    "\"1,500\"",
    "\"2025-13-45T25:61:61Z\"",
    "\"\\ud800\"",
    "\"\\u0000\"",
    "[[[[[[[[[[[[[[[[",
    "]]]]]]]]]]]]]]]]",
    "\"balance\":",
    "\"amount\":",
    "\"value\":",
    "\"data\":",
    "\"volume\":",
    "\"expiry_date\":",
    "\"status\":",
    "\"id\":",
    "\"unit\":",
    "\"KB\"",
    "\"ГБ\"",
    "\"mb\"",
    " ",
];

/// Every HTTP driver's decoding of its data answer: mutated fixtures served as the 200 body of
/// the path each poll reads. The outcome is a reading or a classified error, never a panic.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fuzz_driver_response_decoders() {
    let mock = MockOperator::start_background();
    for subject in SUBJECTS {
        let folder = subject.driver;
        let corpus = files_in(&format!("tests/fixtures/{folder}"), "json");
        if corpus.is_empty() {
            panic!("no JSON fixtures for {} under tests/fixtures/{folder}", subject.driver);
        }
        let built = Built::new(&(subject.config)(&mock.base_url(subject.driver), secret_of(subject.driver)));
        let mut fuzz = Mutator::new(corpus, JSON_TOKENS);
        let mut kinds = std::collections::HashSet::new();
        while let Some(input) = fuzz.input(64 << 10) {
            mock.clear_faults();
            let body = String::from_utf8_lossy(&input).into_owned();
            mock.fault(subject.driver, subject.data_path, Fault::Body(200, "application/json", body));
            let poll = built.poll("subject-line", Duration::from_secs(5));
            let outcome = futures_util::FutureExt::catch_unwind(std::panic::AssertUnwindSafe(poll)).await;
            match outcome {
                Ok((result, _notes)) => {
                    let kind = match result {
                        Ok(r) => format!("ok {:?} {:?}", r.balance.is_some(), r.data_remaining.is_some()),
                        Err(e) => format!("{} {}", e.reason(), e.to_string().chars().take(40).collect::<String>()),
                    };
                    if kinds.insert(kind) {
                        fuzz.keep(input);
                    }
                }
                Err(_) => panic!("{}", fuzz.crash(subject.driver, &input)),
            }
        }
        fuzz.report(&format!("{} decoder", subject.driver));
    }
}

const NAME_TOKENS: &[&str] =
    &["\\", "\"", "\\\"", "\\n", "}", "{", "=", ",", "\u{2028}", "ж", "😀", "\u{7f}", " ", "#", "line=\"x\"", "\\\\"];

/// The exposition: lines and labels with hostile names render to text that Prometheus' own
/// parser (`promtool check metrics`) accepts, and the `line` label reads back as the name.
#[test]
fn fuzz_exposition_label_escaping_round_trips_through_promtool() {
    let corpus = vec![b"gate-01".to_vec(), "тракер \"север\"".as_bytes().to_vec(), br"back\slash".to_vec()];
    let mut fuzz = Mutator::new(corpus, NAME_TOKENS);
    // promtool takes ~30 ms a run: a few hundred inputs per target run.
    while let Some(input) = fuzz.input(200) {
        let name = String::from_utf8_lossy(&input).into_owned();
        let quoted = serde_json::to_string(&name).unwrap();
        let yaml = format!("lines:\n  - {{name: {quoted}, driver: demo, labels: {{site: {quoted}}}}}\n");
        let Ok(config) = config::parse("fuzz.yaml", &yaml, esim_exporter::drivers::REGISTRY) else { continue };
        let text = exposition_of(&config);
        crate::binary::promtool_check_metrics(&text);
        let label = text
            .lines()
            .find(|l| l.starts_with("esim_line_info{"))
            .and_then(|l| l.strip_prefix("esim_line_info{line=\""))
            .map(read_label_value)
            .unwrap_or_else(|| panic!("{}\nno esim_line_info in:\n{text}", fuzz.crash("exposition", &input)));
        assert_eq!(label, config.lines[0].name, "{}", fuzz.crash("exposition", &input));
    }
    fuzz.report("exposition");
}

/// One line's exposition after a poll of the demo driver.
fn exposition_of(config: &config::Config) -> String {
    let store = esim_exporter::store::Store::new();
    store.apply_plan(&config.lines);
    let now = std::time::SystemTime::now();
    let reading = esim_exporter::reading::Reading { sms_remaining: Some(1), ..Default::default() };
    let outcome =
        esim_exporter::store::PollOutcome { at: now, duration: Duration::from_millis(5), result: Ok(reading) };
    store.record(&config.lines[0].name, outcome);
    let state = store.get(&config.lines[0].name).expect("line");
    esim_exporter::metrics::render_line_text(&state, &config.global, now)
}

/// A label value in text format, up to its closing quote, unescaped (`\\`, `\"`, `\n`).
fn read_label_value(s: &str) -> String {
    let mut out = String::new();
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => return out,
            '\\' => match chars.next() {
                Some('n') => out.push('\n'),
                Some(other) => out.push(other),
                None => break,
            },
            c => out.push(c),
        }
    }
    out
}
