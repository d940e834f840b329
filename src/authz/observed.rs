//! The decision as every transport calls it: decide, then observe it in one place (the metrics per
//! outcome and issuer, the sampled decision log, the rate-limited denial lines) and apply shadow
//! mode. A transport only turns its request into a `Request` and renders what comes back: an allow
//! (as whom) or a denial (why), so Envoy's gRPC and any HTTP protocol answer alike.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use crate::authz::error::Denied;
use crate::authz::{Allowed, Authorizer, Decision, Request};
use crate::telemetry::audit::{AuditLimiter, loggable, loggable_path};
use crate::telemetry::metrics::{AllowSeries, Metrics};
use crate::verify::claims::Identity;

/// The authorizer with its observation.
pub struct Decider {
    authorizer: Authorizer,
    metrics: Metrics,
    audit: AuditLimiter,
    /// The share of allows written to the decision log (0 to 1).
    allow_sample_rate: f64,
    sampler: AtomicU64,
    /// The metrics' `transport` label: how the proxy asked.
    transport: &'static str,
    /// `--sign-in-url`: where a browser refused for want of credentials is sent instead.
    sign_in: Option<Arc<str>>,
    /// The series an enforced allow counts into, once resolved.
    allow_series: OnceLock<AllowSeries>,
}

crate::opaque_debug!(Decider);

impl Decider {
    /// Counts into `metrics` under `transport` (`grpc`, `http`); denials are logged at most 20 a
    /// second, allows not at all until `sampling_allows`.
    pub fn new(authorizer: Authorizer, metrics: Metrics, transport: &'static str) -> Decider {
        Decider {
            authorizer,
            metrics,
            audit: AuditLimiter::per_second(20),
            allow_sample_rate: 0.0,
            sampler: AtomicU64::new(0x9E37_79B9_7F4A_7C15),
            transport,
            sign_in: None,
            allow_series: OnceLock::new(),
        }
    }

    /// Sends a browser refused for want of (valid) credentials to `url` to sign in, instead of a
    /// 401. Defaults to none: every transport answers 401.
    pub fn sending_browsers_to(mut self, url: Option<String>) -> Decider {
        self.sign_in = url.map(Arc::from);
        self
    }

    /// Where to send this refused request to sign in, if anywhere: a browser's `GET` of a page
    /// (`Accept` prefers HTML) refused with 401, when `--sign-in-url` is set. API calls, other
    /// methods and every other denial keep their answer.
    pub fn sign_in_for(&self, request: &Request<'_>, denied: &Denied) -> Option<&str> {
        let unauthenticated = matches!(denied, Denied::Unauthenticated(_) | Denied::StepUp(_));
        (unauthenticated && request.method == "GET" && request.html).then_some(self.sign_in.as_deref()).flatten()
    }

    /// Writes this share of allows (0 to 1) to the decision log; every denial is written (within
    /// the per-second limit). Defaults to 0.
    pub fn sampling_allows(mut self, rate: f64) -> Decider {
        self.allow_sample_rate = rate.clamp(0.0, 1.0);
        self
    }

    /// The authorizer decided with.
    pub fn authorizer(&self) -> &Authorizer {
        &self.authorizer
    }

    /// Decides `request` at Unix time `now`, counted and logged. `Ok` is what the transport lets
    /// through: an allow, or a denial of a route in shadow mode, which goes on with what a valid
    /// token gives (identity headers of a verified caller, none otherwise).
    pub async fn decide(&self, request: &Request<'_>, now: u64) -> Result<Allowed, Denied> {
        let started = Instant::now();
        let decision = self.authorizer.decide(request, now).await;
        let shadow = decision.route.is_some_and(|r| r.shadow);
        let took = started.elapsed();
        if crate::telemetry::traces::enabled() {
            let (outcome, reason) = match &decision.outcome {
                Ok(_) => ("allow", "none"),
                Err(denied) => (denied.outcome(), denied.reason()),
            };
            let level = decision.route.map(|r| r.level.label());
            let issuer = decision.caller.as_deref().map(|c| &*c.issuer_name);
            crate::telemetry::traces::record_decision(outcome, reason, level, issuer, shadow);
        }
        match (&decision.outcome, &decision.caller) {
            // The common case, counted into series resolved once.
            (Ok(_), caller) if !shadow => self.allow_series().count(caller.as_ref().map(|c| c.issuer), took),
            (outcome, Some(caller)) => {
                self.metrics.issuer_decision(caller.issuer, outcome.as_ref().map_or_else(Denied::outcome, |_| "allow"))
            }
            (_, None) => {}
        }
        match &decision.outcome {
            Ok(allowed) => {
                if shadow {
                    self.metrics.decision("allow", "none", shadow, self.transport, took);
                }
                // Field expressions run only when the line is enabled: nothing here costs an
                // undebugged decision.
                tracing::debug!(outcome = "allow", who = %who(allowed), path = loggable_path(request.path).0,
                    query = loggable_path(request.path).1, "decision");
                if self.sampled() {
                    log_decision(request, &decision, took, None, "request allowed");
                }
            }
            Err(denied) => {
                self.metrics.decision(denied.outcome(), denied.reason(), shadow, self.transport, took);
                tracing::debug!(outcome = denied.outcome(), reason = %denied, path = loggable_path(request.path).0,
                    query = loggable_path(request.path).1, "decision");
                if let Some(suppressed) = self.audit.admit(now) {
                    log_decision(request, &decision, took, Some(suppressed), "request denied");
                }
            }
        }
        match decision.outcome {
            // Observed, not enforced.
            Err(_) if shadow => Ok(decision.caller.map_or(Allowed::Anonymous, Allowed::Verified)),
            outcome => outcome,
        }
    }

    /// The enforced-allow series of this transport, resolved at the first allow (issuers are named
    /// by then: the wiring names them before serving).
    fn allow_series(&self) -> &AllowSeries {
        self.allow_series.get_or_init(|| self.metrics.allow_series(self.transport))
    }

    /// Counts a request the transport could not even turn into a `Request`, and gives it back.
    pub fn unreadable(&self, denied: Denied, started: Instant) -> Denied {
        self.metrics.decision(denied.outcome(), denied.reason(), false, self.transport, started.elapsed());
        denied
    }

    /// True for the share of allows the decision log keeps (a cheap shared xorshift; no lock).
    fn sampled(&self) -> bool {
        if self.allow_sample_rate <= 0.0 {
            return false;
        }
        let mut x = self.sampler.load(Ordering::Relaxed);
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.sampler.store(x, Ordering::Relaxed);
        (x >> 11) as f64 / (1u64 << 53) as f64 <= self.allow_sample_rate
    }
}

/// One structured line per logged decision: who asked for what, what the route required and who
/// set it, and the answer. Never a token, a cookie or a query value.
fn log_decision(request: &Request<'_>, decision: &Decision, took: Duration, suppressed: Option<u64>, line: &str) {
    let (path, query) = loggable_path(request.path);
    let (outcome, reason) = match &decision.outcome {
        Ok(_) => ("allow", "none"),
        Err(denied) => (denied.outcome(), denied.reason()),
    };
    let route = decision.route;
    let sub = match decision.caller.as_deref().map(|c| &c.identity) {
        Some(Identity::User { sub, .. }) => sub.to_string(),
        Some(Identity::Subject { sub, .. }) => loggable(sub).to_string(),
        Some(Identity::Machine) => "machine".to_owned(),
        None => "none".to_owned(),
    };
    let issuer = decision.caller.as_deref().map_or("none", |c| &*c.issuer_name);
    tracing::info!(
        request_id = request.request_id.map(loggable),
        method = loggable(request.method),
        path,
        query,
        level = route.map_or("none", |r| r.level.label()),
        level_source = route.map_or("none", |r| r.source.label()),
        mode = if route.is_some_and(|r| r.shadow) { "shadow" } else { "enforce" },
        issuer,
        sub,
        outcome,
        reason,
        latency_us = took.as_micros() as u64,
        suppressed,
        "{line}"
    );
}

/// Who an allow let through, for the debug line.
fn who(allowed: &Allowed) -> String {
    match allowed {
        Allowed::Anonymous => "anonymous".to_owned(),
        Allowed::Verified(claims) => match &claims.identity {
            Identity::User { sub, .. } => sub.to_string(),
            Identity::Subject { sub, .. } => loggable(sub).to_string(),
            Identity::Machine => "machine".to_owned(),
        },
    }
}
