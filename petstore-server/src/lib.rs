#![doc = include_str!("../README.md")]

pub mod asyncapi;
pub mod config;
mod connections;
mod http;
pub mod jwks;
mod server;
pub mod telemetry;

pub use server::{
    Cli, Command, RunningServer, SHUTDOWN_GRACE, ServerArgs, Stopped, build_store, edge, health,
    http_router, shutdown_signal, start, start_with_store, webhooks,
};
