//! Built-in calls for AgentMesh, executed by Rust on the host's behalf: LLM providers over
//! `ureq` (OpenAI-compatible Chat Completions, Anthropic Messages) and MCP tools over stdio.
//!
//! Everything here is IO; the core (`agentmesh-core`) stays sans-IO and only records what
//! these calls send and receive. Requests and responses cross this crate's boundary in their
//! canonical form (`docs/providers.md`): what the log records, with no secrets, provider ids
//! or timestamps in it.
#![deny(missing_docs)]

pub mod error;
pub mod mcp;

pub use error::CallError;

// The built-in calls as the core's executors (what a mesh registers).
mod executor;
mod tool_schema;
pub use executor::{chunk_value, core_error, executor_from_config, LlmExecutor, McpToolExecutor};
pub use tool_schema::{mcp_tools, ArgumentSchema, NamedTool, ToolRules, ValidatedTool};

// Input-token estimates, for budget reservations.
mod estimate;
pub use estimate::{estimate_input_tokens, InputEstimate};

// The opt-in response cache.
mod cache;
pub use cache::ResponseCache;

// LLM providers (docs/providers.md).
mod anthropic;
mod config;
mod fallback;
mod http;
mod llm;
mod openai;
mod provider;
mod rate;
mod request;
mod response;
mod retry;
mod semaphore;
mod sse;

pub use anthropic::DEFAULT_MAX_TOKENS as ANTHROPIC_DEFAULT_MAX_TOKENS;
pub use config::{ProviderConfig, ProviderKind};
pub use fallback::Fallback;
pub use llm::{Attempt, CallFailed, CallOptions, Chunk, LlmAnswer, LlmProvider, ProviderMeta};
pub use provider::HttpProvider;
pub use rate::RateLimits;
pub use request::{LlmRequest, Message, ResponseFormat, Role, Tool, ToolCall, ToolChoice};
pub use response::{FinishReason, LlmResponse};

/// docs/providers.md: its examples are doctests.
#[cfg(doctest)]
#[doc = include_str!("../../docs/providers.md")]
struct ProvidersGuide;

/// docs/tools.md: its examples are doctests (compiled; those that need a server are not run).
#[cfg(doctest)]
#[doc = include_str!("../../docs/tools.md")]
struct ToolsGuide;

/// docs/budgets.md: its examples are doctests (prices are the core's, estimates this crate's).
#[cfg(doctest)]
#[doc = include_str!("../../docs/budgets.md")]
struct BudgetsGuide;
