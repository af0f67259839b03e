//! The one integration-test binary: spec conformance, the CLI, and (later) the servers end to end.

mod alloc;
mod cdn;
mod cli;
mod conformance;
mod http;
mod properties;
mod redis;
mod redis_harness;
mod replicas;
mod support;
