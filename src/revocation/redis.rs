//! The shared store: Redis, for several replicas.
//!
//! Entries live in one sorted set (member: the entry as JSON, score: when it expires), and each is
//! published on a channel as it is added. Every replica keeps its own copy: decisions never wait on
//! Redis. Pub/sub drops messages while a subscription is down, so after every (re)subscribe a
//! replica reloads the whole set (subscribing first, so nothing falls between the two), merges it
//! into its copy, and writes back anything Redis lacks (a restarted Redis without persistence). A ping
//! each second, sent on the subscription itself, confirms the copy is current; past the staleness
//! bound decisions answer 503.

use std::sync::Arc;
use std::time::Duration;

use futures_util::{FutureExt, StreamExt};
use redis::AsyncCommands;
use redis::aio::MultiplexedConnection;
use tokio::sync::Mutex;

use super::{Entry, RevocationStore, Revocations, StoreError, StoreFuture};
use crate::clock::unix_now;

/// Revocations in Redis.
pub struct RedisStore {
    client: redis::Client,
    connection: Mutex<Option<MultiplexedConnection>>,
    key: String,
    channel: String,
    timeout: Duration,
}

crate::opaque_debug!(RedisStore);

fn redis_error(e: impl std::fmt::Display) -> StoreError {
    StoreError::Redis(e.to_string())
}

impl RedisStore {
    /// `namespace` keeps deployments apart when they share a Redis (`--revocation-namespace`, by
    /// default the served pool's id).
    pub fn new(url: &str, namespace: &str, timeout: Duration) -> Result<RedisStore, StoreError> {
        let client = redis::Client::open(url).map_err(redis_error)?;
        Ok(RedisStore {
            client,
            connection: Mutex::new(None),
            key: format!("cognito-authz:{namespace}:revocations"),
            channel: format!("cognito-authz:{namespace}:revoked"),
            timeout,
        })
    }

    async fn connection(&self) -> Result<MultiplexedConnection, StoreError> {
        let mut slot = self.connection.lock().await;
        if let Some(conn) = slot.as_ref() {
            return Ok(conn.clone());
        }
        let conn = tokio::time::timeout(self.timeout, self.client.get_multiplexed_async_connection())
            .await
            .map_err(|_| StoreError::Redis("connect timed out".into()))?
            .map_err(redis_error)?;
        *slot = Some(conn.clone());
        Ok(conn)
    }

    /// Runs a command with the timeout; a failed connection is dropped so the next call reconnects.
    async fn run<T>(
        &self,
        work: impl AsyncFnOnce(MultiplexedConnection) -> redis::RedisResult<T>,
    ) -> Result<T, StoreError> {
        let conn = self.connection().await?;
        match tokio::time::timeout(self.timeout, work(conn)).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) => {
                *self.connection.lock().await = None;
                Err(redis_error(e))
            }
            Err(_) => {
                *self.connection.lock().await = None;
                Err(StoreError::Redis("command timed out".into()))
            }
        }
    }

    /// Keeps `revocations` in step with Redis until the process ends: subscribe, reload, then apply
    /// each published entry and ping each second; on any failure, start again.
    pub async fn sync(self: Arc<Self>, revocations: Revocations) {
        let mut backoff = Duration::from_millis(100);
        loop {
            match self.follow(&revocations).await {
                Ok(()) => {}
                Err(error) => tracing::warn!(%error, "lost the revocation subscription; resubscribing"),
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(2));
        }
    }

    async fn follow(&self, revocations: &Revocations) -> Result<(), StoreError> {
        let pubsub = tokio::time::timeout(self.timeout, self.client.get_async_pubsub())
            .await
            .map_err(|_| StoreError::Redis("connect timed out".into()))?
            .map_err(redis_error)?;
        let (mut sink, mut messages) = pubsub.split();
        tokio::time::timeout(self.timeout, sink.subscribe(&self.channel))
            .await
            .map_err(|_| StoreError::Redis("subscribe timed out".into()))?
            .map_err(redis_error)?;
        let n = revocations.resync(unix_now()).await?;
        tracing::info!(entries = n, "revocation list loaded from redis");
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
                    revocations.confirm();
                }
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
            let members: Vec<String> =
                self.run(async move |mut c| c.zrangebyscore(&key, format!("({now}"), "+inf").await).await?;
            Ok(members.iter().filter_map(|m| serde_json::from_str(m).ok()).collect())
        })
    }

    fn append<'a>(&'a self, entries: &'a [Entry]) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            let mut pipe = redis::pipe();
            pipe.atomic();
            for entry in entries {
                let member = serde_json::to_string(entry).expect("entries serialise");
                pipe.zadd(&self.key, &member, entry.until()).ignore();
                pipe.publish(&self.channel, &member).ignore();
            }
            self.run(async move |mut c| pipe.query_async::<()>(&mut c).await).await
        })
    }

    fn compact(&self, now: u64) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            let key = self.key.clone();
            self.run(async move |mut c| c.zrembyscore::<_, _, _, ()>(&key, "-inf", now).await).await
        })
    }
}
