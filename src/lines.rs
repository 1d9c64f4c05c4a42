//! `esim-exporter lines`: asks a running exporter's `/api/v1/lines` (basic auth and TLS when
//! it uses them), a page at a time, and prints the table of `--once` (`crate::table`), JSON or
//! CSV. Answers an operator's "what is my balance?" from a shell without waiting for polls.
//!
//! Everything the exporter says is untrusted: answers are capped while they stream, decoded
//! strictly about the fields the table needs and leniently about the rest.

use std::io::IsTerminal;
use std::time::{Duration, SystemTime};

use serde::Deserialize;
use url::Url;

use crate::cli::{LinesArgs, OutputFormat};
use crate::config::secret::{read_secret_file, Secret};
use crate::table::{self, TableLine, TableStatus};
use crate::web::api::{SortKey, MAX_LIMIT};
use crate::Outcome;

/// The largest answer read for one page; a page of 10,000 lines is about 8 MB.
pub const MAX_ANSWER_BYTES: usize = 64 << 20;
/// The environment variable holding the basic-auth password when no `--password-file` is given.
pub const PASSWORD_ENV: &str = "ESIM_PASSWORD";
/// How much of an error answer's body a message quotes.
const QUOTED_BODY: usize = 300;

/// Why the exporter could not be asked: exit status 2.
#[derive(Debug, thiserror::Error)]
pub enum LinesError {
    #[error("invalid --url `{url}`: {reason}")]
    Url { url: String, reason: String },
    #[error("{0}")]
    Usage(String),
    #[error("{url}: {cause}")]
    Request { url: String, cause: String },
    #[error("{url}: HTTP {status}{detail}")]
    Status { url: String, status: u16, detail: String },
    #[error("{url}: not an answer of /api/v1/lines: {reason}")]
    Answer { url: String, reason: String },
}

/// One page as the API sends it; the lines stay JSON so `--output json` loses nothing.
#[derive(Debug, Deserialize)]
struct Page {
    total: u64,
    #[serde(default)]
    summary: serde_json::Value,
    lines: Vec<serde_json::Value>,
}

/// What the table needs of one line of the answer.
#[derive(Debug, Deserialize)]
struct ApiLine {
    name: String,
    #[serde(default)]
    operator: String,
    #[serde(default)]
    account: String,
    reading: Option<ApiReading>,
    state: String,
    #[serde(default)]
    low: bool,
    last_error: Option<ApiError>,
}

#[derive(Debug, Deserialize)]
struct ApiReading {
    balance: Option<f64>,
    currency: Option<String>,
    data_remaining_bytes: Option<u64>,
    data_quota_bytes: Option<u64>,
    quota_expiry_timestamp: Option<f64>,
}

#[derive(Debug, Deserialize)]
struct ApiError {
    reason: String,
    message: String,
}

impl ApiLine {
    fn table_line(&self) -> TableLine {
        let reading = self.reading.as_ref();
        let status = match (self.state.as_str(), self.low) {
            ("failing", _) => TableStatus::Failed,
            ("pending", _) => TableStatus::Pending,
            (_, true) => TableStatus::Low,
            _ => TableStatus::Ok,
        };
        let expiry = reading.and_then(|r| r.quota_expiry_timestamp).and_then(|t| {
            (t.is_finite() && t >= 0.0).then(|| SystemTime::UNIX_EPOCH + Duration::from_secs_f64(t.min(1e12)))
        });
        TableLine {
            name: self.name.clone(),
            operator: self.operator.clone(),
            account: self.account.clone(),
            balance: reading.and_then(|r| r.balance),
            currency: reading.and_then(|r| r.currency.clone()),
            data_remaining: reading.and_then(|r| r.data_remaining_bytes),
            data_quota: reading.and_then(|r| r.data_quota_bytes),
            expiry,
            status,
            error: self
                .last_error
                .as_ref()
                .filter(|_| status == TableStatus::Failed)
                .map(|e| format!("{}: {}", e.reason, e.message)),
        }
    }
}

/// The request every page shares: where, as whom, which filters.
struct Asker {
    client: reqwest::Client,
    endpoint: Url,
    credentials: Option<(String, Secret)>,
    timeout: Duration,
    /// Lines asked per request: the API's largest page (smaller in tests).
    page_size: u64,
}

/// Runs the subcommand: `Ok(Outcome::Failed)` when a shown line's last poll failed.
pub async fn run(args: &LinesArgs) -> Result<Outcome, LinesError> {
    let asker = Asker::new(args)?;
    let (total, summary, lines) = asker.fetch_all(args).await?;
    let parsed: Vec<ApiLine> = lines
        .iter()
        .map(ApiLine::deserialize)
        .collect::<Result<_, _>>()
        .map_err(|e| LinesError::Answer { url: asker.shown(), reason: format!("a line: {e}") })?;
    let rows: Vec<TableLine> = parsed.iter().map(ApiLine::table_line).collect();
    let failed = rows.iter().filter(|r| r.status == TableStatus::Failed).count();
    match args.output {
        OutputFormat::Json => {
            let answer = serde_json::json!({
                "total": total, "offset": 0, "limit": lines.len(), "summary": summary, "lines": lines,
            });
            match serde_json::to_string_pretty(&answer) {
                Ok(json) => println!("{json}"),
                Err(e) => eprintln!("cannot encode JSON: {e}"),
            }
        }
        OutputFormat::Csv => print!("{}", table::csv(&rows)),
        OutputFormat::Table => {
            let colour = table::colour_wanted(std::io::stdout().is_terminal());
            print!("{}", table::table(&rows, SystemTime::now(), colour));
        }
    }
    eprintln!("{} of {total} matching lines shown, {failed} failing", rows.len());
    Ok(if failed == 0 { Outcome::Ok } else { Outcome::Failed })
}

impl Asker {
    fn new(args: &LinesArgs) -> Result<Asker, LinesError> {
        let bad_url = |reason: &str| LinesError::Url { url: args.url.clone(), reason: reason.to_string() };
        let mut base = Url::parse(&args.url).map_err(|e| bad_url(&e.to_string()))?;
        if !matches!(base.scheme(), "http" | "https") {
            return Err(bad_url("expected an http:// or https:// URL"));
        }
        if !base.username().is_empty() || base.password().is_some() {
            return Err(bad_url("credentials go in --user and --password-file (or ESIM_PASSWORD), not the URL"));
        }
        if base.query().is_some() || base.fragment().is_some() {
            return Err(bad_url("expected the exporter's base URL, without query or fragment"));
        }
        // `http://host/esim` is a prefix: the API is under it, not beside it.
        if !base.path().ends_with('/') {
            let path = format!("{}/", base.path());
            base.set_path(&path);
        }
        let endpoint = base.join("api/v1/lines").map_err(|e| bad_url(&e.to_string()))?;

        let sort_name = args.sort.strip_prefix('-').unwrap_or(&args.sort);
        if !SortKey::ALL.iter().any(|(n, _)| *n == sort_name) {
            let known: Vec<&str> = SortKey::ALL.iter().map(|(n, _)| *n).collect();
            return Err(LinesError::Usage(format!(
                "invalid --sort `{}`: expected one of {} (prefix `-` for descending)",
                args.sort,
                known.join(", ")
            )));
        }

        let password = match &args.password_file {
            Some(path) => Some(read_secret_file(path).map_err(|e| LinesError::Usage(format!("--password-file: {e}")))?),
            None => std::env::var(PASSWORD_ENV).ok().filter(|p| !p.is_empty()).map(Secret::new),
        };
        let credentials = match (&args.user, password) {
            (Some(user), Some(password)) => Some((user.clone(), password)),
            (Some(_), None) => {
                return Err(LinesError::Usage(format!("--user needs a password: --password-file or {PASSWORD_ENV}")))
            }
            (None, Some(_)) if args.password_file.is_some() => {
                return Err(LinesError::Usage("--password-file needs --user".into()))
            }
            (None, _) => None,
        };

        crate::drivers::kit::http::install_crypto_provider();
        let mut builder = reqwest::Client::builder()
            .user_agent(concat!("esim-exporter-lines/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(args.timeout)
            .timeout(args.timeout)
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy();
        if let Some(path) = &args.ca_file {
            let pem = crate::fsutil::read_regular(path, 1 << 20, crate::fsutil::Symlinks::Follow)
                .map_err(|e| LinesError::Usage(format!("--ca-file `{}`: {e}", path.display())))?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem)
                .ok()
                .filter(|c| !c.is_empty())
                .ok_or_else(|| LinesError::Usage(format!("--ca-file `{}`: no PEM certificate", path.display())))?;
            builder = builder.tls_certs_only(certs);
        }
        let client = builder.build().map_err(|e| LinesError::Usage(format!("cannot set up HTTP: {}", chain(&e))))?;
        Ok(Asker { client, endpoint, credentials, timeout: args.timeout, page_size: MAX_LIMIT as u64 })
    }

    /// The endpoint as messages show it (no query: filters are the user's own flags).
    fn shown(&self) -> String {
        self.endpoint.to_string()
    }

    /// Every page up to `--limit`: the last total, the summary of the first page, the lines.
    async fn fetch_all(
        &self,
        args: &LinesArgs,
    ) -> Result<(u64, serde_json::Value, Vec<serde_json::Value>), LinesError> {
        let want = args.limit.unwrap_or(u64::MAX);
        let mut lines: Vec<serde_json::Value> = Vec::new();
        let mut summary = serde_json::Value::Null;
        let mut total;
        loop {
            let have = lines.len() as u64;
            let ask = (want - have).min(self.page_size);
            let page = self.fetch(args, have, ask).await?;
            total = page.total;
            if summary.is_null() {
                summary = page.summary;
            }
            let got = page.lines.len() as u64;
            lines.extend(page.lines.into_iter().take(ask as usize));
            // Short page, the end of the matching lines, or enough: done. (Between pages
            // polls may land and move a line across a page edge; the summary says when.)
            if got < ask || lines.len() as u64 >= want.min(total) {
                break;
            }
        }
        Ok((total, summary, lines))
    }

    async fn fetch(&self, args: &LinesArgs, offset: u64, limit: u64) -> Result<Page, LinesError> {
        let url = self.shown();
        let mut target = self.endpoint.clone();
        {
            let mut query = target.query_pairs_mut();
            query.append_pair("limit", &limit.to_string()).append_pair("offset", &offset.to_string());
            query.append_pair("sort", &args.sort);
            let state = args.state.map(|s| s.as_str().to_string());
            let filters = [("q", &args.q), ("operator", &args.operator), ("account", &args.account), ("state", &state)];
            for (key, value) in filters {
                if let Some(value) = value {
                    query.append_pair(key, value);
                }
            }
        }
        let mut request = self.client.get(target).header("accept", "application/json");
        if let Some((user, password)) = &self.credentials {
            request = request.basic_auth(user, Some(password.expose()));
        }
        let mut response =
            request.send().await.map_err(|e| LinesError::Request { url: url.clone(), cause: self.cause(e) })?;
        let status = response.status().as_u16();
        if response.content_length().is_some_and(|n| n > MAX_ANSWER_BYTES as u64) {
            return Err(too_large(url));
        }
        let mut body = Vec::new();
        while let Some(chunk) =
            response.chunk().await.map_err(|e| LinesError::Request { url: url.clone(), cause: self.cause(e) })?
        {
            if body.len() + chunk.len() > MAX_ANSWER_BYTES {
                return Err(too_large(url));
            }
            body.extend_from_slice(&chunk);
        }
        if status != 200 {
            let detail = match status {
                401 if self.credentials.is_some() => " Unauthorized: wrong --user or password".to_string(),
                401 => format!(
                    " Unauthorized: the exporter wants basic auth (--user and --password-file or {PASSWORD_ENV})"
                ),
                _ => quote_body(&body),
            };
            return Err(LinesError::Status { url, status, detail });
        }
        serde_json::from_slice(&body).map_err(|e| LinesError::Answer { url, reason: e.to_string() })
    }

    /// What went wrong, without the URL (the message names it once, without the query).
    fn cause(&self, e: reqwest::Error) -> String {
        if e.is_timeout() {
            return format!("no answer within {}", humantime::format_duration(self.timeout));
        }
        let connect = e.is_connect();
        let e = e.without_url();
        if connect {
            // The innermost cause says it: `Connection refused`, `invalid peer certificate: …`.
            let mut innermost: &(dyn std::error::Error + 'static) = &e;
            while let Some(source) = innermost.source() {
                innermost = source;
            }
            format!("cannot connect: {innermost}")
        } else {
            chain(&e)
        }
    }
}

fn too_large(url: String) -> LinesError {
    LinesError::Answer { url, reason: format!("the answer is larger than {} MiB", MAX_ANSWER_BYTES >> 20) }
}

/// `: <first line of the body>` for an error answer (the API's 400 says what it accepts).
fn quote_body(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    if text.is_empty() {
        return String::new();
    }
    let mut quoted: String = text.chars().take(QUOTED_BODY).filter(|c| !c.is_control()).collect();
    if text.chars().count() > QUOTED_BODY {
        quoted.push('…');
    }
    format!(": {quoted}")
}

/// An error and its causes, `a: b: c`, without the URL (the message names it once), and
/// without a cause repeated by the next.
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = vec![e.to_string()];
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if parts.last().is_none_or(|last| !last.contains(&text)) {
            parts.push(text);
        }
        source = s.source();
    }
    parts.join(": ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn args(extra: &[&str]) -> LinesArgs {
        let flags = crate::cli::Flags::parse_from([&["esim-exporter", "lines"], extra].concat());
        match flags.command {
            Some(crate::cli::Command::Lines(a)) => a,
            other => panic!("{other:?}"),
        }
    }

    /// Answers each connection with the next of `answers`, and reports the request lines.
    async fn serve(answers: Vec<String>) -> (String, tokio::sync::mpsc::UnboundedReceiver<String>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            for answer in answers {
                let (mut socket, _) = listener.accept().await.unwrap();
                let mut buf = vec![0u8; 8192];
                let n = socket.read(&mut buf).await.unwrap();
                let head = String::from_utf8_lossy(&buf[..n]).into_owned();
                let _ = tx.send(head);
                let _ = socket.write_all(answer.as_bytes()).await;
                let _ = socket.shutdown().await;
            }
        });
        (url, rx)
    }

    fn ok(body: &str) -> String {
        format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        )
    }

    fn page(total: u64, names: &[&str]) -> String {
        let lines: Vec<String> =
            names.iter().map(|n| format!(r#"{{"name":"{n}","state":"ok","low":false,"extra":[1]}}"#)).collect();
        format!(
            r#"{{"total":{total},"offset":0,"limit":2,"summary":{{"lines":{total}}},"lines":[{}]}}"#,
            lines.join(",")
        )
    }

    #[tokio::test]
    async fn pages_through_the_api_until_the_limit_and_passes_the_filters() {
        let (url, mut requests) = serve(vec![ok(&page(30_000, &["a", "b"])), ok(&page(30_000, &["c"]))]).await;
        // 10,001 asked: one full page of 10,000 (the server's cap), then 1 more.
        let a = args(&["--url", &url, "--limit", "10001", "--operator", "mts", "--state", "low", "--sort=-balance"]);
        let asker = Asker::new(&a).unwrap();
        // The fake server answers 2 lines to a 10,000 page: a short page ends the walk.
        let (total, summary, lines) = asker.fetch_all(&a).await.unwrap();
        assert_eq!((total, lines.len()), (30_000, 2));
        assert_eq!(summary["lines"], 30_000);
        let first = requests.recv().await.unwrap();
        assert!(
            first.starts_with("GET /api/v1/lines?limit=10000&offset=0&sort=-balance&operator=mts&state=low "),
            "{first}"
        );
    }

    #[tokio::test]
    async fn full_pages_go_on_to_the_next_until_the_total() {
        let pages = vec![ok(&page(5, &["a", "b"])), ok(&page(5, &["c", "d"])), ok(&page(5, &["e"]))];
        let (url, mut requests) = serve(pages).await;
        let a = args(&["--url", &format!("{url}/prefix")]);
        let mut asker = Asker::new(&a).unwrap();
        asker.page_size = 2;
        let (total, _, lines) = asker.fetch_all(&a).await.unwrap();
        let names: Vec<&str> = lines.iter().map(|l| l["name"].as_str().unwrap()).collect();
        assert_eq!((total, names), (5, vec!["a", "b", "c", "d", "e"]));
        let first = requests.recv().await.unwrap();
        assert!(first.starts_with("GET /prefix/api/v1/lines?limit=2&offset=0&sort=name "), "{first}");
        let second = requests.recv().await.unwrap();
        assert!(second.starts_with("GET /prefix/api/v1/lines?limit=2&offset=2&"), "{second}");
        // --limit 3 stops after the second page, asking only for what is missing.
        let (url, mut requests) = serve(vec![ok(&page(5, &["a", "b"])), ok(&page(5, &["c"]))]).await;
        let a = args(&["--url", &url, "--limit", "3"]);
        let mut asker = Asker::new(&a).unwrap();
        asker.page_size = 2;
        assert_eq!(asker.fetch_all(&a).await.unwrap().2.len(), 3);
        let _ = requests.recv().await.unwrap();
        let second = requests.recv().await.unwrap();
        assert!(second.starts_with("GET /api/v1/lines?limit=1&offset=2&"), "{second}");
    }

    #[tokio::test]
    async fn bad_answers_are_clear_errors() {
        let html = "HTTP/1.1 200 OK\r\ncontent-length: 6\r\nconnection: close\r\n\r\n<html>".to_string();
        let unauthorized = "HTTP/1.1 401 Unauthorized\r\ncontent-length: 0\r\nconnection: close\r\n\r\n".to_string();
        let bad = "HTTP/1.1 400 Bad Request\r\ncontent-length: 20\r\nconnection: close\r\n\r\ninvalid `sort` `zzz`"
            .to_string();
        let huge = format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n", MAX_ANSWER_BYTES + 1);
        let wrong_shape = ok(r#"{"total":1,"lines":[{"nom":"x"}]}"#);
        let (url, _) = serve(vec![html, unauthorized, bad, huge, wrong_shape]).await;
        let a = args(&["--url", &url]);
        let err = run(&a).await.unwrap_err().to_string();
        assert!(
            err.starts_with(&format!("{url}/api/v1/lines: not an answer of /api/v1/lines: expected value")),
            "{err}"
        );
        let err = run(&a).await.unwrap_err().to_string();
        assert!(err.contains("HTTP 401 Unauthorized: the exporter wants basic auth"), "{err}");
        let err = run(&a).await.unwrap_err().to_string();
        assert!(err.ends_with("HTTP 400: invalid `sort` `zzz`"), "{err}");
        let err = run(&a).await.unwrap_err().to_string();
        assert!(err.ends_with("the answer is larger than 64 MiB"), "{err}");
        let err = run(&a).await.unwrap_err().to_string();
        assert!(err.contains("a line: missing field `name`"), "{err}");
    }

    #[tokio::test]
    async fn usage_and_connection_errors_name_the_url_and_the_cause() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let free = listener.local_addr().unwrap();
        drop(listener);
        let err = run(&args(&["--url", &format!("http://{free}")])).await.unwrap_err().to_string();
        assert!(err.starts_with(&format!("http://{free}/api/v1/lines: cannot connect: ")), "{err}");
        assert!(err.contains("refused"), "{err}");
        for (url, expected) in [
            ("not a url", "invalid --url `not a url`: relative URL without a base"),
            ("ftp://h/", "invalid --url `ftp://h/`: expected an http:// or https:// URL"),
            ("http://u:p@h/", "invalid --url `http://u:p@h/`: credentials go in --user"),
        ] {
            let err = run(&args(&["--url", url])).await.unwrap_err().to_string();
            assert!(err.starts_with(expected), "{err}");
        }
        let err = run(&args(&["--sort", "height"])).await.unwrap_err().to_string();
        assert!(err.starts_with("invalid --sort `height`: expected one of name, operator"), "{err}");
        let err = run(&args(&["--password-file", "/nonexistent/pw"])).await.unwrap_err().to_string();
        assert!(err.starts_with("--password-file: cannot read secret file `/nonexistent/pw`"), "{err}");
    }

    #[test]
    fn a_line_of_the_answer_becomes_a_table_line() {
        let v: serde_json::Value = serde_json::from_str(
            r#"{"name":"g","operator":"mts","account":"acme","state":"failing","low":false,
                "reading":{"balance":12.5,"currency":"RUB","data_remaining_bytes":1024,"quota_expiry_timestamp":1e300},
                "last_error":{"reason":"timeout","message":"slow","timestamp":1}}"#,
        )
        .unwrap();
        let line = ApiLine::deserialize(&v).unwrap().table_line();
        assert_eq!(line.status, TableStatus::Failed);
        assert_eq!(line.error.as_deref(), Some("timeout: slow"));
        assert_eq!(
            (line.balance, line.currency.as_deref(), line.data_remaining),
            (Some(12.5), Some("RUB"), Some(1024))
        );
        assert!(line.expiry.is_some(), "an absurd timestamp is clamped, never a panic");
    }
}
