//! Rust runner for the conformance vectors.
