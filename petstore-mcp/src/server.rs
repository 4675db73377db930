//! [`PetStoreMcp`]: the rmcp server handler over a [`PetStore`].

use petstore_core::telemetry;
use std::collections::HashSet;
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use tracing::Instrument as _;

use petstore_core::{Error, ErrorKind, PetStore, Principal};
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, GetPromptRequestParams, GetPromptResponse,
    Implementation, InitializeRequestParams, InitializeResult, ListPromptsResult,
    ListResourceTemplatesResult, ListResourcesResult, ListToolsResult, PaginatedRequestParams,
    ReadResourceRequestParams, ReadResourceResponse, ResourceUpdatedNotificationParam,
    ServerCapabilities, ServerConfig, SubscribeRequestParams, SubscriptionFilter, Tool,
    UnsubscribeRequestParams,
};
use rmcp::service::{RequestContext, SubscriptionContext};
use rmcp::{ErrorData, Peer, RoleServer, ServerHandler};

use crate::error::protocol_error;
use crate::prompt;
use crate::resources::{self, ListenFrom, ResourceFeed, ResourceUri};
use crate::tools::{self, AppState};

const INSTRUCTIONS: &str = "The Pet Store: browse the catalogue with search_pets and get_pet, \
check stock with get_inventory, buy with place_order then pay_order, follow what happens \
with recent_events. Tools that change something need a bearer token with the right scope \
(pets:write, orders:write). Resources: petstore://inventory, petstore://pets/{id}, \
petstore://orders/{id}. The recommend_pet prompt matches a household to the available pets.";

/// One MCP request being served: see `PetStoreMcp::observe`.
struct Observed {
    /// The metric's `operation` (the method, and the tool of `tools/call`).
    operation: String,
    request_context: petstore_core::RequestContext,
    span: tracing::Span,
}

/// The outcome of a request that either answers or fails.
fn ok_or_error<T>(result: &Result<T, ErrorData>) -> &'static str {
    if result.is_ok() { "ok" } else { "error" }
}

impl Observed {
    /// Runs `handler` in the request's context and span, then logs and counts it with
    /// the outcome `outcome` names.
    async fn run<T>(
        self,
        handler: impl Future<Output = Result<T, ErrorData>>,
        outcome: impl FnOnce(&Result<T, ErrorData>) -> &'static str,
    ) -> Result<T, ErrorData> {
        let Observed {
            operation,
            request_context,
            span,
        } = self;
        let started = std::time::Instant::now();
        let result = request_context
            .scope(handler.instrument(span.clone()))
            .await;
        let outcome = outcome(&result);
        tracing::info!(parent: &span, outcome, "MCP request finished");
        telemetry::record_request("mcp", operation, outcome, started.elapsed());
        result
    }
}

/// The Model Context Protocol server of the Pet Store: an rmcp [`ServerHandler`]
/// exposing the core [`PetStore`] as tools, resources and a prompt.
///
/// Over stdio every request acts as the principal given with
/// [`PetStoreMcp::with_principal`] (anonymous by default: reads only). Over HTTP
/// ([`crate::router`]) each request acts as the principal of its bearer token.
///
/// A value serves one MCP session: clones share the store and the principal but not
/// the session's resource subscriptions.
///
/// ```
/// use petstore_core::{PetStore, Principal, Scope};
/// let server = petstore_mcp::PetStoreMcp::new(PetStore::in_memory())
///     .with_principal(Principal::new("claude-desktop", [Scope::PetsWrite]));
/// # let _ = server;
/// ```
pub struct PetStoreMcp {
    tools: AppState,
    /// Whether this value lives as long as a session of the 2025-11-25 protocol (stdio,
    /// HTTP with sessions), so that `resources/subscribe` can be honoured.
    legacy_sessions: bool,
    session: Session,
}

/// The resource subscriptions of one 2025-11-25 session and the task that notifies
/// them; dropping it (the session ended) stops the task.
#[derive(Default)]
struct Session {
    subscribed: Arc<Mutex<HashSet<String>>>,
    follower: tokio::sync::Mutex<Option<AbortOnDrop>>,
}

struct AbortOnDrop(tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl fmt::Debug for PetStoreMcp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PetStoreMcp")
            .field("store", &self.tools.service)
            .field("principal", &self.tools.principal)
            .field("legacy_sessions", &self.legacy_sessions)
            .finish_non_exhaustive()
    }
}

impl Clone for PetStoreMcp {
    /// The same server for another session: no resource subscriptions.
    fn clone(&self) -> Self {
        Self {
            tools: self.tools.clone(),
            legacy_sessions: self.legacy_sessions,
            session: Session::default(),
        }
    }
}

impl PetStoreMcp {
    /// A server over `store`, acting as an anonymous caller until
    /// [`PetStoreMcp::with_principal`] says otherwise.
    pub fn new(store: PetStore) -> Self {
        Self {
            tools: AppState {
                service: store,
                principal: Principal::anonymous(),
            },
            legacy_sessions: true,
            session: Session::default(),
        }
    }

    /// Acts as `principal` for requests that do not come over HTTP (stdio); an HTTP
    /// request acts as the principal of its own bearer token. Write tools need the
    /// principal's scopes.
    pub fn with_principal(mut self, principal: Principal) -> Self {
        self.tools.principal = principal;
        self
    }

    /// Whether each value serves a whole 2025-11-25 session (HTTP stateless mode
    /// creates one per request, which cannot keep subscriptions).
    pub(crate) fn with_legacy_sessions(mut self, on: bool) -> Self {
        self.legacy_sessions = on;
        self
    }

    fn store(&self) -> &PetStore {
        &self.tools.service
    }

    fn caller(&self, context: &RequestContext<RoleServer>) -> Principal {
        self.tools.caller(&context.extensions)
    }

    /// The span, request context and metric of one MCP request of `method` (with
    /// `name`: the tool). Over HTTP it runs within its HTTP request's context and
    /// under its `http_request` span (rmcp runs handlers in a task of its own): the
    /// request id, and the caller's trace that its writes carry on. Over stdio it has
    /// a context of its own. `caller` is the request's, as [`Self::caller`] reads it.
    fn observe(
        method: &'static str,
        name: Option<&str>,
        context: &RequestContext<RoleServer>,
        caller: &Principal,
    ) -> Observed {
        let origin = context
            .extensions
            .get::<http::request::Parts>()
            .and_then(|parts| parts.extensions.get::<crate::web::HttpOrigin>())
            .cloned();
        let (request_context, parent) = match origin {
            Some(origin) => (origin.context, origin.span),
            None => (
                petstore_core::RequestContext::new(),
                tracing::Span::current(),
            ),
        };
        let span = tracing::info_span!(
            parent: &parent,
            "mcp_request",
            method,
            tool = name,
            request_id = request_context.request_id(),
            sub = caller.subject(),
        );
        Observed {
            operation: match name {
                Some(name) => format!("{method} {name}"),
                None => method.to_owned(),
            },
            request_context,
            span,
        }
    }

    /// Starts, once per session, the task that sends `notifications/resources/updated`
    /// for subscribed URIs and `notifications/resources/list_changed`. It follows the log
    /// from before this returns, so no change committed afterwards is missed.
    async fn follow_for_session(&self, peer: &Peer<RoleServer>) -> petstore_core::Result<()> {
        let mut follower = self.session.follower.lock().await;
        if follower.as_ref().is_some_and(|task| !task.0.is_finished()) {
            return Ok(());
        }
        let feed = ResourceFeed::start(self.store().clone()).await?;
        let task = tokio::spawn(notify_session(
            feed,
            self.session.subscribed.clone(),
            peer.clone(),
        ));
        *follower = Some(AbortOnDrop(task.abort_handle()));
        Ok(())
    }

    fn subscriptions(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        self.session
            .subscribed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

/// Notifies a 2025-11-25 session until it closes.
async fn notify_session(
    mut feed: ResourceFeed,
    subscribed: Arc<Mutex<HashSet<String>>>,
    peer: Peer<RoleServer>,
) {
    while let Some(changes) = feed.next().await {
        let updated: Vec<String> = subscribed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .filter(|uri| changes.touches(uri))
            .cloned()
            .collect();
        for uri in updated {
            let param = ResourceUpdatedNotificationParam::new(uri);
            if peer.notify_resource_updated(param).await.is_err() {
                return; // the session is gone
            }
        }
        if changes.list_changed && peer.notify_resource_list_changed().await.is_err() {
            return;
        }
    }
}

/// The resource a request names, or a not-found error listing what exists.
fn resource(uri: &str) -> Result<ResourceUri, ErrorData> {
    ResourceUri::parse(uri).ok_or_else(|| {
        protocol_error(&Error::new(
            ErrorKind::NotFound,
            format!(
                "resource `{uri}` does not exist (resources: petstore://inventory, \
                 petstore://pets/{{id}}, petstore://orders/{{id}})"
            ),
        ))
    })
}

impl ServerHandler for PetStoreMcp {
    fn get_info(&self) -> ServerConfig {
        let capabilities = ServerCapabilities::builder()
            .enable_tools()
            .enable_prompts()
            .enable_resources()
            .enable_resources_subscribe()
            .enable_resources_list_changed()
            .build();
        ServerConfig::new(capabilities)
            .with_server_info(
                Implementation::new("petstore-mcp", env!("CARGO_PKG_VERSION"))
                    .with_title("Pet Store"),
            )
            .with_instructions(INSTRUCTIONS)
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        // Tool names are ours (a fixed set), so they can label the metrics.
        let tool = tools::router()
            .get(&request.name)
            .map_or_else(|| "unknown".to_owned(), |t| t.name.to_string());
        // The tool reads the caller again from `context`, which it takes whole.
        let observed = Self::observe("tools/call", Some(&tool), &context, &self.caller(&context));
        observed
            .run(
                tools::call(&self.tools, request, context),
                |result| match result {
                    Ok(CallToolResponse::Complete(r)) if r.is_error == Some(true) => "tool_error",
                    Ok(_) => "ok",
                    Err(_) => "error",
                },
            )
            .await
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        Ok(ListToolsResult::with_all_items(tools::router().list_all()))
    }

    fn get_tool(&self, name: &str) -> Option<Tool> {
        tools::router().get(name).cloned()
    }

    async fn list_resources(
        &self,
        request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, ErrorData> {
        let cursor = request.and_then(|r| r.cursor);
        let who = self.caller(&context);
        let list = async {
            resources::list(self.store(), &who, cursor)
                .await
                .map_err(|e| protocol_error(&e))
        };
        let observed = Self::observe("resources/list", None, &context, &who);
        observed.run(list, ok_or_error).await
    }

    async fn list_resource_templates(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListResourceTemplatesResult, ErrorData> {
        Ok(resources::templates())
    }

    async fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, ErrorData> {
        let who = self.caller(&context);
        let read = async {
            resource(&request.uri)?
                .read(self.store(), &who)
                .await
                .map(Into::into)
                .map_err(|e| protocol_error(&e))
        };
        let observed = Self::observe("resources/read", None, &context, &who);
        observed.run(read, ok_or_error).await
    }

    async fn list_prompts(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListPromptsResult, ErrorData> {
        Ok(prompt::list())
    }

    async fn get_prompt(
        &self,
        request: GetPromptRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<GetPromptResponse, ErrorData> {
        let who = self.caller(&context);
        let get = async {
            if request.name != prompt::RECOMMEND_PET {
                return Err(ErrorData::invalid_params(
                    format!(
                        "unknown prompt `{}` (prompts: {})",
                        request.name,
                        prompt::RECOMMEND_PET
                    ),
                    None,
                ));
            }
            prompt::recommend_pet(self.store(), &who, &request)
                .await
                .map(Into::into)
                .map_err(|e| protocol_error(&e))
        };
        let observed = Self::observe("prompts/get", None, &context, &who);
        observed.run(get, ok_or_error).await
    }

    // 2025-11-25 and older: `resources/subscribe` within a session.
    async fn subscribe(
        &self,
        request: SubscribeRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        let who = self.caller(&context);
        let subscribe = async {
            if !self.legacy_sessions {
                return Err(ErrorData::invalid_request(
                    "resource subscriptions need a session; this server runs without sessions \
                     for protocol 2025-11-25 (use subscriptions/listen of the current protocol)",
                    None,
                ));
            }
            let uri = resource(&request.uri)?;
            // It must exist and be readable by the subscriber.
            uri.read(self.store(), &who)
                .await
                .map_err(|e| protocol_error(&e))?;
            self.follow_for_session(&context.peer)
                .await
                .map_err(|e| protocol_error(&e))?;
            self.subscriptions().insert(uri.to_string());
            Ok(())
        };
        let observed = Self::observe("resources/subscribe", None, &context, &who);
        observed.run(subscribe, ok_or_error).await
    }

    async fn unsubscribe(
        &self,
        request: UnsubscribeRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        self.subscriptions().remove(&request.uri);
        Ok(())
    }

    async fn initialize(
        &self,
        request: InitializeRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<InitializeResult, ErrorData> {
        context.peer.set_peer_info(request.clone());
        let result = self.negotiate_initialize(&request)?;
        // A 2025-11-25 session hears `resources/list_changed` without subscribing; the
        // feed starts before the handshake answers, so no later change is missed.
        if self.legacy_sessions
            && let Err(e) = self.follow_for_session(&context.peer).await
        {
            tracing::warn!(error = %e, "MCP session cannot follow resource changes");
        }
        Ok(result)
    }

    // The current protocol: `subscriptions/listen`.
    fn accepted_subscription_filter(
        &self,
        requested: &SubscriptionFilter,
    ) -> Option<SubscriptionFilter> {
        let mut accepted = SubscriptionFilter::new();
        accepted.resources_list_changed = requested.resources_list_changed;
        accepted.resource_subscriptions = requested.resource_subscriptions.as_ref().map(|uris| {
            uris.iter()
                .filter(|uri| ResourceUri::parse(uri).is_some())
                .cloned()
                .collect()
        });
        Some(accepted)
    }

    async fn listen(&self, context: SubscriptionContext) -> Result<(), ErrorData> {
        let who = self.tools.caller(&context.request_context().extensions);
        let accepted = context.accepted();
        let list_changed = accepted.resources_list_changed == Some(true);
        // Acknowledged already; a URI the caller may not read just stays silent.
        let uris: Vec<&String> = accepted
            .resource_subscriptions
            .iter()
            .flatten()
            .filter(|uri| {
                ResourceUri::parse(uri).is_some_and(|r| r.readable_by(self.store(), &who))
            })
            .collect();
        if !list_changed && uris.is_empty() {
            context.cancelled().await;
            return Ok(());
        }
        // From the log head when the request arrived: rmcp has acknowledged the
        // subscription already, and the client may have committed a change since.
        let from = context
            .request_context()
            .extensions
            .get::<http::request::Parts>()
            .and_then(|parts| parts.extensions.get::<ListenFrom>())
            .map(|from| from.0);
        let feed = match from {
            Some(position) => ResourceFeed::after(self.store().clone(), position).await,
            None => ResourceFeed::start(self.store().clone()).await,
        };
        let mut feed = feed.map_err(|e| protocol_error(&e))?;
        let sink = context.sink();
        loop {
            let changes = tokio::select! {
                () = context.cancelled() => return Ok(()),
                changes = feed.next() => changes,
            };
            // The log cannot be followed any more: end the subscription gracefully.
            let Some(changes) = changes else {
                return Ok(());
            };
            for uri in uris.iter().filter(|uri| changes.touches(uri)) {
                if sink.notify_resource_updated(uri.as_str()).await.is_err() {
                    return Ok(());
                }
            }
            if list_changed
                && changes.list_changed
                && sink.notify_resource_list_changed().await.is_err()
            {
                return Ok(());
            }
        }
    }
}
