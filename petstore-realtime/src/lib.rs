#![doc = include_str!("../README.md")]

mod config;
mod error;
mod feed;
mod frame;
mod routes;
mod sse;
mod ws;

pub use config::RealtimeConfig;
pub use routes::router;
