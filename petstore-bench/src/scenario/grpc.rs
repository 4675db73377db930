//! gRPC `GetPet` through the full stack vs a bare tonic unary handler answering a
//! constant pet, over 32 connections and over 8 connections x 16 concurrent streams.

use std::net::SocketAddr;

use anyhow::{Context as _, ensure};
use petstore_grpc::pb;
use petstore_grpc::pb::pet_service_client::PetServiceClient;
use tonic::transport::{Channel, Endpoint};

use super::{Config, new_pet};
use crate::load::{Worker, closed_loop};
use crate::measure::alternate;
use crate::report::{Row, Target, fig};
use crate::stack::{Stack, StackOptions};

const SCENARIO: &str = "grpc-get";

pub(crate) async fn run(cfg: &Config, rows: &mut Vec<Row>) -> anyhow::Result<()> {
    let stack = Stack::start(StackOptions::default()).await?;
    let result = measure(cfg, &stack, rows).await;
    stack.stop().await;
    result
}

struct GetPet {
    client: PetServiceClient<Channel>,
    id: String,
}

impl Worker for GetPet {
    async fn call(&mut self) -> anyhow::Result<()> {
        let pet = self
            .client
            .get_pet(pb::GetPetRequest {
                id: self.id.clone(),
            })
            .await
            .context("GetPet")?
            .into_inner();
        ensure!(
            pet.id == self.id,
            "GetPet answered pet {} for {}",
            pet.id,
            self.id
        );
        Ok(())
    }
}

async fn channel(addr: SocketAddr) -> anyhow::Result<Channel> {
    Endpoint::from_shared(format!("http://{addr}"))?
        .tcp_nodelay(true)
        .connect()
        .await
        .with_context(|| format!("gRPC connect to {addr}"))
}

/// `conns` connections with `streams` concurrent callers each.
async fn workers(
    addr: SocketAddr,
    id: &str,
    conns: usize,
    streams: usize,
) -> anyhow::Result<Vec<GetPet>> {
    let mut out = Vec::new();
    for _ in 0..conns {
        let ch = channel(addr).await?;
        for _ in 0..streams {
            out.push(GetPet {
                client: PetServiceClient::new(ch.clone()),
                id: id.to_owned(),
            });
        }
    }
    Ok(out)
}

async fn measure(cfg: &Config, stack: &Stack, rows: &mut Vec<Row>) -> anyhow::Result<()> {
    let pet = stack
        .store
        .create_pet(&stack.admin(), new_pet("Rex".into()))
        .await?;
    let id = pet.id.to_string();
    let id = id.as_str();
    // The bare server answers exactly what the full stack answers for this pet.
    let constant = PetServiceClient::new(channel(stack.grpc).await?)
        .get_pet(pb::GetPetRequest { id: id.to_owned() })
        .await
        .context("GetPet on the full stack")?
        .into_inner();
    let bare = crate::bare::grpc(constant).await?;
    crate::bare::reachable(bare).await?;

    for (label, conns, streams) in [
        ("32 connections", 32, 1),
        ("8 connections x 16 streams", 8, 16),
    ] {
        eprintln!("  gRPC GetPet, {label}");
        for addr in [bare, stack.grpc] {
            closed_loop(workers(addr, id, conns, streams).await?, cfg.warmup).await?;
        }
        let r = alternate(
            cfg.rounds,
            move |_| async move {
                closed_loop(workers(bare, id, conns, streams).await?, cfg.round).await
            },
            move |_| async move {
                closed_loop(workers(stack.grpc, id, conns, streams).await?, cfg.round).await
            },
        )
        .await?;
        rows.push(
            Row::new(
                SCENARIO,
                &format!("GetPet calls/s, {label}"),
                fig(r.median_a(), "calls/s"),
                fig(r.median_b(), "calls/s"),
                r.ratio(),
                "x",
                Target::AtLeast(0.8),
            )
            .rounds(&r.ratios()),
        );
    }
    Ok(())
}
