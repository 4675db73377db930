//! Integration tests of the HTTP edge over real connections.

mod edge;
mod health;
