//! Test support for the manifest tests: the chart renderer.

#![allow(dead_code)]

pub mod render;
