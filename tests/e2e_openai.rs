//! hal0 driven by the official `openai` Python client, with every built-in slot on a real
//! server: chat and streamed chat (llama-server + SmolLM2), embeddings (llama-server),
//! transcription (faster-whisper-server, tiny.en) and speech (fastkokoro, Kokoro-82M).

mod support;

use std::path::PathBuf;

use serde_json::Value;
use support::{Hal0, cache_path, real_llama};

#[ignore = "needs llama-server, the speech servers and the openai Python client; scripts/test.sh runs it"]
#[tokio::test]
async fn the_openai_python_client_uses_every_builtin_slot() {
    let (llama, model) = real_llama();
    let stt = cache_path("HAL0_STT_SERVER", "bin/hal0-stt-server");
    let tts = cache_path("HAL0_TTS_SERVER", "bin/hal0-tts-server");
    let wav = cache_path("HAL0_HELLO_WAV", "audio/hello-world.wav");
    let python = cache_path("HAL0_OPENAI_PYTHON", "venv/openai/bin/python");
    let body = format!(
        r#"[providers."llama.cpp"]
command = ["{llama}", "-t", "1", "-c", "1024"]
[providers.moonshine]
command = ["{stt}"]
[providers.kokoro]
command = ["{tts}"]

[slots.primary]
provider = "llama.cpp"
model = "file:{model}"

[slots.embed]
provider = "llama.cpp"
model = "file:{model}"
args = ["--pooling", "mean"]

[slots.stt]
provider = "moonshine"
model = "whisper-1"

[slots.tts]
provider = "kokoro"
model = "kokoro"
aliases = ["tts-1"]
"#,
        llama = llama.display(),
        model = model.display(),
        stt = stt.display(),
        tts = tts.display(),
    );
    let h = Hal0::start("load_timeout = \"120s\"", &body).await;
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("e2e/openai/client.py");
    let base = h.base.clone();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(python)
            .arg(script)
            .arg(base)
            .arg(wav)
            .output()
            .expect("run python")
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "the openai client failed:\n{}\nhal0 log:\n{}",
        String::from_utf8_lossy(&out.stderr),
        h.log_text()
    );
    let v: Value = serde_json::from_slice(&out.stdout).expect("JSON results");
    assert!(!v["chat"].as_str().unwrap().is_empty(), "{v}");
    assert!(v["stream_chunks"].as_u64().unwrap() > 1, "{v}");
    assert_eq!(v["embedding_count"], 2, "{v}");
    assert_eq!(v["embedding_dim"], 576, "{v}");
    let transcript = v["transcript"].as_str().unwrap().to_lowercase();
    assert!(
        transcript.contains("hello") && transcript.contains("world"),
        "{v}"
    );
    assert_eq!(v["speech_riff"], "RIFF", "{v}");
    assert!(v["speech_bytes"].as_u64().unwrap() > 10_000, "{v}");
    for slot in ["embed", "primary", "stt", "tts"] {
        assert!(
            v["models"].as_array().unwrap().iter().any(|m| m == slot),
            "{v}"
        );
    }
}
