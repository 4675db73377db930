//! Orders: the pet/order state machine, payments, idempotent placement.

use petstore_core::Scope;
use reqwest::header;
use serde_json::{Value, json};

use crate::support::{Server, etag};

fn customer(s: &Server) -> String {
    s.token(
        "carol",
        &[Scope::OrdersRead, Scope::OrdersWrite, Scope::PetsRead],
    )
}

async fn pet_status(s: &Server, id: &str) -> String {
    s.send(s.get(&format!("/v1/pets/{id}"))).await.expect(200)["status"]
        .as_str()
        .unwrap()
        .to_owned()
}

async fn order_status(s: &Server, id: &str) -> String {
    s.send(s.get(&format!("/v1/orders/{id}")).bearer_auth(s.admin()))
        .await
        .expect(200)["status"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn order_pay_deliver_and_the_pet_follows() {
    let s = Server::start().await;
    let carol = customer(&s);
    let admin = s.admin();
    let pet = s.create_pet("Rex", "dog", &[]).await;
    let pet_id = pet["id"].as_str().unwrap();

    // Place: 201 + Location + ETag; the pet becomes pending.
    let r = s
        .send(
            s.post("/v1/orders")
                .bearer_auth(&carol)
                .json(&json!({"pet_id": pet_id, "quantity": 2})),
        )
        .await;
    let order = r.expect(201);
    let order_id = order["id"].as_str().unwrap().to_owned();
    let location = format!("/v1/orders/{order_id}");
    assert_eq!(r.header("location"), Some(location.as_str()));
    assert_eq!(r.header("etag"), Some(etag(1).as_str()));
    assert!(r.header("idempotent-replayed").is_none());
    assert_eq!(order["status"], "placed");
    assert_eq!(order["customer"], "carol");
    assert_eq!(
        order["total"],
        json!({"amount": "50.00", "currency": "USD"})
    );
    assert_eq!(pet_status(&s, pet_id).await, "pending");

    // An order for a pending pet is 409 and places nothing.
    let r = s
        .send(
            s.post("/v1/orders")
                .bearer_auth(&carol)
                .json(&json!({"pet_id": pet_id})),
        )
        .await;
    assert_eq!(r.problem(409), "conflict");
    let list = s
        .send(
            s.get(&format!("/v1/orders?pet_id={pet_id}"))
                .bearer_auth(&admin),
        )
        .await
        .expect(200);
    assert_eq!(list["data"].as_array().unwrap().len(), 1);

    // The held pet can neither change status nor be removed.
    s.send(
        s.patch(&format!("/v1/pets/{pet_id}"))
            .bearer_auth(&admin)
            .json(&json!({"status": "available"})),
    )
    .await
    .problem(409);
    s.send(s.delete(&format!("/v1/pets/{pet_id}")).bearer_auth(&admin))
        .await
        .problem(409);

    // Conditional GET of the order.
    let r = s.send(s.get(&location).bearer_auth(&carol)).await;
    assert_eq!(r.expect(200), order);
    s.send(
        s.get(&location)
            .bearer_auth(&carol)
            .header(header::IF_NONE_MATCH, etag(1)),
    )
    .await
    .expect(304);

    // A declined payment is 402 carrying the failed payment; the order stays placed.
    let r = s
        .send(
            s.post(&format!("{location}/payment"))
                .bearer_auth(&carol)
                .json(&json!({"token": "tok_declined"})),
        )
        .await;
    assert_eq!(r.problem(402), "payment_declined");
    let failed = r.json()["payment"].clone();
    assert_eq!(failed["status"], "failed");
    assert_eq!(failed["order_id"], order_id.as_str());
    assert_eq!(order_status(&s, &order_id).await, "placed");
    // The failed attempt is recorded and readable.
    let r = s
        .send(
            s.get(&format!("/v1/payments/{}", failed["id"].as_str().unwrap()))
                .bearer_auth(&carol),
        )
        .await;
    assert_eq!(r.expect(200), failed);

    // A malformed payment token is 422; not a JSON body is 415.
    let r = s
        .send(
            s.post(&format!("{location}/payment"))
                .bearer_auth(&carol)
                .json(&json!({"token": "visa"})),
        )
        .await;
    assert_eq!(r.problem(422), "invalid_input");
    assert_eq!(r.json()["errors"][0]["field"], "token");
    s.send(
        s.post(&format!("{location}/payment"))
            .bearer_auth(&carol)
            .header(header::CONTENT_TYPE, "text/plain")
            .body("tok_visa"),
    )
    .await
    .problem(415);

    // An empty body pays with the default test card: 201 + Location; order approved.
    let r = s
        .send(s.post(&format!("{location}/payment")).bearer_auth(&carol))
        .await;
    let payment = r.expect(201);
    assert_eq!(payment["status"], "succeeded");
    assert_eq!(payment["amount"], order["total"]);
    let payment_url = format!("/v1/payments/{}", payment["id"].as_str().unwrap());
    assert_eq!(r.header("location"), Some(payment_url.as_str()));
    let r = s.send(s.get(&payment_url).bearer_auth(&carol)).await;
    assert_eq!(r.expect(200), payment);
    let tag = r.header("etag").unwrap().to_owned();
    s.send(
        s.get(&payment_url)
            .bearer_auth(&carol)
            .header(header::IF_NONE_MATCH, tag),
    )
    .await
    .expect(304);
    let approved = s
        .send(s.get(&location).bearer_auth(&carol))
        .await
        .expect(200);
    assert_eq!(approved["status"], "approved");
    assert_eq!(approved["payment_id"], payment["id"]);
    assert_eq!(pet_status(&s, pet_id).await, "pending");

    // Paying twice is 409.
    s.send(s.post(&format!("{location}/payment")).bearer_auth(&carol))
        .await
        .problem(409);

    // Delivery needs admin; then the pet is sold.
    assert_eq!(
        s.send(s.post(&format!("{location}/deliver")).bearer_auth(&carol))
            .await
            .problem(403),
        "forbidden"
    );
    s.send(s.post(&format!("{location}/deliver")))
        .await
        .problem(401);
    let r = s
        .send(s.post(&format!("{location}/deliver")).bearer_auth(&admin))
        .await;
    assert_eq!(r.expect(200)["status"], "delivered");
    assert_eq!(r.header("etag"), Some(etag(3).as_str()));
    assert_eq!(pet_status(&s, pet_id).await, "sold");

    // A delivered order can be neither cancelled nor delivered again.
    s.send(s.post(&format!("{location}/cancel")).bearer_auth(&carol))
        .await
        .problem(409);
    s.send(s.post(&format!("{location}/deliver")).bearer_auth(&admin))
        .await
        .problem(409);
    assert_eq!(order_status(&s, &order_id).await, "delivered");
}

#[tokio::test]
async fn cancel_frees_the_pet() {
    let s = Server::start().await;
    let carol = customer(&s);
    let pet = s.create_pet("Tom", "cat", &[]).await;
    let pet_id = pet["id"].as_str().unwrap();

    let order = s
        .send(
            s.post("/v1/orders")
                .bearer_auth(&carol)
                .json(&json!({"pet_id": pet_id})),
        )
        .await
        .expect(201);
    let id = order["id"].as_str().unwrap();
    // Delivering an unpaid order is 409.
    s.send(
        s.post(&format!("/v1/orders/{id}/deliver"))
            .bearer_auth(s.admin()),
    )
    .await
    .problem(409);

    let cancelled = s
        .send(
            s.post(&format!("/v1/orders/{id}/cancel"))
                .bearer_auth(&carol),
        )
        .await
        .expect(200);
    assert_eq!(cancelled["status"], "cancelled");
    assert_eq!(pet_status(&s, pet_id).await, "available");
    s.send(
        s.post(&format!("/v1/orders/{id}/cancel"))
            .bearer_auth(&carol),
    )
    .await
    .problem(409);
    s.send(
        s.post(&format!("/v1/orders/{id}/payment"))
            .bearer_auth(&carol),
    )
    .await
    .problem(409);

    // The freed pet can be ordered again.
    let again = s
        .send(
            s.post("/v1/orders")
                .bearer_auth(&carol)
                .json(&json!({"pet_id": pet_id})),
        )
        .await
        .expect(201);
    assert_ne!(again["id"], order["id"]);

    // Listing by status.
    let list = s
        .send(s.get("/v1/orders?status=cancelled").bearer_auth(s.admin()))
        .await
        .expect(200);
    let ids: Vec<&Value> = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| &o["id"])
        .collect();
    assert_eq!(ids, [&order["id"]]);
    assert_eq!(
        s.send(s.get("/v1/orders?status=lost").bearer_auth(s.admin()))
            .await
            .problem(400),
        "bad_request"
    );

    // Unknown and malformed ids.
    for path in [
        "/v1/orders/ord_0000",
        "/v1/orders/pet_1",
        "/v1/payments/pay_0000",
    ] {
        s.send(s.get(path).bearer_auth(s.admin()))
            .await
            .problem(404);
    }
    s.send(s.post("/v1/orders/ord_0000/cancel").bearer_auth(&carol))
        .await
        .problem(404);
    // Ordering an unknown pet is 404; a bad quantity 422.
    s.send(
        s.post("/v1/orders")
            .bearer_auth(&carol)
            .json(&json!({"pet_id": "pet_0000"})),
    )
    .await
    .problem(404);
    let r = s
        .send(
            s.post("/v1/orders")
                .bearer_auth(&carol)
                .json(&json!({"pet_id": pet_id, "quantity": 0})),
        )
        .await;
    r.problem(422);
    assert_eq!(r.json()["errors"][0]["field"], "quantity");
}

#[tokio::test]
async fn idempotency_key_replays_the_first_order() {
    let s = Server::start().await;
    let carol = customer(&s);
    let rex = s.create_pet("Rex", "dog", &[]).await;
    let tom = s.create_pet("Tom", "cat", &[]).await;
    let place = |pet: &Value, key: &str| {
        s.post("/v1/orders")
            .bearer_auth(&carol)
            .header("Idempotency-Key", key)
            .json(&json!({"pet_id": pet["id"]}))
    };

    let first = s.send(place(&rex, "key-1")).await;
    let order = first.expect(201);
    assert!(first.header("idempotent-replayed").is_none());
    let replay = s.send(place(&rex, "key-1")).await;
    assert_eq!(replay.expect(201), order);
    assert_eq!(replay.header("idempotent-replayed"), Some("true"));
    assert_eq!(replay.header("location"), first.header("location"));

    // The same key with another request is 422; without the key it is a new order
    // attempt (409 here: the pet is pending).
    let r = s.send(place(&tom, "key-1")).await;
    assert_eq!(r.json()["errors"][0]["field"], "idempotency_key");
    r.problem(422);
    s.send(
        s.post("/v1/orders")
            .bearer_auth(&carol)
            .json(&json!({"pet_id": rex["id"]})),
    )
    .await
    .problem(409);

    // Exactly one order exists.
    let list = s
        .send(s.get("/v1/orders").bearer_auth(s.admin()))
        .await
        .expect(200);
    assert_eq!(list["data"].as_array().unwrap().len(), 1);
    // Another caller's identical key is its own.
    let dave = s.token("dave", &[Scope::OrdersWrite]);
    s.send(
        s.post("/v1/orders")
            .bearer_auth(&dave)
            .header("Idempotency-Key", "key-1")
            .json(&json!({"pet_id": tom["id"]})),
    )
    .await
    .expect(201);
}
