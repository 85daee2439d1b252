//! Test support for the Kubernetes tests: an in-process fake API server.

#![allow(dead_code)]

pub mod fake_api;
pub mod fake_http;
pub mod gateway;
pub mod harness;
pub mod patch;
pub mod render;
pub mod upstream;
