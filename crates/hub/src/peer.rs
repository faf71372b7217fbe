//! Who a request comes from: the peer address the accept loop saw, or, behind a trusted reverse
//! proxy, the address the proxy says it forwarded for.
//!
//! The accept loop (`server/`) and the subscription fast path (`subscription_conn/`) put
//! axum's [`ConnectInfo<SocketAddr>`] in every request's extensions, so an application that
//! serves [`Hub::router`](crate::Hub::router) itself with axum's
//! `into_make_service_with_connect_info::<SocketAddr>()` gets the same behaviour. Without it the
//! address is unknown, and the limits that count per address (the per-client subscription cap,
//! the anonymous template budget) fall back to what they do without one (see `limits.rs`).
//!
//! Behind a reverse proxy every peer is the proxy. `X-Forwarded-For` is read only when the peer
//! is one of `HubConfig::trusted_proxies`: the client is then the rightmost address of the
//! header that is not itself a trusted proxy (the leftmost ones are whatever the client wrote).
//!
//! An IPv6 client is its /64: one host usually holds a whole /64, so counting single addresses
//! would let it pass any per-address limit by changing its address.

use std::fmt;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::str::FromStr;

use axum::extract::ConnectInfo;
use http::HeaderMap;

/// What per-address limits count: an IPv4 address, an IPv6 /64, or nothing known.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum ClientAddress {
    V4([u8; 4]),
    /// The first 64 bits of an IPv6 address.
    V6Net(u64),
    /// No peer address reached the routes (an embedder's own server without connect info).
    Unknown,
}

impl ClientAddress {
    fn of(ip: IpAddr) -> ClientAddress {
        match ip {
            IpAddr::V4(v4) => ClientAddress::V4(v4.octets()),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => ClientAddress::V4(v4.octets()),
                None => ClientAddress::V6Net((u128::from(v6) >> 64) as u64),
            },
        }
    }
}

impl fmt::Display for ClientAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientAddress::V4(octets) => write!(f, "{}", std::net::Ipv4Addr::from(*octets)),
            ClientAddress::V6Net(net) => {
                write!(f, "{}/64", Ipv6Addr::from(u128::from(*net) << 64))
            }
            ClientAddress::Unknown => f.write_str("an unknown address"),
        }
    }
}

/// A network whose addresses are trusted reverse proxies: `10.0.0.1` or `10.0.0.0/8`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProxyNetwork {
    addr: IpAddr,
    prefix: u8,
}

impl ProxyNetwork {
    /// Whether `ip` is in this network (an IPv4-mapped IPv6 address counts as its IPv4).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        match (self.addr, ip) {
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

impl FromStr for ProxyNetwork {
    type Err = String;

    fn from_str(text: &str) -> Result<ProxyNetwork, String> {
        let (addr, prefix) = match text.split_once('/') {
            Some((addr, prefix)) => (addr, Some(prefix)),
            None => (text, None),
        };
        let addr: IpAddr = addr
            .trim()
            .parse()
            .map_err(|_| format!("{text:?} is not an IP address or network"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(prefix) => prefix
                .trim()
                .parse::<u8>()
                .ok()
                .filter(|&p| p <= max)
                .ok_or_else(|| format!("{text:?}: the prefix length must be 0 to {max}"))?,
        };
        Ok(ProxyNetwork { addr, prefix })
    }
}

/// The client address of a request: its peer's, or what a trusted proxy forwarded for.
pub(crate) fn client_address(
    peer: Option<&ConnectInfo<SocketAddr>>,
    headers: &HeaderMap,
    trusted: &[ProxyNetwork],
) -> ClientAddress {
    let Some(ConnectInfo(peer)) = peer else {
        return ClientAddress::Unknown;
    };
    let peer = peer.ip();
    let is_trusted = |ip: IpAddr| trusted.iter().any(|net| net.contains(ip));
    if !is_trusted(peer) {
        return ClientAddress::of(peer);
    }
    // Every X-Forwarded-For line, in order, as one list; rightmost first, skipping the
    // trusted proxies. An address that does not parse ends the walk: what is left of it was
    // written by someone untrusted, and the last trusted hop is the best we know.
    let forwarded: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .collect();
    let mut client = peer;
    for hop in forwarded.iter().rev() {
        let Ok(ip) = hop.trim().parse::<IpAddr>() else {
            break;
        };
        client = ip;
        if !is_trusted(ip) {
            break;
        }
    }
    ClientAddress::of(client)
}

/// A service that puts the connection's peer address in each request's extensions, as axum's
/// `into_make_service_with_connect_info` does: one per connection, around a clone of the
/// router (an `Arc`), so it costs a socket address per connection.
#[derive(Clone)]
pub(crate) struct WithPeer<S> {
    inner: S,
    peer: ConnectInfo<SocketAddr>,
}

impl<S> WithPeer<S> {
    pub(crate) fn new(inner: S, peer: SocketAddr) -> WithPeer<S> {
        WithPeer {
            inner,
            peer: ConnectInfo(peer),
        }
    }
}

impl<S, B> tower::Service<http::Request<B>> for WithPeer<S>
where
    S: tower::Service<http::Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        request.extensions_mut().insert(self.peer);
        self.inner.call(request)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(peer: &str, forwarded: &[&str]) -> (Option<ConnectInfo<SocketAddr>>, HeaderMap) {
        let peer = Some(ConnectInfo(peer.parse::<SocketAddr>().unwrap()));
        let mut headers = HeaderMap::new();
        for value in forwarded {
            headers.append("x-forwarded-for", value.parse().unwrap());
        }
        (peer, headers)
    }

    fn networks(list: &[&str]) -> Vec<ProxyNetwork> {
        list.iter().map(|n| n.parse().unwrap()).collect()
    }

    #[test]
    fn forwarded_for_is_believed_from_trusted_proxies_only() {
        let trusted = networks(&["127.0.0.1", "10.0.0.0/8"]);
        let (e, h) = request("127.0.0.1:9", &["203.0.113.9"]);
        assert_eq!(
            client_address(e.as_ref(), &h, &trusted).to_string(),
            "203.0.113.9"
        );
        // A client cannot make itself someone else by writing the header.
        let (e, h) = request("198.51.100.1:9", &["203.0.113.9"]);
        assert_eq!(
            client_address(e.as_ref(), &h, &trusted).to_string(),
            "198.51.100.1"
        );
        // Rightmost untrusted hop, over several lines and proxies.
        let (e, h) = request("127.0.0.1:9", &["1.2.3.4, 203.0.113.9", "10.1.2.3"]);
        assert_eq!(
            client_address(e.as_ref(), &h, &trusted).to_string(),
            "203.0.113.9"
        );
        // Garbage stops the walk at the last trusted hop.
        let (e, h) = request("127.0.0.1:9", &["nonsense, 10.1.2.3"]);
        assert_eq!(
            client_address(e.as_ref(), &h, &trusted).to_string(),
            "10.1.2.3"
        );
        assert_eq!(client_address(None, &h, &trusted), ClientAddress::Unknown);
    }

    #[test]
    fn an_ipv6_client_is_its_64() {
        let (e, h) = request("[2001:db8:1:2:aaaa::1]:9", &[]);
        let a = client_address(e.as_ref(), &h, &[]);
        let (e, h) = request("[2001:db8:1:2:bbbb::7]:9", &[]);
        assert_eq!(a, client_address(e.as_ref(), &h, &[]));
        assert_eq!(a.to_string(), "2001:db8:1:2::/64");
        let (e, h) = request("[::ffff:192.0.2.1]:9", &[]);
        assert_eq!(client_address(e.as_ref(), &h, &[]).to_string(), "192.0.2.1");
    }

    #[test]
    fn networks_parse_and_match() {
        let net: ProxyNetwork = "10.0.0.0/8".parse().unwrap();
        assert!(net.contains("10.200.0.1".parse().unwrap()));
        assert!(net.contains("::ffff:10.0.0.1".parse().unwrap()));
        assert!(!net.contains("11.0.0.1".parse().unwrap()));
        let any: ProxyNetwork = "::/0".parse().unwrap();
        assert!(any.contains("2001:db8::1".parse().unwrap()));
        assert!("10.0.0.0/33".parse::<ProxyNetwork>().is_err());
        assert!("proxy.local".parse::<ProxyNetwork>().is_err());
    }
}
