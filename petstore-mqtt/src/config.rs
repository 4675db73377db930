//! The bridge's settings.

use std::path::PathBuf;
use std::time::Duration;

use petstore_core::{Error, Result, ResumeToken, Scope};
use serde::{Deserialize, Serialize};

/// MQTT delivery guarantee of the bridge's publications.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum QoS {
    /// QoS 0: fire and forget. The bridge counts an event as delivered once written
    /// to the socket, so a broker outage can lose events.
    AtMostOnce,
    /// QoS 1 (default): the broker acknowledges every message; the bridge resumes
    /// from the last acknowledged event after an outage.
    #[default]
    AtLeastOnce,
    /// QoS 2: acknowledged exactly once by the broker (slower; after an outage the
    /// bridge still republishes from the last completed event).
    ExactlyOnce,
}

impl QoS {
    pub(crate) fn v4(self) -> rumqttc::QoS {
        match self {
            QoS::AtMostOnce => rumqttc::QoS::AtMostOnce,
            QoS::AtLeastOnce => rumqttc::QoS::AtLeastOnce,
            QoS::ExactlyOnce => rumqttc::QoS::ExactlyOnce,
        }
    }

    pub(crate) fn v5(self) -> rumqttc::v5::mqttbytes::QoS {
        use rumqttc::v5::mqttbytes::QoS as Q;
        match self {
            QoS::AtMostOnce => Q::AtMostOnce,
            QoS::AtLeastOnce => Q::AtLeastOnce,
            QoS::ExactlyOnce => Q::ExactlyOnce,
        }
    }
}

/// The MQTT protocol version the bridge speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum MqttVersion {
    /// MQTT 3.1.1: no user properties, and inbound commands get no reply (there is
    /// no response topic); they still run and are logged.
    #[serde(rename = "3.1.1")]
    V311,
    /// MQTT 5 (default): user properties on every event and request/response
    /// commands.
    #[default]
    #[serde(rename = "5")]
    V5,
}

/// Where the bridge starts reading the event log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum StartFrom {
    /// The oldest event the log still retains (default): retained topics such as
    /// `pets/{id}/status` then cover every retained pet event, seed data included.
    #[default]
    Oldest,
    /// Only events appended after the bridge started.
    Head,
    /// The events after this position (for example the `last_acked` a previous run of
    /// the bridge reported, over a persistent store).
    After(ResumeToken),
}

/// Settings of the [`Bridge`](crate::Bridge).
///
/// ```
/// use petstore_mqtt::{MqttConfig, QoS};
///
/// let config = MqttConfig::default()
///     .url("mqtt://127.0.0.1:1883")
///     .client_id("petstore-eu-1")
///     .topic_prefix("shop/")
///     .qos(QoS::AtLeastOnce);
/// assert_eq!(config.topic_prefix, "shop/");
/// ```
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct MqttConfig {
    /// Broker URL: `mqtt://host:port` (port 1883 by default) or `mqtts://host:port`
    /// (TLS with rustls, port 8883 by default).
    pub url: String,
    /// The bridge's MQTT client id; with [`MqttConfig::unique_client_id`] (the
    /// default) the start of it.
    pub client_id: String,
    /// Connect as `{client_id}-{32 random hex digits}`, new for every
    /// [`Bridge::start`](crate::Bridge::start) (default true). MQTT lets any client
    /// with the same id take over a connection, and brokers such as Mosquitto cannot
    /// reserve an id for one user: an id nobody can guess cannot be taken. It also
    /// keeps several instances on one broker from knocking each other off. Turn it off
    /// only for brokers that tie the id to the bridge's credentials.
    pub unique_client_id: bool,
    /// Broker user name.
    pub username: Option<String>,
    /// Broker password (sent only with a user name; never printed by `Debug`).
    #[serde(skip_serializing)]
    pub password: Option<Password>,
    /// Prefix of every topic, `petstore/` by default. A missing trailing `/` is added.
    pub topic_prefix: String,
    /// QoS of event publications (and of the command subscription).
    pub qos: QoS,
    /// Protocol version.
    pub version: MqttVersion,
    /// Over MQTT 5, attach the user properties `event-type`, `offset` and `event-id`
    /// and the content type to event publications (default true). Turn it off for
    /// brokers that cannot forward properties to MQTT 3.1.1 subscribers: rumqttd 0.20
    /// panics on that, so the embedded broker runs without them. Command replies keep
    /// their correlation data either way.
    pub event_properties: bool,
    /// How many events may be in flight (published, not yet acknowledged) at once.
    /// The bridge stops reading the log when the window is full; the log never waits
    /// for the bridge (a bridge that falls too far behind resumes from its last
    /// acknowledged event).
    pub queue_len: usize,
    /// MQTT keep-alive interval.
    #[serde(with = "humantime_serde")]
    pub keep_alive: Duration,
    /// First delay before reconnecting after a broker outage; it doubles up to
    /// [`MqttConfig::max_reconnect_delay`].
    #[serde(with = "humantime_serde")]
    pub reconnect_delay: Duration,
    /// Longest delay between reconnection attempts.
    #[serde(with = "humantime_serde")]
    pub max_reconnect_delay: Duration,
    /// Where to start in the event log.
    pub start_from: StartFrom,
    /// Whether inbound commands on `{prefix}commands/#` are accepted (MQTT 5 only:
    /// each command carries its caller's token in the user property
    /// `authorization` and runs as that caller).
    pub commands: bool,
    /// Subject of the principal the bridge reads the event log as.
    pub principal: String,
    /// Scopes of that principal: it publishes every event, every customer's orders
    /// included, so `admin` by default. It never runs commands.
    pub scopes: Vec<Scope>,
    /// PEM file with the CA certificates that `mqtts://` trusts; the platform's root
    /// certificates when unset.
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate chain for TLS client authentication (needs
    /// [`MqttConfig::client_key_file`] and [`MqttConfig::ca_file`]).
    pub client_cert_file: Option<PathBuf>,
    /// PEM private key of [`MqttConfig::client_cert_file`].
    pub client_key_file: Option<PathBuf>,
}

impl Default for MqttConfig {
    fn default() -> Self {
        Self {
            url: "mqtt://127.0.0.1:1883".to_owned(),
            client_id: "petstore-bridge".to_owned(),
            unique_client_id: true,
            username: None,
            password: None,
            topic_prefix: "petstore/".to_owned(),
            qos: QoS::AtLeastOnce,
            version: MqttVersion::V5,
            event_properties: true,
            queue_len: 256,
            keep_alive: Duration::from_secs(30),
            reconnect_delay: Duration::from_millis(250),
            max_reconnect_delay: Duration::from_secs(10),
            start_from: StartFrom::Oldest,
            commands: true,
            principal: "mqtt-bridge".to_owned(),
            scopes: vec![Scope::Admin],
            ca_file: None,
            client_cert_file: None,
            client_key_file: None,
        }
    }
}

impl std::fmt::Debug for MqttConfig {
    /// The URL as [`MqttConfig::display_url`] shows it; the password as `<redacted>`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MqttConfig")
            .field("url", &self.display_url())
            .field("client_id", &self.client_id)
            .field("unique_client_id", &self.unique_client_id)
            .field("username", &self.username)
            .field("password", &self.password)
            .field("topic_prefix", &self.topic_prefix)
            .field("qos", &self.qos)
            .field("version", &self.version)
            .field("event_properties", &self.event_properties)
            .field("queue_len", &self.queue_len)
            .field("keep_alive", &self.keep_alive)
            .field("reconnect_delay", &self.reconnect_delay)
            .field("max_reconnect_delay", &self.max_reconnect_delay)
            .field("start_from", &self.start_from)
            .field("commands", &self.commands)
            .field("principal", &self.principal)
            .field("scopes", &self.scopes)
            .field("ca_file", &self.ca_file)
            .field("client_cert_file", &self.client_cert_file)
            .field("client_key_file", &self.client_key_file)
            .finish()
    }
}

impl MqttConfig {
    /// [`MqttConfig::url`] for messages and logs: any user-info (`user:password@`)
    /// replaced by `***@`. (Such a URL is refused; its error must not print it.)
    pub fn display_url(&self) -> String {
        Self::redact_url(&self.url)
    }

    /// Any broker URL as [`MqttConfig::display_url`] shows it, for one not (yet) in a
    /// config (a command-line flag, say).
    pub fn redact_url(url: &str) -> String {
        without_credentials(url)
    }

    /// Sets [`MqttConfig::url`].
    pub fn url(mut self, url: impl Into<String>) -> Self {
        self.url = url.into();
        self
    }

    /// Sets [`MqttConfig::client_id`].
    pub fn client_id(mut self, id: impl Into<String>) -> Self {
        self.client_id = id.into();
        self
    }

    /// Sets [`MqttConfig::unique_client_id`].
    pub fn unique_client_id(mut self, yes: bool) -> Self {
        self.unique_client_id = yes;
        self
    }

    /// Sets [`MqttConfig::username`] and [`MqttConfig::password`].
    pub fn credentials(mut self, username: impl Into<String>, password: impl Into<String>) -> Self {
        self.username = Some(username.into());
        self.password = Some(Password(password.into()));
        self
    }

    /// Sets [`MqttConfig::topic_prefix`].
    pub fn topic_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.topic_prefix = prefix.into();
        self
    }

    /// Sets [`MqttConfig::qos`].
    pub fn qos(mut self, qos: QoS) -> Self {
        self.qos = qos;
        self
    }

    /// Sets [`MqttConfig::version`].
    pub fn version(mut self, version: MqttVersion) -> Self {
        self.version = version;
        self
    }

    /// Sets [`MqttConfig::event_properties`].
    pub fn event_properties(mut self, yes: bool) -> Self {
        self.event_properties = yes;
        self
    }

    /// Sets [`MqttConfig::queue_len`] (at least 1).
    pub fn queue_len(mut self, n: usize) -> Self {
        self.queue_len = n.max(1);
        self
    }

    /// Sets [`MqttConfig::keep_alive`].
    pub fn keep_alive(mut self, every: Duration) -> Self {
        self.keep_alive = every;
        self
    }

    /// Sets [`MqttConfig::reconnect_delay`] and [`MqttConfig::max_reconnect_delay`].
    pub fn reconnect_delay(mut self, first: Duration, max: Duration) -> Self {
        self.reconnect_delay = first;
        self.max_reconnect_delay = max.max(first);
        self
    }

    /// Sets [`MqttConfig::start_from`].
    pub fn start_from(mut self, start: StartFrom) -> Self {
        self.start_from = start;
        self
    }

    /// Sets [`MqttConfig::commands`].
    pub fn commands(mut self, enabled: bool) -> Self {
        self.commands = enabled;
        self
    }

    /// Sets the principal the bridge reads the log as ([`MqttConfig::principal`] and
    /// [`MqttConfig::scopes`]).
    pub fn principal(
        mut self,
        subject: impl Into<String>,
        scopes: impl IntoIterator<Item = Scope>,
    ) -> Self {
        self.principal = subject.into();
        self.scopes = scopes.into_iter().collect();
        self
    }

    /// Sets [`MqttConfig::ca_file`].
    pub fn ca_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.ca_file = Some(path.into());
        self
    }

    /// Sets [`MqttConfig::client_cert_file`] and [`MqttConfig::client_key_file`].
    pub fn client_auth(mut self, cert: impl Into<PathBuf>, key: impl Into<PathBuf>) -> Self {
        self.client_cert_file = Some(cert.into());
        self.client_key_file = Some(key.into());
        self
    }

    /// The client id to connect with (see [`MqttConfig::unique_client_id`]).
    pub(crate) fn connect_client_id(&self) -> String {
        if self.unique_client_id {
            format!("{}-{}", self.client_id, uuid::Uuid::new_v4().simple())
        } else {
            self.client_id.clone()
        }
    }

    /// The prefix with exactly one trailing `/` (empty stays empty).
    pub(crate) fn prefix(&self) -> String {
        let p = self.topic_prefix.trim_end_matches('/');
        if p.is_empty() {
            String::new()
        } else {
            format!("{p}/")
        }
    }

    pub(crate) fn validate(&self) -> Result<Broker> {
        let prefix = self.prefix();
        if prefix.contains(['+', '#', '\0']) || prefix.starts_with('$') {
            return Err(Error::invalid_field(
                "topic_prefix",
                "must not contain `+`, `#` or NUL, nor start with `$`",
            ));
        }
        // Room for the `-{32 hex digits}` of a unique id.
        let max = if self.unique_client_id {
            65_535 - 33
        } else {
            65_535
        };
        if self.client_id.is_empty() || self.client_id.len() > max {
            return Err(Error::invalid_field(
                "client_id",
                format!("must be 1 to {max} bytes"),
            ));
        }
        if self.client_cert_file.is_some() != self.client_key_file.is_some() {
            return Err(Error::invalid_field(
                "client_key_file",
                "a client certificate needs its key, and a key its certificate",
            ));
        }
        Broker::parse(&self.url)
    }
}

/// A parsed broker URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Broker {
    pub(crate) host: String,
    pub(crate) port: u16,
    pub(crate) tls: bool,
}

/// `url` with the user-info of its authority, if any, replaced by `***`.
/// Everything up to the last `@`, scheme or not, is taken for user-info: a password
/// may hold `/`, `?` or `#`, and a URL with an `@` is refused anyway, so hiding too
/// much costs nothing.
fn without_credentials(url: &str) -> String {
    let Some(at) = url.rfind('@') else {
        return url.to_owned();
    };
    match url.split_once("://") {
        Some((scheme, rest)) if rest.len() > url.len() - at => {
            format!("{scheme}://***{}", &url[at..])
        }
        _ => format!("***{}", &url[at..]),
    }
}

impl Broker {
    pub(crate) fn parse(url: &str) -> Result<Self> {
        let shown = without_credentials(url);
        let bad = |why: &str| Error::invalid_field("url", format!("`{shown}`: {why}"));
        let (scheme, rest) = url
            .split_once("://")
            .ok_or_else(|| bad("expected mqtt://host:port or mqtts://host:port"))?;
        let (tls, default_port) = match scheme {
            "mqtt" | "tcp" => (false, 1883),
            "mqtts" | "ssl" => (true, 8883),
            _ => return Err(bad("the scheme must be mqtt or mqtts")),
        };
        let authority = rest.trim_end_matches('/');
        if authority.contains(['/', '?', '#', '@']) {
            return Err(bad(
                "only host and port are allowed (set credentials with MqttConfig::credentials)",
            ));
        }
        let (host, port) = match authority.strip_prefix('[') {
            // [v6]:port
            Some(v6) => {
                let (host, after) = v6.split_once(']').ok_or_else(|| bad("unclosed `[`"))?;
                match after.strip_prefix(':') {
                    Some(port) => (host, Some(port)),
                    None if after.is_empty() => (host, None),
                    None => return Err(bad("garbage after the IPv6 address")),
                }
            }
            None => match authority.rsplit_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (authority, None),
            },
        };
        if host.is_empty() {
            return Err(bad("the host is missing"));
        }
        let port = match port {
            Some(p) => p.parse().map_err(|_| bad("the port is not a number"))?,
            None => default_port,
        };
        Ok(Self {
            host: host.to_owned(),
            port,
            tls,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_broker_urls() {
        let b = Broker::parse("mqtt://127.0.0.1:1884").unwrap();
        assert_eq!((b.host.as_str(), b.port, b.tls), ("127.0.0.1", 1884, false));
        let b = Broker::parse("mqtts://broker.example.com").unwrap();
        assert_eq!(
            (b.host.as_str(), b.port, b.tls),
            ("broker.example.com", 8883, true)
        );
        let b = Broker::parse("mqtt://[::1]:1999/").unwrap();
        assert_eq!((b.host.as_str(), b.port), ("::1", 1999));
        for bad in [
            "127.0.0.1:1883",
            "http://x:1",
            "mqtt://",
            "mqtt://h:port",
            "mqtt://u:p@h:1",
            "mqtt://h:1/topic",
        ] {
            assert!(Broker::parse(bad).is_err(), "{bad}");
        }
    }

    /// A password in the URL is refused without being repeated, in the error and in
    /// the URL shown in logs.
    #[test]
    fn credentials_in_a_url_are_never_shown() {
        for url in [
            "mqtt://user:s3cr3t-pw@broker:1883",
            "mqtts://s3cr3t-pw@broker",
            "mqtt://a@b:s3cr3t-pw@broker:1883/x",
            "mqtt://user:s3cr3t/pw?#@broker:1883",
            "user:s3cr3t-pw@broker:1883",
        ] {
            let Err(error) = Broker::parse(url) else {
                panic!("{url} is taken")
            };
            let error = error.to_string();
            assert!(!error.contains("s3cr3t"), "{error}");
            assert!(error.contains("***@broker"), "{error}");
            let config = MqttConfig::default().url(url);
            let shown = config.display_url();
            assert!(
                !shown.contains("s3cr3t") && shown.contains("***@broker"),
                "{shown}"
            );
            let debug = format!("{config:?}");
            assert!(
                !debug.contains("s3cr3t") && debug.contains("***@broker"),
                "{debug}"
            );
        }
        let plain = MqttConfig::default()
            .url("mqtt://broker:1883/")
            .display_url();
        assert_eq!(plain, "mqtt://broker:1883/");
    }

    #[test]
    fn prefix_is_normalised_and_checked() {
        assert_eq!(MqttConfig::default().topic_prefix("shop").prefix(), "shop/");
        assert_eq!(MqttConfig::default().topic_prefix("a/b//").prefix(), "a/b/");
        assert_eq!(MqttConfig::default().topic_prefix("").prefix(), "");
        assert!(
            MqttConfig::default()
                .topic_prefix("a/#")
                .validate()
                .is_err()
        );
        assert!(
            MqttConfig::default()
                .topic_prefix("$SYS")
                .validate()
                .is_err()
        );
        assert!(MqttConfig::default().validate().is_ok());
    }
}

/// A broker password: `Debug` prints `<redacted>` so that logging a config never leaks it.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Password(String);

impl Password {
    /// A password.
    pub fn new(password: impl Into<String>) -> Self {
        Self(password.into())
    }

    /// The password text.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

#[cfg(test)]
mod redaction_tests {
    use super::*;

    #[test]
    fn debug_never_prints_the_password() {
        let config = MqttConfig::default().credentials("bridge", "s3cret-pass");
        let printed = format!("{config:?}");
        assert!(!printed.contains("s3cret-pass"), "{printed}");
        assert!(printed.contains("<redacted>"), "{printed}");
        assert_eq!(config.password.unwrap().expose(), "s3cret-pass");
    }
}
