//! Integration tests: real servers (streamable HTTP on 127.0.0.1:0, stdio over an
//! in-process pipe) driven by the rmcp client, speaking the current protocol
//! (2026-07-28) and 2025-11-25.

mod access;
mod http;
mod metadata;
mod prompts;
mod resources;
mod shutdown;
mod stdio;
mod support;
mod tools;
