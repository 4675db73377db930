//! Listings filter exactly as `PetQuery::matches` / `OrderQuery::matches` and page in
//! id order; the inventory equals counting the pets. Random catalogues and queries,
//! compared with the domain's own filter over every stored pet.

use chrono::Utc;
use petstore_core::backend::{Change, Expect, Store, Write};
use petstore_core::{
    Currency, Inventory, Money, Order, OrderId, OrderQuery, OrderStatus, Pet, PetId, PetQuery,
    PetStatus,
};
use petstore_sql::SqlStore;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

use crate::support::{connect, postgres_cluster, postgres_url, sqlite_url};

#[derive(Debug, Clone)]
struct PetSpec {
    name: &'static str,
    species: &'static str,
    breed: Option<&'static str>,
    tags: Vec<&'static str>,
    status: PetStatus,
}

fn status() -> impl Strategy<Value = PetStatus> {
    prop_oneof![
        Just(PetStatus::Available),
        Just(PetStatus::Pending),
        Just(PetStatus::Sold)
    ]
}

fn pet_spec() -> impl Strategy<Value = PetSpec> {
    (
        prop::sample::select(vec!["Rex", "rexie", "Tom", "ÉMILE", "émile", "Bo"]),
        prop::sample::select(vec!["dog", "Dog", "DOG", "cat", "émeu", "Émeu"]),
        prop::option::of(prop::sample::select(vec!["Boxer", "tabby", "Émeu"])),
        prop::collection::vec(prop::sample::select(vec!["a", "b", "B", "ém", "Ém"]), 0..3),
        status(),
    )
        .prop_map(|(name, species, breed, tags, status)| PetSpec {
            name,
            species,
            breed,
            tags,
            status,
        })
}

fn pet_query() -> impl Strategy<Value = PetQuery> {
    (
        prop::option::of(status()),
        prop::option::of(prop::sample::select(vec![
            "dog", "DOG", "Cat", "émeu", "ÉMEU",
        ])),
        prop::option::of(prop::sample::select(vec!["a", "B", "ém", "ÉM", "x"])),
        prop::option::of(prop::sample::select(vec![
            "re", "RE", "o", "émi", "ÉMI", "box", "b",
        ])),
    )
        .prop_map(|(status, species, tag, q)| {
            let mut query = PetQuery::default();
            query.status = status;
            query.species = species.map(str::to_owned);
            query.tag = tag.map(str::to_owned);
            query.q = q.map(str::to_owned);
            query
        })
}

fn pet(spec: &PetSpec) -> Pet {
    // Built directly, not through validation's normalisation: the filter must agree
    // with `matches` on whatever is stored.
    Pet {
        id: PetId::generate(),
        name: spec.name.to_owned(),
        species: spec.species.to_owned(),
        breed: spec.breed.map(str::to_owned),
        age: None,
        status: spec.status,
        tags: spec.tags.iter().map(|t| (*t).to_owned()).collect(),
        photo_urls: vec![],
        price: Money::parse("1.00", Currency::USD).unwrap(),
        created_at: Utc::now(),
        updated_at: Utc::now(),
        version: 1,
    }
}

async fn pages_of_pets(store: &SqlStore, query: &PetQuery, page: usize) -> Vec<PetId> {
    let mut out = Vec::new();
    let mut after: Option<PetId> = None;
    loop {
        let got = store.pets(query, after.as_ref(), page).await.unwrap().items;
        assert!(got.len() <= page);
        out.extend(got.iter().map(|p| p.id.clone()));
        match got.last() {
            Some(last) if got.len() == page => after = Some(last.id.clone()),
            _ => return out,
        }
    }
}

async fn run(url: String, specs: Vec<PetSpec>, queries: Vec<(PetQuery, usize)>) {
    let store = connect(&url, petstore_core::LogConfig::default()).await;
    let mut pets = Vec::new();
    for spec in &specs {
        let pet = pet(spec);
        store
            .commit(
                Change::new().write(Write::PutPet {
                    pet: pet.clone(),
                    expect: Expect::Absent,
                }),
                "/t",
            )
            .await
            .unwrap();
        pets.push(pet);
    }
    pets.sort_by(|a, b| a.id.cmp(&b.id));
    for (query, page) in &queries {
        let want: Vec<PetId> = pets
            .iter()
            .filter(|p| query.matches(p))
            .map(|p| p.id.clone())
            .collect();
        assert_eq!(
            pages_of_pets(&store, query, *page).await,
            want,
            "{query:?} page {page}"
        );
    }
    assert_eq!(
        store.inventory().await.unwrap().items,
        Inventory::count(&pets)
    );

    // Orders: by status and by pet, in id order.
    let mut orders = Vec::new();
    for (i, pet) in pets.iter().enumerate() {
        let order = Order {
            id: OrderId::generate(),
            pet_id: pet.id.clone(),
            quantity: 1,
            total: Money::parse("1.00", Currency::USD).unwrap(),
            status: [
                OrderStatus::Placed,
                OrderStatus::Approved,
                OrderStatus::Cancelled,
            ][i % 3],
            customer: "c".into(),
            payment_id: None,
            created_at: Utc::now(),
            updated_at: Utc::now(),
            version: 1,
        };
        store
            .commit(
                Change::new().write(Write::PutOrder {
                    order: order.clone(),
                    expect: Expect::Absent,
                }),
                "/t",
            )
            .await
            .unwrap();
        orders.push(order);
    }
    let mut queries = vec![
        OrderQuery::default(),
        OrderQuery::default().status(OrderStatus::Approved),
    ];
    if let Some(first) = pets.first() {
        let mut by_pet = OrderQuery::default();
        by_pet.pet_id = Some(first.id.clone());
        queries.push(by_pet);
    }
    for query in queries {
        let want: Vec<&Order> = orders.iter().filter(|o| query.matches(o)).collect();
        let got = store.orders(&query, None, 100).await.unwrap().items;
        assert_eq!(got.iter().collect::<Vec<_>>(), want, "{query:?}");
    }
}

fn check(cases: u32, url: impl Fn() -> String) {
    let strategy = (
        prop::collection::vec(pet_spec(), 0..25),
        prop::collection::vec((pet_query(), 1usize..6), 1..6),
    );
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    });
    runner
        .run(&strategy, |(specs, queries)| {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap()
                .block_on(run(url(), specs, queries));
            Ok(())
        })
        .unwrap();
}

#[test]
fn sqlite_listings_filter_as_the_domain_does() {
    check(24, sqlite_url);
}

#[test]
fn postgres_listings_filter_as_the_domain_does() {
    let Some(cluster) = postgres_cluster() else {
        return;
    };
    check(12, || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(postgres_url(&cluster))
    });
}
