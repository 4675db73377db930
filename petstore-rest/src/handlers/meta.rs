//! `GET /openapi.json` and `GET /docs`.

use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{Html, IntoResponse, Response};

use crate::routes::AppState;

pub(crate) async fn openapi(State(s): State<AppState>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        s.openapi.clone(),
    )
        .into_response()
}

/// A self-contained page (no external script) that renders `openapi.json` and can
/// send requests.
pub(crate) async fn docs() -> Html<&'static str> {
    Html(include_str!("../docs.html"))
}
