//! Who the visitor is, for the limiter: the address the connection came from.
//! A forwarding header (`X-Forwarded-For`, `Forwarded`, `X-Real-IP`,
//! `CF-Connecting-IP`) is believed only when the connection comes from a
//! configured trusted proxy, so a visitor cannot mint a fresh quota by sending
//! one. Trust is decided on the full address of each hop; the visitor is then
//! counted per address (IPv4) or per /64 network (IPv6).

use axum::extract::{ConnectInfo, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use ipnet::IpNet;
use std::fmt;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

/// The visitor as the limiter counts them. IPv6 addresses are reduced to their
/// /64 network: one household or phone gets a whole /64, so counting single
/// addresses would let one visitor rotate through billions of quotas. `None`:
/// a trusted proxy forwarded a request whose client it could not name
/// (`unknown`, an obfuscated or garbled entry); all such visitors share one
/// quota, never the proxy's own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ClientIp(Option<IpAddr>);

/// The identifier of visitors a trusted proxy could not name.
pub const UNKNOWN_CLIENT: &str = "unknown-client";

/// An IPv4-mapped IPv6 address is the IPv4 address it maps.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

impl ClientIp {
    pub fn new(ip: IpAddr) -> Self {
        let ip = match canonical(ip) {
            IpAddr::V6(v6) => {
                let s = v6.segments();
                IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
            v4 => v4,
        };
        Self(Some(ip))
    }

    /// A visitor behind a trusted proxy that could not say who they are.
    pub fn unknown() -> Self {
        Self(None)
    }

    /// The address counted (IPv6: the /64's first address); `None` when unknown.
    pub fn ip(&self) -> Option<IpAddr> {
        self.0
    }
}

impl fmt::Display for ClientIp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(IpAddr::V4(v4)) => write!(f, "{v4}"),
            Some(IpAddr::V6(v6)) => write!(f, "{v6}/64"),
            None => f.write_str(UNKNOWN_CLIENT),
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
    /// `Forwarded` (RFC 7239): its `for=` parameters, read right to left the same way.
    Forwarded,
    /// `X-Real-IP`, one address (nginx's `real_ip` set-ups).
    XRealIp,
    /// `CF-Connecting-IP`, one address (Cloudflare).
    CfConnectingIp,
}

/// One hop as proxies write it: `203.0.113.5`, `203.0.113.5:4711`,
/// `2001:db8::1`, `[2001:db8::1]:443`, `fe80::1%eth0`, optionally in quotes.
/// `None` for `unknown`, obfuscated identifiers (`_hidden`) and garbage.
pub fn parse_hop(entry: &str) -> Option<IpAddr> {
    let entry = entry.trim().trim_matches('"').trim();
    let without_zone = |text: &str| -> Option<IpAddr> {
        let address = text
            .split_once('%')
            .map_or(text, |(address, _zone)| address);
        address.parse().ok()
    };
    if let Some(rest) = entry.strip_prefix('[') {
        let (address, _port) = rest.split_once(']')?;
        return without_zone(address);
    }
    if let Ok(socket) = entry.parse::<SocketAddr>() {
        return Some(socket.ip());
    }
    without_zone(entry)
}

/// The `for=` values of a `Forwarded` header, in order.
fn forwarded_for(value: &str) -> impl Iterator<Item = &str> {
    value.split(',').filter_map(|element| {
        element.split(';').find_map(|pair| {
            let (name, value) = pair.split_once('=')?;
            name.trim()
                .eq_ignore_ascii_case("for")
                .then_some(value.trim())
        })
    })
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

    /// Decided on the hop's full address (IPv4-mapped addresses as IPv4).
    fn trusts(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.networks.iter().any(|network| network.contains(&ip))
    }

    /// The visitor behind a connection from `peer` with these request headers.
    /// Only a trusted peer's header is read; anyone else is their own address.
    pub fn identify(&self, peer: IpAddr, headers: &axum::http::HeaderMap) -> ClientIp {
        if !self.trusts(peer) {
            return ClientIp::new(peer);
        }
        let values = |name: &'static str| {
            headers
                .get_all(name)
                .iter()
                .filter_map(|value| value.to_str().ok())
                .collect::<Vec<_>>()
        };
        match self.header {
            ClientIpHeader::XForwardedFor => {
                let values = values("x-forwarded-for");
                self.resolve(peer, values.into_iter())
            }
            ClientIpHeader::Forwarded => {
                let values = values("forwarded");
                self.resolve(peer, values.iter().flat_map(|v| forwarded_for(v)))
            }
            ClientIpHeader::XRealIp => self.single(peer, values("x-real-ip")),
            ClientIpHeader::CfConnectingIp => self.single(peer, values("cf-connecting-ip")),
        }
    }

    /// A header that names one address: that address, unknown if it names none.
    fn single(&self, peer: IpAddr, values: Vec<&str>) -> ClientIp {
        match values.last() {
            None => ClientIp::new(peer),
            Some(value) => parse_hop(value).map_or(ClientIp::unknown(), ClientIp::new),
        }
    }

    /// The visitor behind a connection from `peer` carrying these forwarded hops
    /// (oldest first; a value may hold several, comma-separated). Reads them right to left, skipping trusted hops: the first
    /// untrusted address is the one the nearest trusted proxy saw. A hop that
    /// names no address makes the visitor unknown (never the proxy itself); a
    /// chain of trusted hops only is its first hop; no hops at all is the peer.
    pub fn resolve<'a>(&self, peer: IpAddr, forwarded: impl Iterator<Item = &'a str>) -> ClientIp {
        if !self.trusts(peer) {
            return ClientIp::new(peer);
        }
        let mut hops: Vec<&str> = forwarded.flat_map(|value| value.split(',')).collect();
        hops.reverse();
        let mut leftmost = None;
        for hop in hops
            .into_iter()
            .map(str::trim)
            .filter(|hop| !hop.is_empty())
        {
            match parse_hop(hop) {
                Some(ip) if self.trusts(ip) => leftmost = Some(ip),
                Some(ip) => return ClientIp::new(ip),
                None => return ClientIp::unknown(),
            }
        }
        ClientIp::new(leftmost.unwrap_or(peer))
    }
}

/// Middleware: works out the visitor's [`ClientIp`] and puts it in the request's
/// extensions, where [`crate::server::auth::identify_caller`] finds it.
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
                Some(ip("203.0.113.5")),
                "{name}"
            );
            assert_eq!(
                proxies.identify(ip("192.0.2.9"), &sent).ip(),
                Some(ip("192.0.2.9")),
                "{name}: spoofed"
            );
            let garbled = headers(&[(name, "somewhere")]);
            assert_eq!(
                proxies.identify(ip("10.0.0.1"), &garbled),
                ClientIp::unknown(),
                "{name}: never the proxy's own quota"
            );
        }
    }

    #[test]
    fn without_trusted_proxies_the_header_is_ignored() {
        let client =
            TrustedProxies::default().resolve(ip("198.51.100.7"), ["203.0.113.1"].into_iter());
        assert_eq!(client.ip(), Some(ip("198.51.100.7")));
    }

    #[test]
    fn an_untrusted_peer_cannot_spoof_the_header() {
        let client =
            trusted(&["10.0.0.0/8"]).resolve(ip("198.51.100.7"), ["203.0.113.1"].into_iter());
        assert_eq!(client.ip(), Some(ip("198.51.100.7")));
    }

    #[test]
    fn a_trusted_proxy_forwards_the_visitor_address() {
        let client = trusted(&["10.0.0.0/8"]).resolve(ip("10.1.2.3"), ["203.0.113.1"].into_iter());
        assert_eq!(client.ip(), Some(ip("203.0.113.1")));
    }

    #[test]
    fn the_rightmost_untrusted_hop_wins_over_what_the_visitor_prepended() {
        // The visitor sent "1.1.1.1" themselves; the CDN (trusted) appended the real address.
        let client = trusted(&["10.0.0.0/8"]).resolve(
            ip("10.0.0.1"),
            ["1.1.1.1, 203.0.113.9", "10.0.0.2"].into_iter(),
        );
        assert_eq!(client.ip(), Some(ip("203.0.113.9")));
    }

    #[test]
    fn a_garbled_or_unknown_hop_is_an_unknown_visitor_never_the_proxy() {
        for entry in ["not-an-ip", "unknown", "_hidden", "1.2.3"] {
            let client = trusted(&["10.0.0.0/8"]).resolve(ip("10.0.0.1"), [entry].into_iter());
            assert_eq!(client, ClientIp::unknown(), "{entry}");
            assert_eq!(client.to_string(), "unknown-client");
        }
        // The proxy's own request (no header) is the proxy.
        let client = trusted(&["10.0.0.0/8"]).resolve(ip("10.0.0.1"), std::iter::empty());
        assert_eq!(client.ip(), Some(ip("10.0.0.1")));
    }

    #[test]
    fn hops_with_ports_brackets_zones_and_quotes_are_read() {
        for (entry, expected) in [
            ("203.0.113.5:4711", "203.0.113.5"),
            ("[2001:db8:1:2::7]:443", "2001:db8:1:2::"),
            ("[2001:db8:1:2::7]", "2001:db8:1:2::"),
            ("2001:db8:1:2::7", "2001:db8:1:2::"),
            ("fe80::1%eth0", "fe80::"),
            ("\"203.0.113.6\"", "203.0.113.6"),
        ] {
            let client = trusted(&["10.0.0.0/8"]).resolve(ip("10.0.0.1"), [entry].into_iter());
            assert_eq!(client.ip(), Some(ip(expected)), "{entry}");
        }
    }

    #[test]
    fn trust_is_decided_on_the_full_address() {
        // ::1/128 is trusted (it used to be reduced to ::/64 first and never match).
        let loopback = trusted(&["::1/128"]);
        let client = loopback.resolve(ip("::1"), ["203.0.113.1"].into_iter());
        assert_eq!(client.ip(), Some(ip("203.0.113.1")));
        // ::/128 trusts only ::, not its whole /64.
        let narrow = trusted(&["::/128"]);
        let client = narrow.resolve(ip("::5"), ["203.0.113.1"].into_iter());
        assert_eq!(client.to_string(), "::/64", "an untrusted peer is itself");
        // A trusted IPv4 proxy reached over an IPv4-mapped address.
        let mapped = trusted(&["127.0.0.1/32"]);
        let client = mapped.resolve(ip("::ffff:127.0.0.1"), ["203.0.113.2"].into_iter());
        assert_eq!(client.ip(), Some(ip("203.0.113.2")));
    }

    #[test]
    fn a_chain_of_trusted_hops_only_is_its_first_hop() {
        let client =
            trusted(&["10.0.0.0/8"]).resolve(ip("10.0.0.1"), ["10.0.0.7, 10.0.0.8"].into_iter());
        assert_eq!(client.ip(), Some(ip("10.0.0.7")));
    }

    #[test]
    fn the_forwarded_header_is_read_when_configured() {
        let proxies = TrustedProxies::new(
            vec!["10.0.0.0/8".parse().unwrap()],
            ClientIpHeader::Forwarded,
        );
        let sent = headers(&[(
            "forwarded",
            "for=198.51.100.9;proto=https, for=\"[2001:db8:cafe::17]:4711\";by=10.0.0.2, for=10.0.0.3",
        )]);
        assert_eq!(
            proxies.identify(ip("10.0.0.1"), &sent).to_string(),
            "2001:db8:cafe::/64"
        );
        let hidden = headers(&[("forwarded", "for=_hidden, for=unknown")]);
        assert_eq!(
            proxies.identify(ip("10.0.0.1"), &hidden),
            ClientIp::unknown()
        );
        let spoofed = headers(&[("forwarded", "for=203.0.113.1")]);
        assert_eq!(
            proxies.identify(ip("192.0.2.1"), &spoofed).ip(),
            Some(ip("192.0.2.1"))
        );
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
