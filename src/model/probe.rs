//! `probe`: the answer check before a slot is ready. After `/health` passes, one short chat
//! completion of `prompt` must contain `expect` (case-insensitive), or the load fails with what
//! the model said. A server can report healthy and still answer garbage (a broken quant, the
//! wrong chat template, a mis-set context); the check catches that before requests do.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The built-in check for chat slots (`probe = {}`).
pub const DEFAULT_PROBE_PROMPT: &str = "What is the capital of France? Answer with one word.";
/// What the built-in check's answer must contain.
pub const DEFAULT_PROBE_EXPECT: &str = "Paris";

/// `probe = { prompt = "...", expect = "..." }`, or `probe = {}` for the built-in check
/// (`What is the capital of France? Answer with one word.` must be answered with `Paris`).
/// Chat slots only; off unless set.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AnswerProbe {
    /// The user message sent once the slot is healthy. Set with `expect`, or neither.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt: Option<String>,
    /// Text the answer must contain (case-insensitive). Set with `prompt`, or neither.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expect: Option<String>,
}

impl AnswerProbe {
    pub fn prompt(&self) -> &str {
        self.prompt.as_deref().unwrap_or(DEFAULT_PROBE_PROMPT)
    }

    pub fn expect(&self) -> &str {
        self.expect.as_deref().unwrap_or(DEFAULT_PROBE_EXPECT)
    }

    /// Whether `answer` passes: it contains `expect`, ignoring case.
    pub fn accepts(&self, answer: &str) -> bool {
        answer
            .to_lowercase()
            .contains(&self.expect().to_lowercase())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_answer_must_contain_expect_ignoring_case() {
        let builtin = AnswerProbe::default();
        assert!(builtin.accepts("The capital of France is Paris."));
        assert!(builtin.accepts("PARIS"));
        assert!(!builtin.accepts("fake reply to: What is the capital of France?"));
        let own = AnswerProbe {
            prompt: Some("Say pong.".into()),
            expect: Some("Pong".into()),
        };
        assert_eq!(own.prompt(), "Say pong.");
        assert!(own.accepts("pong!"));
        assert!(!own.accepts("ping"));
    }
}
