//! The wall clock, read in one place. Everything below takes the time as a parameter, so tests
//! choose it; only the edges (a Check arriving, a logout, a purge tick) read it here.

/// A future `iat` is tolerated this far beyond the leeway, for drift between our clock and the
/// issuer's.
pub const IAT_DRIFT_SECONDS: u64 = 5;

/// Unix seconds now (0 before 1970, which no real clock reports).
pub fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}
