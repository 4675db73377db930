//! The bare baselines: the least code that does the same job over the same
//! libraries, measured in the same run as the full stack.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::serve::ListenerExt as _;
use futures_util::{SinkExt as _, Stream, StreamExt as _, stream};
use petstore_core::Pet;
use petstore_grpc::pb;
use petstore_grpc::pb::pet_service_server::{PetService, PetServiceServer};
use tokio::net::TcpListener;
use tokio::sync::broadcast;
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};
use tonic::{Request, Status};

/// One message of the bare fan-out: what the full stack sends for one event.
#[derive(Debug)]
pub(crate) struct Frame {
    /// SSE `id:`.
    pub(crate) id: String,
    /// SSE `data:` (the envelope JSON).
    pub(crate) data: String,
    /// WebSocket text frame (`{"type":"event","channel","event"}`).
    pub(crate) ws: Utf8Bytes,
}

/// Heartbeat of the bare SSE stream (the full stack's default).
const HEARTBEAT: Duration = Duration::from_secs(15);

#[derive(Clone)]
struct BareState {
    pet: Arc<Pet>,
    fanout: broadcast::Sender<Arc<Frame>>,
}

/// A bare axum app: `GET /v1/pets/{id}` answers one constant pet as JSON, `POST
/// /v1/pets` echoes its JSON body, `GET /v1/stream/pets` relays a broadcast channel
/// as SSE.
pub(crate) async fn http(
    pet: Pet,
    fanout: broadcast::Sender<Arc<Frame>>,
) -> anyhow::Result<SocketAddr> {
    let app = Router::new()
        .route("/v1/pets/{id}", get(get_pet))
        .route("/v1/pets", axum::routing::post(echo))
        .route("/v1/stream/pets", get(sse))
        .with_state(BareState {
            pet: Arc::new(pet),
            fanout,
        });
    serve_axum(app, true).await
}

async fn get_pet(State(s): State<BareState>, Path(id): Path<String>) -> Response {
    if id != s.pet.id.to_string() {
        return StatusCode::NOT_FOUND.into_response();
    }
    axum::Json(&*s.pet).into_response()
}

async fn echo(axum::Json(body): axum::Json<serde_json::Value>) -> Response {
    (StatusCode::CREATED, axum::Json(body)).into_response()
}

async fn sse(State(s): State<BareState>) -> Sse<impl Stream<Item = Result<SseEvent, Infallible>>> {
    let rx = s.fanout.subscribe();
    let events = stream::unfold(rx, |mut rx| async move {
        loop {
            match rx.recv().await {
                Ok(f) => {
                    let event = SseEvent::default()
                        .id(f.id.as_str())
                        .event("pet.created")
                        .data(f.data.as_str());
                    return Some((Ok(event), rx));
                }
                Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    });
    Sse::new(events).keep_alive(KeepAlive::new().interval(HEARTBEAT))
}

/// Serves `app` on a free loopback port, with `TCP_NODELAY` on every connection
/// (a bare server tuned for latency, as a baseline should be) or without (as plain
/// `axum::serve` does).
pub(crate) async fn serve_axum(app: Router, nodelay: bool) -> anyhow::Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        let served = if nodelay {
            let listener = listener.tap_io(|tcp| {
                let _ = tcp.set_nodelay(true);
            });
            axum::serve(listener, app).await
        } else {
            axum::serve(listener, app).await
        };
        if let Err(e) = served {
            eprintln!("HTTP server on {addr} stopped: {e}");
        }
    });
    Ok(addr)
}

/// A bare tokio-tungstenite server: each connection sends one subscribe frame, gets
/// `subscribed`, then every broadcast frame.
pub(crate) async fn ws(fanout: broadcast::Sender<Arc<Frame>>) -> anyhow::Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let rx = fanout.subscribe();
            tokio::spawn(async move {
                let _ = ws_connection(stream, rx).await;
            });
        }
    });
    Ok(addr)
}

async fn ws_connection(
    stream: tokio::net::TcpStream,
    mut rx: broadcast::Receiver<Arc<Frame>>,
) -> anyhow::Result<()> {
    stream.set_nodelay(true)?;
    let ws = tokio_tungstenite::accept_async(stream).await?;
    let (mut tx, mut incoming) = ws.split();
    // The subscribe frame.
    match incoming.next().await {
        Some(Ok(Message::Text(_))) => {}
        _ => return Ok(()),
    }
    tx.send(Message::text(r#"{"type":"subscribed","channel":"pets"}"#))
        .await?;
    loop {
        tokio::select! {
            frame = rx.recv() => match frame {
                Ok(f) => {
                    // Queue every frame already waiting, then write them with one flush.
                    tx.feed(Message::Text(f.ws.clone())).await?;
                    while let Ok(f) = rx.try_recv() {
                        tx.feed(Message::Text(f.ws.clone())).await?;
                    }
                    tx.flush().await?;
                }
                Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => return Ok(()),
            },
            msg = incoming.next() => match msg {
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return Ok(()),
                Some(Ok(_)) => {}
            },
        }
    }
}

/// A bare tonic `PetService` whose `GetPet` answers one constant pet.
pub(crate) async fn grpc(pet: pb::Pet) -> anyhow::Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
    let service = PetServiceServer::new(ConstantPet { pet });
    tokio::spawn(async move {
        if let Err(e) = tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming(incoming)
            .await
        {
            eprintln!("bare tonic server stopped: {e}");
        }
    });
    Ok(addr)
}

struct ConstantPet {
    pet: pb::Pet,
}

type Unimplemented<T> = stream::Empty<Result<T, Status>>;

#[tonic::async_trait]
impl PetService for ConstantPet {
    async fn get_pet(
        &self,
        request: Request<pb::GetPetRequest>,
    ) -> Result<tonic::Response<pb::Pet>, Status> {
        if request.get_ref().id != self.pet.id {
            return Err(Status::not_found("no such pet"));
        }
        Ok(tonic::Response::new(self.pet.clone()))
    }

    type ListPetsStream = Unimplemented<pb::Pet>;

    async fn list_pets(
        &self,
        _: Request<pb::ListPetsRequest>,
    ) -> Result<tonic::Response<Self::ListPetsStream>, Status> {
        Err(Status::unimplemented("bare"))
    }

    async fn create_pet(
        &self,
        _: Request<pb::CreatePetRequest>,
    ) -> Result<tonic::Response<pb::Pet>, Status> {
        Err(Status::unimplemented("bare"))
    }

    async fn update_pet(
        &self,
        _: Request<pb::UpdatePetRequest>,
    ) -> Result<tonic::Response<pb::Pet>, Status> {
        Err(Status::unimplemented("bare"))
    }

    async fn delete_pet(
        &self,
        _: Request<pb::DeletePetRequest>,
    ) -> Result<tonic::Response<()>, Status> {
        Err(Status::unimplemented("bare"))
    }

    type WatchPetsStream = Unimplemented<pb::Event>;

    async fn watch_pets(
        &self,
        _: Request<pb::WatchPetsRequest>,
    ) -> Result<tonic::Response<Self::WatchPetsStream>, Status> {
        Err(Status::unimplemented("bare"))
    }
}

/// Checks that something answers on `addr` (a bare server bound above).
pub(crate) async fn reachable(addr: SocketAddr) -> anyhow::Result<()> {
    tokio::net::TcpStream::connect(addr)
        .await
        .map(drop)
        .with_context(|| format!("nothing listens on {addr}"))
}
