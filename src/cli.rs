//! Command-line flags, Prometheus-exporter style (`--config.file`, `--web.listen-address`).
//! Two stages, like the config: clap parses [`Flags`]; `Options` holds them resolved.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};

/// The config embedded in the binary: the demo fleet, so a first run needs no file.
pub const EMBEDDED_DEMO_CONFIG: &str = include_str!("../config/demo.yaml");

#[derive(Debug, Clone, Parser)]
#[command(
    name = "esim-exporter",
    about = "Prometheus exporter for the balance and data left on mobile lines (eSIMs, IoT fleets)",
    version = version_text(),
    long_version = long_version_text(),
)]
pub struct Flags {
    /// Config file. `embedded:demo` (or a missing default `esim.yaml`) runs the built-in demo fleet.
    #[arg(long = "config.file", default_value = "esim.yaml", value_name = "PATH", global = true)]
    pub config_file: PathBuf,

    /// Validate the config, print a summary (lines per driver and account) and exit 0/1.
    #[arg(long = "config.check")]
    pub config_check: bool,

    /// Address to listen on; repeat for several.
    #[arg(long = "web.listen-address", default_value = ":10063", value_name = "ADDR")]
    pub listen_addresses: Vec<String>,

    /// Path under which metrics are exposed.
    #[arg(long = "web.telemetry-path", default_value = "/metrics", value_name = "PATH")]
    pub telemetry_path: String,

    /// The URL under which the exporter is reachable from outside, e.g. behind a reverse proxy (`https://ops.example/esim/`). Links shown to people use it; its path is the default --web.route-prefix.
    #[arg(long = "web.external-url", value_name = "URL")]
    pub external_url: Option<String>,

    /// Prefix of every HTTP route (`/esim` serves `/esim/`, `/esim/metrics`, `/esim/-/healthy`, ...). Default: the path of --web.external-url, else `/`.
    #[arg(long = "web.route-prefix", value_name = "PATH")]
    pub route_prefix: Option<String>,

    /// exporter-toolkit compatible web config (TLS, client certificates, basic auth, headers); re-read when it changes. See docs/SECURITY.md.
    #[arg(long = "web.config.file", value_name = "PATH")]
    pub web_config_file: Option<PathBuf>,

    /// Allow `POST /-/reload` over HTTP (Prometheus' flag). Without it the endpoint answers 403; SIGHUP always reloads.
    #[arg(long = "web.enable-lifecycle")]
    pub enable_lifecycle: bool,

    /// Most connections open at once, all listeners together. Over the cap, the connection that has waited longest without a request is closed.
    #[arg(long = "web.max-connections", default_value_t = 512, value_parser = clap::value_parser!(u32).range(1..=1_000_000), value_name = "N")]
    pub max_connections: u32,

    /// Time a client has from the first byte of a request (or TLS handshake) to its last header line.
    #[arg(long = "web.read-header-timeout", default_value = "10s", value_parser = parse_duration_flag, value_name = "DURATION")]
    pub read_header_timeout: Duration,

    /// Time a kept-alive connection may wait for its next request (or a response for its client to read on) before it is closed.
    #[arg(long = "web.idle-timeout", default_value = "2m", value_parser = parse_duration_flag, value_name = "DURATION")]
    pub idle_timeout: Duration,

    #[arg(long = "log.level", value_enum, default_value_t = LogLevel::Info, global = true)]
    pub log_level: LogLevel,

    #[arg(long = "log.format", value_enum, default_value_t = LogFormat::Logfmt, global = true)]
    pub log_format: LogFormat,

    /// Poll only the lines that rendezvous hashing of the line name gives shard i of n (`i/n`, 0-based like pod ordinals);
    /// `auto/n` takes i from the StatefulSet pod name (HOSTNAME `esim-exporter-3` is shard 3).
    #[arg(long = "shard", value_name = "I/N|auto/N", env = "ESIM_SHARD")]
    pub shard: Option<String>,

    /// File where last readings and counters persist across restarts; login tokens of accounts
    /// without `token_file` live in `tokens/` beside it.
    #[arg(long = "storage.path", value_name = "PATH", global = true)]
    pub storage_path: Option<PathBuf>,

    /// Poll every line once, print a table (or --output json/csv) and exit: 0 all ok, 1 some poll failed, 2 config error.
    #[arg(long = "once")]
    pub once: bool,

    /// Output of --once.
    #[arg(long = "output", value_enum, default_value_t = OutputFormat::Table)]
    pub output: OutputFormat,

    /// How often the /metrics body is re-rendered in the background.
    #[arg(long = "web.render-interval", default_value = "1s", value_parser = parse_duration_flag, value_name = "DURATION")]
    pub render_interval: Duration,

    /// gzip level of the pre-compressed /metrics body (0-9).
    #[arg(long = "web.gzip-level", default_value_t = crate::metrics::DEFAULT_GZIP_LEVEL, value_parser = clap::value_parser!(u32).range(0..=9))]
    pub gzip_level: u32,

    #[command(subcommand)]
    pub command: Option<Command>,
}

/// What to do instead of serving (no subcommand: serve).
#[derive(Debug, Clone, Subcommand)]
pub enum Command {
    /// Log an account in once at this terminal (an SMS code) and store its long-lived token
    /// where the exporter finds it: the account's `token_file`, or `tokens/` beside
    /// --storage.path. For drivers whose login needs a person (megafon, t2).
    Login(LoginArgs),
    /// Ask a running exporter's /-/healthy and exit 0 if it answers 200, else 1 (for container
    /// HEALTHCHECKs in images without curl, e.g. distroless).
    Healthcheck(HealthcheckArgs),
    /// Ask a running exporter's /api/v1/lines and print the same table as --once (or JSON or
    /// CSV), with the API's filters; exit 0 when no shown line failed, 1 when some did, 2 when
    /// the exporter cannot be asked.
    Lines(LinesArgs),
}

/// `esim-exporter lines`: the password is never a flag value (it would show in `ps` and shell
/// history): `--password-file` or the `ESIM_PASSWORD` environment variable.
#[derive(Debug, Clone, clap::Args)]
pub struct LinesArgs {
    /// The exporter's base URL (http or https), with its path prefix behind a reverse proxy.
    #[arg(long = "url", default_value = "http://127.0.0.1:10063", value_name = "URL")]
    pub url: String,

    /// Basic-auth user (`basic_auth_users` of the exporter's --web.config.file).
    #[arg(long = "user", value_name = "NAME")]
    pub user: Option<String>,

    /// File holding the basic-auth password (one line; a trailing newline is ignored).
    /// Without it, the `ESIM_PASSWORD` environment variable.
    #[arg(long = "password-file", value_name = "PATH")]
    pub password_file: Option<PathBuf>,

    /// PEM file of the CA (or the self-signed certificate) to trust for an https URL, instead of
    /// the system's roots.
    #[arg(long = "ca-file", value_name = "PATH")]
    pub ca_file: Option<PathBuf>,

    /// Text in name, operator, account, label values, plan or error reason (case-insensitive).
    #[arg(long = "q", value_name = "TEXT")]
    pub q: Option<String>,

    /// Only lines of this operator (exact).
    #[arg(long = "operator", value_name = "NAME")]
    pub operator: Option<String>,

    /// Only lines of this account (exact).
    #[arg(long = "account", value_name = "NAME")]
    pub account: Option<String>,

    /// Only failing, low or pending lines.
    #[arg(long = "state", value_enum, value_name = "STATE")]
    pub state: Option<StateArg>,

    /// Sort column: name, operator, account, balance, data, expiry, last_success, status;
    /// `-` in front for descending (`--sort=-balance`).
    #[arg(long = "sort", default_value = "name", allow_hyphen_values = true, value_name = "KEY")]
    pub sort: String,

    /// Show at most this many lines (default: every matching line, asked a page at a time).
    #[arg(long = "limit", value_parser = clap::value_parser!(u64).range(1..), value_name = "N")]
    pub limit: Option<u64>,

    #[arg(long = "output", value_enum, default_value_t = OutputFormat::Table)]
    pub output: OutputFormat,

    /// Give up on one request after this long.
    #[arg(long = "timeout", default_value = "30s", value_parser = parse_duration_flag, value_name = "DURATION")]
    pub timeout: Duration,
}

/// `--state` of `lines`: the API's `state=` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum StateArg {
    Failing,
    Low,
    Pending,
}

impl StateArg {
    pub fn as_str(self) -> &'static str {
        match self {
            StateArg::Failing => "failing",
            StateArg::Low => "low",
            StateArg::Pending => "pending",
        }
    }
}

#[derive(Debug, Clone, clap::Args)]
pub struct HealthcheckArgs {
    /// The exporter's listen address; `:PORT` asks 127.0.0.1.
    #[arg(long = "web.listen-address", default_value = ":10063", value_name = "ADDR")]
    pub address: String,

    /// The path to ask, under the route prefix.
    #[arg(long = "path", default_value = "/-/healthy", value_name = "PATH")]
    pub path: String,

    /// The exporter's --web.route-prefix, when it has one: the check asks PREFIX/-/healthy.
    #[arg(long = "web.route-prefix", value_name = "PATH")]
    pub route_prefix: Option<String>,

    /// The exporter's --web.external-url: its path is the route prefix unless --web.route-prefix says otherwise.
    #[arg(long = "web.external-url", value_name = "URL")]
    pub external_url: Option<String>,

    /// Give up after this long.
    #[arg(long = "timeout", default_value = "3s", value_parser = parse_duration_flag, value_name = "DURATION")]
    pub timeout: Duration,
}

#[derive(Debug, Clone, clap::Args)]
pub struct LoginArgs {
    /// The account to log in: a key under `accounts:` in the config.
    #[arg(long = "account", value_name = "NAME")]
    pub account: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogLevel {
    Debug,
    Info,
    Warn,
    Error,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Logfmt,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    Table,
    Json,
    Csv,
}

fn parse_duration_flag(text: &str) -> Result<Duration, String> {
    crate::config::units::parse_duration(text).and_then(|d| {
        if d.is_zero() {
            Err("must be longer than zero".into())
        } else {
            Ok(d)
        }
    })
}

/// `--version`: version, git revision, rustc.
pub const fn version_text() -> &'static str {
    env!("CARGO_PKG_VERSION")
}

pub const fn long_version_text() -> &'static str {
    concat!(
        env!("CARGO_PKG_VERSION"),
        "\nrevision: ",
        env!("ESIM_GIT_REVISION"),
        "\nrustc: ",
        env!("ESIM_RUSTC_VERSION")
    )
}

/// A `host:port` or `:port` address as a client reaches it (`healthcheck`): `:port` is this
/// host. The listeners parse their own (dual-stack) forms in `web::server`.
pub fn parse_listen_address(text: &str) -> Result<SocketAddr, String> {
    let full = if let Some(port) = text.strip_prefix(':') { format!("127.0.0.1:{port}") } else { text.to_string() };
    full.parse().map_err(|_| format!("invalid listen address `{text}` (expected host:port or :port)"))
}

/// Paths the exporter serves itself; the telemetry path must not shadow them.
const RESERVED_PATHS: &[&str] =
    &["/", "/api/v1/lines", "/api/v1/line", "/-/healthy", "/-/ready", "/-/reload", "/probe"];

/// Checks `--web.telemetry-path`: an absolute path of plain characters (the router would read
/// `{`, `}` or `*` as parameters) that no other endpoint uses.
pub fn check_telemetry_path(path: &str) -> Result<(), String> {
    if !path.starts_with('/') || path.contains("//") || !is_plain_path(path) {
        return Err(format!(
            "invalid --web.telemetry-path `{path}` (expected an absolute path of letters, digits, `/_.-~`, e.g. /metrics)"
        ));
    }
    if RESERVED_PATHS.contains(&path) {
        return Err(format!("--web.telemetry-path `{path}` is already used by another endpoint"));
    }
    Ok(())
}

/// Characters a route prefix (like the telemetry path) may hold: the router would read `{`,
/// `}` or `*` as parameters, and anything a client may percent-encode would never match.
fn is_plain_path(path: &str) -> bool {
    path.chars().all(|c| c.is_ascii_alphanumeric() || "/_.-~".contains(c))
}

/// Why `--web.external-url` or `--web.route-prefix` cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WebPathError {
    #[error("invalid --web.external-url `{url}`: {reason}")]
    ExternalUrl { url: String, reason: &'static str },
    #[error("invalid --web.route-prefix `{prefix}` (expected a path of letters, digits, `/_.-~` without empty, `.` or `..` segments, e.g. /esim)")]
    RoutePrefix { prefix: String },
    #[error("the path `{path}` of --web.external-url cannot be a route prefix (letters, digits, `/_.-~` only): give --web.route-prefix")]
    ExternalPath { path: String },
}

/// The prefix every route is served under (`--web.route-prefix`): `/esim` serves `/esim/`,
/// `/esim/metrics`. Kept without its trailing slash, empty for `/`, so that joining a route
/// path is concatenation.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RoutePrefix(String);

impl RoutePrefix {
    /// Normalises like Prometheus (leading slash added, trailing slashes dropped); rejects
    /// characters the router or a client would treat specially, and `//`, `.`, `..` segments,
    /// which clients collapse before asking, so such a route could never be reached.
    pub fn parse(text: &str) -> Option<RoutePrefix> {
        let trimmed = text.trim_end_matches('/');
        let path =
            if trimmed.starts_with('/') || trimmed.is_empty() { trimmed.to_string() } else { format!("/{trimmed}") };
        let segments_ok = path.split('/').skip(1).all(|s| !s.is_empty() && s != "." && s != "..");
        (is_plain_path(&path) && segments_ok).then_some(RoutePrefix(path))
    }

    /// `""` for the root, else `/esim` (no trailing slash).
    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn is_root(&self) -> bool {
        self.0.is_empty()
    }

    /// The route of `path` (absolute, as `/metrics`) under the prefix.
    pub fn join(&self, path: &str) -> String {
        format!("{}{path}", self.0)
    }
}

impl std::fmt::Display for RoutePrefix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.is_root() { "/" } else { &self.0 })
    }
}

/// `--web.external-url` and `--web.route-prefix`, resolved: the prefix the routes are served
/// under, and the URL people reach the exporter at (always ending in `/`), when given.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WebPaths {
    pub prefix: RoutePrefix,
    pub external_url: Option<url::Url>,
}

impl WebPaths {
    /// The route prefix defaults to the path of the external URL (Prometheus' rule), so that
    /// a proxy passing the path through needs one flag; a proxy that strips it needs
    /// `--web.route-prefix=/` as well.
    pub fn resolve(external_url: Option<&str>, route_prefix: Option<&str>) -> Result<WebPaths, WebPathError> {
        let external_url = external_url.map(parse_external_url).transpose()?;
        let prefix = match (route_prefix, &external_url) {
            (Some(text), _) => {
                RoutePrefix::parse(text).ok_or_else(|| WebPathError::RoutePrefix { prefix: text.into() })?
            }
            (None, Some(url)) => {
                RoutePrefix::parse(url.path()).ok_or_else(|| WebPathError::ExternalPath { path: url.path().into() })?
            }
            (None, None) => RoutePrefix::default(),
        };
        Ok(WebPaths { prefix, external_url })
    }
}

/// An absolute http(s) URL without credentials, query or fragment (it is shown to people and
/// joined with paths), its path ending in `/` so that joining keeps the last segment.
fn parse_external_url(text: &str) -> Result<url::Url, WebPathError> {
    let bad = |reason| WebPathError::ExternalUrl { url: text.into(), reason };
    let mut url =
        url::Url::parse(text).map_err(|_| bad("expected an absolute URL such as https://ops.example/esim/"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
        return Err(bad("expected an http:// or https:// URL with a host"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(bad("it is shown to people: no credentials in it"));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(bad("expected no query or fragment"));
    }
    if !url.path().ends_with('/') {
        let path = format!("{}/", url.path());
        url.set_path(&path);
    }
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn telemetry_path_rules() {
        for ok in ["/metrics", "/esim/metrics", "/m-1.txt"] {
            assert_eq!(check_telemetry_path(ok), Ok(()), "{ok}");
        }
        for bad in ["metrics", "/", "/probe", "/{x}", "/a//b", "/*rest", ""] {
            assert!(check_telemetry_path(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn route_prefixes_are_normalised_like_prometheus() {
        for (text, prefix, shown) in [
            ("/", "", "/"),
            ("", "", "/"),
            ("/esim", "/esim", "/esim"),
            ("esim/", "/esim", "/esim"),
            ("/ops/esim-1/", "/ops/esim-1", "/ops/esim-1"),
            ("/a.b~c_d", "/a.b~c_d", "/a.b~c_d"),
        ] {
            let parsed = RoutePrefix::parse(text).unwrap_or_else(|| panic!("{text:?} refused"));
            assert_eq!((parsed.as_str(), parsed.to_string().as_str()), (prefix, shown), "{text:?}");
        }
        assert_eq!(RoutePrefix::parse("/esim").unwrap().join("/-/healthy"), "/esim/-/healthy");
        assert_eq!(RoutePrefix::default().join("/metrics"), "/metrics");
        for bad in ["/a//b", "/{x}", "/*rest", "/a b", "/%41", "/a/../b", "/./a", "/a?b", "/a#b", "/ü"] {
            assert_eq!(RoutePrefix::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn the_route_prefix_defaults_to_the_path_of_the_external_url() {
        let paths = |e: Option<&str>, p: Option<&str>| WebPaths::resolve(e, p);
        assert_eq!(paths(None, None), Ok(WebPaths::default()));
        let proxied = paths(Some("https://ops.example/esim"), None).unwrap();
        assert_eq!(proxied.prefix.as_str(), "/esim");
        assert_eq!(proxied.external_url.unwrap().as_str(), "https://ops.example/esim/", "a trailing slash added");
        let stripped = paths(Some("https://ops.example/esim/"), Some("/")).unwrap();
        assert!(stripped.prefix.is_root(), "the flag wins over the URL's path");
        assert_eq!(paths(None, Some("/inner")).unwrap().prefix.as_str(), "/inner");
        assert_eq!(paths(Some("http://h:8080"), None).unwrap().prefix.as_str(), "");
    }

    #[test]
    fn bad_web_paths_are_errors_naming_the_flag() {
        let err = |e: Option<&str>, p: Option<&str>| WebPaths::resolve(e, p).unwrap_err().to_string();
        assert_eq!(err(None, Some("/a//b")), "invalid --web.route-prefix `/a//b` (expected a path of letters, digits, `/_.-~` without empty, `.` or `..` segments, e.g. /esim)");
        for (url, says) in [
            ("ops.example/esim", "invalid --web.external-url `ops.example/esim`: expected an absolute URL"),
            ("ftp://ops.example/", "invalid --web.external-url `ftp://ops.example/`: expected an http:// or https://"),
            ("https://u:p@ops.example/", "no credentials in it"),
            ("https://ops.example/?x=1", "expected no query or fragment"),
            ("https://ops.example/#top", "expected no query or fragment"),
        ] {
            assert!(
                err(Some(url), None).starts_with(says) || err(Some(url), None).ends_with(says),
                "{url}: {}",
                err(Some(url), None)
            );
        }
        assert_eq!(
            err(Some("https://ops.example/e sim/"), None),
            "the path `/e%20sim/` of --web.external-url cannot be a route prefix (letters, digits, `/_.-~` only): give --web.route-prefix"
        );
        assert!(WebPaths::resolve(Some("https://ops.example/e sim/"), Some("/esim")).is_ok(), "the flag overrides");
    }

    #[test]
    fn parses_prometheus_style_flags() {
        let f = Flags::parse_from([
            "esim-exporter",
            "--config.file",
            "x.yaml",
            "--web.listen-address",
            "127.0.0.1:1",
            "--web.listen-address",
            ":2",
            "--log.format",
            "json",
        ]);
        assert_eq!(f.config_file, PathBuf::from("x.yaml"));
        assert_eq!(f.listen_addresses, vec!["127.0.0.1:1", ":2"]);
        assert_eq!(f.log_format, LogFormat::Json);
        assert_eq!(f.telemetry_path, "/metrics");
    }

    #[test]
    fn login_is_a_subcommand_and_the_flags_it_needs_go_before_or_after_it() {
        let before = Flags::parse_from(["esim-exporter", "--config.file", "x.yaml", "login", "--account", "corp"]);
        let after =
            Flags::parse_from(["esim-exporter", "login", "--account", "corp", "--storage.path", "/s/state.json"]);
        for f in [&before, &after] {
            assert!(matches!(&f.command, Some(Command::Login(a)) if a.account == "corp"), "{f:?}");
        }
        assert_eq!(before.config_file, PathBuf::from("x.yaml"));
        assert_eq!(after.storage_path, Some(PathBuf::from("/s/state.json")));
        assert!(Flags::try_parse_from(["esim-exporter", "login"]).is_err(), "--account is required");
        assert!(Flags::parse_from(["esim-exporter", "--once"]).command.is_none());
    }

    #[test]
    fn lines_takes_the_api_filters_and_a_descending_sort() {
        let f = Flags::parse_from(["esim-exporter", "lines", "--sort", "-balance", "--state", "low", "--limit", "5"]);
        let Some(Command::Lines(a)) = &f.command else { panic!("{f:?}") };
        assert_eq!((a.sort.as_str(), a.state, a.limit), ("-balance", Some(StateArg::Low), Some(5)));
        assert_eq!(a.url, "http://127.0.0.1:10063");
        assert!(Flags::try_parse_from(["esim-exporter", "lines", "--password", "x"]).is_err(), "no password flag");
        assert!(Flags::try_parse_from(["esim-exporter", "lines", "--state", "sleepy"]).is_err());
        assert!(Flags::try_parse_from(["esim-exporter", "lines", "--limit", "0"]).is_err());
    }

    #[test]
    fn embedded_demo_config_loads() {
        let config = crate::config::parse("embedded:demo", EMBEDDED_DEMO_CONFIG, crate::drivers::REGISTRY)
            .expect("demo config is valid");
        assert!(config.lines.len() >= 24);
    }
}
