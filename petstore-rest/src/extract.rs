//! Extractors: the caller's principal, JSON bodies and query strings with field-level
//! errors, conditional-request headers.

use axum::extract::{FromRequest, FromRequestParts, OriginalUri, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderName, StatusCode, header};
use bytes::Bytes;
use petstore_core::{Error, FieldError, IfMatch};
use petstore_http::{Problem, require_json};
use serde::de::DeserializeOwned;

/// The caller, as the HTTP edge authenticated it (401 for a rejected token).
pub(crate) use petstore_http::Caller;

/// The path prefix this router is mounted under (empty unless nested), for `Location`.
#[derive(Debug)]
pub(crate) struct BasePath(pub(crate) String);

impl<S: Send + Sync> FromRequestParts<S> for BasePath {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let local = parts.uri.path();
        let prefix = parts
            .extensions
            .get::<OriginalUri>()
            .and_then(|o| o.path().strip_suffix(local))
            .unwrap_or("");
        Ok(BasePath(prefix.to_owned()))
    }
}

/// A query string deserialised into `T`; a value that does not parse is 400 naming the
/// parameter.
#[derive(Debug)]
pub(crate) struct Params<T>(pub(crate) T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for Params<T> {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Problem> {
        let query = parts.uri.query().unwrap_or("");
        let de = serde_urlencoded::Deserializer::new(form_urlencoded::parse(query.as_bytes()));
        serde_path_to_error::deserialize(de)
            .map(Params)
            .map_err(|e| {
                let field = e.path().to_string();
                let message = e.into_inner().to_string();
                Problem::bad_request(format!("invalid query parameter `{field}`: {message}"))
                    .with_errors(vec![FieldError::new(field, message)])
            })
    }
}

/// A JSON request body: `Content-Type` must be JSON (415), the body must parse (400)
/// and fit the type (422 naming the field).
#[derive(Debug)]
pub(crate) struct JsonBody<T>(pub(crate) T);

/// Like [`JsonBody`], but an empty body means `T::default()`.
#[derive(Debug)]
pub(crate) struct OptionalJsonBody<T>(pub(crate) T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for JsonBody<T> {
    type Rejection = Problem;

    async fn from_request(req: Request, state: &S) -> Result<Self, Problem> {
        require_json(req.headers())?;
        let bytes = read_body(req, state).await?;
        parse_json(&bytes).map(JsonBody)
    }
}

impl<T: DeserializeOwned + Default, S: Send + Sync> FromRequest<S> for OptionalJsonBody<T> {
    type Rejection = Problem;

    async fn from_request(req: Request, state: &S) -> Result<Self, Problem> {
        let headers = req.headers().clone();
        let bytes = read_body(req, state).await?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(OptionalJsonBody(T::default()));
        }
        require_json(&headers)?;
        parse_json(&bytes).map(OptionalJsonBody)
    }
}

async fn read_body<S: Send + Sync>(req: Request, state: &S) -> Result<Bytes, Problem> {
    Bytes::from_request(req, state).await.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            Problem::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                "the request body is larger than the limit",
            )
        } else {
            Problem::bad_request(format!(
                "could not read the request body: {}",
                rejection.body_text()
            ))
        }
    })
}

fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, Problem> {
    let malformed = |e: serde_json::Error| {
        Problem::new(
            StatusCode::BAD_REQUEST,
            "malformed_json",
            format!("malformed JSON: {e}"),
        )
    };
    // Every body is a JSON object. serde would also fill a struct from a positional
    // array (`["Rex","dog",...]`), and a merge patch that is not an object replaces
    // the whole target (RFC 7396): both are refused.
    if bytes.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{') {
        let mut de = serde_json::Deserializer::from_slice(bytes);
        match serde_path_to_error::deserialize(&mut de) {
            Ok(value) => {
                de.end().map_err(malformed)?;
                return Ok(value);
            }
            Err(e) => {
                // Syntax first, so that broken JSON is always 400 even when a type
                // error comes earlier in the text (checked only on this error path).
                serde_json::from_slice::<serde::de::IgnoredAny>(bytes).map_err(malformed)?;
                return Err(json_error(e));
            }
        }
    }
    serde_json::from_slice::<serde::de::IgnoredAny>(bytes).map_err(malformed)?;
    Err(Error::invalid(vec![FieldError::new("", "the body must be a JSON object")]).into())
}

fn json_error(e: serde_path_to_error::Error<serde_json::Error>) -> Problem {
    let path = e.path().to_string();
    let inner = e.into_inner();
    if !inner.is_data() {
        return Problem::new(
            StatusCode::BAD_REQUEST,
            "malformed_json",
            format!("malformed JSON: {inner}"),
        );
    }
    // serde reports "line 1 column 9" at the end of its messages; the field says where.
    let message = inner.to_string();
    let message = message
        .rsplit_once(" at line ")
        .map_or(message.as_str(), |(m, _)| m)
        .to_owned();
    let field = if path == "." {
        // Missing and unknown fields are reported at the parent: name the field itself.
        message
            .split('`')
            .nth(1)
            .filter(|_| {
                message.starts_with("missing field") || message.starts_with("unknown field")
            })
            .map_or_else(String::new, str::to_owned)
    } else {
        path
    };
    Error::invalid(vec![FieldError::new(field, message)]).into()
}

/// One entity tag of an `If-Match` / `If-None-Match` list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct EntityTag {
    pub(crate) weak: bool,
    pub(crate) tag: String,
}

/// A parsed `If-Match` / `If-None-Match` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Condition {
    /// `*`.
    Any,
    /// A list of entity tags.
    Tags(Vec<EntityTag>),
}

/// The strong ETag of a resource version: `"3"`.
pub(crate) fn etag(version: impl std::fmt::Display) -> String {
    format!("\"{version}\"")
}

/// Parses a conditional header; absent is `None`, malformed is 400.
pub(crate) fn condition(
    headers: &HeaderMap,
    name: HeaderName,
) -> Result<Option<Condition>, Problem> {
    let Some(value) = headers.get(&name) else {
        return Ok(None);
    };
    let bad = || {
        Problem::bad_request(format!(
            "`{name}` must be `*` or a list of quoted entity tags such as `\"3\"`"
        ))
        .with_errors(vec![FieldError::new(
            name.as_str(),
            "malformed entity tag list",
        )])
    };
    let text = value.to_str().map_err(|_| bad())?.trim();
    if text == "*" {
        return Ok(Some(Condition::Any));
    }
    let mut tags = Vec::new();
    let mut rest = text;
    loop {
        rest = rest.trim_start();
        let weak = rest.starts_with("W/");
        if weak {
            rest = &rest[2..];
        }
        let body = rest.strip_prefix('"').ok_or_else(bad)?;
        let end = body.find('"').ok_or_else(bad)?;
        let tag = &body[..end];
        if !tag
            .bytes()
            .all(|b| b == 0x21 || (0x23..=0x7e).contains(&b) || b >= 0x80)
        {
            return Err(bad());
        }
        tags.push(EntityTag {
            weak,
            tag: tag.to_owned(),
        });
        rest = body[end + 1..].trim_start();
        if rest.is_empty() {
            break;
        }
        rest = rest.strip_prefix(',').ok_or_else(bad)?;
    }
    Ok(Some(Condition::Tags(tags)))
}

impl Condition {
    /// `If-None-Match` semantics (weak comparison): whether `current` (a strong tag
    /// value, unquoted) matches.
    pub(crate) fn matches_weakly(&self, current: &str) -> bool {
        match self {
            Condition::Any => true,
            Condition::Tags(tags) => tags.iter().any(|t| t.tag == current),
        }
    }

    /// `If-Match` semantics (strong comparison): the resource versions that may match.
    /// `None` means any version (`*`).
    pub(crate) fn strong_versions(&self) -> Option<Vec<u64>> {
        match self {
            Condition::Any => None,
            Condition::Tags(tags) => Some(
                tags.iter()
                    .filter(|t| !t.weak)
                    .filter_map(|t| t.tag.parse().ok())
                    .collect(),
            ),
        }
    }
}

/// The core precondition of an `If-Match` header: none without the header or for `*`,
/// else the strong versions it lists (weak tags never match `If-Match`).
pub(crate) fn if_match(headers: &HeaderMap) -> Result<IfMatch, Problem> {
    Ok(match condition(headers, header::IF_MATCH)? {
        None => IfMatch::none(),
        Some(condition) => match condition.strong_versions() {
            None => IfMatch::none(),
            Some(versions) => IfMatch::any_of(versions),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn parse(v: &str) -> Result<Option<Condition>, Problem> {
        let mut h = HeaderMap::new();
        h.insert(header::IF_MATCH, HeaderValue::from_str(v).unwrap());
        condition(&h, header::IF_MATCH)
    }

    #[test]
    fn entity_tag_lists() {
        assert_eq!(parse("*").unwrap(), Some(Condition::Any));
        let c = parse(r#""3", W/"4" ,"a,b""#).unwrap().unwrap();
        assert_eq!(c.strong_versions(), Some(vec![3]));
        assert!(c.matches_weakly("4") && c.matches_weakly("a,b") && !c.matches_weakly("5"));
        for bad in ["3", r#""3"#, r#""3" "4""#, r#""3","#, "W/3", ""] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }
}
