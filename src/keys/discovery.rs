//! OpenID discovery for an OIDC issuer configured without `jwks-url`: its
//! `{issuer}/.well-known/openid-configuration` names the `jwks_uri`. Read on the first key fetch,
//! so start-up retries it with the keys' own backoff, and kept once it has answered.

use std::sync::OnceLock;

use futures_util::future::BoxFuture;
use serde::Deserialize;

use crate::keys::key_store::{FetchError, HttpKeySource, KeySource};

/// Why a discovery document cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DiscoveryError {
    /// Discovery document is not valid json or has no jwks_uri.
    #[error("discovery document is not valid json or has no jwks_uri")]
    NotADocument,
    /// Discovery document names another issuer than the configured one.
    #[error("discovery document names another issuer than the configured one")]
    OtherIssuer,
    /// Discovery document's jwks_uri must be https, or http on loopback.
    #[error("discovery document's jwks_uri must be https, or http on loopback")]
    InsecureJwksUri,
}

#[derive(Deserialize)]
struct Document {
    issuer: String,
    jwks_uri: String,
}

/// The `jwks_uri` of a discovery document, which must name exactly `issuer` (OpenID Connect
/// Discovery §4.3: otherwise a document could send us to someone else's keys).
pub fn jwks_uri(document: &[u8], issuer: &str) -> Result<reqwest::Url, DiscoveryError> {
    let doc: Document = serde_json::from_slice(document).map_err(|_| DiscoveryError::NotADocument)?;
    if doc.issuer != issuer {
        return Err(DiscoveryError::OtherIssuer);
    }
    crate::config::loopback::https_unless_loopback(&doc.jwks_uri).map_err(|_| DiscoveryError::InsecureJwksUri)
}

/// Keys found through discovery: the document first (until it has answered), then the key set.
#[derive(Debug)]
pub struct DiscoveredKeySource {
    client: reqwest::Client,
    issuer: String,
    document: HttpKeySource,
    keys: OnceLock<HttpKeySource>,
}

impl DiscoveredKeySource {
    /// Keys of `issuer`, found through its discovery document at `discovery`.
    pub fn new(client: reqwest::Client, issuer: String, discovery: reqwest::Url) -> DiscoveredKeySource {
        let document = HttpKeySource::new(client.clone(), discovery);
        DiscoveredKeySource { client, issuer, document, keys: OnceLock::new() }
    }
}

impl KeySource for DiscoveredKeySource {
    fn fetch(&self) -> BoxFuture<'_, Result<Vec<u8>, FetchError>> {
        Box::pin(async move {
            if self.keys.get().is_none() {
                let document = self.document.fetch().await?;
                let url = jwks_uri(&document, &self.issuer)?;
                // The document is the issuer's to write: credentials in its URL stay out of the log.
                let jwks = crate::config::secret::without_userinfo(url.as_str());
                tracing::info!(issuer = %self.issuer, %jwks, "discovery named the signing keys");
                let _ = self.keys.set(HttpKeySource::new(self.client.clone(), url));
            }
            self.keys.get().expect("set above").fetch().await
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_document_must_name_the_configured_issuer_and_a_safe_jwks_uri() {
        let doc = |iss: &str, jwks: &str| format!(r#"{{"issuer":"{iss}","jwks_uri":"{jwks}"}}"#).into_bytes();
        let iss = "https://idp.example.com/realms/acme";
        assert_eq!(
            jwks_uri(&doc(iss, "https://idp.example.com/certs"), iss).expect("valid").as_str(),
            "https://idp.example.com/certs"
        );
        assert_eq!(
            jwks_uri(&doc(&format!("{iss}/"), "https://idp.example.com/certs"), iss),
            Err(DiscoveryError::OtherIssuer)
        );
        assert_eq!(jwks_uri(&doc(iss, "http://idp.example.com/certs"), iss), Err(DiscoveryError::InsecureJwksUri));
        assert_eq!(jwks_uri(b"{}", iss), Err(DiscoveryError::NotADocument));
    }
}
