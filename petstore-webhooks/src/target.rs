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
    let [a, b, ..] = ip.octets();
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
    } else {
        None
    }
}

fn classify_v6(ip: Ipv6Addr) -> Option<Restricted> {
    if let Some(v4) = ip.to_ipv4_mapped() {
        return classify_v4(v4);
    }
    let s = ip.segments();
    // NAT64 (64:ff9b::/96) embeds an IPv4 address that the gateway connects to.
    if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        let [a, b] = s[6].to_be_bytes();
        let [c, d] = s[7].to_be_bytes();
        return classify_v4(Ipv4Addr::new(a, b, c, d));
    }
    if ip.is_loopback() {
        Some(Restricted::Loopback)
    } else if s[0] & 0xfe00 == 0xfc00 || s[0] & 0xffc0 == 0xfec0 {
        // Unique local fc00::/7 and the deprecated site-local fec0::/10.
        Some(Restricted::Private)
    } else if s[0] & 0xffc0 == 0xfe80 {
        Some(Restricted::LinkLocal)
    } else if ip.is_unspecified() || ip.is_multicast() || s[..6] == [0; 6] {
        // `::`, multicast and the deprecated IPv4-compatible `::a.b.c.d`.
        Some(Restricted::Special)
    } else {
        None
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

/// Validates a webhook URL given by a user: absolute `http`/`https`, a host, no
/// fragment, and a literal IP host only when the policy allows it.
pub(crate) fn validate_url(raw: &str, policy: &TargetPolicy) -> Result<Url, String> {
    if raw.len() > 2048 {
        return Err("must be at most 2048 characters".to_owned());
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
            ("93.184.215.14", None),
            ("2606:4700::6810:84e5", None),
            ("172.32.0.1", None),
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
