//! What the service tells operators: the metrics registry and process metrics, the decision log's
//! hygiene and rate limit, the W3C trace context carried into log lines, and OpenTelemetry export.

pub mod audit;
pub mod metrics;
pub mod trace_context;
pub mod traces;
