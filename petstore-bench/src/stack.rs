//! The full stack: `petstore-server` started in-process, as a user starts it, and
//! measured at the addresses its running handle reports.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context as _;
use petstore_core::{PetStore, Principal, Scope};
use petstore_server::{RunningServer, ServerArgs};

/// Options of a full stack. The default is the server as a user starts it, every
/// default component on (the embedded MQTT broker and its bridge included).
#[derive(Debug, Clone, Copy)]
pub(crate) struct StackOptions {
    /// Run the MQTT bridge (and the embedded broker).
    pub(crate) mqtt: bool,
}

impl Default for StackOptions {
    fn default() -> Self {
        Self { mqtt: true }
    }
}

/// Where a full stack keeps its data.
#[derive(Debug, Clone, Default)]
pub(crate) struct Storage {
    /// `--database-url` (`None`: in memory).
    pub(crate) database_url: Option<String>,
}

/// A running full stack.
pub(crate) struct Stack {
    server: Option<RunningServer>,
    pub(crate) store: PetStore,
    /// Development token with every scope.
    pub(crate) token: String,
    /// Where every HTTP adapter answers: REST, GraphQL, SSE and WebSocket, webhooks.
    pub(crate) http: SocketAddr,
    pub(crate) grpc: SocketAddr,
    /// The embedded MQTT broker the bridge publishes to (with [`StackOptions::mqtt`]).
    pub(crate) mqtt: Option<SocketAddr>,
    /// The embedded broker: its MQTT 5 listener, which the bridge publishes to, and
    /// the bridge's credentials (the bare publisher uses both too, so that both skip
    /// the front that checks every other client).
    pub(crate) mqtt_broker: Option<petstore_mqtt::broker::EmbeddedBroker>,
}

impl Stack {
    pub(crate) async fn start(opts: StackOptions) -> anyhow::Result<Self> {
        Self::start_on(opts, Storage::default()).await
    }

    /// A full stack keeping its data where `storage` says.
    pub(crate) async fn start_on(opts: StackOptions, storage: Storage) -> anyhow::Result<Self> {
        let args = ServerArgs {
            no_mqtt: !opts.mqtt,
            database_url: storage.database_url,
            // Every default component on, but the per-client caps sized for a load
            // generator that opens thousands of streams from one address, as a
            // deployer serving that many subscribers would set them.
            http_max_connections: 20_000,
            sse_max_streams_per_caller: 20_000,
            ..ServerArgs::ephemeral()
        };
        let server = petstore_server::start(args)
            .await
            .context("starting petstore-server in-process")?;
        let grpc = server.grpc_addr.context("petstore-server serves no gRPC")?;
        if opts.mqtt {
            server
                .mqtt_addr
                .context("petstore-server runs no MQTT broker")?;
        }
        Ok(Self {
            store: server.store.clone(),
            token: server.dev_token.clone(),
            http: server.http_addr,
            grpc,
            mqtt: server.mqtt_addr,
            mqtt_broker: server.mqtt_broker.clone(),
            server: Some(server),
        })
    }

    /// A principal with every scope, for writing straight through the core service.
    pub(crate) fn admin(&self) -> Principal {
        Principal::new("petstore-bench", Scope::ALL)
    }

    /// Stops everything (bounded: a server that does not stop in time is left behind).
    pub(crate) async fn stop(mut self) {
        if let Some(s) = self.server.take() {
            let _ = tokio::time::timeout(Duration::from_secs(15), s.shutdown()).await;
        }
    }
}
