//! Endpoint management: create, list, read, change, delete; secrets and their
//! rotation; replay (pointing the cursor back).

use chrono::{DateTime, Utc};
use petstore_core::{Error, ErrorKind, Result, ResumeToken, TypePattern};
use reqwest::Url;
use serde::Serialize;

use crate::backend::{Endpoint, PreviousSecret, WebhookStore, WebhookStoreExt};
use crate::config::WebhookConfig;
use crate::ids::EndpointId;
use crate::local::Local;
use crate::signing::WebhookSecret;

/// What the client sees of an endpoint.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
#[schemars(rename = "WebhookEndpoint")]
pub(crate) struct EndpointView {
    id: EndpointId,
    url: String,
    description: String,
    /// Type patterns; empty means every event type.
    events: Vec<TypePattern>,
    enabled: bool,
    disabled_reason: Option<String>,
    /// Since when every attempt has failed (`null` while healthy).
    failing_since: Option<DateTime<Utc>>,
    /// The position of the last event this endpoint examined: pass it to `replay`.
    cursor: ResumeToken,
    /// Set when events could not be delivered because the cursor fell out of the
    /// retained log.
    last_gap: Option<String>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    /// Only in the answers of create and rotate.
    #[serde(skip_serializing_if = "Option::is_none")]
    secret: Option<String>,
}

impl EndpointView {
    fn new(e: &Endpoint, with_secret: bool) -> Self {
        Self {
            id: e.id.clone(),
            url: e.url.to_string(),
            description: e.description.clone(),
            events: e.events.clone(),
            enabled: e.enabled,
            disabled_reason: e.disabled_reason.clone(),
            failing_since: e.failing_since,
            cursor: e.cursor,
            last_gap: e.last_gap.clone(),
            created_at: e.created_at,
            updated_at: e.updated_at,
            secret: with_secret.then(|| e.secret.expose()),
        }
    }

    pub(crate) fn id(&self) -> &EndpointId {
        &self.id
    }
}

/// The secret of an endpoint (and the previous one during a rotation's grace period).
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
#[schemars(rename = "WebhookSecret")]
pub(crate) struct SecretView {
    secret: String,
    previous_secret_expires_at: Option<DateTime<Utc>>,
}

impl SecretView {
    fn new(e: &Endpoint) -> Self {
        Self {
            secret: e.secret.expose(),
            previous_secret_expires_at: e
                .previous_secret
                .as_ref()
                .map(|p| p.expires_at)
                .filter(|at| *at > Utc::now()),
        }
    }
}

/// Changes requested by `PATCH /v1/webhooks/{id}`.
#[derive(Debug, Default)]
pub(crate) struct EndpointPatch {
    pub(crate) url: Option<Url>,
    pub(crate) description: Option<String>,
    pub(crate) events: Option<Vec<TypePattern>>,
    pub(crate) enabled: Option<bool>,
}

/// Disables `e` for `reason` (a new revision: its follower stops); `false` when it
/// was disabled already.
pub(crate) fn disable(e: &mut Endpoint, reason: String) -> bool {
    if !e.enabled {
        return false;
    }
    tracing::warn!(endpoint = %e.id, %reason, "webhook endpoint disabled");
    e.enabled = false;
    e.disabled_reason = Some(reason);
    e.updated_at = Utc::now();
    e.revision += 1;
    true
}

fn disabled(id: &EndpointId) -> Error {
    Error::new(
        ErrorKind::Conflict,
        format!("webhook endpoint `{id}` is disabled: enable it first"),
    )
}

/// Endpoint management over the store; every change that concerns the endpoint's
/// tasks pokes them.
pub(crate) struct Endpoints<'a> {
    pub(crate) store: &'a dyn WebhookStore,
    pub(crate) local: &'a Local,
    pub(crate) config: &'a WebhookConfig,
}

impl Endpoints<'_> {
    /// Creates an endpoint following the log from `head`, with a fresh secret.
    pub(crate) async fn create(
        &self,
        url: Url,
        description: String,
        events: Vec<TypePattern>,
        head: ResumeToken,
    ) -> Result<EndpointView> {
        let now = Utc::now();
        let endpoint = Endpoint {
            id: EndpointId::generate(),
            url,
            description,
            events,
            enabled: true,
            disabled_reason: None,
            failing_since: None,
            secret: WebhookSecret::generate(),
            previous_secret: None,
            cursor: head,
            last_gap: None,
            revision: 0,
            version: 0,
            created_at: now,
            updated_at: now,
        };
        let max = self.config.max_endpoints;
        if !self.store.create_endpoint(&endpoint, max).await? {
            return Err(Error::new(
                ErrorKind::Conflict,
                format!("there are already {max} webhook endpoints (the maximum)"),
            ));
        }
        self.local.ensure(&endpoint.id);
        self.local.sync();
        Ok(EndpointView::new(&endpoint, true))
    }

    pub(crate) async fn list(&self) -> Result<Vec<EndpointView>> {
        let endpoints = self.store.endpoints().await?;
        Ok(endpoints
            .iter()
            .map(|e| EndpointView::new(e, false))
            .collect())
    }

    pub(crate) async fn get(&self, id: &EndpointId) -> Result<EndpointView> {
        Ok(EndpointView::new(
            &self.store.existing_endpoint(id).await?,
            false,
        ))
    }

    /// Applies a patch; `head` is where a re-enabled endpoint starts.
    pub(crate) async fn update(
        &self,
        id: &EndpointId,
        patch: EndpointPatch,
        head: ResumeToken,
    ) -> Result<EndpointView> {
        let endpoint = self
            .store
            .modify_endpoint(id, |e| {
                if let Some(url) = &patch.url {
                    e.url = url.clone();
                }
                if let Some(description) = &patch.description {
                    e.description.clone_from(description);
                }
                if let Some(events) = &patch.events {
                    e.events.clone_from(events);
                }
                match patch.enabled {
                    Some(false) => {
                        disable(e, "disabled by an administrator".to_owned());
                    }
                    Some(true) if !e.enabled => {
                        // Like Svix and Stripe, a re-enabled endpoint starts with new
                        // events; `replay` recovers the ones it missed.
                        e.enabled = true;
                        e.disabled_reason = None;
                        e.failing_since = None;
                        e.cursor = head;
                        e.last_gap = None;
                        e.revision += 1;
                    }
                    _ => {}
                }
                e.updated_at = Utc::now();
                Ok(true)
            })
            .await?;
        self.local.poke(id);
        Ok(EndpointView::new(&endpoint, false))
    }

    pub(crate) async fn delete(&self, id: &EndpointId) -> Result<()> {
        if !self.store.delete_endpoint(id).await? {
            return Err(Error::not_found("webhook endpoint", id));
        }
        // Dropping the local handles stops the endpoint's tasks.
        self.local.forget(id);
        Ok(())
    }

    pub(crate) async fn secret(&self, id: &EndpointId) -> Result<SecretView> {
        Ok(SecretView::new(&self.store.existing_endpoint(id).await?))
    }

    /// Replaces the secret; the previous one keeps signing for the grace period.
    pub(crate) async fn rotate(&self, id: &EndpointId) -> Result<SecretView> {
        let grace =
            chrono::Duration::from_std(self.config.rotation_grace).unwrap_or(chrono::Duration::MAX);
        let endpoint = self
            .store
            .modify_endpoint(id, |e| {
                let now = Utc::now();
                let old = std::mem::replace(&mut e.secret, WebhookSecret::generate());
                e.previous_secret = Some(PreviousSecret {
                    secret: old,
                    expires_at: now
                        .checked_add_signed(grace)
                        .unwrap_or(DateTime::<Utc>::MAX_UTC),
                });
                e.updated_at = now;
                Ok(true)
            })
            .await?;
        Ok(SecretView::new(&endpoint))
    }

    /// Points the cursor at `since`: the follower re-reads the log from there.
    pub(crate) async fn replay(&self, id: &EndpointId, since: ResumeToken) -> Result<EndpointView> {
        let endpoint = self
            .store
            .modify_endpoint(id, |e| {
                if !e.enabled {
                    return Err(disabled(id));
                }
                e.cursor = since;
                e.last_gap = None;
                e.revision += 1;
                e.updated_at = Utc::now();
                Ok(true)
            })
            .await?;
        self.local.poke(id);
        Ok(EndpointView::new(&endpoint, false))
    }
}

/// The error for a change that needs an enabled endpoint.
pub(crate) fn require_enabled(e: &Endpoint) -> Result<()> {
    if e.enabled {
        Ok(())
    } else {
        Err(disabled(&e.id))
    }
}
