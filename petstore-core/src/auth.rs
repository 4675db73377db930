//! The one authorization model: a [`Principal`] carrying [`Scope`]s, and JWTs as the
//! credential every protocol accepts: HS256 (claims `sub`, `scope`, `exp`) signed by
//! this service, and optionally an identity provider's RS256/ES256 tokens checked
//! against its key set.

mod jwks;
mod verifier;

pub use jwks::{JwksConfig, JwksVerifier, KeySource};
pub use verifier::{Hs256Verifier, TokenClaims, TokenVerifier};

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::str::FromStr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use jsonwebtoken::{Algorithm, EncodingKey, Header};
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

/// The default of [`TokenAuthority::max_lifetime`].
pub const DEFAULT_MAX_TOKEN_LIFETIME: Duration = Duration::from_secs(24 * 3600);
/// A token longer than this is refused unread (real issuers' tokens are far smaller).
const MAX_TOKEN_BYTES: usize = 8 * 1024;
/// The longest accepted subject: it becomes the owner of orders.
const MAX_SUBJECT_BYTES: usize = 256;
/// Allowed clock difference with the issuer, for `exp` and `nbf`.
const LEEWAY_SECS: u64 = 5;

/// Issues HS256 JWTs (claims `sub`, `scope` space separated, `exp`, `iat`) and verifies
/// bearer tokens.
///
/// A token goes to the [`TokenVerifier`] that accepts its header's algorithm: the
/// authority's own HS256 secret ([`Hs256Verifier`]), and any added with
/// [`TokenAuthority::with_verifier`] (such as a [`JwksVerifier`] for an identity
/// provider). Whatever the verifier, the authority then requires a non-empty `sub`
/// (at most 256 bytes, no control characters) and an `exp` that has not passed,
/// honours `nbf`, and refuses a token that would live longer than
/// [`TokenAuthority::max_lifetime`] (counted from now, and from `iat` when present).
/// No other claim is required of HS256 tokens, so any HS256 library can mint a valid
/// token.
///
/// Verified tokens are remembered (up to 4,096, each until its `exp`, and only while
/// the verifier's keys stay the same), so that a client sending the same token on
/// every request pays for the signature check once. Clones share that memory.
#[derive(Clone)]
pub struct TokenAuthority {
    encoding: EncodingKey,
    verifiers: Vec<Arc<dyn TokenVerifier>>,
    ttl: Duration,
    max_lifetime: Duration,
    verified: Arc<VerifiedTokens>,
}

/// What is remembered of a verified token.
#[derive(Clone)]
struct Verified {
    who: Principal,
    /// Unix seconds after which the token no longer verifies: `exp` plus the leeway.
    until: u64,
    /// Which verifier vouched for it, and under which key generation.
    verifier: usize,
    generation: u64,
}

/// Tokens that passed verification.
#[derive(Default)]
struct VerifiedTokens(Mutex<HashMap<Box<str>, Verified>>);

impl VerifiedTokens {
    /// At most this many tokens are remembered.
    const CAPACITY: usize = 4096;

    fn get(&self, token: &str, now: u64) -> Option<Verified> {
        let map = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        map.get(token).filter(|v| now <= v.until).cloned()
    }

    fn insert(&self, token: &str, verified: Verified, now: u64) {
        let mut map = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if map.len() >= Self::CAPACITY {
            map.retain(|_, v| now <= v.until);
            if map.len() >= Self::CAPACITY {
                // Many live tokens at once: start over rather than track recency.
                map.clear();
            }
        }
        map.insert(token.into(), verified);
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
            .field("max_lifetime", &self.max_lifetime)
            .field("verifiers", &self.verifiers)
            .finish_non_exhaustive()
    }
}

fn refuse(reason: impl Into<std::borrow::Cow<'static, str>>) -> Error {
    Error::new(ErrorKind::Unauthenticated, reason)
}

impl TokenAuthority {
    /// An authority signing with `secret`; tokens live for `ttl`. The maximum accepted
    /// lifetime is [`DEFAULT_MAX_TOKEN_LIFETIME`], or `ttl` when longer.
    pub fn new(secret: &[u8], ttl: Duration) -> Self {
        Self {
            encoding: EncodingKey::from_secret(secret),
            verifiers: vec![Arc::new(Hs256Verifier::new(secret))],
            ttl,
            max_lifetime: DEFAULT_MAX_TOKEN_LIFETIME.max(ttl),
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

    /// Also accepts the tokens `verifier` vouches for (those signed with an algorithm
    /// it [accepts](TokenVerifier::accepts) and the authority's own HS256 verifier
    /// does not).
    pub fn with_verifier(mut self, verifier: impl TokenVerifier + 'static) -> Self {
        self.verifiers.push(Arc::new(verifier));
        // Entries name verifiers by position: start the memory afresh.
        self.verified = Arc::default();
        self
    }

    /// Sets [`TokenAuthority::max_lifetime`]; never below the lifetime of issued
    /// tokens.
    pub fn with_max_lifetime(mut self, max: Duration) -> Self {
        self.max_lifetime = max.max(self.ttl);
        self
    }

    /// The lifetime of issued tokens.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// The longest lifetime a presented token may have: its `exp` at most this far
    /// from now, and from its `iat` when it has one.
    pub fn max_lifetime(&self) -> Duration {
        self.max_lifetime
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
        let now = jsonwebtoken::get_current_timestamp();
        let claims =
            TokenClaims::new(subject, scope.clone(), now + self.ttl.as_secs()).issued_at(now);
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
        if token.len() > MAX_TOKEN_BYTES {
            return Err(refuse("the token is longer than 8 KiB"));
        }
        let now = jsonwebtoken::get_current_timestamp();
        if let Some(known) = self.verified.get(token, now)
            && self.verifiers[known.verifier].key_generation() == known.generation
        {
            return Ok(known.who);
        }
        let header = jsonwebtoken::decode_header(token)
            .map_err(|_| refuse("the token is malformed (or its algorithm is unknown)"))?;
        let (index, verifier) = self
            .verifiers
            .iter()
            .enumerate()
            .find(|(_, v)| v.accepts(header.alg))
            .ok_or_else(|| {
                refuse(format!(
                    "tokens signed with {:?} are not accepted",
                    header.alg
                ))
            })?;
        // Read before verifying: keys that change meanwhile make the entry stale.
        let generation = verifier.key_generation();
        let claims = verifier.verify(token, &header)?;
        let (who, until) = self.admit(claims, now)?;
        let verified = Verified {
            who: who.clone(),
            until,
            verifier: index,
            generation,
        };
        self.verified.insert(token, verified, now);
        Ok(who)
    }

    /// The rules every token obeys, whoever signed it; returns the principal and the
    /// time until which the token stays valid.
    fn admit(&self, claims: TokenClaims, now: u64) -> Result<(Principal, u64)> {
        let sub = claims
            .sub
            .ok_or_else(|| refuse("the token lacks a required claim (sub)"))?;
        if sub.trim().is_empty() {
            return Err(refuse("the token's subject (sub) is empty"));
        }
        if sub.len() > MAX_SUBJECT_BYTES || sub.chars().any(char::is_control) {
            return Err(refuse(
                "the token's subject (sub) is longer than 256 bytes or has control characters",
            ));
        }
        let exp = claims
            .exp
            .ok_or_else(|| refuse("the token lacks a required claim (exp)"))?;
        if exp.saturating_add(LEEWAY_SECS) < now {
            return Err(refuse("the token has expired"));
        }
        if claims
            .nbf
            .is_some_and(|nbf| nbf > now.saturating_add(LEEWAY_SECS))
        {
            return Err(refuse("the token is not valid yet (nbf)"));
        }
        let max = self.max_lifetime.as_secs();
        if exp.saturating_sub(now) > max.saturating_add(LEEWAY_SECS)
            || claims.iat.is_some_and(|iat| exp.saturating_sub(iat) > max)
        {
            return Err(refuse(format!(
                "the token lives longer than the accepted maximum of {max} seconds"
            )));
        }
        let scopes = claims
            .scope
            .split_ascii_whitespace()
            .filter_map(|s| s.parse().ok());
        Ok((Principal::new(sub, scopes), exp.saturating_add(LEEWAY_SECS)))
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
    use serde_json::json;

    use super::*;

    fn now() -> u64 {
        jsonwebtoken::get_current_timestamp()
    }

    /// An HS256 token with exactly `claims`, as any JWT library would make it.
    fn hs256(secret: &[u8], claims: serde_json::Value) -> String {
        jsonwebtoken::encode(
            &Header::default(),
            &claims,
            &EncodingKey::from_secret(secret),
        )
        .unwrap()
    }

    fn refusal(auth: &TokenAuthority, token: &str) -> String {
        let err = auth.verify(token).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Unauthenticated, "{err}");
        err.message().to_owned()
    }

    #[test]
    fn issued_tokens_last_the_configured_lifetime() {
        let auth = TokenAuthority::new(b"secret", Duration::from_secs(90));
        assert_eq!(auth.ttl(), Duration::from_secs(90));
        assert_eq!(
            auth.issue("alice", [Scope::PetsRead]).unwrap().expires_in,
            90
        );
        // The maximum accepted lifetime is never below the issued one.
        let auth = auth.with_max_lifetime(Duration::from_secs(10));
        assert_eq!(auth.max_lifetime(), Duration::from_secs(90));
    }

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
        let entry = |until| Verified {
            who: Principal::system("x"),
            until,
            verifier: 0,
            generation: 0,
        };
        cache.insert("t", entry(100), 50);
        assert!(cache.get("t", 100).is_some());
        assert!(cache.get("t", 101).is_none(), "past exp + leeway");
        for i in 0..VerifiedTokens::CAPACITY + 10 {
            cache.insert(&format!("t{i}"), entry(200), 150);
        }
        assert!(cache.len() <= VerifiedTokens::CAPACITY);

        // A full cache drops its expired entries first and keeps the live ones.
        let cache = VerifiedTokens::default();
        cache.insert("expired", entry(100), 50);
        for i in 1..VerifiedTokens::CAPACITY {
            cache.insert(&format!("live{i}"), entry(300), 50);
        }
        assert_eq!(cache.len(), VerifiedTokens::CAPACITY);
        cache.insert("new", entry(300), 200);
        assert_eq!(
            cache.len(),
            VerifiedTokens::CAPACITY,
            "only the expired one went"
        );
        assert!(cache.get("live1", 200).is_some());
        assert!(cache.get("new", 200).is_some());
    }

    #[test]
    fn forged_and_expired_tokens_are_unauthenticated() {
        let auth = TokenAuthority::new(b"secret", Duration::from_secs(60));
        let other = TokenAuthority::new(b"other", Duration::from_secs(60));
        let token = other.issue("mallory", Scope::ALL).unwrap();
        assert!(refusal(&auth, &token.access_token).contains("signature"));

        let expired = hs256(
            b"secret",
            json!({"sub": "bob", "scope": "admin", "exp": 1_000}),
        );
        assert!(refusal(&auth, &expired).contains("expired"));
        assert!(auth.verify("not.a.jwt").is_err());
        assert!(auth.verify_bearer("Basic abc").is_err());
    }

    #[test]
    fn a_token_that_is_not_valid_yet_is_refused_until_its_nbf() {
        let auth = TokenAuthority::new(b"secret", Duration::from_secs(60));
        let exp = now() + 600;
        let later = hs256(
            b"secret",
            json!({"sub": "bob", "scope": "admin", "exp": exp, "nbf": now() + 300}),
        );
        assert!(refusal(&auth, &later).contains("nbf"));
        // Within the clock leeway, and in the past, `nbf` lets the token through.
        for nbf in [now() + LEEWAY_SECS - 1, now() - 60] {
            let token = hs256(
                b"secret",
                json!({"sub": "bob", "scope": "admin", "exp": exp, "nbf": nbf}),
            );
            assert_eq!(auth.verify(&token).unwrap().subject(), Some("bob"));
        }
    }

    #[test]
    fn a_token_living_longer_than_the_maximum_is_refused() {
        let auth = TokenAuthority::new(b"secret", Duration::from_secs(60));
        assert_eq!(auth.max_lifetime(), DEFAULT_MAX_TOKEN_LIFETIME);
        let day = DEFAULT_MAX_TOKEN_LIFETIME.as_secs();
        for exp in [
            1u64 << 63,
            u64::MAX,
            now() + 365 * day,
            now() + day + LEEWAY_SECS + 60,
        ] {
            let token = hs256(
                b"secret",
                json!({"sub": "bob", "scope": "admin", "exp": exp}),
            );
            assert!(refusal(&auth, &token).contains("longer than"), "exp {exp}");
        }
        // Counted from `iat` too: a token minted for a week, presented within its day.
        let week = hs256(
            b"secret",
            json!({"sub": "bob", "exp": now() + 3600, "iat": now() + 3600 - 7 * day}),
        );
        assert!(refusal(&auth, &week).contains("longer than"));
        // Just within the maximum.
        let ok = hs256(
            b"secret",
            json!({"sub": "bob", "exp": now() + day, "iat": now()}),
        );
        assert!(auth.verify(&ok).is_ok());

        // Configurable, but never below the lifetime of issued tokens.
        let short = TokenAuthority::new(b"secret", Duration::from_secs(600))
            .with_max_lifetime(Duration::from_secs(60));
        assert_eq!(short.max_lifetime(), Duration::from_secs(600));
        let issued = short.issue("alice", [Scope::PetsRead]).unwrap();
        assert!(short.verify(&issued.access_token).is_ok());
        let hour = hs256(b"secret", json!({"sub": "bob", "exp": now() + 3600}));
        assert!(refusal(&short, &hour).contains("longer than"));
        // A long service ttl raises the default maximum with it.
        let long = TokenAuthority::new(b"secret", Duration::from_secs(2 * day));
        assert_eq!(long.max_lifetime(), Duration::from_secs(2 * day));
    }

    #[test]
    fn the_subject_must_be_present_non_empty_short_and_printable() {
        let auth = TokenAuthority::new(b"secret", Duration::from_secs(60));
        let exp = now() + 60;
        let cases = [
            (json!({"scope": "admin", "exp": exp}), "lacks"),
            (json!({"sub": "", "scope": "admin", "exp": exp}), "empty"),
            (json!({"sub": "   ", "scope": "admin", "exp": exp}), "empty"),
            (
                json!({"sub": "a\nb", "scope": "admin", "exp": exp}),
                "control",
            ),
            (json!({"sub": "x".repeat(257), "exp": exp}), "256 bytes"),
            (json!({"sub": 7, "exp": exp}), "malformed"),
        ];
        for (claims, why) in cases {
            let token = hs256(b"secret", claims.clone());
            let reason = refusal(&auth, &token);
            assert!(reason.contains(why), "{claims}: {reason}");
        }
        let missing_exp = hs256(b"secret", json!({"sub": "bob"}));
        assert!(refusal(&auth, &missing_exp).contains("exp"));
        let longest = hs256(b"secret", json!({"sub": "x".repeat(256), "exp": exp}));
        assert!(auth.verify(&longest).is_ok());
    }

    #[test]
    fn unsigned_oversized_and_foreign_algorithm_tokens_are_refused() {
        use base64::Engine as _;
        use base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let auth = TokenAuthority::new(b"secret", Duration::from_secs(60));
        let b64 = |v: serde_json::Value| URL_SAFE_NO_PAD.encode(v.to_string());
        let claims = b64(json!({"sub": "root", "scope": "admin", "exp": now() + 60}));
        for alg in ["none", "None", "NONE", "RS256", "ES256", "HS512"] {
            let token = format!("{}.{claims}.", b64(json!({"alg": alg, "typ": "JWT"})));
            refusal(&auth, &token);
        }
        let huge = hs256(
            b"secret",
            json!({"sub": "bob", "exp": now() + 60, "pad": "x".repeat(MAX_TOKEN_BYTES)}),
        );
        assert!(refusal(&auth, &huge).contains("longer than 8 KiB"));
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
    fn only_the_two_read_scopes_are_reads_and_scopes_print_their_wire_names() {
        let reads: Vec<Scope> = Scope::ALL.into_iter().filter(|s| s.is_read()).collect();
        assert_eq!(reads, [Scope::PetsRead, Scope::OrdersRead]);
        assert_eq!(Scope::OrdersWrite.to_string(), "orders:write");
        assert_eq!(Scope::Admin.to_string(), "admin");
    }

    #[test]
    fn the_authority_debug_names_it_and_never_prints_the_secret() {
        let auth = TokenAuthority::new(b"hunter2-secret", Duration::from_secs(60));
        let debug = format!("{auth:?}");
        assert_eq!(
            debug,
            "TokenAuthority { ttl: 60s, max_lifetime: 86400s, verifiers: [Hs256Verifier { .. }], .. }"
        );
    }

    /// The default maximum lifetime is one day: a token for two hours passes.
    #[test]
    fn the_default_maximum_lifetime_is_a_day() {
        assert_eq!(DEFAULT_MAX_TOKEN_LIFETIME, Duration::from_secs(86_400));
        let auth = TokenAuthority::new(b"secret", Duration::from_secs(60));
        let two_hours = hs256(b"secret", json!({"sub": "bob", "exp": now() + 7200}));
        assert_eq!(auth.verify(&two_hours).unwrap().subject(), Some("bob"));
    }

    /// A token of exactly 8 KiB is read; one byte more is not.
    #[test]
    fn a_token_of_exactly_the_size_limit_is_accepted() {
        let auth = TokenAuthority::new(b"secret", Duration::from_secs(60));
        let exp = now() + 60;
        let token = (0..)
            .map(|n| {
                hs256(
                    b"secret",
                    json!({"sub": "bob", "exp": exp, "pad": "x".repeat(n)}),
                )
            })
            .find(|t| t.len() >= MAX_TOKEN_BYTES)
            .unwrap();
        assert_eq!(token.len(), MAX_TOKEN_BYTES);
        assert_eq!(auth.verify(&token).unwrap().subject(), Some("bob"));
    }

    /// The time rules at their exact edges, at a fixed `now`: `exp` and `nbf` within
    /// the leeway, and a lifetime of exactly the maximum plus the leeway, pass.
    #[test]
    fn the_time_rules_hold_at_their_edges() {
        let auth = TokenAuthority::new(b"secret", Duration::from_secs(60));
        let now = 1_000_000;
        let max = auth.max_lifetime().as_secs();
        let admit = |claims: TokenClaims| auth.admit(claims, now);
        let claims = |exp| TokenClaims::new("bob", "pets:read", exp);

        let (who, until) = admit(claims(now - LEEWAY_SECS)).unwrap();
        assert_eq!((who.subject(), until), (Some("bob"), now));
        let err = admit(claims(now - LEEWAY_SECS - 1)).unwrap_err();
        assert!(err.message().contains("expired"), "{err}");

        assert!(admit(claims(now + 60).not_before(now + LEEWAY_SECS)).is_ok());
        let err = admit(claims(now + 60).not_before(now + LEEWAY_SECS + 1)).unwrap_err();
        assert!(err.message().contains("nbf"), "{err}");

        assert!(admit(claims(now + max + LEEWAY_SECS)).is_ok());
        let err = admit(claims(now + max + LEEWAY_SECS + 1)).unwrap_err();
        assert!(err.message().contains("longer than"), "{err}");
    }

    #[test]
    fn unknown_scopes_in_tokens_are_ignored() {
        let auth = TokenAuthority::new(b"s", Duration::from_secs(60));
        let t = hs256(
            b"s",
            json!({"sub": "x", "scope": "pets:read future:scope", "exp": now() + 60}),
        );
        let p = auth.verify(&t).unwrap();
        assert_eq!(p.scopes().collect::<Vec<_>>(), vec![Scope::PetsRead]);
    }
}
