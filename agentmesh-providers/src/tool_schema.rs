//! Tools with a JSON Schema for their arguments: arguments are validated before the call is
//! recorded or made, so a bad call is a typed error naming the path, and never runs.

use std::sync::Arc;

use agentmesh_core::{
    refused_request, CallError as CoreError, CallExecutor, CallKind, CallOutcome, CallTicket,
    ErrorKind, ToolAccess,
};
use serde_json::Value;

use crate::executor::McpToolExecutor;
use crate::mcp::McpServer;

/// A tool's JSON Schema for its arguments, compiled (draft 2020-12 and earlier, by the
/// `jsonschema` crate; remote `$ref`s are not fetched).
pub struct ArgumentSchema {
    validator: jsonschema::Validator,
}

impl ArgumentSchema {
    /// Compile tool `name`'s argument `schema`.
    ///
    /// Errors: `INVALID_ARGUMENT` when `schema` is not a valid JSON Schema.
    pub fn new(name: &str, schema: &Value) -> Result<ArgumentSchema, agentmesh_core::Error> {
        let validator = jsonschema::validator_for(schema).map_err(|e| {
            agentmesh_core::Error::new(
                ErrorKind::InvalidArgument,
                format!("tool '{name}': its argument schema is invalid: {e}"),
            )
        })?;
        Ok(ArgumentSchema { validator })
    }

    /// Check `arguments`: the first violation, naming its JSON Pointer path
    /// (`arguments at /a: "seventeen" is not of type "integer"`), as a permanent
    /// `InvalidArguments` call error.
    pub fn check(&self, arguments: &Value) -> Result<(), CoreError> {
        match self.validator.iter_errors(arguments).next() {
            None => Ok(()),
            Some(e) => {
                let path = e.instance_path().as_str();
                let at = if path.is_empty() { "/" } else { path };
                Err(
                    CoreError::new("InvalidArguments", format!("arguments at {at}: {e}"))
                        .permanent(),
                )
            }
        }
    }
}

/// A tool executor whose arguments must match a JSON Schema ([`ArgumentSchema`]).
pub struct ValidatedTool {
    schema: ArgumentSchema,
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
        Ok(ValidatedTool {
            schema: ArgumentSchema::new(name, schema)?,
            inner,
        })
    }
}

impl CallExecutor for ValidatedTool {
    fn prepare(&self, request: Value) -> Result<Value, CoreError> {
        let request = self.inner.prepare(request)?;
        self.schema.check(&request)?;
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

/// The rules a host-language tool is registered with (Python's `Mesh.call_tool`, Node's
/// `mesh.callTool`): its argument schema and its [`ToolAccess`], checked before its call is
/// recorded, with the wording of a Rust mesh's.
pub struct ToolRules {
    name: String,
    schema: Option<ArgumentSchema>,
    access: ToolAccess,
}

impl ToolRules {
    /// Tool `name`'s rules.
    ///
    /// Errors: `INVALID_ARGUMENT` when `schema` is not a valid JSON Schema.
    pub fn new(
        name: &str,
        schema: Option<&Value>,
        access: ToolAccess,
    ) -> Result<ToolRules, agentmesh_core::Error> {
        Ok(ToolRules {
            name: name.to_owned(),
            schema: schema.map(|s| ArgumentSchema::new(name, s)).transpose()?,
            access,
        })
    }

    /// Whether `agent` may call the tool with `arguments`: the allowlist first, then the
    /// schema.
    ///
    /// Errors: `POLICY_DENIED`; `INVALID_ARGUMENT` naming the path of the first violation.
    pub fn admit(&self, agent: &str, arguments: &Value) -> Result<(), agentmesh_core::Error> {
        self.access.check(&self.name, agent)?;
        match &self.schema {
            Some(schema) => schema
                .check(arguments)
                .map_err(|e| refused_request(CallKind::Tool, &self.name, &e)),
            None => Ok(()),
        }
    }

    /// The access rules (the rate limit's [`ToolAccess::reserve`] for a live call).
    pub fn access(&self) -> &ToolAccess {
        &self.access
    }
}

/// A tool's name and its executor.
pub type NamedTool = (String, Arc<dyn CallExecutor>);

/// Every tool of an MCP server (`tools/list`), each with its input schema enforced, ready to
/// register with `Mesh::call_tool` (under its MCP name).
///
/// Errors: the server's, from `tools/list`; `INVALID_ARGUMENT` for a tool whose schema is
/// not a valid JSON Schema.
pub fn mcp_tools(server: &Arc<McpServer>) -> Result<Vec<NamedTool>, agentmesh_core::Error> {
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
