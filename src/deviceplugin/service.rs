//! The `DevicePlugin` gRPC service the kubelet calls on our socket.

use std::pin::Pin;
use std::sync::Arc;

use tokio::sync::{mpsc, watch};
use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};

use super::allocate;
use super::api::{self, device_plugin_server::DevicePlugin};
use super::inventory::Inventory;

/// Options we register with and report: no PreStartContainer hook (the device nodes need no
/// per-container preparation), and GetPreferredAllocation, to keep a pod on one device.
pub fn options() -> api::DevicePluginOptions {
    api::DevicePluginOptions {
        pre_start_required: false,
        get_preferred_allocation_available: true,
    }
}

/// Serves the kubelet from the current inventory.
#[derive(Clone)]
pub struct PluginService {
    /// Resource name, for error messages and logs.
    resource: String,
    /// The latest inventory, published by the health task.
    inventory: watch::Receiver<Arc<Inventory>>,
    /// Ends open `ListAndWatch` streams when this server stops: the kubelet then sees the
    /// stream close, and graceful shutdown is not held up by a stream that never ends.
    stop: CancellationToken,
}

impl PluginService {
    pub fn new(
        resource: String,
        inventory: watch::Receiver<Arc<Inventory>>,
        stop: CancellationToken,
    ) -> Self {
        PluginService {
            resource,
            inventory,
            stop,
        }
    }

    fn current(&self) -> Arc<Inventory> {
        self.inventory.borrow().clone()
    }
}

type ListStream = Pin<Box<dyn Stream<Item = Result<api::ListAndWatchResponse, Status>> + Send>>;

#[tonic::async_trait]
impl DevicePlugin for PluginService {
    async fn get_device_plugin_options(
        &self,
        _request: Request<api::Empty>,
    ) -> Result<Response<api::DevicePluginOptions>, Status> {
        Ok(Response::new(options()))
    }

    type ListAndWatchStream = ListStream;

    async fn list_and_watch(
        &self,
        _request: Request<api::Empty>,
    ) -> Result<Response<Self::ListAndWatchStream>, Status> {
        let (tx, rx) = mpsc::channel(4);
        let mut inventory = self.inventory.clone();
        let stop = self.stop.clone();
        tokio::spawn(async move {
            loop {
                // The guard is dropped at the end of this statement, before any await.
                let list = inventory.borrow_and_update().to_list_response();
                if tx.send(Ok(list)).await.is_err() {
                    return;
                }
                tokio::select! {
                    changed = inventory.changed() => if changed.is_err() { return },
                    () = stop.cancelled() => return,
                    () = tx.closed() => return,
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn get_preferred_allocation(
        &self,
        request: Request<api::PreferredAllocationRequest>,
    ) -> Result<Response<api::PreferredAllocationResponse>, Status> {
        let inventory = self.current();
        Ok(Response::new(allocate::preferred_allocation(
            &inventory,
            request.get_ref(),
        )))
    }

    async fn allocate(
        &self,
        request: Request<api::AllocateRequest>,
    ) -> Result<Response<api::AllocateResponse>, Status> {
        let inventory = self.current();
        match allocate::allocate(&inventory, &self.resource, request.get_ref()) {
            Ok(response) => {
                for (asked, given) in request
                    .get_ref()
                    .container_requests
                    .iter()
                    .zip(&response.container_responses)
                {
                    let nodes: Vec<&str> =
                        given.devices.iter().map(|d| d.host_path.as_str()).collect();
                    tracing::info!(
                        resource = %self.resource,
                        ids = ?asked.devices_ids,
                        ?nodes,
                        "allocated"
                    );
                }
                Ok(Response::new(response))
            }
            Err(e) => {
                tracing::warn!(resource = %self.resource, error = %e, "allocation refused");
                Err(e.into())
            }
        }
    }

    async fn pre_start_container(
        &self,
        _request: Request<api::PreStartContainerRequest>,
    ) -> Result<Response<api::PreStartContainerResponse>, Status> {
        Ok(Response::new(api::PreStartContainerResponse {}))
    }
}
