//! Core work on libuv's thread pool, as a Promise (`AsyncTask`): the event loop never waits.
//!
//! The work and its conversion to the result object run on a pool thread; only handing the
//! finished object to JavaScript happens on the JS thread. A core error rejects the Promise
//! with the same JS error the sync form throws (`code`, `details`); a panic becomes `INTERNAL`.

use agentmesh_core::Error;
use napi::bindgen_prelude::{AsyncTask, ToNapiValue, TypeName};
use napi::{Env, Task};

use crate::errors::{guard, to_js};

type Work<J> = Box<dyn FnOnce() -> agentmesh_core::Result<J> + Send>;

/// One piece of core work producing the JS-ready value `J`.
pub struct CoreTask<J> {
    work: Option<Work<J>>,
    /// The core error, kept for `reject` (which has the env to build the JS error).
    failure: Option<Error>,
}

/// A Promise for `work`.
pub fn spawn<J>(
    work: impl FnOnce() -> agentmesh_core::Result<J> + Send + 'static,
) -> AsyncTask<CoreTask<J>>
where
    J: ToNapiValue + TypeName + Send + 'static,
{
    AsyncTask::new(CoreTask {
        work: Some(Box::new(work)),
        failure: None,
    })
}

impl<J> Task for CoreTask<J>
where
    J: ToNapiValue + TypeName + Send + 'static,
{
    type Output = J;
    type JsValue = J;

    fn compute(&mut self) -> napi::Result<J> {
        let work = self
            .work
            .take()
            .ok_or_else(|| napi::Error::from_reason("agentmesh task ran twice"))?;
        guard(work).map_err(|e| {
            let placeholder = napi::Error::from_reason(e.to_string());
            self.failure = Some(e);
            placeholder
        })
    }

    fn resolve(&mut self, _env: Env, output: J) -> napi::Result<J> {
        Ok(output)
    }

    fn reject(&mut self, env: Env, err: napi::Error) -> napi::Result<J> {
        match self.failure.take() {
            Some(e) => Err(to_js(&env, &e)),
            None => Err(err),
        }
    }
}
