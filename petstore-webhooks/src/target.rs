//! The SSRF guard. Webhook URLs come from users, so the address actually connected to
//! must be public: a DNS resolver that drops forbidden addresses (the check happens on
//! the resolved address used to connect, so DNS rebinding cannot slip past it), plus a
//! check of literal IP hosts, which never reach a resolver.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use reqwest::Url;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};

/// Which non-public targets are allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TargetPolicy {
    pub(crate) allow_private: bool,
    pub(crate) allow_loopback: bool,
}

/// The kind of a forbidden address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Restricted {
    Loopback,
    Private,
    LinkLocal,
    /// Unspecified, multicast, broadcast and reserved ranges: never a real receiver.
    Special,
}

impl Restricted {
    fn describe(self) -> &'static str {
        match self {
            Restricted::Loopback => "a loopback address",
            Restricted::Private => "a private address",
            Restricted::LinkLocal => "a link-local address",
            Restricted::Special => "a non-unicast or reserved address",
        }
    }
}

/// Classifies an address; `None` for a public one.
pub(crate) fn classify(ip: IpAddr) -> Option<Restricted> {
    match ip {
        IpAddr::V4(v4) => classify_v4(v4),
        IpAddr::V6(v6) => classify_v6(v6),
    }
}

fn classify_v4(ip: Ipv4Addr) -> Option<Restricted> {
    let [a, b, c, _] = ip.octets();
    if ip.is_loopback() {
        Some(Restricted::Loopback)
    } else if ip.is_private() || (a == 100 && (64..128).contains(&b)) {
        // RFC 1918 and the carrier-grade NAT range 100.64.0.0/10.
        Some(Restricted::Private)
    } else if ip.is_link_local() {
        // 169.254.0.0/16, home of cloud metadata services.
        Some(Restricted::LinkLocal)
    } else if a == 0 || ip.is_multicast() || ip.is_broadcast() || a >= 240 {
        // 0.0.0.0/8 (0.0.0.0 reaches the local host on Linux), multicast, reserved.
        Some(Restricted::Special)
    } else if (a == 198 && b & 0xfe == 18)
        || ip.is_documentation()
        || (a, b, c) == (192, 0, 0)
        || (a, b, c) == (192, 88, 99)
    {
        // Benchmarking 198.18.0.0/15 (often lab networks), the TEST-NETs, the IETF
        // protocol assignments 192.0.0.0/24 (NAT64 and DS-Lite gateways) and the
        // retired 6to4 relay anycast 192.88.99.0/24: never a webhook receiver.
        Some(Restricted::Special)
    } else {
        None
    }
}

fn classify_v6(ip: Ipv6Addr) -> Option<Restricted> {
    if let Some(v4) = embedded_v4(ip) {
        return classify_v4(v4);
    }
    let s = ip.segments();
    if ip.is_loopback() {
        Some(Restricted::Loopback)
    } else if s[0] & 0xfe00 == 0xfc00 || s[0] & 0xffc0 == 0xfec0 {
        // Unique local fc00::/7 and the deprecated site-local fec0::/10.
        Some(Restricted::Private)
    } else if s[..3] == [0x64, 0xff9b, 1] {
        // The local-use NAT64 prefix 64:ff9b:1::/48 (RFC 8215): a translator of this
        // network, with an embedding of its own choosing.
        Some(Restricted::Private)
    } else if s[0] & 0xffc0 == 0xfe80 {
        Some(Restricted::LinkLocal)
    } else if ip.is_unspecified() || ip.is_multicast() || s[..6] == [0; 6] {
        // `::`, multicast and the deprecated IPv4-compatible `::a.b.c.d`.
        Some(Restricted::Special)
    } else if s[..2] == [0x2001, 0]
        || s[..3] == [0x2001, 2, 0]
        || s[..2] == [0x2001, 0xdb8]
        || (s[0] == 0x3fff && s[1] < 0x1000)
        || s[..4] == [0x100, 0, 0, 0]
    {
        // Teredo 2001::/32 (a tunnel to an IPv4 host), benchmarking 2001:2::/48,
        // documentation 2001:db8::/32 and 3fff::/20, discard-only 100::/64.
        Some(Restricted::Special)
    } else {
        None
    }
}

/// The IPv4 address that an IPv6 address reaches through a standard mapping or
/// translation: IPv4-mapped `::ffff:a.b.c.d`, IPv4-translated `::ffff:0:a.b.c.d`
/// (SIIT), the NAT64 well-known prefix `64:ff9b::a.b.c.d` and 6to4 `2002:AABB:CCDD::/48`.
fn embedded_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    let v4 = |high: u16, low: u16| {
        let [a, b] = high.to_be_bytes();
        let [c, d] = low.to_be_bytes();
        Ipv4Addr::new(a, b, c, d)
    };
    match ip.segments() {
        [0, 0, 0, 0, 0, 0xffff, high, low]
        | [0, 0, 0, 0, 0xffff, 0, high, low]
        | [0x64, 0xff9b, 0, 0, 0, 0, high, low]
        | [0x2002, high, low, ..] => Some(v4(high, low)),
        _ => None,
    }
}

impl TargetPolicy {
    /// `Err` with the reason when `ip` may not be connected to.
    pub(crate) fn check(&self, ip: IpAddr) -> Result<(), String> {
        match classify(ip) {
            None => Ok(()),
            Some(_) if self.allow_private => Ok(()),
            Some(Restricted::Loopback) if self.allow_loopback => Ok(()),
            Some(kind) => Err(format!(
                "refused to connect to {ip}: {} (private, loopback and link-local targets are not allowed)",
                kind.describe()
            )),
        }
    }

    /// Checks a literal IP host of `url` (hostnames are checked when resolved).
    pub(crate) fn check_literal(&self, url: &Url) -> Result<(), String> {
        match literal_ip(url) {
            Some(ip) => self.check(ip),
            None => Ok(()),
        }
    }
}

fn literal_ip(url: &Url) -> Option<IpAddr> {
    let host = url.host_str()?;
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    host.parse().ok()
}

/// The longest webhook URL accepted, in characters.
pub(crate) const MAX_URL: usize = 2048;

/// Validates a webhook URL given by a user: absolute `http`/`https`, a host, no
/// fragment, and a literal IP host only when the policy allows it.
pub(crate) fn validate_url(raw: &str, policy: &TargetPolicy) -> Result<Url, String> {
    if raw.chars().count() > MAX_URL {
        return Err(format!("must be at most {MAX_URL} characters"));
    }
    let url = Url::parse(raw.trim()).map_err(|e| format!("is not an absolute URL: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!("must use http or https, not `{}`", url.scheme()));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err("must name a host".to_owned());
    }
    if url.fragment().is_some() {
        return Err("must not have a fragment".to_owned());
    }
    policy.check_literal(&url)?;
    Ok(url)
}

/// A resolver that only returns addresses the policy allows.
#[derive(Debug, Clone)]
pub(crate) struct GuardedResolver {
    pub(crate) policy: TargetPolicy,
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let policy = self.policy;
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let resolved: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let mut refused = None;
            let allowed: Vec<SocketAddr> = resolved
                .into_iter()
                .filter(|addr| match policy.check(addr.ip()) {
                    Ok(()) => true,
                    Err(reason) => {
                        refused.get_or_insert(reason);
                        false
                    }
                })
                .collect();
            if allowed.is_empty() {
                let reason = refused.unwrap_or_else(|| "no address found".to_owned());
                return Err(format!("`{host}`: {reason}").into());
            }
            let addrs: Addrs = Box::new(allowed.into_iter());
            Ok(addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STRICT: TargetPolicy = TargetPolicy {
        allow_private: false,
        allow_loopback: false,
    };

    #[test]
    fn classifies_the_usual_suspects() {
        let cases = [
            ("127.0.0.1", Some(Restricted::Loopback)),
            ("127.8.9.10", Some(Restricted::Loopback)),
            ("::1", Some(Restricted::Loopback)),
            ("::ffff:127.0.0.1", Some(Restricted::Loopback)),
            ("10.1.2.3", Some(Restricted::Private)),
            ("172.16.0.1", Some(Restricted::Private)),
            ("192.168.1.1", Some(Restricted::Private)),
            ("100.64.0.1", Some(Restricted::Private)),
            ("fd00::1", Some(Restricted::Private)),
            ("169.254.169.254", Some(Restricted::LinkLocal)),
            ("fe80::1", Some(Restricted::LinkLocal)),
            ("64:ff9b::a9fe:a9fe", Some(Restricted::LinkLocal)),
            ("0.0.0.0", Some(Restricted::Special)),
            ("::", Some(Restricted::Special)),
            ("224.0.0.1", Some(Restricted::Special)),
            ("255.255.255.255", Some(Restricted::Special)),
            ("::127.0.0.1", Some(Restricted::Special)),
            // IPv4-translated (SIIT), the local-use NAT64 prefix, 6to4, Teredo.
            ("::ffff:0:a00:1", Some(Restricted::Private)),
            ("::ffff:0:7f00:1", Some(Restricted::Loopback)),
            ("::ffff:0:a9fe:a9fe", Some(Restricted::LinkLocal)),
            ("64:ff9b:1::a00:1", Some(Restricted::Private)),
            ("64:ff9b:1:ffff::5db8:d70e", Some(Restricted::Private)),
            ("64:ff9b::a00:1", Some(Restricted::Private)),
            ("64:ff9b::7f00:1", Some(Restricted::Loopback)),
            ("2002:a00:1::", Some(Restricted::Private)),
            ("2002:7f00:1::1", Some(Restricted::Loopback)),
            ("2002:a9fe:a9fe::", Some(Restricted::LinkLocal)),
            ("2002:c0a8:101:1::1", Some(Restricted::Private)),
            (
                "2001:0:4136:e378:8000:63bf:f5ff:fffe",
                Some(Restricted::Special),
            ),
            ("2001:db8::1", Some(Restricted::Special)),
            ("2001:db8:ffff::1", Some(Restricted::Special)),
            ("3fff::1", Some(Restricted::Special)),
            ("3fff:fff::1", Some(Restricted::Special)),
            ("2001:2::1", Some(Restricted::Special)),
            ("100::", Some(Restricted::Special)),
            ("100::ffff:ffff:ffff:ffff", Some(Restricted::Special)),
            ("198.18.0.1", Some(Restricted::Special)),
            ("198.19.255.254", Some(Restricted::Special)),
            ("192.0.2.1", Some(Restricted::Special)),
            ("198.51.100.7", Some(Restricted::Special)),
            ("203.0.113.9", Some(Restricted::Special)),
            ("192.0.0.170", Some(Restricted::Special)),
            ("192.88.99.1", Some(Restricted::Special)),
            // Public addresses, in every form that embeds one, stay reachable.
            ("93.184.215.14", None),
            ("2606:4700::6810:84e5", None),
            ("172.32.0.1", None),
            ("198.17.255.255", None),
            ("198.20.0.1", None),
            ("100.128.0.1", None),
            ("::ffff:0:5db8:d70e", None),
            ("64:ff9b::5db8:d70e", None),
            ("2002:5db8:d70e::1", None),
            ("2001:4860:4860::8888", None),
            ("2001:db9::1", None),
            ("3fff:1000::1", None),
            ("100:0:0:1::", None),
        ];
        for (ip, want) in cases {
            assert_eq!(classify(ip.parse().unwrap()), want, "{ip}");
        }
    }

    #[test]
    fn policy_opens_loopback_or_everything() {
        let lo: IpAddr = "127.0.0.1".parse().unwrap();
        let private: IpAddr = "10.0.0.1".parse().unwrap();
        assert!(STRICT.check(lo).is_err());
        let loopback = TargetPolicy {
            allow_private: false,
            allow_loopback: true,
        };
        assert!(loopback.check(lo).is_ok());
        assert!(loopback.check(private).is_err());
        let open = TargetPolicy {
            allow_private: true,
            allow_loopback: false,
        };
        assert!(open.check(lo).is_ok() && open.check(private).is_ok());
    }

    #[test]
    fn urls_are_validated() {
        assert!(validate_url("https://example.com/hook", &STRICT).is_ok());
        for bad in [
            "ftp://example.com/",
            "/relative",
            "http://127.0.0.1:8080/",
            "http://[::1]/",
            "http://2130706433/",
            "http://0x7f.1/",
            "http://169.254.169.254/latest/meta-data",
            "https://example.com/#frag",
        ] {
            assert!(validate_url(bad, &STRICT).is_err(), "{bad}");
        }
    }
}
