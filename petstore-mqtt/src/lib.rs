#![doc = include_str!("../README.md")]

mod bridge;
mod commands;
mod config;
mod inflight;
mod link;
mod topics;

#[cfg(feature = "broker")]
pub mod broker;

pub use bridge::{Bridge, BridgeHandle, BridgeStatus};
pub use config::{MqttConfig, MqttVersion, Password, QoS, StartFrom};

/// Runs one inbound command exactly as the bridge does (topic routing, payload
/// parsing, the core command) and returns the reply payload it would publish; `None`
/// when `topic` is not a command topic under `prefix`. For fuzzing and tests of the
/// command path without a broker; not a stable API.
#[doc(hidden)]
pub async fn __run_command(
    store: &petstore_core::PetStore,
    who: &petstore_core::Principal,
    prefix: &str,
    topic: &str,
    payload: &[u8],
) -> Option<serde_json::Value> {
    commands::run(store, who, prefix, topic, payload)
        .await
        .map(|result| commands::reply(&result))
}
