//! The MCP table: transport-level refusals on `POST /mcp` (bodies, media types, sizes,
//! credentials, foreign Host and Origin), then tool calls through an MCP client
//! (credentials, invalid arguments, domain errors, an unknown tool) and a resource URI.

use reqwest::Method;
use serde_json::{Value, json};

use super::{Answer, Matrix, Setup, expect_eq, nested, other_epoch_token, req, send, setup};
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
    /// A tool result with `isError: true` whose text reads as this error (see
    /// [`ToolError::parse`]): the code and the invalid fields, exactly.
    Tool(ToolError),
    /// A JSON-RPC error with this code.
    Rpc(rmcp::model::ErrorCode),
}

/// A tool error as the MCP adapter writes it: `"{code}: {message}"` for a core error
/// (one invalid field named as `` invalid `field`: ``, several as `` - `field`: ``
/// lines), `"failed to deserialize parameters: ..."` for arguments that do not
/// deserialise (code `arguments`; the field is the JSON path, or the unknown or
/// missing field).
#[derive(Debug, Clone, PartialEq, Eq)]
struct ToolError {
    code: String,
    fields: Vec<String>,
}

/// The tool error `code` naming exactly `fields`.
fn tool_error(code: &str, fields: &[&str]) -> McpExpect {
    McpExpect::Tool(ToolError {
        code: code.to_owned(),
        fields: fields.iter().map(|f| (*f).to_owned()).collect(),
    })
}

/// The text between the first pair of backticks of `s`.
fn quoted(s: &str) -> Option<String> {
    let (_, rest) = s.split_once('`')?;
    Some(rest.split_once('`')?.0.to_owned())
}

impl ToolError {
    fn parse(text: &str) -> Option<ToolError> {
        if let Some(rest) = text.strip_prefix("failed to deserialize parameters: ") {
            let field = if rest.starts_with('`')
                || rest.starts_with("unknown field `")
                || rest.starts_with("missing field `")
            {
                quoted(rest)
            } else {
                None
            };
            return Some(ToolError {
                code: "arguments".to_owned(),
                fields: field.into_iter().collect(),
            });
        }
        let (code, message) = text.split_once(": ")?;
        if code.is_empty() || !code.chars().all(|c| c.is_ascii_lowercase() || c == '_') {
            return None;
        }
        let mut lines = message.lines();
        let first = lines.next().unwrap_or_default();
        let mut fields: Vec<String> = if first.starts_with("invalid `") {
            quoted(first).into_iter().collect()
        } else {
            Vec::new()
        };
        fields.extend(lines.filter_map(|l| {
            l.strip_prefix("- ")
                .filter(|l| l.starts_with('`'))
                .and_then(quoted)
        }));
        Some(ToolError {
            code: code.to_owned(),
            fields,
        })
    }
}

/// What the body of a raw `/mcp` answer must be.
#[derive(Debug, Clone, Copy)]
enum RawBody {
    /// A JSON-RPC error object with this code (and `id` null).
    JsonRpc(i64),
    /// An RFC 9457 problem with this `code`.
    Problem(&'static str),
    /// Exactly this text (what rmcp answers for the transport refusals it makes).
    Text(&'static str),
}

fn check_raw_body(expected: RawBody, a: &Answer) -> Result<(), String> {
    match expected {
        RawBody::JsonRpc(code) => {
            let body = a.json()?;
            expect_eq("jsonrpc", &body["jsonrpc"], &json!("2.0"))?;
            expect_eq("id", &body["id"], &Value::Null)?;
            expect_eq("error.code", body["error"]["code"].as_i64(), Some(code))
                .map_err(|e| format!("{e}: {}", a.text()))?;
            if body["error"]["message"].as_str().is_none_or(str::is_empty) {
                return Err(format!("a JSON-RPC error without a message: {}", a.text()));
            }
            Ok(())
        }
        RawBody::Problem(code) => {
            let ct = a.header("content-type");
            if !ct.starts_with("application/problem+json") {
                return Err(format!(
                    "content-type `{ct}` is not problem+json: {}",
                    a.text()
                ));
            }
            expect_eq(
                "problem code",
                a.json()?["code"].as_str().unwrap_or(""),
                code,
            )
            .map_err(|e| format!("{e}: {}", a.text()))
        }
        RawBody::Text(text) => expect_eq("body", a.text().as_str(), text),
    }
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
    use RawBody::{JsonRpc, Problem, Text};
    let raw_rows =
        vec![
        (
            post("body is not JSON")
                .json("{\"jsonrpc\": \"2.0\",")
                .expect(400, ""),
            JsonRpc(-32700),
        ),
        (
            post("invalid UTF-8 body").json(invalid_utf8).expect(400, ""),
            JsonRpc(-32700),
        ),
        (
            post("100000 nested arrays")
                .json(format!(
                    r#"{{"jsonrpc":"2.0","id":1,"method":"initialize","params":{}}}"#,
                    nested(100_000)
                ))
                .expect(400, ""),
            JsonRpc(-32700),
        ),
        (
            post("JSON-RPC 1.0 envelope")
                .json(initialize_body().replace("\"2.0\"", "\"1.0\""))
                .expect(400, ""),
            JsonRpc(-32600),
        ),
        (
            post("text/plain content type")
                .body(Some("text/plain"), initialize_body())
                .expect(415, ""),
            Text("Unsupported Media Type: Content-Type must be application/json"),
        ),
        (
            req("no Accept header", Method::POST, "/mcp")
                .json(initialize_body())
                .expect(406, ""),
            Text("Not Acceptable: Client must accept both application/json and text/event-stream"),
        ),
        (
            post("4 MiB body")
                .json(format!(
                    r#"{{"jsonrpc":"2.0","id":1,"method":"initialize","params":{{"pad":"{}"}}}}"#,
                    "x".repeat(4 * 1024 * 1024)
                ))
                .expect(413, ""),
            JsonRpc(-32600),
        ),
        (
            post("expired token")
                .bearer(&t.expired)
                .json(initialize_body())
                .expect(401, ""),
            Problem("unauthenticated"),
        ),
        (
            post("forged token")
                .bearer(&t.forged)
                .json(initialize_body())
                .expect(401, ""),
            Problem("unauthenticated"),
        ),
        (
            post("alg none token")
                .bearer(&t.none)
                .json(initialize_body())
                .expect(401, ""),
            Problem("unauthenticated"),
        ),
        (
            post("garbage token")
                .bearer(&t.garbage)
                .json(initialize_body())
                .expect(401, ""),
            Problem("unauthenticated"),
        ),
        (
            post("foreign Host (DNS rebinding)")
                .header("host", "evil.example")
                .json(initialize_body())
                .expect(403, ""),
            Text("Forbidden: Host header is not allowed"),
        ),
        (
            post("foreign Origin")
                .header("origin", "https://evil.example")
                .json(initialize_body())
                .expect(403, ""),
            Text("Forbidden: Origin header is not allowed"),
        ),
    ];
    let mut matrix = Matrix::new("MCP", &s.store).await;
    for (r, body) in &raw_rows {
        let answer = match send(&http, &base, r).await {
            Ok(a) if a.status == r.status => check_raw_body(*body, &a),
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
            tool_error("unauthenticated", &[]),
        ),
        (
            "create_pet without the scope",
            &reader,
            "create_pet",
            pet("name", json!("Reader")),
            tool_error("forbidden", &[]),
        ),
        (
            "name is a number",
            &admin,
            "create_pet",
            pet("name", json!(42)),
            tool_error("arguments", &["name"]),
        ),
        (
            "unknown enum value",
            &admin,
            "create_pet",
            pet("status", json!("flying")),
            tool_error("arguments", &["status"]),
        ),
        (
            "age 1e20",
            &admin,
            "create_pet",
            pet("age", json!(1e20)),
            tool_error("arguments", &["age"]),
        ),
        (
            "unknown field",
            &admin,
            "create_pet",
            pet("owner", json!("mallory")),
            tool_error("arguments", &["owner"]),
        ),
        (
            "missing price",
            &admin,
            "create_pet",
            json!({"name": "NoPrice", "species": "dog"}),
            tool_error("arguments", &["price"]),
        ),
        (
            "SQL injection in species",
            &admin,
            "create_pet",
            pet("species", json!("dog'; DROP TABLE pets;--")),
            tool_error("invalid_input", &["species"]),
        ),
        (
            "100 nested arrays as tags",
            &admin,
            "create_pet",
            pet("tags", serde_json::from_str(&nested(100)).unwrap()),
            tool_error("arguments", &["tags[0]"]),
        ),
        (
            "order for an unknown pet",
            &admin,
            "place_order",
            json!({"pet_id": "pet_doesnotexist"}),
            tool_error("not_found", &[]),
        ),
        (
            "order for a sold pet",
            &admin,
            "place_order",
            json!({"pet_id": shelly.id}),
            tool_error("conflict", &[]),
        ),
        (
            "order quantity 0",
            &admin,
            "place_order",
            json!({"pet_id": rex.id, "quantity": 0}),
            tool_error("invalid_input", &["quantity"]),
        ),
        (
            "order quantity beyond u32",
            &admin,
            "place_order",
            json!({"pet_id": rex.id, "quantity": 1_u64 << 40}),
            tool_error("arguments", &["quantity"]),
        ),
        (
            "SQL injection as a pet id",
            &admin,
            "get_pet",
            json!({"id": "pet_1' OR '1'='1"}),
            // Ids read only what their pattern says: refused before any lookup.
            tool_error("arguments", &["id"]),
        ),
        (
            "malformed resume token",
            &admin,
            "recent_events",
            json!({"since": "zzz"}),
            tool_error("arguments", &["since"]),
        ),
        (
            "resume token of another epoch",
            &admin,
            "recent_events",
            json!({"since": other_epoch_token(head)}),
            tool_error("resume_expired", &[]),
        ),
        (
            "unknown tool",
            &admin,
            "drop_tables",
            json!({}),
            Rpc(rmcp::model::ErrorCode::INVALID_PARAMS),
        ),
    ];
    for (name, client, tool, arguments, expect) in rows {
        let Value::Object(arguments) = arguments else {
            unreachable!("objects")
        };
        let params = CallToolRequestParams::new(tool.to_owned()).with_arguments(arguments);
        let result = within(name, client.call_tool(params)).await;
        let answer = match (result, expect) {
            (Ok(r), Tool(want)) => {
                let text: String = r
                    .content
                    .iter()
                    .filter_map(|c| c.as_text().map(|t| t.text.clone()))
                    .collect::<Vec<_>>()
                    .join("\n");
                if r.is_error != Some(true) {
                    Err(format!("expected a tool error, got success: {text}"))
                } else {
                    expect_eq("tool error", ToolError::parse(&text), Some(want))
                        .map_err(|e| format!("{e}: {text}"))
                }
            }
            (Err(e), Tool(want)) => Err(format!(
                "expected the tool error {want:?}, got a protocol error: {e}"
            )),
            (Err(e), Rpc(code)) => rpc_code(&e, code),
            (Ok(r), Rpc(_)) => Err(format!("expected a JSON-RPC error, got a result: {r:?}")),
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
    // Not a resource this server has: MCP's "resource not found" (-32002), the code
    // an unknown pet gets too.
    let answer = match read {
        Err(e) => rpc_code(&e, rmcp::model::ErrorCode::RESOURCE_NOT_FOUND),
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

/// `Ok` when `error` is a JSON-RPC error with `code`.
fn rpc_code(error: &rmcp::ServiceError, code: rmcp::model::ErrorCode) -> Result<(), String> {
    match error {
        rmcp::ServiceError::McpError(e) => expect_eq("JSON-RPC error code", e.code, code)
            .map_err(|d| format!("{d}: {}", e.message)),
        other => Err(format!("expected a JSON-RPC error {code:?}, got {other}")),
    }
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
