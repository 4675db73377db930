//! MQTT command messages (`petstore/commands/...`), through petstore-mqtt's real
//! command path (`__run_command`: topic routing, payload parsing, the core command)
//! against an in-memory store with the sample catalogue.
//!
//! Input: the first byte is the topic length, then the topic, then the payload.
//! Invariants: nothing panics; every command topic gets a reply `{"ok":true,...}` or
//! `{"ok":false,"error":{"code",...}}`; a refused command changes nothing.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use petstore_core::{PetStore, Principal, Scope};

struct World {
    runtime: tokio::runtime::Runtime,
    store: PetStore,
}

fn world() -> &'static World {
    static WORLD: OnceLock<World> = OnceLock::new();
    WORLD.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let store = PetStore::in_memory();
        runtime.block_on(async {
            let system = Principal::system("fuzz");
            for pet in petstore_core::seed::sample_pets() {
                store.create_pet(&system, pet).await.expect("seed");
            }
        });
        World { runtime, store }
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&len, rest)) = data.split_first() else {
        return;
    };
    let len = usize::from(len).min(rest.len());
    let (topic, payload) = rest.split_at(len);
    let Ok(topic) = std::str::from_utf8(topic) else {
        return;
    };
    let w = world();
    let who = Principal::new("mqtt-bridge", [Scope::PetsWrite, Scope::OrdersWrite]);
    w.runtime.block_on(async {
        let before = w.store.head().await.expect("head");
        let reply = petstore_mqtt::__run_command(&w.store, &who, "petstore/", topic, payload).await;
        let after = w.store.head().await.expect("head");
        match reply {
            None => {
                assert!(!topic.starts_with("petstore/commands/"), "{topic}");
                assert_eq!(before, after);
            }
            Some(reply) => match reply["ok"].as_bool() {
                Some(true) => assert!(reply.get("result").is_some(), "{reply}"),
                Some(false) => {
                    assert!(reply["error"]["code"].is_string(), "{reply}");
                    assert_eq!(before, after, "a refused command changed the store: {reply}");
                }
                None => panic!("reply without ok: {reply}"),
            },
        }
    });
});
