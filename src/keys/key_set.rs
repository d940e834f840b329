//! A key set built from a JWK Set document: pure, no I/O.
//!
//! Only keys this service can use are kept: `kty` RSA, `use` sig, `alg` RS256 or absent, a `kid`,
//! and a modulus of 2048 to 8192 bits. Anything else in the document is skipped, not an error,
//! so a provider adding an EC key does not take the service down. An OIDC issuer that lists more
//! algorithms (`PS256`, `ES256`) also keeps the RSA and P-256 keys those need, each key usable only
//! for the algorithms its JWK allows.

use std::collections::HashMap;
use std::sync::Arc;

use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED, ParsedPublicKey, RSA_PKCS1_2048_8192_SHA256, RSA_PSS_2048_8192_SHA256,
    RsaPublicKeyComponents,
};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;

use crate::authz::error::Invalid;

/// Why a JWK Set document cannot be used; the previous keys stay in force.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwksError {
    /// Jwks document is not valid json.
    #[error("jwks document is not valid json")]
    NotJson,
    /// Jwks document has no usable rs256 signing key.
    #[error("jwks document has no usable rs256 signing key")]
    NoUsableKey,
}

/// A JWS signature algorithm this service verifies. Never `none`, never HMAC: a shared secret
/// cannot come from a public key set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Deserialize)]
pub enum Algorithm {
    /// RSASSA-PKCS1-v1_5 with SHA-256.
    RS256,
    /// RSASSA-PSS with SHA-256.
    PS256,
    /// ECDSA on P-256 with SHA-256.
    ES256,
}

impl Algorithm {
    /// The `alg` header value.
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::RS256 => "RS256",
            Algorithm::PS256 => "PS256",
            Algorithm::ES256 => "ES256",
        }
    }

    /// The algorithm a JOSE `alg` names, if it is one we verify.
    pub fn from_name(name: &str) -> Option<Algorithm> {
        [Algorithm::RS256, Algorithm::PS256, Algorithm::ES256].into_iter().find(|a| a.name() == name)
    }
}

/// One verification key, parsed once (aws-lc-rs, the backend jsonwebtoken itself uses): verifying
/// through `jsonwebtoken::crypto::verify` rebuilt the RSA key from `n` and `e` on every call, a
/// large share of a cold check (see BENCHMARKS.md).
pub struct Key {
    /// Its `kid`: a cache entry keeps only the key, and finds its `kid` here.
    kid: Box<str>,
    /// RS256 (PKCS#1 v1.5), the only algorithm of Cognito keys.
    parsed: Option<ParsedPublicKey>,
    /// The same RSA key for PS256, or a P-256 key for ES256, when the issuer accepts those.
    other: Option<(Algorithm, ParsedPublicKey)>,
    /// `n` and `e` (or `x` and `y`), to tell a re-fetched key from a changed one.
    components: (Vec<u8>, Vec<u8>),
}

crate::opaque_debug!(Key);

impl Key {
    /// Builds a key from base64url `n` and `e`.
    fn from_components(kid: &str, n: &str, e: &str) -> Option<Key> {
        let n_bytes = URL_SAFE_NO_PAD.decode(n).ok()?;
        let bits = n_bytes.iter().skip_while(|b| **b == 0).count() * 8;
        if !(2048..=8192).contains(&bits) {
            return None;
        }
        let e_bytes = URL_SAFE_NO_PAD.decode(e).ok()?;
        if e_bytes.is_empty() || e_bytes.len() > 8 {
            return None;
        }
        let parsed = RsaPublicKeyComponents { n: &n_bytes, e: &e_bytes }
            .to_parsed_public_key(&RSA_PKCS1_2048_8192_SHA256)
            .ok()?;
        Some(Key { kid: kid.into(), parsed: Some(parsed), other: None, components: (n_bytes, e_bytes) })
    }

    /// An RSA key for the algorithms in `algs` that its JWK `alg` (if any) allows.
    fn rsa(kid: &str, n: &str, e: &str, jwk_alg: Option<Algorithm>, algs: &[Algorithm]) -> Option<Key> {
        let allowed = |a: Algorithm| algs.contains(&a) && jwk_alg.is_none_or(|j| j == a);
        let mut key = Key::from_components(kid, n, e)?;
        if allowed(Algorithm::PS256) {
            let (n, e) = &key.components;
            let pss = RsaPublicKeyComponents { n, e }.to_parsed_public_key(&RSA_PSS_2048_8192_SHA256).ok()?;
            key.other = Some((Algorithm::PS256, pss));
        }
        if !allowed(Algorithm::RS256) {
            key.parsed = None;
        }
        (key.parsed.is_some() || key.other.is_some()).then_some(key)
    }

    /// A P-256 key (ES256) from base64url `x` and `y`.
    fn p256(kid: &str, x: &str, y: &str) -> Option<Key> {
        let (x, y) = (URL_SAFE_NO_PAD.decode(x).ok()?, URL_SAFE_NO_PAD.decode(y).ok()?);
        if x.len() != 32 || y.len() != 32 {
            return None;
        }
        let point = [&[4u8][..], &x, &y].concat();
        let parsed = ParsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, &point).ok()?;
        Some(Key { kid: kid.into(), parsed: None, other: Some((Algorithm::ES256, parsed)), components: (x, y) })
    }

    /// Its `kid`.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// Checks an RS256 (RSASSA-PKCS1-v1_5 with SHA-256) signature over `signing_input`.
    pub fn verify(&self, signing_input: &str, signature: &str) -> Result<(), Invalid> {
        self.verify_with(Algorithm::RS256, signing_input, signature)
    }

    /// Checks a signature made with `alg`; a key not usable for `alg` refuses it.
    pub fn verify_with(&self, alg: Algorithm, signing_input: &str, signature: &str) -> Result<(), Invalid> {
        let parsed = match (alg, &self.parsed, &self.other) {
            (Algorithm::RS256, Some(parsed), _) => parsed,
            (_, _, Some((other, parsed))) if *other == alg => parsed,
            _ => return Err(Invalid::Algorithm),
        };
        let signature = URL_SAFE_NO_PAD.decode(signature).map_err(|_| Invalid::BadSignature)?;
        parsed.verify_sig(signing_input.as_bytes(), &signature).map_err(|_| Invalid::BadSignature)
    }
}

/// The usable keys of one JWK Set, by `kid`.
#[derive(Default, Clone)]
pub struct KeySet {
    keys: HashMap<String, Arc<Key>>,
}

crate::opaque_debug!(KeySet);

impl KeySet {
    /// Parses a JWK Set document.
    pub fn from_jwks(document: &[u8]) -> Result<KeySet, JwksError> {
        let doc: JwkSet = serde_json::from_slice(document).map_err(|_| JwksError::NotJson)?;
        let mut keys = HashMap::new();
        for jwk in doc.keys {
            let usable = jwk.kty.as_deref() == Some("RSA")
                && jwk.use_.as_deref() == Some("sig")
                && matches!(jwk.alg.as_deref(), None | Some("RS256"));
            let (Some(kid), Some(n), Some(e)) = (jwk.kid, jwk.n, jwk.e) else {
                continue;
            };
            if !usable || kid.is_empty() {
                continue;
            }
            if let Some(key) = Key::from_components(&kid, &n, &e) {
                keys.insert(kid, Arc::new(key));
            }
        }
        if keys.is_empty() {
            return Err(JwksError::NoUsableKey);
        }
        Ok(KeySet { keys })
    }

    /// Parses a JWK Set document for an OIDC issuer accepting `algs`: as [`KeySet::from_jwks`],
    /// with the keys `algs` need, and `use` may be absent (it is optional in RFC 7517).
    pub fn from_jwks_for(document: &[u8], algs: &[Algorithm]) -> Result<KeySet, JwksError> {
        let doc: JwkSet = serde_json::from_slice(document).map_err(|_| JwksError::NotJson)?;
        let mut keys = HashMap::new();
        for jwk in doc.keys {
            let Some(kid) = jwk.kid.filter(|k| !k.is_empty()) else { continue };
            if !matches!(jwk.use_.as_deref(), None | Some("sig")) {
                continue;
            }
            let jwk_alg = match jwk.alg.as_deref() {
                None => None,
                Some(name) => match Algorithm::from_name(name) {
                    Some(alg) if algs.contains(&alg) => Some(alg),
                    _ => continue,
                },
            };
            let key = match (jwk.kty.as_deref(), jwk.crv.as_deref()) {
                (Some("RSA"), _) => jwk.n.zip(jwk.e).and_then(|(n, e)| Key::rsa(&kid, &n, &e, jwk_alg, algs)),
                (Some("EC"), Some("P-256")) if algs.contains(&Algorithm::ES256) => {
                    jwk.x.zip(jwk.y).and_then(|(x, y)| Key::p256(&kid, &x, &y))
                }
                _ => None,
            };
            if let Some(key) = key {
                keys.insert(kid, Arc::new(key));
            }
        }
        if keys.is_empty() {
            return Err(JwksError::NoUsableKey);
        }
        Ok(KeySet { keys })
    }

    /// The key named `kid`.
    pub fn get(&self, kid: &str) -> Option<&Arc<Key>> {
        self.keys.get(kid)
    }

    /// Keeps `previous`'s instance of every key that is unchanged (same `kid`, same `n` and `e`),
    /// so what was verified with it stays recognisably verified with the key in force.
    pub fn keep_unchanged(&mut self, previous: &KeySet) {
        for (kid, key) in self.keys.iter_mut() {
            if let Some(old) = previous.keys.get(kid)
                && old.components == key.components
            {
                *key = old.clone();
            }
        }
    }

    /// How many keys.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// True without any key.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

#[derive(Deserialize)]
struct JwkSet {
    keys: Vec<Jwk>,
}

/// Fields of a JWK we read; each is optional here so that one odd key does not spoil the set.
#[derive(Deserialize)]
struct Jwk {
    kty: Option<String>,
    #[serde(rename = "use")]
    use_: Option<String>,
    alg: Option<String>,
    kid: Option<String>,
    n: Option<String>,
    e: Option<String>,
    crv: Option<String>,
    x: Option<String>,
    y: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n2048() -> String {
        let mut n = vec![0xC1u8; 256];
        n[255] |= 1;
        URL_SAFE_NO_PAD.encode(n)
    }

    fn doc(keys: &str) -> Vec<u8> {
        format!(r#"{{"keys":[{keys}]}}"#).into_bytes()
    }

    #[test]
    fn rsa_signing_keys_are_kept() {
        let set = KeySet::from_jwks(&doc(&format!(
            r#"{{"kty":"RSA","use":"sig","alg":"RS256","kid":"a","n":"{}","e":"AQAB"}},
               {{"kty":"RSA","use":"sig","kid":"b","n":"{}","e":"AQAB"}}"#,
            n2048(),
            n2048()
        )))
        .expect("two usable keys");
        assert_eq!(set.len(), 2);
        assert!(set.get("a").is_some() && set.get("b").is_some());
    }

    #[test]
    fn unusable_keys_are_skipped() {
        let n = n2048();
        let set = KeySet::from_jwks(&doc(&format!(
            r#"{{"kty":"RSA","use":"enc","kid":"enc","n":"{n}","e":"AQAB"}},
               {{"kty":"RSA","kid":"nouse","n":"{n}","e":"AQAB"}},
               {{"kty":"RSA","use":"sig","alg":"RS512","kid":"rs512","n":"{n}","e":"AQAB"}},
               {{"kty":"EC","use":"sig","kid":"ec","crv":"P-256","x":"AA","y":"AA"}},
               {{"kty":"RSA","use":"sig","kid":"small","n":"AQAB","e":"AQAB"}},
               {{"kty":"RSA","use":"sig","n":"{n}","e":"AQAB"}},
               {{"kty":"RSA","use":"sig","kid":"ok","n":"{n}","e":"AQAB"}}"#
        )))
        .expect("one usable key");
        assert_eq!(set.len(), 1);
        assert!(set.get("ok").is_some());
    }

    #[test]
    fn an_oidc_issuer_keeps_the_keys_its_algorithms_need_and_each_verifies_only_its_own() {
        use aws_lc_rs::rand::SystemRandom;
        use aws_lc_rs::signature::{
            ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair, RSA_PSS_SHA256, RsaKeyPair,
        };
        let rng = SystemRandom::new();
        let ec = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).unwrap();
        let point = ec.public_key().as_ref();
        let (x, y) = (URL_SAFE_NO_PAD.encode(&point[1..33]), URL_SAFE_NO_PAD.encode(&point[33..]));
        let rsa = RsaKeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).unwrap();
        let public = aws_lc_rs::rsa::PublicKeyComponents::<Vec<u8>>::from(rsa.public_key());
        let (n, e) = (URL_SAFE_NO_PAD.encode(&public.n), URL_SAFE_NO_PAD.encode(&public.e));
        let document = doc(&format!(
            r#"{{"kty":"EC","crv":"P-256","kid":"ec","x":"{x}","y":"{y}"}},
               {{"kty":"RSA","kid":"rsa","n":"{n}","e":"{e}"}},
               {{"kty":"oct","kid":"hmac","k":"c2VjcmV0"}}"#
        ));
        let input = "header.payload";
        let es256 = URL_SAFE_NO_PAD.encode(ec.sign(&rng, input.as_bytes()).unwrap().as_ref());
        let mut pss = vec![0; rsa.public_modulus_len()];
        rsa.sign(&RSA_PSS_SHA256, &rng, input.as_bytes(), &mut pss).unwrap();
        let ps256 = URL_SAFE_NO_PAD.encode(&pss);

        let set = KeySet::from_jwks_for(&document, &[Algorithm::ES256, Algorithm::PS256]).expect("two usable keys");
        assert_eq!(set.len(), 2, "no HMAC key, ever");
        let (ec_key, rsa_key) = (set.get("ec").unwrap(), set.get("rsa").unwrap());
        assert_eq!(ec_key.verify_with(Algorithm::ES256, input, &es256), Ok(()));
        assert_eq!(rsa_key.verify_with(Algorithm::PS256, input, &ps256), Ok(()));
        assert_eq!(ec_key.verify_with(Algorithm::ES256, "header.other", &es256), Err(Invalid::BadSignature));
        assert_eq!(rsa_key.verify_with(Algorithm::ES256, input, &es256), Err(Invalid::Algorithm));
        assert_eq!(ec_key.verify_with(Algorithm::PS256, input, &ps256), Err(Invalid::Algorithm));
        assert_eq!(rsa_key.verify_with(Algorithm::RS256, input, &ps256), Err(Invalid::Algorithm), "RS256 not listed");
        // RS256 alone (the default): the EC key is skipped, the RSA key kept without `use`.
        let rs = KeySet::from_jwks_for(&document, &[Algorithm::RS256]).expect("the RSA key");
        assert!(rs.get("ec").is_none() && rs.get("rsa").is_some());
        // A Cognito issuer (`from_jwks`) still wants `use: sig`.
        assert_eq!(KeySet::from_jwks(&document).err(), Some(JwksError::NoUsableKey));
    }

    #[test]
    fn a_document_without_usable_keys_is_an_error() {
        assert_eq!(KeySet::from_jwks(b"not json").err(), Some(JwksError::NotJson));
        assert_eq!(KeySet::from_jwks(b"{}").err(), Some(JwksError::NotJson));
        assert_eq!(KeySet::from_jwks(&doc("")).err(), Some(JwksError::NoUsableKey));
    }
}
