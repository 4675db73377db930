//! Run with: cargo run --release -p petstore-bench
fn main() {}
