//! Prometheus metrics. Labels come from fixed sets only (never a `kid`, a path or a user, which a
//! caller could multiply).

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::cognito::{CognitoError, MfaState};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Outcome {
    outcome: &'static str,
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
        registry.register("decisions", "Decisions by outcome", decisions.clone());
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
        Metrics { inner: Arc::new(Inner { registry, decisions, mfa_lookups, mfa_lookup_seconds, mfa_enforced }) }
    }

    pub fn decision(&self, outcome: &'static str) {
        self.inner.decisions.get_or_create(&Outcome { outcome }).inc();
    }

    pub fn mfa_lookup(&self, answer: &Result<MfaState, CognitoError>, took: Duration) {
        let result = match answer {
            Ok(MfaState::Enrolled) => "enrolled",
            Ok(MfaState::NotEnrolled) => "not_enrolled",
            Ok(MfaState::Gone) => "user_gone",
            Err(CognitoError::Throttled) => "throttled",
            Err(CognitoError::Unreachable) => "unreachable",
            Err(CognitoError::Unexpected | CognitoError::Refused) => "error",
        };
        self.inner.mfa_lookups.get_or_create(&Result_ { result }).inc();
        self.inner.mfa_lookup_seconds.observe(took.as_secs_f64());
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
