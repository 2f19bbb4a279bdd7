//! Wire types: workflow definitions, conditions, events, activations and completions, and
//! the limits every layer shares.

pub mod activation;
pub mod budget;
pub mod call;
pub(crate) mod condition;
pub(crate) mod encode;
pub mod event;
pub mod failure;
pub mod header;
pub mod limits;
pub(crate) mod output;
mod registration;
pub mod repair;
pub mod subflow;
pub mod usage;
pub(crate) mod validate;
pub mod verdict;
pub mod workflow;

pub(crate) use limits::too_deep;
pub use limits::MAX_VALUE_DEPTH;
