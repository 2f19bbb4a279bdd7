//! `NativeActivation`: one activation of the core, converted to JavaScript only as it is read.
//!
//! `poll` hands out one of these per activation instead of a plain object: building `input`
//! and `deps` (and a dozen named properties) for every activation cost more than the rest of
//! a step, and most agents read a few fields. Each getter converts its field when called (the
//! driver's `Activation` keeps what it read), as the Python binding's native `Activation`
//! does. The completion of an activation is made from it ([`crate::completion`]), so the
//! completion knows its id and node.

use std::ptr;
use std::sync::Arc;

use agentmesh_core as core;
use napi::bindgen_prelude::{BigInt, ToNapiValue, TypeName};
use napi::{sys, ValueType};
use napi_derive::napi;
use serde_json::Value;

use crate::json::{Json, Record};
use crate::objects::num;

/// One unit of work for the host: run an agent or tool, or ask a person. Complete it with a
/// `NativeCompletion` made from it (`NativeCompletion.ok(activation, …)`).
#[napi]
pub struct NativeActivation {
    pub(crate) inner: core::Activation,
}

impl From<core::Activation> for NativeActivation {
    fn from(inner: core::Activation) -> NativeActivation {
        NativeActivation { inner }
    }
}

#[napi]
impl NativeActivation {
    /// Activation id (the seq of its scheduling event).
    #[napi(getter)]
    pub fn id(&self) -> i64 {
        num(self.inner.id)
    }

    /// Run id.
    #[napi(getter)]
    pub fn run_id(&self) -> &str {
        &self.inner.run_id
    }

    /// Node id.
    #[napi(getter)]
    pub fn node(&self) -> &str {
        &self.inner.node
    }

    /// `agent`, `tool` or `human`.
    #[napi(getter, ts_return_type = "'agent' | 'tool' | 'human'")]
    pub fn kind(&self) -> &'static str {
        self.inner.kind.as_str()
    }

    /// Agent or tool name (the node id for a human activation).
    #[napi(getter)]
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// Attempt within this visit, from 1.
    #[napi(getter)]
    pub fn attempt(&self) -> u32 {
        self.inner.attempt
    }

    /// Visit of the node, from 1 (more than 1 inside loops).
    #[napi(getter)]
    pub fn visit(&self) -> i64 {
        num(self.inner.visit)
    }

    /// Retry backoff the driver waits before starting the work.
    #[napi(getter)]
    pub fn delay_ms(&self) -> i64 {
        num(self.inner.delay_ms)
    }

    /// Deadline of this attempt, counted from when it starts running (after `delayMs`);
    /// `undefined` when the node has none.
    #[napi(getter, ts_return_type = "number | undefined")]
    pub fn timeout_ms(&self) -> Undefinable<i64> {
        Undefinable(self.inner.timeout_ms.map(num))
    }

    /// Prompt of a human activation (`undefined` otherwise).
    #[napi(getter, ts_return_type = "string | undefined")]
    pub fn prompt(&self) -> Undefinable<String> {
        Undefinable(self.inner.prompt.clone())
    }

    /// Deterministic per-activation seed derived from the run seed (full 64 bits).
    #[napi(getter)]
    pub fn seed(&self) -> BigInt {
        BigInt::from(self.inner.seed)
    }

    /// Superstep number.
    #[napi(getter)]
    pub fn step(&self) -> i64 {
        num(self.inner.step)
    }

    /// The run input (a new value at each read).
    #[napi(getter, ts_return_type = "unknown")]
    pub fn input(&self) -> Json<Arc<Value>> {
        Json(self.inner.input.clone())
    }

    /// Outputs of the node's completed `after` dependencies, by node id (a new object at
    /// each read).
    #[napi(getter, ts_return_type = "Record<string, unknown>")]
    pub fn deps(&self) -> Record<Arc<str>, Arc<Value>> {
        Record(self.inner.deps.clone())
    }
}

/// An optional value that is `undefined` (not `null`) when absent, as a property that was
/// never set reads.
pub struct Undefinable<T>(pub Option<T>);

impl<T: ToNapiValue> ToNapiValue for Undefinable<T> {
    unsafe fn to_napi_value(env: sys::napi_env, val: Self) -> napi::Result<sys::napi_value> {
        match val.0 {
            // SAFETY: napi calls this with the live environment.
            Some(v) => unsafe { T::to_napi_value(env, v) },
            None => {
                let mut out = ptr::null_mut();
                // SAFETY: as above; `out` is a local.
                let status = unsafe { sys::napi_get_undefined(env, &mut out) };
                if status != sys::Status::napi_ok {
                    return Err(napi::Error::new(
                        napi::Status::from(status),
                        "napi_get_undefined failed".to_owned(),
                    ));
                }
                Ok(out)
            }
        }
    }
}

impl<T: TypeName> TypeName for Undefinable<T> {
    fn type_name() -> &'static str {
        T::type_name()
    }

    fn value_type() -> ValueType {
        T::value_type()
    }
}
