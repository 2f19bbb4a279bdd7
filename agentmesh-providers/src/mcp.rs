//! MCP tools over stdio.
