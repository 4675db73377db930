//! Core hot paths, each beside a bare baseline measured in the same run:
//! - event append through the service (`create_pet`) vs a bare mutex-guarded Vec push
//!   plus broadcast send;
//! - fan-out of one event to N subscribers vs bare `tokio::sync::broadcast`;
//! - JSON encoding of the envelope vs a plain struct with the same fields.
//!
//! Run with: cargo bench -p petstore-core --bench core

// criterion_group! generates an undocumented public function.
#![allow(missing_docs)]

use std::sync::{Arc, Mutex};

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use futures_util::StreamExt;
use std::time::Duration;

use petstore_core::{
    Currency, EventFilter, LogConfig, MemoryStore, Money, NewPet, PetStore, Principal, Scope,
    ServiceConfig, TokenAuthority,
};
use serde::Serialize;

fn new_pet() -> NewPet {
    NewPet {
        name: "Rex".into(),
        species: "dog".into(),
        breed: Some("Beagle".into()),
        age: Some(2),
        status: None,
        tags: vec!["friendly".into()],
        photo_urls: vec![],
        price: Money::parse("100.00", Currency::USD).unwrap(),
    }
}

fn append(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut group = c.benchmark_group("append");
    let store = PetStore::in_memory();
    let who = Principal::new("bench", [Scope::PetsWrite]);
    group.bench_function("service_create_pet", |b| {
        b.to_async(&rt)
            .iter(|| async { store.create_pet(&who, new_pet()).await.unwrap() })
    });
    let bare: Arc<Mutex<Vec<Arc<String>>>> = Arc::default();
    let (tx, _rx) = tokio::sync::broadcast::channel::<Arc<String>>(1024);
    group.bench_function("bare_vec_push_and_broadcast", |b| {
        b.iter(|| {
            let event = Arc::new(serde_json::to_string(&new_pet()).unwrap());
            bare.lock().unwrap().push(event.clone());
            let _ = tx.send(event);
        })
    });
    group.finish();
}

fn fan_out(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut group = c.benchmark_group("fan_out");
    group.sample_size(20);
    for n in [10usize, 100, 1000] {
        group.bench_with_input(BenchmarkId::new("event_log", n), &n, |b, &n| {
            b.to_async(&rt).iter_custom(|iters| async move {
                // A ring as long as the run: this measures fan-out, not the lag cut-off.
                let ring = (iters as usize).max(1024);
                let store = PetStore::new(
                    MemoryStore::new(LogConfig::default().subscriber_buffer(ring).retention(ring)),
                    TokenAuthority::random(Duration::from_secs(60)),
                    ServiceConfig::default(),
                );
                let who = Principal::new("bench", [Scope::PetsWrite]);
                let mut tasks = Vec::new();
                for _ in 0..n {
                    let mut sub = store
                        .subscribe(&who, None, EventFilter::all())
                        .await
                        .unwrap();
                    tasks.push(tokio::spawn(async move {
                        for _ in 0..iters {
                            sub.next().await.unwrap().unwrap();
                        }
                    }));
                }
                let start = std::time::Instant::now();
                for _ in 0..iters {
                    store.create_pet(&who, new_pet()).await.unwrap();
                }
                for t in tasks {
                    t.await.unwrap();
                }
                start.elapsed()
            })
        });
        group.bench_with_input(BenchmarkId::new("bare_broadcast", n), &n, |b, &n| {
            b.to_async(&rt).iter_custom(|iters| async move {
                let (tx, _) =
                    tokio::sync::broadcast::channel::<Arc<String>>((iters as usize).max(1024));
                let mut tasks = Vec::new();
                for _ in 0..n {
                    let mut rx = tx.subscribe();
                    tasks.push(tokio::spawn(async move {
                        for _ in 0..iters {
                            rx.recv().await.unwrap();
                        }
                    }));
                }
                let start = std::time::Instant::now();
                for _ in 0..iters {
                    let _ = tx.send(Arc::new(serde_json::to_string(&new_pet()).unwrap()));
                    // Same back-pressure as the log: never more than the ring ahead.
                    tokio::task::yield_now().await;
                }
                for t in tasks {
                    t.await.unwrap();
                }
                start.elapsed()
            })
        });
    }
    group.finish();
}

#[derive(Serialize)]
struct PlainEnvelope {
    specversion: &'static str,
    id: String,
    r#type: &'static str,
    source: &'static str,
    time: String,
    subject: String,
    offset: String,
    datacontenttype: &'static str,
    data: petstore_core::Pet,
}

fn encode(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let store = PetStore::in_memory();
    let who = Principal::new("bench", [Scope::PetsWrite]);
    rt.block_on(store.create_pet(&who, new_pet())).unwrap();
    let event = rt
        .block_on(store.events(&who, None, 1, EventFilter::all(), std::time::Duration::ZERO))
        .unwrap()
        .events
        .remove(0);
    let plain = PlainEnvelope {
        specversion: "1.0",
        id: event.id().to_string(),
        r#type: "pet.created",
        source: "/petstore",
        time: event.time().to_rfc3339(),
        subject: event.subject().to_owned(),
        offset: event.offset().to_string(),
        datacontenttype: "application/json",
        data: event.data().pet().cloned().expect("a pet event"),
    };
    let mut group = c.benchmark_group("encode_envelope");
    // What `Event::json` pays once per event (after that it hands out the cached text).
    group.bench_function("event_to_json", |b| {
        b.iter(|| serde_json::to_string(&*event).unwrap())
    });
    group.bench_function("bare_plain_struct", |b| {
        b.iter(|| serde_json::to_string(&plain).unwrap())
    });
    group.finish();
}

criterion_group!(benches, append, fan_out, encode);
criterion_main!(benches);
