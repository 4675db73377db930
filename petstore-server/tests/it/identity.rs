//! The server with an identity provider (`--jwks-url`, `--jwt-issuer`,
//! `--jwt-audience`): the provider's RS256 tokens work on the API, a rotated key is
//! fetched when a token names it, and a key set that cannot be trusted is refused.
//! The provider is a local HTTP server on a free port serving a JWK Set made from the
//! fixture keys of petstore-core.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::routing::get;
use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use petstore_core::KeySource;
use petstore_server::jwks::HttpKeySource;
use petstore_server::{self as server, ServerArgs};
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::mpsc;

const WAIT: Duration = Duration::from_secs(30);
const ISSUER: &str = "https://id.example.test/";
const AUDIENCE: &str = "petstore-api";
const RSA_A: &[u8] = include_bytes!("../../../petstore-core/tests/fixtures/rsa-a.der");
const RSA_B: &[u8] = include_bytes!("../../../petstore-core/tests/fixtures/rsa-b.der");

fn jwk(der: &[u8], kid: &str) -> Jwk {
    let mut jwk =
        Jwk::from_encoding_key(&EncodingKey::from_rsa_der(der), Algorithm::RS256).unwrap();
    jwk.common.key_id = Some(kid.to_owned());
    jwk
}

fn key_set(keys: &[(&[u8], &str)]) -> String {
    let keys = keys.iter().map(|(der, kid)| jwk(der, kid)).collect();
    serde_json::to_string(&JwkSet { keys }).unwrap()
}

fn token(der: &[u8], kid: &str, aud: &str) -> String {
    let now = jsonwebtoken::get_current_timestamp();
    let claims = json!({
        "iss": ISSUER, "aud": aud, "sub": "carol",
        "scope": "pets:read pets:write", "iat": now, "exp": now + 600,
    });
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some(kid.to_owned());
    jsonwebtoken::encode(&header, &claims, &EncodingKey::from_rsa_der(der)).unwrap()
}

/// The provider's `jwks_uri`: serves whatever document the test sets, and reports
/// each fetch.
struct Provider {
    url: String,
    document: Arc<Mutex<String>>,
    fetched: mpsc::UnboundedReceiver<()>,
}

async fn provider(document: String) -> Provider {
    let shared = Arc::new(Mutex::new(document));
    let (tx, fetched) = mpsc::unbounded_channel();
    let app = Router::new()
        .route(
            "/jwks.json",
            get(
                |State((doc, tx)): State<(Arc<Mutex<String>>, mpsc::UnboundedSender<()>)>| async move {
                    let _ = tx.send(());
                    let body = doc.lock().unwrap().clone();
                    ([("content-type", "application/json")], body)
                },
            ),
        )
        .with_state((shared.clone(), tx));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/jwks.json", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    Provider {
        url,
        document: shared,
        fetched,
    }
}

async fn create_pet(http: &reqwest::Client, base: &str, token: &str) -> reqwest::StatusCode {
    let pet =
        json!({"name": "Idp", "species": "cat", "price": {"amount": "5.00", "currency": "USD"}});
    http.post(format!("{base}/v1/pets"))
        .bearer_auth(token)
        .json(&pet)
        .send()
        .await
        .expect("POST /v1/pets")
        .status()
}

#[tokio::test]
async fn identity_provider_tokens_work_and_a_rotated_key_is_fetched_when_named() {
    let mut idp = provider(key_set(&[(RSA_A, "a")])).await;
    let running = server::start(ServerArgs {
        jwks_url: Some(idp.url.clone()),
        jwt_issuer: Some(ISSUER.into()),
        jwt_audience: Some(AUDIENCE.into()),
        no_mqtt: true,
        ..ServerArgs::ephemeral()
    })
    .await
    .expect("server starts");
    tokio::time::timeout(WAIT, idp.fetched.recv())
        .await
        .expect("the key set was loaded at start");
    let base = running.http_url();
    let http = reqwest::Client::new();

    assert_eq!(
        create_pet(&http, &base, &token(RSA_A, "a", AUDIENCE)).await,
        201
    );
    // Meant for another service, or signed by a key the provider never published.
    assert_eq!(
        create_pet(&http, &base, &token(RSA_A, "a", "billing")).await,
        401
    );
    assert_eq!(
        create_pet(&http, &base, &token(RSA_B, "a", AUDIENCE)).await,
        401
    );
    // The server's own tokens still work.
    assert_eq!(create_pet(&http, &base, &running.dev_token).await, 201);

    // The provider rotates to key b: the first token naming it is refused and makes
    // the server fetch the key set again; then b's tokens pass.
    *idp.document.lock().unwrap() = key_set(&[(RSA_A, "a"), (RSA_B, "b")]);
    let rotated = token(RSA_B, "b", AUDIENCE);
    assert_eq!(create_pet(&http, &base, &rotated).await, 401);
    tokio::time::timeout(WAIT, idp.fetched.recv())
        .await
        .expect("an unknown kid triggers a fetch");
    let accepted = async {
        // The fetch has been answered; installing the keys follows at once.
        while create_pet(&http, &base, &rotated).await != 201 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    tokio::time::timeout(WAIT, accepted)
        .await
        .expect("the rotated key is accepted");
    running.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_key_set_that_cannot_be_trusted_or_read_is_refused() {
    // Plain http to a remote host: anyone on the path could swap the keys.
    for url in [
        "http://id.example.test/jwks.json",
        "http://10.0.0.1/jwks.json",
        "ftp://id.example.test/jwks.json",
        "not a url",
    ] {
        assert!(HttpKeySource::new(url).is_err(), "{url}");
    }
    for url in [
        "https://id.example.test/jwks.json",
        "http://localhost:8080/jwks.json",
        "http://127.0.0.1:8080/jwks.json",
        "http://[::1]:8080/jwks.json",
    ] {
        assert!(HttpKeySource::new(url).is_ok(), "{url}");
    }

    // An oversized document is cut off while it is read.
    let huge = provider("x".repeat(300 * 1024)).await;
    let err = HttpKeySource::new(&huge.url)
        .unwrap()
        .fetch()
        .await
        .unwrap_err();
    assert!(err.message().contains("larger than"), "{err}");

    // A server whose provider holds no usable key does not start.
    let empty = provider(json!({"keys": []}).to_string()).await;
    let started = server::start(ServerArgs {
        jwks_url: Some(empty.url.clone()),
        jwt_issuer: Some(ISSUER.into()),
        jwt_audience: Some(AUDIENCE.into()),
        no_mqtt: true,
        ..ServerArgs::ephemeral()
    })
    .await;
    let err = format!("{:#}", started.expect_err("refused"));
    assert!(err.contains("no usable signing key"), "{err}");
    // Nor one missing the issuer or audience.
    let started = server::start(ServerArgs {
        jwks_url: Some(empty.url.clone()),
        no_mqtt: true,
        ..ServerArgs::ephemeral()
    })
    .await;
    let err = format!("{:#}", started.expect_err("refused"));
    assert!(err.contains("--jwt-issuer"), "{err}");
}
