//! Who the visitor is, for the limiter: the address the connection came from.
//! `X-Forwarded-For` is believed only when the connection comes from a configured
//! trusted proxy, so a visitor cannot mint a fresh quota by sending the header.

use axum::extract::{ConnectInfo, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use ipnet::IpNet;
use std::fmt;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

/// The visitor's address as the limiter sees it. IPv6 addresses are reduced to
/// their /64 network: one household or phone gets a whole /64, so counting single
/// addresses would let one visitor rotate through billions of quotas.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ClientIp(IpAddr);

impl ClientIp {
    pub fn new(ip: IpAddr) -> Self {
        let ip = match ip {
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => IpAddr::V4(v4),
                None => {
                    let segments = v6.segments();
                    IpAddr::V6(Ipv6Addr::new(
                        segments[0],
                        segments[1],
                        segments[2],
                        segments[3],
                        0,
                        0,
                        0,
                        0,
                    ))
                }
            },
            v4 => v4,
        };
        Self(ip)
    }

    pub fn ip(&self) -> IpAddr {
        self.0
    }
}

impl fmt::Display for ClientIp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            IpAddr::V4(v4) => write!(f, "{v4}"),
            IpAddr::V6(v6) => write!(f, "{v6}/64"),
        }
    }
}

/// The header a trusted proxy puts the visitor's address in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ClientIpHeader {
    /// `X-Forwarded-For`, read right to left past trusted hops (nginx, most load balancers).
    #[default]
    XForwardedFor,
    /// `X-Real-IP`, one address (nginx's `real_ip` set-ups).
    XRealIp,
    /// `CF-Connecting-IP`, one address (Cloudflare).
    CfConnectingIp,
}

/// The proxies whose forwarding header is believed, and which header that is.
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies {
    networks: Vec<IpNet>,
    header: ClientIpHeader,
}

impl TrustedProxies {
    pub fn new(networks: Vec<IpNet>, header: ClientIpHeader) -> Self {
        Self { networks, header }
    }

    fn trusts(&self, ip: IpAddr) -> bool {
        self.networks.iter().any(|network| network.contains(&ip))
    }

    /// The visitor behind a connection from `peer` with these request headers.
    /// Only a trusted peer's header is read; anyone else is their own address.
    pub fn identify(&self, peer: IpAddr, headers: &axum::http::HeaderMap) -> ClientIp {
        let single = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<IpAddr>().ok())
        };
        match self.header {
            ClientIpHeader::XForwardedFor => self.resolve(
                peer,
                headers
                    .get_all("x-forwarded-for")
                    .iter()
                    .filter_map(|value| value.to_str().ok()),
            ),
            _ if !self.trusts(ClientIp::new(peer).ip()) => ClientIp::new(peer),
            ClientIpHeader::XRealIp => ClientIp::new(single("x-real-ip").unwrap_or(peer)),
            ClientIpHeader::CfConnectingIp => {
                ClientIp::new(single("cf-connecting-ip").unwrap_or(peer))
            }
        }
    }

    /// The visitor behind a connection from `peer` carrying these
    /// `X-Forwarded-For` values. Reads the header right to left, skipping trusted
    /// hops: the first untrusted address is the one the nearest trusted proxy saw.
    pub fn resolve<'a>(
        &self,
        peer: IpAddr,
        forwarded_for: impl DoubleEndedIterator<Item = &'a str>,
    ) -> ClientIp {
        let peer = ClientIp::new(peer).ip();
        if !self.trusts(peer) {
            return ClientIp::new(peer);
        }
        let mut hops: Vec<&str> = forwarded_for
            .flat_map(|value| value.split(','))
            .map(str::trim)
            .collect();
        hops.reverse();
        for hop in hops {
            match hop.parse::<IpAddr>() {
                Ok(ip) if self.trusts(ClientIp::new(ip).ip()) => continue,
                Ok(ip) => return ClientIp::new(ip),
                // A garbled entry means the chain cannot be trusted past this point.
                Err(_) => break,
            }
        }
        ClientIp::new(peer)
    }
}

/// The visitor's address, as [`identify_visitor`] worked it out: an extractor for
/// Axum handlers, and for server functions through `leptos_axum::extract`.
impl<S: Send + Sync> axum::extract::FromRequestParts<S> for ClientIp {
    type Rejection = MissingVisitor;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _: &S,
    ) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<ClientIp>()
            .copied()
            .ok_or(MissingVisitor)
    }
}

/// A request that did not pass through [`identify_visitor`] (a wiring mistake).
#[derive(Debug)]
pub struct MissingVisitor;

impl axum::response::IntoResponse for MissingVisitor {
    fn into_response(self) -> Response {
        tracing::error!("a request reached a handler without a visitor address; is the identify_visitor layer installed?");
        (
            axum::http::StatusCode::INTERNAL_SERVER_ERROR,
            crate::wire::GENERIC_FAILURE,
        )
            .into_response()
    }
}

/// Middleware: works out the visitor's [`ClientIp`] and puts it in the request's
/// extensions, where the handlers find it.
pub async fn identify_visitor(
    State(proxies): State<Arc<TrustedProxies>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    mut request: Request,
    next: Next,
) -> Response {
    let client = proxies.identify(peer.ip(), request.headers());
    request.extensions_mut().insert(client);
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn trusted(networks: &[&str]) -> TrustedProxies {
        TrustedProxies::new(
            networks.iter().map(|n| n.parse().unwrap()).collect(),
            ClientIpHeader::XForwardedFor,
        )
    }

    fn headers(pairs: &[(&'static str, &str)]) -> axum::http::HeaderMap {
        let mut map = axum::http::HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, value.parse().unwrap());
        }
        map
    }

    #[test]
    fn single_address_headers_are_read_only_from_trusted_proxies() {
        for (header, name) in [
            (ClientIpHeader::XRealIp, "x-real-ip"),
            (ClientIpHeader::CfConnectingIp, "cf-connecting-ip"),
        ] {
            let proxies = TrustedProxies::new(vec!["10.0.0.0/8".parse().unwrap()], header);
            let sent = headers(&[(name, "203.0.113.5"), ("x-forwarded-for", "198.51.100.1")]);
            assert_eq!(
                proxies.identify(ip("10.0.0.1"), &sent).ip(),
                ip("203.0.113.5"),
                "{name}"
            );
            assert_eq!(
                proxies.identify(ip("192.0.2.9"), &sent).ip(),
                ip("192.0.2.9"),
                "{name}: spoofed"
            );
            let garbled = headers(&[(name, "somewhere")]);
            assert_eq!(
                proxies.identify(ip("10.0.0.1"), &garbled).ip(),
                ip("10.0.0.1"),
                "{name}"
            );
        }
    }

    #[test]
    fn without_trusted_proxies_the_header_is_ignored() {
        let client =
            TrustedProxies::default().resolve(ip("198.51.100.7"), ["203.0.113.1"].into_iter());
        assert_eq!(client.ip(), ip("198.51.100.7"));
    }

    #[test]
    fn an_untrusted_peer_cannot_spoof_the_header() {
        let client =
            trusted(&["10.0.0.0/8"]).resolve(ip("198.51.100.7"), ["203.0.113.1"].into_iter());
        assert_eq!(client.ip(), ip("198.51.100.7"));
    }

    #[test]
    fn a_trusted_proxy_forwards_the_visitor_address() {
        let client = trusted(&["10.0.0.0/8"]).resolve(ip("10.1.2.3"), ["203.0.113.1"].into_iter());
        assert_eq!(client.ip(), ip("203.0.113.1"));
    }

    #[test]
    fn the_rightmost_untrusted_hop_wins_over_what_the_visitor_prepended() {
        // The visitor sent "1.1.1.1" themselves; the CDN (trusted) appended the real address.
        let client = trusted(&["10.0.0.0/8"]).resolve(
            ip("10.0.0.1"),
            ["1.1.1.1, 203.0.113.9", "10.0.0.2"].into_iter(),
        );
        assert_eq!(client.ip(), ip("203.0.113.9"));
    }

    #[test]
    fn a_garbled_header_falls_back_to_the_proxy() {
        let client = trusted(&["10.0.0.0/8"]).resolve(ip("10.0.0.1"), ["not-an-ip"].into_iter());
        assert_eq!(client.ip(), ip("10.0.0.1"));
        let client = trusted(&["10.0.0.0/8"]).resolve(ip("10.0.0.1"), std::iter::empty());
        assert_eq!(client.ip(), ip("10.0.0.1"));
    }

    #[test]
    fn ipv6_visitors_are_counted_per_64_network() {
        let a = ClientIp::new(ip("2001:db8:1:2::1"));
        let b = ClientIp::new(ip("2001:db8:1:2:ffff::9"));
        assert_eq!(a, b);
        assert_eq!(a.to_string(), "2001:db8:1:2::/64");
        assert_ne!(a, ClientIp::new(ip("2001:db8:1:3::1")));
    }

    #[test]
    fn ipv4_mapped_addresses_count_as_ipv4() {
        assert_eq!(
            ClientIp::new(ip("::ffff:192.0.2.5")).to_string(),
            "192.0.2.5"
        );
    }
}
