//! `esim_account_needs_login{account}`: the framework's gauge for the drivers' login board.
//! Drivers report that an account waits for a person to [`LoginBoard`]; the board hands each
//! change to this observer, so the series is registered and set here, never in `drivers/`.

use std::sync::Arc;

use prometheus::{IntGaugeVec, Opts, Registry};

use super::catalog;
use crate::drivers::onboarding::{LoginBoard, LoginObserver};

/// The gauge, registered once per process.
pub struct LoginGauge {
    gauge: IntGaugeVec,
}

impl LoginGauge {
    /// `esim_account_needs_login` in `registry`.
    pub fn register(registry: &Registry) -> Result<LoginGauge, prometheus::Error> {
        let family = catalog::find(catalog::ESIM_ACCOUNT_NEEDS_LOGIN);
        let help = family.map_or(catalog::ESIM_ACCOUNT_NEEDS_LOGIN, |f| f.help);
        let gauge = IntGaugeVec::new(Opts::new(catalog::ESIM_ACCOUNT_NEEDS_LOGIN, help), &["account"])?;
        registry.register(Box::new(gauge.clone()))?;
        Ok(LoginGauge { gauge })
    }
}

impl LoginObserver for LoginGauge {
    fn needs_login(&self, account: &str, waiting: bool) {
        self.gauge.with_label_values(&[account]).set(i64::from(waiting));
    }

    fn forget(&self, account: &str) {
        // A series that was never set has nothing to remove.
        let _ = self.gauge.remove_label_values(&[account]);
    }
}

/// A login board whose changes show in `registry`'s `esim_account_needs_login`.
pub fn login_board(registry: &Registry) -> Result<LoginBoard, prometheus::Error> {
    Ok(LoginBoard::observed(Arc::new(LoginGauge::register(registry)?)))
}

#[cfg(test)]
mod tests {
    use std::time::SystemTime;

    use super::*;

    fn value(registry: &Registry, account: &str) -> Option<i64> {
        let families = registry.gather();
        let family = families.iter().find(|f| f.name() == catalog::ESIM_ACCOUNT_NEEDS_LOGIN)?;
        family
            .get_metric()
            .iter()
            .find(|m| m.get_label().iter().any(|l| l.value() == account))
            .map(|m| m.get_gauge().get_value() as i64)
    }

    #[test]
    fn the_gauge_follows_the_account_from_tracked_to_waiting_and_back() {
        let registry = Registry::new();
        let board = login_board(&registry).unwrap();
        board.track("corp");
        assert_eq!(value(&registry, "corp"), Some(0));
        let at = SystemTime::UNIX_EPOCH;
        board.needs_person("corp", "megafon", "the stored login was refused", at);
        board.needs_person("corp", "megafon", "again", at + std::time::Duration::from_secs(60));
        assert_eq!(value(&registry, "corp"), Some(1));
        let waiting = board.waiting();
        assert_eq!(waiting.len(), 1);
        assert_eq!(
            (waiting[0].why.as_str(), waiting[0].since),
            ("the stored login was refused", at),
            "first episode kept"
        );
        assert!(board.is_waiting("corp"));
        board.track("corp");
        assert!(board.is_waiting("corp"), "tracking again (a reload) keeps the episode");
        board.logged_in("corp");
        assert_eq!(value(&registry, "corp"), Some(0));
        assert!(board.waiting().is_empty());
        board.retain(|a| a != "corp");
        assert_eq!(value(&registry, "corp"), None, "a removed account's series goes");
    }
}
