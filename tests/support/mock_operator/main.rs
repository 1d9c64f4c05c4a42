//! `mock-operator`: the fake operator APIs of the tests as a program, for benchmarks and a
//! local demo. Built only with `--features mock`, never part of the release binary.
//!
//! ```text
//! cargo run --features mock --bin mock-operator -- [--listen 127.0.0.1:0] [--lines N] [--fixtures DIR]
//! ```
//!
//! It prints the base URL of each operator and the credentials it accepts, then serves until
//! interrupted. With `--lines N` every operator knows N numbers (`+7916…`), lists them for
//! discovery and answers each with values that differ per number and change with each poll.

#[path = "mod.rs"]
mod mock_operator;

use std::net::SocketAddr;
use std::path::PathBuf;

use mock_operator::{MockOperator, CREDENTIALS};

fn main() {
    let mut listen: SocketAddr = "127.0.0.1:0".parse().expect("address");
    let mut lines = 0usize;
    let mut fixtures = mock_operator::fixtures_dir();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = |name: &str| args.next().unwrap_or_else(|| usage(&format!("{name} needs a value")));
        match arg.as_str() {
            "--listen" => listen = value("--listen").parse().unwrap_or_else(|_| usage("--listen takes HOST:PORT")),
            "--lines" => lines = value("--lines").parse().unwrap_or_else(|_| usage("--lines takes a number")),
            "--fixtures" => fixtures = PathBuf::from(value("--fixtures")),
            "-h" | "--help" => usage(""),
            other => usage(&format!("unknown argument `{other}`")),
        }
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    runtime.block_on(async move {
        let mock = MockOperator::start_on(listen, fixtures).await;
        for operator in mock_operator::operators() {
            let name = operator.name();
            if lines > 0 {
                mock.set_lines(name, lines);
            }
            let (user, secret) =
                CREDENTIALS.iter().find(|(op, _, _)| *op == name).map(|(_, u, s)| (*u, *s)).unwrap_or(("", ""));
            println!("{name}: base_url {} (login or client_id `{user}`, secret `{secret}`)", mock.base_url(name));
        }
        println!(
            "megafon, t2: log in once with `esim-exporter login --account NAME`, SMS code {} (the secret above is a stored token)",
            mock_operator::megafon::SMS_CODE
        );
        println!("mock operator listening on {} with {lines} generated lines; Ctrl-C stops it", mock.url());
        let _ = tokio::signal::ctrl_c().await;
    });
}

fn usage(problem: &str) -> ! {
    if !problem.is_empty() {
        eprintln!("mock-operator: {problem}");
    }
    eprintln!("usage: mock-operator [--listen 127.0.0.1:0] [--lines N] [--fixtures DIR]");
    std::process::exit(if problem.is_empty() { 0 } else { 2 });
}
