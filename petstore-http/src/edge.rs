//! [`Edge`]: what every HTTP adapter does before and after its own routes, as one tower
//! layer.

use std::convert::Infallible;
use std::fmt;
use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use axum::extract::{ConnectInfo, MatchedPath, Request};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures_util::FutureExt as _;
use futures_util::future::BoxFuture;
use petstore_core::telemetry;
use petstore_core::{PetStore, RateDecision, RateLimiter, RequestContext, TraceParent};
use tower::{Layer, Service, ServiceExt as _};
use tracing::Instrument as _;

use crate::auth::{Authentication, Challenge};
use crate::client::TrustedProxies;
use crate::problem::Problem;
use crate::rate::set_rate_limit_headers;
use crate::request_id::{RequestIds, X_REQUEST_ID};

/// How an adapter puts a [`Problem`] raised by the edge itself (two `Authorization`
/// headers, a spent rate limit, a panic) on the wire: problem+json by default; GraphQL
/// answers with a GraphQL error body instead.
pub type Render = fn(Problem) -> Response;

fn render_problem(problem: Problem) -> Response {
    problem.into_response()
}

/// The settings the HTTP adapters of one server share: the rate limiter (one budget
/// per caller across every adapter given the same `Edge`), which proxies are trusted,
/// and what the bearer challenge says. Cheap to clone.
///
/// Each adapter wraps its router in [`Edge::layer`]; for every request the layer:
///
/// - takes a sane incoming `x-request-id` or makes one, and echoes it in the response;
/// - finds the client's address ([`TrustedProxies`]);
/// - runs the rest of the request inside a [`RequestContext`] (request id, client
///   address, a valid incoming `traceparent`);
/// - refuses two `Authorization` headers (400) and authenticates the one header once,
///   leaving the outcome for the routes ([`crate::Caller`]);
/// - counts the request against its caller's budget (429 when spent, `RateLimit`
///   headers on every answer);
/// - answers a panicking handler with a 500 problem;
/// - gives every 401 the one `WWW-Authenticate` challenge, and a 403 for a missing
///   scope its `insufficient_scope` one.
///
/// A request that already passed an edge layer (an adapter mounted inside an app that
/// has its own) goes through untouched.
///
/// ```
/// use std::sync::Arc;
/// use petstore_core::{PetStore, RateLimitConfig, RateLimiter};
/// use petstore_http::{Edge, TrustedProxies};
///
/// let limiter = Arc::new(RateLimiter::new(RateLimitConfig::default()));
/// let edge = Edge::new()
///     .rate_limiter(limiter)
///     .trusted_proxies("10.0.0.0/8".parse().unwrap());
/// let app: axum::Router = axum::Router::new()
///     .route("/hello", axum::routing::get(|| async { "hi" }))
///     .layer(edge.layer(PetStore::in_memory()));
/// # drop(app);
/// ```
#[derive(Clone)]
pub struct Edge {
    realm: Arc<str>,
    trusted_proxies: TrustedProxies,
    limiter: Option<Arc<RateLimiter>>,
    resource_metadata: Option<Arc<str>>,
    ids: RequestIds,
}

impl fmt::Debug for Edge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Edge")
            .field("realm", &self.realm)
            .field("trusted_proxies", &self.trusted_proxies)
            .field("limiter", &self.limiter)
            .field("resource_metadata", &self.resource_metadata)
            .finish_non_exhaustive()
    }
}

impl Default for Edge {
    fn default() -> Self {
        Self {
            realm: "petstore".into(),
            trusted_proxies: TrustedProxies::none(),
            limiter: None,
            resource_metadata: None,
            ids: RequestIds::new(),
        }
    }
}

impl Edge {
    /// No rate limit, no trusted proxy, realm `petstore`.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the `realm` of the bearer challenge.
    pub fn realm(mut self, realm: impl Into<String>) -> Self {
        self.realm = realm.into().into();
        self
    }

    /// Sets which proxies' forwarding headers are believed (default: none).
    pub fn trusted_proxies(mut self, proxies: TrustedProxies) -> Self {
        self.trusted_proxies = proxies;
        self
    }

    /// Counts every request against `limiter`: hand the same limiter (and the same
    /// `Edge`) to every adapter, and to gRPC, for one budget per caller. Callers are
    /// keyed by token subject, anonymous ones (and rejected tokens) by client address;
    /// without a known address they share one bucket, so serve the app with
    /// `into_make_service_with_connect_info::<SocketAddr>()`.
    pub fn rate_limiter(mut self, limiter: Arc<RateLimiter>) -> Self {
        self.limiter = Some(limiter);
        self
    }

    /// The same edge without a rate limit.
    pub fn without_rate_limit(mut self) -> Self {
        self.limiter = None;
        self
    }

    /// Points the challenge of every 401 at the OAuth protected-resource metadata
    /// (RFC 9728) at `url`: an absolute URL, or a path (`/.well-known/…`) that is
    /// completed with `http://` and the request's `Host` (configure the absolute URL
    /// behind TLS or a proxy).
    pub fn resource_metadata(mut self, url: impl Into<String>) -> Self {
        self.resource_metadata = Some(url.into().into());
        self
    }

    /// The rate limiter, when one is set and enabled.
    pub fn limiter(&self) -> Option<&Arc<RateLimiter>> {
        self.limiter.as_ref().filter(|l| l.is_enabled())
    }

    /// The trusted proxies.
    pub fn proxies(&self) -> &TrustedProxies {
        &self.trusted_proxies
    }

    /// The layer that puts this edge in front of an adapter's routes, with problems it
    /// raises itself rendered as `application/problem+json`.
    pub fn layer(&self, store: PetStore) -> EdgeLayer {
        self.layer_with(store, render_problem)
    }

    /// [`Edge::layer`], with the edge's own problems rendered by `render`.
    pub fn layer_with(&self, store: PetStore, render: Render) -> EdgeLayer {
        EdgeLayer {
            shared: Arc::new(Shared {
                edge: self.clone(),
                service: store,
                render,
                metrics: telemetry::RequestMetrics::new("http"),
            }),
        }
    }

    /// The `WWW-Authenticate` value for `challenge` on a request to `authority` (the
    /// `Host`, used to complete a resource-metadata path).
    pub fn challenge(&self, challenge: Challenge, authority: Option<&str>) -> HeaderValue {
        let metadata = self.resource_metadata.as_deref().and_then(|url| {
            if !url.starts_with('/') {
                return Some(url.to_owned());
            }
            let host = authority
                .filter(|a| !a.contains('@') && a.parse::<axum::http::uri::Authority>().is_ok())?;
            Some(format!("http://{host}{url}"))
        });
        challenge.header_value(&self.realm, metadata.as_deref())
    }
}

struct Shared {
    edge: Edge,
    service: PetStore,
    render: Render,
    /// The request counter and latency handles, registered once per route and status.
    metrics: telemetry::RequestMetrics,
}

/// The tower layer of an [`Edge`] ([`Edge::layer`]).
#[derive(Clone)]
pub struct EdgeLayer {
    shared: Arc<Shared>,
}

impl fmt::Debug for EdgeLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EdgeLayer")
            .field("edge", &self.shared.edge)
            .finish_non_exhaustive()
    }
}

impl<S> Layer<S> for EdgeLayer {
    type Service = EdgeService<S>;

    fn layer(&self, inner: S) -> EdgeService<S> {
        EdgeService {
            inner,
            shared: self.shared.clone(),
        }
    }
}

/// A service behind the [`EdgeLayer`].
#[derive(Clone)]
pub struct EdgeService<S> {
    inner: S,
    shared: Arc<Shared>,
}

impl<S> fmt::Debug for EdgeService<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EdgeService")
            .field("edge", &self.shared.edge)
            .finish_non_exhaustive()
    }
}

impl<S> Service<Request> for EdgeService<S>
where
    S: Service<Request, Error = Infallible> + Clone + Send + 'static,
    S::Response: IntoResponse,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Response, Infallible>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        // The service that was polled ready serves this request (tower's clone idiom);
        // `oneshot` polls it again, which a ready service answers at once.
        let clone = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, clone);
        if request.extensions().get::<Authentication>().is_some() {
            return Box::pin(async move {
                let Ok(response) = inner.oneshot(request).await;
                Ok(response.into_response())
            });
        }
        let shared = self.shared.clone();
        let edge = &shared.edge;
        let headers = request.headers();
        let peer = request
            .extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(addr)| addr.ip());
        let ip = edge.trusted_proxies.client_ip(peer, headers);
        let id = edge.ids.for_request(headers);
        let traceparent = headers
            .get("traceparent")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<TraceParent>().ok());
        let mut context = RequestContext::new()
            .with_request_id(id.clone())
            .with_traceparent(traceparent);
        if let Some(ip) = ip {
            context = context.with_client_ip(ip);
        }
        // The route template, never the path or the query: `?token=` stays out of logs
        // and metrics, and one label value per route keeps their cardinality bounded.
        // (`MatchedPath` is a shared string: cloning it allocates nothing.)
        let matched = request.extensions().get::<MatchedPath>().cloned();
        let method = method_label(request.method());
        let span = tracing::info_span!(
            "http_request",
            %method,
            route = %matched.as_ref().map_or("unmatched", MatchedPath::as_str),
            request_id = %id,
            sub = tracing::field::Empty,
        );
        #[cfg(feature = "opentelemetry")]
        if let Some(traceparent) = context.traceparent() {
            traceparent.continue_in(&span);
        }
        let serve = async move {
            let route = matched.as_ref().map_or("unmatched", MatchedPath::as_str);
            let started = Instant::now();
            let mut exit = Exit {
                id,
                authority: None,
                decision: None,
                rejected_token: false,
            };
            let response = serve(&shared, inner, request, ip, &mut exit).await;
            let response = finish(&shared.edge, response, &exit);
            let elapsed = started.elapsed();
            let status = response.status().as_u16();
            // Method and route are the span's, written with the line: not repeated.
            tracing::info!(
                status,
                latency_ms = elapsed.as_secs_f64() * 1000.0,
                "request finished"
            );
            shared
                .metrics
                .record(&[method, route], response.status().as_str(), elapsed);
            response
        };
        Box::pin(context.scope(serve.instrument(span)).map(Ok))
    }
}

/// The request method as logs and metrics name it: one of RFC 9110's methods and
/// `PATCH`, or `_OTHER` (as OpenTelemetry's conventions say) for any other token, so
/// that a client cannot add a metric series or a log value per made-up method.
fn method_label(method: &axum::http::Method) -> &'static str {
    use axum::http::Method;
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::CONNECT => "CONNECT",
        Method::OPTIONS => "OPTIONS",
        Method::TRACE => "TRACE",
        Method::PATCH => "PATCH",
        _ => "_OTHER",
    }
}

/// What the edge learns on the way in and needs on the way out.
struct Exit {
    id: Arc<str>,
    authority: Option<String>,
    decision: Option<RateDecision>,
    rejected_token: bool,
}

async fn serve<S>(
    shared: &Shared,
    inner: S,
    mut request: Request,
    ip: Option<std::net::IpAddr>,
    exit: &mut Exit,
) -> Response
where
    S: Service<Request, Error = Infallible> + Send + 'static,
    S::Response: IntoResponse,
    S::Future: Send + 'static,
{
    if shared.edge.resource_metadata.is_some() {
        exit.authority = request
            .headers()
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .or_else(|| request.uri().authority().map(|a| a.as_str()))
            .map(str::to_owned);
    }
    let auth = match Authentication::read(&shared.service, request.headers()) {
        Ok(auth) => auth,
        Err(problem) => return (shared.render)(problem),
    };
    exit.rejected_token = auth.rejected();
    if let Some(sub) = auth.subject() {
        tracing::Span::current().record("sub", sub);
    }
    if let Some(limiter) = shared.edge.limiter() {
        let decision = limiter.check(&auth.principal_or_anonymous(), ip);
        let refused = decision.error();
        exit.decision = Some(decision);
        if let Some(refused) = refused {
            return (shared.render)(Problem::from(refused));
        }
    }
    request.extensions_mut().insert(auth);
    match AssertUnwindSafe(inner.oneshot(request))
        .catch_unwind()
        .await
    {
        Ok(Ok(response)) => response.into_response(),
        Err(_) => {
            tracing::error!("a request handler panicked");
            (shared.render)(Problem::internal())
        }
    }
}

fn finish(edge: &Edge, mut response: Response, exit: &Exit) -> Response {
    let marked = response.extensions().get::<Challenge>().copied();
    let headers = response.headers_mut();
    if let Ok(id) = HeaderValue::from_str(&exit.id) {
        headers.insert(X_REQUEST_ID, id);
    }
    if let Some(decision) = &exit.decision {
        set_rate_limit_headers(headers, decision);
    }
    let challenge = match (response.status(), marked) {
        (StatusCode::UNAUTHORIZED, _) if exit.rejected_token => Some(Challenge::InvalidToken),
        (StatusCode::UNAUTHORIZED, marked) => Some(marked.unwrap_or(Challenge::Required)),
        (StatusCode::FORBIDDEN, Some(Challenge::InsufficientScope)) => {
            Some(Challenge::InsufficientScope)
        }
        _ => None,
    };
    if let Some(challenge) = challenge {
        let value = edge.challenge(challenge, exit.authority.as_deref());
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, value);
    }
    response
}
