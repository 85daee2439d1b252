//! `hal0 slot …` through the real binary: against a running hal0 (over its API) and, for
//! `add`/`remove`, straight on the file when no hal0 runs.

mod support;

use std::process::Output;
use std::time::Duration;

use support::{HAL0, Hal0, fake_model, fake_provider, fake_slot, wait_for};

const T: Duration = Duration::from_secs(20);

async fn hal0(args: &[&str]) -> Output {
    tokio::time::timeout(
        Duration::from_secs(60),
        tokio::process::Command::new(HAL0)
            .args(args)
            .env_remove("HAL0_URL")
            .env_remove("HAL0_ADMIN_TOKEN")
            .env("HAL0_LOG", "warn")
            .output(),
    )
    .await
    .expect("the CLI finished in time")
    .expect("run hal0")
}

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

fn commented_body() -> String {
    format!(
        "# providers for the tests\n{}\n# the everyday chat slot\n{}",
        fake_provider(&[]),
        fake_slot("primary", "idle_timeout = \"10m\"  # my choice")
    )
}

#[tokio::test]
async fn slot_commands_manage_a_running_hal0_without_touching_the_toml_by_hand() {
    let h = Hal0::start("", &commented_body()).await;
    let cfg = h.config.to_str().unwrap().to_string();
    let c = |args: &[&str]| {
        let mut v: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        v.extend(["--config".to_string(), cfg.clone()]);
        v
    };
    let run = |args: Vec<String>| async move {
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        hal0(&refs).await
    };

    let o = run(c(&["slot", "list"])).await;
    let (out, err) = text(&o);
    assert!(o.status.success(), "{err}");
    assert!(out.lines().next().unwrap().starts_with("NAME"), "{out}");
    assert!(out.contains("primary") && out.contains("stopped"), "{out}");

    let model = format!("file:{}", fake_model().display());
    let o = run(c(&[
        "slot",
        "add",
        "fast",
        "--provider",
        "llama.cpp",
        "--model",
        &model,
        "--idle-timeout",
        "30m",
        "--device",
        "cpu",
    ]))
    .await;
    let (out, err) = text(&o);
    assert!(o.status.success(), "{out}{err}");
    let file = std::fs::read_to_string(&h.config).unwrap();
    assert!(
        file.contains("# the everyday chat slot") && file.contains("# my choice"),
        "{file}"
    );
    assert!(
        file.contains("[slots.fast]") && file.contains("idle_timeout = \"30m\""),
        "{file}"
    );
    wait_for("fast to appear", T, || async { h.status("fast").await }).await;

    let o = run(c(&["slot", "load", "fast"])).await;
    let (out, err) = text(&o);
    assert!(o.status.success(), "{out}{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.first(), Some(&"fast: stopped"), "{out}");
    assert!(lines.contains(&"fast: loading"), "{out}");
    assert!(
        lines.last().unwrap().starts_with("fast: ready on port "),
        "{out}"
    );

    // No request yet: the last request is "never", not the load time.
    let o = run(c(&["slot", "list"])).await;
    let (out, err) = text(&o);
    assert!(o.status.success(), "{err}");
    let row = out.lines().find(|l| l.starts_with("fast ")).unwrap();
    assert!(row.contains(" ready ") && row.ends_with("never"), "{out}");
    // ... and it names the config file the running hal0 reads.
    let config_line = format!("config: {cfg} (revision ");
    assert!(out.contains(&config_line), "{out}");
    assert!(
        out.contains(&format!("read by hal0 at {}", h.base)),
        "{out}"
    );

    // edit: in place, checked against the file's revision.
    let o = run(c(&[
        "slot",
        "edit",
        "fast",
        "--set",
        "idle_timeout=45m",
        "--set",
        "priority=70",
    ]))
    .await;
    let (out, err) = text(&o);
    assert!(o.status.success(), "{out}{err}");
    assert!(
        out.contains(&format!("fast: changed in {cfg} (revision ")),
        "{out}"
    );
    let file = std::fs::read_to_string(&h.config).unwrap();
    assert!(
        file.contains("idle_timeout = \"45m\"") && file.contains("priority = 70"),
        "{file}"
    );
    assert!(file.contains("# my choice"), "comments kept: {file}");
    let o = run(c(&[
        "slot",
        "edit",
        "fast",
        "--revision",
        "0000000000000000",
        "--set",
        "priority=71",
    ]))
    .await;
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(1), "{out}{err}");
    assert!(
        err.contains("the config changed since revision 0000000000000000"),
        "{err}"
    );
    assert_eq!(
        std::fs::read_to_string(&h.config).unwrap(),
        file,
        "a stale edit writes nothing"
    );
    let o = run(c(&["slot", "edit", "fast", "--set", "idle=1m"])).await;
    let (_, err) = text(&o);
    assert!(!o.status.success());
    assert!(err.contains("\"idle\": not a slot field"), "{err}");

    let o = run(c(&["slot", "status", "fast"])).await;
    let (out, _) = text(&o);
    assert!(out.contains("state:") && out.contains("ready"), "{out}");
    assert!(out.contains(&format!("config:       {cfg}")), "{out}");
    assert!(
        out.lines()
            .any(|l| l.starts_with("pid:") && l.trim_end() != "pid:          -"),
        "{out}"
    );

    let o = run(c(&["slot", "list", "--json"])).await;
    let list: serde_json::Value = serde_json::from_slice(&o.stdout).expect("JSON");
    let fast = list["slots"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "fast")
        .unwrap();
    assert_eq!(fast["phase"], "ready");

    let o = run(c(&["slot", "logs", "fast", "--tail", "20"])).await;
    let (out, _) = text(&o);
    assert!(out.contains("fake-provider listening"), "{out}");

    // -f keeps printing: its first lines arrive while it runs.
    let mut follow = tokio::process::Command::new(HAL0)
        .args(c(&["slot", "logs", "fast", "-f", "--tail", "3"]))
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut stdout = tokio::io::BufReader::new(follow.stdout.take().unwrap());
    let mut first = String::new();
    tokio::time::timeout(
        T,
        tokio::io::AsyncBufReadExt::read_line(&mut stdout, &mut first),
    )
    .await
    .expect("a followed line")
    .unwrap();
    assert!(!first.trim().is_empty());
    follow.kill().await.unwrap();

    let o = run(c(&["slot", "unload", "fast"])).await;
    let (out, err) = text(&o);
    assert!(o.status.success(), "{out}{err}");
    assert!(out.lines().last().unwrap() == "fast: stopped", "{out}");

    let o = run(c(&["slot", "remove", "fast"])).await;
    assert!(o.status.success(), "{:?}", text(&o));
    h.wait_gone("fast", T).await;
    assert!(
        !std::fs::read_to_string(&h.config)
            .unwrap()
            .contains("[slots.fast]")
    );

    let o = run(c(&["slot", "status", "nope"])).await;
    let (_, err) = text(&o);
    assert!(!o.status.success());
    assert!(err.contains("no slot named \"nope\""), "{err}");
}

#[tokio::test]
async fn slot_load_reports_a_failed_load_and_exits_non_zero() {
    let body = format!(
        "{}{}",
        fake_provider(&["--exit-on-start", "3"]),
        fake_slot("primary", "")
    );
    let h = Hal0::start("", &body).await;
    let cfg = h.config.to_str().unwrap();
    let o = hal0(&["slot", "load", "primary", "--config", cfg]).await;
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(1), "{out}{err}");
    assert!(err.contains("primary: load failed"), "{out}{err}");
}

#[tokio::test]
async fn writes_send_the_admin_token_named_by_the_config() {
    // hal0 and the CLI both read the token from $HOME, which every test process has.
    let h = Hal0::start("admin_token_env = \"HOME\"", &commented_body()).await;
    let cfg = h.config.to_str().unwrap();
    let o = hal0(&[
        "slot",
        "unload",
        "primary",
        "--config",
        cfg,
        "--timeout",
        "20",
    ])
    .await;
    assert!(o.status.success(), "{:?}", text(&o));
    let o = hal0(&[
        "slot", "unload", "primary", "--config", cfg, "--token", "wrong",
    ])
    .await;
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(1));
    assert!(err.contains("the admin token is wrong"), "{err}");
}

#[tokio::test]
async fn add_and_remove_edit_the_file_when_hal0_is_not_running() {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let cfg = dir.path().join("hal0.toml");
    let original = format!(
        "# nothing runs here yet\n[server]\nlisten = \"127.0.0.1:{port}\"  # unused port\n"
    );
    std::fs::write(&cfg, &original).unwrap();
    let cfg_s = cfg.to_str().unwrap();

    let o = hal0(&["slot", "list", "--config", cfg_s]).await;
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        err.contains(&format!("hal0 is not running at http://127.0.0.1:{port}")),
        "{err}"
    );
    assert!(err.contains("hal0 serve"), "{err}");

    let o = hal0(&[
        "slot",
        "add",
        "chat",
        "--provider",
        "llama.cpp",
        "--model",
        "file:/m/a.gguf",
        "--config",
        cfg_s,
    ])
    .await;
    let (out, err) = text(&o);
    assert!(o.status.success(), "{out}{err}");
    assert!(out.contains("hal0 is not running"), "{out}");
    let file = std::fs::read_to_string(&cfg).unwrap();
    assert!(file.starts_with(&original), "{file}");
    assert!(
        file.contains("[slots.chat]\nprovider = \"llama.cpp\"\nmodel = \"file:/m/a.gguf\""),
        "{file}"
    );

    let o = hal0(&[
        "slot",
        "add",
        "bad",
        "--provider",
        "lama.cpp",
        "--model",
        "file:/m/a.gguf",
        "--config",
        cfg_s,
    ])
    .await;
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        err.contains("invalid value 'lama.cpp'")
            && err.contains("a similar value exists: 'llama.cpp'"),
        "{err}"
    );
    let o = hal0(&[
        "slot",
        "add",
        "bad",
        "--provider",
        "llama.cpp",
        "--model",
        "file:/m/a.gguf",
        "--set",
        "idle_timeout=soon",
        "--config",
        cfg_s,
    ])
    .await;
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        err.contains("idle_timeout") && err.contains("not a duration"),
        "{err}"
    );

    // Every field has a way in: aliases, args (even ones starting with '-'), env, --set.
    let o = hal0(&[
        "slot",
        "add",
        "tuned",
        "--provider",
        "llama.cpp",
        "--model",
        "file:/m/b.gguf",
        "--alias",
        "t1",
        "--alias",
        "t2",
        "--arg=-c",
        "--arg",
        "4096",
        "--env",
        "GGML_VK_VISIBLE_DEVICES=0",
        "--set",
        "priority=20",
        "--set",
        "pinned=true",
        "--config",
        cfg_s,
    ])
    .await;
    let (out, err) = text(&o);
    assert!(o.status.success(), "{out}{err}");
    let file = std::fs::read_to_string(&cfg).unwrap();
    let tuned = &file[file.find("[slots.tuned]").expect("tuned written")..];
    for want in [
        "aliases = [\"t1\", \"t2\"]",
        "args = [\"-c\", \"4096\"]",
        "GGML_VK_VISIBLE_DEVICES = \"0\"",
        "priority = 20",
        "pinned = true",
    ] {
        assert!(tuned.contains(want), "{want}: {tuned}");
    }
    let o = hal0(&[
        "slot",
        "edit",
        "tuned",
        "--set",
        "idle_timeout=1h",
        "--unset",
        "priority",
        "--config",
        cfg_s,
    ])
    .await;
    let (out, err) = text(&o);
    assert!(o.status.success(), "{out}{err}");
    let file = std::fs::read_to_string(&cfg).unwrap();
    assert!(
        file.contains("idle_timeout = \"1h\"") && !file.contains("priority = 20"),
        "{file}"
    );
    assert!(
        hal0(&["slot", "remove", "tuned", "--config", cfg_s])
            .await
            .status
            .success()
    );

    let o = hal0(&["slot", "remove", "chat", "--config", cfg_s]).await;
    assert!(o.status.success(), "{:?}", text(&o));
    assert_eq!(std::fs::read_to_string(&cfg).unwrap(), original);
}
