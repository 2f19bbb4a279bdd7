//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::path::Path;

use agentmesh_core::{Mesh, Script, Workflow};
use serde_json::Value;

pub fn wf(v: Value) -> Workflow {
    Workflow::from_value(v).expect("valid workflow")
}

/// A mesh in `dir` whose agents and tools follow `script`.
pub fn scripted_mesh(
    dir: &Path,
    workflow: &Workflow,
    script: Value,
) -> (Mesh, std::sync::Arc<Script>) {
    let script =
        std::sync::Arc::new(serde_json::from_value::<Script>(script).expect("valid script"));
    let mut mesh = Mesh::new().with_log_dir(dir);
    script.register(&mut mesh, workflow);
    (mesh, script)
}

pub fn canonical(path: &Path) -> String {
    let mut out = Vec::new();
    agentmesh_core::canonical_log(path, &mut out).expect("canonical log");
    String::from_utf8(out).expect("utf8")
}
