//! A fake kubelet: the `Registration` server on `<dir>/kubelet.sock`, speaking the protocol the
//! way the kubelet's device manager does. It checks the version and resource name, answers,
//! then dials the plugin back, reads its options and consumes `ListAndWatch`; tests call
//! `Allocate` and friends through the same connection.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hal0::deviceplugin::api::{
    self, device_plugin_client::DevicePluginClient, registration_server,
};
use hal0::deviceplugin::unix;
use tokio::net::UnixListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_stream::wrappers::UnixListenerStream;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;
use tonic::{Request, Response, Status};

/// Bound on every wait in these tests: generous for a loaded CI machine, finite.
pub const WAIT: Duration = Duration::from_secs(20);

/// What the fake kubelet has seen, shared between its server and the test.
#[derive(Default)]
struct Seen {
    /// Every accepted registration, in order; a kubelet restart shows as one more.
    registrations: watch::Sender<Vec<api::RegisterRequest>>,
    /// Every refused registration, with the error the plugin got.
    refusals: watch::Sender<Vec<String>>,
    /// Options read back from the plugin after the latest registration.
    options: watch::Sender<Option<api::DevicePluginOptions>>,
    /// The latest ListAndWatch list from the plugin (from the latest dial-back).
    devices: watch::Sender<Option<Vec<api::Device>>>,
    /// A client on the plugin's socket, from the latest dial-back.
    client: Mutex<Option<DevicePluginClient<Channel>>>,
}

#[derive(Clone)]
struct Registration {
    dir: PathBuf,
    resource: String,
    seen: Arc<Seen>,
}

#[tonic::async_trait]
impl registration_server::Registration for Registration {
    async fn register(
        &self,
        request: Request<api::RegisterRequest>,
    ) -> Result<Response<api::Empty>, Status> {
        let r = request.into_inner();
        let refuse = |msg: String| {
            self.seen.refusals.send_modify(|v| v.push(msg.clone()));
            Err(Status::invalid_argument(msg))
        };
        if r.version != api::VERSION {
            return refuse(format!(
                "Requested device plugin version {:?} is not supported; supported: [v1beta1]",
                r.version
            ));
        }
        if r.resource_name != self.resource {
            return refuse(format!("unexpected resource name {:?}", r.resource_name));
        }
        if r.endpoint.is_empty() || r.endpoint.contains('/') {
            return refuse(format!("endpoint {:?} is not a file name", r.endpoint));
        }
        let mut count = 0;
        self.seen.registrations.send_modify(|v| {
            v.push(r.clone());
            count = v.len();
        });
        // Like the kubelet: answer first, then connect to the plugin on its own time.
        let seen = Arc::clone(&self.seen);
        let socket = self.dir.join(&r.endpoint);
        tokio::spawn(async move { dial_back(seen, socket, count).await });
        Ok(Response::new(api::Empty {}))
    }
}

/// Connects to the plugin that made registration number `count`; only the latest
/// registration's connection updates what the test sees.
async fn dial_back(seen: Arc<Seen>, socket: PathBuf, count: usize) {
    let latest = || seen.registrations.borrow().len() == count;
    let Ok(channel) = unix::dial(&socket, WAIT).await else {
        return;
    };
    let mut client = DevicePluginClient::new(channel);
    let Ok(options) = client.get_device_plugin_options(api::Empty {}).await else {
        return;
    };
    if !latest() {
        return;
    }
    if let Ok(mut guard) = seen.client.lock() {
        *guard = Some(client.clone());
    }
    seen.options.send_replace(Some(options.into_inner()));
    let Ok(stream) = client.list_and_watch(api::Empty {}).await else {
        return;
    };
    let mut stream = stream.into_inner();
    while let Ok(Some(list)) = stream.message().await {
        if !latest() {
            return;
        }
        seen.devices.send_replace(Some(list.devices));
    }
}

/// The fake kubelet. Dropping it stops its server.
pub struct FakeKubelet {
    dir: PathBuf,
    resource: String,
    seen: Arc<Seen>,
    stop: CancellationToken,
    task: Option<JoinHandle<()>>,
}

impl FakeKubelet {
    /// Serves `Registration` on `<dir>/kubelet.sock`, accepting only `resource`.
    pub fn start(dir: &Path, resource: &str) -> FakeKubelet {
        let mut kubelet = FakeKubelet {
            dir: dir.to_path_buf(),
            resource: resource.to_string(),
            seen: Arc::new(Seen::default()),
            stop: CancellationToken::new(),
            task: None,
        };
        kubelet.serve();
        kubelet
    }

    fn serve(&mut self) {
        let path = self.dir.join(api::KUBELET_SOCKET);
        let listener = UnixListener::bind(&path).expect("bind kubelet.sock");
        let service = Registration {
            dir: self.dir.clone(),
            resource: self.resource.clone(),
            seen: Arc::clone(&self.seen),
        };
        self.stop = CancellationToken::new();
        let shutdown = self.stop.clone().cancelled_owned();
        self.task = Some(tokio::spawn(async move {
            let _ = tonic::transport::Server::builder()
                .add_service(registration_server::RegistrationServer::new(service))
                .serve_with_incoming_shutdown(UnixListenerStream::new(listener), shutdown)
                .await;
        }));
    }

    /// What a kubelet restart does to the plugin directory: the old kubelet goes away, the new
    /// one deletes every socket there (ours included) and listens on a new `kubelet.sock`.
    pub async fn restart(&mut self) {
        self.stop.cancel();
        if let Some(task) = self.task.take() {
            let _ = tokio::time::timeout(WAIT, task).await;
        }
        self.seen.devices.send_replace(None);
        self.seen.options.send_replace(None);
        if let Ok(mut client) = self.seen.client.lock() {
            *client = None;
        }
        for entry in std::fs::read_dir(&self.dir).expect("read plugin dir") {
            let path = entry.expect("entry").path();
            // The plugin may remove its own socket meanwhile; that is fine.
            match std::fs::remove_file(&path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    panic!("remove {path:?}: {e}")
                }
                _ => {}
            }
        }
        self.serve();
    }

    /// Waits until at least `n` registrations were accepted; returns them all.
    pub async fn registrations(&self, n: usize) -> Vec<api::RegisterRequest> {
        wait_for(&self.seen.registrations, |v| v.len() >= n).await
    }

    /// Waits until at least `n` registrations were refused; returns the errors.
    pub async fn refusals(&self, n: usize) -> Vec<String> {
        wait_for(&self.seen.refusals, |v| v.len() >= n).await
    }

    /// The options read from the plugin after it registered.
    pub async fn options(&self) -> api::DevicePluginOptions {
        wait_for(&self.seen.options, Option::is_some)
            .await
            .unwrap_or_default()
    }

    /// Waits until the plugin's latest ListAndWatch list satisfies `pred`; returns it.
    pub async fn devices_where(&self, pred: impl Fn(&[api::Device]) -> bool) -> Vec<api::Device> {
        wait_for(&self.seen.devices, |d| d.as_deref().is_some_and(&pred))
            .await
            .unwrap_or_default()
    }

    /// The first ListAndWatch list after the (latest) registration.
    pub async fn devices(&self) -> Vec<api::Device> {
        self.devices_where(|_| true).await
    }

    /// A client on the plugin's socket, as the kubelet holds it.
    pub async fn plugin(&self) -> DevicePluginClient<Channel> {
        self.options().await;
        self.seen
            .client
            .lock()
            .ok()
            .and_then(|c| c.clone())
            .expect("the kubelet dialed the plugin back")
    }
}

impl Drop for FakeKubelet {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// Waits, at most [`WAIT`], until the watched value satisfies `pred`, and returns a copy.
pub async fn wait_for<T: Clone + std::fmt::Debug>(
    tx: &watch::Sender<T>,
    pred: impl Fn(&T) -> bool,
) -> T {
    let mut rx = tx.subscribe();
    match tokio::time::timeout(WAIT, rx.wait_for(|v| pred(v))).await {
        Ok(Ok(v)) => v.clone(),
        _ => panic!(
            "condition not met within {WAIT:?}; last value: {:?}",
            *tx.borrow()
        ),
    }
}
