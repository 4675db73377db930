//! Users and tokens: the password check behind `POST /v1/auth/token` and every other
//! login, with its cost bounded.
//!
//! A password check (argon2id) costs about 19 MiB and tens of milliseconds of CPU on
//! purpose. So that no request can multiply it: each request may make at most one
//! check ([`crate::RequestContext`] counts them, GraphQL aliases and batches
//! included); checks run on the blocking pool, at most
//! [`LoginConfig::concurrent_checks`] at once; and each username and each client
//! address has its own login budget, on even when general rate limiting is off.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::sync::Semaphore;

use super::PetStore;
use crate::auth::{AccessToken, Principal, Scope};
use crate::backend::{Change, Write};
use crate::context::RequestContext;
use crate::error::{Error, ErrorKind, Result};
use crate::rate::{RateLimitConfig, RateLimiter};
use crate::user::{Credentials, User};

/// Limits on password checks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct LoginConfig {
    /// Login attempts per username per [`LoginConfig::period`] (default 10).
    pub per_username: u32,
    /// Login attempts per client address per period (default 30).
    pub per_client: u32,
    /// The window the budgets are counted over (default 60 s).
    #[serde(with = "humantime_serde")]
    pub period: Duration,
    /// Password checks running at once, process-wide (default 2); more wait.
    pub concurrent_checks: usize,
}

impl Default for LoginConfig {
    fn default() -> Self {
        Self {
            per_username: 10,
            per_client: 30,
            period: Duration::from_secs(60),
            concurrent_checks: 2,
        }
    }
}

impl LoginConfig {
    /// Sets [`LoginConfig::per_username`].
    pub fn per_username(mut self, n: u32) -> Self {
        self.per_username = n.max(1);
        self
    }

    /// Sets [`LoginConfig::per_client`].
    pub fn per_client(mut self, n: u32) -> Self {
        self.per_client = n.max(1);
        self
    }
}

/// The login throttle and the password-check pool of one service.
pub(super) struct LoginGuard {
    /// Keys `user:<name>` use the "authenticated" quota (per username), keys
    /// `ip:<address>` the anonymous one (per client).
    throttle: RateLimiter,
    checks: Arc<Semaphore>,
}

impl LoginGuard {
    pub(super) fn new(config: &LoginConfig) -> Self {
        let throttle = RateLimiter::new(
            RateLimitConfig::default()
                .requests(config.per_client)
                .authenticated_requests(config.per_username)
                .period(config.period)
                .max_keys(100_000),
        );
        Self {
            throttle,
            checks: Arc::new(Semaphore::new(config.concurrent_checks.max(1))),
        }
    }

    /// Spends one attempt of `username`'s and of the client's budget.
    fn admit(&self, username: &str) -> Result<()> {
        let ctx = RequestContext::current();
        if !ctx.claim_credential_check() {
            return Err(Error::new(
                ErrorKind::RateLimited,
                "at most one password check per request",
            ));
        }
        let now = Instant::now();
        let name: String = username.chars().take(64).collect();
        self.throttle
            .check_key_at(&format!("user:{name}"), true, now)
            .result()?;
        if let Some(ip) = ctx.client_ip() {
            self.throttle
                .check_key_at(
                    &crate::rate::rate_key(&Principal::anonymous(), Some(ip)),
                    false,
                    now,
                )
                .result()?;
        }
        Ok(())
    }

    /// Checks `password` against `user` (or against a dummy hash for an unknown user,
    /// so that timing does not tell which usernames exist) on the blocking pool.
    async fn verify(&self, user: Option<User>, password: String) -> Result<Option<User>> {
        let _permit = self
            .checks
            .acquire()
            .await
            .map_err(|_| Error::new(ErrorKind::Unavailable, "shutting down"))?;
        tokio::task::spawn_blocking(move || match user {
            Some(u) if u.verify_password(&password) => Some(u),
            Some(_) => None,
            None => {
                dummy_user().verify_password(&password);
                None
            }
        })
        .await
        .map_err(Error::internal)
    }
}

impl PetStore {
    /// Exchanges a user's name and password for a token carrying the user's scopes.
    ///
    /// Refused with `RateLimited` (and `retry_after`) beyond the login budgets of the
    /// username and the client, or for a second check in the same request.
    // No fields: the credentials stay out of the log.
    #[tracing::instrument(level = "info", name = "issue_token", skip_all)]
    pub async fn issue_token(&self, credentials: &Credentials) -> Result<AccessToken> {
        let login = &self.inner.login;
        login.admit(&credentials.username)?;
        let user = self.store().user(&credentials.username).await?;
        match login.verify(user, credentials.password.clone()).await? {
            Some(u) => self.inner.auth.issue(&u.username, u.scopes.iter().copied()),
            None => Err(Error::new(
                ErrorKind::Unauthenticated,
                "unknown username or wrong password",
            )),
        }
    }

    /// Creates a user (admin only).
    #[tracing::instrument(level = "info", name = "create_user", skip_all, fields(sub = who.subject()))]
    pub async fn create_user(
        &self,
        who: &Principal,
        username: &str,
        password: &str,
        scopes: Vec<Scope>,
    ) -> Result<User> {
        who.require(Scope::Admin)?;
        let (name, password) = (username.to_owned(), password.to_owned());
        // Hashing is as slow as checking: off the async workers too.
        let user = tokio::task::spawn_blocking(move || User::new(&name, &password, scopes))
            .await
            .map_err(Error::internal)??;
        match self
            .commit(Change::new().write(Write::PutUser(user.clone())))
            .await
        {
            Err(e) if e.is_stale_write() => Err(Error::new(
                ErrorKind::Conflict,
                format!("user `{username}` exists"),
            )),
            other => other.map(|_| user),
        }
    }
}

fn dummy_user() -> &'static User {
    static DUMMY: std::sync::OnceLock<User> = std::sync::OnceLock::new();
    DUMMY.get_or_init(|| User::new("dummy", "dummy-password", []).expect("valid dummy user"))
}
