//! The cluster's active subscriptions in Redis, each node's under a lease [R30][R31].
//!
//! # Keys
//! - `NAME:nodes`: a sorted set, node id -> the end of its lease (ms, Redis's clock);
//! - `NAME:node:{node id}`: a hash, subscription IRI -> JSON-LD document, one per node.
//!
//! # Who writes what
//! One task per node (the "keeper") applies this node's changes in the order they happened
//! (a subscription that starts and ends at once is never left behind), renews the lease every
//! [`RENEW_EVERY`], and reaps: a node whose lease ran out has its set deleted and its
//! subscriptions announced as ended (`active: false`, on the live channel) by whichever node
//! reaps it first (one script, so exactly one). A dead node's subscriptions are thus announced
//! ended between [`LEASE`] and [`LEASE`] + [`RENEW_EVERY`] after its last renewal.
//!
//! When the keeper finds its own node gone from `NAME:nodes` (Redis restarted empty, or the
//! node was cut off longer than the lease and reaped), or a write failed, it rewrites its whole
//! set from its local copy; a subscription reaped that way while it was in fact alive shows
//! again in the API, its `active: false` event having been premature.
//!
//! The API lists the subscriptions of live nodes (lease not run out) from Redis, and this
//! node's from its local copy (so a subscription shows on its own node as soon as it starts).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use herald_protocol::{Update, generate_id};
use redis::aio::ConnectionManager;
use serde_json::Value;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{Keys, record, with_timeout};
use crate::transport::{BoxFuture, SubscriptionDirectory, TransportError};

/// How long a node's subscriptions outlive its last renewal.
pub(super) const LEASE: Duration = Duration::from_secs(5);
/// How often a node renews its lease and looks for dead nodes.
pub(super) const RENEW_EVERY: Duration = Duration::from_secs(1);
/// Most dead nodes reaped per tick.
const REAP_PER_TICK: usize = 16;

/// The current time on Redis's clock, in ms.
const NOW: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
"#;

/// `KEYS`: nodes. `ARGV`: node id, lease ms. Returns 1 if the node was registered already.
const RENEW: &str = r#"
local present = redis.call('ZSCORE', KEYS[1], ARGV[1])
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
if present then return 1 else return 0 end
"#;

/// `KEYS`: nodes. `ARGV`: node key prefix. Removes ONE dead node and returns its set as a flat
/// `[id, document, ...]` list (empty when no node is dead).
const REAP: &str = r#"
local dead = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, 1)
if #dead == 0 then return {} end
redis.call('ZREM', KEYS[1], dead[1])
local key = ARGV[1] .. dead[1]
local set = redis.call('HGETALL', key)
redis.call('DEL', key)
return set
"#;

/// `KEYS`: nodes. `ARGV`: node key prefix, this node's id. The documents of the other live
/// nodes.
const LIST: &str = r#"
local out = {}
for _, node in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], now, '+inf')) do
  if node ~= ARGV[2] then
    for _, doc in ipairs(redis.call('HVALS', ARGV[1] .. node)) do out[#out + 1] = doc end
  end
end
return out
"#;

enum Change {
    Started(String, String),
    Ended(String),
}

/// This node's side of the directory. Dropping the transport stops the keeper.
pub(super) struct Directory {
    node: String,
    nodes_key: String,
    node_prefix: String,
    /// This node's subscriptions: id -> document.
    local: Arc<Mutex<HashMap<String, String>>>,
    changes: mpsc::UnboundedSender<Change>,
    publisher: ConnectionManager,
    list: Arc<redis::Script>,
}

impl std::fmt::Debug for Directory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Directory")
            .field("node", &self.node)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for Change {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Change::Started(id, _) => write!(f, "Started({id})"),
            Change::Ended(id) => write!(f, "Ended({id})"),
        }
    }
}

impl Directory {
    /// Registers this node and starts its keeper.
    pub(super) fn start(
        publisher: ConnectionManager,
        keys: &Keys,
        stop: CancellationToken,
    ) -> Directory {
        let node = generate_id();
        let nodes_key = format!("{}:nodes", keys.stream);
        let node_prefix = format!("{}:node:", keys.stream);
        let local = Arc::new(Mutex::new(HashMap::new()));
        let (changes, received) = mpsc::unbounded_channel();
        let keeper = Keeper {
            node: node.clone(),
            nodes_key: nodes_key.clone(),
            node_key: format!("{node_prefix}{node}"),
            node_prefix: node_prefix.clone(),
            live_key: keys.live.clone(),
            local: local.clone(),
            conn: publisher.clone(),
            renew: redis::Script::new(&format!("{NOW}{RENEW}")),
            reap: redis::Script::new(&format!("{NOW}{REAP}")),
            in_sync: false,
        };
        tokio::spawn(keeper.run(received, stop));
        Directory {
            node,
            nodes_key,
            node_prefix,
            local,
            changes,
            publisher,
            list: Arc::new(redis::Script::new(&format!("{NOW}{LIST}"))),
        }
    }
}

impl SubscriptionDirectory for Directory {
    fn started(&self, id: String, document: String) {
        self.local
            .lock()
            .unwrap()
            .insert(id.clone(), document.clone());
        let _ = self.changes.send(Change::Started(id, document));
    }

    fn ended(&self, id: String) {
        self.local.lock().unwrap().remove(&id);
        let _ = self.changes.send(Change::Ended(id));
    }

    fn list(&self) -> BoxFuture<'static, Result<Vec<String>, TransportError>> {
        let mut conn = self.publisher.clone();
        let script = self.list.clone();
        let (nodes_key, prefix, node) = (
            self.nodes_key.clone(),
            self.node_prefix.clone(),
            self.node.clone(),
        );
        let local = self.local.clone();
        Box::pin(async move {
            let mut documents: Vec<String> = with_timeout(
                script
                    .key(nodes_key)
                    .arg(prefix)
                    .arg(node)
                    .invoke_async(&mut conn),
            )
            .await?;
            documents.extend(local.lock().unwrap().values().cloned());
            Ok(documents)
        })
    }
}

/// The task that writes this node's set, renews its lease and reaps dead nodes.
struct Keeper {
    node: String,
    nodes_key: String,
    node_key: String,
    node_prefix: String,
    live_key: String,
    local: Arc<Mutex<HashMap<String, String>>>,
    conn: ConnectionManager,
    renew: redis::Script,
    reap: redis::Script,
    /// Whether Redis holds exactly the local set (plus the changes still in the channel).
    in_sync: bool,
}

impl Keeper {
    async fn run(mut self, mut changes: mpsc::UnboundedReceiver<Change>, stop: CancellationToken) {
        let mut tick = tokio::time::interval(RENEW_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = stop.cancelled() => return self.leave().await,
                change = changes.recv() => {
                    let Some(change) = change else { return };
                    let mut batch = vec![change];
                    while let Ok(change) = changes.try_recv() {
                        batch.push(change);
                    }
                    self.apply(batch).await;
                }
                _ = tick.tick() => self.renew_and_reap().await,
            }
        }
    }

    async fn apply(&mut self, batch: Vec<Change>) {
        if !self.in_sync {
            return; // the next renewal rewrites the whole set
        }
        let mut pipe = redis::pipe();
        for change in &batch {
            match change {
                Change::Started(id, document) => pipe.hset(&self.node_key, id, document).ignore(),
                Change::Ended(id) => pipe.hdel(&self.node_key, id).ignore(),
            };
        }
        if let Err(e) = with_timeout(pipe.query_async::<()>(&mut self.conn)).await {
            tracing::debug!("subscriptions not written to Redis, rewriting later: {e}");
            self.in_sync = false;
        }
    }

    async fn renew_and_reap(&mut self) {
        let renewed: Result<u8, _> = with_timeout(
            self.renew
                .key(&self.nodes_key)
                .arg(&self.node)
                .arg(LEASE.as_millis() as u64)
                .invoke_async(&mut self.conn),
        )
        .await;
        match renewed {
            Ok(present) => {
                if present == 0 || !self.in_sync {
                    self.rewrite().await;
                }
            }
            Err(e) => {
                tracing::debug!("subscription lease not renewed: {e}");
                self.in_sync = false;
                return;
            }
        }
        for _ in 0..REAP_PER_TICK {
            let set: Result<Vec<String>, _> = with_timeout(
                self.reap
                    .key(&self.nodes_key)
                    .arg(&self.node_prefix)
                    .invoke_async(&mut self.conn),
            )
            .await;
            match set {
                Ok(set) if set.is_empty() => break,
                Ok(set) => self.announce_ended(set).await,
                Err(e) => {
                    tracing::debug!("dead nodes not reaped: {e}");
                    break;
                }
            }
        }
    }

    /// Replaces this node's set in Redis with the local copy.
    async fn rewrite(&mut self) {
        let local: Vec<(String, String)> = self
            .local
            .lock()
            .unwrap()
            .iter()
            .map(|(id, document)| (id.clone(), document.clone()))
            .collect();
        let mut pipe = redis::pipe();
        pipe.atomic().del(&self.node_key).ignore();
        if !local.is_empty() {
            pipe.hset_multiple(&self.node_key, &local).ignore();
        }
        self.in_sync = with_timeout(pipe.query_async::<()>(&mut self.conn))
            .await
            .is_ok();
    }

    /// Announces the subscriptions of a dead node (`[id, document, ...]`) as ended.
    async fn announce_ended(&mut self, set: Vec<String>) {
        tracing::info!(
            "a node's lease ran out: announcing the end of its {} subscriptions",
            set.len() / 2
        );
        for pair in set.chunks_exact(2) {
            let Ok(mut document) = serde_json::from_str::<Value>(&pair[1]) else {
                continue;
            };
            document["active"] = Value::Bool(false);
            // A 1.0 subscription's event is plain JSON of type `mercure` [V5]; a draft-07 one
            // is JSON-LD.
            let v1 = document.get("match_type").is_some();
            if !v1 {
                document["@context"] = Value::from("https://mercure.rocks/");
            }
            let update = Update {
                id: generate_id(),
                topics: vec![pair[0].clone()],
                data: document.to_string(),
                private: true,
                event_type: v1.then(|| herald_protocol::publish::RESERVED_EVENT_TYPE.to_owned()),
                retry: None,
            };
            let published = with_timeout(
                redis::cmd("PUBLISH")
                    .arg(&self.live_key)
                    .arg(record::encode(&update, super::now_ms()))
                    .query_async::<usize>(&mut self.conn),
            )
            .await;
            if let Err(e) = published {
                tracing::warn!("end of a dead node's subscription not announced: {e}");
            }
        }
    }

    /// A clean stop: this node's subscriptions were announced ended one by one; remove the
    /// node at once rather than let its lease run out.
    async fn leave(mut self) {
        let mut pipe = redis::pipe();
        pipe.zrem(&self.nodes_key, &self.node)
            .ignore()
            .del(&self.node_key)
            .ignore();
        let _ = with_timeout(pipe.query_async::<()>(&mut self.conn)).await;
    }
}
