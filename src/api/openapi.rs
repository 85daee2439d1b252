//! `GET /api/openapi.json`: an OpenAPI 3.1 document of the management API. The schemas come from
//! the Rust types the handlers use (through `schemars`, whose JSON Schema 2020-12 is OpenAPI
//! 3.1's schema dialect), so a changed type changes the document; the operations are listed
//! here beside the router, and a test calls every one of them on the real binary.

use axum::Json;
use schemars::JsonSchema;
use schemars::generate::{SchemaGenerator, SchemaSettings};
use serde_json::{Value, json};

use super::views::{ConfigState, LogLine, SlotList, SlotRemoved, SlotView, SlotWrite, WriteResult};

pub async fn document() -> Json<Value> {
    Json(openapi())
}

/// The schema of an error answer.
fn error_schema() -> Value {
    json!({
        "type": "object",
        "required": ["error"],
        "properties": {"error": {
            "type": "object",
            "required": ["code", "message"],
            "properties": {
                "code": {"type": "string", "description": "Stable machine-readable code, e.g. slot_not_found, stale_revision, invalid_config."},
                "message": {"type": "string"},
                "details": {"description": "Extras: `diagnostics` (config errors with line and column) or the current `revision`."}
            }
        }}
    })
}

struct Schemas(SchemaGenerator);

impl Schemas {
    fn of<T: JsonSchema>(&mut self) -> Value {
        self.0.subschema_for::<T>().to_value()
    }
}

fn json_body(schema: Value) -> Value {
    json!({"content": {"application/json": {"schema": schema}}})
}

fn ok(description: &str, schema: Value) -> Value {
    let mut r = json_body(schema);
    r["description"] = json!(description);
    r
}

fn err(description: &str) -> Value {
    ok(description, json!({"$ref": "#/components/schemas/Error"}))
}

fn sse(description: &str) -> Value {
    json!({"description": description, "content": {"text/event-stream": {"schema": {"type": "string"}}}})
}

/// The whole document.
pub fn openapi() -> Value {
    let mut s = Schemas(
        SchemaSettings::draft2020_12()
            .with(|c| c.definitions_path = "/components/schemas/".into())
            .for_serialize()
            .into_generator(),
    );
    let name = json!({"name": "name", "in": "path", "required": true, "description": "Slot name.",
        "schema": {"type": "string", "pattern": "^[a-z][a-z0-9_-]*$", "minLength": 1, "maxLength": 50}});
    let if_match = json!({"name": "If-Match", "in": "header", "required": false, "description": "The revision the change is based on (from GET /api/slots); 409 when the file changed since.", "schema": {"type": "string"}});
    let slot_view = s.of::<SlotView>();
    let write_result = s.of::<WriteResult>();
    let slot_write = s.of::<SlotWrite>();
    // Every operation: a `Host` hal0 is not served under is refused.
    let read = |mut responses: Value| {
        responses["403"] = err("The Host header is not one of hal0's names (host_not_allowed)");
        responses
    };
    // Every write also: the admin token, the body's type, the origin.
    let write = |mut responses: Value| {
        for (code, text) in [
            ("400", "Bad JSON, a bad slot name or a bad field value"),
            ("401", "The admin token is missing or wrong"),
            (
                "403",
                "Not allowed from here: the Host is not one of hal0's names, another web origin, or no admin token configured beyond loopback",
            ),
            ("413", "The body is larger than the API accepts"),
            (
                "415",
                "The body is not JSON (Content-Type: application/json)",
            ),
        ] {
            responses[code] = err(text);
        }
        responses
    };
    // Writes that edit the file also.
    let edit = |responses: Value| {
        let mut responses = write(responses);
        for (code, text) in [
            (
                "409",
                "The file changed since the given revision (stale_revision), or the slot exists",
            ),
            (
                "422",
                "The change would make the config invalid (details.diagnostics)",
            ),
            ("500", "The config file cannot be read or written"),
        ] {
            responses[code] = err(text);
        }
        responses
    };
    let paths = json!({
        "/api/slots": {
            "get": {"operationId": "listSlots", "summary": "Every slot with its state, port, pid, provider, model, memory, last request, restarts and last error; the file's revision and config errors",
                "responses": read(json!({"200": ok("The slots", s.of::<SlotList>())}))},
            "post": {"operationId": "createSlot", "summary": "Add a slot: writes a [slots.<name>] table to hal0.toml (validated, atomic, comments kept); live when the answer comes",
                "parameters": [if_match.clone()],
                "requestBody": {"required": true, "content": {"application/json": {"schema": slot_write.clone(), "example": {"name": "fast", "provider": "llama.cpp", "model": "hf:org/repo/model.gguf", "idle_timeout": "30m", "device": "igpu"}}}},
                "responses": edit(json!({"201": ok("Written and applied", write_result.clone())}))}
        },
        "/api/slots/{name}": {
            "parameters": [name.clone()],
            "get": {"operationId": "getSlot", "summary": "One slot",
                "responses": read(json!({"200": ok("The slot", slot_view.clone()), "400": err("Not a slot name"), "404": err("No such slot")}))},
            "put": {"operationId": "replaceSlot", "summary": "Replace a slot's fields (keys left out are removed; kept keys keep their comments)",
                "parameters": [if_match.clone()],
                "requestBody": {"required": true, "content": {"application/json": {"schema": slot_write.clone()}}},
                "responses": edit(json!({"200": ok("Written and applied", write_result.clone()), "404": err("No such slot in the file")}))},
            "patch": {"operationId": "updateSlot", "summary": "Change some of a slot's fields (null removes a key)",
                "parameters": [if_match.clone()],
                "requestBody": {"required": true, "content": {"application/json": {"schema": slot_write}}},
                "responses": edit(json!({"200": ok("Written and applied", write_result.clone()), "404": err("No such slot in the file")}))},
            "delete": {"operationId": "deleteSlot", "summary": "Remove a slot's table from hal0.toml (a running slot is stopped)",
                "parameters": [if_match, {"name": "revision", "in": "query", "required": false, "schema": {"type": "string"}}],
                "responses": edit(json!({"200": ok("Written and applied", write_result.clone()), "404": err("No such slot in the file")}))}
        },
        "/api/slots/{name}/load": {"parameters": [name.clone()], "post": {"operationId": "loadSlot",
            "summary": "Load the slot (also lifts a crash-loop); answers at once, follow /api/events",
            "responses": write(json!({"202": ok("Load requested; the status before it", slot_view.clone()), "404": err("No such slot")}))}},
        "/api/slots/{name}/unload": {"parameters": [name.clone()], "post": {"operationId": "unloadSlot",
            "summary": "Unload the slot (waits for requests in flight)",
            "responses": write(json!({"202": ok("Unload requested; the status before it", slot_view), "404": err("No such slot")}))}},
        "/api/slots/{name}/logs": {"parameters": [name,
                {"name": "tail", "in": "query", "required": false, "description": "How many of the last lines (default 200, at most 2000)", "schema": {"type": "integer", "minimum": 0, "maximum": 4294967295u64}},
                {"name": "follow", "in": "query", "required": false, "description": "Stream: the last lines, then each new one as `event: line` (also with Accept: text/event-stream)", "schema": {"type": "boolean"}}],
            "get": {"operationId": "slotLogs", "summary": "The provider's output",
                "responses": read(json!({"200": {"description": "The last lines, oldest first; or an event stream of `line` events",
                    "content": {"application/json": {"schema": {"type": "array", "items": {"type": "string"}}},
                                "text/event-stream": {"schema": s.of::<LogLine>()}}},
                    "400": err("A bad tail or follow value, or not a slot name"),
                    "404": err("No such slot")}))}},
        "/api/events": {"get": {"operationId": "events",
            "summary": "Server-sent events: `snapshot` (SlotList) first, then `slot` (SlotView), `slot-removed` (SlotRemoved) and `config` (ConfigState, also for rejected edits)",
            "responses": read(json!({"200": sse("The event stream")}))}},
        "/api/config": {"get": {"operationId": "configState", "summary": "The config file's path, revision and last reload outcome",
            "responses": read(json!({"200": ok("The config state", s.of::<ConfigState>())}))}},
        "/api/config/errors": {"get": {"operationId": "configErrors", "summary": "Why the file's last edit was rejected (empty errors when it was applied)",
            "responses": read(json!({"200": ok("The config state", s.of::<ConfigState>())}))}},
        "/api/slots/{name}/file": {"parameters": [name.clone()], "get": {"operationId": "slotInFile",
            "summary": "The slot's fields as the config file has them now, with the file's revision: what an edit should start from (the applied spec of GET /api/slots may lag a hand edit)",
            "responses": read(json!({"200": ok("The slot as written in the file (env values redacted)", write_result.clone()), "400": err("Not a slot name"), "404": err("No such slot in the file"), "422": err("The file has errors (details.diagnostics)"), "500": err("The config file cannot be read")}))}},
        "/api/rules": {"get": {"operationId": "rules", "summary": "What clients check before a write: the slot-name pattern, the built-in names and their roles, the providers and the roles each serves, the devices",
            "responses": read(json!({"200": ok("The rules", s.of::<super::rules::Rules>())}))}},
        "/api/models/pull": {"post": {"operationId": "pullModel", "summary": "Start downloading an hf: model into server.models_dir (joins a running pull of the same model); follow it with GET /api/models/pulls",
            "requestBody": {"required": true, "content": {"application/json": {"schema": s.of::<super::pulls::PullRequest>(), "example": {"model": "hf:org/repo/model.gguf"}}}},
            "responses": write(json!({"202": ok("Started (or already running): the pull as it is now", s.of::<super::pulls::PullView>()), "400": err("Not an hf: model ref")}))}},
        "/api/models/pulls": {"get": {"operationId": "listPulls", "summary": "Every pull since hal0 started: bytes so far, total, running/done/failed",
            "responses": read(json!({"200": ok("The pulls", s.of::<super::pulls::PullList>())}))}},
        "/api/openapi.json": {"get": {"operationId": "openapi", "summary": "This document",
            "responses": read(json!({"200": {"description": "OpenAPI 3.1", "content": {"application/json": {"schema": {"type": "object"}}}}}))}}
    });
    // Named for the event stream's payloads, which no operation returns directly.
    s.of::<SlotRemoved>();
    let mut schemas = s.0.take_definitions(true);
    schemas.insert("Error".into(), error_schema());
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "hal0 management API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Manage hal0's slots. Writes edit hal0.toml (atomically, keeping comments) and need `Authorization: Bearer <admin token>` when server.admin_token_env is set or hal0 listens beyond loopback. Every error is JSON: {\"error\":{\"code\",\"message\",\"details\"}}."
        },
        "components": {
            "schemas": schemas,
            "securitySchemes": {"adminToken": {"type": "http", "scheme": "bearer"}}
        },
        "paths": paths
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every `$ref` in the document names a schema it defines.
    #[test]
    fn every_reference_resolves() {
        let doc = openapi();
        let text = doc.to_string();
        let schemas = doc["components"]["schemas"].as_object().unwrap();
        for part in text.split("\"$ref\":\"").skip(1) {
            let target = part.split('"').next().unwrap();
            let name = target
                .strip_prefix("#/components/schemas/")
                .unwrap_or_else(|| panic!("{target}"));
            assert!(schemas.contains_key(name), "{target} is not defined");
        }
        for name in [
            "SlotView",
            "SlotList",
            "SlotSpec",
            "Phase",
            "WriteResult",
            "ConfigState",
            "Error",
        ] {
            assert!(schemas.contains_key(name), "{name} missing");
        }
    }
}
