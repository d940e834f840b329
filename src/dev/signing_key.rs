//! An RSA signing key that mints tokens: the dev issuer's, and those of the tests, benchmarks and
//! fuzz targets, which also forge odd headers with [`SigningKey::sign_raw`]. `serve` never signs:
//! nothing on its decision path uses this module.

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rsa::{KeyPair, KeySize, PublicKeyComponents};
use aws_lc_rs::signature::{KeyPair as _, RSA_PKCS1_SHA256};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// An RSA signing key and its `kid`.
pub struct SigningKey {
    pair: KeyPair,
    kid: String,
}

impl SigningKey {
    /// A fresh 2048-bit key.
    pub fn generate(kid: &str) -> anyhow::Result<SigningKey> {
        let pair = KeyPair::generate(KeySize::Rsa2048).map_err(|_| anyhow::anyhow!("rsa key generation failed"))?;
        Ok(SigningKey { pair, kid: kid.to_owned() })
    }

    /// The key stored as PKCS#8 DER.
    pub fn from_pkcs8(der: &[u8], kid: &str) -> anyhow::Result<SigningKey> {
        let pair = KeyPair::from_pkcs8(der).map_err(|e| anyhow::anyhow!("stored dev key is unusable: {e}"))?;
        Ok(SigningKey { pair, kid: kid.to_owned() })
    }

    /// The key as PKCS#8 DER, for storing.
    pub fn pkcs8(&self) -> anyhow::Result<Vec<u8>> {
        let der = self.pair.as_der().map_err(|_| anyhow::anyhow!("rsa key encoding failed"))?;
        Ok(der.as_ref().to_vec())
    }

    /// Its `kid`.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The public key as one JWK (`kty` RSA, `use` sig, `alg` RS256).
    pub fn jwk(&self) -> serde_json::Value {
        let public = PublicKeyComponents::<Vec<u8>>::from(self.pair.public_key());
        serde_json::json!({
            "kty": "RSA", "use": "sig", "alg": "RS256", "kid": self.kid,
            "n": URL_SAFE_NO_PAD.encode(&public.n), "e": URL_SAFE_NO_PAD.encode(&public.e),
        })
    }

    /// Signs raw JSON header and payload with RS256, whatever they say (tests forge odd headers).
    pub fn sign_raw(&self, header_json: &str, payload_json: &str) -> String {
        let input = format!("{}.{}", URL_SAFE_NO_PAD.encode(header_json), URL_SAFE_NO_PAD.encode(payload_json));
        let mut signature = vec![0; self.pair.public_modulus_len()];
        self.pair
            .sign(&RSA_PKCS1_SHA256, &aws_lc_rs::rand::SystemRandom::new(), input.as_bytes(), &mut signature)
            .expect("rsa signing with a valid key");
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature))
    }

    /// True when `signature` is this key's RS256 signature of `input`.
    pub fn verifies(&self, input: &[u8], signature: &[u8]) -> bool {
        use aws_lc_rs::signature::{RSA_PKCS1_2048_8192_SHA256, UnparsedPublicKey};
        let public = UnparsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, self.pair.public_key().as_ref());
        public.verify(input, signature).is_ok()
    }

    /// Signs `claims` with a standard RS256 header naming this key.
    pub fn sign(&self, claims: &serde_json::Value) -> String {
        let header = serde_json::json!({"alg": "RS256", "kid": self.kid, "typ": "JWT"});
        self.sign_raw(&header.to_string(), &claims.to_string())
    }
}

/// The `kid` only: the key itself is never printed.
impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey").field("kid", &self.kid).finish_non_exhaustive()
    }
}
