//! Restart to ready: the real `petstore-server` binary started on a database that
//! 100,000 writes went through, timed from the spawn until `GET /readyz` answers 200,
//! against the same on a database with nothing but the sample catalogue (A), in
//! alternating rounds of the same run. On SQLite always; on PostgreSQL when a cluster
//! is named (see [`crate::pg`]), else the row says that it was not run.
//!
//! Both databases are first opened in this process exactly as the server opens them
//! (`petstore_server::open_storage`: the migrations, the sample catalogue); the full
//! one then takes its writes through the service (`create_pet`, 8 writers), each a
//! transaction with its `pet.created` event. The log keeps the newest 10,000 events
//! (the default retention); the head offset and the 100,000 pets stay. A SQLite file is
//! filled on tmpfs (`/dev/shm`, when there is one: one fsync per commit on this disk
//! would make the fill last minutes) and copied beside the empty one once closed.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use anyhow::{Context as _, ensure};
use petstore_core::{Principal, Scope};
use petstore_server::ServerArgs;
use tokio::task::JoinSet;

use super::{Config, new_pet};
use crate::load::{Call, expect};
use crate::measure::{alternate, median};
use crate::report::{Row, Target, fig};
use crate::server_process::{ServerProcess, free_addr};

/// Concurrent writers of the fill.
const WRITERS: u64 = 8;

fn metric(events: u64) -> String {
    format!(
        "restart to ready (spawn to /readyz 200) after {events} writes (B) vs only the sample catalogue (A)"
    )
}

pub(crate) async fn run(cfg: &Config, rows: &mut Vec<Row>) -> anyhow::Result<()> {
    let events = if cfg.quick { 5_000 } else { 100_000 };
    let dir = std::env::temp_dir().join(format!("petstore-bench-restart-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let sqlite = sqlite(cfg, events, &dir, rows).await;
    let postgres = match crate::pg::cluster() {
        Some(cluster) => postgres(cfg, events, &cluster, &dir, rows).await,
        None => {
            eprintln!("  {}", crate::pg::NOT_SET);
            rows.push(Row::not_run(
                "restart-postgres",
                &metric(events),
                "x",
                Target::Info,
                crate::pg::NOT_SET,
            ));
            Ok(())
        }
    };
    std::fs::remove_dir_all(&dir).ok();
    sqlite.and(postgres)
}

async fn sqlite(cfg: &Config, events: u64, dir: &Path, rows: &mut Vec<Row>) -> anyhow::Result<()> {
    let url = |path: &Path| format!("sqlite://{}", path.display());
    let empty = dir.join("empty.db");
    let full = dir.join("full.db");
    fill(&url(&empty), 0).await?;
    let shm = Path::new("/dev/shm");
    let last = if shm.is_dir() {
        let scratch = shm.join(format!("petstore-bench-restart-{}", std::process::id()));
        std::fs::create_dir_all(&scratch)?;
        let filled = scratch.join("full.db");
        let last = fill(&url(&filled), events).await;
        let copied = match &last {
            Ok(_) => copy_sqlite(&filled, &full),
            Err(_) => Ok(()),
        };
        std::fs::remove_dir_all(&scratch).ok();
        let last = last?;
        copied?;
        last
    } else {
        fill(&url(&full), events).await?
    };
    measure(
        cfg,
        "restart-sqlite",
        events,
        &url(&empty),
        &url(&full),
        &last,
        dir,
        rows,
    )
    .await
}

async fn postgres(
    cfg: &Config,
    events: u64,
    cluster: &str,
    dir: &Path,
    rows: &mut Vec<Row>,
) -> anyhow::Result<()> {
    let empty = crate::pg::new_database(cluster).await?;
    let full = crate::pg::new_database(cluster).await?;
    let result = async {
        fill(&empty, 0).await?;
        let last = fill(&full, events).await?;
        measure(
            cfg,
            "restart-postgres",
            events,
            &empty,
            &full,
            &last,
            dir,
            rows,
        )
        .await
    }
    .await;
    crate::pg::drop_database(cluster, &empty).await;
    crate::pg::drop_database(cluster, &full).await;
    result
}

/// Copies a closed SQLite database (and its WAL, if one was left).
fn copy_sqlite(from: &Path, to: &Path) -> anyhow::Result<()> {
    for suffix in ["", "-wal", "-shm"] {
        let src = PathBuf::from(format!("{}{suffix}", from.display()));
        if src.exists() {
            std::fs::copy(&src, format!("{}{suffix}", to.display()))
                .with_context(|| format!("copying {}", src.display()))?;
        }
    }
    Ok(())
}

/// Opens the database at `url` as the server does (migrations, the sample catalogue),
/// writes `events` pets through the service and closes it; returns one written pet's id.
async fn fill(url: &str, events: u64) -> anyhow::Result<String> {
    let args = ServerArgs {
        database_url: Some(url.to_owned()),
        ..ServerArgs::ephemeral()
    };
    let storage = petstore_server::open_storage(&args)
        .await
        .context("opening the database as the server does")?;
    let service = storage.service.clone();
    let start = Instant::now();
    let next = Arc::new(AtomicU64::new(0));
    let mut writers = JoinSet::new();
    for _ in 0..WRITERS {
        let (service, next) = (service.clone(), next.clone());
        writers.spawn(async move {
            let who = Principal::new("petstore-bench", Scope::ALL);
            let mut last = None;
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= events {
                    return anyhow::Ok(last);
                }
                let pet = service
                    .create_pet(&who, new_pet(format!("fill-{i}")))
                    .await
                    .context("create_pet")?;
                if i + 1 == events {
                    last = Some(pet.id.to_string());
                }
                if (i + 1) % 20_000 == 0 {
                    eprintln!("    {} writes", i + 1);
                }
            }
        });
    }
    let mut last = None;
    while let Some(done) = writers.join_next().await {
        if let Some(id) = done.context("fill writer panicked")?? {
            last = Some(id);
        }
    }
    let head = service.head().await?;
    if events > 0 {
        eprintln!(
            "  filled: {events} writes in {:.0} s ({:.0}/s), log head {}",
            start.elapsed().as_secs_f64(),
            events as f64 / start.elapsed().as_secs_f64(),
            head.offset
        );
        ensure!(
            head.offset >= events,
            "the log head is {} after {events} writes",
            head.offset
        );
    }
    if let Some(sql) = &storage.sql {
        sql.close().await;
    }
    drop(storage);
    Ok(last.unwrap_or_default())
}

/// Alternating rounds of a restart on `empty` (A) and on `full` (B); after each
/// restart on `full`, `GET /v1/pets/{last}` must answer the pet written last.
#[allow(clippy::too_many_arguments)]
async fn measure(
    cfg: &Config,
    scenario: &str,
    events: u64,
    empty: &str,
    full: &str,
    last: &str,
    dir: &Path,
    rows: &mut Vec<Row>,
) -> anyhow::Result<()> {
    eprintln!("  {scenario}: restart to ready");
    let log = dir.join(format!("{scenario}.log"));
    let log = log.as_path();
    let check = Call::get(
        free_addr()?,
        format!("/v1/pets/{last}"),
        expect(200, &[&format!("\"id\":\"{last}\"")]),
    );
    let check = &check;
    let rounds = alternate(
        cfg.rounds,
        move |_| async move { restart(empty, log, None).await },
        move |_| async move { restart(full, log, Some(check)).await },
    )
    .await?;
    let ms: Vec<String> = rounds.b.iter().map(|v| format!("{v:.0}")).collect();
    rows.push(
        Row::new(
            scenario,
            &metric(events),
            fig(median(&rounds.a), "ms"),
            fig(median(&rounds.b), "ms"),
            rounds.ratio(),
            "x",
            Target::Info,
        )
        .rounds(&rounds.ratios())
        .note(format!("B (ms): {}", ms.join(" "))),
    );
    Ok(())
}

/// Starts the server on `url`, returns the milliseconds from the spawn until
/// `/readyz` answered 200, after checking the data with `check` (its address
/// replaced) and stopping the server.
async fn restart(url: &str, log: &Path, check: Option<&Call>) -> anyhow::Result<f64> {
    let http = free_addr()?;
    let start = Instant::now();
    let mut server = ServerProcess::spawn(url, http, log)?;
    server.ready().await?;
    let ms = start.elapsed().as_secs_f64() * 1000.0;
    let checked = match check {
        Some(call) => {
            let mut call = call.clone();
            call.addr = http;
            call.once().await.map(drop)
        }
        None => Ok(()),
    };
    server.stop().await?;
    checked.context("the restarted server's data")?;
    Ok(ms)
}
