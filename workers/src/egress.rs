//! The egress guard: requests Longshore makes on a user's behalf (webhook deliveries, `http`
//! jobs) may not reach inside the network it runs in, unless the config allows it.
//!
//! Refused: loopback, private (RFC 1918, unique local), link-local (the cloud metadata
//! address among them), CGNAT, unspecified, multicast, broadcast, documentation and reserved
//! ranges, and IPv4 addresses written as IPv6. The check is made on the addresses the
//! connection actually dials: the client's resolver returns only the permitted addresses of
//! a name (so a name that resolves to a private address is refused before any connection,
//! and a second lookup cannot rebind it), and a URL that names an address is checked before
//! the request is sent. Redirects are not followed and no proxy is used.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};

/// A network written `address/prefix` (or a lone address).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Network {
    address: IpAddr,
    prefix: u8,
}

impl std::str::FromStr for Network {
    type Err = String;
    fn from_str(text: &str) -> Result<Network, String> {
        let bad = || format!("{text:?} is not an address or address/prefix, e.g. 10.0.0.0/8");
        let (address, prefix) = match text.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (text, None),
        };
        let address: IpAddr = address.trim().parse().map_err(|_| bad())?;
        let max = if address.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) => p
                .trim()
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(bad)?,
            None => max,
        };
        Ok(Network { address, prefix })
    }
}

impl Network {
    /// Whether `ip` is in it.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.address, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

/// Whether an address is inside the network (or otherwise not a public destination).
pub fn is_internal(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => internal_v4(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return internal_v4(v4);
            }
            let first = v6.segments()[0];
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00 // unique local, fc00::/7
                || (first & 0xffc0) == 0xfe80 // link-local, fe80::/10
                || (first == 0x2001 && v6.segments()[1] == 0x0db8) // documentation
                || first == 0x0064 // NAT64 64:ff9b::/96 reaches IPv4 space
                || v6 == Ipv6Addr::from([0, 0, 0, 0, 0, 0, 0, 1])
                || v6.segments()[..6] == [0; 6] // IPv4-compatible ::a.b.c.d
        }
    }
}

fn internal_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local() // 169.254.0.0/16: the metadata address 169.254.169.254
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_multicast()
        || a == 0
        || (a == 100 && (64..128).contains(&b)) // CGNAT 100.64.0.0/10
        || (a == 192 && b == 0 && c == 0) // IETF 192.0.0.0/24
        || (a == 192 && b == 0 && c == 2) // documentation
        || (a == 198 && (b == 18 || b == 19)) // benchmarking
        || (a == 198 && b == 51 && c == 100)
        || (a == 203 && b == 0 && c == 113)
        || a >= 240 // reserved
}

/// `[egress]`: what requests made on a user's behalf may reach inside the network.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EgressConfig {
    /// Addresses and networks (`10.1.0.0/16`, `127.0.0.1`) that may be dialled although
    /// they are internal. Defaults to none.
    pub allow: Vec<String>,
}

impl EgressConfig {
    /// The guard the config names, or the first bad entry.
    pub fn guard(&self) -> Result<Egress, (String, String)> {
        let allow = self
            .allow
            .iter()
            .enumerate()
            .map(|(i, entry)| entry.parse().map_err(|e| (format!("allow[{i}]"), e)))
            .collect::<Result<Vec<Network>, _>>()?;
        Ok(Egress::new(allow))
    }
}

/// What may be dialled.
#[derive(Clone, Debug, Default)]
pub struct Egress {
    allow: Arc<Vec<Network>>,
}

/// A destination the guard refused.
#[derive(Debug, thiserror::Error)]
#[error(
    "refused to connect to {host}: it is inside the network ({addresses}); allow it with \
     egress.allow in the config if that is intended"
)]
pub struct Refused {
    host: String,
    addresses: String,
}

impl Egress {
    /// A guard that lets `allow` through besides public addresses.
    pub fn new(allow: Vec<Network>) -> Egress {
        Egress {
            allow: Arc::new(allow),
        }
    }

    /// Whether `ip` may be dialled.
    pub fn permits(&self, ip: IpAddr) -> bool {
        !is_internal(ip) || self.allow.iter().any(|n| n.contains(ip))
    }

    /// Checks a URL that names an address (a name is checked when it is resolved).
    pub fn check_url(&self, url: &reqwest::Url) -> Result<(), Refused> {
        let host = url.host_str().unwrap_or("");
        let Ok(ip) = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
        else {
            return Ok(());
        };
        if self.permits(ip) {
            return Ok(());
        }
        Err(Refused {
            host: ip.to_string(),
            addresses: ip.to_string(),
        })
    }

    /// An HTTP client whose every connection goes through the guard: no redirects, no proxy,
    /// `timeout` for the whole request.
    pub fn client(&self, timeout: Duration) -> reqwest::Client {
        reqwest::Client::builder()
            .user_agent(concat!("longshore/", env!("CARGO_PKG_VERSION")))
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(10)))
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .dns_resolver(Arc::new(self.clone()))
            .build()
            .unwrap_or_default()
    }
}

impl Resolve for Egress {
    fn resolve(&self, name: Name) -> Resolving {
        let guard = self.clone();
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let found: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let permitted: Vec<SocketAddr> = found
                .iter()
                .copied()
                .filter(|a| guard.permits(a.ip()))
                .collect();
            if permitted.is_empty() {
                let addresses = found
                    .iter()
                    .map(|a| a.ip().to_string())
                    .collect::<Vec<_>>()
                    .join(", ");
                return Err(Box::new(Refused { host, addresses }) as _);
            }
            Ok(Box::new(permitted.into_iter()) as Addrs)
        })
    }
}

/// The guard's refusal in a request error's chain, if it is there.
fn refusal_in(error: &reqwest::Error) -> Option<&Refused> {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = source {
        if let Some(refused) = e.downcast_ref::<Refused>() {
            return Some(refused);
        }
        source = e.source();
    }
    None
}

/// Whether a request error is the guard's refusal.
pub fn refused(error: &reqwest::Error) -> bool {
    refusal_in(error).is_some()
}

/// The guard's refusal as a message, or the error's own without its URL.
pub fn refusal(error: &reqwest::Error) -> String {
    refusal_in(error).map_or_else(|| error.to_string(), |r| r.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_internal_addresses_and_allows_what_is_listed() {
        for internal in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "255.255.255.255",
            "::1",
            "::",
            "fd00:ec2::254",
            "fe80::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "64:ff9b::7f00:1",
        ] {
            assert!(is_internal(internal.parse().unwrap()), "{internal}");
        }
        for public in [
            "93.184.216.34",
            "1.1.1.1",
            "2606:4700:4700::1111",
            "100.128.0.1",
        ] {
            assert!(!is_internal(public.parse().unwrap()), "{public}");
        }
        let guard = Egress::new(vec![
            "127.0.0.1".parse().unwrap(),
            "10.0.0.0/8".parse().unwrap(),
        ]);
        assert!(guard.permits("127.0.0.1".parse().unwrap()));
        assert!(guard.permits("10.200.0.9".parse().unwrap()));
        assert!(!guard.permits("127.0.0.2".parse().unwrap()));
        assert!(!guard.permits("192.168.0.1".parse().unwrap()));
    }

    #[test]
    fn parses_networks() {
        assert!("10.0.0.0/33".parse::<Network>().is_err());
        assert!("nope".parse::<Network>().is_err());
        let v6: Network = "fd00::/8".parse().unwrap();
        assert!(v6.contains("fd12::1".parse().unwrap()));
        assert!(!v6.contains("10.0.0.1".parse().unwrap()));
    }

    #[tokio::test]
    async fn a_name_that_resolves_inside_is_refused_before_any_connection() {
        // A listener that counts connections: the refused request must not reach it.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let accepted = tokio::spawn(async move {
            tokio::time::timeout(Duration::from_millis(500), listener.accept())
                .await
                .is_ok()
        });
        let client = Egress::default().client(Duration::from_secs(2));
        let error = client
            .get(format!("http://localhost:{port}/"))
            .send()
            .await
            .unwrap_err();
        assert!(refused(&error), "{error:?}");
        let url: reqwest::Url = format!("http://127.0.0.1:{port}/").parse().unwrap();
        assert!(Egress::default().check_url(&url).is_err());
        assert!(!accepted.await.unwrap(), "no connection was made");
    }
}
