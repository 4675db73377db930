//! The SSE client: a stream request resuming after a position.

use std::fmt::Display;

use super::within;

/// `GET url` with `Last-Event-ID: since`; the response, whatever its status.
pub(crate) async fn request(url: String, since: impl Display) -> reqwest::Response {
    let request = reqwest::Client::new()
        .get(url)
        .header("last-event-id", since.to_string());
    within("the SSE response", request.send())
        .await
        .expect("SSE request")
}
