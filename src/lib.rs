//! hal0 keeps declared model-server slots running and routes OpenAI-compatible `/v1` requests
//! to them by model name.
//!
//! # Layout (one line per module: what it owns · the crate modules it may import)
//!
//! tests/architecture.rs reads this list: a `use crate::…` of a module not named after the `·`
//! fails it, and so does a module missing here.
//!
//! - `model`      SlotName, SlotSpec, DesiredState, Phase, SlotStatus, RoutingTable · nothing
//! - `rules`      PURE: the slot rules on SlotSpec and the set of slots → typed violations; the field tables the CRD schema is generated from · model
//! - `core`       PURE: plan(), lifecycle, ports, memory admission, turns, backoff, "did you mean" · model
//! - `config`     hal0.toml: parse into types, the rules' violations at line:col, merged view · model, rules, core
//! - `providers`  per provider: argv, env, health path, model refs · model
//! - `http_client` the one HTTP client construction (gateway pools, probes, pulls, CLI): pooling, TLS roots, connect timeouts; h1: the gateway's plain HTTP/1.1 upstream client · nothing
//! - `pull`       hf: model downloads: resume, checksum, atomic rename, progress · providers, http_client
//! - `runtime`    the Runtime trait + LaunchSpec; process/: command building, pull-before-start, supervisors, health, kill tree, logs, orphan reaping · model, providers, pull, core, http_client
//! - `source`     file.rs: watch hal0.toml (notify + poll), debounce, torn-read guard · model, config
//! - `controller` the loop: trigger → snapshot → plan → apply → publish → answer ensure_ready, again while it acts · model, core, runtime
//! - `gateway`    the /v1 front door: routing, turn queue, proxy, ensure_ready, limits, errors · model, core, http_client
//! - `api`        the management API under /api: slots, writes through the file, events, OpenAPI · model, rules, config, source, providers, pull
//! - `dashboard`  the web UI at /, assets embedded in the binary (talks to api over HTTP) · nothing
//! - `cli`        `hal0 slot …` and `hal0 model …`: daemon client (HTTP), direct file edits, pulls · model, config, providers, pull, http_client
//! - `deviceplugin` kubelet device plugins: proto, sysfs discovery, gRPC server, registration · model
//! - `kube`       Kubernetes, in one room: the Slot CRD, Slot → Deployment + Service, the reconciler, leader election, routes for the in-cluster gateway, wake by scale, and `hal0 crd|controller|serve --source kube` · model, rules, core, providers, gateway
//! - `service`    `hal0 service install|uninstall|print`: the systemd units of deploy/systemd · config
//! - `app`        composition root for `hal0 serve` · everything
#![forbid(unsafe_code)]

pub mod api;
pub mod app;
pub mod cli;
pub mod config;
pub mod controller;
pub mod core;
pub mod dashboard;
pub mod deviceplugin;
pub mod gateway;
pub mod http_client;
pub mod kube;
pub mod model;
pub mod providers;
pub mod pull;
pub mod rules;
pub mod runtime;
pub mod service;
pub mod source;
