#![doc = include_str!("../README.md")]

mod config;
mod dispatch;
mod inbound;
mod registry;
mod routes;
mod signing;
mod target;
mod webhooks;

pub use config::WebhookConfig;
pub use signing::{
    InvalidSecret, Signer, Verified, VerifyError, WEBHOOK_ID, WEBHOOK_SIGNATURE, WEBHOOK_TIMESTAMP,
    WebhookSecret,
};
pub use webhooks::{DispatcherHandle, Webhooks};
