//! JSON Web Tokens (RFC 7519), read only for their expiry: a platform that hands out a JWT
//! without `expires_in` (emnify) says in the token how long it lives. The signature is not
//! checked: the token is the platform's own, and it is only ever sent back to it.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// What is left of a JWT's life: its `exp` claim minus `now`. `None` when the token is not a
/// JWT or carries no `exp`.
pub fn lifetime(token: &str, now: SystemTime) -> Option<Duration> {
    let payload = token.split('.').nth(1)?;
    let bytes = base64url(payload)?;
    let claims: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    let exp = claims.get("exp")?.as_f64()?;
    let now = now.duration_since(UNIX_EPOCH).ok()?.as_secs_f64();
    // A hostile or broken `exp` (1e25, NaN) must not panic `from_secs_f64`: past a year it
    // is "no useful expiry" and the token is kept until refused.
    const YEAR: f64 = 365.0 * 86_400.0;
    let left = exp - now;
    if !left.is_finite() || left > YEAR {
        return None;
    }
    Some(Duration::from_secs_f64(left.max(0.0)))
}

/// A JWT segment: base64url without padding (RFC 7519 §3), read leniently (padding or the
/// standard alphabet, as some gateways re-encode) since only the expiry is taken from it.
fn base64url(text: &str) -> Option<Vec<u8>> {
    use base64::alphabet::{STANDARD, URL_SAFE};
    use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
    use base64::Engine;
    let config = GeneralPurposeConfig::new()
        .with_decode_padding_mode(DecodePaddingMode::Indifferent)
        .with_decode_allow_trailing_bits(true);
    let alphabet = if text.contains(['+', '/']) { &STANDARD } else { &URL_SAFE };
    GeneralPurpose::new(alphabet, config).decode(text).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_jwt_lifetime_is_read_from_its_exp_claim() {
        // {"alg":"HS512"} . {"iat":1647943800,"exp":1648548600} . signature
        let token = "eyJhbGciOiJIUzUxMiJ9.eyJpYXQiOjE2NDc5NDM4MDAsImV4cCI6MTY0ODU0ODYwMH0.c2ln";
        let now = UNIX_EPOCH + Duration::from_secs(1_647_943_800);
        assert_eq!(lifetime(token, now), Some(Duration::from_secs(604_800)));
        assert_eq!(lifetime("not-a-jwt", now), None);
        assert_eq!(lifetime("a.!!!.c", now), None);
    }

    /// A JWT with `claims` as its payload (unpadded base64url), signature "sig".
    fn jwt_with(claims: &[u8]) -> String {
        const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let mut payload = String::new();
        for c in claims.chunks(3) {
            let b = [c[0], *c.get(1).unwrap_or(&0), *c.get(2).unwrap_or(&0)];
            let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
            for i in 0..=c.len() {
                payload.push(T[(n >> (18 - 6 * i)) as usize & 63] as char);
            }
        }
        format!("eyJhbGciOiJIUzUxMiJ9.{payload}.c2ln")
    }

    #[test]
    fn jwt_segments_decode_in_either_alphabet_with_or_without_padding() {
        // {"exp":1} with a '?' so that the URL-safe and standard alphabets differ ("_" / "/").
        let raw = br#"{"exp":1,"k":"??>"}"#;
        assert_eq!(base64url("eyJleHAiOjEsImsiOiI_Pz4ifQ").as_deref(), Some(&raw[..]));
        assert_eq!(base64url("eyJleHAiOjEsImsiOiI/Pz4ifQ==").as_deref(), Some(&raw[..]));
        assert_eq!(base64url("eyJleHAiOjEsImsiOiI_Pz4ifQ==").as_deref(), Some(&raw[..]));
        assert_eq!(base64url("not base64!"), None);
    }

    #[test]
    fn a_four_hour_token_lives_four_hours() {
        // {"iat":1700000000,"exp":1700014400}: 4 h, as recorded.
        let token = jwt_with(br#"{"iat":1700000000,"exp":1700014400,"esc.app":42}"#);
        let now = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(lifetime(&token, now), Some(Duration::from_secs(4 * 3600)));
    }

    #[test]
    fn an_absurd_exp_is_no_expiry_and_no_panic() {
        let now = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        for claims in [&br#"{"exp":1e25}"#[..], br#"{"exp":1.7e308}"#, br#"{"exp":-1e300}"#] {
            let lifetime = lifetime(&jwt_with(claims), now);
            assert!(lifetime.is_none() || lifetime == Some(Duration::ZERO), "{lifetime:?}");
        }
        assert_eq!(lifetime(&jwt_with(br#"{"exp":1e25}"#), now), None);
    }
}
