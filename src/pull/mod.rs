//! Model pulls: `hf:org/repo/file` refs are downloaded into `models_dir/org/repo/file` from a
//! Hugging Face-style endpoint (`{endpoint}/{org}/{repo}/resolve/main/{file}`; `HF_ENDPOINT`
//! sets it, so tests use a local server). A download goes to `file.part`, resumes from there
//! after an interruption (HTTP range request), is checked against the size and the SHA-256 the
//! server gives (the `X-Linked-Etag` of a hub's redirect, else a 64-hex `ETag`, else
//! `X-Checksum-Sha256`), and is renamed into place only when complete, so a model file that
//! exists is always whole.
//!
//! - `http`  one GET with redirects, over HTTP or HTTPS
//! - `part`  the part file on a blocking thread: append, hash, fsync, rename

mod http;
mod part;

use std::path::{Path, PathBuf};
use std::time::Duration;

use ::http::{HeaderMap, StatusCode, header};
use http_body_util::BodyExt;

use crate::providers::{ModelRef, ModelRefError};

/// Where `hf:` refs come from unless `HF_ENDPOINT` or a flag says otherwise.
pub const DEFAULT_ENDPOINT: &str = "https://huggingface.co";
/// A download that receives nothing for this long fails (and can be resumed).
const STALL_TIMEOUT: Duration = Duration::from_secs(60);

/// `HF_ENDPOINT`, else the public hub.
pub fn default_endpoint() -> String {
    std::env::var("HF_ENDPOINT")
        .ok()
        .filter(|e| !e.trim().is_empty())
        .unwrap_or_else(|| DEFAULT_ENDPOINT.to_string())
}

/// How far a download is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// Bytes on disk so far, including a resumed part.
    pub downloaded: u64,
    /// The file's size, when the server says.
    pub total: Option<u64>,
    /// Bytes that were already on disk when this pull started (a resumed download).
    pub resumed_from: u64,
}

/// A finished pull.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pulled {
    pub path: PathBuf,
    pub bytes: u64,
    /// The SHA-256 that was checked, when the server gave one.
    pub sha256: Option<String>,
    /// The file was already there; nothing was downloaded.
    pub already_present: bool,
    /// Bytes reused from an interrupted earlier download.
    pub resumed_from: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum PullError {
    #[error(transparent)]
    BadRef(#[from] ModelRefError),
    #[error(
        "{0:?} is not pullable: only hf:org/repo/file refs are downloaded (file: refs are local files, other names are fetched by their provider)"
    )]
    NotPullable(String),
    #[error("{0:?} is not a valid URL")]
    BadUrl(String),
    #[error("cannot reach {url}: {source}")]
    RequestFailed {
        url: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("{url} answered {status}{hint}")]
    BadStatus {
        url: String,
        status: StatusCode,
        hint: &'static str,
    },
    #[error("{url} redirected without a usable Location")]
    BadRedirect { url: String },
    #[error("too many redirects, the last to {url}")]
    TooManyRedirects { url: String },
    #[error("{url} stopped sending data; run the pull again to resume")]
    Stalled { url: String },
    #[error("the download from {url} broke off: {source}; run the pull again to resume")]
    BodyFailed {
        url: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{url}: expected {expected} bytes, received {actual}; run the pull again to resume")]
    SizeMismatch {
        url: String,
        expected: u64,
        actual: u64,
    },
    #[error(
        "checksum mismatch for {url}: the server says sha256 {expected}, the download is {actual}; the partial file was removed"
    )]
    ChecksumMismatch {
        url: String,
        expected: String,
        actual: String,
    },
    #[error(
        "https is not available: no system root certificates were found (install ca-certificates)"
    )]
    NoTls,
}

pub type Result<T, E = PullError> = std::result::Result<T, E>;

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> PullError + '_ {
    move |source| PullError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The download URL of `org/repo` + `file` under `endpoint`.
pub fn url_for(endpoint: &str, repo: &str, file: &str) -> String {
    let encode = |s: &str| -> String {
        s.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => {
                    (b as char).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect()
    };
    format!(
        "{}/{}/resolve/main/{}",
        endpoint.trim_end_matches('/'),
        encode(repo),
        encode(file)
    )
}

/// Where a pulled `model_ref` lives under `models_dir` (an error for refs that are not pulled).
pub fn destination(model_ref: &str, models_dir: &Path) -> Result<(PathBuf, String)> {
    match ModelRef::parse(model_ref)? {
        ModelRef::Hf { repo, file } => {
            let path = models_dir.join(&repo).join(&file);
            Ok((path, format!("{repo}\u{0}{file}")))
        }
        _ => Err(PullError::NotPullable(model_ref.to_string())),
    }
}

/// Downloads `model_ref` (an `hf:` ref) into `models_dir`, calling `progress` as bytes arrive.
/// Returns at once when the file is already there.
pub async fn pull(
    model_ref: &str,
    models_dir: &Path,
    endpoint: &str,
    progress: &(dyn Fn(Progress) + Send + Sync),
) -> Result<Pulled> {
    let (dest, key) = destination(model_ref, models_dir)?;
    let (repo, file) = key.split_once('\u{0}').unwrap_or_default();
    if let Ok(meta) = std::fs::metadata(&dest)
        && meta.is_file()
    {
        return Ok(Pulled {
            path: dest,
            bytes: meta.len(),
            sha256: None,
            already_present: true,
            resumed_from: 0,
        });
    }
    let url = url_for(endpoint, repo, file);
    if let Some(dir) = dest.parent() {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
    }
    let part = part_path(&dest);
    let (client, tls) = http::client();
    if url.starts_with("https://") && !tls {
        return Err(PullError::NoTls);
    }
    let token = std::env::var("HF_TOKEN").ok().filter(|t| !t.is_empty());
    let auth_origin = url
        .parse::<::http::Uri>()
        .ok()
        .and_then(|u| http::origin_of(&u));
    let auth = match (&auth_origin, &token) {
        (Some(o), Some(t)) => Some((o.as_str(), t.as_str())),
        _ => None,
    };

    let mut have = std::fs::metadata(&part).map_or(0, |m| m.len());
    let mut fetched = http::get(&client, &url, have, auth).await?;
    if fetched.response.status() == StatusCode::RANGE_NOT_SATISFIABLE {
        // The part is stale or already complete by another reckoning: start over.
        std::fs::remove_file(&part).map_err(io(&part))?;
        have = 0;
        fetched = http::get(&client, &url, 0, auth).await?;
    }
    let status = fetched.response.status();
    let resumed = status == StatusCode::PARTIAL_CONTENT
        && have > 0
        && range_start(fetched.response.headers()) == Some(have);
    if !status.is_success() {
        return Err(PullError::BadStatus {
            url: fetched.url,
            status,
            hint: match status {
                StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
                    " (a gated or private repository: set HF_TOKEN)"
                }
                StatusCode::NOT_FOUND => " (check the org, repo and file name)",
                _ => "",
            },
        });
    }
    if !resumed {
        have = 0;
    }
    let total = total_size(fetched.response.headers(), have, &fetched.chain);
    let expected_sha = sha256_of(&fetched.chain);

    let mut writer = part::PartWriter::start(part.clone(), resumed);
    let mut downloaded = have;
    progress(Progress {
        downloaded,
        total,
        resumed_from: have,
    });
    let mut body = fetched.response.into_body();
    let received: Result<()> = async {
        loop {
            let frame = tokio::time::timeout(STALL_TIMEOUT, body.frame())
                .await
                .map_err(|_| PullError::Stalled {
                    url: fetched.url.clone(),
                })?;
            let Some(frame) = frame else { return Ok(()) };
            let frame = frame.map_err(|e| PullError::BodyFailed {
                url: fetched.url.clone(),
                source: Box::new(e),
            })?;
            if let Ok(data) = frame.into_data() {
                let len = data.len() as u64;
                writer.write(data).await?;
                downloaded += len;
                progress(Progress {
                    downloaded,
                    total,
                    resumed_from: have,
                });
            }
        }
    }
    .await;
    // Whatever happened, the part file is whole on disk before this returns (a resume
    // right after must not race a writer still draining).
    let written = writer.finish().await;
    received?;
    let actual = written?;
    if let Some(expected) = total
        && expected != downloaded
    {
        return Err(PullError::SizeMismatch {
            url: fetched.url,
            expected,
            actual: downloaded,
        });
    }
    if let Some(expected) = &expected_sha
        && *expected != actual
    {
        let _ = std::fs::remove_file(&part);
        return Err(PullError::ChecksumMismatch {
            url: fetched.url,
            expected: expected.clone(),
            actual,
        });
    }
    part::commit(part, dest.clone()).await?;
    Ok(Pulled {
        path: dest,
        bytes: downloaded,
        sha256: expected_sha,
        already_present: false,
        resumed_from: have,
    })
}

/// `file.gguf` → `file.gguf.part`.
pub fn part_path(dest: &Path) -> PathBuf {
    let mut name = dest.file_name().unwrap_or_default().to_os_string();
    name.push(".part");
    dest.with_file_name(name)
}

/// The first byte of a `Content-Range: bytes start-end/total`.
fn range_start(headers: &HeaderMap) -> Option<u64> {
    let v = headers.get(header::CONTENT_RANGE)?.to_str().ok()?;
    v.strip_prefix("bytes ")?
        .split('-')
        .next()?
        .trim()
        .parse()
        .ok()
}

/// The whole file's size: from `Content-Range`, else `Content-Length` plus what we have, else
/// a hub's `X-Linked-Size`.
fn total_size(headers: &HeaderMap, have: u64, chain: &[HeaderMap]) -> Option<u64> {
    let num = |h: &HeaderMap, name: &str| -> Option<u64> {
        h.get(name)?.to_str().ok()?.trim().parse().ok()
    };
    if let Some(total) = headers
        .get(header::CONTENT_RANGE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.rsplit('/').next())
        .and_then(|t| t.trim().parse().ok())
    {
        return Some(total);
    }
    if let Some(len) = num(headers, "content-length") {
        return Some(have + len);
    }
    chain.iter().find_map(|h| num(h, "x-linked-size"))
}

/// A SHA-256 the server vouches for, as lowercase hex.
fn sha256_of(chain: &[HeaderMap]) -> Option<String> {
    let hex64 = |v: &str| {
        let v = v
            .trim()
            .trim_start_matches("W/")
            .trim_matches('"')
            .to_ascii_lowercase();
        (v.len() == 64 && v.bytes().all(|b| b.is_ascii_hexdigit())).then_some(v)
    };
    let find = |name: &str| {
        chain
            .iter()
            .find_map(|h| h.get(name).and_then(|v| v.to_str().ok()).and_then(hex64))
    };
    find("x-linked-etag")
        .or_else(|| find("x-checksum-sha256"))
        .or_else(|| {
            chain
                .last()
                .and_then(|h| h.get(header::ETAG)?.to_str().ok().and_then(hex64))
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use ::http::HeaderValue;

    #[test]
    fn urls_follow_the_hub_layout_and_encode_odd_characters() {
        assert_eq!(
            url_for("http://127.0.0.1:9/", "org/repo", "sub/a b.gguf"),
            "http://127.0.0.1:9/org/repo/resolve/main/sub/a%20b.gguf"
        );
    }

    #[test]
    fn only_hf_refs_are_pulled() {
        let dir = Path::new("/models");
        assert_eq!(
            destination("hf:o/r/f.gguf", dir).unwrap().0,
            PathBuf::from("/models/o/r/f.gguf")
        );
        assert!(matches!(
            destination("file:/x.gguf", dir),
            Err(PullError::NotPullable(_))
        ));
        assert!(matches!(
            destination("hf:o/r", dir),
            Err(PullError::BadRef(_))
        ));
    }

    #[test]
    fn checksums_and_sizes_come_from_the_headers() {
        let sha = "a".repeat(64);
        let mut redirect = HeaderMap::new();
        redirect.insert(
            "x-linked-etag",
            HeaderValue::from_str(&format!("\"{sha}\"")).unwrap(),
        );
        redirect.insert("x-linked-size", HeaderValue::from_static("100"));
        let mut last = HeaderMap::new();
        last.insert(header::ETAG, HeaderValue::from_static("\"not-a-sha\""));
        let chain = vec![redirect, last.clone()];
        assert_eq!(sha256_of(&chain), Some(sha));
        assert_eq!(sha256_of(&[last.clone()]), None);
        assert_eq!(total_size(&last, 0, &chain), Some(100));
        last.insert(
            header::CONTENT_RANGE,
            HeaderValue::from_static("bytes 40-99/100"),
        );
        assert_eq!(range_start(&last), Some(40));
        assert_eq!(total_size(&last, 40, &chain), Some(100));
    }
}
