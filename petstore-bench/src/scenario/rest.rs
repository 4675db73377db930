//! REST `GET /v1/pets/{id}` and `POST /v1/pets` through the full stack vs bare axum
//! handlers, and GraphQL `pet(id)` vs the REST GET of the same pet.

use std::sync::Arc;

use anyhow::bail;
use http::StatusCode;
use tokio::sync::broadcast;

use super::{Config, new_pet, new_pet_json};
use crate::load::{Call, Check, closed_loop, contains, expect, open_loop};
use crate::measure::alternate;
use crate::report::{Row, Target, fig};
use crate::stack::{Stack, StackOptions, Storage};

/// Closed-loop connections of the HTTP throughput rows.
const CONNS: usize = 32;
/// Connections of the open loop (enough that none waits at half the bare maximum).
const OPEN_CONNS: usize = 64;

struct Setup {
    stack: Stack,
    bare: std::net::SocketAddr,
    id: String,
}

async fn setup() -> anyhow::Result<Setup> {
    let stack = Stack::start(StackOptions::default()).await?;
    let pet = stack
        .store
        .create_pet(&stack.admin(), new_pet("Rex".into()))
        .await?;
    let (fanout, _) = broadcast::channel(16);
    let bare = crate::bare::http(pet.clone(), fanout).await?;
    Ok(Setup {
        stack,
        bare,
        id: pet.id.to_string(),
    })
}

pub(crate) async fn run_get(cfg: &Config, rows: &mut Vec<Row>) -> anyhow::Result<()> {
    let s = setup().await?;
    let result = get(cfg, &s, rows).await;
    s.stack.stop().await;
    result
}

pub(crate) async fn run_post(cfg: &Config, rows: &mut Vec<Row>) -> anyhow::Result<()> {
    let s = setup().await?;
    let result = post(cfg, &s, rows).await;
    s.stack.stop().await;
    result
}

pub(crate) async fn run_graphql(cfg: &Config, rows: &mut Vec<Row>) -> anyhow::Result<()> {
    let s = setup().await?;
    let result = graphql(cfg, &s, rows).await;
    s.stack.stop().await;
    result
}

/// Warm-up, then throughput rounds A/B with `CONNS` workers each.
async fn throughput(cfg: &Config, a: &Call, b: &Call) -> anyhow::Result<crate::measure::Rounds> {
    a.once().await?;
    b.once().await?;
    for call in [a, b] {
        closed_loop(call.workers(CONNS).await?, cfg.warmup).await?;
    }
    alternate(
        cfg.rounds,
        move |_| async move { closed_loop(a.workers(CONNS).await?, cfg.round).await },
        move |_| async move { closed_loop(b.workers(CONNS).await?, cfg.round).await },
    )
    .await
}

fn pet_path(id: &str) -> String {
    format!("/v1/pets/{id}")
}

async fn get(cfg: &Config, s: &Setup, rows: &mut Vec<Row>) -> anyhow::Result<()> {
    const SCENARIO: &str = "rest-get";
    eprintln!("  REST GET /v1/pets/{{id}}: throughput");
    let check = expect(200, &[&format!("\"id\":\"{}\"", s.id), "\"name\":\"Rex\""]);
    let a = Call::get(s.bare, pet_path(&s.id), check.clone());
    let b = Call::get(s.stack.http, pet_path(&s.id), check);
    let tp = throughput(cfg, &a, &b).await?;
    rows.push(
        Row::new(
            SCENARIO,
            "GET throughput (32 conns)",
            fig(tp.median_a(), "req/s"),
            fig(tp.median_b(), "req/s"),
            tp.ratio(),
            "x",
            Target::AtLeast(0.8),
        )
        .rounds(&tp.ratios()),
    );

    let rate = tp.median_a() / 2.0;
    eprintln!("  REST GET /v1/pets/{{id}}: p99 at {rate:.0} req/s (half the bare maximum)");
    let (a, b) = (&a, &b);
    let lat = alternate(
        cfg.rounds,
        move |_| async move {
            let h = open_loop(a.workers(OPEN_CONNS).await?, rate, cfg.round).await?;
            Ok(h.p99_ms())
        },
        move |_| async move {
            let h = open_loop(b.workers(OPEN_CONNS).await?, rate, cfg.round).await?;
            Ok(h.p99_ms())
        },
    )
    .await?;
    rows.push(
        Row::new(
            SCENARIO,
            &format!("GET p99 latency at {rate:.0} req/s"),
            fig(lat.median_a(), "ms"),
            fig(lat.median_b(), "ms"),
            lat.ratio(),
            "x",
            Target::AtMost(1.5),
        )
        .rounds(&lat.ratios()),
    );
    Ok(())
}

async fn post(cfg: &Config, s: &Setup, rows: &mut Vec<Row>) -> anyhow::Result<()> {
    eprintln!("  REST POST /v1/pets: throughput");
    let body = new_pet_json("Rex");
    let a = Call::post_json(
        s.bare,
        "/v1/pets",
        body.clone(),
        expect(201, &["\"name\":\"Rex\""]),
    );
    let b = Call::post_json(
        s.stack.http,
        "/v1/pets",
        body,
        expect(201, &["\"id\":\"pet_", "\"name\":\"Rex\""]),
    )
    .bearer(&s.stack.token);
    let tp = throughput(cfg, &a, &b).await?;
    rows.push(
        Row::new(
            "rest-post",
            "POST throughput (32 conns) vs bare JSON echo",
            fig(tp.median_a(), "req/s"),
            fig(tp.median_b(), "req/s"),
            tp.ratio(),
            "x",
            Target::AtLeast(0.75),
        )
        .rounds(&tp.ratios()),
    );
    Ok(())
}

/// What the storage rows of `POST /v1/pets` measure, and their target.
const POST_SQL_METRIC: &str =
    "POST throughput (32 conns) vs a bare sqlx transaction (same row + event)";
const POST_SQL_TARGET: Target = Target::AtLeast(0.7);

/// `POST /v1/pets` through the full stack on a new SQLite file (WAL, synchronous FULL)
/// against the bare sqlx handler on another new file beside it, in the same run.
pub(crate) async fn run_post_sqlite(cfg: &Config, rows: &mut Vec<Row>) -> anyhow::Result<()> {
    let dir = std::env::temp_dir().join(format!("petstore-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let result = async {
        let bare = crate::bare_sql::sqlite(&dir.join("bare.db")).await?;
        let storage = Storage {
            database_url: Some(format!("sqlite://{}/petstore.db", dir.display())),
        };
        let stack = Stack::start_on(StackOptions::default(), storage).await?;
        let result = post_sql(cfg, "rest-post-sqlite", bare, &stack, rows).await;
        stack.stop().await;
        result
    }
    .await;
    std::fs::remove_dir_all(&dir).ok();
    result
}

/// `POST /v1/pets` through the full stack on a new PostgreSQL database against the
/// bare sqlx handler on another; not run (and said so) without a cluster.
pub(crate) async fn run_post_postgres(cfg: &Config, rows: &mut Vec<Row>) -> anyhow::Result<()> {
    const SCENARIO: &str = "rest-post-postgres";
    let Some(cluster) = crate::pg::cluster() else {
        eprintln!("  {}", crate::pg::NOT_SET);
        rows.push(Row::not_run(
            SCENARIO,
            POST_SQL_METRIC,
            "x",
            POST_SQL_TARGET,
            crate::pg::NOT_SET,
        ));
        return Ok(());
    };
    let bare_url = crate::pg::new_database(&cluster).await?;
    let stack_url = crate::pg::new_database(&cluster).await?;
    let result = async {
        let bare = crate::bare_sql::postgres(&bare_url).await?;
        let storage = Storage {
            database_url: Some(stack_url.clone()),
        };
        let stack = Stack::start_on(StackOptions::default(), storage).await?;
        let result = post_sql(cfg, SCENARIO, bare, &stack, rows).await;
        stack.stop().await;
        result
    }
    .await;
    crate::pg::drop_database(&cluster, &bare_url).await;
    crate::pg::drop_database(&cluster, &stack_url).await;
    result
}

async fn post_sql(
    cfg: &Config,
    scenario: &str,
    bare: std::net::SocketAddr,
    stack: &Stack,
    rows: &mut Vec<Row>,
) -> anyhow::Result<()> {
    eprintln!("  REST POST /v1/pets ({scenario}): full stack vs a bare sqlx transaction");
    let body = new_pet_json("Rex");
    let check = || expect(201, &["\"id\":\"pet_", "\"name\":\"Rex\""]);
    let a = Call::post_json(bare, "/v1/pets", body.clone(), check());
    let b = Call::post_json(stack.http, "/v1/pets", body, check()).bearer(&stack.token);
    let tp = throughput(cfg, &a, &b).await?;
    rows.push(
        Row::new(
            scenario,
            POST_SQL_METRIC,
            fig(tp.median_a(), "req/s"),
            fig(tp.median_b(), "req/s"),
            tp.ratio(),
            "x",
            POST_SQL_TARGET,
        )
        .rounds(&tp.ratios()),
    );
    Ok(())
}

async fn graphql(cfg: &Config, s: &Setup, rows: &mut Vec<Row>) -> anyhow::Result<()> {
    eprintln!("  GraphQL pet(id) vs REST GET: throughput");
    let a = Call::get(
        s.stack.http,
        pet_path(&s.id),
        expect(200, &[&format!("\"id\":\"{}\"", s.id), "\"name\":\"Rex\""]),
    );
    // Every field of the REST resource, so that both answers carry the same pet.
    let query = format!(
        "{{ pet(id: \"{}\") {{ id name species breed age status tags photoUrls price {{ amount currency }} createdAt updatedAt version }} }}",
        s.id
    );
    let body = serde_json::json!({ "query": query }).to_string();
    let id = s.id.clone();
    let check: Check = Arc::new(move |status: StatusCode, body: &[u8]| {
        if status != StatusCode::OK
            || contains(body, b"\"errors\"")
            || !contains(body, id.as_bytes())
        {
            bail!(
                "GraphQL answer {status}: {}",
                String::from_utf8_lossy(&body[..body.len().min(300)])
            );
        }
        Ok(())
    });
    let b = Call::post_json(s.stack.http, "/graphql", body, check);
    let tp = throughput(cfg, &a, &b).await?;
    rows.push(
        Row::new(
            "graphql-get",
            "pet(id) throughput vs REST GET (both full stack)",
            fig(tp.median_a(), "req/s (REST)"),
            fig(tp.median_b(), "req/s (GraphQL)"),
            tp.ratio(),
            "x",
            Target::AtLeast(0.35),
        )
        .rounds(&tp.ratios()),
    );
    Ok(())
}
