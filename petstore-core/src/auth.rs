//! The one authorization model: a [`Principal`] carrying [`Scope`]s, and HS256 JWTs
//! (claims `sub`, `scope`, `exp`) as the credential every protocol accepts.

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::str::FromStr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::error::{Error, ErrorKind, Result};

/// A permission. Its string form (`pets:read`, ...) is what tokens carry.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema,
)]
#[non_exhaustive]
pub enum Scope {
    /// Read pets, inventory and pet events.
    #[serde(rename = "pets:read")]
    PetsRead,
    /// Create, change and delete pets.
    #[serde(rename = "pets:write")]
    PetsWrite,
    /// Read orders, payments and order events.
    #[serde(rename = "orders:read")]
    OrdersRead,
    /// Place, pay and cancel orders.
    #[serde(rename = "orders:write")]
    OrdersWrite,
    /// Post chat messages.
    #[serde(rename = "chat:write")]
    ChatWrite,
    /// Everything, including delivery and webhook management.
    #[serde(rename = "admin")]
    Admin,
}

impl Scope {
    /// Every scope, in a stable order.
    pub const ALL: [Scope; 6] = [
        Scope::PetsRead,
        Scope::PetsWrite,
        Scope::OrdersRead,
        Scope::OrdersWrite,
        Scope::ChatWrite,
        Scope::Admin,
    ];

    /// The wire name, e.g. `"pets:read"`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Scope::PetsRead => "pets:read",
            Scope::PetsWrite => "pets:write",
            Scope::OrdersRead => "orders:read",
            Scope::OrdersWrite => "orders:write",
            Scope::ChatWrite => "chat:write",
            Scope::Admin => "admin",
        }
    }

    /// Whether this scope only grants reads (reads may be open to anonymous callers).
    pub const fn is_read(self) -> bool {
        matches!(self, Scope::PetsRead | Scope::OrdersRead)
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Scope {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        Scope::ALL
            .into_iter()
            .find(|scope| scope.as_str() == s)
            .ok_or_else(|| Error::invalid_field("scope", format!("unknown scope `{s}`")))
    }
}

/// Who is calling, and what they may do. Adapters build it from their credential with
/// [`crate::PetStore::authenticate`]; commands check it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    subject: Option<String>,
    scopes: BTreeSet<Scope>,
}

impl Principal {
    /// A caller without credentials.
    pub fn anonymous() -> Self {
        Self {
            subject: None,
            scopes: BTreeSet::new(),
        }
    }

    /// An authenticated caller.
    pub fn new(subject: impl Into<String>, scopes: impl IntoIterator<Item = Scope>) -> Self {
        Self {
            subject: Some(subject.into()),
            scopes: scopes.into_iter().collect(),
        }
    }

    /// A principal holding every scope (for trusted internal callers and tests).
    pub fn system(subject: impl Into<String>) -> Self {
        Self::new(subject, Scope::ALL)
    }

    /// The subject (`sub` claim), `None` when anonymous.
    pub fn subject(&self) -> Option<&str> {
        self.subject.as_deref()
    }

    /// Whether the caller presented a valid credential.
    pub fn is_authenticated(&self) -> bool {
        self.subject.is_some()
    }

    /// The granted scopes.
    pub fn scopes(&self) -> impl Iterator<Item = Scope> + '_ {
        self.scopes.iter().copied()
    }

    /// Whether `scope` is granted (`admin` grants every scope).
    pub fn has(&self, scope: Scope) -> bool {
        self.scopes.contains(&scope) || self.scopes.contains(&Scope::Admin)
    }

    /// The core check: `Unauthenticated` when anonymous, `Forbidden` when the scope is
    /// missing.
    pub fn require(&self, scope: Scope) -> Result<()> {
        if self.has(scope) {
            Ok(())
        } else if !self.is_authenticated() {
            Err(Error::new(
                ErrorKind::Unauthenticated,
                format!("a bearer token with scope `{scope}` is required"),
            ))
        } else {
            Err(Error::new(
                ErrorKind::Forbidden,
                format!("the token lacks scope `{scope}`"),
            ))
        }
    }
}

/// An issued bearer token, shaped like an OAuth 2 token response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct AccessToken {
    /// The JWT.
    pub access_token: String,
    /// Always `"Bearer"`.
    pub token_type: String,
    /// Lifetime in seconds.
    pub expires_in: u64,
    /// The granted scopes, space separated.
    pub scope: String,
}

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    sub: String,
    #[serde(default)]
    scope: String,
    exp: u64,
}

/// Issues and verifies HS256 JWTs with claims `sub`, `scope` (space separated) and `exp`.
/// No other claim is required, so any HS256 library can mint a valid token.
///
/// Verified tokens are remembered (up to 4,096, each until its `exp`), so that a
/// client sending the same token on every request pays for the signature check once.
/// Clones share that memory.
#[derive(Clone)]
pub struct TokenAuthority {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    ttl: Duration,
    verified: Arc<VerifiedTokens>,
}

/// Tokens that passed verification, with the time (Unix seconds) after which they
/// no longer would: `exp` plus the validation leeway.
#[derive(Default)]
struct VerifiedTokens(Mutex<HashMap<Box<str>, (Principal, u64)>>);

impl VerifiedTokens {
    /// At most this many tokens are remembered.
    const CAPACITY: usize = 4096;

    fn get(&self, token: &str, now: u64) -> Option<Principal> {
        let map = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        map.get(token)
            .filter(|(_, until)| now <= *until)
            .map(|(who, _)| who.clone())
    }

    fn insert(&self, token: &str, who: Principal, until: u64, now: u64) {
        let mut map = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if map.len() >= Self::CAPACITY {
            map.retain(|_, (_, t)| now <= *t);
            if map.len() >= Self::CAPACITY {
                // Many live tokens at once: start over rather than track recency.
                map.clear();
            }
        }
        map.insert(token.into(), (who, until));
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).len()
    }
}

impl fmt::Debug for TokenAuthority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The secret is never printed.
        f.debug_struct("TokenAuthority")
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

impl TokenAuthority {
    /// An authority signing with `secret`; tokens live for `ttl`.
    pub fn new(secret: &[u8], ttl: Duration) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_required_spec_claims(&["exp", "sub"]);
        validation.validate_aud = false;
        validation.leeway = 5;
        Self {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
            ttl,
            verified: Arc::default(),
        }
    }

    /// An authority with a fresh random 256-bit secret (tokens die with the process).
    pub fn random(ttl: Duration) -> Self {
        let mut secret = [0u8; 32];
        secret[..16].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
        secret[16..].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
        Self::new(&secret, ttl)
    }

    /// The lifetime of issued tokens.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// Signs a token for `subject` with `scopes`.
    pub fn issue(
        &self,
        subject: &str,
        scopes: impl IntoIterator<Item = Scope>,
    ) -> Result<AccessToken> {
        let scope = scopes
            .into_iter()
            .map(Scope::as_str)
            .collect::<Vec<_>>()
            .join(" ");
        let exp = jsonwebtoken::get_current_timestamp() + self.ttl.as_secs();
        let claims = Claims {
            sub: subject.to_owned(),
            scope: scope.clone(),
            exp,
        };
        let access_token =
            jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
                .map_err(Error::internal)?;
        Ok(AccessToken {
            access_token,
            token_type: "Bearer".to_owned(),
            expires_in: self.ttl.as_secs(),
            scope,
        })
    }

    /// Verifies a token (without the `Bearer ` prefix). Unknown scope names are ignored
    /// so that newer issuers stay compatible.
    pub fn verify(&self, token: &str) -> Result<Principal> {
        let now = jsonwebtoken::get_current_timestamp();
        if let Some(who) = self.verified.get(token, now) {
            return Ok(who);
        }
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map_err(|e| {
                let reason = match e.kind() {
                    jsonwebtoken::errors::ErrorKind::ExpiredSignature => "the token has expired",
                    jsonwebtoken::errors::ErrorKind::InvalidSignature => {
                        "the token signature is invalid"
                    }
                    jsonwebtoken::errors::ErrorKind::InvalidAlgorithm => {
                        "the token must be signed with HS256"
                    }
                    jsonwebtoken::errors::ErrorKind::MissingRequiredClaim(_) => {
                        "the token lacks a required claim (sub, exp)"
                    }
                    _ => "the token is malformed",
                };
                Error::new(ErrorKind::Unauthenticated, reason)
            })?;
        let scopes = data
            .claims
            .scope
            .split_ascii_whitespace()
            .filter_map(|s| s.parse().ok());
        let who = Principal::new(data.claims.sub, scopes);
        let until = data.claims.exp.saturating_add(self.validation.leeway);
        self.verified.insert(token, who.clone(), until, now);
        Ok(who)
    }

    /// Verifies an `Authorization` header value (`Bearer <jwt>`, scheme case-insensitive).
    pub fn verify_bearer(&self, header: &str) -> Result<Principal> {
        let (scheme, token) = header.trim().split_once(' ').ok_or_else(|| {
            Error::new(
                ErrorKind::Unauthenticated,
                "expected `Authorization: Bearer <token>`",
            )
        })?;
        if !scheme.eq_ignore_ascii_case("bearer") {
            return Err(Error::new(
                ErrorKind::Unauthenticated,
                "only the Bearer scheme is supported",
            ));
        }
        self.verify(token.trim())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issued_tokens_verify_with_their_scopes() {
        let auth = TokenAuthority::new(b"secret", Duration::from_secs(60));
        let token = auth
            .issue("alice", [Scope::PetsRead, Scope::OrdersWrite])
            .unwrap();
        let p = auth
            .verify_bearer(&format!("Bearer {}", token.access_token))
            .unwrap();
        assert_eq!(p.subject(), Some("alice"));
        assert!(p.has(Scope::OrdersWrite));
        assert!(!p.has(Scope::PetsWrite));
        assert_eq!(
            p.require(Scope::PetsWrite).unwrap_err().kind(),
            ErrorKind::Forbidden
        );
    }

    #[test]
    fn verified_tokens_are_remembered_until_they_expire_and_the_memory_is_bounded() {
        let auth = TokenAuthority::new(b"secret", Duration::from_secs(60));
        let token = auth.issue("alice", [Scope::PetsRead]).unwrap().access_token;
        let first = auth.verify(&token).unwrap();
        assert_eq!(auth.verified.len(), 1);
        // A clone shares the memory, and the remembered answer is the same.
        assert_eq!(auth.clone().verify(&token).unwrap(), first);
        // A token differing in one signature character is checked, not looked up.
        let at = token.len() - 5;
        let swap = if &token[at..=at] == "A" { "B" } else { "A" };
        let forged = format!("{}{swap}{}", &token[..at], &token[at + 1..]);
        assert_eq!(
            auth.verify(&forged).unwrap_err().kind(),
            ErrorKind::Unauthenticated
        );

        let cache = VerifiedTokens::default();
        cache.insert("t", Principal::system("x"), 100, 50);
        assert!(cache.get("t", 100).is_some());
        assert!(cache.get("t", 101).is_none(), "past exp + leeway");
        for i in 0..VerifiedTokens::CAPACITY + 10 {
            cache.insert(&format!("t{i}"), Principal::system("x"), 200, 150);
        }
        assert!(cache.len() <= VerifiedTokens::CAPACITY);
    }

    #[test]
    fn forged_and_expired_tokens_are_unauthenticated() {
        let auth = TokenAuthority::new(b"secret", Duration::from_secs(60));
        let other = TokenAuthority::new(b"other", Duration::from_secs(60));
        let token = other.issue("mallory", Scope::ALL).unwrap();
        assert_eq!(
            auth.verify(&token.access_token).unwrap_err().kind(),
            ErrorKind::Unauthenticated
        );

        let claims = Claims {
            sub: "bob".into(),
            scope: "admin".into(),
            exp: 1_000,
        };
        let expired = jsonwebtoken::encode(
            &Header::default(),
            &claims,
            &EncodingKey::from_secret(b"secret"),
        )
        .unwrap();
        let err = auth.verify(&expired).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Unauthenticated);
        assert!(err.message().contains("expired"));
        assert!(auth.verify("not.a.jwt").is_err());
        assert!(auth.verify_bearer("Basic abc").is_err());
    }

    #[test]
    fn admin_grants_everything_and_anonymous_is_unauthenticated() {
        let admin = Principal::new("root", [Scope::Admin]);
        assert!(Scope::ALL.iter().all(|s| admin.has(*s)));
        let anon = Principal::anonymous();
        assert_eq!(
            anon.require(Scope::PetsRead).unwrap_err().kind(),
            ErrorKind::Unauthenticated
        );
    }

    #[test]
    fn unknown_scopes_in_tokens_are_ignored() {
        let auth = TokenAuthority::new(b"s", Duration::from_secs(60));
        let claims = Claims {
            sub: "x".into(),
            scope: "pets:read future:scope".into(),
            exp: jsonwebtoken::get_current_timestamp() + 60,
        };
        let t = jsonwebtoken::encode(&Header::default(), &claims, &EncodingKey::from_secret(b"s"))
            .unwrap();
        let p = auth.verify(&t).unwrap();
        assert_eq!(p.scopes().collect::<Vec<_>>(), vec![Scope::PetsRead]);
    }
}
