#![doc = include_str!("../README.md")]

// `prefixed_id!` names this crate `petstore_core` (derive attributes take a path as a
// string, where `$crate` does not expand), so the name must resolve here too.
extern crate self as petstore_core;

mod auth;
mod chat;
mod context;
mod error;
mod event;
mod id;
mod log;
mod memory;
mod money;
mod order;
#[cfg(feature = "opentelemetry")]
mod otel;
mod pet;
mod rate;
mod rules;
mod service;
mod user;

pub mod backend;
pub mod seed;
pub mod telemetry;
#[cfg(feature = "testing")]
pub mod testing;

pub use auth::{
    AccessToken, DEFAULT_MAX_TOKEN_LIFETIME, Hs256Verifier, JwksConfig, JwksVerifier, KeySource,
    Principal, Scope, TokenAuthority, TokenClaims, TokenVerifier,
};
pub use chat::{ChatMessage, NewChatMessage, ROOM_PATTERN, is_room_name};
pub use context::{RequestContext, TraceParent};
pub use error::{Error, ErrorKind, FieldError, Result};
pub use event::{
    Channel, Event, EventData, EventFilter, EventType, ResetReason, ResumeToken, TypePattern,
};
pub use id::{EventId, MessageId, OrderId, PaymentId, PetId};
pub use log::{EventBatch, EventLog, EventLogExt, LogConfig, Subscription};
pub use memory::MemoryStore;
pub use money::{Currency, Money};
pub use order::{
    IdempotencyKey, NewOrder, Order, OrderQuery, OrderStatus, Payment, PaymentNotice,
    PaymentRequest, PaymentStatus,
};
pub use pet::{Inventory, NewPet, Pet, PetPatch, PetQuery, PetStatus};
pub use rate::{GLOBAL_RATE_KEY, RateDecision, RateLimitConfig, RateLimiter, rate_key};
pub use service::{
    Followed, Follower, IfMatch, LoginConfig, MAX_EVENT_READ, NoticeOutcome, Page, PetStore,
    Placed, ServiceConfig,
};
pub use user::{Credentials, User};

/// What `prefixed_id!` expands to, so that its users need no direct dependency.
#[doc(hidden)]
pub mod __private {
    pub use schemars;
    pub use serde;
    pub use uuid;
}

/// Re-exported so that adapters name the same versions.
pub use chrono;
/// Re-exported for [`TokenVerifier`] implementations and [`JwksConfig::algorithms`].
pub use jsonwebtoken;
pub use rust_decimal;
pub use schemars;
