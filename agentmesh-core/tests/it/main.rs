//! Integration tests of agentmesh-core (one test binary; one module per area).

mod common;
mod smoke;
