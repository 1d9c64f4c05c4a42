//! Web security end to end, on the real binary: `--web.config.file` (TLS, client certificates,
//! basic auth, headers) scraped by a real Prometheus (Debian package) and refused where it
//! must be; lifecycle gating; slow-loris and idle connections; size limits; gzip q-values;
//! `/probe` limits; HTML escaping. Certificates are generated here (rcgen): no key is committed.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair};

use crate::binary::{http, Exporter};

const BIN: &str = env!("CARGO_BIN_EXE_esim-exporter");

const FLEET: &str = "global:\n  poll_interval: 1s\n  timeout: 5s\naccounts:\n  acme: {driver: demo, seed: 1}\nlines:\n  - {name: gate-1, account: acme}\n";

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("esim-websec-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

/// Starts the binary in `dir` (holding `esim.yaml` and whatever the flags name), without
/// `--web.enable-lifecycle`; readiness is the caller's business (it may need TLS).
fn start(dir: PathBuf, config: &str, extra: &[&str]) -> Exporter {
    Exporter::spawn_in(dir, config, extra)
}

fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < Duration::from_secs(30), "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

// ---- certificates -------------------------------------------------------------------------

pub(crate) struct Pki {
    dir: PathBuf,
}

fn ca(name: &str) -> CertifiedIssuer<'static, KeyPair> {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap()
}

fn leaf(
    issuer: &CertifiedIssuer<'static, KeyPair>,
    names: &[&str],
    purpose: ExtendedKeyUsagePurpose,
) -> (String, String) {
    let mut params = CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).unwrap();
    params.distinguished_name.push(DnType::CommonName, names[0]);
    params.extended_key_usages = vec![purpose];
    let key = KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, issuer).unwrap();
    (cert.pem(), key.serialize_pem())
}

impl Pki {
    /// CA `a` issues the server's certificate and a client certificate; CA `b` (another CA)
    /// issues a client certificate the server must refuse.
    fn generate(dir: &Path) -> Pki {
        let a = ca("esim test CA A");
        let b = ca("esim test CA B");
        let write = |name: &str, text: &str| std::fs::write(dir.join(name), text).unwrap();
        write("ca.pem", &a.pem());
        write("other-ca.pem", &b.pem());
        let (cert, key) = leaf(&a, &["localhost", "127.0.0.1"], ExtendedKeyUsagePurpose::ServerAuth);
        write("server.pem", &cert);
        write("server-key.pem", &key);
        let (cert, key) = leaf(&a, &["prometheus"], ExtendedKeyUsagePurpose::ClientAuth);
        write("client.pem", &cert);
        write("client-key.pem", &key);
        let (cert, key) = leaf(&b, &["intruder"], ExtendedKeyUsagePurpose::ClientAuth);
        write("other-client.pem", &cert);
        write("other-client-key.pem", &key);
        Pki { dir: dir.to_path_buf() }
    }

    pub(crate) fn path(&self, name: &str) -> String {
        self.dir.join(name).display().to_string()
    }
}

// ---- a TLS client that reports exactly what happened ---------------------------------------

/// GET `path` over TLS trusting `ca.pem` in `dir`, optionally with a client certificate and
/// basic auth; `Err` says how the connection failed (handshake alert, reset, …).
fn tls_get(
    addr: SocketAddr,
    dir: &Path,
    client: Option<(&str, &str)>,
    auth: Option<(&str, &str)>,
    path: &str,
) -> Result<(u16, String, String), String> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(dir.join("ca.pem")).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let config = match client {
        Some((cert, key)) => {
            let certs = CertificateDer::pem_file_iter(dir.join(cert)).unwrap().map(|c| c.unwrap()).collect();
            let key = PrivateKeyDer::from_pem_file(dir.join(key)).unwrap();
            builder.with_client_auth_cert(certs, key).unwrap()
        }
        None => builder.with_no_client_auth(),
    };
    let name = ServerName::try_from("localhost").unwrap();
    let mut conn = rustls::ClientConnection::new(Arc::new(config), name).map_err(|e| e.to_string())?;
    let mut sock = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).map_err(|e| e.to_string())?;
    sock.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut tls = rustls::Stream::new(&mut conn, &mut sock);
    let mut request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n");
    if let Some((user, password)) = auth {
        use base64::Engine;
        let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        request.push_str(&format!("Authorization: Basic {token}\r\n"));
    }
    request.push_str("\r\n");
    tls.write_all(request.as_bytes()).map_err(|e| e.to_string())?;
    let mut raw = Vec::new();
    match tls.read_to_end(&mut raw) {
        Ok(_) => {}
        // Some servers close without close_notify after the answer: what was read counts.
        Err(e) if !raw.is_empty() && e.kind() == std::io::ErrorKind::UnexpectedEof => {}
        Err(e) => return Err(e.to_string()),
    }
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").ok_or_else(|| format!("no HTTP answer: {text:?}"))?;
    let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).ok_or("no status")?;
    Ok((status, head.to_string(), body.to_string()))
}

fn bcrypt_hash(password: &str) -> String {
    bcrypt::hash(password, 10).unwrap()
}

/// An exporter behind TLS + basic auth (user `prom`, password `s3cret`), with headers.
pub(crate) fn tls_auth_exporter(name: &str) -> (Exporter, Pki) {
    let dir = temp_dir(name);
    let pki = Pki::generate(&dir);
    let web = format!(
        "tls_server_config:\n  cert_file: server.pem\n  key_file: server-key.pem\n  min_version: TLS12\n\
         http_server_config:\n  headers:\n    X-Frame-Options: deny\n    Strict-Transport-Security: max-age=31536000\n\
         basic_auth_users:\n  prom: '{}'\n",
        bcrypt_hash("s3cret")
    );
    std::fs::write(dir.join("web.yml"), web).unwrap();
    let server = start(dir, FLEET, &["--web.config.file", "web.yml"]);
    let ready =
        || tls_get(server.addr, &pki.dir, None, Some(("prom", "s3cret")), "/-/ready").is_ok_and(|(s, _, _)| s == 200);
    wait_for("TLS readiness", ready);
    (server, pki)
}

/// An exporter that requires a client certificate from CA A (no basic auth).
fn client_cert_exporter(name: &str) -> (Exporter, Pki) {
    let dir = temp_dir(name);
    let pki = Pki::generate(&dir);
    let web = "tls_server_config:\n  cert_file: server.pem\n  key_file: server-key.pem\n  \
               client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: ca.pem\n";
    std::fs::write(dir.join("web.yml"), web).unwrap();
    let server = start(dir, FLEET, &["--web.config.file", "web.yml"]);
    let ready = || {
        tls_get(server.addr, &pki.dir, Some(("client.pem", "client-key.pem")), None, "/-/ready")
            .is_ok_and(|(s, _, _)| s == 200)
    };
    wait_for("mTLS readiness", ready);
    (server, pki)
}

#[test]
fn tls_with_basic_auth_admits_the_right_user_and_refuses_the_rest_as_fast() {
    let (e, pki) = tls_auth_exporter("tls-auth");
    let ok = |path| tls_get(e.addr, &pki.dir, None, Some(("prom", "s3cret")), path);
    let (status, head, body) = ok("/metrics").unwrap();
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("esim_exporter_build_info"));
    assert!(head.to_ascii_lowercase().contains("x-frame-options: deny"), "{head}");
    assert!(head.to_ascii_lowercase().contains("strict-transport-security: max-age=31536000"), "{head}");
    // Every endpoint is behind the auth.
    for path in ["/", "/metrics", "/api/v1/lines", "/-/healthy", "/-/ready", "/probe?line=gate-1", "/nope"] {
        let (status, head, _) = tls_get(e.addr, &pki.dir, None, None, path).unwrap();
        assert_eq!(status, 401, "{path} without credentials");
        assert!(head.contains("WWW-Authenticate: Basic") || head.contains("www-authenticate: Basic"), "{head}");
        assert!(head.to_ascii_lowercase().contains("x-frame-options: deny"), "headers on refusals too: {head}");
    }
    // Timing: admitted (cached) vs wrong password vs unknown user, against bcrypt's own cost.
    let hash = bcrypt_hash("x");
    let t = Instant::now();
    let _ = bcrypt::verify("y", &hash);
    let bcrypt_cost = t.elapsed();
    let time = |auth| {
        let t = Instant::now();
        let r = tls_get(e.addr, &pki.dir, None, Some(auth), "/-/healthy").unwrap();
        (r.0, t.elapsed())
    };
    let (s_ok, admit) = time(("prom", "s3cret"));
    let (s_wrong, wrong) = time(("prom", "s3cret!"));
    let (s_unknown, unknown) = time(("mallory", "s3cret"));
    assert_eq!((s_ok, s_wrong, s_unknown), (200, 401, 401));
    let slack = bcrypt_cost * 2 + Duration::from_millis(150);
    assert!(wrong < admit + slack, "wrong password {wrong:?} vs admit {admit:?}, bcrypt {bcrypt_cost:?}");
    assert!(unknown < admit + slack, "unknown user {unknown:?} vs admit {admit:?}");
    // An unknown user pays bcrypt like a wrong password: nothing tells the two apart.
    assert!(unknown * 3 > wrong, "unknown user {unknown:?} must cost like a wrong password {wrong:?}");
    eprintln!("admit {admit:?} wrong {wrong:?} unknown {unknown:?} bcrypt(10) {bcrypt_cost:?}");
    // Plain HTTP to the TLS port: Go's 400.
    let (status, _, body) = http(e.addr, "GET", "/metrics", &[]);
    assert_eq!(status, 400);
    assert!(String::from_utf8_lossy(&body).contains("HTTP request to an HTTPS server"));
}

#[test]
fn client_certificates_from_the_ca_are_required() {
    let (e, pki) = client_cert_exporter("mtls");
    let (status, _, _) = tls_get(e.addr, &pki.dir, Some(("client.pem", "client-key.pem")), None, "/metrics").unwrap();
    assert_eq!(status, 200);
    let absent = tls_get(e.addr, &pki.dir, None, None, "/metrics").unwrap_err();
    assert!(absent.contains("CertificateRequired") || absent.contains("alert"), "{absent}");
    let other =
        tls_get(e.addr, &pki.dir, Some(("other-client.pem", "other-client-key.pem")), None, "/metrics").unwrap_err();
    assert!(other.contains("UnknownCA") || other.contains("BadCertificate") || other.contains("alert"), "{other}");
    // client_allowed_sans, applied on the next connection after an edit.
    let web = std::fs::read_to_string(e.dir.join("web.yml")).unwrap();
    let mine = || tls_get(e.addr, &pki.dir, Some(("client.pem", "client-key.pem")), None, "/-/healthy");
    std::fs::write(e.dir.join("web.yml"), format!("{web}  client_allowed_sans: [someone-else]\n")).unwrap();
    wait_for("a SAN outside the list to be refused", || mine().is_err());
    std::fs::write(e.dir.join("web.yml"), format!("{web}  client_allowed_sans: [someone-else, prometheus]\n")).unwrap();
    wait_for("a listed SAN to be admitted", || mine().is_ok_and(|r| r.0 == 200));
}

#[test]
fn web_config_edits_apply_without_a_restart() {
    let (e, pki) = tls_auth_exporter("tls-edit");
    let web = std::fs::read_to_string(e.dir.join("web.yml")).unwrap();
    let edited = web.replace("basic_auth_users:\n  prom:", "basic_auth_users:\n  other:");
    std::fs::write(e.dir.join("web.yml"), edited).unwrap();
    wait_for("the edit to apply", || {
        tls_get(e.addr, &pki.dir, None, Some(("prom", "s3cret")), "/-/healthy").is_ok_and(|r| r.0 == 401)
    });
    let (status, _, _) = tls_get(e.addr, &pki.dir, None, Some(("other", "s3cret")), "/-/healthy").unwrap();
    assert_eq!(status, 200);
    // A broken edit keeps the last good config (never falls open) and says so.
    std::fs::write(e.dir.join("web.yml"), "basic_auth_users: [\n").unwrap();
    let (status, _, _) = tls_get(e.addr, &pki.dir, None, Some(("other", "s3cret")), "/-/healthy").unwrap();
    assert_eq!(status, 200);
    assert_eq!(tls_get(e.addr, &pki.dir, None, None, "/-/healthy").unwrap().0, 401);
    assert!(e.log().contains("web config invalid"), "{}", e.log());
}

#[test]
fn an_invalid_web_config_stops_the_start_naming_the_key() {
    let dir = temp_dir("bad-web");
    std::fs::write(dir.join("esim.yaml"), FLEET).unwrap();
    for (web, key) in [
        ("basic_auth_user:\n  a: b\n", "basic_auth_user"),
        ("tls_server_config:\n  cert_file: missing.pem\n  key_file: k.pem\n", "cert_file"),
        ("basic_auth_users:\n  prom: plaintext\n", "basic_auth_users.prom"),
        ("tls_server_config:\n  cert_file: a\n  key_file: b\n  min_version: TLS10\n", "cert_file"),
    ] {
        std::fs::write(dir.join("web.yml"), web).unwrap();
        let out = Command::new(BIN)
            .args(["--config.file", "esim.yaml", "--web.listen-address", "127.0.0.1:0", "--web.config.file", "web.yml"])
            .current_dir(&dir)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{web}");
        assert!(stderr.contains("web.yml") && stderr.contains(key), "{web}: {stderr}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

// ---- a real Prometheus ---------------------------------------------------------------------

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

#[test]
fn real_prometheus_scrapes_over_tls_with_basic_auth_and_client_certs_and_is_refused_otherwise() {
    if Command::new("prometheus").arg("--version").output().is_err() {
        panic!("prometheus not installed: apt-get install -y prometheus");
    }
    let (auth, pki) = tls_auth_exporter("prom-auth");
    let (mtls, _pki_b) = client_cert_exporter("prom-mtls");
    let dir = temp_dir("prometheus");
    let a = &pki.dir;
    let b = &mtls.dir;
    let job = |name: &str, target: SocketAddr, extra: String| {
        format!(
            "  - job_name: {name}\n    scheme: https\n    scrape_interval: 1s\n    scrape_timeout: 900ms\n{extra}    static_configs: [{{targets: ['localhost:{}']}}]\n",
            target.port()
        )
    };
    let tls_a = format!("    tls_config: {{ca_file: {}}}\n", a.join("ca.pem").display());
    let basic = |u: &str, p: &str| format!("    basic_auth: {{username: {u}, password: {p}}}\n");
    let tls_b = |cert: &str, key: &str| {
        format!(
            "    tls_config: {{ca_file: {}, cert_file: {}, key_file: {}}}\n",
            b.join("ca.pem").display(),
            b.join(cert).display(),
            b.join(key).display()
        )
    };
    let mut config = String::from("global: {scrape_interval: 1s}\nscrape_configs:\n");
    config += &job("auth_ok", auth.addr, format!("{tls_a}{}", basic("prom", "s3cret")));
    config += &job("auth_wrong_password", auth.addr, format!("{tls_a}{}", basic("prom", "nope")));
    config += &job("auth_unknown_user", auth.addr, format!("{tls_a}{}", basic("mallory", "s3cret")));
    config += &job("auth_plain_http", auth.addr, basic("prom", "s3cret")).replace("scheme: https", "scheme: http");
    config += &job("cert_ok", mtls.addr, tls_b("client.pem", "client-key.pem"));
    config += &job("cert_absent", mtls.addr, format!("    tls_config: {{ca_file: {}}}\n", b.join("ca.pem").display()));
    config += &job("cert_other_ca", mtls.addr, tls_b("other-client.pem", "other-client-key.pem"));
    std::fs::write(dir.join("prometheus.yml"), &config).unwrap();
    let port = free_port();
    let mut prometheus = Command::new("prometheus")
        .arg(format!("--config.file={}", dir.join("prometheus.yml").display()))
        .arg(format!("--storage.tsdb.path={}", dir.join("data").display()))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start prometheus");
    let api: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let mut targets = serde_json::Value::Null;
    let settled = |t: &serde_json::Value| {
        let list = t["data"]["activeTargets"].as_array().cloned().unwrap_or_default();
        list.len() == 7 && list.iter().all(|t| t["health"] != "unknown")
    };
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(60) {
        // `http` panics when nothing listens: ask only once Prometheus accepts connections.
        if TcpStream::connect_timeout(&api, Duration::from_millis(200)).is_ok() {
            let (status, _, body) = http(api, "GET", "/api/v1/targets", &[]);
            targets = if status == 200 { serde_json::from_slice(&body).unwrap_or_default() } else { targets };
            if settled(&targets) {
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    let _ = prometheus.kill();
    let _ = prometheus.wait();
    let list = targets["data"]["activeTargets"].as_array().cloned().unwrap_or_default();
    let find = |job: &str| list.iter().find(|t| t["labels"]["job"] == job).cloned().unwrap_or_default();
    let report: Vec<String> =
        list.iter().map(|t| format!("{} {} {}", t["labels"]["job"], t["health"], t["lastError"])).collect();
    let report = report.join("\n");
    assert_eq!(list.len(), 7, "targets: {targets}");
    for up in ["auth_ok", "cert_ok"] {
        assert_eq!(find(up)["health"], "up", "{up}\n{report}");
    }
    for (down, error) in [
        ("auth_wrong_password", "401"),
        ("auth_unknown_user", "401"),
        ("auth_plain_http", "400"),
        ("cert_absent", "certificate required"),
        ("cert_other_ca", "certificate"),
    ] {
        let t = find(down);
        assert_eq!(t["health"], "down", "{down}\n{report}");
        let last = t["lastError"].as_str().unwrap_or("").to_ascii_lowercase();
        assert!(last.contains(error), "{down}: `{last}` should mention `{error}`\n{report}");
    }
    eprintln!("{report}");
    let _ = std::fs::remove_dir_all(&dir);
}

// ---- hardening on plain HTTP ---------------------------------------------------------------

#[test]
fn reload_over_http_needs_the_lifecycle_flag_but_sighup_always_works() {
    let dir = temp_dir("lifecycle");
    let e = start(dir, FLEET, &[]);
    wait_for("ready", || http(e.addr, "GET", "/-/ready", &[]).0 == 200);
    let (status, _, body) = http(e.addr, "POST", "/-/reload", &[]);
    assert_eq!(status, 403);
    assert!(String::from_utf8_lossy(&body).contains("--web.enable-lifecycle"));
    let _ = Command::new("kill").args(["-HUP", &e.child.id().to_string()]).status();
    wait_for("SIGHUP reload", || e.log().contains("SIGHUP: reloading config"));
}

/// Sends `GET / HTTP/1.1` and a header, one byte at a time, never finishing.
fn slow_loris(addr: SocketAddr) -> TcpStream {
    let mut s = TcpStream::connect(addr).unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: ").unwrap();
    s
}

#[test]
fn slow_loris_and_idle_clients_hold_no_slot_and_do_not_delay_scrapes() {
    let dir = temp_dir("loris");
    let e = start(
        dir,
        FLEET,
        &["--web.max-connections", "8", "--web.read-header-timeout", "1s", "--web.idle-timeout", "2s"],
    );
    wait_for("ready", || http(e.addr, "GET", "/-/ready", &[]).0 == 200);
    // Twice the cap in slow-loris connections, then idle ones.
    let mut held: Vec<TcpStream> = (0..16).map(|_| slow_loris(e.addr)).collect();
    held.extend((0..8).map(|_| TcpStream::connect(e.addr).unwrap()));
    std::thread::sleep(Duration::from_millis(200));
    let mut slowest = Duration::ZERO;
    for _ in 0..5 {
        let t = Instant::now();
        let (status, _, _) = http(e.addr, "GET", "/metrics", &[]);
        assert_eq!(status, 200);
        slowest = slowest.max(t.elapsed());
    }
    assert!(slowest < Duration::from_millis(500), "a scrape took {slowest:?} behind slow clients");
    eprintln!("slowest of 5 scrapes behind 16 slow-loris + 8 idle connections (cap 8): {slowest:?}");
    // Each held connection is closed: by eviction or by its timeout (1 s header, 2 s idle).
    let t = Instant::now();
    for mut s in held {
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut buf = [0u8; 256];
        let _ = s.write_all(b"x");
        match s.read(&mut buf) {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
            Err(e) => panic!("a held connection stayed open: {e}"),
        }
    }
    assert!(t.elapsed() < Duration::from_secs(4), "held connections closed within their timeouts");
}

#[test]
fn header_and_body_limits() {
    let dir = temp_dir("limits");
    let e = start(dir, FLEET, &[]);
    wait_for("ready", || http(e.addr, "GET", "/-/ready", &[]).0 == 200);
    let big = "a".repeat(100 * 1024);
    assert_eq!(http(e.addr, "GET", "/metrics", &[("X-Big", &big)]).0, 431);
    // A POST announcing a large body is refused unread (the client helper sends Content-Length: 0
    // first; a raw request says otherwise).
    let mut s = TcpStream::connect(e.addr).unwrap();
    s.write_all(b"POST /-/reload HTTP/1.1\r\nHost: x\r\nContent-Length: 10000000\r\nConnection: close\r\n\r\n")
        .unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut answer = String::new();
    let _ = s.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
}

#[test]
fn gzip_q_zero_is_honoured() {
    let dir = temp_dir("gzipq");
    let e = start(dir, FLEET, &[]);
    wait_for("ready", || http(e.addr, "GET", "/-/ready", &[]).0 == 200);
    let encoding = |accept: &str| {
        let (_, headers, _) = http(e.addr, "GET", "/metrics", &[("Accept-Encoding", accept)]);
        headers.iter().find(|(n, _)| n == "content-encoding").map(|(_, v)| v.clone())
    };
    assert_eq!(encoding("gzip;q=0, *"), None);
    assert_eq!(encoding("*;q=0"), None);
    assert_eq!(encoding("gzip;q=0.5"), Some("gzip".into()));
    assert_eq!(encoding("*"), Some("gzip".into()));
}

#[test]
fn probe_takes_configured_lines_only_and_is_rate_limited_per_line() {
    let dir = temp_dir("probe");
    let config = format!("{FLEET}  - {{name: gate-2, account: acme}}\n");
    let e = start(dir, &config, &[]);
    wait_for("ready", || http(e.addr, "GET", "/-/ready", &[]).0 == 200);
    assert_eq!(http(e.addr, "GET", "/probe?line=http://evil.example/", &[]).0, 404);
    assert_eq!(http(e.addr, "GET", "/probe?line=gate-1", &[]).0, 200);
    let (status, headers, _) = http(e.addr, "GET", "/probe?line=gate-1", &[]);
    assert_eq!(status, 429);
    assert!(headers.iter().any(|(n, v)| n == "retry-after" && v == "1"), "{headers:?}");
    assert_eq!(http(e.addr, "GET", "/probe?line=gate-2", &[]).0, 200, "other lines are not held back");
    std::thread::sleep(Duration::from_millis(1100));
    assert_eq!(http(e.addr, "GET", "/probe?line=gate-1", &[]).0, 200);
}

#[test]
fn html_escapes_line_names_and_labels() {
    let dir = temp_dir("escape");
    let config = "accounts:\n  acme: {driver: demo, seed: 1}\nlines:\n  - name: '<script>alert(1)</script>'\n    account: acme\n    labels: {site: '\"><img src=x onerror=alert(2)>'}\n";
    let e = start(dir, config, &[]);
    wait_for("ready", || http(e.addr, "GET", "/-/ready", &[]).0 == 200);
    let (status, _, body) = http(e.addr, "GET", "/", &[]);
    assert_eq!(status, 200);
    let html = String::from_utf8_lossy(&body);
    assert!(!html.contains("<script>alert(1)"), "raw line name in the page");
    assert!(!html.contains("<img src=x"), "raw label in the page");
    assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"), "the name is shown, escaped");
}

#[test]
fn a_client_that_stops_reading_a_response_loses_its_connection_at_the_idle_timeout() {
    let dir = temp_dir("stalled");
    // A body far beyond the socket buffers, which loopback autotunes to several MB: issue 15
    // halved the series per line, so 10,000 lines (polled at once: max_concurrency).
    let mut config = String::from(
        "global: {poll_interval: 1h, max_concurrency: 512}\naccounts:\n  acme: {driver: demo, seed: 1}\nlines:\n",
    );
    for i in 0..10_000 {
        config += &format!("  - {{name: line-{i:05}, account: acme}}\n");
    }
    let e = start(dir, &config, &["--web.idle-timeout", "1s"]);
    wait_for("ready", || http(e.addr, "GET", "/-/ready", &[]).0 == 200);
    wait_for("a big exposition", || http(e.addr, "GET", "/metrics", &[]).2.len() > 6_000_000);
    let s = TcpStream::connect(e.addr).unwrap();
    socket2::SockRef::from(&s).set_recv_buffer_size(4096).unwrap();
    let mut s = s;
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    wait_for("the stalled response to be closed", || e.log().contains("stopped reading its response"));
    // The scrape port stays usable meanwhile.
    assert_eq!(http(e.addr, "GET", "/-/healthy", &[]).0, 200);
}
