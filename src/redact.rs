//! Credentials out of every operator text. An operator or a gateway that echoes the request in
//! its error body (T2 the plain password, 1NCE `client_id:secret`, MTS the `Basic …` header)
//! would otherwise carry a secret into logs, `/`, the API, `/probe?debug=true` and the storage
//! file. Every message a poll or listing produces passes an account's [`Redactor`] before it is
//! kept or shown.

use std::sync::Arc;

use base64::Engine;

/// What a redacted credential is replaced with.
pub const REDACTED: &str = "<redacted>";

/// Shorter secrets are not searched for: replacing every "1234" in an error text would hide
/// more than it protects, and no operator accepts a 3-character credential.
const MIN_SECRET_CHARS: usize = 4;

/// The forms in which an account's credentials may come back in an operator's text.
#[derive(Clone, Default, Debug)]
pub struct Redactor {
    /// Longest first, so a form that contains another is replaced whole.
    forms: Arc<[Box<str>]>,
}

impl Redactor {
    /// The forms of `secrets`: plain, base64, URL-encoded and JSON-escaped, and the base64 of
    /// `user:secret` for every `users` value (HTTP Basic and proxy auth headers).
    pub fn new<'a>(secrets: impl IntoIterator<Item = &'a str>, users: &[&str]) -> Redactor {
        let b64 = base64::engine::general_purpose::STANDARD;
        let mut forms: Vec<String> = Vec::new();
        for secret in secrets.into_iter().filter(|s| s.chars().count() >= MIN_SECRET_CHARS) {
            forms.push(secret.to_string());
            forms.push(b64.encode(secret));
            forms.push(url::form_urlencoded::byte_serialize(secret.as_bytes()).collect());
            if let Ok(json) = serde_json::to_string(secret) {
                forms.push(json.trim_matches('"').to_string());
            }
            for user in users {
                forms.push(b64.encode(format!("{user}:{secret}")));
            }
        }
        forms.sort_by_key(|f| std::cmp::Reverse(f.len()));
        forms.dedup();
        Redactor { forms: forms.into_iter().map(String::into_boxed_str).collect() }
    }

    /// `text` with every credential form replaced by [`REDACTED`], and the value of every
    /// credential-named field (`"token": …`, `password=…`, `Authorization: Bearer …`) too:
    /// tokens that rotate at run time or come from token files are not in the list of forms.
    pub fn redact(&self, text: String) -> String {
        let mut text =
            match credential_fields().replace_all(&text, |c: &regex::Captures<'_>| format!("{}{REDACTED}", &c[1])) {
                std::borrow::Cow::Borrowed(_) => text,
                std::borrow::Cow::Owned(replaced) => replaced,
            };
        for form in self.forms.iter() {
            if text.contains(&**form) {
                text = text.replace(&**form, REDACTED);
            }
        }
        text
    }

    pub fn is_empty(&self) -> bool {
        self.forms.is_empty()
    }
}

/// A field whose name says it holds a credential, and its value: JSON (`"token": "…"`), form
/// or query (`password=…`), and header (`Authorization: Basic …`) shapes. Group 1 is the name
/// with its separator, kept so the message still says what was there.
fn credential_fields() -> &'static regex::Regex {
    static FIELDS: std::sync::LazyLock<regex::Regex> = std::sync::LazyLock::new(|| {
        regex::Regex::new(
            r#"(?ix)
            ( "? \b (?: [a-z_]*password | [a-z_]*token | [a-z_]*secret | api[_-]?key | authorization | cookie ) "?
              \s* [:=] \s* (?: (?:basic|bearer) \s+ )? )
            ( "(?:[^"\\]|\\.)*" | [^\s&,;}"]+ )"#,
        )
        .expect("valid regex")
    });
    &FIELDS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_echoed_form_of_a_credential_is_replaced() {
        let r = Redactor::new(["p@ss w\"rd", "tok"], &["client-7"]);
        let b64 = base64::engine::general_purpose::STANDARD;
        let cases = [
            "Invalid password p@ss w\"rd for user".to_string(),
            format!("echo: Authorization: Basic {}", b64.encode("client-7:p@ss w\"rd")),
            "body was pw p%40ss+w%22rd&login=1".to_string(),
            r#"{"request":{"pw":"p@ss w\"rd"}}"#.to_string(),
            format!("x-secret: {}", b64.encode("p@ss w\"rd")),
        ];
        for case in cases {
            let out = r.redact(case.clone());
            assert!(out.contains(REDACTED), "{case} -> {out}");
            assert!(!out.contains("p@ss") && !out.contains("p%40ss"), "{case} -> {out}");
        }
        assert_eq!(r.redact("a token of 3 chars: tok".into()), "a token of 3 chars: tok", "too short to search");
        assert!(Redactor::new([], &[]).is_empty());
    }

    #[test]
    fn credential_named_fields_are_redacted_whatever_their_value() {
        let r = Redactor::default();
        let cases = [
            (r#"echo: {"msisdn":"x","token":"rotating-tok-123"}"#, r#"echo: {"msisdn":"x","token":<redacted>}"#),
            ("grant_type=password&password=hunter22&username=u", "grant_type=password&password=<redacted>&username=u"),
            ("Authorization: Bearer eyJhbGciOi.x.y rest", "Authorization: Bearer <redacted> rest"),
            (r#"{"access_token": "abc\"def", "n": 1}"#, r#"{"access_token": <redacted>, "n": 1}"#),
            ("emnify error code: 1001", "emnify error code: 1001"),
        ];
        for (text, expected) in cases {
            assert_eq!(r.redact(text.to_string()), expected);
        }
        assert_eq!(r.redact("HTTP 500, login refused".into()), "HTTP 500, login refused");
    }
}
