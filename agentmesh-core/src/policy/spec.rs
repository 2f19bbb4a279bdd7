//! The policy file's wire form (schema `docs/schema/policy.schema.json`, version 1) and its
//! checks: every field known, rule ids unique, one matcher per rule, names in canonical form.
//! Compiling regexes and keywords is [`super::rules`]'s job.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::model::verdict::Action;

/// The policy file format version this AgentMesh reads.
pub const POLICY_VERSION: u32 = 1;

/// Most rules one policy may have.
pub const MAX_RULES: usize = 256;

/// Longest `regex` pattern (bytes).
pub const MAX_PATTERN_BYTES: usize = 4096;

/// Most keywords one rule may list, and the longest keyword (bytes).
pub const MAX_KEYWORDS: usize = 1000;
/// Longest keyword (bytes).
pub const MAX_KEYWORD_BYTES: usize = 256;

/// What a rule looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Subject {
    /// The run input, before `runStarted` records it.
    Input,
    /// An agent's output (and an activation's failure message), before its completion is
    /// recorded; what downstream nodes receive as `deps`.
    Output,
    /// A person's decision on a human node.
    Human,
    /// An LLM call's request (messages and parameters), before `callStarted` and before it is
    /// sent.
    LlmRequest,
    /// An LLM call's response (and error message), before it is recorded and handed to the
    /// agent.
    LlmResponse,
    /// A tool call's arguments, before `callStarted` and before the tool runs.
    ToolArgs,
    /// A tool's result: an inner tool call's response, or a tool node's output.
    ToolResult,
}

impl Subject {
    /// Every subject.
    pub const ALL: &'static [Subject] = &[
        Subject::Input,
        Subject::Output,
        Subject::Human,
        Subject::LlmRequest,
        Subject::LlmResponse,
        Subject::ToolArgs,
        Subject::ToolResult,
    ];

    /// The wire name (`input`, `llmRequest`...).
    pub fn as_str(self) -> &'static str {
        match self {
            Subject::Input => "input",
            Subject::Output => "output",
            Subject::Human => "human",
            Subject::LlmRequest => "llmRequest",
            Subject::LlmResponse => "llmResponse",
            Subject::ToolArgs => "toolArgs",
            Subject::ToolResult => "toolResult",
        }
    }

    pub(crate) fn bit(self) -> u8 {
        1 << (self as u8)
    }
}

/// A policy file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct PolicySpec {
    /// Policy file format version ([`POLICY_VERSION`]).
    pub version: u32,
    /// The policy's name (recorded in the log header).
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Content rules, applied in this order.
    #[serde(default)]
    pub rules: Vec<RuleSpec>,
    /// Tool allowlists; absent means no tool may be called.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tools: Option<ToolsSpec>,
}

/// One content rule: exactly one of `detect`, `regex`, `keywords`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct RuleSpec {
    pub id: String,
    pub action: Action,
    /// A built-in detector's name (`email`, `card`...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detect: Option<String>,
    /// A regular expression (the `regex` crate's syntax: linear time, no look-around or
    /// backreferences).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub regex: Option<String>,
    /// Words or phrases, matched as whole words after normalisation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keywords: Option<Vec<String>>,
    /// Where the rule applies; every subject when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on: Option<Vec<Subject>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// Which tools each agent may call.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct ToolsSpec {
    /// Role → the tools it may call.
    #[serde(default)]
    pub roles: BTreeMap<String, Vec<String>>,
    /// Agent name → its roles.
    #[serde(default)]
    pub agents: BTreeMap<String, Vec<String>>,
    /// Tools the workflow's own tool nodes may run.
    #[serde(default)]
    pub workflow: Vec<String>,
}

/// Whether `name` is a rule id or role name: 1 to 64 of `A-Z a-z 0-9 _ . -`.
pub(crate) fn is_id(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

/// Whether `name` is a tool or agent name in the one form allowlists compare: 1 to 128 of
/// `A-Z a-z 0-9 _ . : -`, starting with a letter or digit. No whitespace, slashes or
/// non-ASCII characters, so no look-alike (`rеad_file` with a Cyrillic е, `read_file `,
/// `fs/read`) can equal an allowed name.
pub fn is_canonical_name(name: &str) -> bool {
    (1..=128).contains(&name.len())
        && name.as_bytes()[0].is_ascii_alphanumeric()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b':' | b'-'))
}
