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
