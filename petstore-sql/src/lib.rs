#![doc = include_str!("../README.md")]

mod dialect;
mod error;
mod follow;
mod lease;
mod outbox;
mod state;
mod store;
#[cfg(feature = "testing")]
pub mod testing;
#[cfg(feature = "webhooks")]
mod webhooks;

pub use dialect::Dialect;
pub use store::{SqlOptions, SqlStore};
#[cfg(feature = "webhooks")]
pub use webhooks::SqlWebhookStore;
