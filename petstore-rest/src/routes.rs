//! The route table: one list of (method, path, handler, documentation) from which both
//! the router and the OpenAPI document are built.

use std::convert::Infallible;
use std::future::{Ready, ready};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request};
use axum::handler::Handler;
use axum::http::{HeaderName, HeaderValue, Method, StatusCode, header};
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodFilter, MethodRouter, on};
use bytes::Bytes;
use futures_util::future::Either;
use petstore_core::{
    AccessToken, Credentials, EventBatch, Inventory, NewOrder, NewPet, Order, OrderId, OrderQuery,
    Payment, PaymentId, PaymentRequest, Pet, PetId, PetPatch, PetQuery, PetStore, Scope,
};
use petstore_http::{
    Caller, Edge, Problem, RATELIMIT, RATELIMIT_POLICY, X_REQUEST_ID, ensure_problem,
};
use tokio_util::sync::CancellationToken;
use tower::{Layer, Service};
use tower_http::compression::CompressionLayer;
use tower_http::cors::{AllowOrigin, Any, CorsLayer};
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::timeout::TimeoutLayer;

use crate::config::RestConfig;
use crate::handlers::polling::{EventsQuery, PetChangesQuery};
use crate::handlers::{auth, meta, orders, pets, polling};
use crate::openapi::{self, Access, IDEMPOTENCY_KEY, IF_MATCH, IF_NONE_MATCH, Op, PageOf};

/// What every handler gets: one shared allocation, so that axum's clone of the state
/// for each request is one reference count (a `CancellationToken`'s clone takes a lock
/// shared by every core, which showed in the profile of a busy server).
#[derive(Debug, Clone)]
pub(crate) struct AppState(Arc<Shared>);

/// The state behind [`AppState`].
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) service: PetStore,
    pub(crate) config: RestConfig,
    pub(crate) openapi: Bytes,
    /// Cancelled when the server shuts down: long polls end.
    pub(crate) shutdown: CancellationToken,
}

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// One operation: where it is served, what serves it, how it is documented.
struct Route {
    method: Method,
    path: &'static str,
    handler: MethodRouter<AppState>,
    op: Op,
    /// Long polls get `max_poll_wait` on top of the request timeout.
    long_poll: bool,
}

impl Route {
    fn new<H, T>(method: Method, path: &'static str, handler: H, op: Op) -> Self
    where
        H: Handler<T, AppState>,
        T: 'static,
    {
        let filter = MethodFilter::try_from(method.clone())
            .unwrap_or_else(|_| unreachable!("the table uses standard methods"));
        Self {
            method,
            path,
            handler: on(filter, handler),
            op,
            long_poll: false,
        }
    }

    fn long_poll(mut self) -> Self {
        self.long_poll = true;
        self
    }
}

const JSON: &[&str] = &["application/json"];
const MERGE_PATCH: &[&str] = &["application/merge-patch+json", "application/json"];

/// The whole API.
fn table(config: &RestConfig) -> Vec<Route> {
    use Method as M;
    let pet_id = |op: Op| op.path_param::<PetId>("id", "The pet's id (`pet_…`).");
    let order_id = |op: Op| op.path_param::<OrderId>("id", "The order's id (`ord_…`).");
    let mut routes = vec![
        // ----- pets -----
        Route::new(
            M::GET,
            "/v1/pets",
            pets::list,
            Op::new("listPets", "pets", "List and search pets")
                .describe(
                    "Filters combine with AND. Pages follow `next_cursor` (pass it as `cursor`). \
                     `X-Event-Position` is the log position the page reflects: poll \
                     `/v1/pets/changes?since=` with it to follow changes without a gap.",
                )
                .access(Access::Read(Scope::PetsRead))
                .query::<PetQuery>()
                .reply::<PageOf<Pet>>(200, "A page of pets.", &["X-Event-Position"])
                .errors(&[422]),
        ),
        Route::new(
            M::POST,
            "/v1/pets",
            pets::create,
            Op::new("createPet", "pets", "Add a pet")
                .access(Access::Write(Scope::PetsWrite))
                .body::<NewPet>(JSON)
                .reply::<Pet>(201, "The new pet.", &["ETag", "Location"])
                .links_by_id(&["getPet", "replacePet", "updatePet", "deletePet"])
                .link_id_into_body("placeOrder", "pet_id"),
        ),
        Route::new(
            M::GET,
            "/v1/pets/{id}",
            pets::get,
            pet_id(Op::new("getPet", "pets", "Get a pet"))
                .access(Access::Read(Scope::PetsRead))
                .header(IF_NONE_MATCH)
                .reply::<Pet>(200, "The pet.", &["ETag"])
                .empty_reply(304, "Not modified (`If-None-Match` matched).", &["ETag"]),
        ),
        Route::new(
            M::PUT,
            "/v1/pets/{id}",
            pets::replace,
            pet_id(Op::new("replacePet", "pets", "Replace a pet's fields"))
                .describe(
                    "Optional fields left out are cleared; a missing `status` keeps the \
                     current one. A pet held by an order cannot change status (409).",
                )
                .access(Access::Write(Scope::PetsWrite))
                .header(IF_MATCH)
                .body::<NewPet>(JSON)
                .reply::<Pet>(200, "The pet after the change.", &["ETag"])
                .errors(&[409]),
        ),
        Route::new(
            M::PATCH,
            "/v1/pets/{id}",
            pets::update,
            pet_id(Op::new(
                "updatePet",
                "pets",
                "Change some of a pet's fields",
            ))
            .describe(
                "JSON merge patch (RFC 7396): absent fields stay, `null` clears `breed` \
                     or `age`. A pet held by an order cannot change status (409).",
            )
            .access(Access::Write(Scope::PetsWrite))
            .header(IF_MATCH)
            .body::<PetPatch>(MERGE_PATCH)
            .reply::<Pet>(200, "The pet after the change.", &["ETag"])
            .errors(&[409]),
        ),
        Route::new(
            M::DELETE,
            "/v1/pets/{id}",
            pets::delete,
            pet_id(Op::new("deletePet", "pets", "Remove a pet"))
                .describe("A pet held by an active order cannot be removed (409).")
                .access(Access::Write(Scope::PetsWrite))
                .header(IF_MATCH)
                .empty_reply(204, "Removed.", &[])
                .errors(&[409]),
        ),
        Route::new(
            M::GET,
            "/v1/pets/changes",
            polling::pet_changes,
            Op::new("pollPetChanges", "events", "Poll pet events")
                .describe(
                    "The `/v1/events` feed restricted to pet events. Follow `next` as `since`; \
                     with `wait` the request long-polls until an event arrives.",
                )
                .access(Access::Read(Scope::PetsRead))
                .query::<PetChangesQuery>()
                .reply::<EventBatch>(200, "Events after `since`, and the next token.", &[])
                .errors(&[410, 422]),
        )
        .long_poll(),
        // ----- store -----
        Route::new(
            M::GET,
            "/v1/inventory",
            pets::inventory,
            Op::new("getInventory", "store", "Pet counts per status")
                .describe("The `ETag` is the log position, so it changes whenever the counts may.")
                .access(Access::Read(Scope::PetsRead))
                .header(IF_NONE_MATCH)
                .reply::<Inventory>(200, "Counts per status.", &["ETag", "X-Event-Position"])
                .empty_reply(304, "Not modified (`If-None-Match` matched).", &["ETag"]),
        ),
        Route::new(
            M::POST,
            "/v1/orders",
            orders::create,
            Op::new("placeOrder", "store", "Order a pet")
                .describe(
                    "The pet must be `available` (else 409) and becomes `pending`. Honours \
                     `Idempotency-Key`.",
                )
                .access(Access::Write(Scope::OrdersWrite))
                .header(IDEMPOTENCY_KEY)
                .body::<NewOrder>(JSON)
                .reply::<Order>(
                    201,
                    "The order (also for a replay, then with `Idempotent-Replayed: true`).",
                    &["ETag", "Location", "Idempotent-Replayed"],
                )
                .links_by_id(&["getOrder", "cancelOrder", "payOrder", "deliverOrder"])
                .errors(&[404, 409]),
        ),
        Route::new(
            M::GET,
            "/v1/orders",
            orders::list,
            Op::new("listOrders", "store", "List orders")
                .access(Access::Read(Scope::OrdersRead))
                .query::<OrderQuery>()
                .reply::<PageOf<Order>>(200, "A page of orders.", &["X-Event-Position"])
                .errors(&[422]),
        ),
        Route::new(
            M::GET,
            "/v1/orders/{id}",
            orders::get,
            order_id(Op::new("getOrder", "store", "Get an order"))
                .access(Access::Read(Scope::OrdersRead))
                .header(IF_NONE_MATCH)
                .reply::<Order>(200, "The order.", &["ETag"])
                .empty_reply(304, "Not modified (`If-None-Match` matched).", &["ETag"]),
        ),
        Route::new(
            M::POST,
            "/v1/orders/{id}/cancel",
            orders::cancel,
            order_id(Op::new("cancelOrder", "store", "Cancel an order"))
                .describe(
                    "A `placed` or `approved` order becomes `cancelled` and its pet `available`; \
                     any other status is 409.",
                )
                .access(Access::Write(Scope::OrdersWrite))
                .reply::<Order>(200, "The cancelled order.", &["ETag"])
                .errors(&[409]),
        ),
        Route::new(
            M::POST,
            "/v1/orders/{id}/payment",
            orders::pay,
            order_id(Op::new("payOrder", "store", "Pay a placed order"))
                .describe(
                    "Built-in fake processor: an empty body means `{\"token\":\"tok_visa\"}`; \
                     `tok_declined` is declined (402, the order stays `placed`). Success \
                     approves the order. Only a `placed` order can be paid (409).",
                )
                .access(Access::Write(Scope::OrdersWrite))
                .optional_body::<PaymentRequest>()
                .reply::<Payment>(201, "The successful payment.", &["ETag", "Location"])
                .links_by_id(&["getPayment"])
                .errors(&[402, 409]),
        ),
        Route::new(
            M::POST,
            "/v1/orders/{id}/deliver",
            orders::deliver,
            order_id(Op::new(
                "deliverOrder",
                "store",
                "Deliver an approved order",
            ))
            .describe(
                "The order becomes `delivered` and its pet `sold`; only an `approved` order (409).",
            )
            .access(Access::Write(Scope::Admin))
            .reply::<Order>(200, "The delivered order.", &["ETag"])
            .errors(&[409]),
        ),
        Route::new(
            M::GET,
            "/v1/payments/{id}",
            orders::payment,
            Op::new("getPayment", "store", "Get a payment attempt")
                .path_param::<PaymentId>("id", "The payment's id (`pay_…`).")
                .access(Access::Read(Scope::OrdersRead))
                .header(IF_NONE_MATCH)
                .reply::<Payment>(200, "The payment (succeeded or failed).", &["ETag"])
                .empty_reply(304, "Not modified (`If-None-Match` matched).", &["ETag"]),
        ),
        // ----- events -----
        Route::new(
            M::GET,
            "/v1/events",
            polling::events,
            Op::new("pollEvents", "events", "Poll the event log")
                .describe(
                    "Returns the events after `since` and `next`, the token to pass as `since` \
                     next time: following `next` yields every matching event once, with no \
                     gap. With `wait` the request long-polls until an event arrives.",
                )
                .access(Access::Optional)
                .query::<EventsQuery>()
                .reply::<EventBatch>(200, "Events after `since`, and the next token.", &[])
                .errors(&[404, 410, 422]),
        )
        .long_poll(),
        // ----- auth -----
        Route::new(
            M::POST,
            "/v1/auth/token",
            auth::token,
            Op::new(
                "issueToken",
                "auth",
                "Exchange a username and password for a token",
            )
            .describe(
                "The token carries the user's scopes. Wrong credentials are 401; too many \
                 failed attempts for a username or from an address are 429.",
            )
            .body::<Credentials>(JSON)
            .reply::<AccessToken>(200, "A bearer token.", &[])
            .errors(&[401, 429]),
        ),
        // ----- meta -----
        Route::new(
            M::GET,
            "/openapi.json",
            meta::openapi,
            Op::new("getOpenApi", "meta", "This OpenAPI 3.1 document").reply_raw(
                200,
                "The document.",
                "application/json",
            ),
        ),
    ];
    if config.docs {
        routes.push(Route::new(
            M::GET,
            "/docs",
            meta::docs,
            Op::new("getDocs", "meta", "Interactive API documentation")
                .describe(
                    "A page that renders this document and sends requests. It loads only \
                     its script and stylesheet below, from this server.",
                )
                .reply_raw(200, "An HTML page.", "text/html"),
        ));
        routes.push(Route::new(
            M::GET,
            "/docs/assets/docs.js",
            meta::docs_script,
            Op::new("getDocsScript", "meta", "The script of the docs page").reply_raw(
                200,
                "JavaScript.",
                "text/javascript",
            ),
        ));
        routes.push(Route::new(
            M::GET,
            "/docs/assets/docs.css",
            meta::docs_stylesheet,
            Op::new(
                "getDocsStylesheet",
                "meta",
                "The stylesheet of the docs page",
            )
            .reply_raw(200, "CSS.", "text/css"),
        ));
    }
    routes
}

/// The OpenAPI 3.1 document of the router [`router`] builds with `config` and `edge`
/// (429 and the `RateLimit` headers are documented when the edge limits requests).
///
/// It includes [`RestConfig::openapi_fragments`].
pub fn openapi_document(config: &RestConfig, edge: &Edge) -> serde_json::Value {
    let routes = table(config);
    openapi::document(
        routes.iter().map(|r| (&r.method, r.path, &r.op)),
        edge.limiter().is_some(),
        &config.openapi_fragments,
    )
}

/// Checks the route's access rule before any body is read, so that a caller without
/// the right credential gets 401/403 rather than a body error. The core checks again.
///
/// A plain tower layer rather than `middleware::from_fn`: the check is synchronous, so
/// the request goes on to the handler without a boxed future or a clone of the state.
#[derive(Debug, Clone)]
struct Guard(Arc<GuardRule>);

#[derive(Debug)]
struct GuardRule {
    state: AppState,
    access: Access,
}

impl GuardRule {
    /// Authorises `request` (the edge authenticated it); the answer to send instead
    /// when the caller may not go on.
    fn refusal(&self, request: &Request) -> Option<Response> {
        let allowed =
            Caller::from_extensions(request.extensions()).and_then(|who| match self.access {
                Access::Public | Access::Optional => Ok(()),
                Access::Read(scope) => self.state.service.authorize_read(&who, scope),
                Access::Write(scope) => who.require(scope),
            });
        allowed.err().map(|e| Problem::from(e).into_response())
    }
}

impl<S> Layer<S> for Guard {
    type Service = Guarded<S>;

    fn layer(&self, inner: S) -> Guarded<S> {
        Guarded {
            inner,
            rule: self.0.clone(),
        }
    }
}

/// A route behind its [`Guard`].
#[derive(Debug, Clone)]
struct Guarded<S> {
    inner: S,
    rule: Arc<GuardRule>,
}

impl<S> Service<Request> for Guarded<S>
where
    S: Service<Request, Response = Response, Error = Infallible>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Either<Ready<Result<Response, Infallible>>, S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        match self.rule.refusal(&request) {
            None => Either::Right(self.inner.call(request)),
            Some(refused) => Either::Left(ready(Ok(refused))),
        }
    }
}

fn cors(origins: &[String]) -> Option<CorsLayer> {
    if origins.is_empty() {
        return None;
    }
    let allow = if origins.iter().any(|o| o == "*") {
        AllowOrigin::from(Any)
    } else {
        AllowOrigin::list(
            origins
                .iter()
                .filter_map(|o| match HeaderValue::from_str(o) {
                    Ok(v) => Some(v),
                    Err(_) => {
                        tracing::warn!(origin = %o, "ignoring an invalid CORS origin");
                        None
                    }
                }),
        )
    };
    let h = HeaderName::from_static;
    Some(
        CorsLayer::new()
            .allow_origin(allow)
            .allow_methods([
                Method::GET,
                Method::POST,
                Method::PUT,
                Method::PATCH,
                Method::DELETE,
            ])
            .allow_headers([
                header::AUTHORIZATION,
                header::CONTENT_TYPE,
                header::IF_MATCH,
                header::IF_NONE_MATCH,
                h("idempotency-key"),
            ])
            .expose_headers([
                header::ETAG,
                header::LOCATION,
                header::RETRY_AFTER,
                header::WWW_AUTHENTICATE,
                h("idempotent-replayed"),
                h("x-event-position"),
                X_REQUEST_ID,
                RATELIMIT,
                RATELIMIT_POLICY,
            ])
            .max_age(Duration::from_secs(600)),
    )
}

/// The REST API over `store`: every `/v1/...` route of the contract (pets, inventory,
/// orders, payments, auth token, the polling feeds), `GET /openapi.json` and, unless
/// disabled, `GET /docs` (with its script and stylesheet under `/docs/assets/`).
///
/// Mount it with `app.merge(router(store, config, &edge, shutdown))`. Every error is
/// `application/problem+json`, including unknown paths (404) and methods (405) of this
/// router. Body limit, timeouts, CORS and compression apply to these routes only; the
/// [`Edge`] in front of them gives request ids, authentication, rate limiting (one
/// budget with every adapter sharing the edge) and the bearer challenge. Cancelling
/// `shutdown` ends the long polls in progress (503, retry).
///
/// With a rate limiter on the edge, anonymous callers are counted per client IP, read
/// from axum's `ConnectInfo<SocketAddr>`: serve the app with
/// `app.into_make_service_with_connect_info::<std::net::SocketAddr>()`. Without it
/// every anonymous caller shares one bucket (authenticated callers are counted per
/// token subject either way).
pub fn router(
    store: PetStore,
    config: RestConfig,
    edge: &Edge,
    shutdown: CancellationToken,
) -> Router {
    let routes = table(&config);
    let document = openapi::document(
        routes.iter().map(|r| (&r.method, r.path, &r.op)),
        edge.limiter().is_some(),
        &config.openapi_fragments,
    );
    let state = AppState(Arc::new(Shared {
        service: store.clone(),
        config: config.clone(),
        openapi: Bytes::from(serde_json::to_vec_pretty(&document).unwrap_or_default()),
        shutdown,
    }));

    let mut app = Router::new();
    for route in routes {
        let timeout = if route.long_poll {
            config.request_timeout + config.poll_wait_cap()
        } else {
            config.request_timeout
        };
        let mut handler = route.handler;
        if route.op.access != Access::Public {
            handler = handler.route_layer(Guard(Arc::new(GuardRule {
                state: state.clone(),
                access: route.op.access,
            })));
        }
        let handler = handler.layer(TimeoutLayer::with_status_code(
            StatusCode::SERVICE_UNAVAILABLE,
            timeout,
        ));
        app = app.route(route.path, handler);
    }
    let app = app
        .with_state(state)
        .layer(DefaultBodyLimit::max(config.body_limit))
        .layer(RequestBodyLimitLayer::new(config.body_limit))
        .layer(middleware::map_response(ensure_problem))
        .layer(CompressionLayer::new().gzip(config.compression))
        .layer(edge.layer(store));
    // CORS answers preflights before the edge: they are not requests of a caller.
    match cors(&config.cors_origins) {
        Some(cors) => app.layer(cors),
        None => app,
    }
}
