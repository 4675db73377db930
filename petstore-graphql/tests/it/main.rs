//! Integration tests of petstore-graphql over a real listener (one test binary).

mod access;
mod common;
mod errors;
mod http;
mod limits;
mod rate;
mod sdl;
mod shutdown;
mod subscriptions;
