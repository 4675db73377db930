#![doc = include_str!("../README.md")]

pub mod asyncapi;
pub mod jwks;
mod server;

pub use server::{
    Cli, Command, RunningServer, SHUTDOWN_GRACE, ServerArgs, build_store, edge, health,
    http_router, shutdown_signal, start, webhooks,
};
