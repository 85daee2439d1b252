//! Starting and stopping a controller against the fake API server, and a sample Slot.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use hal0::crd::{Slot, SlotResourceSpec};
use hal0::kubernetes::ClusterConfig;
use hal0::kubernetes::controller::{Scope, run_with};
use hal0::kubernetes::reconcile::Context;
use hal0::model::{HumanDuration, ProviderKind, SlotSpec};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::runtime::events::Reporter;
use tokio::sync::oneshot;

use super::fake_api::FakeApi;

/// The bound on every wait in these tests.
pub const WAIT: Duration = Duration::from_secs(20);

pub struct Running {
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl Running {
    pub async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        let _ = tokio::time::timeout(WAIT, &mut self.task).await;
    }
}

/// Starts a controller; `offset` (seconds) shifts its clock, to make Slots idle.
pub fn start(api: &FakeApi, offset: Arc<AtomicI64>) -> Running {
    let mut ctx = Context::new(
        api.client(),
        ClusterConfig::default(),
        Reporter {
            controller: "hal0-controller".into(),
            instance: None,
        },
    );
    ctx.clock = Arc::new(move || {
        let shift = SignedDuration::from_secs(offset.load(Ordering::SeqCst));
        Timestamp::now()
            .checked_add(shift)
            .unwrap_or_else(|_| Timestamp::now())
    });
    let (tx, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(run_with(
        Arc::new(ctx),
        Scope::Namespace("ai".into()),
        async {
            let _ = rx.await;
        },
    ));
    Running {
        stop: Some(tx),
        task,
    }
}

pub fn slot(name: &str) -> Slot {
    let mut spec = SlotSpec::new(ProviderKind::LlamaCpp, Some("hf:org/repo/Small.gguf"));
    spec.idle_timeout = Some(HumanDuration::parse("10m").expect("duration"));
    Slot::new(
        name,
        SlotResourceSpec {
            slot: spec,
            replicas: None,
        },
    )
}
