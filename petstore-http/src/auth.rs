//! Bearer credentials: the `Authorization` header read once per request into the
//! caller's [`Principal`], and the one `WWW-Authenticate` challenge (RFC 6750, with the
//! RFC 9728 `resource_metadata` pointer where configured).

use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{Extensions, HeaderMap, HeaderValue, header};
use petstore_core::{Error, ErrorKind, PetStore, Principal};

use crate::problem::Problem;

/// What a `WWW-Authenticate: Bearer` challenge says (RFC 6750 section 3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Challenge {
    /// A credential is needed and none was sent: no error code.
    Required,
    /// The credential sent was rejected: `error="invalid_token"`.
    InvalidToken,
    /// The credential lacks the scope: `error="insufficient_scope"` (with a 403).
    InsufficientScope,
}

impl Challenge {
    /// The header value: `Bearer realm="…"`, the error code, and
    /// `resource_metadata="…"` (RFC 9728) when given.
    pub fn header_value(self, realm: &str, resource_metadata: Option<&str>) -> HeaderValue {
        let quoted = |s: &str| s.replace(['"', '\\'], "");
        let mut value = format!(r#"Bearer realm="{}""#, quoted(realm));
        match self {
            Challenge::Required => {}
            Challenge::InvalidToken => value.push_str(r#", error="invalid_token""#),
            Challenge::InsufficientScope => value.push_str(r#", error="insufficient_scope""#),
        }
        if let Some(url) = resource_metadata {
            value.push_str(&format!(r#", resource_metadata="{}""#, quoted(url)));
        }
        HeaderValue::from_str(&value).unwrap_or_else(|_| HeaderValue::from_static("Bearer"))
    }
}

/// What the edge made of the request's `Authorization` header; in the request
/// extensions, so that nothing after the edge verifies the token again.
#[derive(Debug, Clone)]
pub(crate) struct Authentication {
    outcome: Result<Principal, Arc<str>>,
    presented: bool,
}

impl Authentication {
    /// Reads the `Authorization` header: none is the anonymous principal, a bad one
    /// an error kept for the adapter to answer (a public route may not care), and two
    /// of them a 400 at once (which one would count is anybody's guess).
    pub(crate) fn read(store: &PetStore, headers: &HeaderMap) -> Result<Self, Problem> {
        let mut values = headers.get_all(header::AUTHORIZATION).iter();
        let first = values.next();
        if values.next().is_some() {
            return Err(Problem::bad_request(
                "send one `Authorization` header, not several",
            ));
        }
        let outcome = match first.map(HeaderValue::to_str) {
            None => Ok(Principal::anonymous()),
            Some(Err(_)) => Err("the Authorization header is not valid text".into()),
            Some(Ok(value)) => store
                .authenticate_header(Some(value))
                .map_err(|e| Arc::from(e.message())),
        };
        Ok(Self {
            outcome,
            presented: first.is_some(),
        })
    }

    /// The principal for rate limiting: a rejected token counts as anonymous (keyed
    /// by the client's address).
    pub(crate) fn principal_or_anonymous(&self) -> Principal {
        self.outcome
            .clone()
            .unwrap_or_else(|_| Principal::anonymous())
    }

    /// The subject of an accepted token.
    pub(crate) fn subject(&self) -> Option<&str> {
        self.outcome.as_ref().ok().and_then(Principal::subject)
    }

    /// Whether a header was sent and rejected.
    pub(crate) fn rejected(&self) -> bool {
        self.outcome.is_err()
    }

    fn result(&self) -> Result<Principal, Error> {
        self.outcome
            .clone()
            .map_err(|reason| Error::new(ErrorKind::Unauthenticated, reason.to_string()))
    }
}

/// The caller of a request, as the edge authenticated it from the `Authorization`
/// header: the anonymous principal without one.
///
/// As an extractor it rejects a bad credential with a 401 problem; adapters that answer
/// in another protocol read [`Caller::from_extensions`].
#[derive(Debug, Clone)]
pub struct Caller(pub Principal);

impl Caller {
    /// The principal the edge found: `Err` ([`ErrorKind::Unauthenticated`]) when the
    /// request's `Authorization` header was rejected. A request that did not pass
    /// through an edge layer is an internal error (the adapter was mounted without it).
    pub fn from_extensions(extensions: &Extensions) -> Result<Principal, Error> {
        match extensions.get::<Authentication>() {
            Some(auth) => auth.result(),
            None => Err(Error::new(
                ErrorKind::Internal,
                "the request did not pass through the petstore-http edge layer",
            )),
        }
    }

    /// Whether the request carried an `Authorization` header (valid or not); an adapter
    /// with another way to send a credential (a `?token=` parameter) uses it only when
    /// there is no header.
    pub fn presented(extensions: &Extensions) -> bool {
        extensions
            .get::<Authentication>()
            .is_some_and(|auth| auth.presented)
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Problem> {
        Self::from_extensions(&parts.extensions)
            .map(Caller)
            .map_err(Problem::from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_challenge_shape() {
        assert_eq!(
            Challenge::Required.header_value("petstore", None),
            r#"Bearer realm="petstore""#
        );
        assert_eq!(
            Challenge::InvalidToken.header_value("petstore", Some("https://x/.well-known/y")),
            r#"Bearer realm="petstore", error="invalid_token", resource_metadata="https://x/.well-known/y""#
        );
        assert_eq!(
            Challenge::InsufficientScope.header_value("a\"b", None),
            r#"Bearer realm="ab", error="insufficient_scope""#
        );
    }

    #[test]
    fn the_header_is_read_once_and_two_are_refused() {
        let store = PetStore::in_memory();
        let mut headers = HeaderMap::new();
        let anonymous = Authentication::read(&store, &headers).unwrap();
        assert!(!anonymous.presented && !anonymous.rejected());
        assert!(!anonymous.result().unwrap().is_authenticated());

        headers.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer x"));
        let bad = Authentication::read(&store, &headers).unwrap();
        assert!(bad.presented && bad.rejected());
        assert_eq!(bad.result().unwrap_err().kind(), ErrorKind::Unauthenticated);
        assert!(!bad.principal_or_anonymous().is_authenticated());

        let token = store
            .tokens()
            .issue("alice", [petstore_core::Scope::PetsRead])
            .unwrap()
            .access_token;
        let good = HeaderValue::from_str(&format!("Bearer {token}")).unwrap();
        headers.insert(header::AUTHORIZATION, good.clone());
        let alice = Authentication::read(&store, &headers).unwrap();
        assert_eq!(alice.result().unwrap().subject(), Some("alice"));
        assert_eq!(alice.subject(), Some("alice"));
        assert_eq!(bad.subject(), None, "a rejected token has no subject");
        assert_eq!(anonymous.subject(), None);

        // What an adapter with another way to send a credential asks.
        let mut extensions = Extensions::new();
        assert!(!Caller::presented(&extensions), "no edge, no header");
        extensions.insert(anonymous);
        assert!(!Caller::presented(&extensions));
        extensions.insert(bad);
        assert!(
            Caller::presented(&extensions),
            "a rejected header was presented"
        );
        extensions.insert(alice);
        assert!(Caller::presented(&extensions));

        // Two headers, even two good ones: 400.
        headers.append(header::AUTHORIZATION, good);
        let twice = Authentication::read(&store, &headers).unwrap_err();
        assert_eq!(twice.status(), 400);
    }
}
