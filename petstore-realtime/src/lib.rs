#![doc = include_str!("../README.md")]

mod config;
mod error;
mod feed;
mod frame;
mod quota;
mod recent;
mod routes;
mod sse;
mod ws;

pub use config::RealtimeConfig;
pub use routes::router;

/// Parses one WebSocket text frame as the connection handler does: `Ok` for a valid
/// client frame, `Err(code)` with the error frame's code otherwise. For fuzzing; not a
/// stable API.
#[doc(hidden)]
pub fn __parse_client_frame(text: &str) -> Result<(), &'static str> {
    frame::parse(text).1.map(|_| ()).map_err(|e| e.code)
}
