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

use crate::cognito::{CognitoError, MfaFactors, MfaState};

mod process;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Decision {
    outcome: &'static str,
    reason: &'static str,
    /// `enforce`, or `shadow` when the decision was only logged and counted.
    mode: &'static str,
    /// How the proxy asked: `grpc` (Envoy's ext_authz) or `http` (nginx, Caddy, Traefik, Envoy's
    /// `http_service`).
    transport: &'static str,
}

/// A decision on a verified token, by its issuer (a configured name, never a token's `iss`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct IssuerDecision {
    issuer: &'static str,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Outcome {
    outcome: &'static str,
}

/// An MFA lookup's answer and the factors that counted as enrolment (`totp`, `totp,sms`, …).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Lookup {
    result: &'static str,
    factors: &'static str,
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

crate::opaque_debug!(Metrics);

struct Inner {
    registry: Registry,
    decisions: Family<Decision, Counter>,
    decision_duration: Histograms,
    mfa_lookups: Family<Lookup, Counter>,
    mfa_lookup_duration: Histograms,
    mfa_enforced: Gauge,
    mfa_lookups_refused: Counter,
    http_requests: Family<HttpRequest, Counter>,
    readings: Arc<OnceLock<Reader>>,
    issuer_decisions: Family<IssuerDecision, Counter>,
    /// The configured issuers' names, by position (set once at start-up).
    issuer_names: Arc<OnceLock<Vec<&'static str>>>,
    issuer_readings: Arc<OnceLock<IssuerReader>>,
}

/// An enforced allow's series on one transport (`Metrics::allow_series`).
pub struct AllowSeries {
    metrics: Metrics,
    decisions: Counter,
    duration: Histogram,
    /// Each issuer's `allow` counter, made at its first allow (so the exposition is unchanged).
    by_issuer: Box<[OnceLock<Counter>]>,
}

crate::opaque_debug!(AllowSeries);

impl AllowSeries {
    /// Counts one enforced allow that took `took`, of a token `issuer` verified (if any).
    pub fn count(&self, issuer: Option<usize>, took: Duration) {
        self.decisions.inc();
        self.duration.observe(took.as_secs_f64());
        let Some(issuer) = issuer else { return };
        match self.by_issuer.get(issuer) {
            Some(slot) => {
                slot.get_or_init(|| {
                    let name = self.metrics.inner.issuer_names.get().map_or("", |names| names[issuer]);
                    self.metrics
                        .inner
                        .issuer_decisions
                        .get_or_create(&IssuerDecision { issuer: name, outcome: "allow" })
                        .clone()
                })
                .inc();
            }
            None => self.metrics.issuer_decision(issuer, "allow"),
        }
    }
}

/// One issuer's keys, read at each scrape.
#[derive(Debug, Default, Clone, Copy)]
pub struct IssuerReadings {
    /// Failed key fetches so far.
    pub jwks_fetch_failures: u64,
    /// Keys in force.
    pub jwks_keys: u64,
    /// Unix time of the last good fetch.
    pub jwks_last_refresh: u64,
}

type IssuerReader = Box<dyn Fn() -> Vec<IssuerReadings> + Send + Sync>;

/// Each issuer's key readings, labelled with its configured name.
struct IssuersCollector {
    names: Arc<OnceLock<Vec<&'static str>>>,
    read: Arc<OnceLock<IssuerReader>>,
}

impl std::fmt::Debug for IssuersCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("IssuersCollector")
    }
}

impl Collector for IssuersCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let (Some(names), Some(read)) = (self.names.get(), self.read.get()) else { return Ok(()) };
        let readings = read();
        // (name, help, value, is a counter)
        type Series = (&'static str, &'static str, fn(&IssuerReadings) -> u64, bool);
        let series: [Series; 3] = [
            ("issuer_jwks_fetch_failures", "JWKS fetches that failed, by issuer", |r| r.jwks_fetch_failures, true),
            ("issuer_jwks_keys", "Signing keys in force, by issuer", |r| r.jwks_keys, false),
            (
                "issuer_jwks_last_refresh_timestamp_seconds",
                "Unix time of the issuer's last successful signing-key fetch (0 before the first)",
                |r| r.jwks_last_refresh,
                false,
            ),
        ];
        for (name, help, value, counter) in series {
            let kind = if counter {
                prometheus_client::metrics::MetricType::Counter
            } else {
                prometheus_client::metrics::MetricType::Gauge
            };
            let mut family = encoder.encode_descriptor(name, help, None, kind)?;
            for (issuer, reading) in names.iter().zip(&readings) {
                let labels = [("issuer", *issuer)];
                let v = value(reading);
                if counter {
                    ConstCounter::new(v).encode(family.encode_family(&labels)?)?;
                } else {
                    ConstGauge::new(i64::try_from(v).unwrap_or(i64::MAX)).encode(family.encode_family(&labels)?)?;
                }
            }
        }
        Ok(())
    }
}

/// What the other parts report at each scrape (counters they keep themselves, sizes they know).
#[derive(Debug, Default, Clone, Copy)]
pub struct Readings {
    /// Key fetches so far.
    pub jwks_fetches: u64,
    /// Failed key fetches so far.
    pub jwks_fetch_failures: u64,
    /// Keys in force.
    pub jwks_keys: u64,
    /// Unix time of the last successful key fetch (0 before the first).
    pub jwks_last_refresh: u64,
    /// Decisions answered from the token cache.
    pub token_cache_hits: u64,
    /// Decisions that had to verify.
    pub token_cache_misses: u64,
    /// Tokens cached now.
    pub token_cache_entries: u64,
    /// Revocation entries in force.
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
            (
                "trace_spans_dropped",
                "Spans not exported: the export queue was full or the collector failed (tracing on)",
                crate::telemetry::traces::dropped_total(),
            ),
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
    /// A registry with every family registered.
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
        let mfa_lookups = Family::<Lookup, Counter>::default();
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
        let issuer_decisions = Family::<IssuerDecision, Counter>::default();
        registry.register(
            "issuer_decisions",
            "Decisions on verified tokens by issuer (configured name) and outcome",
            issuer_decisions.clone(),
        );
        let issuer_names = Arc::new(OnceLock::new());
        let issuer_readings = Arc::new(OnceLock::new());
        registry.register_collector(Box::new(IssuersCollector {
            names: issuer_names.clone(),
            read: issuer_readings.clone(),
        }));
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
                issuer_decisions,
                issuer_names,
                issuer_readings,
            }),
        }
    }

    /// Counts a decision (`reason` is "none" for an allow; `shadow` when it was only observed) and
    /// the time it took.
    pub fn decision(
        &self,
        outcome: &'static str,
        reason: &'static str,
        shadow: bool,
        transport: &'static str,
        took: Duration,
    ) {
        let mode = if shadow { "shadow" } else { "enforce" };
        self.inner.decisions.get_or_create(&Decision { outcome, reason, mode, transport }).inc();
        self.inner.decision_duration.get_or_create(&Outcome { outcome }).observe(took.as_secs_f64());
    }

    /// The series an enforced allow on `transport` counts into, resolved once by the caller so that
    /// the common decision pays no label hashing and no family lock (a clone shares the series).
    /// The series appear in the exposition as before: at the first allow.
    pub fn allow_series(&self, transport: &'static str) -> AllowSeries {
        let issuers = self.inner.issuer_names.get().map_or(0, Vec::len);
        AllowSeries {
            metrics: self.clone(),
            decisions: self
                .inner
                .decisions
                .get_or_create(&Decision { outcome: "allow", reason: "none", mode: "enforce", transport })
                .clone(),
            duration: self.inner.decision_duration.get_or_create(&Outcome { outcome: "allow" }).clone(),
            by_issuer: (0..issuers).map(|_| OnceLock::new()).collect(),
        }
    }

    /// Names the configured issuers (once; their names become label values, so they come from
    /// configuration only), and how their keys are read at each scrape.
    pub fn name_issuers(
        &self,
        names: Vec<&'static str>,
        read: impl Fn() -> Vec<IssuerReadings> + Send + Sync + 'static,
    ) {
        let _ = self.inner.issuer_names.set(names);
        let _ = self.inner.issuer_readings.set(Box::new(read));
    }

    /// Counts a decision on a token the issuer at `issuer` (its position) verified.
    pub fn issuer_decision(&self, issuer: usize, outcome: &'static str) {
        if let Some(name) = self.inner.issuer_names.get().and_then(|names| names.get(issuer)) {
            self.inner.issuer_decisions.get_or_create(&IssuerDecision { issuer: name, outcome }).inc();
        }
    }

    /// Counts a request to the HTTP module (`route` from a fixed set).
    pub fn http_request(&self, route: &'static str, status: u16) {
        self.inner.http_requests.get_or_create(&HttpRequest { route, status }).inc();
    }

    /// Sets how the other parts are read at each scrape (once; later calls are ignored).
    pub fn read_parts(&self, read: impl Fn() -> Readings + Send + Sync + 'static) {
        let _ = self.inner.readings.set(Box::new(read));
    }

    /// Counts one MFA lookup at Cognito, by answer, and how long it took.
    pub fn mfa_lookup(&self, answer: &Result<MfaState, CognitoError>, took: Duration, factors: MfaFactors) {
        let result = match answer {
            Ok(MfaState::Enrolled) => "enrolled",
            Ok(MfaState::NotEnrolled) => "not_enrolled",
            Ok(MfaState::Gone) => "user_gone",
            Ok(MfaState::Replaced) => "user_replaced",
            Err(CognitoError::Throttled) => "throttled",
            Err(CognitoError::Unreachable) => "unreachable",
            Err(CognitoError::Unexpected | CognitoError::Refused) => "error",
        };
        self.inner.mfa_lookups.get_or_create(&Lookup { result, factors: factors.label() }).inc();
        self.inner.mfa_lookup_duration.get_or_create(&Outcome { outcome: result }).observe(took.as_secs_f64());
    }

    /// Counts a lookup refused by the lookup budget.
    pub fn mfa_lookup_refused(&self) {
        self.inner.mfa_lookups_refused.inc();
    }

    /// Says whether the MFA gate is on.
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
