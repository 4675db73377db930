#![doc = include_str!("../README.md")]

mod config;
mod extract;
mod handlers;
mod openapi;
mod problem;
mod rate;
mod routes;

pub use config::RestConfig;
pub use problem::{problem_response, status_for};
pub use routes::{openapi_document, router};
