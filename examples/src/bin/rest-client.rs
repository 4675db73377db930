//! Run with: cargo run -p petstore-examples --bin rest-client [-- --url http://127.0.0.1:8080]
//! against a running server (`cargo run -p petstore-server` in another terminal).
//!
//! CRUD over REST: list, create, conditional get (ETag / 304), patch with If-Match,
//! order, pay, then clean up.

use anyhow::{Context as _, ensure};
use clap::Parser;
use petstore_examples::client::{ClientArgs, check};
use reqwest::StatusCode;
use reqwest::header::{ETAG, IF_MATCH, IF_NONE_MATCH, LOCATION};
use serde_json::json;

#[derive(Debug, Parser)]
#[command(about = "CRUD over the REST API")]
struct Cli {
    #[command(flatten)]
    client: ClientArgs,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let http = reqwest::Client::new();
    let base = cli.client.base();
    let token = cli.client.token(&http).await?;

    let page = check(
        http.get(format!("{base}/v1/pets?status=available&limit=5"))
            .send()
            .await?,
    )
    .await?;
    println!("available pets (first page):");
    for pet in page["data"].as_array().into_iter().flatten() {
        println!(
            "  {:<36} {:<10} {:<8} {} {}",
            pet["id"].as_str().unwrap_or(""),
            pet["name"].as_str().unwrap_or(""),
            pet["species"].as_str().unwrap_or(""),
            pet["price"]["amount"].as_str().unwrap_or(""),
            pet["price"]["currency"].as_str().unwrap_or("")
        );
    }

    let resp = http
        .post(format!("{base}/v1/pets"))
        .bearer_auth(&token)
        .json(
            &json!({"name": "Biscuit", "species": "dog", "breed": "Beagle", "age": 2,
                      "tags": ["friendly"], "price": {"amount": "275.00", "currency": "USD"}}),
        )
        .send()
        .await?;
    ensure!(
        resp.status() == StatusCode::CREATED,
        "create returned {}",
        resp.status()
    );
    let location = resp
        .headers()
        .get(LOCATION)
        .context("no Location")?
        .to_str()?
        .to_owned();
    let pet = check(resp).await?;
    let id = pet["id"].as_str().context("no id")?.to_owned();
    println!("created {id} at {location}");

    let resp = http.get(format!("{base}/v1/pets/{id}")).send().await?;
    let etag = resp
        .headers()
        .get(ETAG)
        .context("no ETag")?
        .to_str()?
        .to_owned();
    println!("GET  -> {} ETag {etag}", resp.status());
    let resp = http
        .get(format!("{base}/v1/pets/{id}"))
        .header(IF_NONE_MATCH, &etag)
        .send()
        .await?;
    println!("GET with If-None-Match -> {}", resp.status());
    ensure!(resp.status() == StatusCode::NOT_MODIFIED, "expected 304");

    let resp = http
        .patch(format!("{base}/v1/pets/{id}"))
        .bearer_auth(&token)
        .header(IF_MATCH, &etag)
        .header("content-type", "application/merge-patch+json")
        .body(json!({"tags": ["friendly", "house-trained"]}).to_string())
        .send()
        .await?;
    println!("PATCH with If-Match -> {}", resp.status());
    check(resp).await?;
    let stale = http
        .patch(format!("{base}/v1/pets/{id}"))
        .bearer_auth(&token)
        .header(IF_MATCH, &etag)
        .header("content-type", "application/merge-patch+json")
        .body(json!({"age": 3}).to_string())
        .send()
        .await?;
    println!(
        "PATCH with a stale If-Match -> {} (expected 412)",
        stale.status()
    );
    ensure!(
        stale.status() == StatusCode::PRECONDITION_FAILED,
        "expected 412"
    );

    let order = check(
        http.post(format!("{base}/v1/orders"))
            .bearer_auth(&token)
            .header("Idempotency-Key", format!("rest-client-{id}"))
            .json(&json!({"pet_id": id, "quantity": 1}))
            .send()
            .await?,
    )
    .await?;
    let order_id = order["id"].as_str().context("no order id")?.to_owned();
    println!(
        "placed order {order_id}: total {} {}",
        order["total"]["amount"], order["total"]["currency"]
    );
    let payment = check(
        http.post(format!("{base}/v1/orders/{order_id}/payment"))
            .bearer_auth(&token)
            .json(&json!({"token": "tok_visa"}))
            .send()
            .await?,
    )
    .await?;
    println!(
        "payment {}: {}",
        payment["id"].as_str().unwrap_or("?"),
        payment["status"].as_str().unwrap_or("?")
    );
    let order = check(
        http.get(format!("{base}/v1/orders/{order_id}"))
            .bearer_auth(&token)
            .send()
            .await?,
    )
    .await?;
    println!("order is now {}", order["status"].as_str().unwrap_or("?"));
    let cancelled = check(
        http.post(format!("{base}/v1/orders/{order_id}/cancel"))
            .bearer_auth(&token)
            .send()
            .await?,
    )
    .await?;
    println!(
        "cancelled: order {}",
        cancelled["status"].as_str().unwrap_or("?")
    );

    let resp = http
        .delete(format!("{base}/v1/pets/{id}"))
        .bearer_auth(&token)
        .send()
        .await?;
    println!("DELETE -> {}", resp.status());
    ensure!(resp.status() == StatusCode::NO_CONTENT, "expected 204");
    let inventory = check(http.get(format!("{base}/v1/inventory")).send().await?).await?;
    println!("inventory: {inventory}");
    Ok(())
}
