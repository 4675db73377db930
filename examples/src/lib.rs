//! What the Pet Store example clients share: where the server is and how to get a token.
//! The server they talk to is the `petstore-server` crate (`cargo run -p
//! petstore-server`); the `tour` starts it in-process.
//!
//! The workspace README follows; its Rust examples are compiled as doctests here.
#![doc = include_str!("../../README.md")]

pub mod client;
