#![doc = include_str!("../README.md")]

pub mod asyncapi;
pub mod jwks;
mod server;

pub use server::{
    Cli, Command, RunningServer, SHUTDOWN_GRACE, ServerArgs, build_store, http_router,
    shutdown_signal, start, webhooks,
};
