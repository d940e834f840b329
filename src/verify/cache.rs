//! Verified-token cache: a token that verified once is not verified again until it expires.
//!
//! Keyed by SHA-256 of the whole token (a 64-bit hash would turn a collision into a forged allow;
//! the signature alone is not the token). Entries hold only the claims decisions need and
//! remember the key that verified them: a hit counts only while that same key is still in force,
//! so a JWKS change that drops the `kid` drops its tokens too. Revocation and the MFA gate are
//! applied on every request, cached or not.
//!
//! quick_cache (S3-FIFO, scan-resistant): an entry costs little beyond its key and value, which
//! matters at 100,000 entries (moka adds per-entry queue and timer nodes; the figures are in
//! BENCHMARKS.md, from `examples/cache_memory`). It has no per-entry expiry, so expiry is ours: a hit past `exp` is removed on the spot and never served, and `purge_expired`
//! (every minute, from the server) drops the rest.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// What the cache needs of an entry: when its token expires (Unix seconds).
pub trait Expires: Send + Sync + 'static {
    /// The token's `exp` (Unix seconds).
    fn exp(&self) -> u64;
}

/// Bounded cache of verified tokens (a capacity of 0 caches nothing).
pub struct TokenCache<V> {
    cache: Option<Arc<quick_cache::sync::Cache<[u8; 32], Arc<V>>>>,
    /// Answers served from the cache, and lookups that had to verify: for metrics.
    counts: Arc<[AtomicU64; 2]>,
}

crate::opaque_debug!(TokenCache<V>);

impl<V> Clone for TokenCache<V> {
    fn clone(&self) -> Self {
        TokenCache { cache: self.cache.clone(), counts: self.counts.clone() }
    }
}

impl<V: Expires> TokenCache<V> {
    /// `capacity` tokens at most (0: no cache). Defaults to 100,000 in the configuration.
    pub fn new(capacity: u64) -> TokenCache<V> {
        let cache = (capacity > 0)
            .then(|| Arc::new(quick_cache::sync::Cache::new(usize::try_from(capacity).unwrap_or(usize::MAX))));
        TokenCache { cache, counts: Arc::default() }
    }

    /// The entry for `digest` if its token has not expired at Unix time `now`.
    pub fn get(&self, digest: &[u8; 32], now: u64) -> Option<Arc<V>> {
        let cache = self.cache.as_ref()?;
        let entry = cache.get(digest)?;
        if entry.exp() <= now {
            cache.remove(digest);
            return None;
        }
        Some(entry)
    }

    /// Remembers a token that verified, under the digest of the whole token.
    pub fn insert(&self, digest: [u8; 32], verified: V) {
        if let Some(cache) = &self.cache {
            cache.insert(digest, Arc::new(verified));
        }
    }

    /// Drops every entry whose token has expired at Unix time `now`.
    pub fn purge_expired(&self, now: u64) {
        if let Some(cache) = &self.cache {
            cache.retain(|_, entry| entry.exp() > now);
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

    /// Entries held.
    pub fn len(&self) -> u64 {
        self.cache.as_ref().map_or(0, |c| c.len() as u64)
    }

    /// True when nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// SHA-256 of the whole token: the cache key.
pub fn digest(token: &str) -> [u8; 32] {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, token.as_bytes());
    digest.as_ref().try_into().expect("sha-256 is 32 bytes")
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Entry(u64);

    impl Expires for Entry {
        fn exp(&self) -> u64 {
            self.0
        }
    }

    #[test]
    fn expired_entries_are_never_served_and_purged() {
        let cache = TokenCache::new(10);
        cache.insert([1; 32], Entry(100));
        cache.insert([2; 32], Entry(200));
        assert!(cache.get(&[1; 32], 99).is_some());
        assert!(cache.get(&[1; 32], 100).is_none(), "gone at exp");
        assert_eq!(cache.len(), 1, "an expired hit is removed");
        cache.insert([3; 32], Entry(150));
        cache.purge_expired(150);
        assert_eq!(cache.len(), 1);
        assert!(cache.get(&[2; 32], 150).is_some());
    }

    #[test]
    fn the_cache_is_bounded() {
        let cache = TokenCache::new(100);
        for i in 0..1_000u32 {
            let mut key = [0; 32];
            key[..4].copy_from_slice(&i.to_le_bytes());
            cache.insert(key, Entry(u64::MAX));
        }
        assert!(cache.len() <= 100, "{} entries", cache.len());
    }

    #[test]
    fn a_capacity_of_zero_caches_nothing() {
        let cache = TokenCache::new(0);
        cache.insert([1; 32], Entry(u64::MAX));
        assert!(cache.get(&[1; 32], 0).is_none());
        assert_eq!(cache.len(), 0);
    }
}
