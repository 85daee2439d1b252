//! A gRPC C-core client (Python's grpcio, installed by scripts/setup-grpc-client.sh) dialing
//! the plugin's socket as `unix:PATH`: it sends the %-encoded socket path as `:authority`
//! (the kubelet sends `localhost`), and the plugin must serve it all the same.

use std::process::Command;

use serde_json::Value;

use super::*;
use crate::support::cache_path;

/// Runs tests/deviceplugin_kubelet/grpc_client.py against `socket`.
async fn grpcio_client(socket: &Path, authority: Option<&str>) -> Value {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut cmd = Command::new(cache_path("HAL0_GRPC_PYTHON", "venv/grpc/bin/python"));
    cmd.arg(root.join("tests/deviceplugin_kubelet/grpc_client.py"))
        .arg(root.join("proto"))
        .arg(socket);
    if let Some(a) = authority {
        cmd.arg(a);
    }
    let out = tokio::time::timeout(
        WAIT,
        tokio::task::spawn_blocking(move || cmd.output().expect("run python")),
    )
    .await
    .expect("the grpcio client finishes in time")
    .expect("join");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "grpcio client failed ({}): {stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(stdout.trim()).expect("one JSON object")
}

#[ignore = "needs Python grpcio (scripts/setup-grpc-client.sh); scripts/test.sh runs it"]
#[tokio::test]
async fn grpcio_with_its_default_authority_is_served() {
    let h = Harness::start(DeviceKind::Npu, &fixture("strix-halo"), 1);
    h.kubelet.registrations(1).await;
    let got = grpcio_client(&h.socket, None).await;
    assert_eq!(
        got["options"],
        serde_json::json!({"pre_start_required": false, "get_preferred_allocation_available": true})
    );
    assert_eq!(
        got["devices"],
        serde_json::json!([["0000:c6:00.1", "Healthy"]])
    );
    assert_eq!(
        got["allocated"],
        serde_json::json!([["/dev/accel/accel0", "/dev/accel/accel0", "rw"]])
    );
    h.stop().await;
}

#[ignore = "needs Python grpcio (scripts/setup-grpc-client.sh); scripts/test.sh runs it"]
#[tokio::test]
async fn any_authority_a_client_sends_is_served() {
    let h = Harness::start(DeviceKind::Igpu, &fixture("strix-halo"), 2);
    h.kubelet.registrations(1).await;
    let path = h.socket.display().to_string();
    for authority in [
        "localhost",
        path.as_str(),
        "hal0 device plugin",
        "%2Frun%2Fx.sock",
    ] {
        let got = grpcio_client(&h.socket, Some(authority)).await;
        assert_eq!(
            got["devices"],
            serde_json::json!([["0000:c5:00.0-0", "Healthy"], ["0000:c5:00.0-1", "Healthy"]]),
            "authority {authority:?}"
        );
    }
    // The kubelet's own connection (authority localhost) is still served alongside.
    assert_eq!(h.kubelet.devices().await.len(), 2);
    h.stop().await;
}
