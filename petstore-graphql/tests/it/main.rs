//! Integration tests of petstore-graphql over a real listener (one test binary).

mod access;
mod common;
mod errors;
mod graphiql;
mod http;
mod limits;
mod rate;
mod sdl;
mod shutdown;
mod subscriptions;
