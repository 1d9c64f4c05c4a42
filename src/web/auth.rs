//! `basic_auth_users`: bcrypt hashes, checked as exporter-toolkit does. A verified password is
//! remembered per user as a salted SHA-256 digest compared in constant time, so a scrape does
//! not pay bcrypt each time; an unknown user is checked against a dummy hash of the same cost,
//! so it takes as long to refuse as a wrong password.

use std::collections::{BTreeMap, HashMap};
use std::hash::{BuildHasher, Hasher};
use std::str::FromStr;
use std::sync::{Arc, Mutex};

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// bcrypt runs on blocking threads; at most this many at once, so a flood of wrong passwords
/// cannot take every core from scrapes.
const MAX_CONCURRENT_BCRYPT: usize = 2;

/// The configured users, their hashes and the cache of verified passwords.
#[derive(Debug)]
pub struct Users {
    hashes: HashMap<String, String>,
    /// A hash of a random password at the highest configured cost: unknown users check it.
    dummy: String,
    /// Per user, the digest of the last password bcrypt accepted.
    verified: Mutex<HashMap<String, [u8; 32]>>,
    salt: [u8; 16],
    bcrypt_slots: Arc<tokio::sync::Semaphore>,
}

impl Users {
    /// Validates every hash (`basic_auth_users.NAME` is named on error).
    pub fn new(users: BTreeMap<String, String>) -> Result<Users, String> {
        let mut max_cost = 0;
        let mut hashes = HashMap::new();
        for (user, hash) in users {
            if user.contains(':') {
                return Err(format!("basic_auth_users.{user}: a user name cannot contain `:`"));
            }
            let parts = bcrypt::HashParts::from_str(&hash)
                .map_err(|e| format!("basic_auth_users.{user}: not a bcrypt hash ({e})"))?;
            max_cost = max_cost.max(parts.get_cost());
            hashes.insert(user, hash);
        }
        let salt = random_salt();
        let dummy = if hashes.is_empty() {
            String::new()
        } else {
            bcrypt::hash(salt, max_cost).map_err(|e| format!("basic_auth_users: cannot build the dummy hash: {e}"))?
        };
        Ok(Users {
            hashes,
            dummy,
            verified: Mutex::new(HashMap::new()),
            salt,
            bcrypt_slots: Arc::new(tokio::sync::Semaphore::new(MAX_CONCURRENT_BCRYPT)),
        })
    }

    /// No users: no authentication.
    pub fn is_empty(&self) -> bool {
        self.hashes.is_empty()
    }

    fn digest(&self, user: &str, password: &str) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(self.salt);
        h.update(user.as_bytes());
        h.update([0]);
        h.update(password.as_bytes());
        h.finalize().into()
    }

    /// Whether `user` / `password` are valid. Cached after the first success per password.
    pub async fn verify(self: &Arc<Self>, user: &str, password: &str) -> bool {
        let digest = self.digest(user, password);
        let cached = self.verified.lock().unwrap_or_else(|p| p.into_inner()).get(user).copied();
        if let Some(known) = cached {
            if bool::from(known.ct_eq(&digest)) {
                return true;
            }
        }
        let (hash, known_user) = match self.hashes.get(user) {
            Some(hash) => (hash.clone(), true),
            None => (self.dummy.clone(), false),
        };
        let Ok(_slot) = self.bcrypt_slots.clone().acquire_owned().await else {
            return false;
        };
        let password = password.to_owned();
        let ok = tokio::task::spawn_blocking(move || bcrypt::verify(password, &hash).unwrap_or(false))
            .await
            .unwrap_or(false);
        if ok && known_user {
            self.verified.lock().unwrap_or_else(|p| p.into_inner()).insert(user.to_owned(), digest);
        }
        ok && known_user
    }
}

/// A per-process salt for the cache digests, from the standard library's random hasher keys
/// (no extra dependency for 16 bytes that never leave the process).
fn random_salt() -> [u8; 16] {
    let mut salt = [0; 16];
    for chunk in salt.chunks_mut(8) {
        let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
        hasher.write_u64(0x5eed);
        chunk.copy_from_slice(&hasher.finish().to_le_bytes());
    }
    salt
}

/// The user and password of an `Authorization: Basic` header; `None` when absent or malformed.
pub fn basic_credentials(header: Option<&axum::http::HeaderValue>) -> Option<(String, String)> {
    use base64::Engine;
    let value = header?.to_str().ok()?;
    let (scheme, encoded) = value.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD.decode(encoded.trim()).ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, password) = text.split_once(':')?;
    Some((user.to_owned(), password.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn users(cost: u32) -> Arc<Users> {
        let hash = bcrypt::hash("s3cret", cost).unwrap();
        Arc::new(Users::new(BTreeMap::from([("prom".to_string(), hash)])).unwrap())
    }

    #[tokio::test]
    async fn right_wrong_and_unknown() {
        let u = users(4);
        assert!(u.verify("prom", "s3cret").await);
        assert!(u.verify("prom", "s3cret").await, "cached");
        assert!(!u.verify("prom", "s3cret!").await);
        assert!(!u.verify("nobody", "s3cret").await);
        assert!(!u.verify("prom", "").await);
    }

    #[tokio::test]
    async fn a_cached_success_skips_bcrypt_and_an_unknown_user_pays_it() {
        let u = users(10);
        let start = std::time::Instant::now();
        assert!(u.verify("prom", "s3cret").await);
        let first = start.elapsed();
        let start = std::time::Instant::now();
        assert!(u.verify("prom", "s3cret").await);
        let cached = start.elapsed();
        let start = std::time::Instant::now();
        assert!(!u.verify("ghost", "s3cret").await);
        let unknown = start.elapsed();
        assert!(cached * 20 < first, "cached {cached:?} vs first {first:?}");
        assert!(unknown * 3 > first, "unknown user {unknown:?} must cost like bcrypt {first:?}");
    }

    #[test]
    fn bad_hashes_and_headers() {
        let e = Users::new(BTreeMap::from([("a".to_string(), "plain".to_string())])).unwrap_err();
        assert!(e.contains("basic_auth_users.a"), "{e}");
        let h = axum::http::HeaderValue::from_static("Basic cHJvbTpzM2M6cmV0");
        assert_eq!(basic_credentials(Some(&h)), Some(("prom".into(), "s3c:ret".into())));
        let h = axum::http::HeaderValue::from_static("Bearer abc");
        assert_eq!(basic_credentials(Some(&h)), None);
        assert_eq!(basic_credentials(None), None);
    }
}
