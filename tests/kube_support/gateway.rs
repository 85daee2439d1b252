//! Running the in-cluster gateway (`hal0 serve --source kube`) against the fake API server.

use std::time::Duration;

use tokio::sync::oneshot;

use super::fake_api::FakeApi;

pub struct Gateway {
    pub url: String,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Gateway {
    pub async fn start(api: &FakeApi, load_timeout: Duration) -> Gateway {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(hal0::app_kube::run_gateway(
            api.client(),
            hal0::source::kube::Options {
                namespace: "ai".into(),
                port: 8080,
                endpoint_override: None,
            },
            load_timeout,
            listener,
            async {
                let _ = rx.await;
            },
        ));
        Gateway {
            url,
            stop: Some(tx),
            task,
        }
    }

    pub async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        let _ = tokio::time::timeout(super::harness::WAIT, &mut self.task).await;
    }
}
