//! The identity headers this service owns on the way upstream: the fixed five and those mapped
//! from token claims (`[[header]]`). Each is set on an allow or removed, never passed through from
//! the client, and no other spelling of it (`x_user_id`) may reach the upstream.

use std::sync::Arc;

use percent_encoding::{AsciiSet, CONTROLS, NON_ALPHANUMERIC, utf8_percent_encode};
use prost::bytes::BufMut;
use uuid::Uuid;

use crate::verify::claims::{Claims, Identity};

/// The headers every allow sets or removes (`x-user-issuer`: the name of the issuer that verified
/// the token).
pub const FIXED: [&str; 5] = ["x-user-id", "x-username", "x-user-groups", "x-client-id", "x-user-issuer"];

/// List items (group names, array claims) may hold anything; everything but RFC 3986 unreserved
/// characters is escaped, so a `,` inside an item cannot split it.
pub(crate) const LIST_ITEM: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');

/// Text claims keep their look; control characters and `%` are escaped (non-ASCII too, by the
/// encoder), so a value can neither break a header nor be read two ways.
pub(crate) const TEXT: &AsciiSet = &CONTROLS.add(b'%');

/// Text values once several issuers are configured: `:` is escaped too, so a bare value can never
/// read as another issuer's qualified one (`partners:bob`).
pub(crate) const TEXT_QUALIFIED: &AsciiSet = &TEXT.add(b':');

/// Only what `TEXT_QUALIFIED` adds to an already escaped value (mapped claims are escaped when the
/// token is verified).
pub(crate) const COLON: &AsciiSet = &CONTROLS.add(b':');

/// How each issuer's identity values are written. With one issuer, bare, as they always were.
/// With several, every issuer's values are qualified by its name (`partners:<sub>`, each group
/// `partners:admin`), but for the one named by `--unqualified-issuer`, and `:` is escaped in every
/// value: so no two principals of different issuers produce the same identity headers.
#[derive(Debug, Clone, Default)]
pub struct Qualifiers {
    /// `Some(name)` for each qualified issuer, by its position in the configuration.
    prefixes: Arc<[Option<Arc<str>>]>,
    several: bool,
}

impl Qualifiers {
    /// For the issuers named `names` (in configuration order), `bare` keeping bare values.
    pub fn new(names: &[String], bare: Option<&str>) -> Qualifiers {
        let several = names.len() > 1;
        let prefixes =
            names.iter().map(|n| (several && Some(n.as_str()) != bare).then(|| Arc::from(n.as_str()))).collect();
        Qualifiers { prefixes, several }
    }

    /// The prefix of issuer `issuer`'s values (its name), if they are qualified.
    pub fn prefix(&self, issuer: usize) -> Option<&str> {
        self.prefixes.get(issuer).and_then(|p| p.as_deref())
    }

    /// True when several issuers are configured (`:` is then escaped in every value).
    pub fn several(&self) -> bool {
        self.several
    }
}

/// One item of a comma-joined list header.
pub fn escape_list_item(item: &str) -> String {
    utf8_percent_encode(item, LIST_ITEM).to_string()
}

/// A text value for a header.
pub fn escape_text(text: &str) -> String {
    utf8_percent_encode(text, TEXT).to_string()
}

/// A claim mapped to an upstream header.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct HeaderClaim {
    /// The header, lower case (`x-user-email`).
    pub name: String,
    /// The claim (`email`, `custom:tenant`).
    pub claim: String,
}

/// Headers that Envoy applies when an ext_authz allow sets them, or that upstreams read for the
/// request's framing, its route, its trace or its client: a claim value (which a user may
/// influence through custom attributes or a pre-token-generation trigger) must never set them.
const STEERING: [&str; 17] = [
    "content-length",
    "content-type",
    "content-encoding",
    "expect",
    "forwarded",
    "x-real-ip",
    "x-request-id",
    "x-client-trace-id",
    "traceparent",
    "tracestate",
    "baggage",
    "b3",
    "origin",
    "referer",
    "via",
    "x-amzn-trace-id",
    "x-http-method-override",
];

/// Prefixes of the same kind: Envoy's own (`x-envoy-upstream-rq-timeout-ms`), the forwarding
/// family (`x-forwarded-for`, `-proto`, `-host`, `-client-cert`), Zipkin's, Istio's, gRPC's.
const STEERING_PREFIXES: [&str; 6] = ["x-envoy-", "x-forwarded-", "x-b3-", "x-istio-", "grpc-", "x-ot-"];

/// Why a mapped header name cannot be used.
pub fn check_name(name: &str) -> Result<(), &'static str> {
    const REFUSED: [&str; 11] = [
        "authorization",
        "cookie",
        "host",
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    ];
    if name.starts_with(':') {
        return Err("must not be a pseudo-header");
    }
    if name.is_empty() || !name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-') {
        return Err("must be a lower-case header name of letters, digits and -");
    }
    if REFUSED.contains(&name) || name == "proxy-connection" {
        return Err("must not be a hop-by-hop header, authorization, cookie or host");
    }
    if STEERING.contains(&name) || STEERING_PREFIXES.iter().any(|p| name.starts_with(p)) {
        return Err(
            "must not be a header that Envoy or the upstream reads for framing, routing, tracing or the client's address",
        );
    }
    if FIXED.contains(&name) {
        return Err("is already one of the identity headers");
    }
    Ok(())
}

/// Every identity header of this service: the fixed five, then the mapped ones.
#[derive(Debug, Clone)]
pub struct IdentityHeaders {
    names: Arc<[String]>,
    qualifiers: Qualifiers,
}

impl Default for IdentityHeaders {
    fn default() -> Self {
        IdentityHeaders::with_mapped(&[])
    }
}

impl IdentityHeaders {
    /// The fixed identity headers and those `mapped` from claims.
    pub fn with_mapped(mapped: &[HeaderClaim]) -> IdentityHeaders {
        let names = FIXED.iter().map(|n| n.to_string()).chain(mapped.iter().map(|m| m.name.clone())).collect();
        IdentityHeaders { names, qualifiers: Qualifiers::default() }
    }

    /// The same headers, their values qualified by issuer as `qualifiers` say.
    pub fn qualified(mut self, qualifiers: Qualifiers) -> IdentityHeaders {
        self.qualifiers = qualifiers;
        self
    }

    /// How each issuer's values are written.
    pub fn qualifiers(&self) -> &Qualifiers {
        &self.qualifiers
    }

    /// All of them, the fixed five first.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// The mapped ones, in the mapping's order.
    pub fn mapped(&self) -> &[String] {
        &self.names[FIXED.len()..]
    }

    /// True for a header name that equals one of ours once lower-cased with `_` read as `-`, but is
    /// not exactly it (`x_user_id`, `X-User_Id`): CGI, uWSGI and some Ruby and Python servers would
    /// hand it to the application as `x-user-id`.
    pub fn spoofed_by(&self, name: &str) -> bool {
        let same = |ours: &str| {
            name.len() == ours.len()
                && name.bytes().zip(ours.bytes()).all(|(a, b)| a.to_ascii_lowercase() == b || (a == b'_' && b == b'-'))
        };
        name.contains('_') && self.names.iter().any(|ours| same(ours))
    }
}

// The identity values an allow sets: computed here, once, for every transport. The Envoy encoder
// writes them straight to the wire without building a string; other renderers take them as text.

const fn fixed(name: &str) -> usize {
    let mut i = 0;
    while i < FIXED.len() {
        let (a, b) = (FIXED[i].as_bytes(), name.as_bytes());
        if a.len() == b.len() {
            let mut j = 0;
            while j < a.len() && a[j] == b[j] {
                j += 1;
            }
            if j == a.len() {
                return i;
            }
        }
        i += 1;
    }
    panic!("not an identity header")
}

const USER_ID: usize = fixed("x-user-id");
const USERNAME: usize = fixed("x-username");
const USER_GROUPS: usize = fixed("x-user-groups");
const CLIENT_ID: usize = fixed("x-client-id");
const USER_ISSUER: usize = fixed("x-user-issuer");

/// A header value as the claims hold it; written without building a string. `prefix` is the
/// issuer's name where its values are qualified (`partners:<value>`; each item of a list).
#[derive(Clone, Copy)]
pub(crate) enum Value<'a> {
    /// A UUID, hyphenated lower case.
    Uuid(Option<&'a str>, &'a Uuid),
    /// Text written as it is (names this service chose, already escaped values).
    Text(&'a str),
    /// Text percent-encoded with the given set (`headers::TEXT`: control characters, `%` and
    /// non-ASCII; with several issuers `:` too).
    Escaped(Option<&'a str>, &'a str, &'static AsciiSet),
    /// Items percent-encoded (`headers::escape_list_item`), comma-joined.
    List(Option<&'a str>, &'a [String]),
}

/// The identity headers an allow sets, by their index in `IdentityHeaders::names`, in that order.
/// The one place an identity value is chosen: the pre-encoded allow and the prost-built one
/// (`ext_authz::allowed_response`) both write these.
pub(crate) fn identity_values<'c>(claims: &'c Claims, q: &'c Qualifiers) -> impl Iterator<Item = (usize, Value<'c>)> {
    let prefix = q.prefix(claims.issuer);
    let text = if q.several() { TEXT_QUALIFIED } else { TEXT };
    let groups = (!claims.groups.is_empty()).then_some((USER_GROUPS, Value::List(prefix, &claims.groups)));
    let issuer = Some((USER_ISSUER, Value::Text(&claims.issuer_name)));
    let fixed: [Option<(usize, Value<'_>)>; 4] = match &claims.identity {
        Identity::User { sub, username } => [
            Some((USER_ID, Value::Uuid(prefix, sub))),
            Some((USERNAME, Value::Escaped(prefix, username, text))),
            groups,
            issuer,
        ],
        Identity::Subject { sub, username } => [
            Some((USER_ID, Value::Escaped(prefix, sub, text))),
            Some((USERNAME, Value::Escaped(prefix, username, text))),
            groups,
            issuer,
        ],
        Identity::Machine => [Some((CLIENT_ID, Value::Escaped(prefix, &claims.client_id, text))), issuer, None, None],
    };
    let mapped = claims.mapped.iter().enumerate().filter_map(move |(i, v)| {
        let v = v.as_deref()?;
        Some((FIXED.len() + i, if q.several() { Value::Escaped(prefix, v, COLON) } else { Value::Text(v) }))
    });
    fixed.into_iter().flatten().chain(mapped)
}

/// The identity headers an allow sets, as (index in `IdentityHeaders::names`, value) pairs.
pub fn identity_header_values(claims: &Claims, q: &Qualifiers) -> Vec<(usize, String)> {
    identity_values(claims, q)
        .map(|(i, value)| {
            let mut bytes = Vec::with_capacity(value.len());
            value.put(&mut bytes);
            (i, String::from_utf8(bytes).expect("identity values are written as UTF-8"))
        })
        .collect()
}

fn prefix_len(prefix: Option<&str>) -> usize {
    prefix.map_or(0, |p| p.len() + 1)
}

fn put_prefix(buf: &mut impl BufMut, prefix: Option<&str>) {
    if let Some(p) = prefix {
        buf.put_slice(p.as_bytes());
        buf.put_u8(b':');
    }
}

impl Value<'_> {
    /// The value's length in bytes, as written.
    pub(crate) fn len(self) -> usize {
        match self {
            Value::Uuid(prefix, _) => prefix_len(prefix) + uuid::fmt::Hyphenated::LENGTH,
            Value::Text(text) => text.len(),
            Value::Escaped(prefix, text, set) => {
                prefix_len(prefix) + utf8_percent_encode(text, set).map(str::len).sum::<usize>()
            }
            Value::List(prefix, items) => {
                let escaped: usize = items
                    .iter()
                    .map(|i| prefix_len(prefix) + utf8_percent_encode(i, LIST_ITEM).map(str::len).sum::<usize>())
                    .sum();
                escaped + items.len().saturating_sub(1)
            }
        }
    }

    /// Writes the value.
    pub(crate) fn put(self, buf: &mut impl BufMut) {
        match self {
            Value::Uuid(prefix, uuid) => {
                put_prefix(buf, prefix);
                buf.put_slice(uuid.hyphenated().encode_lower(&mut Uuid::encode_buffer()).as_bytes());
            }
            Value::Text(text) => buf.put_slice(text.as_bytes()),
            Value::Escaped(prefix, text, set) => {
                put_prefix(buf, prefix);
                for chunk in utf8_percent_encode(text, set) {
                    buf.put_slice(chunk.as_bytes());
                }
            }
            Value::List(prefix, items) => {
                for (n, item) in items.iter().enumerate() {
                    if n > 0 {
                        buf.put_u8(b',');
                    }
                    put_prefix(buf, prefix);
                    for chunk in utf8_percent_encode(item, LIST_ITEM) {
                        buf.put_slice(chunk.as_bytes());
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mapped_names_that_would_break_the_request_are_refused() {
        for bad in
            ["authorization", "cookie", "host", "connection", "te", ":path", "X-Email", "x_email", "", "x-user-id"]
        {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
        assert_eq!(check_name("x-user-email"), Ok(()));
    }

    #[test]
    fn mapped_names_that_steer_envoy_or_the_upstream_are_refused() {
        for bad in [
            "content-length",
            "content-type",
            "expect",
            "x-envoy-upstream-rq-timeout-ms",
            "x-envoy-original-path",
            "x-forwarded-for",
            "x-forwarded-proto",
            "x-forwarded-client-cert",
            "forwarded",
            "x-real-ip",
            "x-request-id",
            "traceparent",
            "origin",
            "x-http-method-override",
        ] {
            let refused = check_name(bad).expect_err(bad);
            assert!(refused.contains("framing, routing, tracing"), "{bad}: {refused}");
        }
        // Positive controls: claim headers of an application's own are fine.
        for fine in ["x-user-email", "x-tenant", "x-envoyish", "x-forwarder-name"] {
            assert_eq!(check_name(fine), Ok(()), "{fine}");
        }
    }

    #[test]
    fn spellings_with_underscores_of_any_identity_header_are_spoofs() {
        let headers = IdentityHeaders::with_mapped(&[HeaderClaim { name: "x-tenant".into(), claim: "t".into() }]);
        for spoof in ["x_user_id", "X_User_Id", "x-user_id", "x_tenant"] {
            assert!(headers.spoofed_by(spoof), "{spoof}");
        }
        for fine in ["x-user-id", "x-tenant", "x_trace_id", "x-tenants"] {
            assert!(!headers.spoofed_by(fine), "{fine}");
        }
    }

    #[test]
    fn header_values_are_escaped_so_they_cannot_break_a_header_or_split_a_list() {
        assert_eq!(escape_text("a@b.example 100%\r\nx"), "a@b.example 100%25%0D%0Ax");
        assert_eq!(escape_list_item("team a,b"), "team%20a%2Cb");
    }
}
