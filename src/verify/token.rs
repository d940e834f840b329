//! Bearer extraction and JWT parsing: pure functions, no keys, no clock.
//!
//! Everything here runs on untrusted input, so each step bounds its work before doing it:
//! the size is checked before any decoding, the shape before any JSON parsing.

use std::borrow::Cow;
use std::cell::Cell;
use std::collections::HashSet;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;

use crate::authz::error::Invalid;
use crate::keys::key_set::Algorithm;

/// Tokens longer than this are refused before any parsing (Cognito's are about 1 KB).
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;
/// Key ids longer than this are refused: Cognito's are 44 characters.
const MAX_KID_BYTES: usize = 256;
/// JOSE headers longer than this (base64url) are refused before decoding: Cognito's are under 100
/// bytes, and a header is parsed before the signature is checked, so its size bounds that work.
pub const MAX_HEADER_BYTES: usize = 1024;
/// JOSE headers with more members than this are refused: Cognito's have two (`kid`, `alg`).
const MAX_HEADER_KEYS: usize = 16;

/// The token in an `authorization` header value: `Bearer <token>`, scheme case-insensitive.
pub fn bearer(authorization: &str) -> Result<&str, Invalid> {
    let (scheme, rest) = authorization.split_once(' ').ok_or(Invalid::NotBearer)?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(Invalid::NotBearer);
    }
    checked_token(rest.trim_matches(' '))
}

/// A token taken from anywhere (header or cookie): present, not oversized, JWT-shaped characters.
pub fn checked_token(token: &str) -> Result<&str, Invalid> {
    if token.is_empty() {
        return Err(Invalid::MissingToken);
    }
    if token.len() > MAX_TOKEN_BYTES {
        return Err(Invalid::Oversized);
    }
    // Every byte is looked at on every request (a warm decision included), so the test is written
    // to vectorise: range comparisons, no branch per byte, 64 bytes a step.
    if !token.as_bytes().chunks(64).all(|chunk| chunk.iter().fold(true, |ok, &b| ok & jwt_char(b))) {
        return Err(Invalid::Malformed);
    }
    Ok(token)
}

/// The characters of a compact JWS: base64url and `.`.
#[inline(always)]
fn jwt_char(b: u8) -> bool {
    b.is_ascii_lowercase() | b.is_ascii_uppercase() | b.is_ascii_digit() | (b == b'-') | (b == b'_') | (b == b'.')
}

/// A compact JWS split into its parts; nothing decoded yet.
#[derive(Debug, Clone, Copy)]
pub struct Jwt<'a> {
    header: &'a str,
    payload: &'a str,
    /// `header.payload`: the bytes the signature covers.
    pub signing_input: &'a str,
    /// The base64url signature.
    pub signature: &'a str,
}

impl<'a> Jwt<'a> {
    /// Splits `header.payload.signature`; exactly three non-empty parts.
    pub fn split(token: &'a str) -> Result<Self, Invalid> {
        let (signing_input, signature) = token.rsplit_once('.').ok_or(Invalid::Malformed)?;
        let (header, payload) = signing_input.split_once('.').ok_or(Invalid::Malformed)?;
        if header.is_empty() || payload.is_empty() || signature.is_empty() || payload.contains('.') {
            return Err(Invalid::Malformed);
        }
        Ok(Jwt { header, payload, signing_input, signature })
    }

    /// The JOSE header, checked for what this service accepts: RS256, a `kid`, no `crit`.
    /// `jku`, `x5u`, `jwk` and `x5c` are ignored on purpose: keys come only from the configured JWKS.
    pub fn header(&self) -> Result<Header, Invalid> {
        self.header_for(&[Algorithm::RS256]).map(|h| Header { kid: h.kid })
    }

    /// The JOSE header, for an issuer signing with `algs`: as [`Jwt::header`], and the `alg` and
    /// `typ` it names.
    pub fn header_for(&self, algs: &[Algorithm]) -> Result<JoseHeader, Invalid> {
        if self.header.len() > MAX_HEADER_BYTES {
            return Err(Invalid::BadHeader);
        }
        let bytes = decode_part(self.header)?;
        ensure_unique_keys_within(&bytes, MAX_HEADER_KEYS)?;
        let raw: RawHeader = serde_json::from_slice(&bytes).map_err(|_| Invalid::BadHeader)?;
        if raw.crit.0 {
            return Err(Invalid::CriticalHeader);
        }
        let alg = raw.alg.as_deref().and_then(Algorithm::from_name).filter(|a| algs.contains(a));
        let Some(alg) = alg else {
            return Err(Invalid::Algorithm);
        };
        match raw.kid {
            Some(kid) if !kid.is_empty() && kid.len() <= MAX_KID_BYTES => {
                let typ = match raw.typ {
                    Some(serde_json::Value::String(t)) => Some(t),
                    _ => None,
                };
                Ok(JoseHeader { kid, alg, typ })
            }
            Some(_) => Err(Invalid::BadHeader),
            None => Err(Invalid::MissingKeyId),
        }
    }

    /// The `iss` claim, read before the signature is checked, only to pick the issuer whose keys
    /// and rules then judge the token (a wrong choice fails their exact `iss` comparison). A
    /// repeated key is refused here, so this read and the later one cannot disagree.
    pub fn unverified_issuer(&self) -> Result<String, Invalid> {
        #[derive(Deserialize)]
        struct Iss {
            iss: Option<String>,
        }
        let bytes = decode_part(self.payload)?;
        ensure_unique_keys(&bytes)?;
        let iss: Iss = serde_json::from_slice(&bytes).map_err(|_| Invalid::BadClaims)?;
        iss.iss.ok_or(Invalid::WrongIssuer)
    }

    /// The claims as a JSON object (for claims mapped to headers), once the signature holds.
    pub fn claims_json(&self) -> Result<serde_json::Map<String, serde_json::Value>, Invalid> {
        serde_json::from_slice(&decode_part(self.payload)?).map_err(|_| Invalid::BadClaims)
    }

    /// The claims as a JSON object, refused when a key repeats (an OIDC issuer's claims, judged by
    /// name), once the signature holds.
    pub fn unique_claims_json(&self) -> Result<serde_json::Map<String, serde_json::Value>, Invalid> {
        let bytes = decode_part(self.payload)?;
        ensure_unique_keys(&bytes)?;
        serde_json::from_slice(&bytes).map_err(|_| Invalid::BadClaims)
    }

    /// The claims, decoded but not yet judged (the caller checks the signature first). One pass:
    /// the typed parse refuses a repeated key itself, at any depth.
    pub fn claims(&self) -> Result<RawClaims, Invalid> {
        let bytes = decode_part(self.payload)?;
        serde_json::from_slice(&bytes)
            .map_err(|e| if e.to_string().starts_with(DUPLICATE) { Invalid::DuplicateKey } else { Invalid::BadClaims })
    }
}

/// The header fields we act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// The key that signed it.
    pub kid: String,
}

/// The header fields an issuer with several algorithms acts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoseHeader {
    /// The key that signed it.
    pub kid: String,
    /// The algorithm it names (one the issuer accepts).
    pub alg: Algorithm,
    /// RFC 9068 access tokens say `at+jwt`.
    pub typ: Option<String>,
}

#[derive(Deserialize)]
struct RawHeader {
    alg: Option<String>,
    kid: Option<String>,
    /// Any JSON type: a Cognito issuer ignores it, as it always has; an OIDC issuer wants a string.
    typ: Option<serde_json::Value>,
    #[serde(default)]
    crit: Present,
}

/// True when the member is there at all, whatever its value (`"crit": null` included: only a
/// header without `crit` is one we understand).
#[derive(Default)]
struct Present(bool);

impl<'de> Deserialize<'de> for Present {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        serde::de::IgnoredAny::deserialize(d)?;
        Ok(Present(true))
    }
}

/// Cognito access-token claims as sent, before any rule is applied. Wrong JSON types fail here, and
/// so does a key repeated in any object (`Deserialize` below).
#[derive(Debug, Clone, Default)]
pub struct RawClaims {
    /// `iss`.
    pub iss: Option<String>,
    /// `sub`.
    pub sub: Option<String>,
    /// `token_use` (`access` or `id`).
    pub token_use: Option<String>,
    /// `client_id`.
    pub client_id: Option<String>,
    /// `username`.
    pub username: Option<String>,
    /// `exp`.
    pub exp: Option<u64>,
    /// `nbf`.
    pub nbf: Option<u64>,
    /// `iat`.
    pub iat: Option<u64>,
    /// `auth_time`.
    pub auth_time: Option<u64>,
    /// `jti`.
    pub jti: Option<String>,
    /// `origin_jti`.
    pub origin_jti: Option<String>,
    /// `scope`.
    pub scope: Option<String>,
    /// `cognito:groups`.
    pub groups: Option<Vec<String>>,
    /// `amr`: the methods the session used, where the pool records them (an array of strings, as
    /// RFC 8176 and Cognito write it; anything else refuses the token).
    pub amr: Option<Vec<String>>,
}

/// The claims object in one pass: known claims typed as they come, every other value walked for
/// repeated keys ([`ensure_unique_keys`]'s walker), and a repeated key refused at the top level too.
impl<'de> Deserialize<'de> for RawClaims {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(ClaimsVisitor)
    }
}

struct ClaimsVisitor;

impl<'de> serde::de::Visitor<'de> for ClaimsVisitor {
    type Value = RawClaims;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a json object of claims")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<RawClaims, A::Error> {
        let budget = Cell::new(usize::MAX);
        let mut raw = RawClaims::default();
        let mut seen: HashSet<Cow<'de, str>> = HashSet::new();
        while let Some(key) = map.next_key::<Cow<'de, str>>()? {
            match &*key {
                "iss" => raw.iss = map.next_value()?,
                "sub" => raw.sub = map.next_value()?,
                "token_use" => raw.token_use = map.next_value()?,
                "client_id" => raw.client_id = map.next_value()?,
                "username" => raw.username = map.next_value()?,
                "exp" => raw.exp = map.next_value()?,
                "nbf" => raw.nbf = map.next_value()?,
                "iat" => raw.iat = map.next_value()?,
                "auth_time" => raw.auth_time = map.next_value()?,
                "jti" => raw.jti = map.next_value()?,
                "origin_jti" => raw.origin_jti = map.next_value()?,
                "scope" => raw.scope = map.next_value()?,
                "cognito:groups" => raw.groups = map.next_value()?,
                "amr" => raw.amr = map.next_value()?,
                _ => map.next_value_seed(UniqueKeys(&budget))?,
            }
            if !seen.insert(key) {
                return Err(serde::de::Error::custom(DUPLICATE));
            }
        }
        Ok(raw)
    }
}

fn decode_part(part: &str) -> Result<Vec<u8>, Invalid> {
    // Strict: no padding, no trailing bits, url-safe alphabet only.
    URL_SAFE_NO_PAD.decode(part).map_err(|_| Invalid::Malformed)
}

/// Refuses JSON with a key repeated in any object: two parsers could otherwise disagree on which
/// value counts (RFC 7515 §4 asks for exactly this). Linear in the number of keys.
pub fn ensure_unique_keys(json: &[u8]) -> Result<(), Invalid> {
    ensure_unique_keys_within(json, usize::MAX)
}

/// As [`ensure_unique_keys`], and refuses more than `max_keys` object keys in all.
fn ensure_unique_keys_within(json: &[u8], max_keys: usize) -> Result<(), Invalid> {
    let budget = Cell::new(max_keys);
    let mut de = serde_json::Deserializer::from_slice(json);
    match serde::de::DeserializeSeed::deserialize(UniqueKeys(&budget), &mut de).and_then(|()| de.end()) {
        Ok(()) => Ok(()),
        Err(e) if e.to_string().starts_with(DUPLICATE) => Err(Invalid::DuplicateKey),
        Err(e) if e.to_string().starts_with(TOO_MANY) => Err(Invalid::BadHeader),
        Err(_) => Err(Invalid::BadClaims),
    }
}

const DUPLICATE: &str = "duplicate key";
const TOO_MANY: &str = "too many keys";

/// Walks any JSON value, failing on a repeated object key or when the key budget runs out.
#[derive(Clone, Copy)]
struct UniqueKeys<'b>(&'b Cell<usize>);

impl<'de> serde::de::DeserializeSeed<'de> for UniqueKeys<'_> {
    type Value = ();

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> serde::de::Visitor<'de> for UniqueKeys<'_> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("any json value")
    }
    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element_seed(self)?.is_some() {}
        Ok(())
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        // A hash set, so a header stuffed with keys costs linear time, not quadratic.
        let mut seen: HashSet<Cow<'de, str>> = HashSet::new();
        while let Some(key) = map.next_key::<Cow<'de, str>>()? {
            let left = self.0.get().checked_sub(1).ok_or_else(|| serde::de::Error::custom(TOO_MANY))?;
            self.0.set(left);
            if !seen.insert(key) {
                return Err(serde::de::Error::custom(DUPLICATE));
            }
            map.next_value_seed(self)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(s: &str) -> String {
        URL_SAFE_NO_PAD.encode(s)
    }

    fn jwt(header: &str, payload: &str) -> String {
        format!("{}.{}.c2ln", b64(header), b64(payload))
    }

    #[test]
    fn bearer_scheme_is_case_insensitive() {
        assert_eq!(bearer("bearer a.b.c"), Ok("a.b.c"));
        assert_eq!(bearer("BEARER a.b.c"), Ok("a.b.c"));
        assert_eq!(bearer("Bearer  a.b.c "), Ok("a.b.c"));
    }

    #[test]
    fn other_schemes_and_empty_tokens_are_refused() {
        assert_eq!(bearer("Basic YWxhZGRpbjpvcGVuc2VzYW1l"), Err(Invalid::NotBearer));
        assert_eq!(bearer("Bearer"), Err(Invalid::NotBearer));
        assert_eq!(bearer("Bearer "), Err(Invalid::MissingToken));
        assert_eq!(bearer("Bearer a.b.c,Bearer d.e.f"), Err(Invalid::Malformed));
    }

    #[test]
    fn only_base64url_and_dots_pass_at_any_position() {
        let allowed = |b: u8| b.is_ascii_alphanumeric() || b"-_.".contains(&b);
        // Every byte value, at the start, inside and across a 64-byte step, and at the end.
        for b in 0..=255u8 {
            for at in [0, 1, 63, 64, 65, 127, 199] {
                let mut token = vec![b'a'; 200];
                token[at] = b;
                let Ok(text) = std::str::from_utf8(&token) else { continue };
                let want = if allowed(b) { Ok(text) } else { Err(Invalid::Malformed) };
                assert_eq!(checked_token(text), want, "byte {b} at {at}");
            }
        }
        assert_eq!(checked_token("a.b.c\u{e9}"), Err(Invalid::Malformed), "non-ASCII");
    }

    #[test]
    fn oversized_token_is_refused_before_parsing() {
        let big = "a".repeat(MAX_TOKEN_BYTES + 1);
        assert_eq!(checked_token(&big), Err(Invalid::Oversized));
    }

    #[test]
    fn token_must_have_three_non_empty_parts() {
        for t in ["a.b", "a.b.c.d", ".b.c", "a..c", "a.b.", "abc"] {
            assert_eq!(Jwt::split(t).err(), Some(Invalid::Malformed), "{t}");
        }
    }

    #[test]
    fn header_requires_rs256_and_kid() {
        let h = |json: &str| Jwt::split(&jwt(json, "{}")).unwrap().header();
        assert_eq!(h(r#"{"alg":"RS256","kid":"k"}"#), Ok(Header { kid: "k".into() }));
        assert_eq!(h(r#"{"alg":"none","kid":"k"}"#), Err(Invalid::Algorithm));
        assert_eq!(h(r#"{"alg":"rs256","kid":"k"}"#), Err(Invalid::Algorithm));
        assert_eq!(h(r#"{"alg":"HS256","kid":"k"}"#), Err(Invalid::Algorithm));
        assert_eq!(h(r#"{"kid":"k"}"#), Err(Invalid::Algorithm));
        assert_eq!(h(r#"{"alg":"RS256"}"#), Err(Invalid::MissingKeyId));
        assert_eq!(h(r#"{"alg":"RS256","kid":""}"#), Err(Invalid::BadHeader));
        assert_eq!(h(r#"{"alg":"RS256","kid":7}"#), Err(Invalid::BadHeader));
        assert_eq!(h(r#"{"alg":"RS256","kid":"k","crit":["exp"]}"#), Err(Invalid::CriticalHeader));
        assert_eq!(h(r#"{"alg":"RS256","kid":"k","crit":null}"#), Err(Invalid::CriticalHeader), "present is enough");
        assert_eq!(h(r#"{"alg":"RS256","kid":"k","alg":"RS256"}"#), Err(Invalid::DuplicateKey));
        assert_eq!(h("[1]"), Err(Invalid::BadHeader));
    }

    #[test]
    fn an_oversized_or_crowded_header_is_refused_before_its_keys_are_read() {
        let h = |json: &str| Jwt::split(&jwt(json, "{}")).unwrap().header();
        let crowded: String = (0..15).map(|i| format!(",\"k{i}\":0")).collect();
        assert_eq!(h(&format!(r#"{{"alg":"RS256","kid":"k"{crowded}}}"#)), Err(Invalid::BadHeader), "17 keys");
        let fifteen: String = (0..14).map(|i| format!(",\"k{i}\":0")).collect();
        assert_eq!(h(&format!(r#"{{"alg":"RS256","kid":"k"{fifteen}}}"#)), Ok(Header { kid: "k".into() }), "16 keys");
        let long = "x".repeat(MAX_HEADER_BYTES);
        assert_eq!(h(&format!(r#"{{"alg":"RS256","kid":"k","x":"{long}"}}"#)), Err(Invalid::BadHeader));
    }

    #[test]
    fn duplicated_keys_are_found_at_any_depth() {
        assert_eq!(ensure_unique_keys(br#"{"a":1,"b":{"c":1,"c":2}}"#), Err(Invalid::DuplicateKey));
        assert_eq!(ensure_unique_keys(br#"{"a":[{"x":1,"x":1}]}"#), Err(Invalid::DuplicateKey));
        assert_eq!(ensure_unique_keys(br#"{"a":1,"b":{"a":1}}"#), Ok(()));
        assert_eq!(ensure_unique_keys(br#"{"a":1} x"#), Err(Invalid::BadClaims));
    }

    #[test]
    fn claims_with_a_repeated_key_are_refused_in_the_typed_parse() {
        let c = |json: &str| Jwt::split(&jwt(r#"{"alg":"RS256","kid":"k"}"#, json)).unwrap().claims();
        assert_eq!(c(r#"{"exp":1,"exp":2}"#).err(), Some(Invalid::DuplicateKey), "a known claim");
        assert_eq!(c(r#"{"x":1,"sub":"a","x":1}"#).err(), Some(Invalid::DuplicateKey), "an unknown claim");
        assert_eq!(c(r#"{"x":{"a":[{"b":1,"b":1}]}}"#).err(), Some(Invalid::DuplicateKey), "deep inside one");
        assert_eq!(c(r#"{"x":{"a":1},"y":{"a":1}}"#).map(|r| r.exp), Ok(None), "same key in two objects");
        assert_eq!(c(r#"{"exp":1} x"#).err(), Some(Invalid::BadClaims), "trailing bytes");
        assert_eq!(c(r#"["iss","sub"]"#).err(), Some(Invalid::BadClaims), "not an object");
        let raw = c(r#"{"exp":5,"cognito:groups":["a"],"scope":null,"other":[1,{"k":true}]}"#).unwrap();
        assert_eq!((raw.exp, raw.groups, raw.scope), (Some(5), Some(vec!["a".to_owned()]), None));
    }

    #[test]
    fn claims_with_wrong_types_are_refused() {
        let c = |json: &str| Jwt::split(&jwt(r#"{"alg":"RS256","kid":"k"}"#, json)).unwrap().claims();
        assert!(c(r#"{"exp":1700000000,"sub":"x"}"#).is_ok());
        assert_eq!(c(r#"{"exp":"1700000000"}"#).err(), Some(Invalid::BadClaims));
        assert_eq!(c(r#"{"exp":1.5}"#).err(), Some(Invalid::BadClaims));
        assert_eq!(c(r#"{"exp":-1}"#).err(), Some(Invalid::BadClaims));
        assert_eq!(c(r#"{"exp":1e400}"#).err(), Some(Invalid::BadClaims));
        assert_eq!(c(r#"{"exp":99999999999999999999999}"#).err(), Some(Invalid::BadClaims));
        assert_eq!(c(r#"{"token_use":["access"]}"#).err(), Some(Invalid::BadClaims));
        assert_eq!(c(r#"{"cognito:groups":"admin"}"#).err(), Some(Invalid::BadClaims));
    }

    #[test]
    fn padded_or_non_url_safe_base64_is_refused() {
        let header = format!("{}=", b64(r#"{"alg":"RS256","kid":"k"}"#));
        assert_eq!(Jwt::split(&format!("{header}.e30.c2ln")).unwrap().header(), Err(Invalid::Malformed));
        assert_eq!(checked_token("ab+c.d/e.f"), Err(Invalid::Malformed));
    }
}
