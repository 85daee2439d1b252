//! Domain types shared by every part of hal0: what a slot is, what the server settings are, what
//! state a slot is in, and how requests are routed. Pure data: no I/O, no async, no logging.

mod bytesize;
mod desired;
mod device;
mod duration;
mod launch;
mod load_error;
mod probe;
mod provider;
mod routing;
mod server;
mod slot_name;
mod spec;
mod status;
pub mod wire;

pub use bytesize::{BYTESIZE_PATTERN, ByteSize, ByteSizeError};
pub use desired::{DesiredState, ProviderOverride};
pub use device::Device;
pub use duration::{DurationError, HumanDuration};
pub use launch::LaunchSpec;
pub use load_error::LoadError;
pub use probe::{AnswerProbe, DEFAULT_PROBE_EXPECT, DEFAULT_PROBE_PROMPT};
pub use provider::{ProviderKind, Role, UpstreamAuth};
pub use routing::{Resolution, Route, RoutingTable, Target};
pub use server::{DEFAULT_MAX_WAIT_SECS, ServerSettings};
pub use slot_name::{BUILTIN_SLOTS, MAX_NAME_LEN, NAME_PATTERN, NameError, SlotName};
pub use spec::{
    DEFAULT_IDLE_TIMEOUT_SECS, DEFAULT_MIN_RESIDENCY_SECS, DEFAULT_PRIORITY, SlotSpec, model_id_of,
};
pub use status::{LOAD_TIMED_OUT, Phase, PullProgress, SlotStatus};
