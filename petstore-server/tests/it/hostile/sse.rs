//! The SSE table: channels, event types, credentials and resume positions of
//! `/v1/stream`.

use reqwest::Method;
use serde_json::Value;

use super::{
    Matrix, Setup, check_problem, expect_eq, other_epoch_token, req, rest_follow_up, send, setup,
};
use crate::support::{WAIT, within};

const SSE_ROWS: usize = 13;

/// Reads an SSE response until an `event: reset` message and returns its data.
async fn sse_reset(mut response: reqwest::Response) -> Result<Value, String> {
    let mut text = String::new();
    let read = async {
        while let Some(chunk) = response.chunk().await.map_err(|e| e.to_string())? {
            text.push_str(&String::from_utf8_lossy(&chunk));
            if let Some(at) = text.find("event: reset") {
                let rest = &text[at..];
                if let Some(end) = rest.find("\n\n") {
                    let data: String = rest[..end]
                        .lines()
                        .filter_map(|l| l.strip_prefix("data:"))
                        .map(str::trim)
                        .collect();
                    return serde_json::from_str(&data)
                        .map_err(|e| format!("reset data is not JSON ({e}): {data}"));
                }
            }
        }
        Err(format!("the stream ended without a reset: {text}"))
    };
    tokio::time::timeout(WAIT, read)
        .await
        .map_err(|_| "no reset in time".to_owned())?
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sse_refuses_hostile_input_and_changes_nothing() {
    let Setup {
        s,
        base,
        http,
        t,
        rex,
        head,
        ..
    } = setup().await;
    let get = |name, path: &str| req(name, Method::GET, path);
    let many = (0..100)
        .map(|i| format!("pets/pet_{i}"))
        .collect::<Vec<_>>()
        .join(",");

    let rows = vec![
        get("unknown channel", "/v1/stream/admin").expect(422, "invalid_input"),
        get(
            "path traversal channel",
            "/v1/stream/pets/..%2F..%2Fetc%2Fpasswd",
        )
        .expect(422, "invalid_input"),
        get(
            "SQL injection channel",
            "/v1/stream?channels=pets%27%3B%20DROP%20TABLE%20pets%3B--",
        )
        .expect(422, "invalid_input"),
        get("unknown event type", "/v1/stream/pets?types=order.shipped")
            .expect(422, "invalid_input"),
        get("100 channels", &format!("/v1/stream?channels={many}"))
            .expect(422, "invalid_input")
            .field("channels"),
        get("chat without a token", "/v1/stream/chat").expect(401, "unauthenticated"),
        get("expired token", "/v1/stream/pets")
            .bearer(&t.expired)
            .expect(401, "unauthenticated"),
        get("forged token", "/v1/stream/pets")
            .bearer(&t.forged)
            .expect(401, "unauthenticated"),
        get("alg none token", "/v1/stream/pets")
            .bearer(&t.none)
            .expect(401, "unauthenticated"),
        get("garbage ?token=", "/v1/stream/pets?token=not.a.jwt").expect(401, "unauthenticated"),
        get("non-UTF-8 Authorization header", "/v1/stream/pets")
            .authorization(b"Bearer \xff")
            .expect(401, "unauthenticated"),
        // Valid requests that cannot resume: 200 with `event: reset`.
        get("malformed Last-Event-ID", "/v1/stream/pets")
            .header("last-event-id", "'; DROP TABLE events;--")
            .expect(200, "invalid_token"),
        get("Last-Event-ID of another epoch", "/v1/stream/pets")
            .header("last-event-id", &other_epoch_token(head))
            .expect(200, "epoch_mismatch"),
    ];

    let mut matrix = Matrix::new("SSE", &s.store).await;
    for r in &rows {
        let answer = if r.status == 200 {
            let mut request = http.get(format!("{base}{}", r.path));
            for (k, v) in &r.headers {
                request = request.header(*k, v.clone());
            }
            match within("SSE response", request.send()).await {
                Ok(resp) if resp.status() == 200 => sse_reset(resp).await.and_then(|data| {
                    expect_eq(
                        "reset reason",
                        data["reason"].as_str().unwrap_or(""),
                        r.code,
                    )
                }),
                Ok(resp) => Err(format!("expected 200 + reset, got {}", resp.status())),
                Err(e) => Err(e.to_string()),
            }
        } else {
            match send(&http, &base, r).await {
                Ok(a) => check_problem(r, &a),
                Err(e) => Err(e),
            }
        };
        let follow = rest_follow_up(&http, &base, &rex).await;
        matrix.row(&s.store, r.name, answer, follow).await;
    }
    matrix.finish(SSE_ROWS);
    s.shutdown().await.unwrap();
}
