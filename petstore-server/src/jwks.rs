//! Tokens from an identity provider: the HTTP side of `--jwks-url` (the core verifies,
//! this only fetches the key set document, bounded in time and size).

use std::net::IpAddr;
use std::time::Duration;

use anyhow::{Context as _, bail};
use async_trait::async_trait;
use petstore_core::{Error, ErrorKind, JwksConfig, JwksVerifier, KeySource};
use reqwest::Url;

/// A key set document larger than this is not read further.
const MAX_DOCUMENT_BYTES: usize = 256 * 1024;
/// One fetch, connection included, takes at most this long.
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);

/// `GET <jwks_url>`: https, or http to a loopback address (a provider on this host).
#[derive(Debug)]
pub struct HttpKeySource {
    client: reqwest::Client,
    url: Url,
}

impl HttpKeySource {
    /// A source for `url`; refuses plain http to anything but loopback, since whoever
    /// can alter the document can mint tokens.
    pub fn new(url: &str) -> anyhow::Result<Self> {
        let url = Url::parse(url).with_context(|| format!("`{url}` is not a URL"))?;
        let host = url.host_str().unwrap_or_default();
        let loopback = host == "localhost"
            || host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .parse::<IpAddr>()
                .is_ok_and(|ip| ip.is_loopback());
        match url.scheme() {
            "https" => {}
            "http" if loopback => {}
            scheme => bail!("`{url}`: the key set must be fetched over https, not {scheme}"),
        }
        let client = reqwest::Client::builder()
            .timeout(FETCH_TIMEOUT)
            .redirect(reqwest::redirect::Policy::limited(3))
            .build()
            .context("building the HTTP client for the key set")?;
        Ok(Self { client, url })
    }
}

#[async_trait]
impl KeySource for HttpKeySource {
    async fn fetch(&self) -> petstore_core::Result<String> {
        let unavailable =
            |why: String| Error::new(ErrorKind::Unavailable, format!("GET {}: {why}", self.url));
        let mut response = self
            .client
            .get(self.url.clone())
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(|e| unavailable(e.to_string()))?;
        if !response.status().is_success() {
            return Err(unavailable(format!("status {}", response.status())));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| unavailable(e.to_string()))?
        {
            if body.len() + chunk.len() > MAX_DOCUMENT_BYTES {
                return Err(unavailable(format!(
                    "the document is larger than {} KiB",
                    MAX_DOCUMENT_BYTES / 1024
                )));
            }
            body.extend_from_slice(&chunk);
        }
        String::from_utf8(body).map_err(|_| unavailable("the document is not UTF-8".to_owned()))
    }
}

/// The verifier for `--jwks-url`, `--jwt-issuer` and `--jwt-audience`, with its key set
/// loaded (a provider that cannot be reached at start is an error) and its
/// maintenance loop running on the current runtime (it ends with the verifier).
pub async fn verifier(url: &str, issuer: &str, audience: &str) -> anyhow::Result<JwksVerifier> {
    let source = HttpKeySource::new(url).context("--jwks-url")?;
    let verifier = JwksVerifier::new(source, JwksConfig::new(issuer, audience));
    let keys = verifier
        .refresh()
        .await
        .with_context(|| format!("loading the identity provider's keys from {url}"))?;
    tracing::info!(
        keys,
        url,
        issuer,
        audience,
        "accepting the identity provider's tokens"
    );
    tokio::spawn(verifier.maintain());
    Ok(verifier)
}
