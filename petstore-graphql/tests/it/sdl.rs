//! The checked-in SDL is the live schema, and the schema covers the domain.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use graphql_parser::schema::{Definition, TypeDefinition};
use petstore_core::{
    Currency, EventFilter, Money, NewOrder, NewPet, OrderStatus, PaymentRequest, PetStatus,
    PetStore, Principal,
};
use serde_json::Value;

#[test]
fn checked_in_sdl_matches_the_live_schema() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("schema.graphql");
    let live = petstore_graphql::sdl();
    if std::env::var_os("UPDATE_SDL").is_some() {
        std::fs::write(&path, &live).expect("write schema.graphql");
    }
    let checked_in = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        checked_in == live,
        "schema.graphql is stale: run `UPDATE_SDL=1 cargo test -p petstore-graphql --test it sdl` and review the diff"
    );
}

/// Type name -> field (or enum value) name -> type as written in the SDL.
fn types(sdl: &str) -> BTreeMap<String, BTreeMap<String, String>> {
    let document = graphql_parser::parse_schema::<String>(sdl).expect("the SDL parses");
    let mut out = BTreeMap::new();
    for definition in document.definitions {
        let Definition::TypeDefinition(t) = definition else {
            continue;
        };
        let (name, members) = match t {
            TypeDefinition::Object(o) => (
                o.name,
                o.fields
                    .into_iter()
                    .map(|f| (f.name, f.field_type.to_string()))
                    .collect(),
            ),
            TypeDefinition::Enum(e) => (
                e.name,
                e.values
                    .into_iter()
                    .map(|v| (v.name, String::new()))
                    .collect(),
            ),
            TypeDefinition::InputObject(i) => (
                i.name,
                i.fields
                    .into_iter()
                    .map(|f| (f.name, f.value_type.to_string()))
                    .collect(),
            ),
            _ => continue,
        };
        out.insert(name, members);
    }
    out
}

fn camel_keys(json: &Value) -> BTreeSet<String> {
    json.as_object()
        .expect("a JSON object")
        .keys()
        .map(|k| juniper::to_camel_case(k).into_owned())
        .collect()
}

fn names(members: &BTreeMap<String, String>) -> BTreeSet<String> {
    members.keys().cloned().collect()
}

#[tokio::test]
async fn the_schema_covers_the_domain_types_and_the_contract() {
    let types = types(&petstore_graphql::sdl());

    // Enums carry exactly the core's values.
    let upper = |values: Vec<&str>| -> BTreeSet<String> {
        values.into_iter().map(str::to_uppercase).collect()
    };
    assert_eq!(
        names(&types["PetStatus"]),
        upper(PetStatus::ALL.iter().map(|s| s.as_str()).collect())
    );
    assert_eq!(
        names(&types["OrderStatus"]),
        upper(OrderStatus::ALL.iter().map(|s| s.as_str()).collect())
    );

    // Every field of the core's JSON shapes is in the GraphQL object of the same name.
    let store = PetStore::in_memory();
    let system = Principal::system("sdl");
    let since = store.head().await.unwrap();
    let pet = store
        .create_pet(
            &system,
            NewPet {
                name: "Domain".into(),
                species: "dog".into(),
                breed: Some("Mixed".into()),
                age: Some(1),
                status: None,
                tags: vec![],
                photo_urls: vec![],
                price: Money::parse("1.00", Currency::USD).unwrap(),
            },
        )
        .await
        .unwrap();
    let order = store
        .place_order(&system, NewOrder::new(pet.id.clone()), None)
        .await
        .unwrap()
        .order;
    let payment = store
        .pay_order(&system, &order.id, PaymentRequest::default())
        .await
        .unwrap();
    let inventory = store.inventory(&system).await.unwrap().items;
    let event = store
        .events(
            &system,
            Some(since),
            1,
            EventFilter::all(),
            Default::default(),
        )
        .await
        .unwrap()
        .events
        .remove(0);
    for (graphql, json) in [
        ("Pet", serde_json::to_value(&pet).unwrap()),
        ("Order", serde_json::to_value(&order).unwrap()),
        ("Payment", serde_json::to_value(&payment).unwrap()),
        ("Inventory", serde_json::to_value(inventory).unwrap()),
        ("Event", serde_json::to_value(&*event).unwrap()),
        ("Money", serde_json::to_value(pet.price).unwrap()),
    ] {
        let missing: Vec<_> = camel_keys(&json)
            .difference(&names(&types[graphql]))
            .cloned()
            .collect();
        assert!(missing.is_empty(), "GraphQL `{graphql}` lacks {missing:?}");
    }
    assert_eq!(types["Pet"]["id"], "ID!");
    assert_eq!(types["Pet"]["version"], "Int!", "no u64 in GraphQL");
    assert_eq!(
        types["Money"]["amount"], "String!",
        "money is a decimal string"
    );
    assert_eq!(
        types["Event"]["offset"], "String!",
        "the resume token is opaque"
    );

    // The contract's operations.
    let has = |root: &str, fields: &[&str]| {
        for field in fields {
            assert!(
                types[root].contains_key(*field),
                "{root}.{field} is missing"
            );
        }
    };
    has(
        "Query",
        &["pet", "pets", "order", "orders", "inventory", "events"],
    );
    has(
        "Mutation",
        &[
            "createPet",
            "updatePet",
            "deletePet",
            "placeOrder",
            "payOrder",
            "cancelOrder",
        ],
    );
    has("Subscription", &["events", "petChanged", "orderChanged"]);
    assert_eq!(types["Subscription"]["events"], "Event!");
    assert_eq!(
        types["Query"]["pet"], "Pet",
        "a missing pet is null plus an error"
    );
}

/// The GraphQL inputs state the rules the core declares on its types: every length,
/// count and bound of the JSON Schema of `NewPet` / `PetPatch` is in the description of
/// the GraphQL field (a GraphQL description cannot be generated from them, so this holds
/// the two together).
#[test]
fn input_descriptions_state_the_core_rules() {
    use petstore_core::schemars::schema_for;

    let sdl = petstore_graphql::sdl();
    let document = graphql_parser::parse_schema::<String>(&sdl).unwrap();
    let mut inputs: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    for definition in document.definitions {
        if let Definition::TypeDefinition(TypeDefinition::InputObject(input)) = definition {
            inputs.insert(
                input.name,
                input
                    .fields
                    .into_iter()
                    .map(|f| (f.name, f.description.unwrap_or_default()))
                    .collect(),
            );
        }
    }
    let camel = |name: &str| {
        let mut out = String::new();
        let mut upper = false;
        for c in name.chars() {
            if c == '_' {
                upper = true;
            } else if upper {
                out.extend(c.to_uppercase());
                upper = false;
            } else {
                out.push(c);
            }
        }
        out
    };
    let mut checked = 0;
    for (input, schema) in [
        (
            "NewPetInput",
            serde_json::to_value(schema_for!(NewPet)).unwrap(),
        ),
        (
            "PetPatchInput",
            serde_json::to_value(schema_for!(petstore_core::PetPatch)).unwrap(),
        ),
    ] {
        for (name, rule) in schema["properties"].as_object().unwrap() {
            let description = &inputs[input][&camel(name)];
            for rule in [rule, &rule["items"]] {
                for key in ["minLength", "maxLength", "maximum", "maxItems"] {
                    if let Some(n) = rule.get(key) {
                        assert!(
                            description.contains(&n.to_string()),
                            "{input}.{}: `{description}` does not say {key} {n}",
                            camel(name)
                        );
                        checked += 1;
                    }
                }
            }
        }
    }
    assert!(checked > 20, "{checked}");
    let amount = &inputs["MoneyInput"]["amount"];
    assert!(amount.contains("10000000.00") && amount.contains("2 fraction digits"));
}
