//! Policy verdicts in the log (docs/policy.md): what a rule of the run's policy decided about a
//! value the run was about to record or send. Verdicts are folded into the record of the value
//! they judge (`runStarted`, completions, call records) as a `verdicts` list, so they sit at the
//! value's own place in canonical order and replay feeds them like the value itself. They never
//! hold the content: a redaction is visible only as its placeholder in the value, a block only
//! as a digest.

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// What a rule does when it matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// The value is never recorded, sent or passed on; the activation or call fails with
    /// `POLICY_DENIED`.
    Block,
    /// Each match is replaced by `[REDACTED:<kind>]` in what is recorded, sent and passed on.
    Redact,
    /// The value goes on unchanged; the verdict is recorded.
    Warn,
}

impl Action {
    /// `block`, `redact` or `warn`.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Block => "block",
            Action::Redact => "redact",
            Action::Warn => "warn",
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The rule id of tool allowlist verdicts (a policy's `tools` section); no content rule may use
/// it.
pub const TOOLS_RULE: &str = "tools";

/// One decision of a policy rule about one place in a value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Verdict {
    /// The rule's id ([`TOOLS_RULE`] for a tool the allowlist refused).
    pub rule: Arc<str>,
    /// What it did.
    pub action: Action,
    /// What it found: a detector name (`email`, `card`…), the rule id for `regex` and
    /// `keywords` rules, `tool` for an allowlist refusal.
    pub kind: Arc<str>,
    /// Where in the value (a JSON Pointer; empty for the whole value), when the verdict is
    /// about content.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// How many matches the rule had there.
    #[serde(default = "one", skip_serializing_if = "is_one")]
    pub count: u32,
    /// A block's keyed blake3 digest of the value it kept out of the log (`docs/policy.md`
    /// says how to check a value against it); never a digest of a single match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    /// The agent whose tool call the allowlist refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<Arc<str>>,
}

fn one() -> u32 {
    1
}

fn is_one(n: &u32) -> bool {
    *n == 1
}

impl Verdict {
    /// The one message every host shows for a block (never the content).
    pub fn message(&self) -> String {
        match (&self.agent, self.kind.as_ref()) {
            (Some(agent), "tool") => format!(
                "policy rule '{}': agent '{agent}' may not call this tool",
                self.rule
            ),
            _ => {
                let at = match self.path.as_deref() {
                    None | Some("") => String::new(),
                    Some(p) => format!(" at {p}"),
                };
                format!(
                    "blocked by policy rule '{}' ({} found{at})",
                    self.rule, self.kind
                )
            }
        }
    }
}
