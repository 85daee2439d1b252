//! Dialing a gRPC server on a unix socket (the kubelet's `kubelet.sock`, or our own socket in
//! tests), with a bounded connect time.

use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use hyper_util::rt::TokioIo;
use tokio::net::UnixStream;
use tonic::transport::{Channel, Endpoint};

#[derive(Debug, thiserror::Error)]
#[error("cannot connect to {path}: {source}")]
pub struct DialError {
    pub path: PathBuf,
    #[source]
    pub source: tonic::transport::Error,
}

/// A channel to the gRPC server listening on `path`. The URI is a placeholder that tonic
/// requires; the connector ignores it and dials the socket.
pub async fn dial(path: &Path, timeout: Duration) -> Result<Channel, DialError> {
    let socket = path.to_path_buf();
    // No request timeout on the channel: it would also cut ListAndWatch streams short.
    let endpoint = Endpoint::from_static("http://localhost").connect_timeout(timeout);
    endpoint
        .connect_with_connector(tower::service_fn(move |_uri| {
            let socket = socket.clone();
            async move { Ok::<_, io::Error>(TokioIo::new(UnixStream::connect(socket).await?)) }
        }))
        .await
        .map_err(|source| DialError {
            path: path.to_path_buf(),
            source,
        })
}
