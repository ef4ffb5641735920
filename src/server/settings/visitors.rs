//! `[visitors]`: how a visitor is told apart: the proxies whose forwarding
//! header is believed, and which header that is.

use crate::server::client_ip::ClientIpHeader;
use ipnet::IpNet;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct VisitorSettings {
    /// Proxies whose forwarding header is believed: addresses (`127.0.0.1`) or
    /// CIDR ranges (`10.0.0.0/8`). Empty: the socket address identifies the
    /// visitor and the header is ignored.
    #[serde(deserialize_with = "addresses_or_networks")]
    pub trusted_proxies: Vec<IpNet>,
    /// Which header those proxies put the visitor's address in:
    /// `x-forwarded-for` (default), `x-real-ip` or `cf-connecting-ip`.
    pub client_ip_header: ClientIpHeader,
}

/// `trusted_proxies`: each entry an address (one host) or a CIDR range.
fn addresses_or_networks<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Vec<IpNet>, D::Error> {
    let entries = Vec::<String>::deserialize(deserializer)?;
    entries
        .iter()
        .map(|entry| {
            let entry = entry.trim();
            entry
                .parse::<IpNet>()
                .or_else(|_| entry.parse::<std::net::IpAddr>().map(IpNet::from))
                .map_err(|_| {
                    serde::de::Error::custom(format!(
                        "{entry:?} is neither an address (127.0.0.1, ::1) nor a CIDR range (10.0.0.0/8)"
                    ))
                })
        })
        .collect()
}
