//! Upstream URLs: an `http://` or `https://` base URL with a host and no credentials (hal0
//! never sends or shows URL credentials; the key goes in an environment variable).

/// What replaces a secret value.
pub const REDACTED: &str = "<redacted>";

/// `Ok` for an `http://` or `https://` URL with a host, no whitespace and no credentials;
/// otherwise the message (with any credentials redacted).
pub(super) fn check_upstream(url: &str) -> Result<(), String> {
    let lower = url.to_ascii_lowercase();
    let rest = lower
        .strip_prefix("https://")
        .or_else(|| lower.strip_prefix("http://"));
    let authority = rest.map(|r| r.split(['/', '?', '#']).next().unwrap_or_default());
    let ok = authority.is_some_and(|h| !h.is_empty()) && !url.chars().any(char::is_whitespace);
    if !ok {
        return Err(format!(
            "{:?} is not an http:// or https:// URL; write the API's base URL, like \
             \"https://openrouter.ai/api/v1\"",
            redact_url(url)
        ));
    }
    if authority.is_some_and(|a| a.contains('@')) {
        return Err(format!(
            "{:?} has credentials in it; hal0 does not send or show URL credentials: put the \
             key in an environment variable and name it in api_key_env (with auth = \
             \"bearer\" or \"x-api-key\")",
            redact_url(url)
        ));
    }
    Ok(())
}

/// `https://user:pass@host/x` → `https://user:<redacted>@host/x`; a bare `token@host` loses
/// the token.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(authority_end);
    let Some((userinfo, host)) = authority.rsplit_once('@') else {
        return url.to_string();
    };
    let userinfo = match userinfo.split_once(':') {
        Some((user, _)) => format!("{user}:{REDACTED}"),
        None => REDACTED.to_string(),
    };
    format!("{scheme}://{userinfo}@{host}{path}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_credentials_are_redacted() {
        assert_eq!(
            redact_url("https://u:p@example.com/v1"),
            "https://u:<redacted>@example.com/v1"
        );
        assert_eq!(
            redact_url("https://tok@example.com"),
            "https://<redacted>@example.com"
        );
        assert_eq!(
            redact_url("https://example.com/v1?a=b@c"),
            "https://example.com/v1?a=b@c"
        );
    }

    #[test]
    fn upstreams_are_http_urls_with_a_host_and_no_credentials() {
        for ok in ["https://openrouter.ai/api/v1", "http://10.0.0.2:8000/v1"] {
            assert_eq!(check_upstream(ok), Ok(()), "{ok}");
        }
        for bad in [
            "openrouter.ai/api/v1",
            "https:///v1",
            "ftp://x/v1",
            "http://a b/v1",
        ] {
            assert!(check_upstream(bad).is_err(), "{bad}");
        }
        let creds = check_upstream("https://u:secret@x/v1").expect_err("credentials");
        assert!(
            creds.contains("credentials") && !creds.contains("secret"),
            "{creds}"
        );
    }
}
