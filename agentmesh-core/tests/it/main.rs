//! Integration tests of agentmesh-core (one test binary; one module per area).

mod calls;
mod common;
mod compat;
mod compat_v2;
mod crash;
mod determinism;
mod driver;
mod durability;
mod faults;
mod integrity;
mod orchestrator;
mod recovery;
mod replay;
mod smoke;
mod usage;
