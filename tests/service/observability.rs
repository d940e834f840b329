//! What an operator sees: the Prometheus exposition after real decisions (labels from fixed sets
//! only), and the W3C trace context of a checked request carried into the service's log lines.

use std::io::Write;
use std::sync::{Arc, Mutex};

use crate::common::*;
use cognito_authz::envoy::ext_authz::ExtAuthz;
use cognito_authz::envoy::pb::auth::authorization_server::Authorization;
use cognito_authz::testkit::scripted_keys::ScriptedKeys;
use serde_json::json;

async fn service() -> (ExtAuthz, cognito_authz::telemetry::metrics::Metrics, Arc<ScriptedKeys>) {
    let keys = serving(&["kid-1"]);
    let parts = scripted_parts(&crate::common::config(NO_JWKS), FakeMfa::new(), &keys).await;
    let metrics = parts.metrics.clone();
    (ExtAuthz::new(parts.authorizer, false, parts.metrics), metrics, keys)
}

/// The value of the sample named exactly `series` (name and labels), if exposed.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

/// The two tests of this binary run one at a time: the log test's subscriber must be in place
/// before any decision is logged, which a decision on another thread could race.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[tokio::test]
async fn metrics_count_decisions_by_outcome_and_reason_and_read_the_parts() {
    let _serial = SERIAL.lock().await;
    let (ext, metrics, keys) = service().await;
    let token = key("kid-1").sign(&access_claims());
    let mut expired = access_claims();
    expired["exp"] = json!(now() - 10);
    let expired = key("kid-1").sign(&expired);
    for request in [bearer(&token), bearer(&token), bearer(&expired), check_request("/api/items", &[])] {
        ext.decide(&request, now()).await;
    }
    // Tokens naming made-up keys: one fetch (then the cooldown), and no kid becomes a label.
    for n in 0..20 {
        let header = format!(r#"{{"alg":"RS256","kid":"attacker-kid-{n}"}}"#);
        ext.decide(&bearer(&key("kid-1").sign_raw(&header, &access_claims().to_string())), now()).await;
    }
    let text = metrics.render();
    let at = |series: &str| sample(&text, series).unwrap_or_else(|| panic!("{series} missing from\n{text}"));
    let prefix = "cognito_authz_";
    assert_eq!(
        at(&format!(
            "{prefix}decisions_total{{outcome=\"allow\",reason=\"none\",mode=\"enforce\",transport=\"grpc\"}}"
        )),
        2.0
    );
    assert_eq!(
        at(&format!(
            "{prefix}decisions_total{{outcome=\"unauthenticated\",reason=\"expired\",mode=\"enforce\",transport=\"grpc\"}}"
        )),
        1.0
    );
    assert_eq!(
        at(&format!(
            "{prefix}decisions_total{{outcome=\"unauthenticated\",reason=\"missing_token\",mode=\"enforce\",transport=\"grpc\"}}"
        )),
        1.0
    );
    assert_eq!(
        at(&format!(
            "{prefix}decisions_total{{outcome=\"unauthenticated\",reason=\"unknown_key\",mode=\"enforce\",transport=\"grpc\"}}"
        )),
        20.0
    );
    assert_eq!(at(&format!("{prefix}decision_duration_seconds_count{{outcome=\"allow\"}}")), 2.0);
    assert_eq!(at(&format!("{prefix}decision_duration_seconds_count{{outcome=\"unauthenticated\"}}")), 22.0);
    assert_eq!(at(&format!("{prefix}token_cache_hits_total")), 1.0, "the second allow came from the cache");
    assert_eq!(at(&format!("{prefix}token_cache_misses_total")), 22.0);
    assert_eq!(at(&format!("{prefix}jwks_fetches_total")), 2.0, "start-up, then one for the unknown kids");
    assert_eq!(keys.fetches(), 2);
    assert_eq!(at(&format!("{prefix}jwks_fetch_failures_total")), 0.0);
    assert_eq!(at(&format!("{prefix}jwks_keys")), 1.0);
    let refreshed = at(&format!("{prefix}jwks_last_refresh_timestamp_seconds"));
    assert!((now() as f64 - refreshed).abs() < 60.0, "the last refresh was just now: {refreshed}");
    assert_eq!(at(&format!("{prefix}token_cache_entries")), 1.0);
    assert_eq!(at(&format!("{prefix}revocation_entries")), 0.0);
    assert_eq!(at(&format!("{prefix}revocation_sync_age_seconds")), 0.0, "a local file is always current");
    assert!(at("process_resident_memory_bytes") > 0.0 && at("process_open_fds") > 0.0, "process metrics");
    assert!(at("process_cpu_seconds_total") > 0.0 && at("process_start_time_seconds") > 1.6e9);
    assert_eq!(at(&format!("{prefix}build_info{{version=\"{}\"}}", env!("CARGO_PKG_VERSION"))), 1.0);
    assert!(!text.contains("attacker-kid") && !text.contains("/api/items") && !text.contains(SUB));
    let series = text.lines().filter(|l| !l.starts_with('#')).count();
    assert!(series < 80, "{series} series: labels must come from fixed sets");
}

/// Log output captured in memory.
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test(flavor = "current_thread")]
async fn a_checked_requests_traceparent_reaches_the_services_log_lines() {
    let _serial = SERIAL.lock().await;
    let (ext, _metrics, _keys) = service().await;
    let capture = Capture::default();
    let writer = capture.clone();
    let subscriber = tracing_subscriber::fmt().with_writer(move || writer.clone()).with_ansi(false).finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    // A callsite first hit on another thread before this subscriber existed may have cached "no
    // interest"; recompute it now that the subscriber is registered.
    tracing::callsite::rebuild_interest_cache();

    let traced = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let forged = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\" injected=\"x";
    for traceparent in [traced, forged] {
        let request =
            check_request("/api/items", &[("authorization", "Bearer not-a-token"), ("traceparent", traceparent)]);
        let response = ext.check(tonic::Request::new(request)).await.unwrap().into_inner();
        assert_eq!(response.status.unwrap().code, cognito_authz::authz::error::code::UNAUTHENTICATED);
    }
    let log = String::from_utf8(capture.0.lock().unwrap().clone()).unwrap();
    let denied: Vec<&str> = log.lines().filter(|l| l.contains("request denied")).collect();
    assert_eq!(denied.len(), 2, "{log}");
    assert!(
        denied[0].contains("trace_id=4bf92f3577b34da6a3ce929d0e0e4736")
            && denied[0].contains("parent_id=00f067aa0ba902b7"),
        "{}",
        denied[0]
    );
    assert!(!denied[1].contains("trace_id") && !denied[1].contains("injected"), "a malformed traceparent is ignored");
}
