//! Registering with the kubelet: one `Registration.Register` call on `kubelet.sock`.

use std::path::Path;
use std::time::Duration;

use super::api::{self, registration_client::RegistrationClient};
use super::service;
use super::unix::{self, DialError};

/// Bound on connecting to the kubelet and on its answer. The kubelet answers at once (it dials
/// us back afterwards, on its own time).
pub const REGISTER_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum RegisterError {
    #[error(transparent)]
    DialFailed(#[from] DialError),
    #[error("the kubelet refused the registration of {resource}: {status}")]
    Refused {
        resource: String,
        #[source]
        status: tonic::Status,
    },
    #[error("the kubelet did not answer the registration of {resource} within {timeout:?}")]
    TimedOut { resource: String, timeout: Duration },
}

/// The request we send: our API version, socket name and resource, and our options.
pub fn request(socket_name: &str, resource: &str) -> api::RegisterRequest {
    api::RegisterRequest {
        version: api::VERSION.to_string(),
        endpoint: socket_name.to_string(),
        resource_name: resource.to_string(),
        options: Some(service::options()),
    }
}

/// Registers `resource`, served on `<plugin_dir>/<socket_name>`, with the kubelet listening on
/// `<plugin_dir>/kubelet.sock`.
pub async fn register(
    plugin_dir: &Path,
    socket_name: &str,
    resource: &str,
) -> Result<(), RegisterError> {
    let channel = unix::dial(&plugin_dir.join(api::KUBELET_SOCKET), REGISTER_TIMEOUT).await?;
    let mut client = RegistrationClient::new(channel);
    let call = client.register(request(socket_name, resource));
    match tokio::time::timeout(REGISTER_TIMEOUT, call).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(status)) => Err(RegisterError::Refused {
            resource: resource.to_string(),
            status,
        }),
        Err(_) => Err(RegisterError::TimedOut {
            resource: resource.to_string(),
            timeout: REGISTER_TIMEOUT,
        }),
    }
}
