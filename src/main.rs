//! The `esim-exporter` binary: flags → logging → `esim_exporter::run`. Nothing a test needs.

use std::process::ExitCode;

use clap::Parser;
use esim_exporter::cli::Flags;
use esim_exporter::{logging, run, Outcome};

fn main() -> ExitCode {
    let flags = Flags::parse();
    // `lines` answers on stdout and stderr itself: its client's logs only when asked for.
    let lines = matches!(flags.command, Some(esim_exporter::cli::Command::Lines(_)));
    // `--once`: 0 all polls ok, 1 some failed, 2 the config (or a flag) is unusable; `lines`:
    // 0 no shown line failing, 1 some failing, 2 the exporter cannot be asked.
    let once = flags.once || lines;
    if !lines || flags.log_level == esim_exporter::cli::LogLevel::Debug {
        logging::init(flags.log_level, flags.log_format);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("esim-exporter: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(flags)) {
        Ok(Outcome::Ok) => ExitCode::SUCCESS,
        Ok(Outcome::Failed) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("esim-exporter: {:#}", anyhow::Error::new(e));
            if once {
                ExitCode::from(2)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}
