//! Who asks, and who pays. A visitor is known by an identifier the server works
//! out: a signed-in account's (its verified e-mail or the provider's subject), or
//! else their address (IPv6 per /64); the shared store keeps only a hash of it.

use sha2::{Digest, Sha256};
use std::fmt;

/// The visitor behind a request, as the domain knows them.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Visitor {
    identifier: String,
    signed_in: bool,
    /// A signed-in visitor's address (a signed-out visitor's is the
    /// identifier), for the owner's deny list.
    address: Option<String>,
}

impl Visitor {
    /// A signed-out visitor, known by their address.
    pub fn new(identifier: impl Into<String>) -> Self {
        Self {
            identifier: identifier.into(),
            signed_in: false,
            address: None,
        }
    }

    /// The same visitor, asking from `address` (its quota key: IPv6 by /64).
    pub fn from_address(mut self, address: impl Into<String>) -> Self {
        let address = address.into();
        if address != self.identifier {
            self.address = Some(address);
        }
        self
    }

    /// What the owner's deny list may name this visitor by: the identifier,
    /// the address when it is another, and the tag the owner's page shows
    /// for visitors known by address.
    pub fn deny_list_names(&self) -> Vec<String> {
        std::iter::once(self.identifier.clone())
            .chain(self.address.clone())
            .chain(std::iter::once(self.tag()))
            .collect()
    }

    /// A signed-in account, known by its e-mail or subject; `None` when the
    /// identifier could be an address (see [`Visitor::may_name_an_account`]).
    pub fn account(identifier: impl Into<String>) -> Option<Self> {
        let identifier = identifier.into();
        Self::may_name_an_account(&identifier).then_some(Self {
            identifier,
            signed_in: true,
            address: None,
        })
    }

    /// Whether `identifier` may name a signed-in account: never anything a
    /// signed-out visitor's identifier could be (an address, or an IPv6 /64
    /// network), so an account never shares a signed-out visitor's count. An
    /// e-mail always may (it has an `@`).
    pub fn may_name_an_account(identifier: &str) -> bool {
        !identifier.trim().is_empty()
            && identifier.parse::<std::net::IpAddr>().is_err()
            && !identifier.contains('/')
    }

    pub fn id(&self) -> &str {
        &self.identifier
    }

    pub fn is_signed_in(&self) -> bool {
        self.signed_in
    }

    /// The visitor as stored in job records and recent-image keys: a hash, so the
    /// shared store holds no addresses.
    pub fn tag(&self) -> String {
        tag(&self.identifier)
    }
}

impl fmt::Display for Visitor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.identifier)
    }
}

/// The first 16 bytes of the SHA-256 of `identifier`, in hex: how a visitor
/// appears in the shared store and in logs (never their address).
pub fn tag(identifier: &str) -> String {
    Sha256::digest(identifier.as_bytes())
        .iter()
        .take(16)
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Whose quota a generation spends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WhoPays {
    /// Each visitor their own quota (the default).
    #[default]
    EachVisitor,
    /// One quota for everyone, as the seed article's API route had it.
    Everyone,
}

/// The limiter identifier of the one quota everyone shares under [`WhoPays::Everyone`].
pub const SHARED_QUOTA: &str = "api-route";

impl WhoPays {
    /// The limiter identifier that pays for `visitor`'s generations.
    pub fn payer(self, visitor: &Visitor) -> &str {
        match self {
            Self::EachVisitor => visitor.id(),
            Self::Everyone => SHARED_QUOTA,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_hide_the_address_and_stay_stable() {
        let visitor = Visitor::new("203.0.113.7");
        assert_eq!(visitor.tag().len(), 32);
        assert!(!visitor.tag().contains("203"));
        assert_eq!(visitor.tag(), Visitor::new("203.0.113.7").tag());
        assert_ne!(visitor.tag(), Visitor::new("203.0.113.8").tag());
    }

    #[test]
    fn an_account_is_never_named_like_an_address() {
        for address in ["203.0.113.7", "2001:db8::1", "2001:db8:1:2::/64", "", " "] {
            assert!(!Visitor::may_name_an_account(address), "{address:?}");
            assert_eq!(Visitor::account(address), None, "{address:?}");
        }
        for account in ["ada@example.com", "108234573321", "auth0|5f7c"] {
            let visitor = Visitor::account(account).expect(account);
            assert!(visitor.is_signed_in());
            assert_eq!(visitor.id(), account);
        }
    }

    #[test]
    fn the_policy_names_the_payer() {
        let visitor = Visitor::new("203.0.113.7");
        assert_eq!(WhoPays::EachVisitor.payer(&visitor), "203.0.113.7");
        assert_eq!(WhoPays::Everyone.payer(&visitor), "api-route");
    }
}
