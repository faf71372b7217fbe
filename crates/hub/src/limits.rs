//! Overload limits on subscriptions: how many streams this hub holds open at once, and how
//! many one client holds.
//!
//! Subscriptions are what accumulate: a publish is over in milliseconds, a subscription holds a
//! socket, a queue and its index entries for minutes or hours. So the caps count open
//! subscription *streams*, and refusing one never refuses a publish or a health check:
//! - past `HubConfig::max_connections` open streams, a new subscription gets 503 with a
//!   `Retry-After` spread at random over [`RETRY_AFTER_FULL`], so that refused clients do not
//!   all come back in the same second;
//! - past `HubConfig::max_subscriptions_per_client` streams of one client, 429 with
//!   `Retry-After` [`RETRY_AFTER_CLIENT`] (draft-08 allows 429 for this): the client must close
//!   some of its own first.
//!
//! A client is its peer address (an IPv4 address or an IPv6 /64, see `peer.rs`), and, when it
//! presents a token, that token at that address: users who share one token (a site that embeds
//! the same subscriber token in every page) are still counted apart, and one token cannot take a
//! whole address's allowance from anonymous neighbours behind the same NAT. A token is kept as a
//! keyed hash, never in clear. When the peer address is unknown (an application serving the
//! router without connect info), clients cannot be told apart and the per-client cap is not
//! applied; the total cap still is.
//!
//! Each admitted subscription holds a [`SubscriptionSlot`] for its stream's life; dropping it
//! gives the room back. The total is one atomic counter; the per-client counts are a map under
//! a std mutex touched twice per subscription (opening, closing), never per event.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::ops::RangeInclusive;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use http::StatusCode;
use rand::Rng;

use crate::peer::ClientAddress;
use crate::rejection::Rejection;

/// Seconds a subscriber refused because the hub is full is told to wait, drawn at random.
pub(crate) const RETRY_AFTER_FULL: RangeInclusive<u64> = 2..=10;

/// Seconds a client over its own cap is told to wait.
pub(crate) const RETRY_AFTER_CLIENT: u64 = 5;

/// Who a per-client cap counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct ClientId {
    address: ClientAddress,
    /// A keyed hash of the token presented, if any.
    token: Option<u64>,
}

/// How many subscriptions each client with at least one keeps open.
type ClientCounts = Mutex<HashMap<ClientId, usize>>;

/// The open-subscription counts and their caps.
pub(crate) struct SubscriptionLimits {
    max_total: Option<usize>,
    max_per_client: Option<usize>,
    open: Arc<AtomicUsize>,
    per_client: Arc<ClientCounts>,
    token_hasher: RandomState,
}

impl SubscriptionLimits {
    /// Caps of `max_total` open streams and `max_per_client` per client; `None`: no cap.
    pub(crate) fn new(
        max_total: Option<usize>,
        max_per_client: Option<usize>,
    ) -> SubscriptionLimits {
        SubscriptionLimits {
            max_total,
            max_per_client,
            open: Arc::default(),
            per_client: Arc::default(),
            token_hasher: RandomState::new(),
        }
    }

    /// The client presenting `token` (if any) from `address`.
    pub(crate) fn client(&self, address: ClientAddress, token: Option<&str>) -> ClientId {
        ClientId {
            address,
            token: token.map(|token| self.token_hasher.hash_one(token)),
        }
    }

    /// Room for one more subscription of `client`, or the rejection to answer with.
    pub(crate) fn admit(&self, client: ClientId) -> Result<SubscriptionSlot, Rejection> {
        let total = self.open.fetch_add(1, Ordering::AcqRel) + 1;
        let mut slot = SubscriptionSlot {
            open: Arc::clone(&self.open),
            per_client: None,
        };
        if let Some(max) = self.max_total
            && total > max
        {
            // `slot` gives the count back when dropped.
            let retry_after = rand::rng().random_range(RETRY_AFTER_FULL);
            return Err(Rejection::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "too many subscriptions on this hub: retry later",
            )
            .with_detail(format!("max-connections ({max}) open subscriptions"))
            .with_retry_after(retry_after));
        }
        let (Some(max), false) = (
            self.max_per_client,
            client.address == ClientAddress::Unknown,
        ) else {
            return Ok(slot);
        };
        let mut counts = self.per_client.lock().unwrap();
        let count = counts.entry(client).or_insert(0);
        if *count >= max {
            if *count == 0 {
                counts.remove(&client);
            }
            return Err(Rejection::new(
                StatusCode::TOO_MANY_REQUESTS,
                format!(
                    "too many subscriptions from this client (the limit is {max}): close some first"
                ),
            )
            .with_detail(format!(
                "{} ({}) has {max} open subscriptions",
                client.address,
                if client.token.is_some() {
                    "with a token"
                } else {
                    "anonymous"
                }
            ))
            .with_retry_after(RETRY_AFTER_CLIENT));
        }
        *count += 1;
        slot.per_client = Some((Arc::clone(&self.per_client), client));
        Ok(slot)
    }
}

/// One open subscription's room under the caps, given back when dropped.
pub(crate) struct SubscriptionSlot {
    open: Arc<AtomicUsize>,
    per_client: Option<(Arc<ClientCounts>, ClientId)>,
}

impl Drop for SubscriptionSlot {
    fn drop(&mut self) {
        self.open.fetch_sub(1, Ordering::AcqRel);
        if let Some((counts, client)) = self.per_client.take() {
            let mut counts = counts.lock().unwrap();
            if let Some(count) = counts.get_mut(&client) {
                *count -= 1;
                if *count == 0 {
                    counts.remove(&client);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HERE: ClientAddress = ClientAddress::V4([192, 0, 2, 1]);
    const THERE: ClientAddress = ClientAddress::V4([192, 0, 2, 2]);

    #[test]
    fn the_total_cap_counts_open_slots() {
        let limits = SubscriptionLimits::new(Some(2), None);
        let a = limits.admit(limits.client(HERE, None)).unwrap();
        let _b = limits.admit(limits.client(THERE, None)).unwrap();
        let refused = limits.admit(limits.client(THERE, None)).err().unwrap();
        assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
        drop(a);
        assert!(limits.admit(limits.client(HERE, None)).is_ok());
    }

    #[test]
    fn the_client_cap_counts_per_address_and_token() {
        let limits = SubscriptionLimits::new(None, Some(1));
        let _anonymous = limits.admit(limits.client(HERE, None)).unwrap();
        let refused = limits.admit(limits.client(HERE, None)).err().unwrap();
        assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
        // The same token elsewhere, or a token here, is another client.
        let token = limits.admit(limits.client(HERE, Some("t"))).unwrap();
        let _elsewhere = limits.admit(limits.client(THERE, Some("t"))).unwrap();
        assert!(limits.admit(limits.client(HERE, Some("t"))).is_err());
        drop(token);
        assert!(limits.admit(limits.client(HERE, Some("t"))).is_ok());
        // Unknown addresses cannot be told apart: not capped per client.
        let unknown = limits.client(ClientAddress::Unknown, None);
        let _u1 = limits.admit(unknown).unwrap();
        let _u2 = limits.admit(unknown).unwrap();
    }
}
