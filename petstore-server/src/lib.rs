#![doc = include_str!("../README.md")]

pub mod asyncapi;
mod connections;
mod http;
pub mod jwks;
mod server;
mod shared_bridge;

pub use server::{
    Cli, Command, RunningServer, SHUTDOWN_GRACE, ServerArgs, Storage, build_store, edge, health,
    http_router, open_storage, shutdown_signal, start, webhooks,
};
