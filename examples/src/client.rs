//! What every example client shares: where the server is and how to get a token.

use anyhow::{Context as _, bail};
use clap::Args;
use serde_json::{Value, json};

/// Connection flags of the example clients.
#[derive(Debug, Clone, Args)]
pub struct ClientArgs {
    /// Base URL of the server's HTTP listener.
    #[arg(long, env = "PETSTORE_URL", default_value = "http://127.0.0.1:8080")]
    pub url: String,
    /// Bearer token (default: log in as `--username`).
    #[arg(long, env = "PETSTORE_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// User to log in as when no token is given.
    #[arg(long, default_value = "admin")]
    pub username: String,
    /// Password of `--username`.
    #[arg(long, default_value = "admin-password")]
    pub password: String,
}

impl ClientArgs {
    /// The base URL without a trailing slash.
    pub fn base(&self) -> &str {
        self.url.trim_end_matches('/')
    }

    /// The WebSocket base URL (`ws://…`).
    pub fn ws_base(&self) -> String {
        let base = self.base();
        match base.strip_prefix("https://") {
            Some(rest) => format!("wss://{rest}"),
            None => format!("ws://{}", base.trim_start_matches("http://")),
        }
    }

    /// The given token, or one obtained with `POST /v1/auth/token`.
    pub async fn token(&self, http: &reqwest::Client) -> anyhow::Result<String> {
        if let Some(token) = &self.token {
            return Ok(token.clone());
        }
        let resp = http
            .post(format!("{}/v1/auth/token", self.base()))
            .json(&json!({"username": self.username, "password": self.password}))
            .send()
            .await
            .with_context(|| format!("is the server running at {}?", self.base()))?;
        let body: Value = check(resp).await?;
        body["access_token"]
            .as_str()
            .map(str::to_owned)
            .context("the token response has no access_token")
    }
}

/// Returns the JSON body of a 2xx response, or an error showing the problem details.
pub async fn check(resp: reqwest::Response) -> anyhow::Result<Value> {
    let status = resp.status();
    let text = resp.text().await?;
    if !status.is_success() {
        bail!("HTTP {status}: {text}");
    }
    if text.is_empty() {
        return Ok(Value::Null);
    }
    serde_json::from_str(&text).with_context(|| format!("response is not JSON: {text}"))
}

/// A one-line summary of an event envelope.
pub fn describe_event(event: &Value) -> String {
    format!(
        "{:<22} subject={} offset={}",
        event["type"].as_str().unwrap_or("?"),
        event["subject"].as_str().unwrap_or("?"),
        event["offset"].as_str().unwrap_or("?"),
    )
}
