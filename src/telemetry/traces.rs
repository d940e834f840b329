//! OpenTelemetry trace export: spans of `tracing` (the decision, a JWKS fetch, an MFA lookup, the
//! revocation store, the OAuth calls) sent over OTLP, gRPC or HTTP/protobuf, configured by the
//! standard `OTEL_*` variables. Off unless an OTLP endpoint is set, and then the decision path only
//! ever hands a finished span to a bounded queue: a slow or dead collector costs it nothing.
//!
//! The SDK's own batch processor is not used: it exports from a thread of its own with
//! `block_on`, which the tonic exporter cannot do outside a Tokio runtime, and it counts the spans
//! it drops only in a log line at shutdown. Here a bounded channel takes each finished span
//! (`try_send`: never waits), one Tokio task exports batches with a deadline each, every span
//! dropped (queue full, or an export that failed) is counted for `/metrics`, and shutdown flushes
//! within a bound.
//!
//! TLS to the collector: an `https://` endpoint is verified against the system's roots, or only
//! against `OTEL_EXPORTER_OTLP_CERTIFICATE`; a client certificate comes from
//! `OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE` and `…_CLIENT_KEY`. The exporter reads
//! `OTEL_EXPORTER_OTLP_HEADERS` (a vendor's API key) itself; nothing here logs it.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{SdkTracerProvider, SpanData, SpanExporter, SpanProcessor};
use tokio::sync::{mpsc, oneshot};

/// The span target every exported span carries: the log output ignores it, so tracing on or off
/// changes no log line.
pub const TARGET: &str = "otel";

/// What the `OTEL_*` variables ask for.
#[derive(Debug, Clone, PartialEq)]
pub struct ExportSettings {
    /// `grpc` or `http/protobuf` (`OTEL_EXPORTER_OTLP_PROTOCOL`, the spec's default the latter).
    pub protocol: Protocol,
    /// Spans held for export at most (`OTEL_BSP_MAX_QUEUE_SIZE`, 2048).
    pub queue: usize,
    /// Spans in one export at most (`OTEL_BSP_MAX_EXPORT_BATCH_SIZE`, 512).
    pub batch: usize,
    /// How long a span may wait for its batch (`OTEL_BSP_SCHEDULE_DELAY`, 5000 ms).
    pub delay: Duration,
    /// One export's deadline (`OTEL_BSP_EXPORT_TIMEOUT`, 30000 ms).
    pub timeout: Duration,
    /// Which decisions get a span (`OTEL_TRACES_SAMPLER`, `OTEL_TRACES_SAMPLER_ARG`).
    pub sampling: Sampling,
    /// `OTEL_EXPORTER_OTLP_ENDPOINT` as given (flag, environment or file), unless the traces'
    /// own `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` is set (which the exporter then reads itself).
    pub endpoint: Option<String>,
    /// `OTEL_SERVICE_NAME`; `cognito-authz` when not given.
    pub service_name: String,
    /// TLS to the collector.
    pub tls: CollectorTls,
}

/// TLS to the collector, as the spec's variables ask (each also in its `_TRACES_` form).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CollectorTls {
    /// The endpoint is `https://`: verified against the system's roots or `ca`.
    pub https: bool,
    /// `OTEL_EXPORTER_OTLP_CERTIFICATE`: a PEM CA trusted instead of the system's roots.
    pub ca: Option<PathBuf>,
    /// `OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE` and `OTEL_EXPORTER_OTLP_CLIENT_KEY`, together.
    pub client: Option<(PathBuf, PathBuf)>,
}

impl CollectorTls {
    fn from_env(var: &impl Fn(&str) -> Option<String>, endpoint: &str) -> Result<CollectorTls, String> {
        let given = |name: &str| {
            var(&format!("OTEL_EXPORTER_OTLP_TRACES_{name}"))
                .or_else(|| var(&format!("OTEL_EXPORTER_OTLP_{name}")))
                .filter(|v| !v.trim().is_empty())
                .map(PathBuf::from)
        };
        let client = match (given("CLIENT_CERTIFICATE"), given("CLIENT_KEY")) {
            (Some(cert), Some(key)) => Some((cert, key)),
            (None, None) => None,
            _ => {
                return Err(
                    "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE and OTEL_EXPORTER_OTLP_CLIENT_KEY go together".into()
                );
            }
        };
        let scheme =
            |prefix: &str| endpoint.trim_start().get(..prefix.len()).is_some_and(|s| s.eq_ignore_ascii_case(prefix));
        if !scheme("http://") && !scheme("https://") {
            // Without a scheme the exporters guess (gRPC: TLS unless OTEL_EXPORTER_OTLP_INSECURE):
            // say which at start-up rather than fail every export.
            return Err("OTEL_EXPORTER_OTLP_ENDPOINT must start with http:// or https://".into());
        }
        let tls = CollectorTls { https: scheme("https://"), ca: given("CERTIFICATE"), client };
        if !tls.https && (tls.ca.is_some() || tls.client.is_some()) {
            // Certificates beside a plain-text endpoint: the operator meant TLS, so do not send in the clear.
            return Err("OTEL_EXPORTER_OTLP_CERTIFICATE and OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE need an https:// \
                        OTEL_EXPORTER_OTLP_ENDPOINT"
                .into());
        }
        Ok(tls)
    }

    fn read(path: &std::path::Path, variable: &str) -> Result<Vec<u8>, String> {
        std::fs::read(path).map_err(|e| format!("{variable}: cannot read {}: {e}", path.display()))
    }

    /// For OTLP/gRPC: the CA's roots or the system's, and the client pair if given.
    fn grpc(&self) -> Result<tonic::transport::ClientTlsConfig, String> {
        use tonic::transport::{Certificate, ClientTlsConfig, Identity};
        let mut config = match &self.ca {
            Some(ca) => ClientTlsConfig::new()
                .ca_certificate(Certificate::from_pem(Self::read(ca, "OTEL_EXPORTER_OTLP_CERTIFICATE")?)),
            None => ClientTlsConfig::new().with_native_roots(),
        };
        if let Some((cert, key)) = &self.client {
            config = config.identity(Identity::from_pem(
                Self::read(cert, "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE")?,
                Self::read(key, "OTEL_EXPORTER_OTLP_CLIENT_KEY")?,
            ));
        }
        Ok(config)
    }

    /// For OTLP/HTTP, when a CA or client pair is given (otherwise the exporter's own client,
    /// which verifies against the system's roots): an HTTP client with them.
    fn http(&self, timeout: Duration) -> Result<Option<reqwest::Client>, String> {
        if self.ca.is_none() && self.client.is_none() {
            return Ok(None);
        }
        let mut builder = reqwest::Client::builder().timeout(timeout);
        if let Some(ca) = &self.ca {
            let pem = Self::read(ca, "OTEL_EXPORTER_OTLP_CERTIFICATE")?;
            let roots = reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|e| format!("OTEL_EXPORTER_OTLP_CERTIFICATE: not a PEM certificate: {e}"))?;
            builder = builder.tls_certs_only(roots);
        }
        if let Some((cert, key)) = &self.client {
            let mut pem = Self::read(cert, "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE")?;
            pem.extend_from_slice(b"\n");
            pem.extend(Self::read(key, "OTEL_EXPORTER_OTLP_CLIENT_KEY")?);
            let identity = reqwest::Identity::from_pem(&pem).map_err(|e| {
                format!("OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE, OTEL_EXPORTER_OTLP_CLIENT_KEY: not a PEM pair: {e}")
            })?;
            builder = builder.identity(identity);
        }
        builder.build().map(Some).map_err(|e| format!("the OTLP/HTTP client: {e}"))
    }
}

/// The sampler, decided before any span exists: an unsampled decision then costs no span at all
/// (a span the SDK's sampler drops still costs its building, about 5 µs a decision here).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sampling {
    /// A caller's sampled flag decides for its children (`parentbased_*`, the default).
    pub parent_based: bool,
    /// The share of root traces sampled: 1 (`always_on`), 0 (`always_off`) or a ratio.
    pub ratio: f64,
}

impl Sampling {
    fn from_env(var: &impl Fn(&str) -> Option<String>) -> Result<Sampling, String> {
        let ratio = || -> Result<f64, String> {
            match var("OTEL_TRACES_SAMPLER_ARG") {
                None => Ok(1.0),
                Some(v) => v
                    .trim()
                    .parse::<f64>()
                    .ok()
                    .filter(|r| (0.0..=1.0).contains(r))
                    .ok_or_else(|| "OTEL_TRACES_SAMPLER_ARG must be a ratio from 0 to 1".to_owned()),
            }
        };
        let (parent_based, ratio) = match var("OTEL_TRACES_SAMPLER").as_deref().map(str::trim) {
            None | Some("parentbased_always_on") => (true, 1.0),
            Some("always_on") => (false, 1.0),
            Some("always_off") => (false, 0.0),
            Some("parentbased_always_off") => (true, 0.0),
            Some("traceidratio") => (false, ratio()?),
            Some("parentbased_traceidratio") => (true, ratio()?),
            Some(_) => {
                return Err("OTEL_TRACES_SAMPLER must be always_on, always_off, traceidratio or their \
                            parentbased_ forms"
                    .into());
            }
        };
        Ok(Sampling { parent_based, ratio })
    }

    /// Whether a decision whose caller sent `parent` (its sampled flag, if it sent one) is traced.
    fn samples(&self, parent: Option<bool>) -> bool {
        match parent {
            Some(sampled) if self.parent_based => sampled,
            _ => self.ratio >= 1.0 || (self.ratio > 0.0 && coin() < self.ratio),
        }
    }
}

/// A uniform number in [0, 1): a shared xorshift, cheap and lock-free (no cryptographic use).
fn coin() -> f64 {
    static STATE: AtomicU64 = AtomicU64::new(0x9E37_79B9_7F4A_7C15);
    let mut x = STATE.load(Ordering::Relaxed);
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    STATE.store(x, Ordering::Relaxed);
    (x >> 11) as f64 / (1u64 << 53) as f64
}

/// The OTLP transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// OTLP/gRPC (port 4317).
    Grpc,
    /// OTLP/HTTP with protobuf bodies (port 4318).
    HttpProtobuf,
}

impl ExportSettings {
    /// The settings from `var` (the environment in production), or `None` when no OTLP endpoint
    /// is set or `OTEL_SDK_DISABLED` is `true`: tracing is then off and costs nothing. A value that
    /// cannot be read is an error naming the variable.
    pub fn from_env(var: impl Fn(&str) -> Option<String>) -> Result<Option<ExportSettings>, String> {
        if var("OTEL_SDK_DISABLED").is_some_and(|v| v.trim().eq_ignore_ascii_case("true")) {
            return Ok(None);
        }
        let endpoint = ["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT"]
            .iter()
            .any(|name| var(name).is_some_and(|v| !v.trim().is_empty()));
        if !endpoint {
            return Ok(None);
        }
        let protocol = match var("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL").or_else(|| var("OTEL_EXPORTER_OTLP_PROTOCOL")) {
            None => Protocol::HttpProtobuf,
            Some(p) => match p.trim() {
                "grpc" => Protocol::Grpc,
                "http/protobuf" => Protocol::HttpProtobuf,
                _ => return Err("OTEL_EXPORTER_OTLP_PROTOCOL must be grpc or http/protobuf".into()),
            },
        };
        let number = |name: &str, default: u64| -> Result<u64, String> {
            match var(name) {
                None => Ok(default),
                Some(v) => {
                    v.trim().parse::<u64>().ok().filter(|n| *n > 0).ok_or(format!("{name} must be a positive number"))
                }
            }
        };
        let queue = number("OTEL_BSP_MAX_QUEUE_SIZE", 2048)? as usize;
        let sampling = Sampling::from_env(&var)?;
        // The traces' own endpoint (used as is) the exporter reads itself; the base one is passed.
        let traces_endpoint = var("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT").filter(|v| !v.trim().is_empty());
        let base = var("OTEL_EXPORTER_OTLP_ENDPOINT").filter(|v| !v.trim().is_empty());
        let tls = CollectorTls::from_env(&var, traces_endpoint.as_deref().or(base.as_deref()).unwrap_or_default())?;
        Ok(Some(ExportSettings {
            tls,
            sampling,
            endpoint: if traces_endpoint.is_some() { None } else { base },
            service_name: var("OTEL_SERVICE_NAME")
                .filter(|v| !v.trim().is_empty())
                .unwrap_or_else(|| "cognito-authz".to_owned()),
            protocol,
            queue,
            batch: (number("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", 512)? as usize).min(queue),
            delay: Duration::from_millis(number("OTEL_BSP_SCHEDULE_DELAY", 5000)?),
            timeout: Duration::from_millis(number("OTEL_BSP_EXPORT_TIMEOUT", 30000)?),
        }))
    }
}

/// True once export has started: the transports then open a span per sampled decision.
static ENABLED: AtomicBool = AtomicBool::new(false);
/// The sampler, set once export starts.
static SAMPLING: std::sync::OnceLock<Sampling> = std::sync::OnceLock::new();
/// Spans dropped (queue full, export failed), for `/metrics`.
static DROPPED: AtomicU64 = AtomicU64::new(0);

/// True when spans are exported (the decision path opens no span otherwise).
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// Spans dropped so far: `cognito_authz_trace_spans_dropped_total`.
pub fn dropped_total() -> u64 {
    DROPPED.load(Ordering::Relaxed)
}

fn dropped(n: usize) {
    DROPPED.fetch_add(n as u64, Ordering::Relaxed);
}

/// The caller's trace context as `header` reads it (`traceparent`, `tracestate`) when this
/// request is to be traced (the sampler, parent-based by default), else `None`. Always `None`
/// while tracing is off.
fn sampled_parent<'a>(header: impl Fn(&str) -> Option<&'a str>) -> Option<opentelemetry::Context> {
    use opentelemetry::propagation::TextMapPropagator as _;
    use opentelemetry::trace::TraceContextExt as _;
    if !enabled() {
        return None;
    }
    struct Headers([(&'static str, Option<String>); 2]);
    impl opentelemetry::propagation::Extractor for Headers {
        fn get(&self, key: &str) -> Option<&str> {
            self.0.iter().find(|(name, _)| name.eq_ignore_ascii_case(key)).and_then(|(_, v)| v.as_deref())
        }
        fn keys(&self) -> Vec<&str> {
            self.0.iter().map(|(name, _)| *name).collect()
        }
    }
    let read = |name: &'static str| (name, header(name).map(str::to_owned));
    let headers = Headers([read("traceparent"), read("tracestate")]);
    let parent = opentelemetry_sdk::propagation::TraceContextPropagator::new().extract(&headers);
    let caller = {
        let context = parent.span().span_context().clone();
        context.is_valid().then(|| context.is_sampled())
    };
    SAMPLING.get().is_some_and(|s| s.samples(caller)).then_some(parent)
}

/// The span of one decision on `transport` (`grpc`, `http`): a child of the caller's W3C trace
/// context as `header` reads it, or a root. `None` while tracing is off or when the sampler says
/// no, so an untraced decision pays for nothing. Its attributes say why (see
/// [`record_decision`]); never a token, cookie, path or query.
pub fn decision_span<'a>(transport: &'static str, header: impl Fn(&str) -> Option<&'a str>) -> Option<tracing::Span> {
    use tracing_opentelemetry::OpenTelemetrySpanExt as _;
    let parent = sampled_parent(header)?;
    let span = tracing::info_span!(target: "otel", "authorize", otel.kind = "server", transport,
        outcome = tracing::field::Empty, reason = tracing::field::Empty, route.level = tracing::field::Empty,
        issuer = tracing::field::Empty, shadow = tracing::field::Empty, cache.hit = tracing::field::Empty);
    let _ = span.set_parent(parent);
    Some(span)
}

/// The span of one request to the companion HTTP module (`route` from a fixed set), whose calls
/// to Cognito's OAuth endpoints are its children; `None` as for [`decision_span`].
pub fn request_span<'a>(route: &'static str, header: impl Fn(&str) -> Option<&'a str>) -> Option<tracing::Span> {
    use tracing_opentelemetry::OpenTelemetrySpanExt as _;
    let parent = sampled_parent(header)?;
    let span = tracing::info_span!(target: "otel", "auth request", otel.kind = "server", http.route = route,
        http.response.status_code = tracing::field::Empty);
    let _ = span.set_parent(parent);
    Some(span)
}

/// True inside a sampled decision's span: its calls out get spans of their own (and nothing else
/// does, so an unsampled decision or a background refresh opens none).
pub fn in_traced_decision() -> bool {
    enabled() && tracing::Span::current().metadata().is_some_and(|m| m.target() == TARGET)
}

/// Says in the current decision span whether the token was answered from the verified-token cache.
pub fn record_cache_hit(hit: bool) {
    if enabled() {
        tracing::Span::current().record("cache.hit", hit);
    }
}

/// Writes why into the current decision span (a no-op while tracing is off).
pub fn record_decision(outcome: &str, reason: &str, level: Option<&str>, issuer: Option<&str>, shadow: bool) {
    if !enabled() {
        return;
    }
    let span = tracing::Span::current();
    span.record("outcome", outcome);
    span.record("reason", reason);
    if let Some(level) = level {
        span.record("route.level", level);
    }
    if let Some(issuer) = issuer {
        span.record("issuer", issuer);
    }
    span.record("shadow", shadow);
}

/// A child span of the current decision's, for a call out of the process (`jwks fetch`, `mfa
/// lookup`, …): none outside a traced decision.
#[macro_export]
macro_rules! out_span {
    ($name:literal $(, $($field:tt)*)?) => {
        if $crate::telemetry::traces::in_traced_decision() {
            tracing::info_span!(target: "otel", $name, otel.kind = "client" $(, $($field)*)?)
        } else {
            tracing::Span::none()
        }
    };
}

enum Message {
    Span(Box<SpanData>),
    Flush(oneshot::Sender<()>),
}

/// Hands finished spans to the export task; never waits.
#[derive(Debug)]
struct Queue {
    spans: mpsc::Sender<Message>,
    warned: AtomicBool,
}

impl std::fmt::Debug for Message {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Message")
    }
}

impl SpanProcessor for Queue {
    fn on_start(&self, _span: &mut opentelemetry_sdk::trace::Span, _cx: &opentelemetry::Context) {}

    fn on_end(&self, span: SpanData) {
        if !span.span_context.is_sampled() {
            return;
        }
        if self.spans.try_send(Message::Span(Box::new(span))).is_err() {
            dropped(1);
            if !self.warned.swap(true, Ordering::Relaxed) {
                // One line, not one per span: a dead collector must not flood the log.
                tracing::warn!(
                    "the trace export queue is full (the collector is slow or unreachable): spans are dropped \
                     and counted in cognito_authz_trace_spans_dropped_total"
                );
            }
        }
    }

    fn force_flush(&self) -> OTelSdkResult {
        // Flushing waits on the export task, which may run on this very thread: see `Traces::flush`.
        Ok(())
    }

    fn shutdown_with_timeout(&self, _timeout: Duration) -> OTelSdkResult {
        Ok(())
    }
}

/// The export task: a batch when full or `delay` old, each export within `timeout`.
async fn export<E: SpanExporter>(exporter: E, mut queue: mpsc::Receiver<Message>, settings: ExportSettings) {
    let mut batch: Vec<SpanData> = Vec::with_capacity(settings.batch);
    let mut warned = false;
    let mut tick = tokio::time::interval(settings.delay);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        // What woke the task: a span (exported once a batch is full), the schedule delay, a flush
        // or the end.
        let (flush, closed, due) = tokio::select! {
            message = queue.recv() => match message {
                Some(Message::Span(span)) => {
                    batch.push(*span);
                    (None, false, batch.len() >= settings.batch)
                }
                Some(Message::Flush(done)) => (Some(done), false, true),
                None => (None, true, true),
            },
            _ = tick.tick() => (None, false, true),
        };
        if due && !batch.is_empty() {
            let spans = std::mem::replace(&mut batch, Vec::with_capacity(settings.batch));
            let n = spans.len();
            let failed = match tokio::time::timeout(settings.timeout, exporter.export(spans)).await {
                Ok(Ok(())) => None,
                Ok(Err(error)) => Some(error.to_string()),
                Err(_) => Some("the export timed out".to_owned()),
            };
            if let Some(error) = failed {
                dropped(n);
                if !warned {
                    warned = true;
                    tracing::warn!(%error, "could not export spans; they are dropped and counted");
                }
            } else {
                warned = false;
            }
        }
        if let Some(done) = flush {
            let _ = done.send(());
        }
        if closed {
            return;
        }
    }
}

/// Trace export, while it runs.
pub struct Traces {
    provider: SdkTracerProvider,
    flush: mpsc::Sender<Message>,
}

crate::opaque_debug!(Traces);

/// The service's resource: its name, its version, and `OTEL_RESOURCE_ATTRIBUTES`.
fn resource(service_name: &str) -> Resource {
    Resource::builder()
        .with_service_name(service_name.to_owned())
        .with_attribute(opentelemetry::KeyValue::new("service.version", env!("CARGO_PKG_VERSION")))
        .build()
}

impl Traces {
    /// Starts exporting (inside a Tokio runtime): the exporter connects lazily, so a collector that
    /// is down costs start-up nothing.
    pub fn start(settings: ExportSettings) -> Result<Traces, String> {
        use opentelemetry_otlp::{WithExportConfig as _, WithHttpConfig as _, WithTonicConfig as _};
        let resource = resource(&settings.service_name);
        let (spans, queue) = mpsc::channel(settings.queue);
        let mut exporter = match settings.protocol {
            Protocol::Grpc => {
                let mut builder = opentelemetry_otlp::SpanExporter::builder().with_tonic();
                if let Some(endpoint) = &settings.endpoint {
                    builder = builder.with_endpoint(endpoint.clone());
                }
                if settings.tls.https {
                    // The exporter's own default for https trusts no root at all.
                    builder = builder.with_tls_config(settings.tls.grpc()?);
                }
                builder.build().map_err(|e| format!("the OTLP/gRPC exporter: {e}"))?
            }
            Protocol::HttpProtobuf => {
                let mut builder = opentelemetry_otlp::SpanExporter::builder().with_http();
                // The base URL takes the traces' path, as the spec says for this variable.
                if let Some(endpoint) = &settings.endpoint {
                    builder = builder.with_endpoint(format!("{}/v1/traces", endpoint.trim_end_matches('/')));
                }
                if let Some(client) = settings.tls.http(settings.timeout)? {
                    builder = builder.with_http_client(client);
                }
                builder.build().map_err(|e| format!("the OTLP/HTTP exporter: {e}"))?
            }
        };
        exporter.set_resource(&resource);
        tokio::spawn(export(exporter, queue, settings.clone()));
        let processor = Queue { spans: spans.clone(), warned: AtomicBool::new(false) };
        // Sampling is decided before a span exists (`Sampling`, by default parent-based: Envoy's
        // decision to sample is followed), so every span that reaches the SDK is kept.
        let provider = SdkTracerProvider::builder()
            .with_span_processor(processor)
            .with_resource(resource)
            .with_sampler(opentelemetry_sdk::trace::Sampler::AlwaysOn)
            .build();
        let _ = SAMPLING.set(settings.sampling);
        ENABLED.store(true, Ordering::Relaxed);
        Ok(Traces { provider, flush: spans })
    }

    /// The `tracing` layer that turns this service's spans into OpenTelemetry spans.
    pub fn layer<S>(&self) -> impl tracing_subscriber::Layer<S> + use<S>
    where
        S: tracing::Subscriber + for<'span> tracing_subscriber::registry::LookupSpan<'span>,
    {
        tracing_opentelemetry::layer().with_tracer(self.provider.tracer("cognito-authz"))
    }

    /// Exports what is queued, waiting at most `within` (shutdown must not hang on a dead
    /// collector).
    pub async fn flush(&self, within: Duration) -> bool {
        let (done, finished) = oneshot::channel();
        let asked = tokio::time::timeout(within, self.flush.send(Message::Flush(done))).await.is_ok_and(|r| r.is_ok());
        asked && tokio::time::timeout(within, finished).await.is_ok_and(|r| r.is_ok())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(pairs: &[(&str, &str)]) -> Result<Option<ExportSettings>, String> {
        ExportSettings::from_env(|name| pairs.iter().find(|(k, _)| *k == name).map(|(_, v)| v.to_string()))
    }

    #[test]
    fn off_without_an_endpoint_and_the_standard_variables_read_as_the_spec_says() {
        assert_eq!(settings(&[]), Ok(None), "off by default");
        assert_eq!(settings(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "")]), Ok(None));
        let on = settings(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318")]).unwrap().unwrap();
        assert_eq!(
            (on.protocol, on.queue, on.batch),
            (Protocol::HttpProtobuf, 2048, 512),
            "the spec's default protocol"
        );
        let grpc = settings(&[
            ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://c:4317"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
        ]);
        assert_eq!(grpc.unwrap().unwrap().protocol, Protocol::Grpc);
        let disabled = [("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"), ("OTEL_SDK_DISABLED", "true")];
        assert_eq!(settings(&disabled), Ok(None));
        let bad = [("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"), ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json")];
        assert!(settings(&bad).unwrap_err().contains("OTEL_EXPORTER_OTLP_PROTOCOL"));
        let small = [("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c"), ("OTEL_BSP_MAX_QUEUE_SIZE", "8")];
        assert_eq!(settings(&small).unwrap().unwrap().batch, 8, "a batch never exceeds the queue");
        let zero = [("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c"), ("OTEL_BSP_MAX_QUEUE_SIZE", "0")];
        assert!(settings(&zero).unwrap_err().contains("OTEL_BSP_MAX_QUEUE_SIZE"));
    }

    #[test]
    fn collector_certificates_need_an_https_endpoint_and_a_client_pair_goes_together() {
        let tls = |pairs: &[(&str, &str)]| settings(pairs).map(|s| s.unwrap().tls);
        let plain = tls(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318")]).unwrap();
        assert_eq!(plain, CollectorTls::default(), "plain text: no TLS");
        let system = tls(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "HTTPS://api.vendor.example")]).unwrap();
        assert_eq!(system, CollectorTls { https: true, ca: None, client: None }, "the system's roots");
        let full = tls(&[
            ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "https://c:4318/v1/traces"),
            ("OTEL_EXPORTER_OTLP_CERTIFICATE", "/ca.pem"),
            ("OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE", "/traces-ca.pem"),
            ("OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE", "/c.pem"),
            ("OTEL_EXPORTER_OTLP_CLIENT_KEY", "/c.key"),
        ])
        .unwrap();
        assert_eq!(full.ca, Some(PathBuf::from("/traces-ca.pem")), "the traces' own variable first");
        assert_eq!(full.client, Some((PathBuf::from("/c.pem"), PathBuf::from("/c.key"))));
        let half = tls(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "https://c"), ("OTEL_EXPORTER_OTLP_CLIENT_KEY", "/c.key")]);
        assert!(half.unwrap_err().contains("OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE and OTEL_EXPORTER_OTLP_CLIENT_KEY"));
        let bare = tls(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "collector:4317")]);
        assert!(bare.unwrap_err().contains("must start with http:// or https://"), "no guessing");
        let clear = tls(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c"), ("OTEL_EXPORTER_OTLP_CERTIFICATE", "/ca.pem")]);
        assert!(clear.unwrap_err().contains("need an https:// OTEL_EXPORTER_OTLP_ENDPOINT"), "never in the clear");
        let unreadable = CollectorTls { https: true, ca: Some("/nonexistent/ca.pem".into()), client: None };
        assert!(unreadable.grpc().unwrap_err().starts_with("OTEL_EXPORTER_OTLP_CERTIFICATE: cannot read"));
        assert!(unreadable.http(Duration::from_secs(1)).unwrap_err().starts_with("OTEL_EXPORTER_OTLP_CERTIFICATE"));
    }

    #[test]
    fn the_sampler_follows_the_caller_by_default_and_samples_roots_by_ratio() {
        let sampling = |pairs: &[(&str, &str)]| {
            let mut all = vec![("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c")];
            all.extend_from_slice(pairs);
            settings(&all).map(|s| s.unwrap().sampling)
        };
        let default = sampling(&[]).unwrap();
        assert_eq!(default, Sampling { parent_based: true, ratio: 1.0 });
        assert!(default.samples(None) && default.samples(Some(true)) && !default.samples(Some(false)));
        let ratio =
            sampling(&[("OTEL_TRACES_SAMPLER", "parentbased_traceidratio"), ("OTEL_TRACES_SAMPLER_ARG", "0.01")]);
        let ratio = ratio.unwrap();
        let sampled = (0..100_000).filter(|_| ratio.samples(None)).count();
        assert!((500..1500).contains(&sampled), "about 1 % of roots: {sampled}");
        assert!(ratio.samples(Some(true)), "a sampled caller is followed whatever the ratio");
        let own = sampling(&[("OTEL_TRACES_SAMPLER", "always_off")]).unwrap();
        assert!(!own.samples(Some(true)), "not parent-based: the caller's flag is not followed");
        assert!(sampling(&[("OTEL_TRACES_SAMPLER", "xray")]).unwrap_err().contains("OTEL_TRACES_SAMPLER"));
        let bad = [("OTEL_TRACES_SAMPLER", "traceidratio"), ("OTEL_TRACES_SAMPLER_ARG", "2")];
        assert!(sampling(&bad).unwrap_err().contains("OTEL_TRACES_SAMPLER_ARG"));
    }
}
