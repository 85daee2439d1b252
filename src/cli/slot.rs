//! `hal0 slot list|status|load|unload|add|edit|remove|logs`.

use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use http::Method;
use serde_json::{Map, Value, json};

use super::client::{ClientError, Daemon};
use super::fields;
use super::{SlotArgs, SlotCommand, load_config, url_of_listen};
use crate::config::Located;
use crate::config::store::{ConfigStore, Revision, SlotChange};
use crate::model::Phase;
use crate::model::wire::{ConfigState, LogLine, SlotList, SlotRemoved, SlotView, WriteResult};

pub async fn run(args: SlotArgs) -> anyhow::Result<ExitCode> {
    let located = crate::config::locate(args.target.config.clone());
    let config = load_config(&located.path);
    let base = args.target.url.clone().unwrap_or_else(|| {
        url_of_listen(
            config
                .as_ref()
                .map_or("127.0.0.1:8080", |c| c.server.listen.as_str()),
        )
    });
    let token = args.target.token.clone().or_else(|| {
        let var = config.as_ref()?.server.admin_token_env.clone()?;
        std::env::var(var).ok().filter(|t| !t.is_empty())
    });
    let d = Daemon::new(&base, token);
    let result = match args.command {
        SlotCommand::List { json } => list(&d, json).await,
        SlotCommand::Status { name, json } => status(&d, &name, json).await,
        SlotCommand::Load { name, timeout } => load(&d, &name, Duration::from_secs(timeout)).await,
        SlotCommand::Unload { name, timeout } => {
            unload(&d, &name, Duration::from_secs(timeout)).await
        }
        SlotCommand::Add {
            name,
            provider,
            model,
            upstream,
            idle_timeout,
            device,
            args,
            env,
            aliases,
            set,
        } => {
            let mut f = Map::new();
            f.insert("provider".into(), json!(provider));
            let optional = [
                ("model", model),
                ("upstream", upstream),
                ("idle_timeout", idle_timeout),
                ("device", device),
            ];
            for (key, value) in optional {
                if let Some(v) = value {
                    f.insert(key.into(), json!(v));
                }
            }
            if !args.is_empty() {
                f.insert("args".into(), json!(args));
            }
            if !env.is_empty() {
                f.insert("env".into(), Value::Object(fields::env_table(&env)?));
            }
            if !aliases.is_empty() {
                f.insert("aliases".into(), json!(aliases));
            }
            fields::apply_sets(&mut f, &set)?;
            let change = SlotChange::Create { fields: f };
            edit(&d, &located, &name, change, None).await
        }
        SlotCommand::Edit {
            name,
            set,
            unset,
            revision,
        } => {
            let mut f = Map::new();
            fields::apply_sets(&mut f, &set)?;
            fields::apply_unsets(&mut f, &unset)?;
            if f.is_empty() {
                bail!("nothing to change: give --set KEY=VALUE or --unset KEY");
            }
            let change = SlotChange::Merge { fields: f };
            edit(&d, &located, &name, change, revision.map(Revision)).await
        }
        SlotCommand::Remove { name } => edit(&d, &located, &name, SlotChange::Delete, None).await,
        SlotCommand::Logs { name, follow, tail } => logs(&d, &name, follow, tail).await,
    };
    match result {
        Ok(code) => Ok(code),
        Err(e) => match e.downcast::<ClientError>() {
            Ok(ClientError::Unreachable { url, reason }) => {
                eprintln!(
                    "hal0: hal0 is not running at {url} ({reason}).\n      Start it with `hal0 serve`, or point --url or HAL0_URL at it."
                );
                Ok(ExitCode::from(2))
            }
            Ok(ClientError::Api {
                message, details, ..
            }) => {
                eprintln!("hal0: {message}");
                print_diagnostics(&details);
                Ok(ExitCode::FAILURE)
            }
            Ok(other) => Err(other.into()),
            Err(e) => Err(e),
        },
    }
}

fn print_diagnostics(details: &Value) {
    for d in details["diagnostics"].as_array().into_iter().flatten() {
        let field = d["field"].as_str().unwrap_or_default();
        let message = d["message"].as_str().unwrap_or_default();
        eprintln!("  {field}: {message}");
    }
}

fn slot_path(name: &str) -> String {
    format!("/api/slots/{name}")
}

/// An optional value as a table cell: `-` when absent.
fn cell<T: std::fmt::Display>(v: Option<T>) -> String {
    v.map_or_else(|| "-".to_string(), |v| v.to_string())
}

/// A response body as the API type it is documented to be.
fn typed<T: serde::de::DeserializeOwned>(v: Value, what: &str) -> anyhow::Result<T> {
    serde_json::from_value(v).with_context(|| {
        format!("hal0 answered {what} with a body this CLI cannot read (a different hal0 version?)")
    })
}

/// 1.5 GiB, 300 MiB.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut i = 0;
    while v >= 1024.0 && i < UNITS.len() - 1 {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[i])
    }
}

fn ago(unix_ms: Option<u64>) -> String {
    let Some(ms) = unix_ms else {
        return "never".into();
    };
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let secs = now.saturating_sub(ms) / 1000;
    match secs {
        0..60 => format!("{secs}s ago"),
        60..3600 => format!("{}m ago", secs / 60),
        3600..86400 => format!("{}h ago", secs / 3600),
        _ => format!("{}d ago", secs / 86400),
    }
}

fn memory(v: &SlotView) -> String {
    match (v.memory_measured, v.status.memory_estimate) {
        (Some(m), _) => human_bytes(m),
        (None, Some(e)) => format!("~{}", human_bytes(e)),
        _ => "-".into(),
    }
}

async fn list(d: &Daemon, json: bool) -> anyhow::Result<ExitCode> {
    let raw = d.get("/api/slots").await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&raw)?);
        return Ok(ExitCode::SUCCESS);
    }
    let list: SlotList = typed(raw, "GET /api/slots")?;
    let mut rows = vec![
        [
            "NAME",
            "STATE",
            "PROVIDER",
            "MODEL",
            "PORT",
            "PID",
            "MEMORY",
            "LAST REQUEST",
        ]
        .map(String::from),
    ];
    for v in &list.slots {
        let st = &v.status;
        let upstream = v.spec.as_ref().and_then(|s| s.upstream.as_deref());
        rows.push([
            st.name.to_string(),
            st.phase.to_string(),
            st.provider.to_string(),
            cell(st.model.as_deref().or(upstream)),
            cell(st.port),
            cell(st.pid),
            memory(v),
            ago(st.last_request_unix_ms),
        ]);
    }
    let widths: Vec<usize> = (0..8)
        .map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0))
        .collect();
    for r in &rows {
        let line: Vec<String> = r
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:w$}"))
            .collect();
        println!("{}", line.join("  ").trim_end());
    }
    if rows.len() == 1 {
        println!("(no slots declared)");
    }
    println!(
        "\nconfig: {} (revision {}), read by hal0 at {}",
        list.config,
        list.revision.as_deref().unwrap_or("?"),
        d.base
    );
    for e in &list.config_errors {
        eprintln!("hal0: config not applied: {e}");
    }
    Ok(ExitCode::SUCCESS)
}

async fn status(d: &Daemon, name: &str, json: bool) -> anyhow::Result<ExitCode> {
    let raw = d.get(&slot_path(name)).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&raw)?);
        return Ok(ExitCode::SUCCESS);
    }
    let v: SlotView = typed(raw, &format!("GET {}", slot_path(name)))?;
    let st = &v.status;
    let lines = [
        ("name", st.name.to_string()),
        ("state", st.phase.to_string()),
        ("provider", st.provider.to_string()),
        ("role", st.role.to_string()),
        ("model", cell(st.model.as_deref())),
        ("port", cell(st.port)),
        ("pid", cell(st.pid)),
        ("memory", memory(&v)),
        ("in flight", st.in_flight.to_string()),
        ("last request", ago(st.last_request_unix_ms)),
        ("restarts", st.restarts.to_string()),
        (
            "last load",
            cell(
                st.last_load_ms
                    .map(|ms| format!("{:.1}s", ms as f64 / 1000.0)),
            ),
        ),
        ("last error", cell(st.last_error.as_deref())),
    ];
    for (k, val) in lines {
        println!("{:13} {val}", format!("{k}:"));
    }
    if let Ok(c) = d.get("/api/config").await
        && let Ok(c) = serde_json::from_value::<ConfigState>(c)
    {
        println!("{:13} {}", "config:", c.path);
    }
    Ok(ExitCode::SUCCESS)
}

/// The slot's view from an event, if the event is about `name`.
fn slot_event(ev: &super::sse::SseEvent, name: &str) -> Option<SlotView> {
    match ev.event.as_str() {
        "snapshot" => serde_json::from_str::<SlotList>(&ev.data)
            .ok()?
            .slots
            .into_iter()
            .find(|v| v.status.name.as_str() == name),
        "slot" => serde_json::from_str::<SlotView>(&ev.data)
            .ok()
            .filter(|v| v.status.name.as_str() == name),
        _ => None,
    }
}

/// Whether the event says `name` was removed from the config.
fn removed(ev: &super::sse::SseEvent, name: &str) -> bool {
    ev.event == "slot-removed"
        && serde_json::from_str::<SlotRemoved>(&ev.data).is_ok_and(|r| r.name.as_str() == name)
}

async fn load(d: &Daemon, name: &str, timeout: Duration) -> anyhow::Result<ExitCode> {
    // Subscribe first, so no state change between the request and the stream is missed.
    let mut events = d.events("/api/events").await?;
    let first = events
        .next()
        .await
        .context("hal0 closed the event stream")?;
    let Some(before) = slot_event(&first, name) else {
        bail!(ClientError::Api {
            status: http::StatusCode::NOT_FOUND,
            code: "slot_not_found".into(),
            message: format!("no slot named {name:?}"),
            details: Value::Null,
        });
    };
    let failures = before.status.load_failures;
    d.json(Method::POST, &format!("{}/load", slot_path(name)), None)
        .await?;
    let started = Instant::now();
    let mut phase = before.status.phase;
    println!("{name}: {phase}");
    let mut current = before;
    loop {
        if matches!(phase, Phase::Ready | Phase::Idle) {
            println!(
                "{name}: ready on port {} ({:.1}s)",
                cell(current.status.port),
                started.elapsed().as_secs_f64()
            );
            return Ok(ExitCode::SUCCESS);
        }
        if current.status.load_failures > failures {
            eprintln!(
                "{name}: load failed: {}",
                cell(current.status.last_error.as_deref())
            );
            return Ok(ExitCode::FAILURE);
        }
        let remaining = timeout.saturating_sub(started.elapsed());
        let ev = match tokio::time::timeout(remaining, events.next()).await {
            Ok(Some(ev)) => ev,
            Ok(None) => bail!("hal0 closed the event stream (is it shutting down?)"),
            Err(_) => {
                eprintln!(
                    "{name}: still {phase} after {}s; the load goes on (see `hal0 slot status {name}`)",
                    timeout.as_secs()
                );
                return Ok(ExitCode::FAILURE);
            }
        };
        if removed(&ev, name) {
            eprintln!("{name}: the slot was removed from the config");
            return Ok(ExitCode::FAILURE);
        }
        if let Some(v) = slot_event(&ev, name) {
            let next = v.status.phase;
            if next != phase {
                println!("{name}: {next}");
                phase = next;
            }
            current = v;
        }
    }
}

async fn unload(d: &Daemon, name: &str, timeout: Duration) -> anyhow::Result<ExitCode> {
    let mut events = d.events("/api/events").await?;
    d.json(Method::POST, &format!("{}/unload", slot_path(name)), None)
        .await?;
    let deadline = Instant::now() + timeout;
    let mut phase: Option<Phase> = None;
    loop {
        let remaining = deadline.saturating_duration_since(Instant::now());
        let Ok(Some(ev)) = tokio::time::timeout(remaining, events.next()).await else {
            eprintln!("{name}: still {} after {}s", cell(phase), timeout.as_secs());
            return Ok(ExitCode::FAILURE);
        };
        if let Some(v) = slot_event(&ev, name) {
            let next = v.status.phase;
            if Some(next) != phase {
                println!("{name}: {next}");
                phase = Some(next);
            }
            if matches!(next, Phase::Stopped | Phase::Failed | Phase::CrashLoop) {
                return Ok(ExitCode::SUCCESS);
            }
        }
    }
}

/// A file edit: through hal0's API when it runs, else straight to the file. Either way the
/// change is checked against a revision: `expected` when given, else the one read just before.
async fn edit(
    d: &Daemon,
    config: &Located,
    name: &str,
    change: SlotChange,
    expected: Option<Revision>,
) -> anyhow::Result<ExitCode> {
    let verb = match change {
        SlotChange::Create { .. } => "added",
        SlotChange::Delete => "removed",
        SlotChange::Replace { .. } | SlotChange::Merge { .. } => "changed",
    };
    let via_api = async {
        // The revision goes with the change: a write based on an older file is refused (409).
        let revision = match &expected {
            Some(r) => r.0.clone(),
            None => serde_json::from_value::<SlotList>(d.get("/api/slots").await?)
                .ok()
                .and_then(|l| l.revision)
                .unwrap_or_default(),
        };
        let with_revision = |fields: &Map<String, Value>| {
            let mut body = fields.clone();
            if !revision.is_empty() {
                body.insert("revision".into(), json!(revision));
            }
            Value::Object(body)
        };
        match &change {
            SlotChange::Create { fields } => {
                let mut body = with_revision(fields);
                body["name"] = json!(name);
                d.json(Method::POST, "/api/slots", Some(&body)).await
            }
            SlotChange::Merge { fields } | SlotChange::Replace { fields } => {
                let method = if matches!(change, SlotChange::Merge { .. }) {
                    Method::PATCH
                } else {
                    Method::PUT
                };
                d.json(method, &slot_path(name), Some(&with_revision(fields)))
                    .await
            }
            SlotChange::Delete => {
                let path = if revision.is_empty() {
                    slot_path(name)
                } else {
                    format!("{}?revision={revision}", slot_path(name))
                };
                d.json(Method::DELETE, &path, None).await
            }
        }
    };
    match via_api.await {
        Ok(v) => {
            let file = d
                .get("/api/config")
                .await
                .ok()
                .and_then(|c| serde_json::from_value::<ConfigState>(c).ok())
                .map_or_else(|| "its config".into(), |c| c.path);
            let revision = serde_json::from_value::<WriteResult>(v)
                .map_or_else(|_| "?".to_string(), |w| w.revision);
            println!("{name}: {verb} in {file} (revision {revision}); hal0 applies it now");
            Ok(ExitCode::SUCCESS)
        }
        Err(ClientError::Api { status, .. }) if status == http::StatusCode::CONFLICT => {
            eprintln!(
                "hal0: not written: the config changed since revision {} was read (someone else edited it).\n      Look at `hal0 slot status {name}` and run the command again.",
                expected.map_or_else(|| "-".to_string(), |r| r.0)
            );
            Ok(ExitCode::FAILURE)
        }
        Err(ClientError::Unreachable { .. }) => {
            let store = ConfigStore::new(&config.path);
            match store.apply(name, &change, expected.as_ref()) {
                Ok(w) => {
                    println!(
                        "{name}: {verb} in {config} (revision {}); hal0 is not running, it applies it when it starts",
                        w.revision
                    );
                    Ok(ExitCode::SUCCESS)
                }
                Err(crate::config::store::StoreError::Invalid(errors)) => {
                    eprintln!("hal0: not written, the change would make {config} invalid:");
                    for diag in errors.iter() {
                        eprintln!("  {}: {}", diag.field, diag.message);
                    }
                    Ok(ExitCode::FAILURE)
                }
                Err(crate::config::store::StoreError::ReadFailed { .. })
                    if !config.path.exists() =>
                {
                    eprintln!("hal0: {}", crate::config::cli::missing_hint(config));
                    Ok(ExitCode::FAILURE)
                }
                Err(e) => {
                    eprintln!("hal0: {e}");
                    Ok(ExitCode::FAILURE)
                }
            }
        }
        Err(e) => Err(e.into()),
    }
}

async fn logs(d: &Daemon, name: &str, follow: bool, tail: usize) -> anyhow::Result<ExitCode> {
    let path = format!("{}/logs?tail={tail}", slot_path(name));
    if !follow {
        let lines = d.get(&path).await?;
        for l in lines.as_array().into_iter().flatten() {
            println!("{}", l.as_str().unwrap_or_default());
        }
        return Ok(ExitCode::SUCCESS);
    }
    // Fail early with a clear message for an unknown slot.
    d.get(&slot_path(name)).await?;
    let mut events = d.events(&format!("{path}&follow=true")).await?;
    while let Some(ev) = events.next().await {
        if ev.event == "line" {
            match serde_json::from_str::<LogLine>(&ev.data) {
                Ok(l) => println!("{}", l.line),
                Err(_) => println!("{}", ev.data),
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
