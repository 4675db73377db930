#![doc = include_str!("../README.md")]

pub mod asyncapi;
mod connections;
mod http;
pub mod jwks;
mod server;

pub use server::{
    Cli, Command, RunningServer, SHUTDOWN_GRACE, ServerArgs, build_store, http_router, request_timeout,
    shutdown_signal, start, webhooks,
};
