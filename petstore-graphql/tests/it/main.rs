//! Integration tests of petstore-graphql over a real listener (one test binary).

mod common;
mod errors;
mod http;
mod limits;
mod sdl;
mod subscriptions;
