//! Integration tests of petstore-core: the behaviour suite over the in-memory backend,
//! service rules (store failures included), identity-provider tokens, and property
//! tests.

mod faults;
mod follower;
mod jwks;
mod login;
mod ownership;
mod props;
mod service;

petstore_core::store_behaviour_tests!(petstore_core::MemoryStore::new);
