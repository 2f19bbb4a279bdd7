//! Tools with a JSON Schema for their arguments: arguments are validated before the call is
//! recorded or made, so a bad call is a typed error naming the path, and never runs.

use std::sync::Arc;

use agentmesh_core::{CallError as CoreError, CallExecutor, CallOutcome, CallTicket, ErrorKind};
use serde_json::Value;

use crate::executor::McpToolExecutor;
use crate::mcp::McpServer;

/// A tool executor whose arguments must match a JSON Schema (draft 2020-12 and earlier, by
/// the `jsonschema` crate; remote `$ref`s are not fetched).
pub struct ValidatedTool {
    name: String,
    validator: jsonschema::Validator,
    inner: Arc<dyn CallExecutor>,
}

impl ValidatedTool {
    /// Tool `name`, running `inner`, with arguments checked against `schema`.
    ///
    /// Errors: `INVALID_ARGUMENT` when `schema` is not a valid JSON Schema.
    pub fn new(
        name: &str,
        schema: &Value,
        inner: Arc<dyn CallExecutor>,
    ) -> Result<ValidatedTool, agentmesh_core::Error> {
        let validator = jsonschema::validator_for(schema).map_err(|e| {
            agentmesh_core::Error::new(
                ErrorKind::InvalidArgument,
                format!("tool '{name}': its argument schema is invalid: {e}"),
            )
        })?;
        Ok(ValidatedTool {
            name: name.to_owned(),
            validator,
            inner,
        })
    }
}

impl CallExecutor for ValidatedTool {
    fn prepare(&self, request: Value) -> Result<Value, CoreError> {
        let request = self.inner.prepare(request)?;
        if let Some(e) = self.validator.iter_errors(&request).next() {
            let path = e.instance_path().as_str();
            let at = if path.is_empty() { "/" } else { path };
            return Err(CoreError::new(
                "InvalidArguments",
                format!("tool '{}': arguments at {at}: {e}", self.name),
            )
            .permanent());
        }
        Ok(request)
    }

    fn execute(
        &self,
        request: &Value,
        ticket: &CallTicket,
        on_chunk: Option<&mut dyn FnMut(&Value)>,
    ) -> CallOutcome {
        self.inner.execute(request, ticket, on_chunk)
    }
}

/// A tool's name and its executor.
pub type NamedTool = (String, Arc<dyn CallExecutor>);

/// Every tool of an MCP server (`tools/list`), each with its input schema enforced, ready to
/// register with `Mesh::call_tool` (under its MCP name).
///
/// Errors: the server's, from `tools/list`; `INVALID_ARGUMENT` for a tool whose schema is
/// not a valid JSON Schema.
pub fn mcp_tools(
    server: &Arc<McpServer>,
) -> Result<Vec<NamedTool>, agentmesh_core::Error> {
    let tools = server
        .list_tools()
        .map_err(|e| agentmesh_core::Error::new(e.kind, e.message))?;
    let mut out = Vec::with_capacity(tools.len());
    for t in tools {
        let inner: Arc<dyn CallExecutor> = Arc::new(McpToolExecutor::new(server.clone(), &t.name));
        let tool = ValidatedTool::new(&t.name, &t.input_schema, inner)?;
        out.push((t.name, Arc::new(tool) as Arc<dyn CallExecutor>));
    }
    Ok(out)
}
