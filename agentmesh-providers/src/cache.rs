//! An opt-in response cache: a call whose canonical request was answered before is answered
//! from the cache and recorded as such (`"cached": true`, no usage: nothing was spent).
//!
//! The key is blake3 of the executor's name and the canonical request, so one cache can serve
//! several providers. Entries live in memory for the process (shared by every run of every
//! mesh that holds the cache) and, with [`ResponseCache::in_dir`], in a directory too: one file
//! per key, written atomically, so several processes can share it. Only successful responses
//! are kept; errors are never cached.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use agentmesh_core::{CallExecutor, CallOutcome, CallTicket};
use serde_json::Value;

/// Responses by request digest.
#[derive(Debug, Default)]
pub struct ResponseCache {
    memory: Mutex<HashMap<String, Arc<Value>>>,
    dir: Option<PathBuf>,
}

impl ResponseCache {
    /// A cache for this process.
    pub fn new() -> Arc<ResponseCache> {
        Arc::new(ResponseCache::default())
    }

    /// A cache kept in `dir` as well (created if missing).
    ///
    /// Errors: `IO` when the directory cannot be created.
    pub fn in_dir(dir: impl AsRef<Path>) -> Result<Arc<ResponseCache>, agentmesh_core::Error> {
        let dir = dir.as_ref().to_path_buf();
        std::fs::create_dir_all(&dir).map_err(|e| {
            agentmesh_core::Error::new(
                agentmesh_core::ErrorKind::Io,
                format!("creating the response cache {}: {e}", dir.display()),
            )
        })?;
        Ok(Arc::new(ResponseCache {
            memory: Mutex::default(),
            dir: Some(dir),
        }))
    }

    /// Wrap `inner`, registered as `name`, so its answers are cached.
    pub fn wrap(
        self: &Arc<Self>,
        name: &str,
        inner: Arc<dyn CallExecutor>,
    ) -> Arc<dyn CallExecutor> {
        Arc::new(Cached {
            name: name.to_owned(),
            inner,
            cache: self.clone(),
        })
    }

    fn key(name: &str, request: &Value) -> String {
        let mut h = blake3::Hasher::new();
        h.update(name.as_bytes());
        h.update(&[0]);
        h.update(request.to_string().as_bytes());
        h.finalize().to_hex().to_string()
    }

    fn get(&self, key: &str) -> Option<Arc<Value>> {
        if let Some(v) = self.lock().get(key) {
            return Some(v.clone());
        }
        let path = self.dir.as_ref()?.join(format!("{key}.json"));
        let v: Value = serde_json::from_slice(&std::fs::read(path).ok()?).ok()?;
        let v = Arc::new(v);
        self.lock().insert(key.to_owned(), v.clone());
        Some(v)
    }

    fn put(&self, key: &str, response: &Arc<Value>) {
        self.lock().insert(key.to_owned(), response.clone());
        if let Some(dir) = &self.dir {
            // Written aside, then renamed: a reader never sees half a file. A failed write
            // only loses the cache entry.
            let tmp = dir.join(format!(".{key}.{}.tmp", std::process::id()));
            if std::fs::write(&tmp, response.to_string()).is_ok() {
                let _ = std::fs::rename(&tmp, dir.join(format!("{key}.json")));
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Value>>> {
        self.memory.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Entries held in memory.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether the cache holds nothing in memory.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

struct Cached {
    name: String,
    inner: Arc<dyn CallExecutor>,
    cache: Arc<ResponseCache>,
}

impl CallExecutor for Cached {
    fn prepare(&self, request: Value) -> Result<Value, agentmesh_core::CallError> {
        self.inner.prepare(request)
    }

    fn execute(
        &self,
        request: &Value,
        ticket: &CallTicket,
        on_chunk: Option<&mut dyn FnMut(&Value)>,
    ) -> CallOutcome {
        let key = ResponseCache::key(&self.name, request);
        if let Some(response) = self.cache.get(&key) {
            if let Some(f) = on_chunk {
                f(&agentmesh_core::replayed_chunk(&response));
            }
            let mut o = CallOutcome::ok((*response).clone());
            o.cached = true;
            return o;
        }
        let outcome = self.inner.execute(request, ticket, on_chunk);
        if let Ok(response) = &outcome.result {
            self.cache.put(&key, response);
        }
        outcome
    }
}
