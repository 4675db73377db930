//! The client's address: the TCP peer, or what trusted proxies say it was.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use axum::http::{HeaderMap, HeaderName};
use ipnet::IpNet;

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const FORWARDED: HeaderName = HeaderName::from_static("forwarded");

/// The proxies whose `Forwarded` (RFC 7239) and `X-Forwarded-For` headers are believed.
///
/// The default trusts nobody: the client address is the TCP peer's, and forwarding
/// headers are ignored (anyone can send them). Behind a reverse proxy or load balancer,
/// list its addresses: the client is then the nearest address in the forwarding chain
/// that is not a trusted proxy.
///
/// ```
/// use petstore_http::TrustedProxies;
/// use axum::http::HeaderMap;
///
/// let proxies: TrustedProxies = "10.0.0.0/8, 127.0.0.1".parse().unwrap();
/// let mut headers = HeaderMap::new();
/// headers.insert("x-forwarded-for", "203.0.113.9, 10.1.2.3".parse().unwrap());
/// let peer = "10.0.0.1".parse().ok();
/// assert_eq!(proxies.client_ip(peer, &headers), "203.0.113.9".parse().ok());
/// // From an untrusted peer the header is ignored.
/// let peer = "198.51.100.4".parse().ok();
/// assert_eq!(proxies.client_ip(peer, &headers), peer);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies(Vec<IpNet>);

/// A trusted-proxy list that does not parse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidProxy(String);

impl fmt::Display for InvalidProxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "`{}` is not an IP address or CIDR range (e.g. 10.0.0.0/8)",
            self.0
        )
    }
}

impl std::error::Error for InvalidProxy {}

impl TrustedProxies {
    /// Trusts nobody (the default).
    pub fn none() -> Self {
        Self::default()
    }

    /// Trusts these ranges.
    pub fn new(ranges: impl IntoIterator<Item = IpNet>) -> Self {
        Self(ranges.into_iter().collect())
    }

    /// Whether nobody is trusted.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether `ip` is a trusted proxy.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.0.iter().any(|net| net.contains(&ip))
    }

    /// The client's address: the TCP `peer` unless it is a trusted proxy; then, walking
    /// the forwarding chain (`Forwarded` if present, else `X-Forwarded-For`) from the
    /// nearest hop outwards, the first address that is not a trusted proxy. A hop that
    /// is not an address (`unknown`, an obfuscated name, garbage) ends the walk at the
    /// last address known: that one is then counted as the client, which is never more
    /// generous than believing what comes before it.
    pub fn client_ip(&self, peer: Option<IpAddr>, headers: &HeaderMap) -> Option<IpAddr> {
        let mut client = canonical(peer?);
        if self.is_empty() || !self.contains(client) {
            return Some(client);
        }
        let hops = if headers.contains_key(FORWARDED) {
            forwarded_for(headers)
        } else {
            x_forwarded_for(headers)
        };
        for hop in hops.iter().rev() {
            let Some(ip) = hop else { break };
            client = canonical(*ip);
            if !self.contains(client) {
                break;
            }
        }
        Some(client)
    }
}

impl FromStr for TrustedProxies {
    type Err = InvalidProxy;

    /// A comma- or space-separated list of addresses and CIDR ranges.
    fn from_str(s: &str) -> Result<Self, InvalidProxy> {
        s.split([',', ' '])
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|item| {
                item.parse::<IpNet>()
                    .or_else(|_| item.parse::<IpAddr>().map(IpNet::from))
                    .map_err(|_| InvalidProxy(item.to_owned()))
            })
            .collect::<Result<_, _>>()
            .map(Self)
    }
}

/// An IPv4-mapped IPv6 address as the IPv4 address it is.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// The `X-Forwarded-For` hops, client first, across every header line.
fn x_forwarded_for(headers: &HeaderMap) -> Vec<Option<IpAddr>> {
    headers
        .get_all(X_FORWARDED_FOR)
        .iter()
        .flat_map(|line| line.to_str().unwrap_or("\u{fffd}").split(','))
        .map(|hop| hop.trim().parse().ok())
        .collect()
}

/// The `for=` of each `Forwarded` element (RFC 7239), client first.
fn forwarded_for(headers: &HeaderMap) -> Vec<Option<IpAddr>> {
    headers
        .get_all(FORWARDED)
        .iter()
        .flat_map(|line| line.to_str().unwrap_or("\u{fffd}").split(','))
        .map(|element| {
            element
                .split(';')
                .filter_map(|pair| pair.split_once('='))
                .find(|(key, _)| key.trim().eq_ignore_ascii_case("for"))
                .and_then(|(_, value)| node_ip(value.trim()))
        })
        .collect()
}

/// The address of an RFC 7239 node: `192.0.2.60`, `"192.0.2.60:4711"`,
/// `"[2001:db8::17]:4711"`; `unknown` and obfuscated names have none.
fn node_ip(value: &str) -> Option<IpAddr> {
    let value = value
        .strip_prefix('"')
        .and_then(|v| v.strip_suffix('"'))
        .unwrap_or(value);
    if let Some(rest) = value.strip_prefix('[') {
        return rest.split_once(']')?.0.parse().ok();
    }
    value
        .parse()
        .ok()
        .or_else(|| value.rsplit_once(':')?.0.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (name, value) in pairs {
            h.append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                value.parse().unwrap(),
            );
        }
        h
    }

    fn ip(s: &str) -> Option<IpAddr> {
        Some(s.parse().unwrap())
    }

    #[test]
    fn nobody_is_trusted_by_default() {
        let h = headers(&[("x-forwarded-for", "1.2.3.4"), ("forwarded", "for=1.2.3.4")]);
        assert_eq!(
            TrustedProxies::none().client_ip(ip("10.0.0.1"), &h),
            ip("10.0.0.1")
        );
        assert_eq!(TrustedProxies::none().client_ip(None, &h), None);
    }

    #[test]
    fn the_chain_is_walked_from_the_nearest_hop() {
        let proxies: TrustedProxies = "10.0.0.0/8 ::1".parse().unwrap();
        // A client that forges a first hop cannot move past the real one.
        let h = headers(&[
            ("x-forwarded-for", "6.6.6.6"),
            ("x-forwarded-for", "203.0.113.9, 10.0.0.2"),
        ]);
        assert_eq!(proxies.client_ip(ip("10.0.0.1"), &h), ip("203.0.113.9"));
        assert_eq!(proxies.client_ip(ip("::1"), &h), ip("203.0.113.9"));
        assert_eq!(
            proxies.client_ip(ip("::ffff:10.0.0.1"), &h),
            ip("203.0.113.9")
        );
        // Every hop trusted: the farthest one.
        let h = headers(&[("x-forwarded-for", "10.9.9.9, 10.0.0.2")]);
        assert_eq!(proxies.client_ip(ip("10.0.0.1"), &h), ip("10.9.9.9"));
        // Garbage stops the walk at the last address known.
        let h = headers(&[("x-forwarded-for", "1.2.3.4, nonsense, 10.0.0.2")]);
        assert_eq!(proxies.client_ip(ip("10.0.0.1"), &h), ip("10.0.0.2"));
        // No header: the proxy itself.
        assert_eq!(
            proxies.client_ip(ip("10.0.0.1"), &HeaderMap::new()),
            ip("10.0.0.1")
        );
    }

    #[test]
    fn forwarded_wins_over_x_forwarded_for() {
        let proxies: TrustedProxies = "10.0.0.0/8".parse().unwrap();
        let h = headers(&[
            ("x-forwarded-for", "1.1.1.1"),
            (
                "forwarded",
                r#"for="[2001:db8:cafe::17]:4711";proto=https, for=10.0.0.5:80;by=10.0.0.1"#,
            ),
        ]);
        assert_eq!(
            proxies.client_ip(ip("10.0.0.1"), &h),
            ip("2001:db8:cafe::17")
        );
        let h = headers(&[("forwarded", "for=unknown, for=10.0.0.5")]);
        assert_eq!(proxies.client_ip(ip("10.0.0.1"), &h), ip("10.0.0.5"));
        let h = headers(&[("forwarded", "For=\"198.51.100.7\"")]);
        assert_eq!(proxies.client_ip(ip("10.0.0.1"), &h), ip("198.51.100.7"));
    }

    #[test]
    fn lists_parse_and_refuse_garbage() {
        let p: TrustedProxies = "192.168.0.0/16,127.0.0.1 , fd00::/8".parse().unwrap();
        assert!(p.contains("192.168.3.4".parse().unwrap()));
        assert!(p.contains("fd12::1".parse().unwrap()));
        assert!(!p.contains("127.0.0.2".parse().unwrap()));
        assert!("".parse::<TrustedProxies>().unwrap().is_empty());
        let e = "10.0.0.0/33".parse::<TrustedProxies>().unwrap_err();
        assert!(e.to_string().contains("10.0.0.0/33"));
    }
}
