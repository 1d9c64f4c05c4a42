//! Per-account session state of the HTTP drivers: the token cache ([`Session`]: one login
//! shared by concurrent polls, cached until shortly before it expires, refreshed once when the
//! operator rejects it), values shared by several lines ([`Shared`]: a balance per personal
//! account, a pay type per number, fetched once however many polls ask at the same time), and
//! the [`SessionStore`] that hands a rebuilt driver the session of its predecessor, so a
//! config reload does not log every account in again.
//!
//! A driver keeps one `Arc` of its own state struct holding these, obtained at build time
//! from `cx.sessions.get_or_create(...)` with a [`fingerprint`] of everything that makes a
//! session valid (credentials, base URL): change any of them and the account starts afresh.

use std::collections::HashMap;
use std::future::Future;
use std::hash::Hash;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use super::http::{Request, Response};
use crate::config::secret::Secret;
use crate::drivers::contract::PollContext;
// The store has a file of its own so that the contract's `BuildContext` can hold it without
// importing this file (which speaks `PollContext`); it is still found here.
pub use super::session_store::SessionStore;
use crate::error::PollError;

/// A token (or session) just obtained, with its lifetime when the operator says.
#[derive(Clone, Debug)]
pub struct Fresh<T> {
    pub value: T,
    pub expires_in: Option<Duration>,
}

/// A token handed to one poll; `generation` tells an old token from a refreshed one.
#[derive(Clone, Debug)]
pub struct Lease<T> {
    pub value: T,
    generation: u64,
    /// This lease's own login fetched the token (not another poll's, not the cache).
    fresh: bool,
}

/// How long before the operator's expiry a token is replaced: a tenth of its lifetime, at
/// most five minutes (3600 s tokens are renewed after 3300 s).
pub fn refresh_margin(expires_in: Duration) -> Duration {
    (expires_in / 10).min(Duration::from_secs(300))
}

struct Cached<T> {
    value: T,
    generation: u64,
    refresh_at: Option<Instant>,
}

struct SessionState<T> {
    current: Option<Cached<T>>,
    generation: u64,
}

/// One account's token. The lock is held while logging in, so polls that need a token at the
/// same time wait for that one login and share its result (no thundering herd).
pub struct Session<T> {
    state: tokio::sync::Mutex<SessionState<T>>,
    logins: AtomicU64,
}

impl<T> Default for Session<T> {
    fn default() -> Self {
        Session {
            state: tokio::sync::Mutex::new(SessionState { current: None, generation: 0 }),
            logins: AtomicU64::new(0),
        }
    }
}

impl<T> std::fmt::Debug for Session<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Session(logins: {})", self.logins.load(Ordering::Relaxed))
    }
}

impl<T: Clone + Send> Session<T> {
    /// The cached token, or a new one from `login` when there is none or it is about to
    /// expire. Waiting for another poll's login counts against this poll's deadline.
    pub async fn lease<F, Fut>(&self, cx: &PollContext, login: F) -> Result<Lease<T>, PollError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Fresh<T>, PollError>>,
    {
        let mut state = tokio::time::timeout_at(cx.deadline, self.state.lock())
            .await
            .map_err(|_| PollError::Timeout(cx.timeout))?;
        if let Some(cached) = &state.current {
            if cached.refresh_at.is_none_or(|at| Instant::now() < at) {
                return Ok(Lease { value: cached.value.clone(), generation: cached.generation, fresh: false });
            }
            cx.note("token about to expire: getting a new one");
        }
        state.current = None;
        let fresh = login().await?;
        self.logins.fetch_add(1, Ordering::Relaxed);
        state.generation += 1;
        let refresh_at = fresh.expires_in.map(|e| Instant::now() + e.saturating_sub(refresh_margin(e)));
        let generation = state.generation;
        state.current = Some(Cached { value: fresh.value.clone(), generation, refresh_at });
        Ok(Lease { value: fresh.value, generation, fresh: true })
    }

    /// Forgets `lease`'s token, unless another poll has already replaced it.
    pub async fn invalidate(&self, lease: &Lease<T>) {
        let mut state = self.state.lock().await;
        if state.current.as_ref().is_some_and(|c| c.generation == lease.generation) {
            state.current = None;
        }
    }

    /// Forgets any token (e.g. after the operator said the login itself is no longer valid).
    pub async fn clear(&self) {
        self.state.lock().await.current = None;
    }

    /// Runs `call` with the token; when `expired` says the operator rejected it, gets a new
    /// token and runs `call` again, returning whatever that answer is (the caller's status
    /// check then makes a rejection `auth`). The new token is normally this poll's own login;
    /// when it was another poll's (logged in first) and is rejected too, the operator dropped
    /// it while this poll waited, which says nothing of the credentials: this poll logs in
    /// once itself and tries a last time. At most one login and three calls per poll.
    pub async fn call<L, LF, C, CF>(
        &self,
        cx: &PollContext,
        mut login: L,
        mut call: C,
        expired: impl Fn(&Response) -> bool,
    ) -> Result<Response, PollError>
    where
        L: FnMut() -> LF,
        LF: Future<Output = Result<Fresh<T>, PollError>>,
        C: FnMut(T) -> CF,
        CF: Future<Output = Result<Response, PollError>>,
    {
        let lease = self.lease(cx, &mut login).await?;
        let response = call(lease.value.clone()).await?;
        if !expired(&response) {
            return Ok(response);
        }
        cx.note("the operator rejected the token: logging in again, once");
        self.invalidate(&lease).await;
        let lease = self.lease(cx, &mut login).await?;
        if lease.fresh {
            return call(lease.value).await;
        }
        let response = call(lease.value.clone()).await?;
        if !expired(&response) {
            return Ok(response);
        }
        cx.note("the operator rejected the token another poll had just fetched: logging in once more");
        self.invalidate(&lease).await;
        let lease = self.lease(cx, &mut login).await?;
        call(lease.value).await
    }

    /// How many logins this session made (tests, debug notes).
    pub fn logins(&self) -> u64 {
        self.logins.load(Ordering::Relaxed)
    }
}

impl Session<Secret> {
    /// The client-credentials GET of the IoT platforms (1NCE, airalo, emnify): `request` with
    /// the session's bearer token, sent; a 401 gets a new token from `login` once and the
    /// request again. Any other status is left to the caller.
    pub async fn send_with_refresh<'a, L, LF>(
        &self,
        cx: &'a PollContext,
        login: L,
        request: impl Fn(&Secret) -> Request<'a>,
    ) -> Result<Response, PollError>
    where
        L: FnMut() -> LF,
        LF: Future<Output = Result<Fresh<Secret>, PollError>>,
    {
        self.call(cx, login, |token| request(&token).send(cx), |r| r.status().as_u16() == 401).await
    }
}

/// One shared value and when it was fetched; the lock is held while fetching.
type Slot<V> = Arc<tokio::sync::Mutex<Option<(Instant, V)>>>;

/// Values shared by the lines of an account, each fetched by one poll at a time and reused
/// while young enough. Failures are not kept: the next poll asks again.
pub struct Shared<K, V> {
    slots: Mutex<HashMap<K, Slot<V>>>,
    fetches: AtomicU64,
}

impl<K, V> Default for Shared<K, V> {
    fn default() -> Self {
        Shared { slots: Mutex::new(HashMap::new()), fetches: AtomicU64::new(0) }
    }
}

impl<K, V> std::fmt::Debug for Shared<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Shared(fetches: {})", self.fetches.load(Ordering::Relaxed))
    }
}

impl<K: Eq + Hash + Clone, V: Clone> Shared<K, V> {
    /// The value of `key` if fetched less than `max_age` ago, else `fetch`'s. Polls asking for
    /// the same key at the same time wait for one fetch.
    pub async fn get_or_fetch<F, Fut>(
        &self,
        cx: &PollContext,
        key: K,
        max_age: Duration,
        fetch: F,
    ) -> Result<V, PollError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<V, PollError>>,
    {
        let slot = {
            let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
            slots.entry(key).or_default().clone()
        };
        let mut value =
            tokio::time::timeout_at(cx.deadline, slot.lock()).await.map_err(|_| PollError::Timeout(cx.timeout))?;
        if let Some((at, v)) = &*value {
            if at.elapsed() < max_age {
                return Ok(v.clone());
            }
        }
        let fresh = fetch().await?;
        self.fetches.fetch_add(1, Ordering::Relaxed);
        *value = Some((Instant::now(), fresh.clone()));
        Ok(fresh)
    }

    /// Sets the value of `key` (a poll learned it on the way, e.g. a corrected pay type).
    pub fn put(&self, key: K, value: V) {
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        let slot = Arc::new(tokio::sync::Mutex::new(Some((Instant::now(), value))));
        slots.insert(key, slot);
    }

    /// Drops the value of `key` (it turned out wrong, e.g. a pay type that changed).
    pub fn forget(&self, key: &K) {
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        slots.remove(key);
    }

    /// How many fetches ran (tests).
    pub fn fetches(&self) -> u64 {
        self.fetches.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::SystemClock;

    fn cx(timeout: Duration) -> PollContext {
        PollContext::new(timeout, Arc::new(SystemClock))
    }

    #[tokio::test(start_paused = true)]
    async fn token_is_cached_until_shortly_before_expiry() {
        let session: Session<u32> = Session::default();
        let cx = cx(Duration::from_secs(30));
        let mut n = 0;
        let mut login = || {
            n += 1;
            let v = n;
            async move { Ok(Fresh { value: v, expires_in: Some(Duration::from_secs(3600)) }) }
        };
        assert_eq!(session.lease(&cx, &mut login).await.unwrap().value, 1);
        tokio::time::advance(Duration::from_secs(3299)).await;
        let cx = super::tests::cx(Duration::from_secs(30));
        assert_eq!(session.lease(&cx, &mut login).await.unwrap().value, 1);
        tokio::time::advance(Duration::from_secs(2)).await;
        let cx = super::tests::cx(Duration::from_secs(30));
        assert_eq!(session.lease(&cx, &mut login).await.unwrap().value, 2, "renewed 5 min early");
        assert_eq!(session.logins(), 2);
    }

    #[tokio::test]
    async fn concurrent_polls_share_one_login() {
        let session: Arc<Session<u32>> = Arc::new(Session::default());
        let calls = Arc::new(AtomicU64::new(0));
        let mut tasks = Vec::new();
        for _ in 0..20 {
            let (session, calls) = (session.clone(), calls.clone());
            tasks.push(tokio::spawn(async move {
                let cx = cx(Duration::from_secs(5));
                session
                    .lease(&cx, || async {
                        calls.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        Ok(Fresh { value: 7, expires_in: None })
                    })
                    .await
                    .unwrap()
                    .value
            }));
        }
        for t in tasks {
            assert_eq!(t.await.unwrap(), 7);
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_rejected_token_is_refreshed_once_and_only_once() {
        let session: Session<u32> = Session::default();
        let cx = cx(Duration::from_secs(5));
        let logins = AtomicU64::new(0);
        let login = || {
            let n = logins.fetch_add(1, Ordering::SeqCst) as u32 + 1;
            async move { Ok(Fresh { value: n, expires_in: None }) }
        };
        // The operator accepts token 2 only.
        let call =
            |token: u32| async move { Ok(Response::new(if token == 2 { 200 } else { 401 }, None, "", "GET /x")) };
        let r = session.call(&cx, login, call, |r| r.status().as_u16() == 401).await.unwrap();
        assert_eq!(r.status().as_u16(), 200);
        assert_eq!(logins.load(Ordering::SeqCst), 2);
        // Now it accepts nothing: one refresh, then the 401 comes back to the caller.
        let call = |_token: u32| async move { Ok(Response::new(401, None, "", "GET /x")) };
        let r = session.call(&cx, login, call, |r| r.status().as_u16() == 401).await.unwrap();
        assert_eq!(r.status().as_u16(), 401);
        assert_eq!(logins.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn a_token_of_another_polls_login_refused_again_gets_a_login_of_this_poll() {
        // The operator drops every token (twice, as the soak test's "auth expiry" faults
        // did): another poll sees it first and logs in; this poll takes that token, waits for
        // its turn, and meanwhile the operator drops that one too. The credentials work (two
        // logins just succeeded), yet this used to come back as a 401 — `auth`, a 6 h lock-out.
        let session: Session<u32> = Session::default();
        let cx = cx(Duration::from_secs(5));
        let valid = Mutex::new(Vec::new());
        let logins = AtomicU64::new(0);
        let login = || {
            let n = logins.fetch_add(1, Ordering::SeqCst) as u32 + 1;
            valid.lock().unwrap().push(n);
            async move { Ok(Fresh { value: n, expires_in: None }) }
        };
        let other = session.lease(&cx, login).await.unwrap();
        let calls = AtomicU64::new(0);
        let (session, cx, valid, calls, other, logins) = (&session, &cx, &valid, &calls, &other, &logins);
        let call = |token: u32| async move {
            match calls.fetch_add(1, Ordering::SeqCst) {
                0 => {
                    valid.lock().unwrap().clear();
                    session.invalidate(other).await;
                    let n = logins.fetch_add(1, Ordering::SeqCst) as u32 + 1;
                    valid.lock().unwrap().push(n);
                    session.lease(cx, || async move { Ok(Fresh { value: n, expires_in: None }) }).await.unwrap();
                }
                1 => valid.lock().unwrap().clear(),
                _ => {}
            }
            let status = if valid.lock().unwrap().contains(&token) { 200 } else { 401 };
            Ok(Response::new(status, None, "", "GET /x"))
        };
        let r = session.call(cx, login, call, |r| r.status().as_u16() == 401).await.unwrap();
        assert_eq!(r.status().as_u16(), 200, "a login of its own, then the answer");
        assert_eq!((calls.load(Ordering::SeqCst), logins.load(Ordering::SeqCst)), (3, 3));
    }

    #[tokio::test]
    async fn a_stale_invalidation_does_not_drop_a_newer_token() {
        let session: Session<u32> = Session::default();
        let cx = cx(Duration::from_secs(5));
        let old = session.lease(&cx, || async { Ok(Fresh { value: 1, expires_in: None }) }).await.unwrap();
        session.invalidate(&old).await;
        let new = session.lease(&cx, || async { Ok(Fresh { value: 2, expires_in: None }) }).await.unwrap();
        session.invalidate(&old).await;
        let again = session.lease(&cx, || async { Ok(Fresh { value: 3, expires_in: None }) }).await.unwrap();
        assert_eq!((new.value, again.value), (2, 2));
    }

    #[tokio::test]
    async fn shared_values_are_fetched_once_while_young() {
        let shared: Arc<Shared<String, u32>> = Arc::new(Shared::default());
        let mut tasks = Vec::new();
        for _ in 0..10 {
            let shared = shared.clone();
            tasks.push(tokio::spawn(async move {
                let cx = cx(Duration::from_secs(5));
                shared
                    .get_or_fetch(&cx, "ls-1".to_string(), Duration::from_secs(60), || async {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        Ok(5)
                    })
                    .await
            }));
        }
        for t in tasks {
            assert_eq!(t.await.unwrap().unwrap(), 5);
        }
        assert_eq!(shared.fetches(), 1);
        let cx = cx(Duration::from_secs(5));
        let failed = shared
            .get_or_fetch(&cx, "ls-2".into(), Duration::ZERO, || async { Err(PollError::Timeout(Duration::ZERO)) });
        assert!(failed.await.is_err());
        shared.forget(&"ls-1".to_string());
        assert_eq!(
            shared.get_or_fetch(&cx, "ls-1".into(), Duration::from_secs(60), || async { Ok(6) }).await.unwrap(),
            6
        );
    }

    #[test]
    fn the_store_hands_a_live_session_to_a_rebuilt_driver_and_forgets_dead_ones() {
        let store = SessionStore::default();
        let fp = store.fingerprint(&["id", "secret", "https://api"]);
        assert_ne!(fp, store.fingerprint(&["id", "other", "https://api"]));
        let a: Arc<Session<u32>> = store.get_or_create("mts", "corp", fp, Session::default);
        let b: Arc<Session<u32>> = store.get_or_create("mts", "corp", fp, Session::default);
        assert!(Arc::ptr_eq(&a, &b));
        let other: Arc<Session<u32>> = store.get_or_create("mts", "corp", fp ^ 1, Session::default);
        assert!(!Arc::ptr_eq(&a, &other));
        drop((a, b));
        let c: Arc<Session<u32>> = store.get_or_create("mts", "corp", fp, Session::default);
        assert_eq!(Arc::strong_count(&c), 1, "a new session once nobody held the old one");
    }
}
