//! The MCP table: transport-level refusals on `POST /mcp` (bodies, media types, sizes,
//! credentials, foreign Host and Origin), then tool calls through an MCP client
//! (credentials, invalid arguments, domain errors, an unknown tool) and a resource URI.

use reqwest::Method;
use serde_json::{Value, json};

use super::{Matrix, Setup, expect_eq, nested, other_epoch_token, req, send, setup};
use crate::support::mcp::{self, Mcp};
use crate::support::{new_pet, within};

const MCP_ROWS: usize = 31;

async fn mcp_client(base: &str, token: Option<&str>) -> Mcp {
    mcp::connect(base, token)
        .await
        .expect("MCP client connects")
}

/// What a tool-call row must get.
enum McpExpect {
    /// A tool result with `isError: true` whose text contains this.
    ToolError(&'static str),
    /// A JSON-RPC error.
    RpcError,
}

fn initialize_body() -> String {
    json!({
        "jsonrpc": "2.0", "id": 1, "method": "initialize",
        "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "hostile", "version": "0"}}
    })
    .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mcp_refuses_hostile_input_and_changes_nothing() {
    use rmcp::model::{CallToolRequestParams, ReadResourceRequestParams};
    let Setup {
        s,
        base,
        http,
        t,
        rex,
        shelly,
        head,
    } = setup().await;

    // Transport-level rows: raw POSTs to /mcp.
    let post = |name| {
        req(name, Method::POST, "/mcp")
            .bearer(&t.all)
            .header("accept", "application/json, text/event-stream")
    };
    let mut invalid_utf8 = br#"{"jsonrpc":"2.0","id":1,"method":""#.to_vec();
    invalid_utf8.extend_from_slice(b"\xff\xfe\"}");
    let raw_rows = vec![
        post("body is not JSON")
            .json("{\"jsonrpc\": \"2.0\",")
            .expect(400, ""),
        post("invalid UTF-8 body")
            .json(invalid_utf8)
            .expect(400, ""),
        post("100000 nested arrays")
            .json(format!(
                r#"{{"jsonrpc":"2.0","id":1,"method":"initialize","params":{}}}"#,
                nested(100_000)
            ))
            .expect(400, ""),
        post("JSON-RPC 1.0 envelope")
            .json(initialize_body().replace("\"2.0\"", "\"1.0\""))
            .expect(400, ""),
        post("text/plain content type")
            .body(Some("text/plain"), initialize_body())
            .expect(415, ""),
        req("no Accept header", Method::POST, "/mcp")
            .json(initialize_body())
            .expect(406, ""),
        post("4 MiB body")
            .json(format!(
                r#"{{"jsonrpc":"2.0","id":1,"method":"initialize","params":{{"pad":"{}"}}}}"#,
                "x".repeat(4 * 1024 * 1024)
            ))
            .expect(413, ""),
        post("expired token")
            .bearer(&t.expired)
            .json(initialize_body())
            .expect(401, "unauthenticated"),
        post("forged token")
            .bearer(&t.forged)
            .json(initialize_body())
            .expect(401, "unauthenticated"),
        post("alg none token")
            .bearer(&t.none)
            .json(initialize_body())
            .expect(401, "unauthenticated"),
        post("garbage token")
            .bearer(&t.garbage)
            .json(initialize_body())
            .expect(401, "unauthenticated"),
        post("foreign Host (DNS rebinding)")
            .header("host", "evil.example")
            .json(initialize_body())
            .expect(403, ""),
        post("foreign Origin")
            .header("origin", "https://evil.example")
            .json(initialize_body())
            .expect(403, ""),
    ];
    let mut matrix = Matrix::new("MCP", &s.store).await;
    for r in &raw_rows {
        let answer = match send(&http, &base, r).await {
            Ok(a) if a.status == r.status => {
                if r.code.is_empty() {
                    Ok(())
                } else {
                    a.json()
                        .and_then(|b| expect_eq("code", b["code"].as_str().unwrap_or(""), r.code))
                }
            }
            Ok(a) => Err(format!(
                "expected HTTP {}, got {}: {}",
                r.status,
                a.status,
                a.text()
            )),
            Err(e) => Err(e),
        };
        let follow = match send(&http, &base, &post("follow-up").json(initialize_body())).await {
            Ok(a) => expect_eq("initialize status", a.status, 200),
            Err(e) => Err(e),
        };
        matrix.row(&s.store, r.name, answer, follow).await;
    }

    // Tool calls through the rmcp client.
    let admin = mcp_client(&base, Some(&t.all)).await;
    let anonymous = mcp_client(&base, None).await;
    let reader = mcp_client(&base, Some(&t.reader)).await;
    let pet = |key: &str, value: Value| {
        let mut v = new_pet("Hostile");
        v[key] = value;
        v
    };
    use McpExpect::*;
    let rows: Vec<(&str, &Mcp, &str, Value, McpExpect)> = vec![
        (
            "create_pet without a token",
            &anonymous,
            "create_pet",
            pet("name", json!("Anon")),
            ToolError("unauthenticated"),
        ),
        (
            "create_pet without the scope",
            &reader,
            "create_pet",
            pet("name", json!("Reader")),
            ToolError("forbidden"),
        ),
        (
            "name is a number",
            &admin,
            "create_pet",
            pet("name", json!(42)),
            ToolError("name"),
        ),
        (
            "unknown enum value",
            &admin,
            "create_pet",
            pet("status", json!("flying")),
            ToolError("status"),
        ),
        (
            "age 1e20",
            &admin,
            "create_pet",
            pet("age", json!(1e20)),
            ToolError("age"),
        ),
        (
            "unknown field",
            &admin,
            "create_pet",
            pet("owner", json!("mallory")),
            ToolError("owner"),
        ),
        (
            "missing price",
            &admin,
            "create_pet",
            json!({"name": "NoPrice", "species": "dog"}),
            ToolError("price"),
        ),
        (
            "SQL injection in species",
            &admin,
            "create_pet",
            pet("species", json!("dog'; DROP TABLE pets;--")),
            ToolError("invalid_input"),
        ),
        (
            "100 nested arrays as tags",
            &admin,
            "create_pet",
            pet("tags", serde_json::from_str(&nested(100)).unwrap()),
            ToolError("tags"),
        ),
        (
            "order for an unknown pet",
            &admin,
            "place_order",
            json!({"pet_id": "pet_doesnotexist"}),
            ToolError("not_found"),
        ),
        (
            "order for a sold pet",
            &admin,
            "place_order",
            json!({"pet_id": shelly.id}),
            ToolError("conflict"),
        ),
        (
            "order quantity 0",
            &admin,
            "place_order",
            json!({"pet_id": rex.id, "quantity": 0}),
            ToolError("invalid_input"),
        ),
        (
            "order quantity beyond u32",
            &admin,
            "place_order",
            json!({"pet_id": rex.id, "quantity": 1_u64 << 40}),
            ToolError("quantity"),
        ),
        (
            "SQL injection as a pet id",
            &admin,
            "get_pet",
            json!({"id": "pet_1' OR '1'='1"}),
            // Ids read only what their pattern says: refused before any lookup.
            ToolError("is not a valid pet id"),
        ),
        (
            "malformed resume token",
            &admin,
            "recent_events",
            json!({"since": "zzz"}),
            ToolError("since"),
        ),
        (
            "resume token of another epoch",
            &admin,
            "recent_events",
            json!({"since": other_epoch_token(head)}),
            ToolError("resume_expired"),
        ),
        ("unknown tool", &admin, "drop_tables", json!({}), RpcError),
    ];
    for (name, client, tool, arguments, expect) in rows {
        let Value::Object(arguments) = arguments else {
            unreachable!("objects")
        };
        let params = CallToolRequestParams::new(tool.to_owned()).with_arguments(arguments);
        let result = within(name, client.call_tool(params)).await;
        let answer = match (result, expect) {
            (Ok(r), ToolError(needle)) => {
                let text: String = r
                    .content
                    .iter()
                    .filter_map(|c| c.as_text().map(|t| t.text.clone()))
                    .collect::<Vec<_>>()
                    .join("\n");
                if r.is_error != Some(true) {
                    Err(format!("expected a tool error, got success: {text}"))
                } else if !text.contains(needle) {
                    Err(format!(
                        "the tool error does not mention `{needle}`: {text}"
                    ))
                } else {
                    Ok(())
                }
            }
            (Err(e), ToolError(needle)) => Err(format!(
                "expected a tool error mentioning `{needle}`, got a protocol error: {e}"
            )),
            (Err(_), RpcError) => Ok(()),
            (Ok(r), RpcError) => Err(format!("expected a JSON-RPC error, got a result: {r:?}")),
        };
        let follow = mcp_follow_up(client).await;
        matrix.row(&s.store, name, answer, follow).await;
    }
    // Resources.
    let uri = "petstore://pets/../../etc/passwd";
    let read = within(
        "resources/read",
        admin.read_resource(ReadResourceRequestParams::new(uri)),
    )
    .await;
    let answer = match read {
        Err(_) => Ok(()),
        Ok(r) => Err(format!("read {uri}: {r:?}")),
    };
    let follow = mcp_follow_up(&admin).await;
    matrix
        .row(&s.store, "path traversal resource URI", answer, follow)
        .await;

    for c in [admin, anonymous, reader] {
        let _ = c.cancel().await;
    }
    matrix.finish(MCP_ROWS);
    s.shutdown().await.unwrap();
}

async fn mcp_follow_up(client: &Mcp) -> Result<(), String> {
    use rmcp::model::CallToolRequestParams;
    let result = within(
        "get_inventory",
        client.call_tool(CallToolRequestParams::new("get_inventory".to_owned())),
    )
    .await
    .map_err(|e| e.to_string())?;
    if result.is_error == Some(true) {
        return Err(format!("get_inventory failed: {:?}", result.content));
    }
    Ok(())
}
