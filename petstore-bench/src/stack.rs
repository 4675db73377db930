//! The full stack: `petstore-server` started in-process. An adapter that the server
//! does not mount yet is composed here from its crate's public constructor over the
//! same store, and the report says so.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context as _;
use axum::Router;
use petstore_core::{PetStore, Principal, Scope};
use petstore_examples::server::{RunningServer, ServerArgs};

/// Where one adapter answers, and whether `petstore-server` itself mounts it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Mounted {
    pub(crate) addr: SocketAddr,
    pub(crate) by_server: bool,
}

impl Mounted {
    /// A note for the report when the adapter had to be composed by the bench.
    pub(crate) fn note(&self, adapter: &str) -> Option<String> {
        (!self.by_server).then(|| {
            format!(
                "{adapter} not mounted in petstore-server yet: composed from its crate's router"
            )
        })
    }
}

/// Options of a full stack.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct StackOptions {
    /// Run the MQTT bridge (and the embedded broker).
    pub(crate) mqtt: bool,
}

/// A running full stack.
pub(crate) struct Stack {
    server: Option<RunningServer>,
    pub(crate) store: PetStore,
    /// Development token with every scope.
    pub(crate) token: String,
    pub(crate) grpc: SocketAddr,
    pub(crate) rest: Mounted,
    pub(crate) graphql: Mounted,
    pub(crate) realtime: Mounted,
    pub(crate) webhooks: Mounted,
    /// The MQTT broker the bridge publishes to.
    pub(crate) mqtt: Option<Mounted>,
    /// The broker's MQTT 5 listener, which the bridge publishes to (the bare publisher
    /// uses it too, so that both skip the version-detecting front).
    pub(crate) mqtt_v5: Option<SocketAddr>,
    bridge: Option<petstore_mqtt::BridgeHandle>,
    dispatcher: Option<petstore_webhooks::DispatcherHandle>,
}

impl Stack {
    pub(crate) async fn start(opts: StackOptions) -> anyhow::Result<Self> {
        let args = ServerArgs {
            no_mqtt: !opts.mqtt,
            ..ServerArgs::ephemeral()
        };
        let server = petstore_examples::server::start(args)
            .await
            .context("starting petstore-server in-process")?;
        let store = server.store.clone();
        let token = server.dev_token.clone();
        let http = server.http_addr;
        let grpc = server.grpc_addr.context("petstore-server serves no gRPC")?;
        let probe = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(5))
            .build()?;
        let base = format!("http://{http}");

        let rest = probe
            .get(format!("{base}/v1/pets?limit=1"))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success());
        let graphql = probe
            .post(format!("{base}/graphql"))
            .json(&serde_json::json!({"query": "{ __typename }"}))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success());
        let realtime = probe
            .get(format!("{base}/v1/stream/pets"))
            .send()
            .await
            .is_ok_and(|r| {
                r.status().is_success()
                    && r.headers()
                        .get(http::header::CONTENT_TYPE)
                        .and_then(|v| v.to_str().ok())
                        .is_some_and(|v| v.starts_with("text/event-stream"))
            });
        let webhooks = probe
            .get(format!("{base}/v1/webhooks"))
            .bearer_auth(&token)
            .send()
            .await
            .is_ok_and(|r| r.status().is_success());

        let mut fallback = Router::new();
        let edge = petstore_http::Edge::new();
        let shutdown = tokio_util::sync::CancellationToken::new();
        if !rest {
            fallback = fallback.merge(petstore_rest::router(
                store.clone(),
                petstore_rest::RestConfig::default(),
                &edge,
                shutdown.clone(),
            ));
        }
        if !graphql {
            fallback = fallback.merge(petstore_graphql::router(
                store.clone(),
                petstore_graphql::GraphQlConfig::default(),
                &edge,
                shutdown.clone(),
            ));
        }
        if !realtime {
            fallback = fallback.merge(petstore_realtime::router(
                store.clone(),
                petstore_realtime::RealtimeConfig::default(),
                &edge,
                shutdown.clone(),
            ));
        }
        let mut dispatcher = None;
        if !webhooks {
            let hooks = petstore_webhooks::Webhooks::new(
                store.clone(),
                petstore_webhooks::WebhookConfig::default().allow_loopback(true),
                shutdown.clone(),
            );
            fallback = fallback.merge(hooks.router(&edge));
            dispatcher = Some(hooks.spawn_dispatcher());
        }
        let fallback_addr = if rest && graphql && realtime && webhooks {
            http
        } else {
            // Served like petstore-server serves HTTP (plain `axum::serve`).
            crate::bare::serve_axum(fallback, false).await?
        };
        let at = |mounted: bool| Mounted {
            addr: if mounted { http } else { fallback_addr },
            by_server: mounted,
        };

        let mut bridge = None;
        let mut mqtt_v5 = server.mqtt_v5_addr;
        let mqtt = match (opts.mqtt, server.mqtt_addr) {
            (false, _) => None,
            (true, Some(addr)) => Some(Mounted {
                addr,
                by_server: true,
            }),
            (true, None) => {
                let broker = petstore_mqtt::broker::EmbeddedBroker::start("127.0.0.1:0".parse()?)
                    .context("starting the embedded MQTT broker")?;
                let handle = petstore_mqtt::Bridge::start(
                    store.clone(),
                    petstore_mqtt::MqttConfig::default()
                        .url(format!("mqtt://{}", broker.v5_addr()))
                        .client_id("petstore-bench-bridge"),
                    tokio_util::sync::CancellationToken::new(),
                )
                .context("starting the MQTT bridge")?;
                tokio::time::timeout(Duration::from_secs(10), handle.wait_for(|s| s.connected))
                    .await
                    .context("the MQTT bridge did not connect to the broker")?;
                bridge = Some(handle);
                mqtt_v5 = Some(broker.v5_addr());
                Some(Mounted {
                    addr: broker.addr(),
                    by_server: false,
                })
            }
        };

        Ok(Self {
            server: Some(server),
            store,
            token,
            grpc,
            rest: at(rest),
            graphql: at(graphql),
            realtime: at(realtime),
            webhooks: at(webhooks),
            mqtt,
            mqtt_v5,
            bridge,
            dispatcher,
        })
    }

    /// A principal with every scope, for writing straight through the core service.
    pub(crate) fn admin(&self) -> Principal {
        Principal::new("petstore-bench", Scope::ALL)
    }

    /// Stops everything (bounded: a server that does not stop in time is left behind).
    pub(crate) async fn stop(mut self) {
        if let Some(b) = self.bridge.take() {
            let _ = tokio::time::timeout(Duration::from_secs(5), b.shutdown()).await;
        }
        if let Some(d) = self.dispatcher.take() {
            let _ = tokio::time::timeout(Duration::from_secs(5), d.shutdown()).await;
        }
        if let Some(s) = self.server.take() {
            let _ = tokio::time::timeout(Duration::from_secs(15), s.shutdown()).await;
        }
    }
}
