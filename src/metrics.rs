//! Prometheus metrics. Labels come from fixed sets only (never a `kid`, a path or a user, which a
//! caller could multiply).

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::cognito::{CognitoError, MfaState};

mod process;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Decision {
    outcome: &'static str,
    reason: &'static str,
    /// `enforce`, or `shadow` when the decision was only logged and counted.
    mode: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Outcome {
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Result_ {
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HttpRequest {
    route: &'static str,
    status: u16,
}

type Histograms = Family<Outcome, Histogram, fn() -> Histogram>;

fn decision_buckets() -> Histogram {
    Histogram::new([0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.05, 0.25, 1.0])
}

fn lookup_buckets() -> Histogram {
    Histogram::new([0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5])
}

/// The service's metrics, cheap to clone and share.
#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

struct Inner {
    registry: Registry,
    decisions: Family<Decision, Counter>,
    decision_duration: Histograms,
    mfa_lookups: Family<Result_, Counter>,
    mfa_lookup_duration: Histograms,
    mfa_enforced: Gauge,
    mfa_lookups_refused: Counter,
    http_requests: Family<HttpRequest, Counter>,
    readings: Arc<OnceLock<Reader>>,
}

/// What the other parts report at each scrape (counters they keep themselves, sizes they know).
#[derive(Debug, Default, Clone, Copy)]
pub struct Readings {
    pub jwks_fetches: u64,
    pub jwks_fetch_failures: u64,
    pub jwks_keys: u64,
    /// Unix time of the last successful key fetch (0 before the first).
    pub jwks_last_refresh: u64,
    pub token_cache_hits: u64,
    pub token_cache_misses: u64,
    pub token_cache_entries: u64,
    pub revocation_entries: u64,
    /// Seconds since the shared store last confirmed this replica's copy (0 for a local file).
    pub revocation_sync_age: f64,
}

type Reader = Box<dyn Fn() -> Readings + Send + Sync>;

/// Reads the parts at scrape time, so the hot path keeps only its own relaxed atomics.
struct PartsCollector(Arc<OnceLock<Reader>>);

impl std::fmt::Debug for PartsCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PartsCollector")
    }
}

impl Collector for PartsCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Some(read) = self.0.get() else { return Ok(()) };
        let r = read();
        let counters = [
            ("jwks_fetches", "JWKS fetches started", r.jwks_fetches),
            (
                "jwks_fetch_failures",
                "JWKS fetches that failed (the last good keys stay in force)",
                r.jwks_fetch_failures,
            ),
            ("token_cache_hits", "Tokens answered from the verified-token cache", r.token_cache_hits),
            ("token_cache_misses", "Tokens that had to be verified", r.token_cache_misses),
        ];
        for (name, help, value) in counters {
            let counter = ConstCounter::new(value);
            counter.encode(encoder.encode_descriptor(name, help, None, counter.metric_type())?)?;
        }
        let gauges = [
            ("jwks_keys", "Signing keys in force", r.jwks_keys),
            (
                "jwks_last_refresh_timestamp_seconds",
                "Unix time of the last successful signing-key fetch (0 before the first)",
                r.jwks_last_refresh,
            ),
            ("token_cache_entries", "Verified tokens cached (approximate)", r.token_cache_entries),
            ("revocation_entries", "Revocation entries in force", r.revocation_entries),
        ];
        for (name, help, value) in gauges {
            let gauge = ConstGauge::new(i64::try_from(value).unwrap_or(i64::MAX));
            gauge.encode(encoder.encode_descriptor(name, help, None, gauge.metric_type())?)?;
        }
        let age = ConstGauge::new(r.revocation_sync_age);
        let help = "Seconds since the revocation store last confirmed this replica's copy (0 for a local file)";
        age.encode(encoder.encode_descriptor("revocation_sync_age_seconds", help, None, age.metric_type())?)?;
        Ok(())
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Build {
    version: &'static str,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut root = Registry::default();
        // The standard process metrics keep their standard, unprefixed names.
        root.register_collector(Box::new(process::ProcessCollector));
        let registry = root.sub_registry_with_prefix("cognito_authz");
        let decisions = Family::<Decision, Counter>::default();
        registry.register("decisions", "Decisions by outcome, reason and mode", decisions.clone());
        let decision_duration: Histograms = Family::new_with_constructor(decision_buckets);
        registry.register("decision_duration_seconds", "Time taken to decide a Check", decision_duration.clone());
        let build = Family::<Build, Gauge>::default();
        build.get_or_create(&Build { version: env!("CARGO_PKG_VERSION") }).set(1);
        registry.register("build_info", "The running version (always 1)", build);
        let readings = Arc::new(OnceLock::new());
        registry.register_collector(Box::new(PartsCollector(readings.clone())));
        let mfa_lookups = Family::<Result_, Counter>::default();
        registry.register(
            "mfa_lookups",
            "MFA state lookups at Cognito by result (throttled counts throttling)",
            mfa_lookups.clone(),
        );
        let mfa_lookup_duration: Histograms = Family::new_with_constructor(lookup_buckets);
        registry.register(
            "mfa_lookup_duration_seconds",
            "Time taken by MFA state lookups",
            mfa_lookup_duration.clone(),
        );
        let mfa_enforced = Gauge::default();
        registry.register(
            "mfa_enforced",
            "1 when the MFA gate is enforced, 0 when it is switched off",
            mfa_enforced.clone(),
        );
        let mfa_lookups_refused = Counter::default();
        registry.register(
            "mfa_lookups_refused",
            "MFA lookups not made because the process-wide budget (--mfa-lookups-per-second) was spent",
            mfa_lookups_refused.clone(),
        );
        let http_requests = Family::<HttpRequest, Counter>::default();
        registry.register("http_requests", "Requests to the HTTP module by route and status", http_requests.clone());
        Metrics {
            inner: Arc::new(Inner {
                registry: root,
                decisions,
                decision_duration,
                mfa_lookups,
                mfa_lookup_duration,
                mfa_enforced,
                mfa_lookups_refused,
                http_requests,
                readings,
            }),
        }
    }

    /// Counts a decision (`reason` is "none" for an allow; `shadow` when it was only observed) and
    /// the time it took.
    pub fn decision(&self, outcome: &'static str, reason: &'static str, shadow: bool, took: Duration) {
        let mode = if shadow { "shadow" } else { "enforce" };
        self.inner.decisions.get_or_create(&Decision { outcome, reason, mode }).inc();
        self.inner.decision_duration.get_or_create(&Outcome { outcome }).observe(took.as_secs_f64());
    }

    /// Counts a request to the HTTP module (`route` from a fixed set).
    pub fn http_request(&self, route: &'static str, status: u16) {
        self.inner.http_requests.get_or_create(&HttpRequest { route, status }).inc();
    }

    /// Sets how the other parts are read at each scrape (once; later calls are ignored).
    pub fn read_parts(&self, read: impl Fn() -> Readings + Send + Sync + 'static) {
        let _ = self.inner.readings.set(Box::new(read));
    }

    pub fn mfa_lookup(&self, answer: &Result<MfaState, CognitoError>, took: Duration) {
        let result = match answer {
            Ok(MfaState::Enrolled) => "enrolled",
            Ok(MfaState::NotEnrolled) => "not_enrolled",
            Ok(MfaState::Gone) => "user_gone",
            Ok(MfaState::Replaced) => "user_replaced",
            Err(CognitoError::Throttled) => "throttled",
            Err(CognitoError::Unreachable) => "unreachable",
            Err(CognitoError::Unexpected | CognitoError::Refused) => "error",
        };
        self.inner.mfa_lookups.get_or_create(&Result_ { result }).inc();
        self.inner.mfa_lookup_duration.get_or_create(&Outcome { outcome: result }).observe(took.as_secs_f64());
    }

    pub fn mfa_lookup_refused(&self) {
        self.inner.mfa_lookups_refused.inc();
    }

    pub fn set_mfa_enforced(&self, enforced: bool) {
        self.inner.mfa_enforced.set(i64::from(enforced));
    }

    /// The OpenMetrics text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.inner.registry).expect("writing to a String");
        out
    }
}
