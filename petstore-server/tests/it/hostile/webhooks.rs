//! The webhooks table: inbound payment notices (missing, forged, stale and replayed
//! signatures, malformed and oversize bodies, invalid and unknown orders) and endpoint
//! management (credentials, SSRF targets, invalid URLs and event types, sizes).

use petstore_core::{NewOrder, Principal};
use reqwest::Method;
use serde_json::{Value, json};

use super::{
    Matrix, PAYMENTS_SECRET, Setup, check_problem, expect_eq, nested, pet_named, req,
    rest_follow_up, send, setup, unix_now,
};

const WEBHOOK_ROWS: usize = 45;

fn signed(
    secret: &petstore_webhooks::WebhookSecret,
    id: &str,
    timestamp: i64,
    body: &[u8],
) -> Vec<(&'static str, String)> {
    vec![
        ("webhook-id", id.to_owned()),
        ("webhook-timestamp", timestamp.to_string()),
        ("webhook-signature", secret.sign(id, timestamp, body)),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_refuse_hostile_input_and_change_nothing() {
    let Setup {
        s,
        base,
        http,
        t,
        rex,
        ..
    } = setup().await;
    let bella = pet_named(&s.store, "Bella").await;
    let secret: petstore_webhooks::WebhookSecret = PAYMENTS_SECRET.parse().unwrap();
    let forger = petstore_webhooks::WebhookSecret::generate();
    let staff = Principal::system("hostile-matrix");
    // An approved order (its notice applied once) and a placed one.
    let approved = s
        .store
        .place_order(&staff, NewOrder::new(rex.id.clone()), None)
        .await
        .unwrap()
        .order;
    let placed = s
        .store
        .place_order(&staff, NewOrder::new(bella.id.clone()), None)
        .await
        .unwrap()
        .order;
    let now = i64::try_from(unix_now()).unwrap();
    let notice = |order: &str| {
        json!({"type": "payment.succeeded", "data": {"order_id": order}})
            .to_string()
            .into_bytes()
    };
    let first = notice(approved.id.as_str());
    let hook = "/v1/payments/webhook";
    let applied = req("apply once", Method::POST, hook).json(first.clone());
    let applied = signed(&secret, "msg_applied", now, &first)
        .into_iter()
        .fold(applied, |r, (k, v)| r.header(k, &v));
    let a = send(&http, &base, &applied).await.unwrap();
    assert_eq!(a.status, 200, "setup notice: {}", a.text());

    let inbound = |name: &'static str, body: Vec<u8>, headers: Vec<(&'static str, String)>| {
        headers
            .into_iter()
            .fold(req(name, Method::POST, hook).json(body), |r, (k, v)| {
                r.header(k, &v)
            })
    };
    let sign = |id: &str, body: &[u8]| signed(&secret, id, now, body);
    let target = notice(placed.id.as_str());
    let mut bad_utf8 = br#"{"type":"payment.succeeded","data":{"order_id":""#.to_vec();
    bad_utf8.extend_from_slice(b"\xff\xfe\"}}");
    let deep = format!(
        r#"{{"type":"payment.succeeded","data":{}}}"#,
        nested(100_000)
    )
    .into_bytes();
    let huge = format!(
        r#"{{"type":"payment.succeeded","data":{{"order_id":"{}","pad":"{}"}}}}"#,
        placed.id,
        "x".repeat(2 * 1024 * 1024)
    )
    .into_bytes();
    let data = |d: Value| {
        json!({"type": "payment.succeeded", "data": d})
            .to_string()
            .into_bytes()
    };
    let sig_only = |value: &str| {
        let mut h = sign("msg_x", &target);
        h[2].1 = value.to_owned();
        h
    };
    let with_ts = |ts: &str| {
        let mut h = sign("msg_ts", &target);
        h[1].1 = ts.to_owned();
        h
    };

    // An endpoint the management rows try to change (for `chat.message` only, which
    // no row produces: its cursor and health stay put).
    let create = req("setup endpoint", Method::POST, "/v1/webhooks")
        .bearer(&t.all)
        .json(json!({"url": "http://127.0.0.1:9/hook", "events": ["chat.message"]}).to_string());
    let created = send(&http, &base, &create).await.unwrap();
    assert_eq!(created.status, 201, "setup endpoint: {}", created.text());
    let endpoint = created.json().unwrap()["id"]
        .as_str()
        .expect("an endpoint id")
        .to_owned();
    let one = format!("/v1/webhooks/{endpoint}");

    let webhook_id_300 = "m".repeat(300);
    let rows = vec![
        inbound("no webhook headers", target.clone(), vec![]).expect(401, "unauthenticated"),
        inbound("no webhook-signature", target.clone(), sign("msg_1", &target)[..2].to_vec()).expect(401, "unauthenticated"),
        inbound("no webhook-id", target.clone(), sign("msg_1", &target)[1..].to_vec()).expect(401, "unauthenticated"),
        inbound("signed with another secret", target.clone(), signed(&forger, "msg_2", now, &target)).expect(401, "unauthenticated"),
        inbound("signature of another body", target.clone(), sign("msg_3", &first)).expect(401, "unauthenticated"),
        inbound("signature of another webhook-id", target.clone(), { let mut h = sign("msg_4", &target); h[0].1 = "msg_5".into(); h }).expect(401, "unauthenticated"),
        inbound("stale timestamp (1 hour old)", target.clone(), signed(&secret, "msg_6", now - 3600, &target)).expect(401, "unauthenticated"),
        inbound("future timestamp (1 hour ahead)", target.clone(), signed(&secret, "msg_7", now + 3600, &target)).expect(401, "unauthenticated"),
        inbound("timestamp is not a number", target.clone(), with_ts("yesterday")).expect(401, "unauthenticated"),
        inbound("timestamp beyond i64", target.clone(), with_ts("99999999999999999999")).expect(401, "unauthenticated"),
        inbound("signature not base64", target.clone(), sig_only("v1,!!!not-base64!!!")).expect(401, "unauthenticated"),
        inbound("only an unsupported v1a signature", target.clone(), sig_only("v1a,AAAA")).expect(401, "unauthenticated"),
        inbound("empty signature", target.clone(), sig_only("")).expect(401, "unauthenticated"),
        inbound("replayed webhook-id", first.clone(), sign("msg_applied", &first)).expect(200, "").member("duplicate", json!(true)),
        inbound("replayed webhook-id with another order", target.clone(), sign("msg_applied", &target)).expect(200, "").member("duplicate", json!(true)),
        inbound("new webhook-id for an approved order", first.clone(), sign("msg_again", &first)).expect(409, "conflict"),
        inbound("signed malformed JSON", b"{\"type\":".to_vec(), sign("msg_8", b"{\"type\":")).expect(400, "malformed_json"),
        inbound("signed invalid UTF-8", bad_utf8.clone(), sign("msg_9", &bad_utf8)).expect(400, "malformed_json"),
        inbound("signed 100000 nested arrays", deep.clone(), sign("msg_10", &deep)).expect(400, "malformed_json"),
        inbound("signed, no order_id", data(json!({})), sign("msg_11", &data(json!({})))).expect(422, "invalid_input").field("data.order_id"),
        inbound("signed, order_id is a number", data(json!({"order_id": 7})), sign("msg_12", &data(json!({"order_id": 7})))).expect(422, "invalid_input").field("data"),
        inbound("signed, SQL injection order_id", data(json!({"order_id": "ord_1' OR '1'='1"})), sign("msg_13", &data(json!({"order_id": "ord_1' OR '1'='1"})))).expect(422, "invalid_input").field("data.order_id"),
        inbound("signed, unknown order", data(json!({"order_id": "ord_doesnotexist"})), sign("msg_14", &data(json!({"order_id": "ord_doesnotexist"})))).expect(404, "not_found"),
        inbound("signed, 300-character reference", data(json!({"order_id": placed.id, "reference": "r".repeat(300)})), sign("msg_15", &data(json!({"order_id": placed.id, "reference": "r".repeat(300)})))).expect(422, "invalid_input").field("data.reference"),
        inbound("signed, 300-character webhook-id", target.clone(), sign(&webhook_id_300, &target)).expect(422, "invalid_input"),
        inbound("signed, unknown event type", json!({"type": "payment.refunded", "data": {"order_id": placed.id}}).to_string().into_bytes(), sign("msg_16", json!({"type": "payment.refunded", "data": {"order_id": placed.id}}).to_string().as_bytes())).expect(200, "").member("ignored", json!(true)),
        inbound("signed 2 MiB body", huge.clone(), sign("msg_17", &huge)).expect(413, "payload_too_large"),
        // Endpoint management.
        req("create without a token", Method::POST, "/v1/webhooks").json(json!({"url": "http://127.0.0.1:9/hook"}).to_string()).expect(401, "unauthenticated"),
        req("create with an expired token", Method::POST, "/v1/webhooks").bearer(&t.expired).json(json!({"url": "http://127.0.0.1:9/hook"}).to_string()).expect(401, "unauthenticated"),
        req("create with a forged token", Method::POST, "/v1/webhooks").bearer(&t.forged).json(json!({"url": "http://127.0.0.1:9/hook"}).to_string()).expect(401, "unauthenticated"),
        req("create with an alg none token", Method::POST, "/v1/webhooks").bearer(&t.none).json(json!({"url": "http://127.0.0.1:9/hook"}).to_string()).expect(401, "unauthenticated"),
        req("create without admin", Method::POST, "/v1/webhooks").bearer(&t.reader).json(json!({"url": "http://127.0.0.1:9/hook"}).to_string()).expect(403, "forbidden"),
        req("create with malformed JSON", Method::POST, "/v1/webhooks").bearer(&t.all).json("{\"url\":").expect(400, "malformed_json"),
        req("create with text/plain", Method::POST, "/v1/webhooks").bearer(&t.all).body(Some("text/plain"), json!({"url": "http://127.0.0.1:9/hook"}).to_string()).expect(415, "unsupported_media_type"),
        req("file: URL", Method::POST, "/v1/webhooks").bearer(&t.all).json(json!({"url": "file:///etc/passwd"}).to_string()).expect(422, "invalid_input").field("url"),
        req("cloud metadata URL (SSRF)", Method::POST, "/v1/webhooks").bearer(&t.all).json(json!({"url": "http://169.254.169.254/latest/meta-data"}).to_string()).expect(422, "invalid_input").field("url"),
        req("private network URL (SSRF)", Method::POST, "/v1/webhooks").bearer(&t.all).json(json!({"url": "http://10.0.0.1/hook"}).to_string()).expect(422, "invalid_input").field("url"),
        req("unknown event type", Method::POST, "/v1/webhooks").bearer(&t.all).json(json!({"url": "http://127.0.0.1:9/hook", "events": ["order.shipped"]}).to_string()).expect(422, "invalid_input"),
        req("5000-character URL", Method::POST, "/v1/webhooks").bearer(&t.all).json(json!({"url": format!("http://127.0.0.1:9/{}", "a".repeat(5000))}).to_string()).expect(422, "invalid_input").field("url"),
        req("change an endpoint without admin", Method::PATCH, one.clone()).bearer(&t.reader).json(json!({"url": "http://127.0.0.1:10/hook"}).to_string()).expect(403, "forbidden"),
        req("change an endpoint to a private URL (SSRF)", Method::PATCH, one.clone()).bearer(&t.all).json(json!({"url": "http://10.0.0.1/hook"}).to_string()).expect(422, "invalid_input").field("url"),
        req("change an endpoint to an unknown event type", Method::PATCH, one.clone()).bearer(&t.all).json(json!({"events": ["order.shipped"]}).to_string()).expect(422, "invalid_input"),
        req("rotate a secret without admin", Method::POST, format!("{one}/rotate-secret")).bearer(&t.reader).expect(403, "forbidden"),
        req("delete an endpoint without admin", Method::DELETE, one.clone()).bearer(&t.reader).expect(403, "forbidden"),
        req("2 MiB create body", Method::POST, "/v1/webhooks").bearer(&t.all).json(json!({"url": "http://127.0.0.1:9/hook", "description": "x".repeat(2 * 1024 * 1024)}).to_string()).expect(413, "payload_too_large"),
    ];

    // Every endpoint as the API shows it, and the secret of ours: compared whole, so
    // that a row changing an endpoint (not only adding or removing one) is caught.
    let endpoints = || async {
        let r = req("list", Method::GET, "/v1/webhooks").bearer(&t.all);
        let a = send(&http, &base, &r).await?;
        expect_eq("list status", a.status, 200)?;
        let list = a.json()?["data"].clone();
        let r = req("secret", Method::GET, format!("{one}/secret")).bearer(&t.all);
        let a = send(&http, &base, &r).await?;
        expect_eq("secret status", a.status, 200)?;
        Ok::<Value, String>(json!({"endpoints": list, "secret": a.json()?}))
    };
    let mut endpoints_before = endpoints().await.unwrap();
    assert_eq!(
        endpoints_before["endpoints"].as_array().map(Vec::len),
        Some(1),
        "{endpoints_before}"
    );
    let mut matrix = Matrix::new("webhooks", &s.store).await;
    for r in &rows {
        let answer = match send(&http, &base, r).await {
            Ok(a) => check_problem(r, &a),
            Err(e) => Err(e),
        };
        let follow = match endpoints().await {
            Ok(now) => {
                let same = expect_eq("webhook endpoints", &now, &endpoints_before);
                endpoints_before = now;
                same
            }
            Err(e) => Err(e),
        }
        .and(rest_follow_up(&http, &base, &rex).await);
        matrix.row(&s.store, r.name, answer, follow).await;
    }
    matrix.finish(WEBHOOK_ROWS);
    s.shutdown().await.unwrap();
}
