//! Integration tests of agentmesh-core (one test binary; one module per area).

mod budgets;
mod calls;
mod common;
mod compat;
mod compat_v2;
mod compat_v3;
mod compat_v4;
mod compat_v5;
mod crash;
mod determinism;
mod driver;
mod durability;
mod faults;
mod integrity;
mod maps;
mod orchestrator;
mod pii_corpus;
mod policy;
mod policy_examples;
mod policy_leaks;
mod recovery;
mod replay;
mod smoke;
mod subflows;
mod usage;
