#![doc = include_str!("../README.md")]

mod auth;
mod client;
mod edge;
mod health;
mod json;
mod problem;
mod rate;
mod request_id;

pub use auth::{Caller, Challenge};
pub use client::{InvalidProxy, TrustedProxies};
pub use edge::{Edge, EdgeLayer, EdgeService, Render};
pub use health::{CheckOutcome, Health, Readiness};
pub use json::{is_json, media_type, require_json};
pub use problem::{
    INTERNAL_ERROR_TEXT, PROBLEM_JSON, PROBLEM_TYPE_PREFIX, Problem, ensure_problem,
    problem_response, status_of,
};
pub use rate::{RATELIMIT, RATELIMIT_POLICY, set_rate_limit_headers};
pub use request_id::X_REQUEST_ID;
