//! Standard Webhooks verification (`petstore_webhooks::WebhookSecret::verify`) with
//! fuzzed headers and body, and secret parsing.
//!
//! Input: `id \0 timestamp \0 signature \0 body`. Invariants: nothing panics; a fuzzed
//! message is accepted only when its `webhook-signature` lists the exact signature of
//! its id, timestamp and body; a message signed here verifies, and the same headers
//! with any other body never do; a parsed secret prints and parses back to itself.
#![no_main]

use std::sync::LazyLock;
use std::time::Duration;

use http::{HeaderMap, HeaderValue};
use libfuzzer_sys::fuzz_target;
use petstore_webhooks::{
    VerifyError, WEBHOOK_ID, WEBHOOK_SIGNATURE, WEBHOOK_TIMESTAMP, WebhookSecret,
};

static SECRET: LazyLock<WebhookSecret> =
    LazyLock::new(|| WebhookSecret::from_bytes(b"fuzzing-secret-0123456789abcdef").expect("valid"));
/// Any timestamp is within this tolerance, so the signature check always runs.
const ANY_TIME: Duration = Duration::from_secs(u64::MAX);

fn headers(id: &[u8], timestamp: &[u8], signature: &[u8]) -> HeaderMap {
    let mut headers = HeaderMap::new();
    for (name, value) in [
        (WEBHOOK_ID, id),
        (WEBHOOK_TIMESTAMP, timestamp),
        (WEBHOOK_SIGNATURE, signature),
    ] {
        if let Ok(value) = HeaderValue::from_bytes(value) {
            headers.insert(name, value);
        }
    }
    headers
}

fuzz_target!(|data: &[u8]| {
    let mut parts = data.splitn(4, |b| *b == 0);
    let id = parts.next().unwrap_or_default();
    let timestamp = parts.next().unwrap_or_default();
    let signature = parts.next().unwrap_or_default();
    let body = parts.next().unwrap_or_default();

    // 1. A fuzzed message: accepted only with the exact signature.
    let fuzzed = headers(id, timestamp, signature);
    if let Ok(verified) = SECRET.verify(&fuzzed, body, ANY_TIME) {
        let expected = SECRET.sign(&verified.id, verified.timestamp, body);
        let listed = fuzzed[WEBHOOK_SIGNATURE].to_str().expect("verified text");
        assert!(
            listed.split_ascii_whitespace().any(|s| s == expected),
            "accepted {listed:?} for a body it did not sign"
        );
    }

    // 2. A message signed here: it verifies, and no other body does.
    if let Ok(id) = std::str::from_utf8(id) {
        let ts = std::str::from_utf8(timestamp)
            .ok()
            .and_then(|t| t.parse::<i64>().ok())
            .unwrap_or(0);
        let signed = SECRET.sign(id, ts, body);
        let headers = headers(id.as_bytes(), ts.to_string().as_bytes(), signed.as_bytes());
        // Header values that are not visible ASCII count as missing (`to_str`).
        let clean_id = !id.is_empty()
            && id.trim() == id
            && headers.get(WEBHOOK_ID).is_some_and(|v| v.to_str().is_ok());
        let result = SECRET.verify(&headers, body, ANY_TIME);
        if clean_id {
            let verified = result.expect("a message signed with the secret verifies");
            assert_eq!((verified.id.as_str(), verified.timestamp), (id, ts));
            let mut other = body.to_vec();
            other.push(b'x');
            assert_eq!(
                SECRET.verify(&headers, &other, ANY_TIME).unwrap_err(),
                VerifyError::NoMatchingSignature
            );
            let other_secret =
                WebhookSecret::from_bytes(b"another-secret-0123456789abcdef").expect("valid");
            assert!(other_secret.verify(&headers, body, ANY_TIME).is_err());
        }
    }

    // 3. Secrets: `parse(expose(s)) == s`.
    if let Ok(text) = std::str::from_utf8(data)
        && let Ok(secret) = text.parse::<WebhookSecret>()
    {
        assert_eq!(
            secret.expose().parse::<WebhookSecret>().expect("parses"),
            secret
        );
    }
});
