//! Verified-token cache: a token that verified once is not verified again until it expires.
//!
//! Keyed by SHA-256 of the whole token (a 64-bit hash would turn a collision into a forged allow;
//! the signature alone is not the token). Entries hold only the claims decisions need, expire at
//! the token's `exp`, and remember the key that verified them: a hit counts only while that same
//! key is still in force, so a JWKS change that drops the `kid` drops its tokens too. Revocation
//! and the MFA gate are applied on every request, cached or not.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// What the cache needs of an entry: when its token expires (Unix seconds).
pub trait Expires: Send + Sync + 'static {
    fn exp(&self) -> u64;
}

/// Bounded cache of verified tokens (TinyLFU admission, LRU eviction).
pub struct TokenCache<V> {
    cache: moka::sync::Cache<[u8; 32], Arc<V>>,
    /// Answers served from the cache, and lookups that had to verify: for metrics.
    counts: Arc<[AtomicU64; 2]>,
}

impl<V> Clone for TokenCache<V> {
    fn clone(&self) -> Self {
        TokenCache { cache: self.cache.clone(), counts: self.counts.clone() }
    }
}

struct UntilExp;

impl<V: Expires> moka::Expiry<[u8; 32], Arc<V>> for UntilExp {
    fn expire_after_create(&self, _: &[u8; 32], value: &Arc<V>, _: Instant) -> Option<Duration> {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        Some(Duration::from_secs(value.exp().saturating_sub(now)))
    }
}

impl<V: Expires> TokenCache<V> {
    /// `capacity` tokens at most. Defaults to 100,000 in the configuration.
    pub fn new(capacity: u64) -> TokenCache<V> {
        TokenCache {
            cache: moka::sync::Cache::builder().max_capacity(capacity).expire_after(UntilExp).build(),
            counts: Arc::default(),
        }
    }

    /// Counts a lookup: `hit` when the cached entry answered, not when it had to be verified.
    pub fn record(&self, hit: bool) {
        self.counts[usize::from(!hit)].fetch_add(1, Ordering::Relaxed);
    }

    /// (hits, misses) so far.
    pub fn hits_and_misses(&self) -> (u64, u64) {
        (self.counts[0].load(Ordering::Relaxed), self.counts[1].load(Ordering::Relaxed))
    }

    pub fn get(&self, digest: &[u8; 32]) -> Option<Arc<V>> {
        self.cache.get(digest)
    }

    pub fn insert(&self, digest: [u8; 32], verified: V) {
        self.cache.insert(digest, Arc::new(verified));
    }

    /// Entries held (approximate: moka counts lazily).
    pub fn len(&self) -> u64 {
        self.cache.run_pending_tasks();
        self.cache.entry_count()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// SHA-256 of the whole token: the cache key.
pub fn digest(token: &str) -> [u8; 32] {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, token.as_bytes());
    digest.as_ref().try_into().expect("sha-256 is 32 bytes")
}
