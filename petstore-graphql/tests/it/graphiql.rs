//! GraphiQL is served whole by the router: the page and every file it references come
//! from this server, byte for byte the vendored files, each with a policy that allows
//! nothing from elsewhere and no framing.

use petstore_graphql::GraphQlConfig;
use reqwest::StatusCode;
use reqwest::header::HeaderMap;

use crate::common::start;

/// The vendored files, as committed.
const FILES: [(&str, &[u8]); 6] = [
    (
        "react-18.3.1.production.min.js",
        include_bytes!("../../assets/graphiql/react-18.3.1.production.min.js"),
    ),
    (
        "react-dom-18.3.1.production.min.js",
        include_bytes!("../../assets/graphiql/react-dom-18.3.1.production.min.js"),
    ),
    (
        "graphiql-4.1.2.min.js",
        include_bytes!("../../assets/graphiql/graphiql-4.1.2.min.js"),
    ),
    (
        "graphiql-4.1.2.min.css",
        include_bytes!("../../assets/graphiql/graphiql-4.1.2.min.css"),
    ),
    ("boot.js", include_bytes!("../../assets/graphiql/boot.js")),
    ("page.css", include_bytes!("../../assets/graphiql/page.css")),
];

fn header<'a>(headers: &'a HeaderMap, name: &str) -> &'a str {
    headers
        .get(name)
        .unwrap_or_else(|| panic!("no {name} header"))
        .to_str()
        .unwrap()
}

/// Every response of GraphiQL: its own policy, no framing, no sniffing, no referrer.
fn assert_hardened(headers: &HeaderMap, what: &str) -> String {
    let csp = header(headers, "content-security-policy").to_owned();
    assert!(csp.contains("frame-ancestors 'none'"), "{what}: {csp}");
    assert!(csp.starts_with("default-src 'none'"), "{what}: {csp}");
    for remote in ["http:", "https:", "*", "unsafe-inline", "unsafe-eval"] {
        assert!(!csp.contains(remote), "{what} allows {remote}: {csp}");
    }
    assert_eq!(
        header(headers, "x-content-type-options"),
        "nosniff",
        "{what}"
    );
    assert_eq!(header(headers, "referrer-policy"), "no-referrer", "{what}");
    csp
}

/// The values of `attr="..."` in `html`.
fn attribute_values<'a>(html: &'a str, attr: &str) -> Vec<&'a str> {
    let needle = format!(" {attr}=\"");
    html.match_indices(&needle)
        .map(|(at, _)| {
            let rest = &html[at + needle.len()..];
            &rest[..rest.find('"').unwrap()]
        })
        .collect()
}

#[tokio::test]
async fn the_page_and_every_file_it_references_come_from_this_server() {
    let server = start(GraphQlConfig::default()).await;
    let page = server
        .client()
        .get(server.url("/graphiql"))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    let csp = assert_hardened(page.headers(), "the page");
    assert!(header(page.headers(), "content-type").starts_with("text/html"));
    assert!(csp.contains("script-src 'self';"), "{csp}");
    assert!(csp.contains("connect-src 'self';"), "{csp}");
    let html = page.text().await.unwrap();

    // Nothing inline that the policy would block, nothing remote.
    assert!(!html.contains("<style"), "inline <style>");
    assert!(!html.contains(" style=\""), "style attribute");
    assert!(!html.contains("://"), "a remote reference");
    assert_eq!(
        html.matches("<script").count(),
        html.matches("<script src=\"").count(),
        "an inline script"
    );
    // The nonce of the one <style> element GraphiQL adds is the policy's.
    let nonces = attribute_values(&html, "nonce");
    assert_eq!(nonces.len(), 1);
    assert!(
        csp.contains(&format!("style-src 'self' 'nonce-{}';", nonces[0])),
        "{csp}"
    );

    let mut referenced: Vec<&str> = attribute_values(&html, "src");
    referenced.extend(attribute_values(&html, "href"));
    assert_eq!(referenced.len(), FILES.len(), "{referenced:?}");
    for reference in referenced {
        // Relative to the page at /graphiql.
        let name = reference
            .strip_prefix("graphiql/assets/")
            .unwrap_or_else(|| panic!("{reference} is not under graphiql/assets/"));
        let (_, committed) = FILES
            .iter()
            .find(|(file, _)| *file == name)
            .unwrap_or_else(|| panic!("{name} is not a vendored file"));
        let response = server
            .client()
            .get(server.url(&format!("/{reference}")))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{reference}");
        let csp = assert_hardened(response.headers(), reference);
        assert_eq!(csp, "default-src 'none'; frame-ancestors 'none'");
        let kind = header(response.headers(), "content-type").to_owned();
        let expected = if name.ends_with(".js") {
            "text/javascript"
        } else {
            "text/css"
        };
        assert!(kind.starts_with(expected), "{reference}: {kind}");
        let cache = header(response.headers(), "cache-control").to_owned();
        // Versioned names are kept by browsers; ours are checked again.
        assert_eq!(
            cache.contains("immutable"),
            name.contains("-18.3.1") || name.contains("-4.1.2"),
            "{reference}: {cache}"
        );
        assert_eq!(
            &response.bytes().await.unwrap()[..],
            *committed,
            "{reference}"
        );
    }
}

#[tokio::test]
async fn each_page_gets_a_fresh_nonce() {
    let server = start(GraphQlConfig::default()).await;
    let mut seen = Vec::new();
    for _ in 0..3 {
        let page = server
            .client()
            .get(server.url("/graphiql"))
            .send()
            .await
            .unwrap();
        assert_eq!(header(page.headers(), "cache-control"), "no-store");
        let html = page.text().await.unwrap();
        let nonce = attribute_values(&html, "nonce")[0].to_owned();
        assert!(nonce.len() >= 32 && nonce.chars().all(|c| c.is_ascii_hexdigit()));
        assert!(!seen.contains(&nonce));
        seen.push(nonce);
    }
}

#[tokio::test]
async fn graphiql_can_be_switched_off_with_its_files() {
    let server = start(GraphQlConfig::default().graphiql(false)).await;
    for path in ["/graphiql", "/graphiql/assets/graphiql-4.1.2.min.js"] {
        let response = server.client().get(server.url(path)).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::NOT_FOUND, "{path}");
    }
    // Only the vendored files are served: nothing else under the assets path.
    let server = start(GraphQlConfig::default()).await;
    for path in [
        "/graphiql/assets/missing.js",
        "/graphiql/assets/graphiql.html",
        "/graphiql/assets/README.md",
        "/graphiql/assets/%2e%2e%2f%2e%2e%2fCargo.toml",
    ] {
        let response = server.client().get(server.url(path)).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::NOT_FOUND, "{path}");
    }
}
