//! [`SessionStore`]: hands a rebuilt driver the session of its predecessor, so that a config
//! reload does not log every account in again. Sessions themselves are `drivers::session`.

use std::any::Any;
use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::hash::{BuildHasher, Hash, Hasher};
use std::sync::{Arc, Mutex, Weak};

type StoreKey = (&'static str, String, u64);

/// Sessions by (driver, account, fingerprint), held weakly: a session lives as long as a
/// driver uses it, so a reload that rebuilds an unchanged account finds the old session
/// (the old driver is still running while the new plan is built), and a removed account's
/// session goes with its driver.
#[derive(Default)]
pub struct SessionStore {
    entries: Mutex<HashMap<StoreKey, Weak<dyn Any + Send + Sync>>>,
    hasher: RandomState,
}

impl std::fmt::Debug for SessionStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self.entries.lock().map(|e| e.len()).unwrap_or(0);
        write!(f, "SessionStore({n} sessions)")
    }
}

impl SessionStore {
    /// The live session of this account and fingerprint, or a new one from `make`.
    pub fn get_or_create<S: Any + Send + Sync>(
        &self,
        driver: &'static str,
        account: &str,
        fingerprint: u64,
        make: impl FnOnce() -> S,
    ) -> Arc<S> {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries.retain(|_, weak| weak.strong_count() > 0);
        let key = (driver, account.to_string(), fingerprint);
        if let Some(existing) = entries.get(&key).and_then(Weak::upgrade) {
            if let Ok(session) = existing.downcast::<S>() {
                return session;
            }
        }
        let session = Arc::new(make());
        let erased: Arc<dyn Any + Send + Sync> = session.clone();
        entries.insert(key, Arc::downgrade(&erased));
        session
    }

    /// A fingerprint of the parts that make a session valid (credentials, base URL), keyed per
    /// store so it means nothing outside this process.
    pub fn fingerprint(&self, parts: &[&str]) -> u64 {
        let mut h = self.hasher.build_hasher();
        for part in parts {
            part.hash(&mut h);
        }
        h.finish()
    }
}
