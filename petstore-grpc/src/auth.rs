//! Credentials and rate limits: the `authorization` metadata becomes the core
//! `Principal`, and each call counts against its caller's quota.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::extract::ConnectInfo;
use petstore_core::{Error, ErrorKind, PetStore, Principal, RateLimiter};
use tonic::metadata::MetadataValue;
use tonic::service::Interceptor;
use tonic::{Request, Status};

use crate::error::status;

/// Reads `authorization: Bearer <jwt>` into a [`Principal`] stored in the request
/// extensions. No credential gives the anonymous principal (each command then checks
/// its own scope); a bad credential fails the call with `UNAUTHENTICATED`, reads
/// included.
///
/// With a rate limiter, every call first counts against its caller's quota: the
/// token's subject, else (anonymous, or a rejected token) the client IP. A refused
/// call fails with `RESOURCE_EXHAUSTED` before any service code runs.
#[derive(Debug, Clone)]
pub(crate) struct Authenticate {
    service: PetStore,
    limiter: Option<Arc<RateLimiter>>,
}

impl Authenticate {
    pub(crate) fn new(store: PetStore, limiter: Option<Arc<RateLimiter>>) -> Self {
        Self {
            service: store,
            limiter,
        }
    }

    fn principal(&self, request: &Request<()>) -> Result<Principal, Error> {
        let header = match request.metadata().get("authorization") {
            None => None,
            Some(value) => Some(value.to_str().map_err(|_| {
                Error::new(
                    ErrorKind::Unauthenticated,
                    "the authorization metadata must be `Bearer <token>` in ASCII",
                )
            })?),
        };
        self.service.authenticate_header(header)
    }
}

/// The client's address: tonic's own server records it; an axum server does when it
/// serves with `into_make_service_with_connect_info::<SocketAddr>()`.
fn client_ip(request: &Request<()>) -> Option<IpAddr> {
    request
        .remote_addr()
        .or_else(|| {
            request
                .extensions()
                .get::<ConnectInfo<SocketAddr>>()
                .map(|ConnectInfo(addr)| *addr)
        })
        .map(|addr| addr.ip())
}

impl Interceptor for Authenticate {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        let principal = self.principal(&request);
        if let Some(limiter) = &self.limiter {
            let anonymous = Principal::anonymous();
            let who = principal.as_ref().unwrap_or(&anonymous);
            let decision = limiter.check(who, client_ip(&request));
            if let Some(refused) = decision.error() {
                let mut status = status(refused);
                let metadata = status.metadata_mut();
                for (key, value) in decision.headers() {
                    if let Ok(value) = MetadataValue::try_from(value) {
                        metadata.insert(key, value);
                    }
                }
                return Err(status);
            }
        }
        let principal = principal.map_err(status)?;
        if let Some(sub) = principal.subject() {
            tracing::Span::current().record("sub", sub);
        }
        request.extensions_mut().insert(principal);
        Ok(request)
    }
}

/// The caller, as the interceptor found it.
pub(crate) fn principal<T>(request: &Request<T>) -> Principal {
    request
        .extensions()
        .get::<Principal>()
        .cloned()
        // Only reachable when a service is mounted without the interceptor: the
        // anonymous principal can do nothing a token would be needed for.
        .unwrap_or_else(Principal::anonymous)
}
