//! Integration tests: real servers on 127.0.0.1:0, real SSE (reqwest +
//! eventsource-stream) and WebSocket (tokio-tungstenite) clients.

mod shutdown;
mod slow;
mod sse;
mod support;
mod ws;
