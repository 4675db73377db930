//! A server per test, clients, tokens and waiting helpers.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use petstore_core::{Currency, Money, NewPet, Pet, PetStore, Principal, RateLimiter, Scope};
use petstore_grpc::pb::chat_service_client::ChatServiceClient;
use petstore_grpc::pb::pet_service_client::PetServiceClient;
use petstore_grpc::pb::store_service_client::StoreServiceClient;
use petstore_grpc::{GrpcConfig, GrpcServer, OpenStreams};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tonic::transport::{Channel, Endpoint};
use tonic::{Request, Status, Streaming};

/// How long any single expected thing may take before the test fails.
pub(crate) const WAIT: Duration = Duration::from_secs(5);

pub(crate) struct TestServer {
    pub(crate) addr: SocketAddr,
    pub(crate) store: PetStore,
    pub(crate) open: OpenStreams,
    shutdown: CancellationToken,
    task: Option<JoinHandle<Result<(), tonic::transport::Error>>>,
}

impl TestServer {
    pub(crate) async fn start() -> Self {
        Self::start_with(GrpcConfig::default()).await
    }

    pub(crate) async fn start_with(config: GrpcConfig) -> Self {
        Self::start_on(PetStore::in_memory(), config).await
    }

    pub(crate) async fn start_on(store: PetStore, config: GrpcConfig) -> Self {
        Self::start_limited(store, config, None).await
    }

    /// With calls counted against `limiter`.
    pub(crate) async fn start_limited(
        store: PetStore,
        config: GrpcConfig,
        limiter: Option<Arc<RateLimiter>>,
    ) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let shutdown = CancellationToken::new();
        let mut server = GrpcServer::new(store.clone(), config, shutdown.clone());
        if let Some(limiter) = limiter {
            server = server.rate_limiter(limiter);
        }
        let open = server.open_streams();
        let task = tokio::spawn(server.serve(listener));
        Self {
            addr,
            store,
            open,
            shutdown,
            task: Some(task),
        }
    }

    pub(crate) async fn channel(&self) -> Channel {
        Endpoint::from_shared(format!("http://{}", self.addr))
            .unwrap()
            .connect()
            .await
            .unwrap()
    }

    pub(crate) async fn pets(&self) -> PetServiceClient<Channel> {
        PetServiceClient::new(self.channel().await)
    }

    pub(crate) async fn orders(&self) -> StoreServiceClient<Channel> {
        StoreServiceClient::new(self.channel().await)
    }

    pub(crate) async fn chat(&self) -> ChatServiceClient<Channel> {
        ChatServiceClient::new(self.channel().await)
    }

    /// An `authorization` value for `subject` with `scopes`.
    pub(crate) fn bearer(&self, subject: &str, scopes: impl IntoIterator<Item = Scope>) -> String {
        let token = self.store.tokens().issue(subject, scopes).unwrap();
        format!("Bearer {}", token.access_token)
    }

    pub(crate) fn admin(&self) -> String {
        self.bearer("root", [Scope::Admin])
    }

    /// Adds a pet through the core, as another adapter would.
    pub(crate) async fn add_pet(&self, name: &str, species: &str) -> Pet {
        self.store
            .create_pet(&Principal::system("test"), new_pet(name, species))
            .await
            .unwrap()
    }

    /// Cancels the shutdown token and waits for `serve` to return.
    pub(crate) async fn shut_down(&mut self) -> Result<(), tonic::transport::Error> {
        self.shutdown.cancel();
        let task = self.task.take().expect("server still running");
        within(task).await.expect("server task panicked")
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

pub(crate) fn new_pet(name: &str, species: &str) -> NewPet {
    NewPet {
        name: name.to_owned(),
        species: species.to_owned(),
        breed: None,
        age: Some(2),
        status: None,
        tags: vec!["friendly".to_owned()],
        photo_urls: vec![],
        price: Money::parse("100.00", Currency::USD).unwrap(),
    }
}

/// `msg` with `authorization` metadata.
pub(crate) fn authed<T>(msg: T, authorization: &str) -> Request<T> {
    let mut request = Request::new(msg);
    request
        .metadata_mut()
        .insert("authorization", authorization.parse().unwrap());
    request
}

/// Fails the test when `fut` takes longer than [`WAIT`].
pub(crate) async fn within<F: Future>(fut: F) -> F::Output {
    tokio::time::timeout(WAIT, fut)
        .await
        .expect("timed out waiting")
}

/// The next item of a response stream, failing the test after [`WAIT`].
pub(crate) async fn next<T>(stream: &mut Streaming<T>) -> Result<T, Status> {
    within(stream.message())
        .await
        .and_then(|m| m.ok_or_else(|| Status::internal("stream ended")))
}

/// Waits until `condition` holds (it reads state the server changes asynchronously).
pub(crate) async fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
    let waited = tokio::time::timeout(WAIT, async {
        while !condition() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert!(waited.is_ok(), "timed out waiting for: {what}");
}
