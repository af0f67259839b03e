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
mod issuer;
mod openapi;
mod properties;
mod proxy;
mod redis;
mod redis_harness;
mod replicas;
mod rotation;
mod roundtrips;
mod shedding;
mod signing_key;
mod support;
