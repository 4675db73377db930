#![doc = include_str!("../README.md")]

mod config;
mod extract;
mod handlers;
mod openapi;
mod routes;

pub use config::RestConfig;
pub use routes::{openapi_document, router};
