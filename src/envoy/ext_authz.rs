//! The only file that speaks Envoy: `CheckRequest` -> `Request`, and a decision -> `CheckResponse`.
//!
//! Every decision is a successful RPC. A denial carries a non-zero `status.code` and a
//! `DeniedHttpResponse`: Envoy treats code 0 as allow whatever else the response says, and an RPC
//! error sends it down its error path, which a fail-open deployment turns into an allow.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Instant;

use prost::Message;
use prost_types::value::Kind;
use tonic::metadata::MetadataMap;
use tonic::{Request as GrpcRequest, Response as GrpcResponse, Status};
use tracing::Instrument;

use crate::authz::error::{BadRequest, Denied, code};
use crate::authz::headers::IdentityHeaders;
use crate::authz::observed::Decider;
use crate::authz::policy::RouteContext;
use crate::authz::{Allowed, Authorizer, Request, prefers_html};
use crate::clock::unix_now;
use crate::envoy::answer::{Allow, AllowWriter, Carried};
use crate::envoy::pb::auth::attribute_context::HttpRequest;
use crate::envoy::pb::auth::authorization_server::Authorization;
use crate::envoy::pb::auth::check_response::HttpResponse;
use crate::envoy::pb::auth::{CheckRequest, CheckResponse, DeniedHttpResponse, OkHttpResponse};
use crate::envoy::pb::core::header_value_option::HeaderAppendAction;
use crate::envoy::pb::core::{HeaderValue, HeaderValueOption};
use crate::envoy::pb::rpc;
use crate::envoy::pb::types::HttpStatus;
use crate::telemetry::metrics::Metrics;
use crate::telemetry::trace_context::{TraceContext, parse_traceparent};
use crate::verify::claims::{Claims, Identity};

/// The Envoy `Authorization` service.
pub struct ExtAuthz {
    /// The decision with its metrics, log and shadow mode: this file only converts.
    decider: Decider,
    strip_authorization: bool,
    identity: IdentityHeaders,
    claims_metadata: bool,
    only_carried: bool,
    /// How allows are written, from the settings above.
    writer: Arc<AllowWriter>,
}

crate::opaque_debug!(ExtAuthz);

impl ExtAuthz {
    /// `strip_authorization` removes the `authorization` header before the upstream on allow.
    pub fn new(authorizer: Authorizer, strip_authorization: bool, metrics: Metrics) -> ExtAuthz {
        let identity = IdentityHeaders::default().qualified(authorizer.qualifiers().clone());
        ExtAuthz {
            decider: Decider::new(authorizer, metrics, "grpc"),
            strip_authorization,
            writer: Arc::new(AllowWriter::new(&identity, strip_authorization, false, false)),
            identity,
            claims_metadata: false,
            only_carried: false,
        }
    }

    /// The identity headers, mapped ones included (the fixed five by default); their values are
    /// qualified by issuer as the authorizer says.
    pub fn identity_headers(mut self, identity: IdentityHeaders) -> ExtAuthz {
        self.identity = identity.qualified(self.decider.authorizer().qualifiers().clone());
        self.rewrite()
    }

    /// With `emit`, an allow carries the verified claims as `dynamic_metadata` (for Envoy RBAC
    /// and access logs that read them). Defaults to false: nothing Envoy would decode for nothing.
    pub fn claims_metadata(mut self, emit: bool) -> ExtAuthz {
        self.claims_metadata = emit;
        self.rewrite()
    }

    /// With `strips`, `headers_to_remove` lists only the identity headers the request carried:
    /// for an Envoy that shows us every identity header a client sends (`allowed_headers` does not
    /// hide them) or strips them before this filter. Defaults to false: every identity header an
    /// allow does not set is removed.
    pub fn envoy_strips_identity_headers(mut self, strips: bool) -> ExtAuthz {
        self.only_carried = strips;
        self.rewrite()
    }

    fn rewrite(mut self) -> ExtAuthz {
        self.writer = Arc::new(AllowWriter::new(
            &self.identity,
            self.strip_authorization,
            self.claims_metadata,
            self.only_carried,
        ));
        self
    }

    /// Writes this share of allows (0 to 1) to the decision log; every denial is written (within
    /// the per-second limit). Defaults to 0.
    pub fn sampling_allows(mut self, rate: f64) -> ExtAuthz {
        self.decider = self.decider.sampling_allows(rate);
        self
    }

    /// Sends browsers refused for want of credentials to `url` (`--sign-in-url`). Defaults to none.
    pub fn sending_browsers_to(mut self, url: Option<String>) -> ExtAuthz {
        self.decider = self.decider.sending_browsers_to(url);
        self
    }

    /// Decides one `CheckRequest` at Unix time `now`, as the message Envoy reads (the answer's
    /// own bytes, decoded).
    pub async fn decide(&self, check: &CheckRequest, now: u64) -> CheckResponse {
        self.answer(check, now).await.into_response()
    }

    /// Decides one `CheckRequest` at Unix time `now`: the answer, ready for the wire.
    pub async fn answer(&self, check: &CheckRequest, now: u64) -> Answer {
        let attributes = check.attributes.as_ref();
        let Some(http) = attributes.and_then(|a| a.request.as_ref()).and_then(|r| r.http.as_ref()) else {
            // The decision times itself; only this refusal, made before it, is timed here.
            let denied = self.decider.unreadable(BadRequest::NoHttpAttributes.into(), Instant::now());
            return Answer::Other(Box::new(denied_response(&denied)));
        };
        let no_context = HashMap::new();
        let context = attributes.map_or(&no_context, |a| &a.context_extensions);
        let request = request_from(http, context, &self.identity);
        match self.decider.decide(&request, now).await {
            Ok(allowed) => self.allow(&allowed, http),
            Err(denied) => match self.decider.sign_in_for(&request, &denied) {
                Some(url) => Answer::Other(Box::new(sign_in_response(&denied, url))),
                None => Answer::Other(Box::new(denied_response(&denied))),
            },
        }
    }

    fn allow(&self, allowed: &Allowed, http: &HttpRequest) -> Answer {
        let carried = if self.only_carried { carried(http, &self.identity) } else { Carried::ALL };
        Answer::Allow(Allow::new(self.writer.clone(), allowed, carried))
    }

    /// `answer`, in a span when the request carries a trace context: the common untraced request
    /// pays for no span, and its log lines would have no trace to join anyway. With trace export
    /// on, the decision also gets its exported span, a child of the trace context Envoy sent: in
    /// the gRPC call's metadata (Envoy's own span, when it traces) or else in the checked request.
    pub async fn check_traced(&self, check: &CheckRequest, metadata: Option<&MetadataMap>, now: u64) -> Answer {
        let exported = crate::telemetry::traces::decision_span("grpc", |name| {
            let from_envoy = metadata.filter(|m| m.contains_key("traceparent"));
            match from_envoy {
                Some(m) => m.get(name).and_then(|v| v.to_str().ok()),
                None => checked_header(check, name),
            }
        });
        // The exported span innermost, so that the calls out of the decision find it current.
        let answer = async {
            match exported {
                Some(span) => self.answer(check, now).instrument(span).await,
                None => self.answer(check, now).await,
            }
        };
        match trace_context(check) {
            Some(trace) => {
                let span = tracing::info_span!("check", trace_id = %trace.trace_id, parent_id = %trace.parent_id);
                answer.instrument(span).await
            }
            None => answer.await,
        }
    }
}

/// A header of the checked request, by lower-case name.
fn checked_header<'a>(check: &'a CheckRequest, name: &str) -> Option<&'a str> {
    let http = check.attributes.as_ref()?.request.as_ref()?.http.as_ref()?;
    match &http.header_map {
        Some(map) => map.headers.iter().find(|h| h.key.eq_ignore_ascii_case(name)).and_then(raw_header_value),
        None => http.headers.get(name).map(String::as_str),
    }
}

#[tonic::async_trait]
impl Authorization for ExtAuthz {
    async fn check(&self, request: GrpcRequest<CheckRequest>) -> Result<GrpcResponse<CheckResponse>, Status> {
        // The server uses `grpc::AuthorizationService`, which writes allows without this message.
        Ok(GrpcResponse::new(
            self.check_traced(request.get_ref(), Some(request.metadata()), unix_now()).await.into_response(),
        ))
    }
}

/// The checked request's `traceparent`, when it is well formed (so only hex reaches a log).
pub fn trace_context(check: &CheckRequest) -> Option<TraceContext<'_>> {
    let http = check.attributes.as_ref()?.request.as_ref()?.http.as_ref()?;
    let value = match &http.header_map {
        Some(map) => map.headers.iter().find(|h| h.key.eq_ignore_ascii_case("traceparent")).and_then(raw_header_value),
        None => http.headers.get("traceparent").map(String::as_str),
    }?;
    parse_traceparent(value)
}

/// Reads what a decision needs from Envoy's HTTP attributes, without copying the header map.
/// With `encode_raw_headers` Envoy sends `header_map` (values as bytes) instead of `headers`.
pub fn request_from<'a>(
    http: &'a HttpRequest,
    context: &'a HashMap<String, String>,
    identity: &IdentityHeaders,
) -> Request<'a> {
    let route = RouteContext {
        access: context.get("access").map(String::as_str),
        scopes: context.get("scopes").map(String::as_str),
        groups: context.get("groups").map(String::as_str),
        issuers: context.get("issuers").map(String::as_str),
        mode: context.get("mode").map(String::as_str),
    };
    let mut request = Request { method: &http.method, path: &http.path, route, ..Request::default() };
    if let Some(map) = &http.header_map {
        for header in &map.headers {
            request.spoofed_identity |= identity.spoofed_by(&header.key);
            let value = raw_header_value(header);
            if header.key.eq_ignore_ascii_case("authorization") {
                request.authorization_repeated |= request.authorization.is_some();
                // Non-UTF-8 bytes cannot be a bearer token: an empty value is refused as malformed.
                request.authorization = Some(value.unwrap_or("\u{0}"));
            } else if header.key.eq_ignore_ascii_case("cookie") && request.cookie.is_none() {
                request.cookie = value;
            } else if header.key.eq_ignore_ascii_case("origin") {
                request.origin = value;
            } else if header.key.eq_ignore_ascii_case("upgrade") {
                request.websocket = value.is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
            } else if header.key.eq_ignore_ascii_case("x-request-id") {
                request.request_id = value;
            } else if header.key.eq_ignore_ascii_case("accept") {
                request.html = value.is_some_and(prefers_html);
            }
        }
    } else {
        request.authorization = http.headers.get("authorization").map(String::as_str);
        request.cookie = http.headers.get("cookie").map(String::as_str);
        request.origin = http.headers.get("origin").map(String::as_str);
        request.websocket = http.headers.get("upgrade").is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
        request.request_id = http.headers.get("x-request-id").map(String::as_str);
        request.html = http.headers.get("accept").is_some_and(|a| prefers_html(a));
        request.spoofed_identity = http.headers.keys().any(|key| identity.spoofed_by(key));
    }
    request
}

/// Which identity headers the request carried (exact names; Envoy sends them lower case).
pub fn carried(http: &HttpRequest, identity: &IdentityHeaders) -> Carried {
    let names = identity.names();
    let bit = |i: usize| if i < 64 { 1u64 << i } else { 0 };
    let mut mask = 0;
    match &http.header_map {
        Some(map) => {
            for header in &map.headers {
                if let Some(i) = names.iter().position(|n| header.key.eq_ignore_ascii_case(n)) {
                    mask |= bit(i);
                }
            }
        }
        None => {
            for (i, name) in names.iter().enumerate() {
                if http.headers.contains_key(name.as_str()) {
                    mask |= bit(i);
                }
            }
        }
    }
    // Headers past the 64th have no bit: `Carried` counts them as carried, so they are removed.
    Carried(mask)
}

fn raw_header_value(header: &HeaderValue) -> Option<&str> {
    if header.raw_value.is_empty() { Some(&header.value) } else { std::str::from_utf8(&header.raw_value).ok() }
}

/// A decision, ready for the wire: an allow written from its pre-encoded parts, or any other
/// answer as a message.
#[derive(Debug, Clone)]
pub enum Answer {
    /// An allow, written from pre-encoded parts.
    Allow(Allow),
    /// A denial (boxed: a `CheckResponse` is several times the size of an allow).
    Other(Box<CheckResponse>),
}

impl Answer {
    /// The encoded length, for the gRPC frame.
    pub fn encoded_len(&self) -> usize {
        match self {
            Answer::Allow(allow) => allow.encoded_len(),
            Answer::Other(response) => response.encoded_len(),
        }
    }

    /// Writes the encoded message.
    pub fn encode(&self, buf: &mut impl prost::bytes::BufMut) {
        match self {
            Answer::Allow(allow) => allow.encode(buf),
            Answer::Other(response) => response.encode_raw(buf),
        }
    }

    /// The message Envoy decodes from these bytes.
    pub fn into_response(self) -> CheckResponse {
        match self {
            Answer::Allow(allow) => CheckResponse::decode(allow.to_vec().as_slice()).expect("an allow decodes"),
            Answer::Other(response) => *response,
        }
    }
}

/// The allow as a message (what `answer::Allow` writes, built field by field; the tests hold the
/// two to the same bytes): identity headers set with overwrite semantics, every other identity
/// header (mapped ones included) removed (with `only_carried`, those the request carried), the
/// claims as `dynamic_metadata` with `claims_metadata`.
pub fn allowed_response(
    allowed: &Allowed,
    strip_authorization: bool,
    identity: &IdentityHeaders,
    claims_metadata: bool,
    only_carried: Option<Carried>,
) -> CheckResponse {
    let set: Vec<(&str, String)> = match allowed {
        Allowed::Anonymous => vec![],
        Allowed::Verified(claims) => crate::authz::headers::identity_header_values(claims, identity.qualifiers())
            .into_iter()
            .map(|(i, value)| (identity.names()[i].as_str(), value))
            .collect(),
    };
    let carried = |i: usize| only_carried.is_none_or(|c| i >= 64 || c.0 & (1 << i) != 0);
    let mut headers_to_remove: Vec<String> = (identity.names().iter().enumerate())
        .filter(|(i, name)| !set.iter().any(|(key, _)| key == *name) && carried(*i))
        .map(|(_, name)| name.clone())
        .collect();
    if strip_authorization {
        headers_to_remove.push("authorization".to_owned());
    }
    CheckResponse {
        status: Some(rpc::Status { code: code::OK, ..Default::default() }),
        http_response: Some(HttpResponse::OkResponse(OkHttpResponse {
            headers: set.into_iter().map(|(k, v)| overwrite(k, v)).collect(),
            headers_to_remove,
            ..Default::default()
        })),
        dynamic_metadata: match allowed {
            Allowed::Verified(claims) if claims_metadata => Some(claims_struct(claims)),
            _ => None,
        },
    }
}

/// A denial Envoy sends on as the HTTP response.
pub fn denied_response(denied: &Denied) -> CheckResponse {
    let mut headers = vec![overwrite("content-type", "application/json".to_owned())];
    if let Some(challenge) = denied.www_authenticate() {
        headers.push(overwrite("www-authenticate", challenge));
    }
    let body = serde_json::json!({ "detail": denied.client_message() }).to_string();
    CheckResponse {
        status: Some(rpc::Status { code: denied.grpc_code(), message: denied.outcome().to_owned(), details: vec![] }),
        http_response: Some(HttpResponse::DeniedResponse(DeniedHttpResponse {
            status: Some(HttpStatus { code: i32::from(denied.http_status().as_u16()) }),
            headers,
            body,
        })),
        dynamic_metadata: None,
    }
}

/// A browser sent to sign in: 302 to `url` (the denial is still the reason, in the gRPC status).
pub fn sign_in_response(denied: &Denied, url: &str) -> CheckResponse {
    CheckResponse {
        status: Some(rpc::Status { code: denied.grpc_code(), message: denied.outcome().to_owned(), details: vec![] }),
        http_response: Some(HttpResponse::DeniedResponse(DeniedHttpResponse {
            status: Some(HttpStatus { code: 302 }),
            headers: vec![overwrite("location", url.to_owned()), overwrite("cache-control", "no-store".to_owned())],
            body: String::new(),
        })),
        dynamic_metadata: None,
    }
}

fn overwrite(key: &str, value: String) -> HeaderValueOption {
    HeaderValueOption {
        header: Some(HeaderValue { key: key.to_owned(), value, raw_value: Vec::new() }),
        append_action: HeaderAppendAction::OverwriteIfExistsOrAdd as i32,
        // The deprecated `append` stays unset: Envoy then reads `append_action` (and an older
        // Envoy, finding no `append`, replaces too).
        ..Default::default()
    }
}

/// The verified claims as `dynamic_metadata`, for RBAC and access logs in Envoy.
fn claims_struct(c: &Claims) -> prost_types::Struct {
    let s = |v: &str| prost_types::Value { kind: Some(Kind::StringValue(v.to_owned())) };
    let mut fields = BTreeMap::from([
        ("client_id".to_owned(), s(&c.client_id)),
        ("exp".to_owned(), prost_types::Value { kind: Some(Kind::NumberValue(c.exp as f64)) }),
        (
            "groups".to_owned(),
            prost_types::Value {
                kind: Some(Kind::ListValue(prost_types::ListValue { values: c.groups.iter().map(|g| s(g)).collect() })),
            },
        ),
    ]);
    if let Some(scope) = &c.scope {
        fields.insert("scope".to_owned(), s(scope));
    }
    if let Identity::User { sub, username } = &c.identity {
        fields.insert("sub".to_owned(), s(&sub.to_string()));
        fields.insert("username".to_owned(), s(username.as_str()));
    }
    if let Identity::Subject { sub, username } = &c.identity {
        fields.insert("sub".to_owned(), s(sub));
        fields.insert("username".to_owned(), s(username.as_str()));
    }
    fields.insert("issuer".to_owned(), s(&c.issuer_name));
    prost_types::Struct { fields }
}
