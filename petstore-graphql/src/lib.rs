#![doc = include_str!("../README.md")]

mod config;
mod error;
mod graphiql;
mod http;
mod limits;
mod schema;
mod types;
mod ws;

pub use config::GraphQlConfig;
pub use http::router;
pub use schema::{Context, Mutation, Query, Schema, Subscription, schema, sdl};
