//! Shared helpers of the AgentMesh benchmarks.
