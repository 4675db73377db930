//! Liveness and readiness: `GET /livez` and `GET /readyz`.

use std::fmt;
use std::future::Future;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use axum::Router;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures_util::future::{BoxFuture, join_all};
use serde::Serialize;
use tokio_util::sync::CancellationToken;

/// How long one readiness check may take before it counts as failing.
const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

type CheckFn = dyn Fn() -> BoxFuture<'static, Result<(), String>> + Send + Sync;

/// The process's health for load balancers and orchestrators.
///
/// - `GET /livez`: 200 while the process runs (it can answer at all).
/// - `GET /readyz`: 200 while the server takes traffic; 503 from the moment the
///   shutdown token is cancelled (drain has started) and while any registered check
///   fails. The JSON body names each check.
///
/// ```
/// use petstore_http::Health;
/// use tokio_util::sync::CancellationToken;
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let shutdown = CancellationToken::new();
/// let health = Health::new(shutdown.clone());
/// health.check("store", || async { Ok(()) });
/// assert!(health.readiness().await.is_ready());
/// shutdown.cancel();
/// assert!(!health.readiness().await.is_ready());
/// let app: axum::Router = health.router();
/// # drop(app);
/// # }
/// ```
#[derive(Clone)]
pub struct Health {
    inner: Arc<Inner>,
}

struct Inner {
    shutdown: CancellationToken,
    checks: RwLock<Vec<(String, Arc<CheckFn>)>>,
}

impl fmt::Debug for Health {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let checks = self
            .inner
            .checks
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        f.debug_struct("Health")
            .field("draining", &self.inner.shutdown.is_cancelled())
            .field(
                "checks",
                &checks.iter().map(|(name, _)| name).collect::<Vec<_>>(),
            )
            .finish()
    }
}

/// The answer of `/readyz`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct Readiness {
    /// `ready`, `draining` (shutdown has started) or `not_ready` (a check fails).
    pub status: &'static str,
    /// Every registered check, in registration order.
    pub checks: Vec<CheckOutcome>,
}

/// One check's outcome.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct CheckOutcome {
    /// The check's name (`store`, `mqtt_bridge`, ...).
    pub name: String,
    /// `ok` or `failing`.
    pub status: &'static str,
    /// Why it fails.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

impl Readiness {
    /// Whether `/readyz` answers 200.
    pub fn is_ready(&self) -> bool {
        self.status == "ready"
    }
}

impl Health {
    /// Health that reports draining once `shutdown` is cancelled.
    pub fn new(shutdown: CancellationToken) -> Self {
        Self {
            inner: Arc::new(Inner {
                shutdown,
                checks: RwLock::default(),
            }),
        }
    }

    /// Registers a readiness check: `Err(reason)` (or taking more than 2 s) makes
    /// `/readyz` answer 503 while it lasts.
    pub fn check<F, Fut>(&self, name: impl Into<String>, check: F)
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), String>> + Send + 'static,
    {
        let check: Arc<CheckFn> = Arc::new(move || Box::pin(check()));
        self.inner
            .checks
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .push((name.into(), check));
    }

    /// Runs every check (at once) and says whether the server is ready.
    pub async fn readiness(&self) -> Readiness {
        let checks: Vec<_> = self
            .inner
            .checks
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let outcomes = join_all(checks.into_iter().map(|(name, check)| async move {
            let result = tokio::time::timeout(CHECK_TIMEOUT, check())
                .await
                .unwrap_or_else(|_| Err(format!("no answer within {CHECK_TIMEOUT:?}")));
            CheckOutcome {
                name,
                status: if result.is_ok() { "ok" } else { "failing" },
                detail: result.err(),
            }
        }))
        .await;
        let status = if self.inner.shutdown.is_cancelled() {
            "draining"
        } else if outcomes.iter().all(|c| c.detail.is_none()) {
            "ready"
        } else {
            "not_ready"
        };
        Readiness {
            status,
            checks: outcomes,
        }
    }

    /// `GET /livez` and `GET /readyz`. Mount them outside the adapters' edge: probes
    /// are never rate limited and need no credential.
    pub fn router(&self) -> Router {
        let health = self.clone();
        Router::new()
            .route(
                "/livez",
                get(|| async { json(StatusCode::OK, r#"{"status":"alive"}"#.to_owned()) }),
            )
            .route(
                "/readyz",
                get(move || {
                    let health = health.clone();
                    async move {
                        let readiness = health.readiness().await;
                        let status = if readiness.is_ready() {
                            StatusCode::OK
                        } else {
                            StatusCode::SERVICE_UNAVAILABLE
                        };
                        json(
                            status,
                            serde_json::to_string(&readiness).unwrap_or_default(),
                        )
                    }
                }),
            )
    }
}

fn json(status: StatusCode, body: String) -> Response {
    (
        status,
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
        ],
        body,
    )
        .into_response()
}
