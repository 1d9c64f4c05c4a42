//! The shape every IoT platform driver shares (1NCE, airalo, emnify, Hologram): the HTTP client
//! and the account's state kept across reloads ([`Platform`]); a driver written as plain async
//! methods ([`PlatformDriver`]) that [`Paced`] turns into a [`Driver`] whose requests the
//! framework paces; the bearer token's "GET with one refresh" ([`BearerApi`]); and the
//! client-credentials keys and token answer ([`ClientCredentials`], [`AccessToken`]).
//! An operator file then holds its spec, its paths and its response decoding.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use super::decode::Num;
use super::http::{HttpClient, HttpOptions, Request, Response};
use super::options::required_secret;
use super::session::{Fresh, Session};
use crate::config::fields::Fields;
use crate::config::secret::Secret;
use crate::drivers::contract::{
    Account, BoxFuture, BuildContext, BuildError, Cost, DiscoveredLine, Driver, DriverOptions, Line, PollContext,
};
use crate::error::PollError;
use crate::reading::Reading;

/// What a platform driver is built from: the account's HTTP client, and the state of its
/// predecessor when a reload rebuilt the driver with the same credentials and base URL.
pub struct Platform<S> {
    pub client: HttpClient,
    pub state: Arc<S>,
}

impl<S: Default + Send + Sync + 'static> Platform<S> {
    /// `keys` are what makes the state valid besides the base URL (credentials, an org id):
    /// change any and the account starts afresh (a new login, no cached values).
    pub fn build(account: &Account, cx: &BuildContext, http: &HttpOptions, keys: &[&str]) -> Result<Self, BuildError> {
        let client = HttpClient::new(account, http, cx)?;
        let mut parts = keys.to_vec();
        parts.push(http.base_url.as_str());
        let fingerprint = cx.sessions.fingerprint(&parts);
        let state = cx.sessions.get_or_create(account.driver.name, &account.name, fingerprint, S::default);
        Ok(Platform { client, state })
    }
}

/// A platform driver as plain async methods. Every platform paces its own requests (each
/// request waits for the account's `rate_limit`) and says what a cycle costs.
pub trait PlatformDriver: Send + Sync + 'static {
    fn read(&self, line: &Line, cx: &PollContext) -> impl Future<Output = Result<Reading, PollError>> + Send;
    fn list(&self, cx: &PollContext) -> impl Future<Output = Result<Vec<DiscoveredLine>, PollError>> + Send;
    fn cost(&self, lines: usize) -> Cost;
}

/// The [`Driver`] of a [`PlatformDriver`].
pub struct Paced<P>(pub P);

impl<P: PlatformDriver> Paced<P> {
    pub fn driver(platform: P) -> Arc<dyn Driver> {
        Arc::new(Paced(platform))
    }
}

impl<P: PlatformDriver> Driver for Paced<P> {
    fn poll<'a>(&'a self, line: &'a Line, cx: &'a PollContext) -> BoxFuture<'a, Result<Reading, PollError>> {
        Box::pin(self.0.read(line, cx))
    }

    fn discover<'a>(&'a self, cx: &'a PollContext) -> BoxFuture<'a, Result<Vec<DiscoveredLine>, PollError>> {
        Box::pin(self.0.list(cx))
    }

    fn paces_requests(&self) -> bool {
        true
    }

    fn cost(&self, lines: usize) -> Option<Cost> {
        Some(self.0.cost(lines))
    }
}

/// Requests listing pages of `page_size` items: the pages one listing of `lines` takes.
pub fn pages(lines: usize, page_size: u64) -> f64 {
    (lines as f64 / page_size as f64).ceil().max(1.0)
}

/// A platform that sends a bearer token got from a login of its own.
pub trait BearerApi: Sync {
    /// The account's token cache.
    fn token(&self) -> &Session<Secret>;

    /// A new token from the platform.
    fn login(&self, cx: &PollContext) -> impl Future<Output = Result<Fresh<Secret>, PollError>> + Send;

    /// `request` with the account's token, sent and paced; a token the platform rejects
    /// (401) is replaced once. The status is left to the caller.
    fn get<'a>(
        &'a self,
        cx: &'a PollContext,
        request: impl Fn(&Secret) -> Request<'a> + Send + Sync + 'a,
    ) -> impl Future<Output = Result<Response, PollError>> + Send + 'a {
        self.token().send_with_refresh(cx, || self.login(cx), request)
    }
}

/// The OAuth2 client-credentials keys of an account (`client_id`, `client_secret` or
/// `client_secret_file`).
#[derive(Clone, Debug)]
pub struct ClientCredentials {
    pub id: String,
    pub secret: Secret,
}

impl ClientCredentials {
    pub fn take(f: &mut Fields<'_>) -> ClientCredentials {
        let id = f.required_string("client_id").unwrap_or_default();
        let secret = required_secret(f, "client_secret", "client_secret_file");
        ClientCredentials { id, secret }
    }

    /// What makes a session of these credentials valid (for [`Platform::build`]).
    pub fn keys(&self) -> [&str; 2] {
        [&self.id, self.secret.expose()]
    }
}

/// The token endpoint's answer (RFC 6749 §5.1): `access_token`, `expires_in` seconds.
#[derive(Deserialize)]
pub struct AccessToken {
    pub access_token: String,
    #[serde(default)]
    pub expires_in: Option<Num>,
}

impl AccessToken {
    /// The token, living `expires_in` (at most `cap`, the platform's own advice); an empty
    /// token is a bad response of `endpoint` (`POST /oauth/token`).
    pub fn fresh(self, endpoint: &str, cap: Option<Duration>) -> Result<Fresh<Secret>, PollError> {
        if self.access_token.trim().is_empty() {
            return Err(PollError::BadResponse(format!("{endpoint}: empty access_token")));
        }
        let said = self.expires_in.map(|n| Duration::from_secs_f64(n.0.clamp(0.0, 1e9)));
        let expires_in = match (said, cap) {
            (Some(said), Some(cap)) => Some(said.min(cap)),
            (said, cap) => said.or(cap),
        };
        Ok(Fresh { value: Secret::new(self.access_token), expires_in })
    }
}

/// The facts a platform's listing gives about one SIM, gathered into the line discovery makes
/// of it (the facts become labels a config may name in `discover.labels`).
#[derive(Debug, Default)]
pub struct SimFacts {
    labels: Vec<(String, String)>,
}

impl SimFacts {
    /// Adds `value`, trimmed, as the fact `name`; a missing or blank value adds nothing.
    pub fn fact(&mut self, name: &str, value: Option<String>) {
        if let Some(v) = value.filter(|v| !v.trim().is_empty()) {
            self.labels.push((name.to_string(), v.trim().to_string()));
        }
    }

    /// The line of the SIM `iccid` (also its id), facts sorted by name; `None` for a blank ICCID.
    pub fn into_line(mut self, iccid: &str, msisdn: Option<String>, options: DriverOptions) -> Option<DiscoveredLine> {
        let iccid = iccid.trim();
        if iccid.is_empty() {
            return None;
        }
        self.labels.sort();
        Some(DiscoveredLine {
            id: iccid.to_string(),
            msisdn,
            iccid: Some(iccid.to_string()),
            labels: self.labels,
            options,
        })
    }
}

/// The line's ICCID, which every line of `driver` has (its line options refuse a line
/// without one; this is the poll's own guard).
pub fn iccid_of<'l>(line: &'l Line, driver: &str) -> Result<&'l str, PollError> {
    line.iccid.as_deref().ok_or_else(|| PollError::Config(format!("a `{driver}` line needs `iccid`")))
}

/// The line options of a platform whose lines are named by ICCID and have no keys of their own.
pub fn needs_iccid(f: &mut Fields<'_>, driver: &str) {
    if !f.has("iccid") {
        f.sink().error(Some(f.pos()), f.path(), format!("{} `{driver}` line needs `iccid`", article(driver)));
    }
}

/// "a" or "an" before a driver's name, as it is read aloud ("an `airalo` line", "a `1nce` line").
fn article(driver: &str) -> &'static str {
    match driver.as_bytes().first() {
        Some(b'a' | b'e' | b'i' | b'o' | b'u') => "an",
        _ => "a",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(json: &str) -> AccessToken {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn the_token_lives_what_the_platform_says_capped_by_its_advice() {
        let day = Duration::from_secs(86_400);
        let year = token(r#"{"access_token":"t","expires_in":31536000}"#).fresh("POST /token", Some(day)).unwrap();
        assert_eq!(year.expires_in, Some(day));
        let hour = token(r#"{"access_token":"t","expires_in":"3600"}"#).fresh("POST /token", Some(day)).unwrap();
        assert_eq!(hour.expires_in, Some(Duration::from_secs(3600)));
        let unsaid = token(r#"{"access_token":"t"}"#).fresh("POST /token", Some(day)).unwrap();
        assert_eq!(unsaid.expires_in, Some(day));
        let uncapped = token(r#"{"access_token":"t"}"#).fresh("POST /token", None).unwrap();
        assert_eq!(uncapped.expires_in, None);
        let absurd = token(r#"{"access_token":"t","expires_in":-5}"#).fresh("POST /token", None).unwrap();
        assert_eq!(absurd.expires_in, Some(Duration::ZERO));
    }

    #[test]
    fn an_empty_token_is_a_bad_response_naming_the_endpoint() {
        let err = token(r#"{"access_token":"  "}"#).fresh("POST /oauth/token", None).unwrap_err();
        assert_eq!(err.to_string(), PollError::BadResponse("POST /oauth/token: empty access_token".into()).to_string());
    }

    #[test]
    fn sim_facts_are_trimmed_sorted_and_blank_ones_left_out() {
        let mut facts = SimFacts::default();
        facts.fact("status", Some(" Enabled ".into()));
        facts.fact("label", Some("tracker-1".into()));
        facts.fact("imei", Some("  ".into()));
        facts.fact("imsi", None);
        let line = facts.into_line(" 8988228066600000001 ", None, DriverOptions::none()).unwrap();
        assert_eq!(line.id, "8988228066600000001");
        assert_eq!(line.iccid.as_deref(), Some("8988228066600000001"));
        assert_eq!(line.labels, [("label".into(), "tracker-1".into()), ("status".into(), "Enabled".into())]);
        assert!(SimFacts::default().into_line("  ", None, DriverOptions::none()).is_none());
    }

    #[test]
    fn listing_pages_round_up_and_are_never_zero() {
        assert_eq!(pages(0, 100), 1.0);
        assert_eq!(pages(100, 100), 1.0);
        assert_eq!(pages(101, 100), 2.0);
    }

    #[test]
    fn articles_follow_the_sound() {
        assert_eq!(article("airalo"), "an");
        assert_eq!(article("emnify"), "an");
        assert_eq!(article("1nce"), "a");
        assert_eq!(article("hologram"), "a");
    }
}
