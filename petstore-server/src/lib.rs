#![doc = include_str!("../README.md")]

pub mod asyncapi;
pub mod config;
mod connections;
mod http;
pub mod jwks;
mod log_format;
mod log_writer;
#[cfg(feature = "otlp")]
mod otlp;
mod server;
mod shared_bridge;
pub mod telemetry;

pub use server::{
    Cli, Command, RunningServer, SHUTDOWN_GRACE, ServerArgs, Stopped, Storage, build_store, edge,
    health, http_router, open_storage, shutdown_signal, start, start_with_store, webhooks,
};
