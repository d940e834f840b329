//! Logging helpers: a rate limit for audit lines, so a flood of bad requests cannot flood the
//! logs, and escaping for request-derived text.

use std::sync::atomic::{AtomicU64, Ordering};

/// Admits at most `limit` lines per second of Unix time; tells the first admitted line of each
/// second how many were suppressed in the seconds before it.
pub struct AuditLimiter {
    limit: u64,
    /// Second (high 40 bits) and count within it (low 24 bits), updated together.
    slot: AtomicU64,
    suppressed: AtomicU64,
}

impl AuditLimiter {
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

/// Request-derived text for logs: escaped and cut short, so it cannot forge or flood log lines.
pub fn loggable(text: &str) -> String {
    let cut: String = text.chars().take(128).collect();
    format!("{cut:?}")
}

#[cfg(test)]
mod tests {
    use super::*;

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
