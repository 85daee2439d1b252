//! The management API's bodies (`/api`), as types: the server builds them, the OpenAPI
//! document describes them (their JSON Schemas come from these very types), and the CLI
//! reads them. Pure data.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{SlotName, SlotSpec, SlotStatus};

/// A slot as the API shows it: its observed status and its declared spec.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct SlotView {
    #[serde(flatten)]
    pub status: SlotStatus,
    /// Peak memory measured while loaded, in bytes; `null` until the runtime has measured one.
    pub memory_measured: Option<u64>,
    /// The slot's `[slots.<name>]` fields as last applied.
    pub spec: Option<SlotSpec>,
}

/// `GET /api/slots` and the first event of `/api/events`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct SlotList {
    /// The config file this hal0 reads and writes (absolute path).
    pub config: String,
    /// `server.memory_budget` in bytes (`null`: no budget).
    pub memory_budget: Option<u64>,
    /// The config file's current revision: send it back with a write (`If-Match` or
    /// `revision`); `null` when the file cannot be read.
    pub revision: Option<String>,
    /// Why the file's last edit was rejected (one `FILE:LINE:COL: field: message` per line);
    /// empty when the running config is the file's.
    pub config_errors: Vec<String>,
    pub slots: Vec<SlotView>,
}

/// `GET /api/config` and `GET /api/config/errors`; the `config` event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ConfigState {
    /// The config file hal0 watches.
    pub path: String,
    /// The file's current revision (`null` when it cannot be read).
    pub revision: Option<String>,
    /// Counts the file versions hal0 has read since it started.
    pub reload: u64,
    /// Whether the last version read was applied.
    pub ok: bool,
    /// `server.memory_budget` in bytes, as applied (`null`: no budget).
    pub memory_budget: Option<u64>,
    /// The problems of the last version read, when it was rejected.
    pub errors: Vec<String>,
}

/// The answer to a create, update or delete.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct WriteResult {
    pub name: SlotName,
    /// The file's revision after the write.
    pub revision: String,
    /// The slot's fields as written (absent after a delete).
    pub spec: Option<SlotSpec>,
}

/// The body of `POST /api/slots`, `PUT` and `PATCH /api/slots/{name}`: the slot's
/// `[slots.<name>]` keys (as in hal0.toml) plus two optional extras.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct SlotWrite {
    /// The slot's name (`POST` only; `PUT`/`PATCH` take it from the path).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The revision the change is based on; the write fails with 409 when the file changed
    /// since. The `If-Match` header does the same.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<String>,
    /// Every other key is a slot field: `provider`, `model`, `idle_timeout`, `device`, …
    /// (`null` removes a key in a `PATCH`).
    #[serde(flatten)]
    pub fields: serde_json::Map<String, serde_json::Value>,
}

/// `event: slot-removed`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct SlotRemoved {
    pub name: SlotName,
}

/// `event: line` of a followed log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct LogLine {
    pub line: String,
}
