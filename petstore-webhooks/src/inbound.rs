//! `POST /v1/payments/webhook`: payment-provider notices, signed per Standard Webhooks
//! with the configured secret, applied to orders through the core at most once per
//! `webhook-id`.
//!
//! Answers: 200 when applied or already applied (`duplicate: true`), and for event
//! types this endpoint does not handle (`ignored: true`, so the provider stops
//! retrying); 401 for a missing or bad signature or a timestamp outside the tolerance;
//! 400 for a body that is not JSON; 422 for a payment notice without a valid
//! `data.order_id`; 404 for an unknown order; 409 for an order that cannot take the
//! notice (e.g. already paid or cancelled: the provider's delivery log shows the
//! refusal); 503 while no secret is configured. A refused notice changes nothing.

use std::sync::Arc;

use axum::Router;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use bytes::Bytes;
use petstore_core::{Error, ErrorKind, FieldError, OrderId, PaymentNotice, PaymentStatus};
use petstore_http::{Edge, Problem};
use serde::Deserialize;
use serde_json::json;

use crate::routes::{parse_json, read_body};
use crate::signing::Signer;
use crate::webhooks::AppState;

const MAX_REFERENCE: usize = 255;

pub(crate) fn router(shared: Arc<AppState>, edge: &Edge) -> Router {
    let limit = shared.config.max_body_size;
    let store = shared.service.clone();
    Router::new()
        .route("/v1/payments/webhook", post(receive))
        .layer(DefaultBodyLimit::max(limit))
        .with_state(shared)
        .layer(edge.layer(store))
}

#[derive(Debug, Deserialize)]
struct Notice {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    data: serde_json::Value,
}

/// The `data` of a payment notice. Providers add fields freely, so unknown ones are
/// ignored.
#[derive(Debug, Deserialize)]
struct PaymentData {
    order_id: String,
    #[serde(default)]
    reference: Option<String>,
    #[serde(default)]
    failure_reason: Option<String>,
}

async fn receive(
    State(shared): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, Problem> {
    let Some(secret) = &shared.config.payments_secret else {
        return Err(Problem::from(Error::new(
            ErrorKind::Unavailable,
            "the payments webhook is not configured (no signing secret)",
        )));
    };
    let body = read_body(body, shared.config.max_body_size)?;
    // Verify before looking at the body: nothing unauthenticated is parsed.
    let verified = Signer::new(secret.clone())
        .verify(&headers, &body, shared.config.timestamp_tolerance)
        .map_err(|e| {
            Problem::from(Error::new(
                ErrorKind::Unauthenticated,
                format!("webhook verification failed: {e}"),
            ))
        })?;
    let notice: Notice = parse_json(&body)?;
    let status = match notice.kind.as_str() {
        "payment.succeeded" => PaymentStatus::Succeeded,
        "payment.failed" => PaymentStatus::Failed,
        other => {
            tracing::info!(webhook_id = %verified.id, r#type = %other, "ignoring a payments webhook");
            return Ok(ok(json!({
                "received": true,
                "ignored": true,
                "detail": format!("event type `{other}` is not handled"),
            })));
        }
    };
    let data: PaymentData = serde_json::from_value(notice.data).map_err(|e| {
        let text = e.to_string();
        let field = if text.contains("order_id") {
            "data.order_id"
        } else {
            "data"
        };
        Problem::from(Error::invalid(vec![FieldError::new(field, text)]))
    })?;
    let mut fields = Vec::new();
    let order_id = data
        .order_id
        .parse::<OrderId>()
        .map_err(|_| {
            fields.push(FieldError::new(
                "data.order_id",
                "must be an order id (`ord_...`)",
            ))
        })
        .ok();
    if data
        .reference
        .as_ref()
        .is_some_and(|r| r.is_empty() || r.len() > MAX_REFERENCE)
    {
        fields.push(FieldError::new(
            "data.reference",
            format!("must be 1 to {MAX_REFERENCE} characters"),
        ));
    }
    if !fields.is_empty() {
        return Err(Problem::from(Error::invalid(fields)));
    }
    let Some(order_id) = order_id else {
        return Err(Problem::from(Error::invalid_field(
            "data.order_id",
            "is required",
        )));
    };
    let notice = PaymentNotice {
        order_id,
        status,
        // Without a provider reference, the message id identifies the payment.
        reference: data.reference.unwrap_or_else(|| verified.id.clone()),
        failure_reason: data
            .failure_reason
            .filter(|_| status == PaymentStatus::Failed),
    };
    let outcome = shared
        .service
        .apply_payment_notice(&shared.payments, &verified.id, notice)
        .await?;
    Ok(ok(json!({
        "received": true,
        "duplicate": outcome.duplicate,
        "order_id": outcome.order.id,
        "order_status": outcome.order.status,
    })))
}

fn ok(value: serde_json::Value) -> Response {
    (StatusCode::OK, axum::Json(value)).into_response()
}
