//! The served OpenAPI 3.1 document: valid, complete, and the same route set as the
//! router.

use std::collections::BTreeSet;

use petstore_core::PetStore;
use petstore_rest::{RestConfig, openapi_document};
use reqwest::Method;
use serde_json::Value;

use crate::support::Server;

/// Every `$ref` in `v`.
fn refs<'a>(v: &'a Value, out: &mut Vec<&'a str>) {
    match v {
        Value::Object(map) => {
            for (k, v) in map {
                if k == "$ref" {
                    out.push(v.as_str().unwrap());
                } else {
                    refs(v, out);
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| refs(v, out)),
        _ => {}
    }
}

/// Resolves a local JSON pointer reference.
fn resolve<'a>(doc: &'a Value, reference: &str) -> Option<&'a Value> {
    let pointer = reference.strip_prefix('#')?;
    doc.pointer(pointer)
}

fn operations(doc: &Value) -> Vec<(String, String, &Value)> {
    let mut out = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            out.push((method.to_uppercase(), path.clone(), op));
        }
    }
    out
}

#[tokio::test]
async fn the_document_is_valid_openapi_3_1() {
    let s = Server::start().await;
    let text = s
        .client
        .get(s.url("/openapi.json"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let spec = oas3::from_json(&text).expect("the document parses as OpenAPI 3.1");
    assert_eq!(spec.openapi, "3.1.0");
    assert!(spec.components.is_some());
    let parsed_ops: usize = spec
        .paths
        .as_ref()
        .unwrap()
        .values()
        .map(|item| item.methods().into_iter().count())
        .sum();

    let doc: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        doc,
        openapi_document(&RestConfig::default(), &petstore_http::Edge::new())
    );
    let ops = operations(&doc);
    assert_eq!(parsed_ops, ops.len());

    // Every reference resolves.
    let mut all = Vec::new();
    refs(&doc, &mut all);
    assert!(all.len() > 50);
    for r in all {
        assert!(resolve(&doc, r).is_some(), "dangling $ref {r}");
    }

    // The contract's routes are all there.
    let have: BTreeSet<(String, String)> =
        ops.iter().map(|(m, p, _)| (m.clone(), p.clone())).collect();
    for (m, p) in [
        ("GET", "/v1/pets"),
        ("POST", "/v1/pets"),
        ("GET", "/v1/pets/{id}"),
        ("PUT", "/v1/pets/{id}"),
        ("PATCH", "/v1/pets/{id}"),
        ("DELETE", "/v1/pets/{id}"),
        ("GET", "/v1/inventory"),
        ("POST", "/v1/orders"),
        ("GET", "/v1/orders"),
        ("GET", "/v1/orders/{id}"),
        ("POST", "/v1/orders/{id}/cancel"),
        ("POST", "/v1/orders/{id}/payment"),
        ("POST", "/v1/orders/{id}/deliver"),
        ("POST", "/v1/auth/token"),
        ("GET", "/v1/events"),
        ("GET", "/v1/pets/changes"),
        ("GET", "/openapi.json"),
    ] {
        assert!(
            have.contains(&(m.to_owned(), p.to_owned())),
            "{m} {p} missing"
        );
    }

    let mut ids = BTreeSet::new();
    for (method, path, op) in &ops {
        let what = format!("{method} {path}");
        assert!(
            ids.insert(op["operationId"].as_str().unwrap()),
            "{what}: duplicate id"
        );
        assert!(
            op["summary"].is_string() && op["tags"][0].is_string(),
            "{what}"
        );
        // Path parameters match the template exactly.
        let in_template: BTreeSet<&str> = path
            .split('/')
            .filter_map(|s| s.strip_prefix('{')?.strip_suffix('}'))
            .collect();
        let params = op["parameters"].as_array().cloned().unwrap_or_default();
        let declared: BTreeSet<String> = params
            .iter()
            .filter(|p| p["in"] == "path")
            .map(|p| {
                assert_eq!(p["required"], true, "{what}");
                p["name"].as_str().unwrap().to_owned()
            })
            .collect();
        let in_template: BTreeSet<String> = in_template.into_iter().map(str::to_owned).collect();
        assert_eq!(declared, in_template, "{what}");
        for p in &params {
            assert!(p["schema"].is_object(), "{what}: {p}");
            assert!(p["schema"].get("anyOf").is_none(), "{what}: {p}");
        }
        // Responses: a success, an error default, problems for errors.
        let responses = op["responses"].as_object().unwrap();
        assert!(responses.keys().any(|k| k.starts_with('2')), "{what}");
        assert!(responses.contains_key("default"), "{what}");
        for (status, response) in responses {
            let response = match response.get("$ref") {
                Some(r) => resolve(&doc, r.as_str().unwrap()).unwrap(),
                None => response,
            };
            assert!(response["description"].is_string(), "{what} {status}");
            if status.starts_with('4') || status.starts_with('5') || status == "default" {
                assert!(
                    response["content"]["application/problem+json"]["schema"].is_object(),
                    "{what} {status}"
                );
            }
        }
        // Security: writes need the bearer scheme with their scope.
        let security = op["security"].as_array().unwrap();
        if *method != "GET" && !path.starts_with("/v1/auth") {
            assert_eq!(security.len(), 1, "{what}");
            assert!(security[0]["bearerAuth"][0].is_string(), "{what}");
        }
        if path.starts_with("/v1/") && !path.starts_with("/v1/auth") {
            assert!(
                responses.contains_key("401") && responses.contains_key("403"),
                "{what}"
            );
        }
        if op.get("requestBody").is_some() {
            for status in ["400", "413", "415", "422"] {
                assert!(responses.contains_key(status), "{what} lacks {status}");
            }
        }
    }
    assert_eq!(
        doc["components"]["securitySchemes"]["bearerAuth"]["scheme"],
        "bearer"
    );
    let schemas = doc["components"]["schemas"].as_object().unwrap();
    for name in [
        "Pet",
        "PetPage",
        "OrderPage",
        "NewPet",
        "PetPatch",
        "Order",
        "NewOrder",
        "Payment",
        "Event",
        "Problem",
        "Inventory",
        "AccessToken",
    ] {
        assert!(schemas.contains_key(name), "schema {name} missing");
    }
}

/// Fills path templates with ids of the right shape.
fn concrete(path: &str) -> String {
    path.replace("/pets/{id}", "/pets/pet_0")
        .replace("/orders/{id}", "/orders/ord_0")
        .replace("/payments/{id}", "/payments/pay_0")
}

#[tokio::test]
async fn the_router_serves_exactly_the_documented_routes() {
    let s = Server::start().await;
    let admin = s.admin();
    let ops = operations(&s.doc);
    let methods = [
        Method::GET,
        Method::POST,
        Method::PUT,
        Method::PATCH,
        Method::DELETE,
    ];
    let mut paths = BTreeSet::new();
    for (method, path, _) in &ops {
        assert!(!path.contains('{') || path.contains("/{id}"), "{path}");
        let url = concrete(path);
        let method = Method::from_bytes(method.as_bytes()).unwrap();
        let r = s
            .send(
                s.req(method.clone(), &url)
                    .bearer_auth(&admin)
                    .json(&serde_json::json!({})),
            )
            .await;
        assert_ne!(
            r.status, 405,
            "{method} {path} is documented but not served"
        );
        if r.status == 404 {
            assert_ne!(
                r.json()["code"],
                "no_route",
                "{method} {path} is not served"
            );
        }
        paths.insert(path.clone());
    }
    // No undocumented method on a documented path.
    for path in &paths {
        let documented: BTreeSet<&str> = s.doc["paths"][path]
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        for method in &methods {
            if documented.contains(method.as_str().to_ascii_lowercase().as_str()) {
                continue;
            }
            let r = s.send(s.req(method.clone(), &concrete(path))).await;
            assert_eq!(
                r.status, 405,
                "{method} {path} is served but not documented"
            );
        }
    }
    // And nothing under an undocumented path.
    for path in [
        "/v1",
        "/v1/pet",
        "/v1/orders/ord_0/refund",
        "/v1/webhooks",
        "/docs/x",
    ] {
        let r = s.send(s.get(path)).await;
        assert_eq!(r.problem(404), "no_route", "{path}");
    }
}

#[tokio::test]
async fn documented_schemas_describe_the_wire() {
    let s = Server::start().await;
    let pet = s.create_pet("Rex", "dog", &["a"]).await;
    let schemas = &s.doc["components"]["schemas"];
    let props = schemas["Pet"]["properties"].as_object().unwrap();
    for key in pet.as_object().unwrap().keys() {
        assert!(props.contains_key(key), "Pet.{key} undocumented");
    }
    let page = s.send(s.get("/v1/pets")).await.json();
    let props = schemas["PetPage"]["properties"].as_object().unwrap();
    for key in page.as_object().unwrap().keys() {
        assert!(props.contains_key(key), "PetPage.{key} undocumented");
    }
    let bad = s.send(s.get("/v1/pets/pet_0")).await.json();
    let props = schemas["Problem"]["properties"].as_object().unwrap();
    for key in bad.as_object().unwrap().keys() {
        assert!(props.contains_key(key), "Problem.{key} undocumented");
    }
    // Query parameters come from the core query types.
    let params: BTreeSet<&str> = s.doc["paths"]["/v1/pets"]["get"]["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        params,
        BTreeSet::from(["status", "species", "tag", "q", "limit", "cursor"])
    );
    let since = s.doc["paths"]["/v1/events"]["get"]["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "since")
        .unwrap();
    assert!(
        since["schema"]["$ref"]
            .as_str()
            .unwrap()
            .ends_with("ResumeToken")
    );
}

#[tokio::test]
async fn docs_page_and_the_document_follow_the_config() {
    let s = Server::start().await;
    let r = s.send(s.get("/docs")).await;
    assert_eq!(r.status, 200);
    assert!(r.header("content-type").unwrap().starts_with("text/html"));
    let without = Server::with(PetStore::in_memory(), RestConfig::default().docs(false)).await;
    for path in ["/docs", "/docs/assets/docs.js", "/docs/assets/docs.css"] {
        without.send(without.get(path)).await.problem(404);
        assert!(without.doc["paths"].get(path).is_none(), "{path}");
        assert!(s.doc["paths"].get(path).is_some(), "{path}");
    }
}

/// The page's own policy, no framing, no sniffing, no referrer; the policy's text.
fn assert_hardened(r: &crate::support::Resp, what: &str) -> String {
    let csp = r
        .header("content-security-policy")
        .unwrap_or_else(|| panic!("{what}: no policy"))
        .to_owned();
    assert!(csp.starts_with("default-src 'none'"), "{what}: {csp}");
    assert!(csp.contains("frame-ancestors 'none'"), "{what}: {csp}");
    for remote in ["http:", "https:", "*", "unsafe-inline", "unsafe-eval"] {
        assert!(!csp.contains(remote), "{what} allows {remote}: {csp}");
    }
    assert_eq!(
        r.header("x-content-type-options"),
        Some("nosniff"),
        "{what}"
    );
    assert_eq!(r.header("referrer-policy"), Some("no-referrer"), "{what}");
    csp
}

#[tokio::test]
async fn the_docs_page_loads_only_its_own_files_under_a_strict_policy() {
    let s = Server::start().await;
    let page = s.send(s.get("/docs")).await;
    let csp = assert_hardened(&page, "the page");
    assert!(csp.contains("script-src 'self';") && csp.contains("style-src 'self';"));
    assert!(
        csp.contains("connect-src 'self';"),
        "it calls this API: {csp}"
    );
    let html = String::from_utf8(page.body.to_vec()).unwrap();
    // Nothing inline that the policy would block, nothing remote.
    assert!(
        !html.contains("<style") && !html.contains(" style=\""),
        "inline style"
    );
    assert!(!html.contains("://"), "a remote reference");
    assert_eq!(
        html.matches("<script").count(),
        html.matches("<script src=\"").count(),
        "an inline script"
    );
    let referenced: Vec<&str> = [" src=\"", " href=\""]
        .iter()
        .flat_map(|needle| {
            html.match_indices(needle).map(|(at, _)| {
                let rest = &html[at + needle.len()..];
                &rest[..rest.find('"').unwrap()]
            })
        })
        .collect();
    assert_eq!(referenced, ["docs/assets/docs.js", "docs/assets/docs.css"]);
    for reference in referenced {
        // Relative to the page at /docs.
        let r = s.send(s.get(&format!("/{reference}"))).await;
        assert_eq!(r.status, 200, "{reference}");
        let csp = assert_hardened(&r, reference);
        assert_eq!(csp, "default-src 'none'; frame-ancestors 'none'");
        let kind = r.header("content-type").unwrap();
        let expected = if reference.ends_with(".js") {
            "text/javascript"
        } else {
            "text/css"
        };
        assert!(kind.starts_with(expected), "{reference}: {kind}");
        assert!(!r.body.is_empty());
    }
    // The script reads the document from beside the page.
    let script = s.send(s.get("/docs/assets/docs.js")).await;
    assert!(String::from_utf8_lossy(&script.body).contains("/openapi.json"));
}
