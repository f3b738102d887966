//! Where the binary takes an API token from without putting it on the command line, which every
//! local user can read (`ps`, `/proc/PID/cmdline`): a file (`--token-file`) or `TIM_TOKEN`.

use std::path::Path;

use anyhow::{bail, Context};

/// The environment variable that may hold the token.
pub(crate) const ENV: &str = "TIM_TOKEN";

/// A token given by the user, and where it came from (for messages, never the token itself).
pub(crate) struct Supplied {
    pub(crate) token: String,
    pub(crate) source: String,
}

/// The token in `file` if given, else in `TIM_TOKEN` if set and not empty; `None` if neither.
pub(crate) fn supplied(file: Option<&Path>) -> anyhow::Result<Option<Supplied>> {
    if let Some(path) = file {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading the token file {}", path.display()))?;
        let source = path.display().to_string();
        return checked(text.trim(), &source).map(|token| Some(Supplied { token, source }));
    }
    match std::env::var(ENV) {
        Ok(v) if !v.trim().is_empty() => {
            let source = format!("${ENV}");
            checked(v.trim(), &source).map(|token| Some(Supplied { token, source }))
        }
        Ok(_) | Err(std::env::VarError::NotPresent) => Ok(None),
        Err(std::env::VarError::NotUnicode(_)) => bail!("{ENV} is not valid text"),
    }
}

/// A token must be non-empty and use only URL-safe characters (`A-Z a-z 0-9 . _ ~ -`): it goes
/// into an `Authorization` header and, for the WebSocket, into `?token=` as it is.
fn checked(token: &str, source: &str) -> anyhow::Result<String> {
    if token.is_empty() {
        bail!("the API token from {source} is empty");
    }
    if !token
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'~' | b'-'))
    {
        bail!("the API token from {source} may hold only A-Z a-z 0-9 . _ ~ -");
    }
    Ok(token.to_string())
}

#[cfg(test)]
mod tests {
    use super::checked;

    #[test]
    fn tokens_are_url_safe_and_not_empty() {
        assert_eq!(checked("ab12.-_~", "x").unwrap(), "ab12.-_~");
        for bad in ["", "a b", "a&b", "a=b", "é"] {
            assert!(checked(bad, "x").is_err(), "{bad:?} accepted");
        }
    }
}
