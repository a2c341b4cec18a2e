//! Reading secrets (`env("VAR")`, `file("path")`) when they are needed: an appliance's
//! password when a run connects (`engine`), an SMTP password when a notification is
//! delivered (`notify`). A secret's value is never stored; only its source is.

use crate::check::Secret;

/// Reads a secret: the variable's value, or the file's text without its trailing newline.
pub fn read_secret(secret: &Secret) -> Result<String, String> {
    match secret {
        Secret::Env(v) => {
            std::env::var(v).map_err(|_| format!("environment variable {v} is not set"))
        }
        Secret::File(p) => std::fs::read_to_string(p)
            .map(|s| s.trim_end_matches(['\n', '\r']).to_string())
            .map_err(|e| format!("cannot read password file {}: {e}", p.display())),
    }
}
