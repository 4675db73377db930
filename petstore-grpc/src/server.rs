//! Assembling the services and serving them.

use std::sync::Arc;

use futures_util::future::{self, Either};
use petstore_core::{PetStore, RateLimiter};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::server::NamedService;
use tonic::service::Routes;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Server;
use tonic::transport::server::TcpIncoming;
use tonic_health::ServingStatus;
use tonic_health::pb::health_server::HealthServer;
use tonic_health::server::HealthReporter;

use crate::auth::Authenticate;
use crate::chat::ChatApi;
use crate::config::GrpcConfig;
use crate::health::DrainingHealth;
use crate::orders::StoreApi;
use crate::pb;
use crate::pb::chat_service_server::ChatServiceServer;
use crate::pb::pet_service_server::PetServiceServer;
use crate::pb::store_service_server::StoreServiceServer;
use crate::pets::PetApi;
use crate::streams::{OpenStreams, Streams};

/// The names health reports on: every petstore service and `""` (the whole server).
const SERVICES: [&str; 4] = [
    "",
    <PetServiceServer<PetApi> as NamedService>::NAME,
    <StoreServiceServer<StoreApi> as NamedService>::NAME,
    <ChatServiceServer<ChatApi> as NamedService>::NAME,
];

/// The Pet Store gRPC server: `petstore.v1.PetService`, `StoreService` and
/// `ChatService`, server reflection (v1 and v1alpha) and the standard health service.
///
/// Serve it on a listener with [`GrpcServer::serve`], or take its
/// [`GrpcServer::routes`] to mount them next to other services (for example on the
/// port of an axum app). Either way, cancelling the shutdown token given to
/// [`GrpcServer::new`] starts the drain ([`GrpcServer::begin_shutdown`]).
#[derive(Debug)]
pub struct GrpcServer {
    service: PetStore,
    config: GrpcConfig,
    health: HealthReporter,
    streams: Streams,
    /// Shared by every service and every call of [`GrpcServer::routes`].
    limiter: Option<Arc<RateLimiter>>,
    shutdown: CancellationToken,
}

impl GrpcServer {
    /// A server over `store`, shutting down when `shutdown` is cancelled (the
    /// workspace's one shutdown convention).
    pub fn new(store: PetStore, config: GrpcConfig, shutdown: CancellationToken) -> Self {
        Self {
            service: store,
            config,
            health: HealthReporter::new(),
            streams: Streams::new(),
            limiter: None,
            shutdown,
        }
    }

    /// Counts every call of the petstore services against `limiter` (health and
    /// reflection are never limited): one call, one request, per token subject, or per
    /// client IP for anonymous callers. Hand it the limiter of the HTTP edge for one
    /// budget per caller across every protocol. Over the quota: `RESOURCE_EXHAUSTED`
    /// with a `google.rpc.RetryInfo` and `retry-after` metadata.
    pub fn rate_limiter(mut self, limiter: Arc<RateLimiter>) -> Self {
        self.limiter = Some(limiter).filter(|l| l.is_enabled());
        self
    }

    /// The settings.
    pub fn config(&self) -> &GrpcConfig {
        &self.config
    }

    /// The count of streaming calls open right now (for metrics and tests).
    pub fn open_streams(&self) -> OpenStreams {
        self.streams.open()
    }

    /// The health reporter, to report the health of more services on the same health
    /// service.
    pub fn health_reporter(&self) -> HealthReporter {
        self.health.clone()
    }

    /// Every service of this server as tonic [`Routes`], with authentication and
    /// message-size limits applied and health set to SERVING. Turn them into an
    /// `axum::Router` with [`Routes::into_axum_router`] to share a port with HTTP
    /// routes (the connection-level settings of [`GrpcConfig`] then come from that
    /// server, which must speak HTTP/2). Call [`GrpcServer::begin_shutdown`] before
    /// draining that server.
    ///
    /// With a [`GrpcServer::rate_limiter`], serve that app with
    /// `into_make_service_with_connect_info::<SocketAddr>()` so that anonymous callers
    /// are counted per client IP (without it they share one bucket).
    ///
    /// When the shutdown token is cancelled, the drain begins
    /// ([`GrpcServer::begin_shutdown`]).
    pub async fn routes(&self) -> Routes {
        for name in SERVICES {
            self.health
                .set_service_status(name, ServingStatus::Serving)
                .await;
        }
        let (shutdown, health, streams) = (
            self.shutdown.clone(),
            self.health.clone(),
            self.streams.clone(),
        );
        tokio::spawn(async move {
            shutdown.cancelled().await;
            drain(&health, &streams).await;
        });
        let auth = Authenticate::new(self.service.clone(), self.limiter.clone());
        let limit = self.config.max_message_size;

        let pets = PetServiceServer::new(PetApi::new(self.service.clone(), self.streams.clone()))
            .max_decoding_message_size(limit)
            .max_encoding_message_size(limit);
        let orders =
            StoreServiceServer::new(StoreApi::new(self.service.clone(), self.streams.clone()))
                .max_decoding_message_size(limit)
                .max_encoding_message_size(limit);
        let chat = ChatServiceServer::new(ChatApi::new(self.service.clone(), self.streams.clone()))
            .max_decoding_message_size(limit)
            .max_encoding_message_size(limit);
        let health = HealthServer::new(DrainingHealth::new(
            self.health.clone(),
            self.streams.clone(),
        ));

        let mut routes = Routes::builder();
        routes
            .add_service(InterceptedService::new(pets, auth.clone()))
            .add_service(InterceptedService::new(orders, auth.clone()))
            .add_service(InterceptedService::new(chat, auth))
            .add_service(health);
        if self.config.reflection {
            let reflection = || {
                tonic_reflection::server::Builder::configure()
                    .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
                    .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            };
            match (reflection().build_v1(), reflection().build_v1alpha()) {
                (Ok(v1), Ok(v1alpha)) => {
                    routes.add_service(v1).add_service(v1alpha);
                }
                (Err(e), _) | (_, Err(e)) => {
                    tracing::error!(error = %e, "gRPC reflection is unavailable");
                }
            }
        }
        // Every call, health and reflection included, gets its span, request context
        // and metrics.
        Routes::from(
            routes
                .routes()
                .into_axum_router()
                .layer(axum::middleware::from_fn(crate::call::observe)),
        )
    }

    /// Starts a graceful shutdown: health reports NOT_SERVING for every service (open
    /// health watches receive it, then end), and every open stream of this crate ends
    /// with `UNAVAILABLE` so that clients reconnect elsewhere and resume from their
    /// last offset. Calls made afterwards still work until the server stops.
    pub async fn begin_shutdown(&self) {
        drain(&self.health, &self.streams).await;
    }

    /// Serves on `listener` until the shutdown token is cancelled, then shuts down
    /// gracefully: [`GrpcServer::begin_shutdown`], keep serving for
    /// [`GrpcConfig::drain_delay`], stop accepting, and wait up to
    /// [`GrpcConfig::shutdown_grace`] for the calls in flight.
    pub async fn serve(self, listener: TcpListener) -> Result<(), tonic::transport::Error> {
        let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
        self.serve_with_incoming(incoming).await
    }

    /// Like [`GrpcServer::serve`], over connections the caller accepts (for example
    /// through a cap on open connections, or TLS).
    pub async fn serve_with_incoming<I, IO, IE>(
        self,
        incoming: I,
    ) -> Result<(), tonic::transport::Error>
    where
        I: futures_util::Stream<Item = Result<IO, IE>>,
        IO: tokio::io::AsyncRead
            + tokio::io::AsyncWrite
            + tonic::transport::server::Connected
            + Unpin
            + Send
            + 'static,
        IO::ConnectInfo: Clone + Send + Sync + 'static,
        IE: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let routes = self.routes().await;
        let config = &self.config;
        let mut builder = Server::builder()
            .http2_keepalive_interval(config.keepalive_interval)
            .http2_keepalive_timeout(Some(config.keepalive_timeout))
            .max_concurrent_streams(config.max_concurrent_streams)
            .tcp_nodelay(true);
        if let Some(limit) = config.concurrency_limit_per_connection {
            builder = builder.concurrency_limit_per_connection(limit);
        }
        if let Some(timeout) = config.request_timeout {
            builder = builder.timeout(timeout);
        }

        let (stopping_tx, stopping_rx) = tokio::sync::oneshot::channel::<()>();
        let this = &self;
        let drain_delay = config.drain_delay;
        let signal = async move {
            // Drained here too (the watcher `routes` spawned may not have run yet), so
            // that health says NOT_SERVING before the drain delay starts.
            this.shutdown.cancelled().await;
            this.begin_shutdown().await;
            // Health says NOT_SERVING; keep serving while balancers notice.
            if !drain_delay.is_zero() {
                tokio::time::sleep(drain_delay).await;
            }
            let _ = stopping_tx.send(());
        };
        let serve = builder
            .add_routes(routes)
            .serve_with_incoming_shutdown(incoming, signal);
        let grace = async {
            if stopping_rx.await.is_ok() {
                tokio::time::sleep(config.shutdown_grace).await;
            } else {
                future::pending::<()>().await;
            }
        };
        match future::select(std::pin::pin!(serve), std::pin::pin!(grace)).await {
            Either::Left((served, _)) => served,
            Either::Right(((), _)) => {
                tracing::warn!(
                    grace = ?config.shutdown_grace,
                    "gRPC calls still open after the shutdown grace period; stopped waiting"
                );
                Ok(())
            }
        }
    }
}

/// Health reports NOT_SERVING for every service and every open stream ends.
async fn drain(health: &HealthReporter, streams: &Streams) {
    for name in SERVICES {
        health
            .set_service_status(name, ServingStatus::NotServing)
            .await;
    }
    streams.shut_down();
}
