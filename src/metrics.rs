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

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Outcome {
    outcome: &'static str,
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Result_ {
    result: &'static str,
}

/// The service's metrics, cheap to clone and share.
#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

struct Inner {
    registry: Registry,
    decisions: Family<Outcome, Counter>,
    mfa_lookups: Family<Result_, Counter>,
    mfa_lookup_seconds: Histogram,
    mfa_enforced: Gauge,
    mfa_lookups_refused: Counter,
    decision_seconds: Histogram,
    readings: Arc<OnceLock<Reader>>,
}

/// What the other parts report at each scrape (counters they keep themselves, sizes they know).
#[derive(Debug, Default, Clone, Copy)]
pub struct Readings {
    pub jwks_fetches: u64,
    pub jwks_fetch_failures: u64,
    pub keys: u64,
    pub token_cache_hits: u64,
    pub token_cache_misses: u64,
    pub token_cache_entries: u64,
    pub revocations: u64,
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
            ("keys", "Signing keys in force", r.keys),
            ("token_cache_entries", "Verified tokens cached (approximate)", r.token_cache_entries),
            ("revocations", "Revocation entries in force", r.revocations),
        ];
        for (name, help, value) in gauges {
            let gauge = ConstGauge::new(i64::try_from(value).unwrap_or(i64::MAX));
            gauge.encode(encoder.encode_descriptor(name, help, None, gauge.metric_type())?)?;
        }
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
        let mut registry = Registry::with_prefix("cognito_authz");
        let decisions = Family::<Outcome, Counter>::default();
        registry.register("decisions", "Decisions by outcome and reason", decisions.clone());
        let decision_seconds =
            Histogram::new([0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.05, 0.25, 1.0]);
        registry.register("decision_seconds", "Time taken to decide a Check", decision_seconds.clone());
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
        let mfa_lookup_seconds = Histogram::new([0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5]);
        registry.register("mfa_lookup_seconds", "Time taken by MFA state lookups", mfa_lookup_seconds.clone());
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
        Metrics {
            inner: Arc::new(Inner {
                registry,
                mfa_lookups_refused,
                decisions,
                mfa_lookups,
                mfa_lookup_seconds,
                mfa_enforced,
                decision_seconds,
                readings,
            }),
        }
    }

    /// Counts a decision (`reason` is "none" for an allow) and the time it took.
    pub fn decision(&self, outcome: &'static str, reason: &'static str, took: Duration) {
        self.inner.decisions.get_or_create(&Outcome { outcome, reason }).inc();
        self.inner.decision_seconds.observe(took.as_secs_f64());
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
        self.inner.mfa_lookup_seconds.observe(took.as_secs_f64());
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
