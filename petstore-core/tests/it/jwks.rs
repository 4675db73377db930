//! Identity-provider tokens: RS256 and ES256 JWTs verified against a JWK Set, with
//! `iss`/`aud`, keys by `kid`, key rotation, and the forgeries that must fail.
//!
//! The keys are fixtures made once with OpenSSL (see `tests/fixtures/README.md`); no
//! test reaches the network: the key set comes from an in-memory `KeySource`.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use petstore_core::jsonwebtoken::jwk::{Jwk, JwkSet};
use petstore_core::jsonwebtoken::{self, Algorithm, EncodingKey, Header};
use petstore_core::{
    Error, ErrorKind, JwksConfig, JwksVerifier, KeySource, Scope, TokenAuthority, TokenVerifier,
};
use serde_json::{Value, json};

const ISSUER: &str = "https://id.example.test/";
const AUDIENCE: &str = "petstore";
const SECRET: &[u8] = b"the service's own HS256 secret";

const RSA_A: &[u8] = include_bytes!("../fixtures/rsa-a.der");
const RSA_B: &[u8] = include_bytes!("../fixtures/rsa-b.der");
const RSA_1024: &[u8] = include_bytes!("../fixtures/rsa-1024.der");
const EC_P256: &[u8] = include_bytes!("../fixtures/ec-p256.der");
const RSA_A_PUBLIC_PEM: &[u8] = include_bytes!("../fixtures/rsa-a.pub.pem");

/// A signing key of the test identity provider.
struct SigningKey {
    kid: &'static str,
    alg: Algorithm,
    key: EncodingKey,
}

fn rsa_a() -> SigningKey {
    SigningKey {
        kid: "rsa-a",
        alg: Algorithm::RS256,
        key: EncodingKey::from_rsa_der(RSA_A),
    }
}

fn rsa_b() -> SigningKey {
    SigningKey {
        kid: "rsa-b",
        alg: Algorithm::RS256,
        key: EncodingKey::from_rsa_der(RSA_B),
    }
}

fn ec() -> SigningKey {
    SigningKey {
        kid: "ec-1",
        alg: Algorithm::ES256,
        key: EncodingKey::from_ec_der(EC_P256),
    }
}

impl SigningKey {
    /// The public half as a JWK; `with_alg: false` leaves `alg` out, as many providers do.
    fn jwk(&self, with_alg: bool) -> Jwk {
        let mut jwk = Jwk::from_encoding_key(&self.key, self.alg).unwrap();
        jwk.common.key_id = Some(self.kid.to_owned());
        if !with_alg {
            jwk.common.key_algorithm = None;
        }
        jwk
    }

    fn sign(&self, claims: &Value) -> String {
        let mut header = Header::new(self.alg);
        header.kid = Some(self.kid.to_owned());
        self.sign_with(header, claims)
    }

    fn sign_with(&self, header: Header, claims: &Value) -> String {
        jsonwebtoken::encode(&header, claims, &self.key).unwrap()
    }
}

fn document(keys: &[&SigningKey]) -> String {
    let set = JwkSet {
        keys: keys
            .iter()
            .map(|k| k.jwk(k.alg == Algorithm::RS256))
            .collect(),
    };
    serde_json::to_string(&set).unwrap()
}

fn now() -> u64 {
    jsonwebtoken::get_current_timestamp()
}

/// Claims an identity provider would put in alice's token.
fn claims() -> Value {
    json!({
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "alice",
        "scope": "orders:read orders:write",
        "iat": now(),
        "exp": now() + 600,
    })
}

fn with(mut claims: Value, key: &str, value: Value) -> Value {
    claims[key] = value;
    claims
}

fn without(mut claims: Value, key: &str) -> Value {
    claims.as_object_mut().unwrap().remove(key);
    claims
}

/// The provider's key set endpoint: a document the test changes, and how often it
/// was fetched.
#[derive(Debug)]
struct FakeProvider {
    document: Mutex<Result<String, String>>,
    fetches: AtomicUsize,
}

impl FakeProvider {
    fn serving(document: String) -> Arc<Self> {
        Arc::new(Self {
            document: Mutex::new(Ok(document)),
            fetches: AtomicUsize::new(0),
        })
    }

    fn serve(&self, document: String) {
        *self.document.lock().unwrap() = Ok(document);
    }

    fn fail(&self, why: &str) {
        *self.document.lock().unwrap() = Err(why.to_owned());
    }

    fn fetches(&self) -> usize {
        self.fetches.load(Ordering::SeqCst)
    }
}

/// The source handed to the verifier: shares the provider with the test.
#[derive(Debug)]
struct Source(Arc<FakeProvider>);

#[async_trait]
impl KeySource for Source {
    async fn fetch(&self) -> petstore_core::Result<String> {
        self.0.fetches.fetch_add(1, Ordering::SeqCst);
        let document = self.0.document.lock().unwrap().clone();
        document.map_err(|why| Error::new(ErrorKind::Unavailable, why))
    }
}

/// A source that never answers.
#[derive(Debug)]
struct Silent;

#[async_trait]
impl KeySource for Silent {
    async fn fetch(&self) -> petstore_core::Result<String> {
        std::future::pending().await
    }
}

fn config() -> JwksConfig {
    JwksConfig::new(ISSUER, AUDIENCE)
}

async fn verifier(provider: &Arc<FakeProvider>, config: JwksConfig) -> JwksVerifier {
    let verifier = JwksVerifier::new(Source(provider.clone()), config);
    verifier.refresh().await.expect("the key set loads");
    verifier
}

/// The service's authority, accepting the provider's tokens besides its own.
fn authority(verifier: &JwksVerifier) -> TokenAuthority {
    TokenAuthority::new(SECRET, Duration::from_secs(600)).with_verifier(verifier.clone())
}

fn refusal(auth: &TokenAuthority, token: &str) -> String {
    let err = auth.verify(token).expect_err("the token must be refused");
    assert_eq!(err.kind(), ErrorKind::Unauthenticated, "{err}");
    err.message().to_owned()
}

async fn within<T>(what: &str, fut: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(3600), fut)
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

#[tokio::test]
async fn rs256_and_es256_tokens_verify_against_the_key_set() {
    let provider = FakeProvider::serving(document(&[&rsa_a(), &ec()]));
    let jwks = verifier(&provider, config()).await;
    assert_eq!(jwks.key_ids(), ["ec-1", "rsa-a"]);
    let auth = authority(&jwks);

    for key in [rsa_a(), ec()] {
        let who = auth.verify(&key.sign(&claims())).expect("a provider token");
        assert_eq!(who.subject(), Some("alice"), "{:?}", key.alg);
        assert!(who.has(Scope::OrdersWrite) && !who.has(Scope::Admin));
    }
    // `aud` may be a list naming this service among others.
    let listed = with(claims(), "aud", json!(["billing", AUDIENCE]));
    assert!(auth.verify(&rsa_a().sign(&listed)).is_ok());
    // A provider's token without `scope` is an authenticated caller with no scope.
    let bare = auth
        .verify(&ec().sign(&without(claims(), "scope")))
        .unwrap();
    assert!(bare.is_authenticated() && bare.scopes().next().is_none());
    // The service's own tokens still verify.
    let own = auth.issue("bob", [Scope::PetsRead]).unwrap();
    assert_eq!(
        auth.verify(&own.access_token).unwrap().subject(),
        Some("bob")
    );
}

#[tokio::test]
async fn a_wrong_or_missing_issuer_or_audience_is_refused() {
    let provider = FakeProvider::serving(document(&[&rsa_a()]));
    let auth = authority(&verifier(&provider, config()).await);
    let cases = [
        (
            with(claims(), "iss", json!("https://evil.example.test/")),
            "iss",
        ),
        (
            with(claims(), "iss", json!(ISSUER.trim_end_matches('/'))),
            "iss",
        ),
        (without(claims(), "iss"), "iss"),
        (with(claims(), "aud", json!("another-service")), "aud"),
        (with(claims(), "aud", json!(["a", "b"])), "aud"),
        (with(claims(), "aud", json!([])), "aud"),
        (without(claims(), "aud"), "aud"),
    ];
    for (claims, claim) in cases {
        let reason = refusal(&auth, &rsa_a().sign(&claims));
        assert!(reason.contains(claim), "{claims}: {reason}");
    }
}

#[tokio::test]
async fn time_and_subject_rules_hold_for_provider_tokens_too() {
    let provider = FakeProvider::serving(document(&[&rsa_a(), &ec()]));
    let auth = authority(&verifier(&provider, config()).await);
    let cases = [
        (with(claims(), "nbf", json!(now() + 300)), "nbf"),
        (with(claims(), "exp", json!(1u64 << 63)), "longer than"),
        (with(claims(), "exp", json!(now() - 60)), "expired"),
        (without(claims(), "exp"), "exp"),
        (with(claims(), "sub", json!("")), "empty"),
        (without(claims(), "sub"), "sub"),
    ];
    for (claims, why) in cases {
        for key in [rsa_a(), ec()] {
            let reason = refusal(&auth, &key.sign(&claims));
            assert!(reason.contains(why), "{:?} {claims}: {reason}", key.alg);
        }
    }
}

#[tokio::test]
async fn unsigned_and_algorithm_confusion_tokens_are_refused() {
    // The key set also lists a shared-secret (`oct`) key: it must never be used.
    let mut set: JwkSet = serde_json::from_str(&document(&[&rsa_a(), &ec()])).unwrap();
    set.keys.push(
        serde_json::from_value(json!({
            "kty": "oct", "kid": "shared", "alg": "HS256",
            "k": URL_SAFE_NO_PAD.encode(b"a secret published in the key set"),
        }))
        .unwrap(),
    );
    let provider = FakeProvider::serving(serde_json::to_string(&set).unwrap());
    let jwks = verifier(&provider, config()).await;
    assert_eq!(jwks.key_ids(), ["ec-1", "rsa-a"], "no oct key is loaded");
    let auth = authority(&jwks);
    let b64 = |v: Value| URL_SAFE_NO_PAD.encode(v.to_string());
    let body = b64(claims());

    // `alg: none`, in every spelling, with and without a signature part.
    for alg in ["none", "None", "NONE", "nOnE"] {
        let header = b64(json!({"alg": alg, "kid": "rsa-a", "typ": "JWT"}));
        refusal(&auth, &format!("{header}.{body}."));
        refusal(&auth, &format!("{header}.{body}"));
    }

    // HS256 "signed" with the provider's public key, as PEM text with or without the
    // final newline, and with the published `oct` key.
    let public = std::str::from_utf8(RSA_A_PUBLIC_PEM).unwrap();
    for secret in [public.as_bytes(), public.trim_end().as_bytes()] {
        for kid in ["rsa-a", "ec-1"] {
            let mut header = Header::new(Algorithm::HS256);
            header.kid = Some(kid.to_owned());
            let token = jsonwebtoken::encode(&header, &claims(), &EncodingKey::from_secret(secret))
                .unwrap();
            assert!(refusal(&auth, &token).contains("signature"));
        }
    }
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some("shared".to_owned());
    let token = jsonwebtoken::encode(
        &header,
        &claims(),
        &EncodingKey::from_secret(b"a secret published in the key set"),
    )
    .unwrap();
    refusal(&auth, &token);
    // Straight to the JWKS verifier, an HMAC algorithm is not even considered.
    assert!(!jwks.accepts(Algorithm::HS256));

    // An RSA signature under the EC key's id, and the other way round.
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some("ec-1".to_owned());
    assert!(refusal(&auth, &rsa_a().sign_with(header, &claims())).contains("does not match"));
    let mut header = Header::new(Algorithm::ES256);
    header.kid = Some("rsa-a".to_owned());
    assert!(refusal(&auth, &ec().sign_with(header, &claims())).contains("does not match"));

    // An algorithm of the right family that was not configured.
    let mut header = Header::new(Algorithm::RS384);
    header.kid = Some("rsa-a".to_owned());
    assert!(refusal(&auth, &rsa_a().sign_with(header, &claims())).contains("not accepted"));
    // PS256 with a key listed for RS256.
    let mut header = Header::new(Algorithm::PS256);
    header.kid = Some("rsa-a".to_owned());
    refusal(&auth, &rsa_a().sign_with(header, &claims()));

    // The attacker's own key: embedded in the header (`jwk`), named by a URL (`jku`),
    // or simply signing under the provider's key id.
    let mallory = rsa_b();
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some("rsa-a".to_owned());
    header.jwk = Some(mallory.jwk(true));
    header.jku = Some("https://evil.example.test/jwks.json".to_owned());
    assert!(refusal(&auth, &mallory.sign_with(header, &claims())).contains("signature"));
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some("rsa-b".to_owned());
    header.jwk = Some(mallory.jwk(true));
    assert!(refusal(&auth, &mallory.sign_with(header, &claims())).contains("not known"));

    // No key id; an unknown critical extension.
    let header = Header::new(Algorithm::RS256);
    assert!(refusal(&auth, &rsa_a().sign_with(header, &claims())).contains("kid"));
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some("rsa-a".to_owned());
    header.crit = Some(vec!["exp-v2".to_owned()]);
    assert!(refusal(&auth, &rsa_a().sign_with(header, &claims())).contains("crit"));

    // One flipped byte of a valid signature.
    let good = rsa_a().sign(&claims());
    let (signed, signature) = good.rsplit_once('.').unwrap();
    let mut raw = URL_SAFE_NO_PAD.decode(signature).unwrap();
    raw[10] ^= 1;
    let flipped = format!("{signed}.{}", URL_SAFE_NO_PAD.encode(raw));
    assert!(refusal(&auth, &flipped).contains("signature"));
    assert!(auth.verify(&good).is_ok());
}

#[tokio::test]
async fn a_rotated_key_is_picked_up_after_a_refresh_and_a_withdrawn_key_stops_working() {
    let provider = FakeProvider::serving(document(&[&rsa_a()]));
    let jwks = verifier(&provider, config()).await;
    let auth = authority(&jwks);
    let old = rsa_a().sign(&claims());
    let new = rsa_b().sign(&claims());
    assert!(auth.verify(&old).is_ok());
    assert!(refusal(&auth, &new).contains("not known"));

    // The provider publishes its next key.
    provider.serve(document(&[&rsa_a(), &rsa_b()]));
    assert_eq!(jwks.refresh().await.unwrap(), 2);
    assert!(auth.verify(&new).is_ok());
    assert!(auth.verify(&old).is_ok());

    // ... and withdraws the old one: a remembered verification does not outlive it.
    let generation = jwks.key_generation();
    provider.serve(document(&[&rsa_b()]));
    assert_eq!(jwks.refresh().await.unwrap(), 1);
    assert_ne!(jwks.key_generation(), generation);
    assert!(refusal(&auth, &old).contains("not known"));
    assert!(auth.verify(&new).is_ok());

    // The same key set again changes nothing.
    let generation = jwks.key_generation();
    jwks.refresh().await.unwrap();
    assert_eq!(jwks.key_generation(), generation);
}

#[tokio::test(start_paused = true)]
async fn an_unknown_key_triggers_a_refresh_at_most_once_per_interval() {
    let gap = Duration::from_secs(30);
    let every = Duration::from_secs(600);
    let provider = FakeProvider::serving(document(&[&rsa_a()]));
    let jwks = verifier(
        &provider,
        config().min_refresh_interval(gap).refresh_interval(every),
    )
    .await;
    let auth = authority(&jwks);
    let maintenance = tokio::spawn(jwks.maintain());
    assert_eq!(provider.fetches(), 1);

    // The provider rotates; the first token under the new key is refused, and asks
    // for the refresh that lets the next one through.
    provider.serve(document(&[&rsa_a(), &rsa_b()]));
    let mut changes = jwks.subscribe();
    let new = rsa_b().sign(&claims());
    assert!(refusal(&auth, &new).contains("not known"));
    within("the refreshed key set", changes.changed())
        .await
        .unwrap();
    assert_eq!(provider.fetches(), 2);
    assert!(auth.verify(&new).is_ok());

    // A flood of tokens naming unknown keys costs one more fetch, after the gap.
    // (The key is looked up before any signature check: these need no real one.)
    let body = URL_SAFE_NO_PAD.encode(claims().to_string());
    for i in 0..200 {
        let header = json!({"alg": "RS256", "kid": format!("ghost-{i}")});
        let header = URL_SAFE_NO_PAD.encode(header.to_string());
        refusal(&auth, &format!("{header}.{body}.c2lnbmF0dXJl"));
    }
    tokio::time::sleep(gap / 2).await;
    assert_eq!(provider.fetches(), 2, "no fetch within the gap");
    tokio::time::sleep(gap).await;
    assert_eq!(provider.fetches(), 3, "one fetch for the whole flood");
    tokio::time::sleep(gap * 5).await;
    assert_eq!(provider.fetches(), 3, "nothing more without a reason");
    // The periodic refresh.
    tokio::time::sleep(every).await;
    assert_eq!(provider.fetches(), 4);

    // The loop ends once the verifier is gone.
    drop((auth, jwks));
    within("the maintenance loop to end", maintenance)
        .await
        .unwrap();
}

#[tokio::test]
async fn a_failed_or_bad_fetch_keeps_the_old_keys() {
    let provider = FakeProvider::serving(document(&[&rsa_a()]));
    let jwks = verifier(&provider, config()).await;
    let auth = authority(&jwks);
    let token = rsa_a().sign(&claims());
    let generation = jwks.key_generation();

    let weak = SigningKey {
        kid: "rsa-1024",
        alg: Algorithm::RS256,
        key: EncodingKey::from_rsa_der(RSA_1024),
    };
    let bad_documents = [
        "not json".to_owned(),
        r#"{"keys": "none"}"#.to_owned(),
        r#"{"keys": []}"#.to_owned(),
        // Only a key below 2048 bits.
        document(&[&weak]),
        format!(r#"{{"keys": [], "padding": "{}"}}"#, "x".repeat(300 * 1024)),
    ];
    for bad in bad_documents {
        provider.serve(bad.clone());
        let err = jwks.refresh().await.expect_err("a bad key set");
        assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
        assert_eq!(jwks.key_ids(), ["rsa-a"]);
    }
    provider.fail("connection refused");
    assert!(jwks.refresh().await.is_err());
    assert_eq!(jwks.key_generation(), generation);
    assert!(auth.verify(&token).is_ok());

    // A weak key next to good ones is skipped, and its tokens refused.
    provider.serve(document(&[&rsa_a(), &weak]));
    assert_eq!(jwks.refresh().await.unwrap(), 1);
    assert!(refusal(&auth, &weak.sign(&claims())).contains("not known"));
}

#[tokio::test(start_paused = true)]
async fn a_key_source_that_never_answers_times_out() {
    let jwks = JwksVerifier::new(Silent, config().fetch_timeout(Duration::from_secs(5)));
    let err = within("the fetch timeout", jwks.refresh())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable);
    assert!(jwks.key_ids().is_empty());
    // Without keys, every provider token is refused.
    let auth = authority(&jwks);
    assert!(refusal(&auth, &rsa_a().sign(&claims())).contains("not known"));
}

#[tokio::test(start_paused = true)]
async fn zero_intervals_still_leave_a_second_between_fetches() {
    let provider = FakeProvider::serving(document(&[&rsa_a()]));
    let eager = config()
        .min_refresh_interval(Duration::ZERO)
        .refresh_interval(Duration::ZERO);
    let jwks = verifier(&provider, eager).await;
    let maintenance = tokio::spawn(jwks.maintain());
    tokio::time::sleep(Duration::from_millis(10_500)).await;
    let fetches = provider.fetches();
    assert!((2..=12).contains(&fetches), "{fetches} fetches in 10.5 s");
    maintenance.abort();
}
