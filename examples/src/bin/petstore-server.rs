//! Run with: cargo run -p petstore-examples --bin petstore-server
fn main() {}
