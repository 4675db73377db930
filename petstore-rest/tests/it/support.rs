//! A server on an ephemeral port and a client that checks every response against the
//! served OpenAPI document.

use std::time::Duration;

use axum::Router;
use petstore_core::{PetStore, Scope};
use petstore_http::Edge;
use petstore_rest::{RestConfig, router};
use reqwest::{Method, RequestBuilder, StatusCode, header::HeaderMap};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

pub(crate) const WAIT: Duration = Duration::from_secs(20);

pub(crate) struct Server {
    pub(crate) base: String,
    pub(crate) store: PetStore,
    pub(crate) client: reqwest::Client,
    pub(crate) doc: Value,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[derive(Debug)]
pub(crate) struct Resp {
    pub(crate) status: StatusCode,
    pub(crate) headers: HeaderMap,
    pub(crate) body: bytes::Bytes,
}

impl Resp {
    pub(crate) fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", String::from_utf8_lossy(&self.body)))
    }

    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Asserts the status and returns the JSON body (or Null when empty).
    #[track_caller]
    pub(crate) fn expect(&self, status: u16) -> Value {
        assert_eq!(
            self.status.as_u16(),
            status,
            "body: {}",
            String::from_utf8_lossy(&self.body)
        );
        if self.body.is_empty() {
            Value::Null
        } else {
            self.json()
        }
    }

    /// Asserts an error status and returns the problem's `code`.
    #[track_caller]
    pub(crate) fn problem(&self, status: u16) -> String {
        let p = self.expect(status);
        p["code"].as_str().unwrap_or_default().to_owned()
    }
}

impl Server {
    pub(crate) async fn start() -> Self {
        Self::with(PetStore::in_memory(), RestConfig::default()).await
    }

    pub(crate) async fn with(store: PetStore, config: RestConfig) -> Self {
        Self::with_edge(store, config, &Edge::new()).await
    }

    pub(crate) async fn with_edge(store: PetStore, config: RestConfig, edge: &Edge) -> Self {
        let app = router(store.clone(), config, edge, CancellationToken::new());
        Self::serve(store, app).await
    }

    /// A server whose router stops at `shutdown`.
    pub(crate) async fn with_shutdown(store: PetStore, shutdown: CancellationToken) -> Self {
        let app = router(store.clone(), RestConfig::default(), &Edge::new(), shutdown);
        Self::serve(store, app).await
    }

    /// Serves any app (e.g. the router nested under a prefix); the document is read
    /// from `<doc_prefix>/openapi.json`.
    pub(crate) async fn serve(store: PetStore, app: Router) -> Self {
        Self::serve_at(store, app, "").await
    }

    pub(crate) async fn serve_at(store: PetStore, app: Router, doc_prefix: &str) -> Self {
        Self::serve_inner(store, app, doc_prefix, false).await
    }

    /// Serves with `ConnectInfo<SocketAddr>`, as a server that rate-limits per client
    /// IP must.
    pub(crate) async fn with_connect_info(store: PetStore, edge: &Edge) -> Self {
        let app = router(
            store.clone(),
            RestConfig::default(),
            edge,
            CancellationToken::new(),
        );
        Self::serve_inner(store, app, "", true).await
    }

    async fn serve_inner(
        store: PetStore,
        app: Router,
        doc_prefix: &str,
        connect_info: bool,
    ) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            if connect_info {
                let service = app.into_make_service_with_connect_info::<std::net::SocketAddr>();
                axum::serve(listener, service).await.unwrap();
            } else {
                axum::serve(listener, app).await.unwrap();
            }
        });
        let client = reqwest::Client::builder().timeout(WAIT).build().unwrap();
        let base = format!("http://{addr}");
        // The listener is bound before serving starts, so this first request cannot
        // race the server.
        let doc = client
            .get(format!("{base}{doc_prefix}/openapi.json"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        Server {
            base,
            store,
            client,
            doc,
            task,
        }
    }

    /// A copy of this server whose client connects from another loopback address
    /// (`127.0.0.2`), to act as another client IP.
    pub(crate) fn via_other_ip(&self) -> Self {
        let client = reqwest::Client::builder()
            .timeout(WAIT)
            .local_address(std::net::IpAddr::from([127, 0, 0, 2]))
            .build()
            .unwrap();
        Server {
            base: self.base.clone(),
            store: self.store.clone(),
            client,
            doc: self.doc.clone(),
            // Only the original owns the server task.
            task: tokio::spawn(async {}),
        }
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub(crate) fn req(&self, method: Method, path: &str) -> RequestBuilder {
        self.client.request(method, self.url(path))
    }
    pub(crate) fn get(&self, path: &str) -> RequestBuilder {
        self.req(Method::GET, path)
    }
    pub(crate) fn post(&self, path: &str) -> RequestBuilder {
        self.req(Method::POST, path)
    }
    pub(crate) fn put(&self, path: &str) -> RequestBuilder {
        self.req(Method::PUT, path)
    }
    pub(crate) fn patch(&self, path: &str) -> RequestBuilder {
        self.req(Method::PATCH, path)
    }
    pub(crate) fn delete(&self, path: &str) -> RequestBuilder {
        self.req(Method::DELETE, path)
    }

    /// A token with `scopes`.
    pub(crate) fn token(&self, subject: &str, scopes: &[Scope]) -> String {
        self.store
            .tokens()
            .issue(subject, scopes.iter().copied())
            .unwrap()
            .access_token
    }

    pub(crate) fn admin(&self) -> String {
        self.token("root", &[Scope::Admin])
    }

    /// Sends, then checks the response against the document: the status is listed for
    /// the operation, and an error is a problem whose `status` is the HTTP status.
    pub(crate) async fn send(&self, request: RequestBuilder) -> Resp {
        let request = request.build().unwrap();
        let method = request.method().clone();
        let path = request.url().path().to_owned();
        let response = self.client.execute(request).await.unwrap();
        let resp = Resp {
            status: response.status(),
            headers: response.headers().clone(),
            body: response.bytes().await.unwrap(),
        };
        let status = resp.status.as_u16();
        if status >= 400 {
            assert_eq!(
                resp.header("content-type"),
                Some("application/problem+json"),
                "{method} {path} -> {status}"
            );
            let p = resp.json();
            assert_eq!(p["status"], status, "{p}");
            for key in ["type", "title", "detail", "code"] {
                assert!(p[key].is_string(), "problem without `{key}`: {p}");
            }
        }
        if let Some(op) = self.operation(&method, &path) {
            // Server errors may fall under the documented `default` problem response.
            let documented = op["responses"].get(status.to_string()).is_some()
                || (status >= 500 && op["responses"].get("default").is_some());
            assert!(
                documented,
                "{method} {path} answered {status}, which the document does not list for {}",
                op["operationId"]
            );
        }
        resp
    }

    /// The documented operation serving `method` `path`, preferring literal segments.
    pub(crate) fn operation(&self, method: &Method, path: &str) -> Option<&Value> {
        let method = if method == Method::HEAD {
            "get".to_owned()
        } else {
            method.as_str().to_ascii_lowercase()
        };
        let segments: Vec<&str> = path.split('/').collect();
        let mut best: Option<(usize, &Value)> = None;
        for (template, item) in self.doc["paths"].as_object()? {
            let t: Vec<&str> = template.split('/').collect();
            if t.len() != segments.len() {
                continue;
            }
            let mut literal = 0;
            let fits = t.iter().zip(&segments).all(|(t, s)| {
                if t.starts_with('{') {
                    true
                } else {
                    literal += 1;
                    t == s
                }
            });
            if fits && best.is_none_or(|(n, _)| literal > n) {
                best = Some((literal, item));
            }
        }
        best.and_then(|(_, item)| item.get(&method))
    }

    /// Creates a pet as admin; returns its JSON.
    pub(crate) async fn create_pet(&self, name: &str, species: &str, tags: &[&str]) -> Value {
        self.send(
            self.post("/v1/pets")
                .bearer_auth(self.admin())
                .json(&new_pet(name, species, tags)),
        )
        .await
        .expect(201)
    }
}

pub(crate) fn new_pet(name: &str, species: &str, tags: &[&str]) -> Value {
    json!({
        "name": name,
        "species": species,
        "tags": tags,
        "price": {"amount": "25.00", "currency": "USD"},
    })
}

/// The strong ETag of a version.
pub(crate) fn etag(version: u64) -> String {
    format!("\"{version}\"")
}
