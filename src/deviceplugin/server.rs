//! Serving the `DevicePlugin` service on our unix socket in the plugin directory.

use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::UnixListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::UnixListenerStream;
use tokio_util::sync::CancellationToken;

use super::api::device_plugin_server::DevicePluginServer;
use super::authority;
use super::inventory::Inventory;
use super::service::PluginService;

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("cannot remove the stale socket {path}: {source}")]
    RemoveStaleFailed {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot listen on {path}: {source}")]
    BindFailed {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("the gRPC server on {path} failed: {source}")]
    ServeFailed {
        path: PathBuf,
        #[source]
        source: tonic::transport::Error,
    },
    #[error("the gRPC server task on {path} panicked or was cancelled")]
    TaskPanicked { path: PathBuf },
}

/// Identity of a file (device, inode): tells "the same socket" from "a new one at the path".
pub type FileIdentity = (u64, u64);

/// The identity of the file at `path`, or `None` when there is none.
pub fn file_identity(path: &Path) -> Option<FileIdentity> {
    std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()))
}

/// How long a stopping server may take to drain its connections.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// Buffer of the in-process pipe between a relayed connection and the gRPC server.
const RELAY_BUFFER: usize = 64 * 1024;

/// A server listening on our socket. Stop it with [`RunningServer::stop`].
pub struct RunningServer {
    /// Socket path, removed on stop.
    path: PathBuf,
    /// The socket file we created, so stop never deletes a file somebody else put there.
    identity: Option<FileIdentity>,
    /// Stops the server and ends its `ListAndWatch` streams.
    stop: CancellationToken,
    /// The serving task; its result says whether the server died on its own.
    task: JoinHandle<Result<(), ServerError>>,
}

/// Binds `path` (replacing a stale socket left by an earlier run) and serves there. The
/// socket accepts connections as soon as this returns, so registering right after is safe.
pub fn start(
    path: &Path,
    resource: &str,
    inventory: watch::Receiver<Arc<Inventory>>,
) -> Result<RunningServer, ServerError> {
    match std::fs::remove_file(path) {
        Ok(()) => tracing::debug!(path = %path.display(), "removed a stale socket"),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(source) => {
            return Err(ServerError::RemoveStaleFailed {
                path: path.to_path_buf(),
                source,
            });
        }
    }
    let listener = UnixListener::bind(path).map_err(|source| ServerError::BindFailed {
        path: path.to_path_buf(),
        source,
    })?;
    let identity = file_identity(path);
    let stop = CancellationToken::new();
    let service = PluginService::new(resource.to_string(), inventory, stop.clone());
    let owned_path = path.to_path_buf();
    let shutdown = stop.clone().cancelled_owned();
    // Every connection goes through the :authority relay, so C-core clients are served too.
    let incoming = UnixListenerStream::new(listener).map(|conn| {
        conn.map(|client| {
            let (server_end, relay_end) = tokio::io::duplex(RELAY_BUFFER);
            tokio::spawn(authority::relay(client, relay_end));
            server_end
        })
    });
    let task = tokio::spawn(async move {
        tonic::transport::Server::builder()
            .add_service(DevicePluginServer::new(service))
            .serve_with_incoming_shutdown(incoming, shutdown)
            .await
            .map_err(|source| ServerError::ServeFailed {
                path: owned_path,
                source,
            })
    });
    Ok(RunningServer {
        path: path.to_path_buf(),
        identity,
        stop,
        task,
    })
}

impl RunningServer {
    /// Whether our socket file is gone or replaced since we bound it: the kubelet deletes
    /// every socket in the plugin directory when it restarts.
    pub fn socket_gone(&self) -> bool {
        self.identity.is_none() || file_identity(&self.path) != self.identity
    }

    /// Whether the serving task has ended on its own (an error, since only stop ends it).
    pub fn is_finished(&self) -> bool {
        self.task.is_finished()
    }

    /// Stops serving, waits for the server to finish, and removes our socket if it is still
    /// the one we created (the kubelet deletes it on restart; a new one may be there).
    pub async fn stop(mut self) -> Result<(), ServerError> {
        self.stop.cancel();
        // Graceful shutdown waits for the peer to close its connections; a peer that never
        // does must not keep the plugin from re-registering or exiting.
        let result = match tokio::time::timeout(STOP_GRACE, &mut self.task).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(ServerError::TaskPanicked {
                path: self.path.clone(),
            }),
            Err(_) => {
                tracing::warn!(
                    path = %self.path.display(),
                    "server did not drain in time; aborting it"
                );
                self.task.abort();
                Ok(())
            }
        };
        if !self.socket_gone()
            && let Err(e) = std::fs::remove_file(&self.path)
        {
            tracing::warn!(path = %self.path.display(), error = %e, "cannot remove our socket");
        }
        result
    }
}
