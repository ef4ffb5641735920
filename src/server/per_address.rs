//! What one client address may hold of the server: a cap on its open
//! connections (an IPv6 client by its /64, as visitors are counted), so one
//! address cannot take every connection slot; trusted proxies, behind which
//! many visitors share one address, are exempt. And a deadline on reading a
//! request's body, so a body that stalls or trickles frees its connection.
//!
//! Written here rather than taken from tower-http: its body timeout is an idle
//! timeout per frame (reset by each byte), which a client trickling a byte
//! every few seconds never trips; this one is a deadline for the whole body.

use http_body::{Body, Frame, SizeHint};
use ipnet::IpNet;
use std::collections::HashMap;
use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

/// Open connections per client address, capped.
#[derive(Debug, Clone)]
pub struct AddressCap {
    cap: usize,
    exempt: Arc<Vec<IpNet>>,
    open: Arc<Mutex<HashMap<IpAddr, usize>>>,
}

/// One admitted connection; its address's count goes down when dropped.
#[derive(Debug)]
pub struct Admitted {
    key: Option<IpAddr>,
    open: Arc<Mutex<HashMap<IpAddr, usize>>>,
}

/// The address a client is counted under: IPv6 by its /64.
fn counted_as(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) if v6.to_ipv4_mapped().is_none() => {
            let bits = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(bits.into())
        }
        IpAddr::V6(v6) => IpAddr::V4(
            v6.to_ipv4_mapped()
                .unwrap_or(std::net::Ipv4Addr::UNSPECIFIED),
        ),
        v4 => v4,
    }
}

impl AddressCap {
    pub fn new(cap: usize, exempt: Vec<IpNet>) -> Self {
        Self {
            cap: cap.max(1),
            exempt: Arc::new(exempt),
            open: Arc::default(),
        }
    }

    /// Admits a connection from `ip`, unless its address holds the cap already.
    pub fn admit(&self, ip: IpAddr) -> Option<Admitted> {
        if self.exempt.iter().any(|net| net.contains(&ip)) {
            return Some(Admitted {
                key: None,
                open: self.open.clone(),
            });
        }
        let key = counted_as(ip);
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let count = open.entry(key).or_insert(0);
        if *count >= self.cap {
            return None;
        }
        *count += 1;
        Some(Admitted {
            key: Some(key),
            open: self.open.clone(),
        })
    }
}

impl Drop for Admitted {
    fn drop(&mut self) {
        let Some(key) = self.key else { return };
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(count) = open.get_mut(&key) {
            *count -= 1;
            if *count == 0 {
                open.remove(&key);
            }
        }
    }
}

/// A request body that fails once `deadline` has passed before it ended.
pub struct BodyDeadline<B> {
    body: B,
    deadline: Pin<Box<tokio::time::Sleep>>,
}

impl<B> BodyDeadline<B> {
    pub fn new(body: B, within: Duration) -> Self {
        Self {
            body,
            deadline: Box::pin(tokio::time::sleep(within)),
        }
    }
}

/// Why a body was cut off.
#[derive(Debug, thiserror::Error)]
#[error("the request body was not received in time")]
pub struct BodyTooSlow;

impl<B> Body for BodyDeadline<B>
where
    B: Body + Unpin,
    B::Error: Into<axum::BoxError>,
{
    type Data = B::Data;
    type Error = axum::BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        if let Poll::Ready(frame) = Pin::new(&mut self.body).poll_frame(cx) {
            return Poll::Ready(frame.map(|frame| frame.map_err(Into::into)));
        }
        match self.deadline.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Some(Err(BodyTooSlow.into()))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_holds_at_most_the_cap_and_gets_its_slots_back() {
        let cap = AddressCap::new(2, vec!["10.0.0.0/8".parse().unwrap()]);
        let ip: IpAddr = "203.0.113.9".parse().unwrap();
        let first = cap.admit(ip).expect("one");
        let _second = cap.admit(ip).expect("two");
        assert!(cap.admit(ip).is_none(), "a third is refused");
        assert!(
            cap.admit("203.0.113.10".parse().unwrap()).is_some(),
            "others are not"
        );
        drop(first);
        assert!(
            cap.admit(ip).is_some(),
            "a closed connection frees its slot"
        );
        let proxy: IpAddr = "10.1.2.3".parse().unwrap();
        let held: Vec<_> = (0..10).map(|_| cap.admit(proxy)).collect();
        assert!(
            held.iter().all(Option::is_some),
            "trusted proxies are exempt"
        );
    }

    #[test]
    fn an_ipv6_client_is_counted_by_its_64() {
        let cap = AddressCap::new(1, Vec::new());
        let _one = cap.admit("2001:db8:1:2::1".parse().unwrap()).unwrap();
        assert!(cap.admit("2001:db8:1:2::ffff".parse().unwrap()).is_none());
        assert!(cap.admit("2001:db8:1:3::1".parse().unwrap()).is_some());
    }

    #[tokio::test]
    async fn a_body_that_stalls_fails_at_the_deadline() {
        use http_body_util::BodyExt;
        let stalled = http_body_util::StreamBody::new(futures_util::stream::pending::<
            Result<Frame<bytes::Bytes>, std::io::Error>,
        >());
        let timed = BodyDeadline::new(stalled, Duration::from_millis(50));
        let error = tokio::time::timeout(Duration::from_secs(5), timed.collect())
            .await
            .expect("cut off at the deadline, not hanging")
            .unwrap_err();
        assert!(error.is::<BodyTooSlow>(), "{error}");
        let whole = http_body_util::Full::new(bytes::Bytes::from_static(b"prompt=a+cat"));
        let read = BodyDeadline::new(whole, Duration::from_millis(50))
            .collect()
            .await;
        assert_eq!(
            read.unwrap().to_bytes(),
            "prompt=a+cat",
            "a body in time is untouched"
        );
    }
}
