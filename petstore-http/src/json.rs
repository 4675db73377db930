//! The media type of request bodies.

use axum::http::{HeaderMap, StatusCode, header};

use crate::problem::Problem;

/// The essence of the request's `Content-Type` (`application/json` of
/// `Application/JSON; charset=utf-8`), lower case; `None` without a readable one.
pub fn media_type(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::CONTENT_TYPE)?.to_str().ok()?;
    let essence = value.split(';').next()?.trim().to_ascii_lowercase();
    (!essence.is_empty()).then_some(essence)
}

/// Whether a media type essence is JSON: `application/json` or any
/// `application/…+json` (`application/merge-patch+json`).
pub fn is_json(essence: &str) -> bool {
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

/// 415 `unsupported_media_type` unless the request declares a JSON body.
pub fn require_json(headers: &HeaderMap) -> Result<(), Problem> {
    match media_type(headers) {
        Some(essence) if is_json(&essence) => Ok(()),
        other => Err(Problem::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            format!(
                "expected `Content-Type: application/json`, got {}",
                other.map_or_else(|| "no Content-Type".to_owned(), |t| format!("`{t}`"))
            ),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(ct: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::CONTENT_TYPE, ct.parse().unwrap());
        h
    }

    #[test]
    fn json_types_pass_and_others_get_415() {
        for ok in [
            "application/json",
            "Application/JSON; charset=utf-8",
            "application/merge-patch+json",
        ] {
            assert!(require_json(&with(ok)).is_ok(), "{ok}");
        }
        for bad in ["text/plain", "application/jsonx", "json", "text/json+xml"] {
            let p = require_json(&with(bad)).unwrap_err();
            assert_eq!(p.status(), 415, "{bad}");
            assert_eq!(p.code(), "unsupported_media_type");
        }
        assert!(require_json(&HeaderMap::new()).is_err());
        assert_eq!(
            media_type(&with(" application/graphql ;x=y")).as_deref(),
            Some("application/graphql")
        );
    }
}
