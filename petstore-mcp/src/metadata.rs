//! OAuth 2.0 Protected Resource Metadata (RFC 9728) of the MCP endpoint: where an MCP
//! client learns which authorization servers issue tokens for it and which scopes
//! exist. The 401 challenge points here (`resource_metadata`).

use axum::Router;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use petstore_core::Scope;
use petstore_http::Problem;
use serde_json::json;

use crate::config::McpConfig;
use crate::web::PATH;

/// The well-known path (RFC 9728 section 3).
const WELL_KNOWN: &str = "/.well-known/oauth-protected-resource";

/// The metadata document's contents.
#[derive(Debug, Clone)]
pub(crate) struct ProtectedResource {
    /// The public URL of the MCP endpoint, when configured.
    resource: Option<http::Uri>,
    authorization_servers: Vec<String>,
}

impl ProtectedResource {
    pub(crate) fn new(config: &McpConfig) -> Self {
        let resource = config
            .resource
            .as_deref()
            .and_then(|url| match url.parse::<http::Uri>() {
                Ok(uri)
                    if matches!(uri.scheme_str(), Some("http" | "https"))
                        && uri.authority().is_some() =>
                {
                    Some(uri)
                }
                _ => {
                    tracing::warn!(
                        %url,
                        "McpConfig::resource is not an absolute http(s) URL; the metadata \
                         names the resource after each request's Host instead"
                    );
                    None
                }
            });
        Self {
            resource,
            authorization_servers: config.authorization_servers.clone(),
        }
    }

    /// Where the metadata is, for the challenge: the well-known URL of the configured
    /// resource (RFC 9728 section 3.1: the well-known path goes between the host and
    /// the resource's path), else a path that the edge completes with the Host.
    pub(crate) fn url(&self) -> String {
        match &self.resource {
            Some(uri) => {
                let scheme = uri.scheme_str().unwrap_or("https");
                let authority = uri.authority().map_or("", |a| a.as_str());
                let path = uri.path().trim_end_matches('/');
                format!("{scheme}://{authority}{WELL_KNOWN}{path}")
            }
            None => format!("{WELL_KNOWN}{PATH}"),
        }
    }

    /// `GET /.well-known/oauth-protected-resource/mcp` and, for clients that look at
    /// the root, `GET /.well-known/oauth-protected-resource`.
    pub(crate) fn router(self) -> Router {
        let handler = move |headers: HeaderMap| {
            let this = self.clone();
            async move { this.document(&headers) }
        };
        Router::new()
            .route(WELL_KNOWN, get(handler.clone()))
            .route(&format!("{WELL_KNOWN}{PATH}"), get(handler))
    }

    fn document(&self, headers: &HeaderMap) -> Response {
        let resource = match &self.resource {
            Some(uri) => uri.to_string(),
            None => {
                let host = headers
                    .get(header::HOST)
                    .and_then(|h| h.to_str().ok())
                    .filter(|h| !h.contains('@') && h.parse::<http::uri::Authority>().is_ok());
                match host {
                    Some(host) => format!("http://{host}{PATH}"),
                    None => {
                        return Problem::bad_request("a valid `Host` header is needed")
                            .into_response();
                    }
                }
            }
        };
        let mut document = json!({
            "resource": resource,
            "resource_name": "Pet Store MCP server",
            "bearer_methods_supported": ["header"],
            "scopes_supported": Scope::ALL.map(Scope::as_str),
        });
        if !self.authorization_servers.is_empty() {
            document["authorization_servers"] = json!(self.authorization_servers);
        }
        (
            [
                (
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                ),
                // A public document that browser-based MCP clients read cross-origin.
                (
                    header::ACCESS_CONTROL_ALLOW_ORIGIN,
                    HeaderValue::from_static("*"),
                ),
            ],
            document.to_string(),
        )
            .into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_metadata_url_inserts_the_well_known_path_before_the_resource_path() {
        let configured =
            ProtectedResource::new(&McpConfig::default().resource("https://api.example/mcp"));
        assert_eq!(
            configured.url(),
            "https://api.example/.well-known/oauth-protected-resource/mcp"
        );
        let derived = ProtectedResource::new(&McpConfig::default());
        assert_eq!(derived.url(), "/.well-known/oauth-protected-resource/mcp");
        let invalid = ProtectedResource::new(&McpConfig::default().resource("not a url"));
        assert_eq!(invalid.url(), "/.well-known/oauth-protected-resource/mcp");
    }
}
