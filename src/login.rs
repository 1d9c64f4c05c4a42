//! `esim-exporter login --account NAME`: the one-time login of an account whose driver needs a
//! person (an SMS code typed at this terminal). The account's driver does the talking
//! (`Driver::onboard`) and stores the long-lived token where the running exporter finds it.

use std::io::{BufRead, Write};
use std::sync::Arc;

use crate::app::ApplyError;
use crate::cli::{Flags, LoginArgs};
use crate::clock::SystemClock;
use crate::drivers::onboarding::Person;
use crate::drivers::{token_file, BuildContext};
use crate::{Outcome, RunError};

/// Loads the config, builds the account's driver as the exporter would (same `token_file` or
/// `--storage.path`), and lets it walk the person through the login.
pub async fn run(flags: &Flags, args: &LoginArgs) -> Result<Outcome, RunError> {
    let source = crate::config_source(flags);
    let source_name = source.describe();
    let config =
        source.load().map_err(|e| RunError::Load { source_name: source_name.clone(), error: ApplyError::from(e) })?;
    let declared = || config.accounts.iter().filter(|a| !a.implicit);
    let Some(account) = declared().find(|a| a.name == args.account) else {
        let known: Vec<&str> = declared().map(|a| a.name.as_str()).collect();
        return Err(RunError::Flag(format!(
            "login: no account `{}` in {source_name} (accounts: {})",
            args.account,
            if known.is_empty() { "none".to_string() } else { known.join(", ") }
        )));
    };
    let cx = BuildContext {
        token_dir: flags.storage_path.as_deref().map(token_file::dir_beside),
        ..BuildContext::new(Arc::new(SystemClock))
    };
    let driver = (account.driver.build)(account, &cx)
        .map_err(|e| RunError::Load { source_name: source_name.clone(), error: ApplyError::from(e) })?;
    let mut person = Terminal;
    match driver.onboard(&mut person).await {
        Ok(path) => {
            println!("Logged in: the token of account `{}` is in {} (mode 0600).", account.name, path.display());
            println!("A running exporter takes it at its next reload (SIGHUP or POST /-/reload).");
            Ok(Outcome::Ok)
        }
        Err(e) => {
            eprintln!(
                "esim-exporter: login of account `{}` ({}) failed, {}: {e}",
                account.name,
                account.driver.name,
                e.reason()
            );
            Ok(Outcome::Failed)
        }
    }
}

/// The person at this process's terminal: steps and prompts on stderr, answers from stdin
/// (a pipe works as well as a terminal).
struct Terminal;

impl Person for Terminal {
    fn tell(&mut self, text: &str) {
        eprintln!("{text}");
    }

    fn ask(&mut self, prompt: &str) -> Option<String> {
        let mut stderr = std::io::stderr();
        let _ = write!(stderr, "{prompt}");
        let _ = stderr.flush();
        let mut answer = String::new();
        // Blocking on purpose: nothing else runs while the person types.
        match std::io::stdin().lock().read_line(&mut answer) {
            Ok(0) | Err(_) => None,
            Ok(_) => Some(answer.trim().to_string()),
        }
    }
}
