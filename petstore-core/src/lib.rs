#![doc = include_str!("../README.md")]

mod auth;
mod chat;
mod error;
mod event;
mod id;
mod log;
mod memory;
mod money;
mod order;
mod pet;
mod rate;
mod rules;
mod service;
mod store;
mod user;

pub mod seed;
#[cfg(feature = "testing")]
pub mod testing;

pub use auth::{AccessToken, Principal, Scope, TokenAuthority};
pub use chat::{ChatMessage, NewChatMessage, ROOM_PATTERN, is_room_name};
pub use error::{Error, ErrorKind, FieldError, Result};
pub use event::{Channel, Event, EventFilter, EventType, ResetReason, ResumeToken, TypePattern};
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
pub use service::{MAX_EVENT_READ, NoticeOutcome, Page, PetStore, Placed, ServiceConfig};
pub use store::{Change, Expect, IdempotencyRecord, NewEvent, Snapshot, Store, Write, envelope};
pub use user::{Credentials, User};

/// Re-exported so that adapters name the same versions.
pub use chrono;
pub use rust_decimal;
pub use schemars;
