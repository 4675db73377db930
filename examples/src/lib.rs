//! Shared pieces of the Pet Store example binaries: the all-in-one server (started by
//! `petstore-server`, the `tour` and the conformance tests) and small client helpers.
//!
//! The workspace README follows; its Rust examples are compiled as doctests here.
#![doc = include_str!("../../README.md")]

pub mod asyncapi;
pub mod client;
pub mod jwks;
pub mod server;
