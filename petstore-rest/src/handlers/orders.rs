//! `/v1/orders` and `/v1/payments`.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use petstore_core::{NewOrder, OrderId, OrderQuery, PaymentId, PaymentRequest, PaymentStatus};

use petstore_http::Problem;

use super::{IDEMPOTENT_REPLAYED, conditional, page, resource};
use crate::extract::{BasePath, Caller, JsonBody, OptionalJsonBody, Params};
use crate::routes::AppState;

pub(crate) async fn create(
    State(s): State<AppState>,
    Caller(who): Caller,
    BasePath(base): BasePath,
    headers: HeaderMap,
    JsonBody(new): JsonBody<NewOrder>,
) -> Result<Response, Problem> {
    // An empty header carries no key (HTTP cannot tell it from a missing one).
    let key = match headers.get("idempotency-key").filter(|v| !v.is_empty()) {
        None => None,
        Some(v) => Some(v.to_str().map_err(|_| {
            Problem::bad_request("`Idempotency-Key` must be printable ASCII").with_errors(vec![
                petstore_core::FieldError::new("Idempotency-Key", "not printable ASCII"),
            ])
        })?),
    };
    let placed = s.service.place_order(&who, new, key).await?;
    let order = &placed.order;
    let location = format!("{base}/v1/orders/{}", order.id);
    let mut response = resource(
        StatusCode::CREATED,
        order,
        &order.version.to_string(),
        Some(location),
    );
    if placed.replayed {
        response
            .headers_mut()
            .insert(IDEMPOTENT_REPLAYED, HeaderValue::from_static("true"));
    }
    Ok(response)
}

pub(crate) async fn list(
    State(s): State<AppState>,
    Caller(who): Caller,
    Params(query): Params<OrderQuery>,
) -> Result<Response, Problem> {
    Ok(page(s.service.orders(&who, &query).await?))
}

pub(crate) async fn get(
    State(s): State<AppState>,
    Caller(who): Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    let id: OrderId = id.parse()?;
    let order = s.service.order(&who, &id).await?;
    conditional(&headers, &order, &order.version.to_string())
}

pub(crate) async fn cancel(
    State(s): State<AppState>,
    Caller(who): Caller,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    let id: OrderId = id.parse()?;
    let order = s.service.cancel_order(&who, &id).await?;
    Ok(resource(
        StatusCode::OK,
        &order,
        &order.version.to_string(),
        None,
    ))
}

pub(crate) async fn deliver(
    State(s): State<AppState>,
    Caller(who): Caller,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    let id: OrderId = id.parse()?;
    let order = s.service.deliver_order(&who, &id).await?;
    Ok(resource(
        StatusCode::OK,
        &order,
        &order.version.to_string(),
        None,
    ))
}

/// 201 with the payment when it succeeded; 402 problem+json (carrying the failed
/// payment) when it was declined.
pub(crate) async fn pay(
    State(s): State<AppState>,
    Caller(who): Caller,
    BasePath(base): BasePath,
    Path(id): Path<String>,
    OptionalJsonBody(request): OptionalJsonBody<PaymentRequest>,
) -> Result<Response, Problem> {
    let id: OrderId = id.parse()?;
    let payment = s.service.pay_order(&who, &id, request).await?;
    match payment.status {
        PaymentStatus::Succeeded => {
            let location = format!("{base}/v1/payments/{}", payment.id);
            Ok(resource(
                StatusCode::CREATED,
                &payment,
                payment.id.as_str(),
                Some(location),
            ))
        }
        PaymentStatus::Failed => {
            let reason = payment.failure_reason.as_deref().unwrap_or("declined");
            let problem = Problem::new(
                StatusCode::PAYMENT_REQUIRED,
                "payment_declined",
                format!("the payment was declined: {reason}; the order is still placed"),
            )
            .with_member("payment", &payment);
            Ok(problem.into_response())
        }
    }
}

pub(crate) async fn payment(
    State(s): State<AppState>,
    Caller(who): Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    let id: PaymentId = id.parse()?;
    let payment = s.service.payment(&who, &id).await?;
    // Payments never change: the id is a valid strong validator.
    conditional(&headers, &payment, payment.id.as_str())
}
