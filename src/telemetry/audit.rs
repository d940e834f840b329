//! Logging helpers: a rate limit for audit lines, so a flood of bad requests cannot flood the
//! logs, and escaping for request-derived text.

use std::sync::atomic::{AtomicU64, Ordering};

/// Admits at most `limit` lines per second of Unix time; tells the first admitted line of each
/// second how many were suppressed in the seconds before it.
#[derive(Debug)]
pub struct AuditLimiter {
    limit: u64,
    /// Second (high 40 bits) and count within it (low 24 bits), updated together.
    slot: AtomicU64,
    suppressed: AtomicU64,
}

impl AuditLimiter {
    /// At most `limit` lines a second.
    pub fn per_second(limit: u64) -> AuditLimiter {
        AuditLimiter { limit: limit.min(0xFF_FFFF), slot: AtomicU64::new(0), suppressed: AtomicU64::new(0) }
    }

    /// `Some(suppressed_before)` when a line may be written at Unix time `now`.
    pub fn admit(&self, now: u64) -> Option<u64> {
        let mut current = self.slot.load(Ordering::Relaxed);
        loop {
            let (second, count) = (current >> 24, current & 0xFF_FFFF);
            let next = if second == now & 0xFF_FFFF_FFFF {
                if count >= self.limit {
                    self.suppressed.fetch_add(1, Ordering::Relaxed);
                    return None;
                }
                current + 1
            } else {
                ((now & 0xFF_FFFF_FFFF) << 24) | 1
            };
            match self.slot.compare_exchange_weak(current, next, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => return Some(self.suppressed.swap(0, Ordering::Relaxed)),
                Err(seen) => current = seen,
            }
        }
    }
}

/// Request-derived text for logs, cut short so it cannot flood them. Record it as a plain `&str`
/// field (not `%`/`?`): the JSON format then quotes it once, and the text format escapes control
/// characters and quotes, so neither can forge a line.
pub fn loggable(text: &str) -> &str {
    match text.char_indices().nth(MAX_LOGGED_CHARS) {
        Some((cut, _)) => &text[..cut],
        None => text,
    }
}

const MAX_LOGGED_CHARS: usize = 128;

/// A request path for logs: only what comes before the query string or fragment (which carry
/// codes, `state`, signatures and keys), and whether there was one. Never the query itself.
pub fn loggable_path(path: &str) -> (&str, bool) {
    match path.find(['?', '#']) {
        Some(at) => (loggable(&path[..at]), true),
        None => (loggable(path), false),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_logged_path_stops_before_the_query_or_fragment() {
        assert_eq!(loggable_path("/enforce/items?code=secret"), ("/enforce/items", true));
        assert_eq!(loggable_path("/a#frag?x=1"), ("/a", true));
        assert_eq!(loggable_path("/plain"), ("/plain", false));
        assert_eq!(loggable_path("?only=query"), ("", true));
        let long = "é".repeat(300);
        assert_eq!(loggable(&long).chars().count(), 128, "cut on a character boundary");
    }

    #[test]
    fn admits_the_limit_each_second_and_reports_what_it_dropped() {
        let limiter = AuditLimiter::per_second(2);
        assert_eq!(limiter.admit(100), Some(0));
        assert_eq!(limiter.admit(100), Some(0));
        assert_eq!(limiter.admit(100), None);
        assert_eq!(limiter.admit(100), None);
        assert_eq!(limiter.admit(101), Some(2));
    }
}
