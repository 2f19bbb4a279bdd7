//! Wire types: workflow definitions, conditions, events, activations and completions.

pub mod activation;
pub(crate) mod condition;
pub mod event;
pub(crate) mod validate;
pub mod workflow;
