//! Account keys that several drivers parse alike.

use crate::config::fields::Fields;
use crate::config::secret::Secret;

/// A secret that must be given (as `key` or `key_file`).
pub fn required_secret(f: &mut Fields<'_>, key: &'static str, key_file: &'static str) -> Secret {
    let given = f.has(key) || f.has(key_file);
    let secret = f.secret(key, key_file).unwrap_or_else(|| Secret::new(""));
    if !given {
        f.sink().error(Some(f.pos()), f.path(), format!("missing required key `{key}` (or `{key_file}`)"));
    }
    secret
}
