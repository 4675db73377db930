#![doc = include_str!("../README.md")]

pub mod backend;
mod config;
mod delivery;
mod dispatch;
mod dispatcher;
mod endpoints;
mod follow;
mod ids;
mod inbound;
mod lease;
mod local;
mod memory;
mod message_log;
mod messages;
mod openapi;
mod routes;
mod signing;
mod target;
#[cfg(feature = "testing")]
pub mod testing;
mod webhooks;

pub use backend::WebhookStore;
pub use config::WebhookConfig;
pub use ids::{AttemptId, EndpointId};
pub use memory::MemoryWebhookStore;
pub use openapi::openapi_fragment;
pub use signing::{
    InvalidSecret, Signer, Verified, VerifyError, WEBHOOK_ID, WEBHOOK_SIGNATURE, WEBHOOK_TIMESTAMP,
    WebhookSecret,
};
pub use webhooks::{DispatcherHandle, Webhooks};
