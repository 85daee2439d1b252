//! hal0 keeps declared model-server slots running and routes OpenAI-compatible `/v1` requests
//! to them by model name.
//!
//! # Layout (one line per module: what it owns · what it may use)
//!
//! - `model`      SlotName, SlotSpec, DesiredState, Phase, SlotStatus, RoutingTable · serde, schemars
//! - `rules`      PURE: the slot rules on SlotSpec and the set of slots → typed violations; the field tables the CRD schema is generated from · model
//! - `config`     hal0.toml: parse into types, the rules' violations at line:col, merged view · model, rules
//! - `core`       PURE: plan(), lifecycle, ports, memory admission, backoff · model
//! - `providers`  per provider: argv, env, health path, model refs · model
//! - `runtime`    process supervisors: spawn, health, kill tree, logs, orphan reaping · model, providers, pull, core (events)
//! - `source`     file.rs: watch hal0.toml (notify + poll), debounce, torn-read guard · model, config
//! - `source::kube` Slots → the gateway's routing table and statuses · model, core, crd, kubernetes
//! - `controller` the loop: trigger → snapshot → plan → apply (until settled) → publish · model, core, runtime, providers, pull
//! - `gateway`    the /v1 front door: routing, turn queue, proxy, wake, limits, errors · model, config (suggest)
//! - `deviceplugin` kubelet device plugins: proto, sysfs discovery, gRPC server, registration · model
//! - `api`        the management API under /api: slots, writes through the file, events, OpenAPI · model, config, source, providers, pull
//! - `dashboard`  the web UI at /, assets embedded in the binary · api (over HTTP)
//! - `pull`       hf: model downloads: resume, checksum, atomic rename, progress · providers
//! - `cli`        `hal0 slot …` and `hal0 model …`: daemon client (HTTP), direct file edits, pulls · model, config, providers, pull
//! - `crd`        the Slot custom resource around model::SlotSpec; schema.rs: patterns + CEL from the rules · model
//! - `kubernetes` Slot → Deployment + Service (pure), the reconciler, leader election, in-cluster wake · model, crd, providers, config, gateway (SlotControl)
//! - `service`    `hal0 service install|uninstall|print`: the systemd units of deploy/systemd · config
//! - `app`        composition root for `hal0 serve` · everything
//! - `app_kube`   composition root for `hal0 controller` and `hal0 serve --source kube` · everything
#![forbid(unsafe_code)]

pub mod api;
pub mod app;
pub mod app_kube;
pub mod cli;
pub mod config;
pub mod controller;
pub mod core;
pub mod crd;
pub mod dashboard;
pub mod deviceplugin;
pub mod gateway;
pub mod kubernetes;
pub mod model;
pub mod providers;
pub mod pull;
pub mod rules;
pub mod runtime;
pub mod service;
pub mod source;
