//! Core errors → JavaScript `Error`s, and the one place panics are caught.
//!
//! Every core error becomes a plain JS `Error` with
//! - `code`: the stable core code (`"INVALID_WORKFLOW"`, ... — [`ErrorKind::code`]),
//! - `message`: `"[CODE] message"`, as the core's `Display` and Python's `str(exc)` read,
//! - `details`: an object with the structured facts the core gives (`node`, `field`, `seq`,
//!   `expected`, `actual`, `offset`, `found`; `ErrorDetail::to_json`), `{}` when there are none.
//!
//! The TypeScript layer maps `code` to its error subclasses; the class list is not duplicated
//! here. A panic inside the core or this crate is caught ([`guard`]) and becomes an `INTERNAL`
//! error: it never unwinds into Node (which would abort the process).

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::ptr;

use agentmesh_core::{Error, ErrorKind};
use napi::bindgen_prelude::Unknown;
use napi::{sys, Env, Status};
use napi_derive::napi;

/// The stable codes of every core error kind, in declaration order (`ErrorKind::ALL`).
#[napi(catch_unwind)]
pub fn error_codes() -> Vec<&'static str> {
    ErrorKind::ALL.iter().map(|k| k.code()).collect()
}

/// Run core work, turning a panic into an `INTERNAL` core error.
pub fn guard<T>(f: impl FnOnce() -> agentmesh_core::Result<T>) -> agentmesh_core::Result<T> {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|panic| Err(panicked(panic)))
}

/// The `INTERNAL` error for a caught panic payload.
pub fn panicked(panic: Box<dyn std::any::Any + Send>) -> Error {
    let msg = panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".to_owned());
    Error::new(
        ErrorKind::Internal,
        format!("panic inside agentmesh: {msg}"),
    )
}

/// A core result on its way to JavaScript.
pub trait OrThrow<T> {
    /// The value, or the JS error for the core error (thrown by napi when returned).
    fn or_throw(self, env: &Env) -> napi::Result<T>;
}

impl<T> OrThrow<T> for agentmesh_core::Result<T> {
    fn or_throw(self, env: &Env) -> napi::Result<T> {
        self.map_err(|e| to_js(env, &e))
    }
}

/// A core value in its serde form; failure here is a bug, reported as `INTERNAL`.
pub fn serde_value<T: serde::Serialize>(value: &T) -> agentmesh_core::Result<serde_json::Value> {
    serde_json::to_value(value)
        .map_err(|e| Error::new(ErrorKind::Internal, format!("serializing: {e}")))
}

/// Shorthand for `Error::new(INVALID_ARGUMENT, message)`.
pub fn invalid_argument(message: impl Into<String>) -> Error {
    Error::new(ErrorKind::InvalidArgument, message)
}

/// The JS error for a core error (see the module docs for its shape).
pub fn to_js(env: &Env, e: &Error) -> napi::Error {
    let fallback = || napi::Error::new(Status::GenericFailure, e.to_string());
    match build(env, e) {
        Ok(value) => {
            // SAFETY: `value` was just created in `env`.
            let unknown = unsafe { Unknown::from_raw_unchecked(env.raw(), value) };
            napi::Error::from(unknown)
        }
        Err(_) => fallback(),
    }
}

/// A core error as a JS value (an `Error` object, not thrown): for results that report
/// several errors, such as `NativeRun.completeAll`, and `NativeCompletion.error`.
pub(crate) fn error_value(env: sys::napi_env, e: &Error) -> napi::Result<sys::napi_value> {
    build_raw(env, e)
        .map_err(|s| napi::Error::new(Status::from(s), "creating an error object".to_owned()))
}

/// Any of these `napi_*` calls failing means the environment is going away; the caller then
/// falls back to a plain napi error.
fn build(env: &Env, e: &Error) -> Result<sys::napi_value, sys::napi_status> {
    build_raw(env.raw(), e)
}

pub(crate) fn build_raw(
    env: sys::napi_env,
    e: &Error,
) -> Result<sys::napi_value, sys::napi_status> {
    // SAFETY (every call below): `env` is the live environment of the current call, used on
    // its own thread, and every value passed was created in it.
    let check = |status: sys::napi_status| {
        if status == sys::Status::napi_ok {
            Ok(())
        } else {
            Err(status)
        }
    };
    let string = |s: &str| -> Result<sys::napi_value, sys::napi_status> {
        let mut out = ptr::null_mut();
        check(unsafe {
            sys::napi_create_string_utf8(env, s.as_ptr().cast(), s.len() as isize, &mut out)
        })?;
        Ok(out)
    };
    let code = string(e.code())?;
    let message = string(&e.to_string())?;
    let mut error = ptr::null_mut();
    check(unsafe { sys::napi_create_error(env, code, message, &mut error) })?;
    // The details are the core's one JSON form of them (`ErrorDetail::to_json`).
    let details = e
        .detail()
        .map(|d| d.to_json())
        .unwrap_or_else(|| serde_json::Value::Object(Default::default()));
    let obj = unsafe { crate::json::write(env, &details) }
        .map_err(|_| sys::Status::napi_generic_failure)?;
    let key = string("details")?;
    check(unsafe { sys::napi_set_property(env, error, key, obj) })?;
    Ok(error)
}
