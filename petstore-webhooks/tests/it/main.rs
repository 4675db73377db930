//! Integration tests of petstore-webhooks: one binary, real servers on loopback ports.

mod inbound;
mod management;
mod outbound;
mod restart;
mod signing;
mod ssrf;
mod store;
mod support;
