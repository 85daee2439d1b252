//! Provider definitions: how each kind of model server is started (argv, env), how its
//! readiness is checked, and how model refs resolve to files. Shared by the process runtime and
//! (later) the Kubernetes runtime, so a pod runs exactly the argv a local process would.
//!
//! - `model_ref`  `file:`, absolute paths, `hf:org/repo/file` (under models_dir), named refs
//! - `command`    LaunchSpec → program + args + env, per provider

mod command;
mod model_ref;

pub use command::{
    Command, ProviderError, build_command, build_command_with, default_program, health_path,
};
pub use model_ref::{ModelRef, ModelRefError, expand_home};
