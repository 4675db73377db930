#![doc = include_str!("../README.md")]

mod config;
mod error;
mod metadata;
mod prompt;
mod resources;
mod server;
mod stdio;
mod tools;
mod web;

pub use config::McpConfig;
pub use server::PetStoreMcp;
pub use stdio::{serve_io, serve_stdio};
pub use web::router;
