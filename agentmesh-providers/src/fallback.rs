//! [`Fallback`]: providers tried in order until one answers.

use std::sync::Arc;

use agentmesh_core::ErrorKind;
use serde_json::Value;

use crate::error::CallError;
use crate::llm::{CallFailed, CallOptions, Chunk, LlmAnswer, LlmProvider};

/// Tries its providers in order (each with its own retries) and returns the first answer;
/// every failed attempt of the ones before is kept in [`LlmAnswer::attempts`].
///
/// It moves on after any failure except two: a malformed canonical request (every provider
/// would refuse it), and a stream that already passed chunks to the caller.
#[derive(Clone)]
pub struct Fallback {
    name: String,
    providers: Vec<Arc<dyn LlmProvider>>,
}

impl std::fmt::Debug for Fallback {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.providers.iter().map(|p| p.name()).collect();
        f.debug_struct("Fallback")
            .field("name", &self.name)
            .field("providers", &names)
            .finish()
    }
}

impl Fallback {
    /// A fallback chain named `name` over `providers`, first to last.
    ///
    /// Errors: `INVALID_ARGUMENT` when `providers` is empty.
    pub fn new(name: &str, providers: Vec<Arc<dyn LlmProvider>>) -> Result<Fallback, CallError> {
        if providers.is_empty() {
            return Err(CallError {
                kind: ErrorKind::InvalidArgument,
                error_type: "InvalidConfig".into(),
                message: format!("fallback `{name}` needs at least one provider"),
                status: None,
                retryable: false,
            });
        }
        Ok(Fallback {
            name: name.to_owned(),
            providers,
        })
    }
}

impl LlmProvider for Fallback {
    fn name(&self) -> &str {
        &self.name
    }

    fn complete(
        &self,
        request: &Value,
        opts: &CallOptions<'_>,
        mut on_chunk: Option<&mut dyn FnMut(&Chunk)>,
    ) -> Result<LlmAnswer, CallFailed> {
        let mut attempts = Vec::new();
        let last = self.providers.len() - 1;
        for (i, p) in self.providers.iter().enumerate() {
            let mut delivered = false;
            let result = match on_chunk.as_mut() {
                None => p.complete(request, opts, None),
                Some(f) => {
                    let mut counting = |c: &Chunk| {
                        delivered = true;
                        f(c);
                    };
                    p.complete(request, opts, Some(&mut counting))
                }
            };
            match result {
                Ok(mut answer) => {
                    attempts.append(&mut answer.attempts);
                    answer.attempts = attempts;
                    return Ok(answer);
                }
                Err(failed) => {
                    attempts.extend(failed.attempts);
                    let final_ =
                        i == last || delivered || failed.error.error_type == "InvalidRequest";
                    if final_ {
                        return Err(CallFailed {
                            error: failed.error,
                            attempts,
                        });
                    }
                }
            }
        }
        unreachable!("the last provider returns")
    }
}
