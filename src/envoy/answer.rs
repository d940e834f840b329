//! The allow, written straight to the wire as Envoy reads it.
//!
//! Everything of an allow that is the same for every request (the status, each identity header's
//! name with its framing, the overwrite flag, every `headers_to_remove` entry) is encoded once,
//! here, when the service starts; what differs per token is copied from the cached claims (the
//! `sub`, the username, the groups, mapped claims). A cache hit builds no message and allocates
//! nothing: the gRPC codec (`grpc.rs`) asks for the length, then the bytes.
//!
//! Nothing token-specific is kept beyond the claims the cache already holds: a pre-encoded copy of
//! each token's headers would cost about 180 bytes a cached token (18 MiB at 100,000 tokens, over
//! the memory budget in BENCHMARKS.md), for a saving of tens of nanoseconds.
//!
//! The bytes are exactly prost's encoding of `ext_authz::allowed_response` (the tests compare
//! them), so an identity header is added in one place: `authz::headers::identity_values`.

use std::sync::Arc;

use prost::bytes::BufMut;
use prost::encoding::{encode_varint, encoded_len_varint};

use crate::authz::Allowed;
use crate::authz::headers::{IdentityHeaders, Qualifiers, Value, identity_values};
use crate::verify::claims::{Claims, Identity};

/// Tag bytes (field number << 3 | wire type), named for the message and field they open.
mod tag {
    pub(super) const RESPONSE_STATUS: u8 = 0x0a; // CheckResponse.status = 1
    pub(super) const RESPONSE_OK: u8 = 0x1a; // CheckResponse.ok_response = 3
    pub(super) const RESPONSE_METADATA: u8 = 0x22; // CheckResponse.dynamic_metadata = 4
    pub(super) const OK_HEADERS: u8 = 0x12; // OkHttpResponse.headers = 2
    pub(super) const OK_REMOVE: u8 = 0x2a; // OkHttpResponse.headers_to_remove = 5
    pub(super) const OPTION_HEADER: u8 = 0x0a; // HeaderValueOption.header = 1
    pub(super) const HEADER_KEY: u8 = 0x0a; // HeaderValue.key = 1
    pub(super) const HEADER_VALUE: u8 = 0x12; // HeaderValue.value = 2
    pub(super) const STRUCT_FIELD: u8 = 0x0a; // Struct.fields = 1, a map
    pub(super) const ENTRY_KEY: u8 = 0x0a; // map entry key = 1
    pub(super) const ENTRY_VALUE: u8 = 0x12; // map entry value = 2
    pub(super) const NUMBER: u8 = 0x11; // Value.number_value = 2 (64-bit)
    pub(super) const STRING: u8 = 0x1a; // Value.string_value = 3
    pub(super) const LIST: u8 = 0x32; // Value.list_value = 6
    pub(super) const LIST_ITEM: u8 = 0x0a; // ListValue.values = 1
}

/// `HeaderValueOption.append_action = OVERWRITE_IF_EXISTS_OR_ADD` (field 3, varint 2).
const OVERWRITE: [u8; 2] = [0x18, 0x02];

/// A length-delimited field: tag, length, and the `len` bytes that follow.
fn framed(len: usize) -> usize {
    1 + encoded_len_varint(len as u64) + len
}

fn put_head(buf: &mut impl BufMut, tag: u8, len: usize) {
    buf.put_u8(tag);
    encode_varint(len as u64, buf);
}

/// How this service writes its allows: fixed for the life of the process.
#[derive(Debug)]
pub struct AllowWriter {
    /// Per identity header: `HeaderValue.key` with its tag and length, ready to copy.
    keys: Box<[Box<[u8]>]>,
    /// Per identity header: its `headers_to_remove` entry, ready to copy.
    removes: Box<[Box<[u8]>]>,
    /// `headers_to_remove` for `authorization`, when it is stripped.
    strip_authorization: Option<Box<[u8]>>,
    /// How each issuer's values are written.
    qualifiers: Qualifiers,
    claims_metadata: bool,
    only_carried: bool,
}

/// What an allow says beyond the token: which of the identity headers the request carried (bit
/// `i` for `IdentityHeaders::names()[i]`; all ones when unknown).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Carried(pub u64);

impl Carried {
    /// Every identity header, as if the request carried them all.
    pub const ALL: Carried = Carried(u64::MAX);

    fn has(self, i: usize) -> bool {
        i >= 64 || self.0 & (1 << i) != 0
    }
}

impl AllowWriter {
    /// `claims_metadata`: the claims go to `dynamic_metadata`. `only_carried`: `headers_to_remove`
    /// lists only the identity headers the request carried (Envoy strips, or shows us, the rest).
    pub fn new(
        identity: &IdentityHeaders,
        strip_authorization: bool,
        claims_metadata: bool,
        only_carried: bool,
    ) -> AllowWriter {
        let encode = |tag: u8, name: &str| {
            let mut field = Vec::with_capacity(framed(name.len()));
            put_head(&mut field, tag, name.len());
            field.put_slice(name.as_bytes());
            field.into_boxed_slice()
        };
        AllowWriter {
            keys: identity.names().iter().map(|n| encode(tag::HEADER_KEY, n)).collect(),
            removes: identity.names().iter().map(|n| encode(tag::OK_REMOVE, n)).collect(),
            strip_authorization: strip_authorization.then(|| encode(tag::OK_REMOVE, "authorization")),
            qualifiers: identity.qualifiers().clone(),
            claims_metadata,
            only_carried,
        }
    }

    /// True when allows carry the claims as `dynamic_metadata`.
    pub fn claims_metadata(&self) -> bool {
        self.claims_metadata
    }

    /// True when allows remove only the identity headers the request carried.
    pub fn only_carried(&self) -> bool {
        self.only_carried
    }

    /// True when allows remove `authorization`.
    pub fn strips_authorization(&self) -> bool {
        self.strip_authorization.is_some()
    }

    /// Whether `headers_to_remove` lists identity header `i`, given the headers set (`set` has a
    /// bit for each of the first 64; past them, the claims are asked).
    fn removes(&self, i: usize, set: u64, claims: Option<&Claims>, carried: Carried) -> bool {
        let is_set = if i < 64 {
            set & (1 << i) != 0
        } else {
            claims.is_some_and(|c| identity_values(c, &self.qualifiers).any(|(j, _)| j == i))
        };
        !is_set && (!self.only_carried || carried.has(i))
    }

    fn set_mask(&self, claims: Option<&Claims>) -> u64 {
        claims.map_or(0, |c| {
            identity_values(c, &self.qualifiers).filter(|(i, _)| *i < 64).fold(0, |m, (i, _)| m | 1 << i)
        })
    }

    fn ok_len(&self, claims: Option<&Claims>, carried: Carried) -> usize {
        let headers: usize = claims
            .map_or(0, |c| identity_values(c, &self.qualifiers).map(|(i, v)| framed(self.option_len(i, v))).sum());
        let set = self.set_mask(claims);
        let removes: usize = (0..self.removes.len())
            .filter(|i| self.removes(*i, set, claims, carried))
            .map(|i| self.removes[i].len())
            .sum();
        headers + removes + self.strip_authorization.as_ref().map_or(0, |r| r.len())
    }

    /// The `HeaderValue` message's length.
    fn header_len(&self, i: usize, len: usize) -> usize {
        self.keys[i].len() + if len == 0 { 0 } else { framed(len) }
    }

    /// The `HeaderValueOption` message's length.
    fn option_len(&self, i: usize, value: Value<'_>) -> usize {
        framed(self.header_len(i, value.len())) + OVERWRITE.len()
    }

    fn put_ok(&self, buf: &mut impl BufMut, claims: Option<&Claims>, carried: Carried) {
        if let Some(claims) = claims {
            for (i, value) in identity_values(claims, &self.qualifiers) {
                let len = value.len();
                let header = self.header_len(i, len);
                put_head(buf, tag::OK_HEADERS, framed(header) + OVERWRITE.len());
                put_head(buf, tag::OPTION_HEADER, header);
                buf.put_slice(&self.keys[i]);
                // prost leaves an empty string out; so do we, to stay byte for byte the same.
                if len > 0 {
                    put_head(buf, tag::HEADER_VALUE, len);
                    value.put(buf);
                }
                buf.put_slice(&OVERWRITE);
            }
        }
        let set = self.set_mask(claims);
        for (i, remove) in self.removes.iter().enumerate() {
            if self.removes(i, set, claims, carried) {
                buf.put_slice(remove);
            }
        }
        if let Some(remove) = &self.strip_authorization {
            buf.put_slice(remove);
        }
    }
}

/// One allow, ready to be written: the writer, the caller's claims (none for an anonymous allow)
/// and what the request carried.
#[derive(Debug, Clone)]
pub struct Allow {
    writer: Arc<AllowWriter>,
    claims: Option<Arc<Claims>>,
    carried: Carried,
}

impl Allow {
    /// The allow for `allowed`, written by `writer` when the codec asks.
    pub fn new(writer: Arc<AllowWriter>, allowed: &Allowed, carried: Carried) -> Allow {
        let claims = match allowed {
            Allowed::Verified(claims) => Some(claims.clone()),
            Allowed::Anonymous => None,
        };
        Allow { writer, claims, carried }
    }

    fn metadata(&self) -> Option<&Claims> {
        self.claims.as_deref().filter(|_| self.writer.claims_metadata)
    }

    /// The encoded `CheckResponse`'s length.
    pub fn encoded_len(&self) -> usize {
        let ok = self.writer.ok_len(self.claims.as_deref(), self.carried);
        let metadata = self.metadata().map_or(0, |c| framed(metadata_len(c)));
        framed(0) + framed(ok) + metadata
    }

    /// Writes the `CheckResponse`: `status` (code 0), `ok_response`, and `dynamic_metadata` when asked.
    pub fn encode(&self, buf: &mut impl BufMut) {
        put_head(buf, tag::RESPONSE_STATUS, 0);
        put_head(buf, tag::RESPONSE_OK, self.writer.ok_len(self.claims.as_deref(), self.carried));
        self.writer.put_ok(buf, self.claims.as_deref(), self.carried);
        if let Some(claims) = self.metadata() {
            put_head(buf, tag::RESPONSE_METADATA, metadata_len(claims));
            put_metadata(buf, claims);
        }
    }

    /// The encoded message (tests and in-process callers).
    pub fn to_vec(&self) -> Vec<u8> {
        let mut buf = Vec::with_capacity(self.encoded_len());
        self.encode(&mut buf);
        buf
    }
}

/// A `google.protobuf.Value` in the claims metadata.
#[derive(Clone, Copy)]
enum Meta<'a> {
    Str(Value<'a>),
    Number(f64),
    Strings(&'a [String]),
}

/// The claims metadata, in key order (prost writes a `Struct`'s map sorted).
fn metadata_fields(c: &Claims) -> impl Iterator<Item = (&'static str, Meta<'_>)> {
    let (sub, username) = match &c.identity {
        Identity::User { sub, username } => {
            (Some(("sub", Meta::Str(Value::Uuid(None, sub)))), Some(("username", Meta::Str(Value::Text(username)))))
        }
        Identity::Subject { sub, username } => {
            (Some(("sub", Meta::Str(Value::Text(sub)))), Some(("username", Meta::Str(Value::Text(username)))))
        }
        Identity::Machine => (None, None),
    };
    [
        Some(("client_id", Meta::Str(Value::Text(&c.client_id)))),
        Some(("exp", Meta::Number(c.exp as f64))),
        Some(("groups", Meta::Strings(&c.groups))),
        Some(("issuer", Meta::Str(Value::Text(&c.issuer_name)))),
        c.scope.as_deref().map(|s| ("scope", Meta::Str(Value::Text(s)))),
        sub,
        username,
    ]
    .into_iter()
    .flatten()
}

impl Meta<'_> {
    /// The `Value` message's length.
    fn len(self) -> usize {
        match self {
            Meta::Str(v) => framed(v.len()),
            Meta::Number(_) => 9,
            Meta::Strings(items) => framed(list_len(items)),
        }
    }

    fn put(self, buf: &mut impl BufMut) {
        match self {
            Meta::Str(v) => {
                put_head(buf, tag::STRING, v.len());
                v.put(buf);
            }
            Meta::Number(n) => {
                buf.put_u8(tag::NUMBER);
                buf.put_f64_le(n);
            }
            Meta::Strings(items) => {
                put_head(buf, tag::LIST, list_len(items));
                for item in items.iter() {
                    put_head(buf, tag::LIST_ITEM, framed(item.len()));
                    put_head(buf, tag::STRING, item.len());
                    buf.put_slice(item.as_bytes());
                }
            }
        }
    }
}

fn list_len(items: &[String]) -> usize {
    items.iter().map(|i| framed(framed(i.len()))).sum()
}

fn entry_len(key: &str, value: Meta<'_>) -> usize {
    framed(key.len()) + framed(value.len())
}

fn metadata_len(c: &Claims) -> usize {
    metadata_fields(c).map(|(k, v)| framed(entry_len(k, v))).sum()
}

fn put_metadata(buf: &mut impl BufMut, c: &Claims) {
    for (key, value) in metadata_fields(c) {
        put_head(buf, tag::STRUCT_FIELD, entry_len(key, value));
        put_head(buf, tag::ENTRY_KEY, key.len());
        buf.put_slice(key.as_bytes());
        put_head(buf, tag::ENTRY_VALUE, value.len());
        value.put(buf);
    }
}

#[cfg(test)]
mod tests {
    use prost::Message;

    use uuid::Uuid;

    use super::*;
    use crate::authz::headers::{FIXED, HeaderClaim, identity_header_values};
    use crate::envoy::ext_authz::allowed_response;
    use crate::verify::claims::TokenId;

    fn user(groups: &[&str], scope: Option<&str>, mapped: &[Option<&str>]) -> Claims {
        Claims {
            identity: Identity::User {
                sub: Uuid::parse_str("3f1c7a52-7d7c-4f0e-9a3f-2c5e8b1d9e01").unwrap(),
                username: "alice ä".into(),
            },
            client_id: Arc::from("client-a"),
            groups: groups.iter().map(|g| g.to_string()).collect::<Vec<_>>().into(),
            scope: scope.map(Arc::from),
            jti: Some(TokenId::from("9d8c7b6a-5f4e-4d3c-2b1a-0f9e8d7c6b5a")),
            origin_jti: None,
            exp: 1_800_000_000,
            iat: Some(1_799_999_000),
            auth_time: None,
            mapped: mapped.iter().map(|m| m.map(str::to_owned)).collect(),
            issuer: 0,
            issuer_name: Arc::from("default"),
            iss: Arc::from("https://issuer.example"),
            second_factor: None,
        }
    }

    fn identity(mapped: usize) -> IdentityHeaders {
        let claims: Vec<HeaderClaim> =
            (0..mapped).map(|i| HeaderClaim { name: format!("x-claim-{i}"), claim: format!("c{i}") }).collect();
        IdentityHeaders::with_mapped(&claims)
    }

    #[test]
    fn allows_are_written_byte_for_byte_as_prost_encodes_the_message() {
        let long = "g".repeat(300);
        let callers = [
            Allowed::Verified(Arc::new(user(&["admin", "team a,b", "", "ü/%"], Some("openid"), &[]))),
            Allowed::Verified(Arc::new(user(&[], None, &[]))),
            Allowed::Verified(Arc::new(user(&[&long], Some(""), &[Some("a@b.example"), None, Some("")]))),
            Allowed::Verified(Arc::new(Claims { identity: Identity::Machine, ..user(&[], Some("api/read"), &[]) })),
            Allowed::Verified(Arc::new(Claims {
                identity: Identity::Machine,
                ..user(&["x"], None, &[None, Some("1"), None])
            })),
            // An OIDC provider's subject and username, which may hold anything, under another issuer.
            Allowed::Verified(Arc::new(Claims {
                identity: Identity::Subject { sub: "auth0|5f7c\n%ä".into(), username: "bob\r\n x%".into() },
                issuer: 1,
                issuer_name: Arc::from("partners"),
                second_factor: Some(true),
                ..user(&["g1"], Some("api"), &[Some("v")])
            })),
            Allowed::Anonymous,
        ];
        let mut cases = 0;
        for caller in &callers {
            let mapped = match caller {
                Allowed::Verified(c) => c.mapped.len(),
                Allowed::Anonymous => 2,
            };
            let names = identity(mapped);
            for (strip, metadata, only_carried) in (0..8).map(|bits| (bits & 1 != 0, bits & 2 != 0, bits & 4 != 0)) {
                for carried in [Carried(0), Carried(0b1001), Carried(0b110110), Carried::ALL] {
                    let writer = Arc::new(AllowWriter::new(&names, strip, metadata, only_carried));
                    let allow = Allow::new(writer, caller, carried);
                    let expected = allowed_response(caller, strip, &names, metadata, only_carried.then_some(carried))
                        .encode_to_vec();
                    let written = allow.to_vec();
                    assert_eq!(written.len(), allow.encoded_len(), "the length it announces");
                    assert_eq!(written, expected, "{caller:?} strip={strip} metadata={metadata} carried={carried:?}");
                    cases += 1;
                }
            }
        }
        assert_eq!(cases, 7 * 8 * 4);
    }

    fn values(claims: &Claims, q: &Qualifiers) -> Vec<(&'static str, String)> {
        identity_header_values(claims, q)
            .into_iter()
            .map(|(i, v)| (FIXED.get(i).copied().unwrap_or("mapped"), v))
            .collect()
    }

    #[test]
    fn no_two_principals_of_different_issuers_share_identity_headers() {
        let names = ["staff".to_owned(), "partners".to_owned()];
        let staff = Claims { issuer_name: Arc::from("staff"), ..user(&["admin"], None, &[Some("a@corp.example")]) };
        let Identity::User { sub, .. } = &staff.identity else { unreachable!() };
        // A provider may mint the staff user's very sub, username, group and mapped claim.
        let partner = Claims {
            identity: Identity::Subject { sub: sub.to_string().into(), username: "alice ä".into() },
            issuer: 1,
            issuer_name: Arc::from("partners"),
            ..staff.clone()
        };
        let bare_staff = Qualifiers::new(&names, Some("staff"));
        assert_eq!(
            values(&staff, &bare_staff),
            [
                ("x-user-id", sub.to_string()),
                ("x-username", "alice %C3%A4".to_owned()),
                ("x-user-groups", "admin".to_owned()),
                ("x-user-issuer", "staff".to_owned()),
                ("mapped", "a@corp.example".to_owned()),
            ],
            "the unqualified issuer keeps the single-pool values"
        );
        assert_eq!(
            values(&partner, &bare_staff),
            [
                ("x-user-id", format!("partners:{sub}")),
                ("x-username", "partners:alice %C3%A4".to_owned()),
                ("x-user-groups", "partners:admin".to_owned()),
                ("x-user-issuer", "partners".to_owned()),
                ("mapped", "partners:a@corp.example".to_owned()),
            ]
        );
        // A bare value can never read as a qualified one: `:` is escaped in every value.
        let colon = Claims {
            identity: Identity::User { sub: *sub, username: "partners:alice".into() },
            ..user(&["partners:admin"], None, &[Some("partners:x")])
        };
        let colon = Claims { issuer_name: Arc::from("staff"), ..colon };
        let written = values(&colon, &bare_staff);
        assert_eq!(written[1], ("x-username", "partners%3Aalice".to_owned()));
        assert_eq!(written[2], ("x-user-groups", "partners%3Aadmin".to_owned()));
        assert_eq!(written[4], ("mapped", "partners%3Ax".to_owned()));
        // With no issuer named bare, every issuer is qualified.
        let all = Qualifiers::new(&names, None);
        assert_eq!(values(&staff, &all)[0], ("x-user-id", format!("staff:{sub}")));
        // Machine tokens too.
        let machine = Claims { identity: Identity::Machine, ..partner.clone() };
        assert_eq!(values(&machine, &bare_staff)[0], ("x-client-id", "partners:client-a".to_owned()));
    }

    #[test]
    fn every_issuer_writes_its_username_in_one_encoding() {
        let one = Qualifiers::new(&["default".to_owned()], None);
        let cognito = Claims {
            identity: Identity::User { sub: Uuid::from_u128(7), username: "bob\r\n 100% a:b ü".into() },
            ..user(&[], None, &[])
        };
        let oidc = Claims {
            identity: Identity::Subject { sub: "s".into(), username: "bob\r\n 100% a:b ü".into() },
            ..cognito.clone()
        };
        let encoded = "bob%0D%0A 100%25 a:b %C3%BC".to_owned();
        assert_eq!(values(&cognito, &one)[1], ("x-username", encoded.clone()), "a Cognito username is escaped");
        assert_eq!(values(&oidc, &one)[1], ("x-username", encoded), "as an OIDC one is");
        // Positive control: a plain username is written as it always was.
        let plain =
            Claims { identity: Identity::User { sub: Uuid::from_u128(7), username: "alice".into() }, ..cognito };
        assert_eq!(values(&plain, &one)[1], ("x-username", "alice".to_owned()));
    }
}
