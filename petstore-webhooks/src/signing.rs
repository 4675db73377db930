//! Standard Webhooks signing and verification: `webhook-id`, `webhook-timestamp` and
//! `webhook-signature: v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">`, keyed with
//! the decoded bytes of a `whsec_...` secret.

use std::fmt;
use std::io::Write as _;
use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, KeyInit, Mac};
use http::{HeaderMap, HeaderName, HeaderValue};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// The header carrying the message id, stable across retries.
pub const WEBHOOK_ID: &str = "webhook-id";
/// The header carrying the attempt's Unix time in seconds.
pub const WEBHOOK_TIMESTAMP: &str = "webhook-timestamp";
/// The header carrying space-separated `v1,<base64>` signatures.
pub const WEBHOOK_SIGNATURE: &str = "webhook-signature";

// The same names, parsed once.
const ID_HEADER: HeaderName = HeaderName::from_static(WEBHOOK_ID);
const TIMESTAMP_HEADER: HeaderName = HeaderName::from_static(WEBHOOK_TIMESTAMP);
const SIGNATURE_HEADER: HeaderName = HeaderName::from_static(WEBHOOK_SIGNATURE);

const PREFIX: &str = "whsec_";
/// Bytes of a generated secret (256 bits, the HMAC-SHA256 block strength).
const GENERATED_LEN: usize = 32;
/// Longest key accepted when parsing (the spec recommends 24 to 64 bytes).
const MAX_LEN: usize = 512;
/// Length of one `v1,<base64 of 32 bytes>` signature.
const SIGNATURE_LEN: usize = 3 + 44;

/// A symmetric Standard Webhooks secret. Its text form is `whsec_` followed by the
/// base64 of the key bytes; the HMAC key is the decoded bytes.
///
/// `Debug` never prints the key; [`WebhookSecret::expose`] does.
#[derive(Clone, PartialEq, Eq)]
pub struct WebhookSecret {
    key: Vec<u8>,
}

impl WebhookSecret {
    /// A fresh random 256-bit secret.
    pub fn generate() -> Self {
        Self {
            key: rand::random::<[u8; GENERATED_LEN]>().to_vec(),
        }
    }

    /// A secret from raw key bytes (1 to 512 bytes).
    pub fn from_bytes(key: &[u8]) -> Result<Self, InvalidSecret> {
        if key.is_empty() || key.len() > MAX_LEN {
            return Err(InvalidSecret(format!(
                "the key must be 1 to {MAX_LEN} bytes, not {}",
                key.len()
            )));
        }
        Ok(Self { key: key.to_vec() })
    }

    /// The text form, `whsec_<base64>`: what receivers configure.
    pub fn expose(&self) -> String {
        format!("{PREFIX}{}", STANDARD.encode(&self.key))
    }

    /// The key bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.key
    }

    /// The `v1,<base64>` signature of one message.
    pub fn sign(&self, id: &str, timestamp: i64, body: &[u8]) -> String {
        let mut out = String::with_capacity(SIGNATURE_LEN);
        self.sign_into(id, timestamp, body, &mut out);
        out
    }

    /// Appends the `v1,<base64>` signature to `out`.
    fn sign_into(&self, id: &str, timestamp: i64, body: &[u8], out: &mut String) {
        out.push_str("v1,");
        STANDARD.encode_string(self.mac(id, timestamp, body).finalize().into_bytes(), out);
    }

    /// Verifies the Standard Webhooks headers of a received message against its raw
    /// body, rejecting timestamps more than `tolerance` away from now.
    pub fn verify(
        &self,
        headers: &HeaderMap,
        body: &[u8],
        tolerance: Duration,
    ) -> Result<Verified, VerifyError> {
        verify_with(std::slice::from_ref(self), headers, body, tolerance, now())
    }

    fn mac(&self, id: &str, timestamp: i64, body: &[u8]) -> HmacSha256 {
        // HMAC takes keys of any length; the constructor cannot fail.
        let mut mac = <HmacSha256 as KeyInit>::new_from_slice(&self.key)
            .unwrap_or_else(|_| unreachable!("HMAC accepts any key length"));
        mac.update(id.as_bytes());
        mac.update(b".");
        // At most 20 characters (`i64::MIN`): formatted without allocating.
        let mut digits = [0u8; 20];
        let mut rest = &mut digits[..];
        let _ = write!(rest, "{timestamp}");
        let written = 20 - rest.len();
        mac.update(&digits[..written]);
        mac.update(b".");
        mac.update(body);
        mac
    }
}

impl fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("WebhookSecret(whsec_***)")
    }
}

impl FromStr for WebhookSecret {
    type Err = InvalidSecret;

    /// Parses `whsec_<base64>` (the prefix is optional, as in the reference libraries).
    fn from_str(s: &str) -> Result<Self, InvalidSecret> {
        let encoded = s.trim();
        let encoded = encoded.strip_prefix(PREFIX).unwrap_or(encoded);
        let key = STANDARD
            .decode(encoded)
            .map_err(|_| InvalidSecret("expected `whsec_` followed by base64".to_owned()))?;
        Self::from_bytes(&key)
    }
}

impl Serialize for WebhookSecret {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.expose())
    }
}

impl<'de> Deserialize<'de> for WebhookSecret {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// A secret that is not a valid `whsec_...` value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidSecret(String);

impl fmt::Display for InvalidSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid webhook secret: {}", self.0)
    }
}

impl std::error::Error for InvalidSecret {}

/// Signs with one or more secrets at once: during a secret rotation a message carries
/// a signature per active secret, and a verifier accepts any of them.
#[derive(Debug, Clone)]
pub struct Signer {
    secrets: Vec<WebhookSecret>,
}

impl Signer {
    /// A signer with one secret.
    pub fn new(secret: WebhookSecret) -> Self {
        Self {
            secrets: vec![secret],
        }
    }

    /// Adds another secret (e.g. the previous one during a rotation's grace period).
    pub fn with(mut self, secret: WebhookSecret) -> Self {
        self.secrets.push(secret);
        self
    }

    /// The `webhook-signature` value: one `v1,<base64>` per secret, space separated.
    pub fn sign(&self, id: &str, timestamp: i64, body: &[u8]) -> String {
        let mut out = String::with_capacity(self.secrets.len() * (SIGNATURE_LEN + 1));
        for (i, secret) in self.secrets.iter().enumerate() {
            if i > 0 {
                out.push(' ');
            }
            secret.sign_into(id, timestamp, body, &mut out);
        }
        out
    }

    /// The three Standard Webhooks headers for one attempt.
    pub fn headers(&self, id: &str, timestamp: i64, body: &[u8]) -> HeaderMap {
        // Room for the caller's `content-type` too.
        let mut headers = HeaderMap::with_capacity(4);
        let value = |s: String| {
            HeaderValue::try_from(s).unwrap_or_else(|_| HeaderValue::from_static("invalid"))
        };
        headers.insert(ID_HEADER, value(id.to_owned()));
        headers.insert(TIMESTAMP_HEADER, HeaderValue::from(timestamp));
        headers.insert(SIGNATURE_HEADER, value(self.sign(id, timestamp, body)));
        headers
    }

    /// Like [`WebhookSecret::verify`], accepting a signature by any of the secrets.
    pub fn verify(
        &self,
        headers: &HeaderMap,
        body: &[u8],
        tolerance: Duration,
    ) -> Result<Verified, VerifyError> {
        verify_with(&self.secrets, headers, body, tolerance, now())
    }
}

impl From<WebhookSecret> for Signer {
    fn from(secret: WebhookSecret) -> Self {
        Self::new(secret)
    }
}

/// A message whose signature and timestamp checked out.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Verified {
    /// The `webhook-id`: deduplicate on it.
    pub id: String,
    /// The `webhook-timestamp` (Unix seconds).
    pub timestamp: i64,
}

/// Why a received message was rejected.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum VerifyError {
    /// A required header is absent or not valid text.
    MissingHeader(&'static str),
    /// `webhook-timestamp` is not an integer.
    InvalidTimestamp,
    /// The timestamp is older than the tolerance (a replay or a very late retry).
    TimestampTooOld,
    /// The timestamp is further in the future than the tolerance.
    TimestampTooNew,
    /// No `v1` signature matches the body with any of the secrets.
    NoMatchingSignature,
}

impl fmt::Display for VerifyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VerifyError::MissingHeader(h) => write!(f, "the `{h}` header is missing"),
            VerifyError::InvalidTimestamp => {
                f.write_str("`webhook-timestamp` is not a Unix time in seconds")
            }
            VerifyError::TimestampTooOld => {
                f.write_str("`webhook-timestamp` is too old (outside the tolerance)")
            }
            VerifyError::TimestampTooNew => {
                f.write_str("`webhook-timestamp` is too far in the future (outside the tolerance)")
            }
            VerifyError::NoMatchingSignature => {
                f.write_str("no `webhook-signature` matches the body")
            }
        }
    }
}

impl std::error::Error for VerifyError {}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

fn header<'a>(headers: &'a HeaderMap, name: &'static str) -> Result<&'a str, VerifyError> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .ok_or(VerifyError::MissingHeader(name))
}

pub(crate) fn verify_with(
    secrets: &[WebhookSecret],
    headers: &HeaderMap,
    body: &[u8],
    tolerance: Duration,
    now: i64,
) -> Result<Verified, VerifyError> {
    let id = header(headers, WEBHOOK_ID)?;
    let timestamp: i64 = header(headers, WEBHOOK_TIMESTAMP)?
        .parse()
        .map_err(|_| VerifyError::InvalidTimestamp)?;
    let signatures = header(headers, WEBHOOK_SIGNATURE)?;
    let tolerance = i64::try_from(tolerance.as_secs()).unwrap_or(i64::MAX);
    if timestamp < now.saturating_sub(tolerance) {
        return Err(VerifyError::TimestampTooOld);
    }
    if timestamp > now.saturating_add(tolerance) {
        return Err(VerifyError::TimestampTooNew);
    }
    // Other versions (e.g. `v1a` asymmetric signatures) are skipped, as the spec says.
    let candidates: Vec<Vec<u8>> = signatures
        .split_ascii_whitespace()
        .filter_map(|s| s.strip_prefix("v1,"))
        .filter_map(|b64| STANDARD.decode(b64).ok())
        .collect();
    let matched = secrets.iter().any(|secret| {
        let mac = secret.mac(id, timestamp, body);
        // `verify_slice` compares in constant time.
        candidates
            .iter()
            .any(|candidate| mac.clone().verify_slice(candidate).is_ok())
    });
    if matched {
        Ok(Verified {
            id: id.to_owned(),
            timestamp,
        })
    } else {
        Err(VerifyError::NoMatchingSignature)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_with_or_without_prefix_and_round_trips() {
        let s: WebhookSecret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".parse().unwrap();
        assert_eq!(s.as_bytes().len(), 24);
        assert_eq!(s.expose(), "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw");
        let bare: WebhookSecret = "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".parse().unwrap();
        assert_eq!(bare, s);
        assert!("whsec_".parse::<WebhookSecret>().is_err());
        assert!("whsec_not base64!".parse::<WebhookSecret>().is_err());
        assert!(!format!("{s:?}").contains("MfKQ"));
    }

    #[test]
    fn timestamp_tolerance_is_symmetric() {
        let secret = WebhookSecret::generate();
        let headers = Signer::new(secret.clone()).headers("msg_1", 1_000, b"{}");
        let tol = Duration::from_secs(300);
        let ok = |now| verify_with(std::slice::from_ref(&secret), &headers, b"{}", tol, now);
        assert!(ok(1_300).is_ok());
        assert!(ok(700).is_ok());
        assert_eq!(ok(1_301).unwrap_err(), VerifyError::TimestampTooOld);
        assert_eq!(ok(699).unwrap_err(), VerifyError::TimestampTooNew);
    }
}
