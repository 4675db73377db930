//! Core errors as MCP errors, and tool arguments whose errors name the field they
//! break.

use petstore_core::{Error, ErrorKind, FieldError};
use rmcp::ErrorData;
use rmcp::handler::server::common::FromContextPart;
use rmcp::handler::server::tool::ToolCallContext;
use rmcp::model::{CallToolResult, ContentBlock};
use serde::de::DeserializeOwned;

/// The text an assistant reads for a core error: `"{code}: {message}"`, then one line
/// per invalid field when there are several (a single one is already in the message).
fn describe(error: &Error) -> String {
    let Some(message) = error.public_message() else {
        // A backend failure's details stay in the server log.
        tracing::error!(error = ?error, "internal error in an MCP request");
        return format!(
            "{}: {}",
            error.kind().code(),
            petstore_http::INTERNAL_ERROR_TEXT
        );
    };
    let mut text = format!("{}: {}", error.kind().code(), message);
    if let [_, _, ..] = error.field_errors() {
        for field in error.field_errors() {
            text.push_str(&format!("\n- `{}`: {}", field.field, field.message));
        }
    }
    text
}

/// A core error as the result of a tool call: `isError: true` with the error code and
/// message, so the assistant sees what went wrong and can correct itself (a protocol
/// error would hide the message from it).
pub(crate) fn tool_error(error: &Error) -> CallToolResult {
    CallToolResult::error(vec![ContentBlock::text(describe(error))])
}

/// The one mapping of [`ErrorKind`] to JSON-RPC errors, for the requests that have no
/// in-band error (resources, prompts, subscriptions). `data` carries the core code and
/// the invalid fields.
pub(crate) fn protocol_error(error: &Error) -> ErrorData {
    let message = describe(error);
    let data = Some(serde_json::json!({
        "code": error.kind().code(),
        "errors": error.field_errors(),
    }));
    match error.kind() {
        ErrorKind::InvalidInput => ErrorData::invalid_params(message, data),
        ErrorKind::NotFound => ErrorData::resource_not_found(message, data),
        ErrorKind::Internal | ErrorKind::Unavailable | ErrorKind::Lagged => {
            ErrorData::internal_error(message, data)
        }
        // Unauthenticated, Forbidden, Conflict, PreconditionFailed, RateLimited,
        // ResumeExpired and any future kind: the request cannot be served as sent.
        _ => ErrorData::invalid_request(message, data),
    }
}

/// The text of a tool-argument error. The `failed to deserialize parameters:` prefix is
/// rmcp's: it makes rmcp return an [`Input`] failure as a tool result.
pub(crate) fn bad_arguments(what: impl std::fmt::Display) -> String {
    format!("failed to deserialize parameters: {what}")
}

/// Tool arguments deserialised into `T`. Unlike rmcp's `Parameters`, a failure names
/// the JSON path of the offending value (`` `changes.price.amount`: invalid type ``).
/// The message keeps rmcp's `failed to deserialize parameters:` prefix, which makes
/// rmcp return it as a tool result with `isError: true` (MCP: input validation
/// errors are tool errors, so the assistant can fix its call).
#[derive(Debug)]
pub(crate) struct Input<T>(pub(crate) T);

impl<S, T: DeserializeOwned> FromContextPart<ToolCallContext<'_, S>> for Input<T> {
    fn from_context_part(context: &mut ToolCallContext<'_, S>) -> Result<Self, ErrorData> {
        let arguments = context.arguments.take().unwrap_or_default();
        serde_path_to_error::deserialize(serde_json::Value::Object(arguments))
            .map(Input)
            .map_err(|e| {
                let field =
                    FieldError::from_serde(&e.path().to_string(), &e.into_inner().to_string());
                let what = if field.field.is_empty() {
                    field.message
                } else {
                    format!("`{}`: {}", field.field, field.message)
                };
                ErrorData::invalid_params(bad_arguments(what), None)
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The one mapping to JSON-RPC codes: invalid params, resource not found (the MCP
    /// spec's -32002), internal error, invalid request for the rest; `data` carries
    /// the core code and the fields.
    #[test]
    fn each_kind_has_its_json_rpc_code() {
        use rmcp::model::ErrorCode;
        let cases = [
            (
                Error::invalid_field("name", "is required"),
                ErrorCode::INVALID_PARAMS,
            ),
            (
                Error::not_found("pet", "pet_x"),
                ErrorCode::RESOURCE_NOT_FOUND,
            ),
            (
                Error::new(ErrorKind::Internal, "boom"),
                ErrorCode::INTERNAL_ERROR,
            ),
            (
                Error::new(ErrorKind::Unavailable, "down"),
                ErrorCode::INTERNAL_ERROR,
            ),
            (
                Error::new(ErrorKind::Conflict, "taken"),
                ErrorCode::INVALID_REQUEST,
            ),
            (
                Error::new(ErrorKind::Forbidden, "no"),
                ErrorCode::INVALID_REQUEST,
            ),
        ];
        for (error, code) in cases {
            let mapped = protocol_error(&error);
            assert_eq!(mapped.code, code, "{error}");
            let data = mapped.data.expect("data");
            assert_eq!(data["code"], error.kind().code(), "{error}");
        }
        let mapped = protocol_error(&Error::invalid_field("name", "is required"));
        assert_eq!(mapped.data.unwrap()["errors"][0]["field"], "name");
    }

    #[test]
    fn internal_details_are_withheld() {
        let text = describe(&Error::new(ErrorKind::Internal, "db password is hunter2"));
        assert_eq!(text, "internal: unexpected server error");
        let text = describe(&Error::not_found("pet", "pet_x"));
        assert_eq!(text, "not_found: pet `pet_x` does not exist");
    }
}
