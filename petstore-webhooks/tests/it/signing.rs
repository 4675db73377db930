//! The signing primitives against the Standard Webhooks reference and edge cases.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::http::{HeaderMap, HeaderValue};
use petstore_webhooks::{Signer, VerifyError, WebhookSecret};

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
const BODY: &[u8] = br#"{"test": 2432232314}"#;
const TOLERANCE: Duration = Duration::from_secs(300);

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

#[test]
fn signer_reproduces_the_standard_webhooks_reference_vector() {
    let secret: WebhookSecret = SECRET.parse().unwrap();
    assert_eq!(
        secret.sign(ID, 1_614_265_330, BODY),
        "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
    );
    assert_eq!(
        Signer::new(secret).sign(ID, 1_614_265_330, BODY),
        "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
    );
}

#[test]
fn signed_headers_verify_and_give_the_message_id() {
    let secret: WebhookSecret = SECRET.parse().unwrap();
    let ts = now();
    let headers = Signer::new(secret.clone()).headers(ID, ts, BODY);
    assert_eq!(headers["webhook-id"], ID);
    assert_eq!(headers["webhook-timestamp"], ts.to_string().as_str());
    let verified = secret.verify(&headers, BODY, TOLERANCE).unwrap();
    assert_eq!(verified.id, ID);
    assert_eq!(verified.timestamp, ts);
}

#[test]
fn tampering_a_wrong_key_and_missing_headers_are_rejected() {
    let secret: WebhookSecret = SECRET.parse().unwrap();
    let headers = Signer::new(secret.clone()).headers(ID, now(), BODY);
    assert_eq!(
        secret.verify(&headers, br#"{"test": 2432232315}"#, TOLERANCE),
        Err(VerifyError::NoMatchingSignature)
    );
    assert_eq!(
        WebhookSecret::generate().verify(&headers, BODY, TOLERANCE),
        Err(VerifyError::NoMatchingSignature)
    );
    // The signature covers the id and the timestamp too.
    let mut other_id = headers.clone();
    other_id.insert("webhook-id", HeaderValue::from_static("msg_other"));
    assert_eq!(
        secret.verify(&other_id, BODY, TOLERANCE),
        Err(VerifyError::NoMatchingSignature)
    );
    let mut other_ts = headers.clone();
    other_ts.insert("webhook-timestamp", HeaderValue::from(now() - 1));
    assert_eq!(
        secret.verify(&other_ts, BODY, TOLERANCE),
        Err(VerifyError::NoMatchingSignature)
    );
    for name in ["webhook-id", "webhook-timestamp", "webhook-signature"] {
        let mut missing = headers.clone();
        missing.remove(name);
        assert!(
            matches!(secret.verify(&missing, BODY, TOLERANCE), Err(VerifyError::MissingHeader(h)) if h == name),
            "{name}"
        );
    }
    let mut garbage = headers.clone();
    garbage.insert("webhook-timestamp", HeaderValue::from_static("yesterday"));
    assert_eq!(
        secret.verify(&garbage, BODY, TOLERANCE),
        Err(VerifyError::InvalidTimestamp)
    );
    assert_eq!(
        secret.verify(&HeaderMap::new(), BODY, TOLERANCE),
        Err(VerifyError::MissingHeader("webhook-id"))
    );
}

#[test]
fn stale_and_future_timestamps_are_rejected() {
    let secret: WebhookSecret = SECRET.parse().unwrap();
    let signer = Signer::new(secret.clone());
    let old = signer.headers(ID, now() - 301, BODY);
    assert_eq!(
        secret.verify(&old, BODY, TOLERANCE),
        Err(VerifyError::TimestampTooOld)
    );
    let future = signer.headers(ID, now() + 301, BODY);
    assert_eq!(
        secret.verify(&future, BODY, TOLERANCE),
        Err(VerifyError::TimestampTooNew)
    );
    // The reference vector's 2021 timestamp is far outside any tolerance.
    let reference = signer.headers(ID, 1_614_265_330, BODY);
    assert_eq!(
        secret.verify(&reference, BODY, TOLERANCE),
        Err(VerifyError::TimestampTooOld)
    );
}

#[test]
fn any_matching_v1_signature_is_accepted() {
    let old = WebhookSecret::generate();
    let new = WebhookSecret::generate();
    let ts = now();
    let both = Signer::new(new.clone()).with(old.clone());
    let headers = both.headers(ID, ts, BODY);
    let value = headers["webhook-signature"].to_str().unwrap();
    assert_eq!(value.split(' ').count(), 2, "{value}");
    assert!(old.verify(&headers, BODY, TOLERANCE).is_ok());
    assert!(new.verify(&headers, BODY, TOLERANCE).is_ok());
    assert!(
        both.verify(
            &Signer::new(old.clone()).headers(ID, ts, BODY),
            BODY,
            TOLERANCE
        )
        .is_ok()
    );

    // Unknown versions and garbage are skipped, not fatal.
    let mut mixed = headers.clone();
    let good = new.sign(ID, ts, BODY);
    mixed.insert(
        "webhook-signature",
        format!("v1a,c2lnbmF0dXJl v1,!!! v2,abc {good}")
            .parse()
            .unwrap(),
    );
    assert!(new.verify(&mixed, BODY, TOLERANCE).is_ok());
    // A v1a entry carrying the right HMAC is still not a v1 signature.
    mixed.insert(
        "webhook-signature",
        good.replace("v1,", "v1a,").parse().unwrap(),
    );
    assert_eq!(
        new.verify(&mixed, BODY, TOLERANCE),
        Err(VerifyError::NoMatchingSignature)
    );
}

#[test]
fn secrets_generate_parse_and_stay_out_of_debug_output() {
    let a = WebhookSecret::generate();
    let b = WebhookSecret::generate();
    assert_ne!(a, b);
    assert_eq!(a.as_bytes().len(), 32);
    let text = a.expose();
    assert!(text.starts_with("whsec_"));
    assert_eq!(text.parse::<WebhookSecret>().unwrap(), a);
    assert!(!format!("{a:?}").contains(&text[6..]));
    for bad in ["", "whsec_", "whsec_%%%", "whsec_ not base64"] {
        assert!(bad.parse::<WebhookSecret>().is_err(), "{bad:?}");
    }
    let json = serde_json::to_string(&a).unwrap();
    assert_eq!(serde_json::from_str::<WebhookSecret>(&json).unwrap(), a);
}
