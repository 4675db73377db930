//! Credentials: the `authorization` metadata becomes the core `Principal`.

use petstore_core::{Error, ErrorKind, PetStore, Principal};
use tonic::service::Interceptor;
use tonic::{Request, Status};

use crate::error::status;

/// Reads `authorization: Bearer <jwt>` into a [`Principal`] stored in the request
/// extensions. No credential gives the anonymous principal (each command then checks
/// its own scope); a bad credential fails the call with `UNAUTHENTICATED`, reads
/// included.
#[derive(Debug, Clone)]
pub(crate) struct Authenticate {
    store: PetStore,
}

impl Authenticate {
    pub(crate) fn new(store: PetStore) -> Self {
        Self { store }
    }
}

impl Interceptor for Authenticate {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        let header = match request.metadata().get("authorization") {
            None => None,
            Some(value) => Some(value.to_str().map_err(|_| {
                status(Error::new(
                    ErrorKind::Unauthenticated,
                    "the authorization metadata must be `Bearer <token>` in ASCII",
                ))
            })?),
        };
        let principal = self.store.authenticate_header(header).map_err(status)?;
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
