//! Integration tests: a real listener on 127.0.0.1, driven with reqwest.
//!
//! Every response goes through [`support::Server::send`], which also checks that its
//! status is documented for the operation in the served OpenAPI document and that
//! every error is `application/problem+json`.

mod access;
mod http;
mod openapi;
mod orders;
mod pets;
mod polling;
mod rate;
mod support;
