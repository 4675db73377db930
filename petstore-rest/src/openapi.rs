//! The OpenAPI 3.1 document, built from the route table and the schemars schemas of
//! the core types, so that it cannot drift from what the router serves.

use axum::http::Method;
use petstore_core::{Scope, schemars};
use schemars::generate::SchemaSettings;
use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde_json::{Map, Value, json};

use petstore_http::{PROBLEM_JSON, Problem};

/// Produces the schema of a type while registering its dependencies.
pub(crate) type SchemaFn = fn(&mut SchemaGenerator) -> Schema;

/// A `$ref` to `T` (or `T` inline when schemars inlines it).
pub(crate) fn schema_ref<T: JsonSchema>(g: &mut SchemaGenerator) -> Schema {
    g.subschema_for::<T>()
}

/// `T`'s own schema, never a `$ref` (for query-parameter structs).
pub(crate) fn schema_inline<T: JsonSchema>(g: &mut SchemaGenerator) -> Schema {
    T::json_schema(g)
}

/// `Page<T>` under the name `<T>Page` (schemars would name every page `Page`,
/// `Page2`, ...).
pub(crate) struct PageOf<T>(std::marker::PhantomData<T>);

impl<T: JsonSchema> JsonSchema for PageOf<T> {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        format!("{}Page", T::schema_name()).into()
    }

    fn json_schema(g: &mut SchemaGenerator) -> Schema {
        <petstore_core::Page<T>>::json_schema(g)
    }
}

/// Who may call an operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Access {
    /// No credential is looked at.
    Public,
    /// A token is optional; what it unlocks is decided per item (polling feed).
    Optional,
    /// Open to anyone while reads are open, else needs the scope.
    Read(Scope),
    /// Needs a bearer token with the scope.
    Write(Scope),
}

/// A request header an operation reads.
#[derive(Debug, Clone, Copy)]
pub(crate) struct HeaderParam {
    pub(crate) name: &'static str,
    pub(crate) description: &'static str,
}

pub(crate) const IF_MATCH: HeaderParam = HeaderParam {
    name: "If-Match",
    description: "Only apply the change if the resource still has this ETag (`\"3\"`), else 412. \
                  A malformed value is 400.",
};
pub(crate) const IF_NONE_MATCH: HeaderParam = HeaderParam {
    name: "If-None-Match",
    description: "Answer 304 Not Modified when the current ETag is listed.",
};
pub(crate) const IDEMPOTENCY_KEY: HeaderParam = HeaderParam {
    name: "Idempotency-Key",
    description: "1 to 255 printable characters. Retrying with the same key and the same body \
                  returns the first order (201, header `Idempotent-Replayed: true`); the same key \
                  with another body is 422.",
};

/// A success response.
#[derive(Debug, Clone)]
pub(crate) struct Reply {
    pub(crate) status: u16,
    pub(crate) description: &'static str,
    pub(crate) schema: Option<SchemaFn>,
    pub(crate) content_type: &'static str,
    /// Names of `components/headers` entries.
    pub(crate) headers: &'static [&'static str],
}

/// A request body.
#[derive(Debug, Clone)]
pub(crate) struct BodySpec {
    pub(crate) schema: SchemaFn,
    pub(crate) content_types: &'static [&'static str],
    pub(crate) required: bool,
}

/// The documentation of one operation.
#[derive(Debug, Clone)]
pub(crate) struct Op {
    pub(crate) id: &'static str,
    pub(crate) tag: &'static str,
    pub(crate) summary: &'static str,
    pub(crate) description: &'static str,
    pub(crate) access: Access,
    pub(crate) path_params: Vec<(&'static str, &'static str, SchemaFn)>,
    pub(crate) query: Option<SchemaFn>,
    pub(crate) headers: Vec<HeaderParam>,
    pub(crate) body: Option<BodySpec>,
    pub(crate) replies: Vec<Reply>,
    pub(crate) errors: Vec<u16>,
}

impl Op {
    pub(crate) fn new(id: &'static str, tag: &'static str, summary: &'static str) -> Self {
        Self {
            id,
            tag,
            summary,
            description: "",
            access: Access::Public,
            path_params: Vec::new(),
            query: None,
            headers: Vec::new(),
            body: None,
            replies: Vec::new(),
            errors: Vec::new(),
        }
    }

    pub(crate) fn describe(mut self, text: &'static str) -> Self {
        self.description = text;
        self
    }

    pub(crate) fn access(mut self, access: Access) -> Self {
        self.access = access;
        self
    }

    pub(crate) fn path_param<T: JsonSchema>(
        mut self,
        name: &'static str,
        description: &'static str,
    ) -> Self {
        self.path_params
            .push((name, description, schema_ref::<T> as SchemaFn));
        self.errors.push(404);
        self
    }

    pub(crate) fn query<T: JsonSchema>(mut self) -> Self {
        self.query = Some(schema_inline::<T>);
        self.errors.push(400);
        self
    }

    pub(crate) fn header(mut self, header: HeaderParam) -> Self {
        self.headers.push(header);
        self.errors.push(400);
        if header.name == IF_MATCH.name {
            self.errors.push(412);
        }
        self
    }

    pub(crate) fn body<T: JsonSchema>(mut self, content_types: &'static [&'static str]) -> Self {
        self.body = Some(BodySpec {
            schema: schema_ref::<T>,
            content_types,
            required: true,
        });
        self.errors.extend([400, 413, 415, 422]);
        self
    }

    pub(crate) fn optional_body<T: JsonSchema>(mut self) -> Self {
        self = self.body::<T>(&["application/json"]);
        if let Some(b) = &mut self.body {
            b.required = false;
        }
        self
    }

    pub(crate) fn reply<T: JsonSchema>(
        mut self,
        status: u16,
        description: &'static str,
        headers: &'static [&'static str],
    ) -> Self {
        self.replies.push(Reply {
            status,
            description,
            schema: Some(schema_ref::<T>),
            content_type: "application/json",
            headers,
        });
        self
    }

    /// A response with a body that is not JSON (or not described by a schema).
    pub(crate) fn reply_raw(
        mut self,
        status: u16,
        description: &'static str,
        content_type: &'static str,
    ) -> Self {
        self.replies.push(Reply {
            status,
            description,
            schema: None,
            content_type,
            headers: &[],
        });
        self
    }

    pub(crate) fn empty_reply(
        mut self,
        status: u16,
        description: &'static str,
        headers: &'static [&'static str],
    ) -> Self {
        self.replies.push(Reply {
            status,
            description,
            schema: None,
            content_type: "",
            headers,
        });
        self
    }

    pub(crate) fn errors(mut self, statuses: &[u16]) -> Self {
        self.errors.extend_from_slice(statuses);
        self
    }

    fn error_statuses(&self, rate_limited: bool) -> Vec<u16> {
        let mut errors = self.errors.clone();
        if rate_limited {
            errors.push(429);
        }
        match self.access {
            Access::Public => {}
            Access::Optional | Access::Read(_) | Access::Write(_) => errors.extend([401, 403]),
        }
        errors.sort_unstable();
        errors.dedup();
        errors
    }
}

/// An error response of `components/responses`: (status, name, description).
const ERROR_RESPONSES: &[(u16, &str, &str)] = &[
    (
        400,
        "BadRequest",
        "Malformed request: JSON that does not parse (`malformed_json`), or a query \
         parameter, path or header that does not parse (`bad_request`, with `errors`).",
    ),
    (
        401,
        "Unauthorized",
        "No bearer token where one is needed, or a malformed, forged or expired one.",
    ),
    (
        402,
        "PaymentDeclined",
        "The payment was declined (`payment_declined`); the problem's `payment` member is \
         the recorded failed payment and the order stays `placed`.",
    ),
    (
        403,
        "Forbidden",
        "The token is valid but lacks the needed scope.",
    ),
    (404, "NotFound", "No such resource (or a malformed id)."),
    (
        409,
        "Conflict",
        "The request conflicts with the current state (e.g. ordering a pet that is not \
         available, or an order transition the state machine does not allow).",
    ),
    (
        410,
        "Gone",
        "The resume token is from another log epoch or older than the retained log \
         (`resume_expired`): reload, then poll from the new position.",
    ),
    (
        412,
        "PreconditionFailed",
        "`If-Match` does not match the current ETag.",
    ),
    (
        413,
        "PayloadTooLarge",
        "The request body is larger than the configured limit (64 KiB by default).",
    ),
    (
        415,
        "UnsupportedMediaType",
        "The request body is not `application/json` (or another `+json` type).",
    ),
    (
        422,
        "UnprocessableContent",
        "Validation failed; `errors` lists each invalid field.",
    ),
    (
        429,
        "TooManyRequests",
        "The caller's rate limit is spent (`rate_limited`): retry after `Retry-After` \
         seconds. Quotas count per token subject, or per client IP for anonymous callers; \
         while rate limiting is on every response carries `RateLimit-Policy` and `RateLimit`.",
    ),
];

const HEADERS: &[(&str, &str)] = &[
    (
        "ETag",
        "Strong entity tag of the resource version (`\"3\"`): use it in `If-Match` and \
         `If-None-Match`.",
    ),
    ("Location", "The URL of the created resource."),
    (
        "Idempotent-Replayed",
        "`true` when the response replays an earlier request with the same `Idempotency-Key`.",
    ),
    (
        "X-Event-Position",
        "The event-log position (resume token) this response reflects: poll \
         `/v1/events?since=` with it to catch up without a gap.",
    ),
    (
        "WWW-Authenticate",
        "`Bearer realm=\"petstore\"` (with `error=\"insufficient_scope\"` on 403).",
    ),
    ("Retry-After", "Seconds to wait before retrying."),
    (
        "RateLimit-Policy",
        "The caller's quota (draft-ietf-httpapi-ratelimit-headers): `\"anonymous\";q=300;w=60` \
         is 300 requests per 60 s window; the policy is `anonymous` (per client IP) or \
         `authenticated` (per token subject).",
    ),
    (
        "RateLimit",
        "What is left of the quota (draft-ietf-httpapi-ratelimit-headers): \
         `\"anonymous\";r=42;t=17` is 42 more requests now, and a full quota again in 17 s.",
    ),
];

/// Query parameters from the properties of a query struct's schema.
fn query_params(schema: &Value) -> Vec<Value> {
    let required: Vec<&str> = schema
        .get("required")
        .and_then(Value::as_array)
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let Some(props) = schema.get("properties").and_then(Value::as_object) else {
        return Vec::new();
    };
    props
        .iter()
        .map(|(name, prop)| {
            let mut prop = without_null(prop.clone());
            let description = prop
                .as_object_mut()
                .and_then(|o| o.remove("description"))
                .unwrap_or(Value::Null);
            let mut param = json!({
                "name": name,
                "in": "query",
                "required": required.contains(&name.as_str()),
                "schema": prop,
            });
            if let Value::String(d) = description {
                param["description"] = d.into();
            }
            param
        })
        .collect()
}

/// A query parameter is absent or has a value, never `null`: drop the `null` branch
/// schemars adds for `Option<T>`.
fn without_null(mut schema: Value) -> Value {
    let Some(obj) = schema.as_object_mut() else {
        return schema;
    };
    if obj.get("default") == Some(&Value::Null) {
        obj.remove("default");
    }
    if let Some(Value::Array(types)) = obj.get_mut("type") {
        types.retain(|t| t != "null");
        if types.len() == 1 {
            let only = types[0].clone();
            obj.insert("type".into(), only);
        }
    }
    for key in ["anyOf", "oneOf"] {
        if let Some(Value::Array(branches)) = obj.get(key) {
            let rest: Vec<Value> = branches
                .iter()
                .filter(|b| b.get("type").and_then(Value::as_str) != Some("null"))
                .cloned()
                .collect();
            if rest.len() == 1 {
                obj.remove(key);
                if let Value::Object(inner) = rest[0].clone() {
                    for (k, v) in inner {
                        obj.entry(k).or_insert(v);
                    }
                }
            }
        }
    }
    schema
}

fn security(access: Access) -> Value {
    match access {
        Access::Public => json!([]),
        Access::Optional => json!([{}, {"bearerAuth": []}]),
        Access::Read(scope) => json!([{}, {"bearerAuth": [scope.as_str()]}]),
        Access::Write(scope) => json!([{"bearerAuth": [scope.as_str()]}]),
    }
}

fn access_note(access: Access) -> String {
    match access {
        Access::Public => String::new(),
        Access::Optional => {
            "\n\nA bearer token is optional: without one (while reads are open) the \
                             feed holds what anonymous callers may read; chat events need a token."
                .to_owned()
        }
        Access::Read(scope) => format!(
            "\n\nOpen to anyone while reads are open (the default); otherwise needs scope `{scope}`."
        ),
        Access::Write(scope) => format!("\n\nNeeds a bearer token with scope `{scope}`."),
    }
}

fn operation(op: &Op, rate_limited: bool, g: &mut SchemaGenerator) -> Value {
    let mut params = Vec::new();
    for (name, description, schema) in &op.path_params {
        params.push(json!({
            "name": name, "in": "path", "required": true,
            "description": description, "schema": schema(g),
        }));
    }
    if let Some(query) = op.query {
        params.extend(query_params(&query(g).to_value()));
    }
    for h in &op.headers {
        let mut p = json!({
            "name": h.name, "in": "header", "required": false,
            "description": h.description, "schema": {"type": "string"},
        });
        if h.name == IDEMPOTENCY_KEY.name {
            p["schema"] = json!({"type": "string", "minLength": 1, "maxLength": 255});
        }
        params.push(p);
    }

    let mut responses = Map::new();
    for reply in &op.replies {
        let mut r = json!({"description": reply.description});
        if let Some(schema) = reply.schema {
            r["content"] = json!({reply.content_type: {"schema": schema(g)}});
        } else if !reply.content_type.is_empty() {
            r["content"] = json!({reply.content_type: {}});
        }
        if !reply.headers.is_empty() {
            let headers: Map<String, Value> = reply
                .headers
                .iter()
                .map(|h| {
                    (
                        (*h).to_owned(),
                        json!({"$ref": format!("#/components/headers/{h}")}),
                    )
                })
                .collect();
            r["headers"] = headers.into();
        }
        responses.insert(reply.status.to_string(), r);
    }
    for status in op.error_statuses(rate_limited) {
        let name = ERROR_RESPONSES
            .iter()
            .find(|(s, _, _)| *s == status)
            .map_or("Error", |(_, n, _)| *n);
        responses.insert(
            status.to_string(),
            json!({"$ref": format!("#/components/responses/{name}")}),
        );
    }
    responses.insert(
        "default".into(),
        json!({"$ref": "#/components/responses/Error"}),
    );

    let mut out = json!({
        "operationId": op.id,
        "tags": [op.tag],
        "summary": op.summary,
        "description": format!("{}{}", op.description, access_note(op.access)).trim(),
        "security": security(op.access),
        "responses": responses,
    });
    if !params.is_empty() {
        out["parameters"] = params.into();
    }
    if let Some(body) = &op.body {
        let schema = (body.schema)(g);
        let content: Map<String, Value> = body
            .content_types
            .iter()
            .map(|ct| ((*ct).to_owned(), json!({"schema": schema.clone()})))
            .collect();
        out["requestBody"] = json!({"required": body.required, "content": content});
    }
    out
}

/// The whole document for operations given as (method, path, op); with
/// `rate_limited`, every operation may answer 429.
pub(crate) fn document<'a>(
    ops: impl IntoIterator<Item = (&'a Method, &'a str, &'a Op)>,
    rate_limited: bool,
) -> Value {
    let mut g: SchemaGenerator = SchemaSettings::draft2020_12()
        .with(|s| {
            s.definitions_path = "/components/schemas".into();
            s.meta_schema = None;
        })
        .into_generator();
    let problem = g.subschema_for::<Problem>();

    let mut paths = Map::new();
    let mut tags: Vec<&str> = Vec::new();
    for (method, path, op) in ops {
        if !tags.contains(&op.tag) {
            tags.push(op.tag);
        }
        let item = paths.entry(path.to_owned()).or_insert_with(|| json!({}));
        item[method.as_str().to_ascii_lowercase()] = operation(op, rate_limited, &mut g);
    }

    let mut responses = Map::new();
    for (status, name, description) in ERROR_RESPONSES {
        let mut r = json!({
            "description": format!("{status}: {description}"),
            "content": {PROBLEM_JSON: {"schema": problem.clone()}},
        });
        if *status == 401 || *status == 403 {
            r["headers"] =
                json!({"WWW-Authenticate": {"$ref": "#/components/headers/WWW-Authenticate"}});
        }
        if *status == 429 {
            r["headers"] = json!({
                "Retry-After": {"$ref": "#/components/headers/Retry-After"},
                "RateLimit-Policy": {"$ref": "#/components/headers/RateLimit-Policy"},
                "RateLimit": {"$ref": "#/components/headers/RateLimit"},
            });
        }
        responses.insert((*name).to_owned(), r);
    }
    responses.insert(
        "Error".into(),
        json!({
            "description": "Any other error: 500, 503 (`timeout`, `unavailable`, with \
                            `Retry-After` when known), or 404/405 for a path or method this \
                            API does not serve.",
            "headers": {"Retry-After": {"$ref": "#/components/headers/Retry-After"}},
            "content": {PROBLEM_JSON: {"schema": problem}},
        }),
    );
    let headers: Map<String, Value> = HEADERS
        .iter()
        .map(|(name, description)| {
            (
                (*name).to_owned(),
                json!({"description": description, "schema": {"type": "string"}}),
            )
        })
        .collect();
    let tag_docs: &[(&str, &str)] = &[
        ("pets", "The catalogue."),
        ("store", "Inventory, orders and payments."),
        (
            "events",
            "Polling the event log: `since` / `next` resume tokens, optional long polling.",
        ),
        ("auth", "Tokens."),
        ("meta", "This document and the docs page."),
    ];
    let tags: Vec<Value> = tags
        .iter()
        .map(|t| {
            let description = tag_docs
                .iter()
                .find(|(n, _)| n == t)
                .map_or("", |(_, d)| *d);
            json!({"name": t, "description": description})
        })
        .collect();

    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "Pet Store REST API",
            "version": env!("CARGO_PKG_VERSION"),
            "summary": "Pets, orders, payments and a pollable event log.",
            "description": "JSON over HTTP. Errors are RFC 9457 `application/problem+json`. \
                            Single resources carry a strong `ETag` (their version) for \
                            `If-None-Match` (304) and `If-Match` (412). Lists page with an \
                            opaque `cursor`; the event feed with opaque `since`/`next` tokens.",
            "license": {"name": "MIT OR Apache-2.0", "identifier": "MIT OR Apache-2.0"},
        },
        "jsonSchemaDialect": "https://spec.openapis.org/oas/3.1/dialect/base",
        "tags": tags,
        "paths": paths,
        "components": {
            "schemas": g.take_definitions(true),
            "responses": responses,
            "headers": headers,
            "securitySchemes": {
                "bearerAuth": {
                    "type": "http",
                    "scheme": "bearer",
                    "bearerFormat": "JWT",
                    "description": "HS256 JWT with claims `sub`, `scope` (space separated: \
                                    pets:read pets:write orders:read orders:write chat:write \
                                    admin) and `exp`; get one from `POST /v1/auth/token`.",
                },
            },
        },
    })
}
