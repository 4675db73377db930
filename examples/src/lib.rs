//! Shared pieces of the Pet Store example binaries: the all-in-one server (started by
//! `petstore-server`, the `tour` and the conformance tests) and small client helpers.

pub mod asyncapi;
pub mod client;
pub mod server;
