//! The shared store: Redis, for several replicas.
//!
//! Entries live in one sorted set (member: the entry as JSON, score: when it expires), and each is
//! published on a channel as it is added. Every replica keeps its own copy: decisions never wait on
//! Redis. Pub/sub drops messages while a subscription is down, so after every (re)subscribe a
//! replica reloads the whole set (subscribing first, so nothing falls between the two), merges it
//! into its copy, and writes back anything Redis lacks (a restarted Redis without persistence, or a
//! promoted replica that never received it). A ping each second, sent on the subscription itself,
//! confirms the copy is current; with Sentinel or Cluster the sentinels (or the cluster, for the
//! list's slot) must also still name the primary the subscription is on. Past the staleness bound
//! decisions answer 503.
//!
//! A revocation is acknowledged once `WAIT` says enough replicas hold it (`Durability`), so that
//! the loss of the primary alone cannot lose it.

pub mod nodes;
pub mod target;

use std::sync::Arc;
use std::time::Duration;

use futures_util::{FutureExt, StreamExt};
use redis::AsyncCommands;
use tokio::sync::Mutex;
use tracing::Instrument as _;

use self::nodes::{Commands, Nodes};
use self::target::{Durability, Target, Topology};
use super::{Entry, RevocationStore, Revocations, StoreError, StoreFuture};
use crate::clock::unix_now;

/// Revocations in Redis.
pub struct RedisStore {
    nodes: Nodes,
    connection: Mutex<Option<Commands>>,
    key: String,
    channel: String,
    timeout: Duration,
    durability: Durability,
    shown: String,
}

crate::opaque_debug!(RedisStore);

fn redis_error(e: impl std::fmt::Display) -> StoreError {
    StoreError::Redis(e.to_string())
}

impl RedisStore {
    /// `namespace` keeps deployments apart when they share a Redis (`--revocation-namespace`, by
    /// default the served pool's id). `timeout` bounds each connect and command (a `WAIT` gets its
    /// own timeout on top).
    pub fn new(target: &Target, namespace: &str, timeout: Duration) -> Result<RedisStore, StoreError> {
        let nodes = Nodes::open(target, timeout).map_err(StoreError::Redis)?;
        // In a cluster the key and the channel share a hash tag, so one slot (one primary and its
        // replicas) holds the list and the transaction that adds to it and publishes. Elsewhere the
        // names stay as they were, so existing lists are found.
        let tag = match target.topology {
            Topology::Cluster { .. } => format!("{{{namespace}}}"),
            _ => namespace.to_owned(),
        };
        Ok(RedisStore {
            nodes,
            connection: Mutex::new(None),
            key: format!("cognito-authz:{tag}:revocations"),
            channel: format!("cognito-authz:{tag}:revoked"),
            timeout,
            durability: target.durability,
            shown: target.shown(),
        })
    }

    /// Where it points, without credentials.
    pub fn shown(&self) -> &str {
        &self.shown
    }

    async fn connection(&self) -> Result<Commands, StoreError> {
        let mut slot = self.connection.lock().await;
        if let Some(conn) = slot.as_ref() {
            return Ok(conn.clone());
        }
        let conn = tokio::time::timeout(self.timeout, self.nodes.commands())
            .await
            .map_err(|_| StoreError::Redis("connect timed out".into()))?
            .map_err(redis_error)?;
        *slot = Some(conn.clone());
        Ok(conn)
    }

    /// Runs a command with the timeout; on any failure the connection is dropped, so the next
    /// call connects afresh (to the primary the sentinels name by then).
    async fn run<T>(&self, work: impl AsyncFnOnce(Commands) -> Result<T, StoreError>) -> Result<T, StoreError> {
        let conn = self.connection().await?;
        let bound = self.timeout + self.durability.timeout;
        let result = match tokio::time::timeout(bound, work(conn)).await {
            Ok(result) => result,
            Err(_) => Err(StoreError::Redis("command timed out".into())),
        };
        if result.is_err() {
            *self.connection.lock().await = None;
        }
        result
    }

    /// Keeps `revocations` in step with Redis until the process ends: subscribe, reload, then apply
    /// each published entry and ping each second; on any failure, start again.
    ///
    /// Retries start at 100 ms and double up to 500 ms, and start over after a subscription that
    /// loaded the list: after a failover the sentinels name the new primary about when the first
    /// logout can be acknowledged there, and a replica that waited longer to resubscribe would
    /// allow that logout's token meanwhile (measured in BENCHMARKS.md). Two attempts a second per
    /// replica are a small load beside the decisions' (not measured apart).
    pub async fn sync(self: Arc<Self>, revocations: Revocations) {
        const FIRST: Duration = Duration::from_millis(100);
        let mut backoff = FIRST;
        loop {
            let mut loaded = false;
            if let Err(error) = self.follow(&revocations, &mut loaded).await {
                tracing::warn!(%error, "lost the revocation subscription; resubscribing");
            }
            if loaded {
                backoff = FIRST;
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_millis(500));
        }
    }

    /// Subscribes, loads and follows until something fails; `loaded` says whether it got as far as
    /// loading the list.
    async fn follow(&self, revocations: &Revocations, loaded: &mut bool) -> Result<(), StoreError> {
        let (pubsub, on) = tokio::time::timeout(self.timeout, self.nodes.subscription(&self.key))
            .await
            .map_err(|_| StoreError::Redis("connect timed out".into()))?
            .map_err(redis_error)?;
        let (mut sink, mut messages) = pubsub.split();
        tokio::time::timeout(self.timeout, sink.subscribe(&self.channel))
            .await
            .map_err(|_| StoreError::Redis("subscribe timed out".into()))?
            .map_err(redis_error)?;
        let n = revocations.resync(unix_now()).await?;
        *loaded = true;
        tracing::info!(entries = n, store = %self.shown, "revocation list loaded from redis");
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tokio::select! {
                message = messages.next() => {
                    let Some(message) = message else { return Err(StoreError::Redis("subscription closed".into())) };
                    apply(revocations, &message).await;
                }
                _ = tick.tick() => {
                    // Only the subscription can vouch for what it hears: a ping on the command
                    // connection passes while a half-open subscription (a NAT or proxy that
                    // silently dropped it) misses every publish. So the ping goes on the
                    // subscription itself, where Redis answers it in order behind every message
                    // published before it. Simpler than numbering revocations and comparing
                    // counters: no change to what is written, and the same round trip proves
                    // the connection alive. No answer in time: start again (resubscribe, resync).
                    tokio::time::timeout(self.timeout, sink.ping::<redis::Value>())
                        .await
                        .map_err(|_| StoreError::Redis("the subscription did not answer a ping".into()))?
                        .map_err(redis_error)?;
                    // The messages that came before the answer are already queued: apply them
                    // before vouching for the copy.
                    while let Some(Some(message)) = messages.next().now_or_never() {
                        apply(revocations, &message).await;
                    }
                    if let Some(on) = &on && !self.still_primary(on).await? {
                        continue;
                    }
                    revocations.confirm();
                }
            }
        }
    }

    /// With Sentinel or Cluster: whether the sentinels (or the cluster, for the list's slot) still
    /// name `on` as the primary. A subscription on a primary that was failed over while cut off
    /// (and does not know it yet) still answers pings but hears nothing published on the new one,
    /// so a move means resubscribing and reloading. When no one can be asked, no one vouches
    /// either: the copy is not confirmed, and past the staleness bound decisions answer 503.
    async fn still_primary(&self, on: &str) -> Result<bool, StoreError> {
        match tokio::time::timeout(self.timeout, self.nodes.primary(&self.key)).await {
            Ok(Ok(Some(now))) if now != on => {
                // Logouts must go there too: the command connection may still be on the old one.
                *self.connection.lock().await = None;
                Err(StoreError::Redis(format!("the primary moved from {on} to {now}")))
            }
            Ok(Ok(_)) => Ok(true),
            Ok(Err(error)) => {
                tracing::warn!(%error, "nothing answered where the primary is; the revocation list is not confirmed");
                Ok(false)
            }
            Err(_) => {
                tracing::warn!("nothing answered in time where the primary is; the revocation list is not confirmed");
                Ok(false)
            }
        }
    }
}

/// Applies one published entry.
async fn apply(revocations: &Revocations, message: &redis::Msg) {
    let entry = message.get_payload::<String>().ok().and_then(|payload| serde_json::from_str::<Entry>(&payload).ok());
    match entry {
        Some(entry) => revocations.apply(vec![entry]).await,
        None => tracing::warn!("ignoring an unreadable revocation message"),
    }
}

impl RevocationStore for RedisStore {
    fn load(&self, now: u64) -> StoreFuture<'_, Vec<Entry>> {
        Box::pin(async move {
            let key = self.key.clone();
            let members: Vec<String> = self
                .run(async move |mut c| c.zrangebyscore(&key, format!("({now}"), "+inf").await.map_err(redis_error))
                .instrument(crate::out_span!("revocation read"))
                .await?;
            Ok(members.iter().filter_map(|m| serde_json::from_str(m).ok()).collect())
        })
    }

    fn append<'a>(&'a self, entries: &'a [Entry]) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            // MULTI and EXEC by hand rather than an atomic pipeline, so that WAIT follows EXEC on
            // the same connection (and, in a cluster, goes to the same primary).
            let mut pipe = redis::pipe();
            pipe.cmd("MULTI").ignore();
            for entry in entries {
                let member = serde_json::to_string(entry).expect("entries serialise");
                pipe.zadd(&self.key, &member, entry.until()).ignore();
                pipe.publish(&self.channel, &member).ignore();
            }
            pipe.cmd("EXEC");
            let Durability { replicas, timeout } = self.durability;
            if replicas > 0 {
                pipe.cmd("WAIT").arg(replicas).arg(timeout.as_millis() as u64);
            }
            self.run(async move |mut c| {
                let replies: Vec<redis::Value> = pipe.query_async(&mut c).await.map_err(redis_error)?;
                match replies.first() {
                    Some(redis::Value::Array(results))
                        if !results.iter().any(|r| matches!(r, redis::Value::ServerError(_))) => {}
                    _ => return Err(StoreError::Redis("the transaction did not run".into())),
                }
                if replicas > 0 {
                    let acknowledged = match replies.get(1) {
                        Some(redis::Value::Int(n)) => u32::try_from(*n).unwrap_or(0),
                        _ => 0,
                    };
                    if acknowledged < replicas {
                        return Err(StoreError::NotDurable { acknowledged, wanted: replicas, within: timeout });
                    }
                }
                Ok(())
            })
            .instrument(crate::out_span!("revocation publish", entries = entries.len()))
            .await
        })
    }

    fn compact(&self, now: u64) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            let key = self.key.clone();
            self.run(async move |mut c| c.zrembyscore::<_, _, _, ()>(&key, "-inf", now).await.map_err(redis_error))
                .await
        })
    }
}
