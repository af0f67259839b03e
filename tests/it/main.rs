//! The one integration-test binary: spec conformance, the CLI, and (later) the servers end to end.

mod alloc;
mod bad_input;
mod cdn;
mod cli;
mod conformance;
mod consistency;
mod crash;
mod deploy;
mod first_hour;
mod fuzz_regressions;
mod http;
mod interop;
mod issuer;
mod openapi;
mod properties;
mod redis;
mod redis_harness;
mod replicas;
mod rotation;
mod shedding;
mod signing_key;
mod support;
mod verify;
