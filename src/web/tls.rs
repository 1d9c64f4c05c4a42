//! `tls_server_config` → a rustls `ServerConfig` (ring provider, as the HTTP client uses).
//! Go's names are kept: `client_auth_type` values, `TLS12`/`TLS13`, Go cipher-suite and curve
//! names. What rustls cannot do (TLS 1.0/1.1, CBC suites, P-521) is an error naming the value.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::crypto::{ring, CryptoProvider};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::WebPkiClientVerifier;
use rustls::{DigitallySignedStruct, DistinguishedName, RootCertStore, ServerConfig, SignatureScheme};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};

use serde::Deserialize;

/// `tls_server_config` as exporter-toolkit defines it; unknown keys are errors.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTls {
    pub cert_file: Option<String>,
    pub key_file: Option<String>,
    /// Inline PEM, as newer exporter-toolkit versions accept instead of the files.
    pub cert: Option<String>,
    pub key: Option<String>,
    pub client_auth_type: Option<String>,
    pub client_ca_file: Option<String>,
    pub client_ca: Option<String>,
    pub client_allowed_sans: Option<Vec<String>>,
    pub min_version: Option<String>,
    pub max_version: Option<String>,
    pub cipher_suites: Option<Vec<String>>,
    pub curve_preferences: Option<Vec<String>>,
    pub prefer_server_cipher_suites: Option<bool>,
}

/// A validated `tls_server_config`, with the files it was built from (a change to any of them
/// rebuilds it, so a renewed certificate is picked up without a restart).
#[derive(Debug)]
pub struct TlsSettings {
    pub server_config: Arc<ServerConfig>,
    pub files: Vec<PathBuf>,
}

/// exporter-toolkit's `client_auth_type` values (Go's `tls.ClientAuthType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ClientAuth {
    NoClientCert,
    RequestClientCert,
    RequireAnyClientCert,
    VerifyClientCertIfGiven,
    RequireAndVerifyClientCert,
}

impl ClientAuth {
    fn parse(text: &str) -> Result<ClientAuth, String> {
        Ok(match text {
            "" | "NoClientCert" => ClientAuth::NoClientCert,
            "RequestClientCert" => ClientAuth::RequestClientCert,
            "RequireAnyClientCert" => ClientAuth::RequireAnyClientCert,
            "VerifyClientCertIfGiven" => ClientAuth::VerifyClientCertIfGiven,
            "RequireAndVerifyClientCert" => ClientAuth::RequireAndVerifyClientCert,
            other => {
                return Err(format!(
                    "tls_server_config.client_auth_type: invalid value `{other}` (expected NoClientCert, \
                     RequestClientCert, RequireAnyClientCert, VerifyClientCertIfGiven or RequireAndVerifyClientCert)"
                ))
            }
        })
    }

    fn verifies(self) -> bool {
        matches!(self, ClientAuth::VerifyClientCertIfGiven | ClientAuth::RequireAndVerifyClientCert)
    }
}

/// Builds the rustls config; relative paths are relative to `dir` (the web config's directory).
pub fn settings(raw: RawTls, dir: &Path) -> Result<TlsSettings, String> {
    let mut files = Vec::new();
    let certs = certificates(&raw, dir, &mut files)?;
    let key = private_key(&raw, dir, &mut files)?;
    let provider = Arc::new(provider(&raw)?);
    let versions = versions(raw.min_version.as_deref(), raw.max_version.as_deref())?;
    let auth = ClientAuth::parse(raw.client_auth_type.as_deref().unwrap_or(""))?;
    let verifier = client_verifier(auth, &raw, dir, &provider, &mut files)?;
    let verifier = match allowed_sans(raw.client_allowed_sans.as_deref().unwrap_or(&[]), auth)? {
        Some(allowed) => Arc::new(AllowedSans { inner: verifier, allowed }) as Arc<dyn ClientCertVerifier>,
        None => verifier,
    };
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&versions)
        .map_err(|e| format!("tls_server_config: {e}"))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs, key)
        .map_err(|e| format!("tls_server_config: certificate and key do not fit together: {e}"))?;
    config.ignore_client_order = raw.prefer_server_cipher_suites.unwrap_or(false);
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsSettings { server_config: Arc::new(config), files })
}

fn resolve(dir: &Path, file: &str) -> PathBuf {
    let path = Path::new(file);
    if path.is_absolute() {
        path.to_path_buf()
    } else {
        dir.join(path)
    }
}

/// PEM from `<key>_file` or inline `<key>`; exactly one of them.
fn pem_source(
    file: &Option<String>,
    inline: &Option<String>,
    key: &str,
    dir: &Path,
    files: &mut Vec<PathBuf>,
) -> Result<Option<Vec<u8>>, String> {
    match (file, inline) {
        (Some(_), Some(_)) => Err(format!("tls_server_config: set either {key}_file or {key}, not both")),
        (Some(f), None) => {
            let path = resolve(dir, f);
            let bytes = std::fs::read(&path)
                .map_err(|e| format!("tls_server_config.{key}_file: cannot read {}: {e}", path.display()))?;
            files.push(path);
            Ok(Some(bytes))
        }
        (None, Some(text)) => Ok(Some(text.as_bytes().to_vec())),
        (None, None) => Ok(None),
    }
}

fn certificates(raw: &RawTls, dir: &Path, files: &mut Vec<PathBuf>) -> Result<Vec<CertificateDer<'static>>, String> {
    let pem = pem_source(&raw.cert_file, &raw.cert, "cert", dir, files)?
        .ok_or("tls_server_config: cert_file is required (or inline cert)")?;
    let certs: Vec<_> = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<_, _>>()
        .map_err(|e| format!("tls_server_config.cert_file: not a PEM certificate: {e}"))?;
    if certs.is_empty() {
        return Err("tls_server_config.cert_file: no certificate in the PEM".into());
    }
    Ok(certs)
}

fn private_key(raw: &RawTls, dir: &Path, files: &mut Vec<PathBuf>) -> Result<PrivateKeyDer<'static>, String> {
    let pem = pem_source(&raw.key_file, &raw.key, "key", dir, files)?
        .ok_or("tls_server_config: key_file is required (or inline key)")?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|e| format!("tls_server_config.key_file: no usable private key: {e}"))
}

fn versions(min: Option<&str>, max: Option<&str>) -> Result<Vec<&'static rustls::SupportedProtocolVersion>, String> {
    let rank = |key: &str, text: &str| match text {
        "TLS12" => Ok(12),
        "TLS13" => Ok(13),
        "TLS10" | "TLS11" => {
            Err(format!("tls_server_config.{key}: `{text}` is not supported (rustls speaks TLS12 and TLS13)"))
        }
        other => Err(format!("tls_server_config.{key}: invalid value `{other}` (expected TLS12 or TLS13)")),
    };
    let lo = min.map(|m| rank("min_version", m)).transpose()?.unwrap_or(12);
    let hi = max.map(|m| rank("max_version", m)).transpose()?.unwrap_or(13);
    if lo > hi {
        return Err("tls_server_config: min_version is above max_version".into());
    }
    let mut out = Vec::new();
    if lo <= 12 {
        out.push(&rustls::version::TLS12);
    }
    if hi >= 13 {
        out.push(&rustls::version::TLS13);
    }
    Ok(out)
}

/// The ring provider narrowed to the configured TLS 1.2 suites and curves. As in Go,
/// `cipher_suites` does not touch TLS 1.3, whose suites are all safe.
fn provider(raw: &RawTls) -> Result<CryptoProvider, String> {
    let mut provider = ring::default_provider();
    if let Some(names) = &raw.cipher_suites {
        let mut tls12 = Vec::new();
        for name in names {
            tls12.push(cipher_suite(name)?);
        }
        provider.cipher_suites.retain(|s| s.version() == &rustls::version::TLS13);
        provider.cipher_suites.extend(tls12);
    }
    if let Some(names) = &raw.curve_preferences {
        let mut groups = Vec::new();
        for name in names {
            groups.push(curve(name)?);
        }
        provider.kx_groups = groups;
    }
    Ok(provider)
}

fn cipher_suite(name: &str) -> Result<rustls::SupportedCipherSuite, String> {
    use ring::cipher_suite as cs;
    Ok(match name {
        "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256" => cs::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
        "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384" => cs::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
        "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305" | "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256" => {
            cs::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256
        }
        "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256" => cs::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
        "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384" => cs::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
        "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305" | "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256" => {
            cs::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256
        }
        other => {
            return Err(format!(
                "tls_server_config.cipher_suites: `{other}` is not supported (rustls offers the ECDHE AES-GCM \
                 and CHACHA20_POLY1305 suites only)"
            ))
        }
    })
}

fn curve(name: &str) -> Result<&'static dyn rustls::crypto::SupportedKxGroup, String> {
    Ok(match name {
        "X25519" => ring::kx_group::X25519,
        "CurveP256" => ring::kx_group::SECP256R1,
        "CurveP384" => ring::kx_group::SECP384R1,
        other => {
            return Err(format!(
                "tls_server_config.curve_preferences: `{other}` is not supported (X25519, CurveP256, CurveP384)"
            ))
        }
    })
}

fn client_verifier(
    auth: ClientAuth,
    raw: &RawTls,
    dir: &Path,
    provider: &Arc<CryptoProvider>,
    files: &mut Vec<PathBuf>,
) -> Result<Arc<dyn ClientCertVerifier>, String> {
    let ca = pem_source(&raw.client_ca_file, &raw.client_ca, "client_ca", dir, files)?;
    if auth.verifies() && ca.is_none() {
        return Err(format!("tls_server_config.client_ca_file: required with client_auth_type {auth:?}"));
    }
    match auth {
        ClientAuth::NoClientCert => Ok(WebPkiClientVerifier::no_client_auth()),
        ClientAuth::RequestClientCert | ClientAuth::RequireAnyClientCert => Ok(Arc::new(AnyClientCert {
            mandatory: auth == ClientAuth::RequireAnyClientCert,
            provider: provider.clone(),
        })),
        ClientAuth::VerifyClientCertIfGiven | ClientAuth::RequireAndVerifyClientCert => {
            let mut roots = RootCertStore::empty();
            for cert in CertificateDer::pem_slice_iter(&ca.unwrap_or_default()) {
                let cert = cert.map_err(|e| format!("tls_server_config.client_ca_file: not PEM: {e}"))?;
                roots.add(cert).map_err(|e| format!("tls_server_config.client_ca_file: unusable certificate: {e}"))?;
            }
            if roots.is_empty() {
                return Err("tls_server_config.client_ca_file: no certificate in the PEM".into());
            }
            let builder = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone());
            let builder =
                if auth == ClientAuth::VerifyClientCertIfGiven { builder.allow_unauthenticated() } else { builder };
            builder.build().map_err(|e| format!("tls_server_config.client_ca_file: {e}"))
        }
    }
}

/// `client_allowed_sans`: DNS names and IP addresses (what rustls' webpki can match; an email
/// or URI entry is refused by name). Only with a client auth type that asks for a certificate.
fn allowed_sans(names: &[String], auth: ClientAuth) -> Result<Option<Vec<ServerName<'static>>>, String> {
    if names.is_empty() {
        return Ok(None);
    }
    if auth == ClientAuth::NoClientCert {
        return Err(
            "tls_server_config.client_allowed_sans: needs a client_auth_type that asks for a certificate".into()
        );
    }
    let parsed = names
        .iter()
        .map(|n| {
            ServerName::try_from(n.clone()).map_err(|_| {
                format!(
                    "tls_server_config.client_allowed_sans: `{n}` is not a DNS name or IP address \
                     (email and URI names are not supported)"
                )
            })
        })
        .collect::<Result<_, _>>()?;
    Ok(Some(parsed))
}

/// Verifies as `inner` does, then requires a presented certificate to name one of `allowed`
/// in its subject alternative names (exporter-toolkit's `client_allowed_sans`).
#[derive(Debug)]
struct AllowedSans {
    inner: Arc<dyn ClientCertVerifier>,
    allowed: Vec<ServerName<'static>>,
}

impl ClientCertVerifier for AllowedSans {
    fn offer_client_auth(&self) -> bool {
        self.inner.offer_client_auth()
    }

    fn client_auth_mandatory(&self) -> bool {
        self.inner.client_auth_mandatory()
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let verified = self.inner.verify_client_cert(end_entity, intermediates, now)?;
        let cert = webpki::EndEntityCert::try_from(end_entity)
            .map_err(|_| rustls::Error::InvalidCertificate(rustls::CertificateError::BadEncoding))?;
        if self.allowed.iter().any(|name| cert.verify_is_valid_for_subject_name(name).is_ok()) {
            Ok(verified)
        } else {
            Err(rustls::Error::InvalidCertificate(rustls::CertificateError::NotValidForName))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// Go's `RequestClientCert` / `RequireAnyClientCert`: a certificate is asked for (and for the
/// latter required) but not verified against a CA; its signature over the handshake still is,
/// so the client does hold the key.
#[derive(Debug)]
struct AnyClientCert {
    mandatory: bool,
    provider: Arc<CryptoProvider>,
}

impl ClientCertVerifier for AnyClientCert {
    fn client_auth_mandatory(&self) -> bool {
        self.mandatory
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_follow_go_names() {
        assert_eq!(versions(None, None).unwrap().len(), 2);
        assert_eq!(versions(Some("TLS13"), None).unwrap().len(), 1);
        assert!(versions(Some("TLS10"), None).unwrap_err().contains("min_version"));
        assert!(versions(Some("TLS13"), Some("TLS12")).unwrap_err().contains("above"));
        assert!(versions(None, Some("SSL3")).unwrap_err().contains("max_version"));
    }

    #[test]
    fn client_auth_types_and_suites() {
        assert!(ClientAuth::parse("RequireAndVerifyClientCert").unwrap().verifies());
        assert!(ClientAuth::parse("requireandverify").unwrap_err().contains("client_auth_type"));
        assert!(cipher_suite("TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256").is_ok());
        assert!(cipher_suite("TLS_RSA_WITH_AES_128_CBC_SHA").unwrap_err().contains("cipher_suites"));
        assert!(curve("CurveP521").unwrap_err().contains("curve_preferences"));
    }

    #[test]
    fn allowed_sans_are_dns_names_or_ips() {
        assert!(allowed_sans(&[], ClientAuth::NoClientCert).unwrap().is_none());
        let ok = allowed_sans(&["prometheus".into(), "10.0.0.1".into()], ClientAuth::RequireAndVerifyClientCert);
        assert_eq!(ok.unwrap().unwrap().len(), 2);
        let e = allowed_sans(&["a@b.c".into()], ClientAuth::RequireAndVerifyClientCert).unwrap_err();
        assert!(e.contains("client_allowed_sans") && e.contains("a@b.c"), "{e}");
        assert!(allowed_sans(&["x".into()], ClientAuth::NoClientCert).unwrap_err().contains("client_auth_type"));
    }

    #[test]
    fn verified_client_auth_needs_a_ca() {
        let raw = RawTls {
            cert: Some("x".into()),
            client_auth_type: Some("RequireAndVerifyClientCert".into()),
            ..RawTls::default()
        };
        let provider = Arc::new(ring::default_provider());
        let e = client_verifier(ClientAuth::RequireAndVerifyClientCert, &raw, Path::new("."), &provider, &mut vec![])
            .unwrap_err();
        assert!(e.contains("client_ca_file"), "{e}");
    }
}
