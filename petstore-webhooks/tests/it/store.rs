//! The webhook store's behaviour suite on the in-memory store.

use petstore_webhooks::MemoryWebhookStore;

petstore_webhooks::webhook_store_behaviour_tests!(|| async { MemoryWebhookStore::new() });
