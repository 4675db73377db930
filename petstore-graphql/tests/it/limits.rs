//! Depth, complexity and introspection limits, checked before anything runs.

use petstore_core::Scope;
use petstore_graphql::GraphQlConfig;
use reqwest::StatusCode;
use serde_json::json;

use crate::common::{codes, start};

#[tokio::test]
async fn a_deeply_nested_query_is_rejected_before_execution() {
    let server = start(GraphQlConfig::default()).await;
    // Depth 13, past the limit of 10.
    let deep = format!(
        "{{ {} id {} }}",
        "orders { nodes { pet { ".repeat(4),
        "} } } ".repeat(4)
    );
    let (status, body) = server.post(None, &deep, json!({})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(codes(&body["errors"]), ["QUERY_TOO_DEEP"], "{body:#}");
    assert!(body.get("data").is_none(), "nothing ran");

    // Absurd nesting never reaches a recursive parser.
    let bomb = format!("{}{}", "{ a ".repeat(50_000), "}".repeat(50_000));
    let server = start(GraphQlConfig::default().max_body_bytes(1 << 20)).await;
    let (status, body) = server.post(None, &bomb, json!({})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(codes(&body["errors"]), ["QUERY_TOO_DEEP"]);
    // And the server is still there.
    server
        .data(None, "{ viewer { authenticated } }", json!({}))
        .await;
}

#[tokio::test]
async fn the_depth_limit_is_configurable() {
    let server = start(GraphQlConfig::default().max_depth(3)).await;
    let ok = "{ pets { nodes { name } } }";
    let too_deep = "{ pets { nodes { price { amount } } } }";
    server.data(None, ok, json!({})).await;
    let (status, body) = server.post(None, too_deep, json!({})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(codes(&body["errors"]), ["QUERY_TOO_DEEP"]);
    // Fragments do not hide depth.
    let (_, body) = server
        .post(
            None,
            "{ pets { nodes { ...P } } } fragment P on Pet { price { amount } }",
            json!({}),
        )
        .await;
    assert_eq!(codes(&body["errors"]), ["QUERY_TOO_DEEP"]);
}

#[tokio::test]
async fn an_expensive_query_is_rejected_as_too_complex() {
    let server = start(GraphQlConfig::default()).await;
    // 30 aliased pages of 100 pets: about 12,000 fields.
    let aliases: String = (0..30)
        .map(|i| format!("p{i}: pets(first: 100) {{ nodes {{ id name species }} }} "))
        .collect();
    let (status, body) = server
        .post(None, &format!("{{ {aliases} }}"), json!({}))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(codes(&body["errors"]), ["QUERY_TOO_COMPLEX"], "{body:#}");

    // Variables count too.
    let query =
        "query($n: Int) { a: pets(first: $n) { nodes { id name species tags photoUrls } } }";
    server.data(None, query, json!({ "n": 10 })).await;
    let server = start(GraphQlConfig::default().max_complexity(50)).await;
    let (_, body) = server.post(None, query, json!({ "n": 10 })).await;
    assert_eq!(codes(&body["errors"]), ["QUERY_TOO_COMPLEX"]);

    // A fragment bomb (2^30 fields once expanded) is measured, not expanded.
    let mut bomb = String::from("{ ...F30 }\nfragment F0 on Query { viewer { subject } }\n");
    for i in 1..=30 {
        bomb.push_str(&format!(
            "fragment F{i} on Query {{ ...F{p} ...F{p} }}\n",
            p = i - 1
        ));
    }
    let (status, body) = server.post(None, &bomb, json!({})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(codes(&body["errors"]), ["QUERY_TOO_COMPLEX"]);
}

#[tokio::test]
async fn a_rejected_mutation_changes_nothing() {
    let server = start(GraphQlConfig::default().max_complexity(3)).await;
    let token = server.token(&[Scope::PetsWrite]);
    let before = server.pet_count().await;
    let (status, body) = server
        .post(
            Some(&token),
            "mutation { createPet(input: {name: \"Costly\", species: \"dog\", price: {amount: \"1\", currency: \"USD\"}}) { id name species status } }",
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(codes(&body["errors"]), ["QUERY_TOO_COMPLEX"]);
    assert_eq!(server.pet_count().await, before);
}

#[tokio::test]
async fn introspection_can_be_switched_off() {
    let query = "{ __schema { queryType { name } subscriptionType { name } } }";
    let server = start(GraphQlConfig::default()).await;
    let data = server.data(None, query, json!({})).await;
    assert_eq!(data["__schema"]["queryType"]["name"], "Query");
    assert_eq!(data["__schema"]["subscriptionType"]["name"], "Subscription");

    let server = start(GraphQlConfig::default().introspection(false)).await;
    let (status, body) = server.post(None, query, json!({})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(codes(&body["errors"]), ["INTROSPECTION_DISABLED"]);
    let (_, body) = server
        .post(None, "{ __type(name: \"Pet\") { name } }", json!({}))
        .await;
    assert_eq!(codes(&body["errors"]), ["INTROSPECTION_DISABLED"]);
    // `__typename` is not introspection.
    let data = server.data(None, "{ __typename }", json!({})).await;
    assert_eq!(data["__typename"], "Query");
}

#[tokio::test]
async fn the_full_graphiql_introspection_query_passes_the_default_limits() {
    let server = start(GraphQlConfig::default()).await;
    let query = r#"
      query IntrospectionQuery {
        __schema {
          queryType { name } mutationType { name } subscriptionType { name }
          types { ...FullType }
          directives { name description locations args { ...InputValue } }
        }
      }
      fragment FullType on __Type {
        kind name description
        fields(includeDeprecated: true) {
          name description args { ...InputValue } type { ...TypeRef } isDeprecated deprecationReason
        }
        inputFields { ...InputValue }
        interfaces { ...TypeRef }
        enumValues(includeDeprecated: true) { name description isDeprecated deprecationReason }
        possibleTypes { ...TypeRef }
      }
      fragment InputValue on __InputValue { name description type { ...TypeRef } defaultValue }
      fragment TypeRef on __Type {
        kind name ofType { kind name ofType { kind name ofType { kind name ofType {
          kind name ofType { kind name ofType { kind name ofType { kind name } } } } } } }
      }"#;
    let data = server.data(None, query, json!({})).await;
    let types = data["__schema"]["types"].as_array().unwrap();
    assert!(types.iter().any(|t| t["name"] == "PetChange"));
}

/// Introspection is measured too, under limits of its own: the standard introspection
/// query (GraphiQL's docs) runs, a 40-level `ofType` chain is refused before it runs.
#[tokio::test]
async fn deep_introspection_is_refused() {
    let server = start(GraphQlConfig::default()).await;
    // `ofType` as deep as graphql-js's introspection query goes.
    let standard = format!(
        "{{ __schema {{ types {{ name fields {{ name type {{ kind name {}kind name{} }} }} }} }} }}",
        "ofType { kind name ".repeat(9),
        " }".repeat(9)
    );
    let data = server.data(None, &standard, json!({})).await;
    assert!(data["__schema"]["types"].as_array().unwrap().len() > 10);

    let deep = format!(
        "{{ __schema {{ types {{ {}name{} }} }} }}",
        "ofType { ".repeat(40),
        " }".repeat(40)
    );
    let (status, body) = server.post(None, &deep, json!({})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(codes(&body["errors"]), ["QUERY_TOO_DEEP"], "{body:#}");
    assert!(body.get("data").is_none(), "nothing ran: {body:#}");
}
