//! Tokens from an identity provider: RS256/ES256 JWTs checked against the provider's
//! JSON Web Key Set, with `iss` and `aud`, keys chosen by `kid`, and key rotation.
//!
//! The core never opens a connection: a [`KeySource`] (an HTTP GET of the provider's
//! `jwks_uri` in a server) hands over the document.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::fmt;
use std::future::Future;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use async_trait::async_trait;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::jwk::{
    AlgorithmParameters, EllipticCurve, Jwk, JwkSet, KeyOperations, PublicKeyUse,
};
use jsonwebtoken::{Algorithm, DecodingKey, Header, Validation};
use tokio::sync::{Mutex, Notify, watch};

use super::verifier::{TokenClaims, TokenVerifier, refusal, signature_only};
use crate::error::{Error, ErrorKind, Result};

/// Where a [`JwksVerifier`] gets the key set document (`{"keys": [...]}`) from.
/// Implementations bound what they read (time and size); the verifier bounds how
/// often it asks.
#[async_trait]
pub trait KeySource: Send + Sync + fmt::Debug {
    /// The current JWK Set document.
    async fn fetch(&self) -> Result<String>;
}

/// Settings of a [`JwksVerifier`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct JwksConfig {
    /// The only accepted `iss` (required in every token).
    pub issuer: String,
    /// The accepted `aud` values: a token must name at least one (required).
    pub audiences: Vec<String>,
    /// The accepted signature algorithms (default RS256 and ES256).
    pub algorithms: Vec<Algorithm>,
    /// The key set is fetched again this often, so that withdrawn keys stop working
    /// (default 10 minutes).
    pub refresh_interval: Duration,
    /// At most one fetch per this interval, however many tokens name an unknown key
    /// (default 30 seconds; never under one second).
    pub min_refresh_interval: Duration,
    /// A fetch that takes longer fails (default 10 seconds).
    pub fetch_timeout: Duration,
}

impl JwksConfig {
    /// Settings for tokens from `issuer` meant for `audience`.
    pub fn new(issuer: impl Into<String>, audience: impl Into<String>) -> Self {
        Self {
            issuer: issuer.into(),
            audiences: vec![audience.into()],
            algorithms: vec![Algorithm::RS256, Algorithm::ES256],
            refresh_interval: Duration::from_secs(600),
            min_refresh_interval: Duration::from_secs(30),
            fetch_timeout: Duration::from_secs(10),
        }
    }

    /// Sets [`JwksConfig::algorithms`]; only asymmetric algorithms are kept (an HMAC
    /// algorithm here would let a public key act as a shared secret).
    pub fn algorithms(mut self, algorithms: impl IntoIterator<Item = Algorithm>) -> Self {
        self.algorithms = algorithms
            .into_iter()
            .filter(|alg| !matches!(alg, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512))
            .collect();
        self
    }

    /// Sets [`JwksConfig::refresh_interval`].
    pub fn refresh_interval(mut self, every: Duration) -> Self {
        self.refresh_interval = every;
        self
    }

    /// Sets [`JwksConfig::min_refresh_interval`].
    pub fn min_refresh_interval(mut self, gap: Duration) -> Self {
        self.min_refresh_interval = gap;
        self
    }

    /// Sets [`JwksConfig::fetch_timeout`].
    pub fn fetch_timeout(mut self, timeout: Duration) -> Self {
        self.fetch_timeout = timeout;
        self
    }
}

/// A key set document larger than this is refused.
const MAX_DOCUMENT_BYTES: usize = 256 * 1024;
/// At most this many keys are taken from a key set.
const MAX_KEYS: usize = 64;
/// The maintenance loop fetches at most this often, whatever the settings say.
const MIN_GAP: Duration = Duration::from_secs(1);
/// RSA keys below this size are ignored.
const MIN_RSA_BITS: usize = 2048;

/// One usable key: the algorithm it is for, and the key.
struct Key {
    alg: Algorithm,
    key: DecodingKey,
    /// What it was made from, to tell whether a new key set changed anything.
    jwk: Jwk,
}

/// Verifies RS256/ES256 tokens against an identity provider's JWK Set.
///
/// Every token must name its key (`kid`), carry the configured `iss` and one of the
/// configured `aud` values, and be signed with the algorithm its key is for. Keys
/// embedded in or pointed to by the token header (`jwk`, `jku`, `x5u`, `x5c`) are
/// never used, and a header with `crit` is refused.
///
/// Load the keys with [`JwksVerifier::refresh`] before serving, and run
/// [`JwksVerifier::maintain`] on the runtime: it fetches the key set every
/// [`JwksConfig::refresh_interval`], and soon after a token names a key it does not
/// know (a rotation), at most once per [`JwksConfig::min_refresh_interval`]. Until
/// then such a token is refused. Clones share the keys.
#[derive(Clone)]
pub struct JwksVerifier {
    inner: Arc<Inner>,
}

struct Inner {
    source: Arc<dyn KeySource>,
    config: JwksConfig,
    keys: RwLock<Arc<HashMap<String, Key>>>,
    /// The key generation; bumped whenever the set of keys changes.
    generation: watch::Sender<u64>,
    /// Woken by a token naming an unknown key.
    wanted: Arc<Notify>,
    /// One fetch at a time.
    fetching: Mutex<()>,
}

impl fmt::Debug for JwksVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwksVerifier")
            .field("issuer", &self.inner.config.issuer)
            .field("audiences", &self.inner.config.audiences)
            .field("keys", &self.key_ids())
            .finish_non_exhaustive()
    }
}

impl JwksVerifier {
    /// A verifier without keys yet; see [`JwksVerifier::refresh`].
    pub fn new(source: impl KeySource + 'static, config: JwksConfig) -> Self {
        Self {
            inner: Arc::new(Inner {
                source: Arc::new(source),
                config,
                keys: RwLock::default(),
                generation: watch::Sender::new(0),
                wanted: Arc::default(),
                fetching: Mutex::new(()),
            }),
        }
    }

    /// The settings.
    pub fn config(&self) -> &JwksConfig {
        &self.inner.config
    }

    /// The ids of the usable keys, sorted.
    pub fn key_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self.keys().keys().cloned().collect();
        ids.sort();
        ids
    }

    /// Follows the key generation ([`TokenVerifier::key_generation`]): the receiver
    /// sees a change whenever a fetched key set differs from the one before.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.inner.generation.subscribe()
    }

    fn keys(&self) -> Arc<HashMap<String, Key>> {
        self.inner
            .keys
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Fetches the key set now and installs its usable keys; returns how many there
    /// are. On any failure (the fetch, an oversized or malformed document, no usable
    /// key) the keys stay as they were.
    pub async fn refresh(&self) -> Result<usize> {
        let _one_at_a_time = self.inner.fetching.lock().await;
        let config = &self.inner.config;
        let document = tokio::time::timeout(config.fetch_timeout, self.inner.source.fetch())
            .await
            .map_err(|_| {
                Error::new(
                    ErrorKind::Unavailable,
                    format!(
                        "fetching the key set took longer than {:?}",
                        config.fetch_timeout
                    ),
                )
            })??;
        let keys = parse_key_set(&document, &config.algorithms)?;
        let count = keys.len();
        let mut current = self
            .inner
            .keys
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        if !same_keys(&current, &keys) {
            *current = Arc::new(keys);
            self.inner.generation.send_modify(|g| *g += 1);
        }
        Ok(count)
    }

    /// The maintenance loop: fetches the key set every
    /// [`JwksConfig::refresh_interval`] and, at most once per
    /// [`JwksConfig::min_refresh_interval`], when a token named an unknown key.
    /// Failures are logged and the old keys kept. Spawn it on the runtime; it ends
    /// once every clone of the verifier is dropped (checked at each wake-up).
    pub fn maintain(&self) -> impl Future<Output = ()> + Send + 'static {
        let inner = Arc::downgrade(&self.inner);
        let wanted = self.inner.wanted.clone();
        // Whatever the settings, the provider is never asked more than once a second.
        let gap = self.inner.config.min_refresh_interval.max(MIN_GAP);
        let every = self.inner.config.refresh_interval.max(gap);
        async move {
            loop {
                // A timeout is the periodic refresh; either way, fetch.
                let _ = tokio::time::timeout(every, wanted.notified()).await;
                let Some(inner) = inner.upgrade() else {
                    return;
                };
                let verifier = JwksVerifier { inner };
                match verifier.refresh().await {
                    Ok(n) => tracing::debug!(keys = n, "refreshed the JWK set"),
                    Err(e) => {
                        tracing::warn!(error = %e, "refreshing the JWK set failed; keeping the old keys")
                    }
                }
                drop(verifier);
                // Requests for a refresh during the gap collapse into one.
                tokio::time::sleep(gap).await;
            }
        }
    }
}

impl TokenVerifier for JwksVerifier {
    fn accepts(&self, alg: Algorithm) -> bool {
        self.inner.config.algorithms.contains(&alg)
    }

    fn verify(&self, token: &str, header: &Header) -> Result<TokenClaims> {
        let refuse = |reason: &'static str| Error::new(ErrorKind::Unauthenticated, reason);
        if header.crit.is_some() {
            return Err(refuse("the token header has critical extensions (crit)"));
        }
        let kid = header
            .kid
            .as_deref()
            .ok_or_else(|| refuse("the token names no signing key (kid)"))?;
        let keys = self.keys();
        let Some(key) = keys.get(kid) else {
            // Perhaps the provider rotated its keys: ask the maintenance loop to look.
            self.inner.wanted.notify_one();
            return Err(refuse("the token's signing key (kid) is not known"));
        };
        if key.alg != header.alg {
            return Err(refuse("the token's algorithm does not match its key"));
        }
        let mut validation: Validation = signature_only(key.alg);
        validation.set_issuer(&[&self.inner.config.issuer]);
        validation.set_audience(&self.inner.config.audiences);
        validation.validate_aud = true;
        validation.set_required_spec_claims(&["iss", "aud"]);
        jsonwebtoken::decode::<TokenClaims>(token, &key.key, &validation)
            .map(|data| data.claims)
            .map_err(|e| refusal(&e))
    }

    fn key_generation(&self) -> u64 {
        *self.inner.generation.borrow()
    }
}

fn same_keys(a: &HashMap<String, Key>, b: &HashMap<String, Key>) -> bool {
    a.len() == b.len()
        && a.iter()
            .all(|(kid, key)| b.get(kid).is_some_and(|other| other.jwk == key.jwk))
}

/// The usable signing keys of a JWK Set document: keys with a `kid`, for signatures,
/// of an accepted asymmetric algorithm. Anything else in the set is skipped.
fn parse_key_set(document: &str, accepted: &[Algorithm]) -> Result<HashMap<String, Key>> {
    let bad = |why: String| Error::new(ErrorKind::Unavailable, format!("the JWK set {why}"));
    if document.len() > MAX_DOCUMENT_BYTES {
        return Err(bad(format!(
            "is larger than {} KiB",
            MAX_DOCUMENT_BYTES / 1024
        )));
    }
    let set: JwkSet =
        serde_json::from_str(document).map_err(|e| bad(format!("is not a JWK set: {e}")))?;
    let mut keys = HashMap::new();
    for jwk in set.keys {
        if keys.len() == MAX_KEYS {
            tracing::warn!("the JWK set holds more than {MAX_KEYS} keys; the rest are ignored");
            break;
        }
        let Some((kid, key)) = usable_key(&jwk, accepted) else {
            tracing::debug!(kid = ?jwk.common.key_id, "skipping an unusable JWK");
            continue;
        };
        match keys.entry(kid) {
            Entry::Vacant(slot) => {
                slot.insert(key);
            }
            Entry::Occupied(slot) => tracing::warn!(
                kid = slot.key(),
                "the JWK set names a key id twice; the first key is used"
            ),
        }
    }
    if keys.is_empty() {
        return Err(bad("holds no usable signing key".to_owned()));
    }
    Ok(keys)
}

fn usable_key(jwk: &Jwk, accepted: &[Algorithm]) -> Option<(String, Key)> {
    let kid = jwk.common.key_id.clone().filter(|k| !k.is_empty())?;
    if jwk
        .common
        .public_key_use
        .as_ref()
        .is_some_and(|u| *u != PublicKeyUse::Signature)
    {
        return None;
    }
    if jwk
        .common
        .key_operations
        .as_ref()
        .is_some_and(|ops| !ops.contains(&KeyOperations::Verify))
    {
        return None;
    }
    // The algorithm the key is for: its `alg`, else the one its type implies.
    let alg = match (&jwk.common.key_algorithm, &jwk.algorithm) {
        (Some(alg), _) => Algorithm::try_from(*alg).ok()?,
        (None, AlgorithmParameters::RSA(_)) => Algorithm::RS256,
        (None, AlgorithmParameters::EllipticCurve(ec)) if ec.curve == EllipticCurve::P256 => {
            Algorithm::ES256
        }
        (None, AlgorithmParameters::EllipticCurve(ec)) if ec.curve == EllipticCurve::P384 => {
            Algorithm::ES384
        }
        _ => return None,
    };
    if !accepted.contains(&alg) {
        return None;
    }
    // The key's type must be the algorithm's: never an `oct` (shared secret) key.
    let fits = match (&jwk.algorithm, alg) {
        (
            AlgorithmParameters::RSA(rsa),
            Algorithm::RS256
            | Algorithm::RS384
            | Algorithm::RS512
            | Algorithm::PS256
            | Algorithm::PS384
            | Algorithm::PS512,
        ) => rsa_bits(&rsa.n) >= MIN_RSA_BITS,
        (AlgorithmParameters::EllipticCurve(ec), Algorithm::ES256) => {
            ec.curve == EllipticCurve::P256
        }
        (AlgorithmParameters::EllipticCurve(ec), Algorithm::ES384) => {
            ec.curve == EllipticCurve::P384
        }
        _ => false,
    };
    if !fits {
        return None;
    }
    let key = DecodingKey::from_jwk(jwk).ok()?;
    Some((
        kid,
        Key {
            alg,
            key,
            jwk: jwk.clone(),
        },
    ))
}

/// The size in bits of an RSA modulus given in base64url.
fn rsa_bits(n: &str) -> usize {
    let Ok(bytes) = URL_SAFE_NO_PAD.decode(n.trim_end_matches('=')) else {
        return 0;
    };
    let Some(first) = bytes.iter().position(|b| *b != 0) else {
        return 0;
    };
    (bytes.len() - first) * 8 - bytes[first].leading_zeros() as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rsa_modulus_sizes_are_counted_in_bits() {
        assert_eq!(rsa_bits(&URL_SAFE_NO_PAD.encode([0x01, 0xff])), 9);
        assert_eq!(rsa_bits(&URL_SAFE_NO_PAD.encode([0x00, 0x80, 0x00])), 16);
        assert_eq!(rsa_bits(&URL_SAFE_NO_PAD.encode([0xff; 256])), 2048);
        assert_eq!(rsa_bits("!!"), 0);
        assert_eq!(rsa_bits(""), 0);
    }

    #[test]
    fn hmac_algorithms_cannot_be_configured() {
        let config = JwksConfig::new("iss", "aud").algorithms([
            Algorithm::HS256,
            Algorithm::RS256,
            Algorithm::HS512,
        ]);
        assert_eq!(config.algorithms, vec![Algorithm::RS256]);
    }

    #[test]
    fn a_key_set_without_usable_keys_is_refused() {
        let accepted = [Algorithm::RS256, Algorithm::ES256];
        for doc in [
            "",
            "[]",
            r#"{"keys": []}"#,
            r#"{"keys": [{"kty": "oct", "kid": "k", "k": "c2VjcmV0", "alg": "HS256"}]}"#,
            r#"{"keys": [{"kty": "oct", "kid": "k", "k": "c2VjcmV0"}]}"#,
        ] {
            let err = parse_key_set(doc, &accepted).err().expect(doc);
            assert_eq!(err.kind(), ErrorKind::Unavailable, "{doc}");
        }
        let huge = format!(
            r#"{{"keys": [], "pad": "{}"}}"#,
            "x".repeat(MAX_DOCUMENT_BYTES)
        );
        assert!(parse_key_set(&huge, &accepted).is_err());
    }
}
