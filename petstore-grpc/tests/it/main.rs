//! Integration tests: a real `GrpcServer` on 127.0.0.1:0 driven by tonic clients.

mod access;
mod chat;
mod errors;
mod orders;
mod pets;
mod rate;
mod schema;
mod server;
mod support;
