//! The in-memory backend runs the shared behaviour suite.

petstore_core::store_behaviour_tests!(petstore_core::MemoryStore::new);
