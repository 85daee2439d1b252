//! `GET /api/slots/{name}/file`: what an edit starts from is the file as it is now, with its
//! revision, even right after a hand edit that hal0 has not applied yet; the revision it gives
//! is accepted by a write, and an older one is not.

mod support;

use reqwest::StatusCode;
use serde_json::{Value, json};
use support::{Hal0, fake_provider, fake_slot};

#[tokio::test]
async fn the_file_view_follows_a_hand_edit_at_once_and_its_revision_writes() {
    let body = |idle: &str| {
        format!(
            "{}\n{}",
            fake_provider(&[]),
            fake_slot("primary", &format!("idle_timeout = \"{idle}\""))
        )
    };
    let h = Hal0::start("", &body("10m")).await;
    let get = |path: &str| h.http.get(h.url(path)).send();
    let r = get("/api/slots/primary/file").await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let before: Value = r.json().await.unwrap();
    assert_eq!(before["spec"]["idle_timeout"], "10m");

    // A hand edit (rename-save): the file view shows it with the new revision at once, whether
    // or not the watcher has applied it yet.
    h.write_body(&body("45m"));
    let now: Value = get("/api/slots/primary/file")
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(now["spec"]["idle_timeout"], "45m");
    assert_ne!(now["revision"], before["revision"]);

    // The old revision is refused, the new one is accepted.
    let patch = |rev: &Value| {
        h.http
            .patch(h.url("/api/slots/primary"))
            .json(&json!({"priority": 70, "revision": rev}))
            .send()
    };
    assert_eq!(
        patch(&before["revision"]).await.unwrap().status(),
        StatusCode::CONFLICT
    );
    assert_eq!(
        patch(&now["revision"]).await.unwrap().status(),
        StatusCode::OK
    );
    let text = std::fs::read_to_string(&h.config).unwrap();
    assert!(
        text.contains("idle_timeout = \"45m\"") && text.contains("priority = 70"),
        "{text}"
    );

    assert_eq!(
        get("/api/slots/nope/file").await.unwrap().status(),
        StatusCode::NOT_FOUND
    );
    h.write_raw("[slots.primary]\nprovider = \"llama.cpp\"\nidle_timeout = \"soon\"\n");
    let r = get("/api/slots/primary/file").await.unwrap();
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let e: Value = r.json().await.unwrap();
    assert_eq!(e["error"]["code"], "invalid_config");
    assert!(e["error"]["details"]["diagnostics"].is_array(), "{e}");
}
