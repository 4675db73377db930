//! The verifier seam: a [`TokenVerifier`] checks a token's signature (and the claims
//! only its issuer defines, such as `iss` and `aud`); [`super::TokenAuthority`] routes
//! each token to one by the header's `alg` and applies the time and subject rules to
//! whatever a verifier vouched for, so that no verifier can forget them.

use std::fmt;

use jsonwebtoken::{Algorithm, DecodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::error::{Error, ErrorKind, Result};

/// The claims the Pet Store reads from a token whose signature a [`TokenVerifier`]
/// checked. Only `sub` and `exp` are required; `nbf` and `iat` are honoured when
/// present. Other claims are ignored here (a verifier may check its own, like `aud`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[non_exhaustive]
pub struct TokenClaims {
    /// Who the token speaks for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sub: Option<String>,
    /// The granted scopes, space separated (unknown names are ignored).
    #[serde(default)]
    pub scope: String,
    /// Expiry, Unix seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exp: Option<u64>,
    /// Not valid before, Unix seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<u64>,
    /// Issued at, Unix seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<u64>,
}

impl TokenClaims {
    /// Claims for `sub` with `scope` (space separated), expiring at `exp`.
    pub fn new(sub: impl Into<String>, scope: impl Into<String>, exp: u64) -> Self {
        Self {
            sub: Some(sub.into()),
            scope: scope.into(),
            exp: Some(exp),
            nbf: None,
            iat: None,
        }
    }

    /// Sets [`TokenClaims::iat`].
    pub fn issued_at(mut self, iat: u64) -> Self {
        self.iat = Some(iat);
        self
    }

    /// Sets [`TokenClaims::nbf`].
    pub fn not_before(mut self, nbf: u64) -> Self {
        self.nbf = Some(nbf);
        self
    }
}

/// Checks the signature of bearer tokens of one kind (HS256 with a shared secret,
/// RS256/ES256 against an identity provider's key set, ...).
///
/// [`super::TokenAuthority`] hands a token only to the verifier that
/// [accepts](TokenVerifier::accepts) the algorithm its header names, and checks `sub`,
/// `exp`, `nbf` and the maximum lifetime itself on the claims returned: a verifier
/// checks the signature and the claims that only it knows about.
pub trait TokenVerifier: Send + Sync + fmt::Debug {
    /// Whether tokens signed with `alg` are this verifier's to check. Each algorithm
    /// must belong to one verifier, and a verifier must only accept algorithms of the
    /// family of its keys (no HMAC with a public key).
    fn accepts(&self, alg: Algorithm) -> bool;

    /// Checks `token` (its already decoded `header` alongside) and returns its claims,
    /// or `Unauthenticated` with the reason.
    fn verify(&self, token: &str, header: &Header) -> Result<TokenClaims>;

    /// A number that changes whenever the keys change. The authority remembers
    /// verified tokens; an entry made under another generation is verified again, so
    /// that a key withdrawn from the key set stops working at once.
    fn key_generation(&self) -> u64 {
        0
    }
}

/// The reason, in the caller's terms, why `jsonwebtoken` refused a token.
pub(crate) fn refusal(error: &jsonwebtoken::errors::Error) -> Error {
    use jsonwebtoken::errors::ErrorKind as Jwt;
    let reason = match error.kind() {
        Jwt::InvalidSignature => "the token signature is invalid",
        Jwt::InvalidAlgorithm | Jwt::InvalidAlgorithmName => {
            "the token's algorithm does not match its key"
        }
        Jwt::InvalidIssuer => "the token's issuer (iss) is not accepted",
        Jwt::InvalidAudience => "the token's audience (aud) is not this service",
        Jwt::MissingRequiredClaim(claim) => match claim.as_str() {
            "iss" => "the token lacks a required claim (iss)",
            "aud" => "the token lacks a required claim (aud)",
            _ => "the token lacks a required claim",
        },
        Jwt::InvalidClaimFormat(_) => "a claim of the token has the wrong type",
        _ => "the token is malformed",
    };
    Error::new(ErrorKind::Unauthenticated, reason)
}

/// The `jsonwebtoken` checks every verifier starts from: the signature with `alg`
/// only, and no time claim (the authority checks those, once for every verifier).
pub(crate) fn signature_only(alg: Algorithm) -> Validation {
    let mut validation = Validation::new(alg);
    validation.required_spec_claims.clear();
    validation.validate_exp = false;
    validation.validate_nbf = false;
    validation.validate_aud = false;
    validation
}

/// HS256 with a shared secret: the tokens this service issues, and any HS256 library's
/// tokens that carry `sub`, `scope` and `exp` (no other claim is required).
pub struct Hs256Verifier {
    key: DecodingKey,
    validation: Validation,
}

impl fmt::Debug for Hs256Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The secret is never printed.
        f.debug_struct("Hs256Verifier").finish_non_exhaustive()
    }
}

impl Hs256Verifier {
    /// A verifier of tokens signed with `secret`.
    pub fn new(secret: &[u8]) -> Self {
        Self {
            key: DecodingKey::from_secret(secret),
            validation: signature_only(Algorithm::HS256),
        }
    }
}

impl TokenVerifier for Hs256Verifier {
    fn accepts(&self, alg: Algorithm) -> bool {
        alg == Algorithm::HS256
    }

    fn verify(&self, token: &str, _header: &Header) -> Result<TokenClaims> {
        jsonwebtoken::decode::<TokenClaims>(token, &self.key, &self.validation)
            .map(|data| data.claims)
            .map_err(|e| refusal(&e))
    }
}
