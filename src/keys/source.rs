//! Where key documents come from: the `KeySource` trait (the network edge, so tests need no
//! network), its HTTP(S) fetcher with same-origin redirects only, and why a fetch fails.

use futures_util::future::BoxFuture;
use tracing::Instrument as _;

/// Where JWK Set documents come from: the network edge, a trait so tests need no network.
pub trait KeySource: Send + Sync + 'static {
    /// One JWK Set document, or why not.
    fn fetch(&self) -> BoxFuture<'_, Result<Vec<u8>, FetchError>>;
}

/// Why a key fetch failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FetchError {
    /// Jwks endpoint could not be reached or timed out.
    #[error("jwks endpoint could not be reached or timed out")]
    Transport,
    /// The JWKS endpoint answered this HTTP status.
    #[error("jwks endpoint answered http {0}")]
    Status(u16),
    /// Jwks document is larger than 1 MiB.
    #[error("jwks document is larger than 1 MiB")]
    TooLarge,
    /// The document is not a usable JWK Set.
    #[error(transparent)]
    Document(#[from] crate::keys::key_set::JwksError),
    /// The discovery document is unusable.
    #[error(transparent)]
    Discovery(#[from] DiscoveryError),
}

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

/// The redirects a key fetch follows: within the URL's own origin (scheme, host and port) only, so
/// a redirect can neither downgrade https to plain http nor hand the fetch to another host.
pub fn same_origin_redirects() -> reqwest::redirect::Policy {
    reqwest::redirect::Policy::custom(|attempt| {
        let next = attempt.url();
        let origin =
            |u: &reqwest::Url| (u.scheme().to_owned(), u.host_str().map(str::to_owned), u.port_or_known_default());
        let same = attempt.previous().first().is_some_and(|first| origin(first) == origin(next));
        if same && attempt.previous().len() <= 5 { attempt.follow() } else { attempt.stop() }
    })
}

/// Fetches a JWK Set over HTTP(S).
#[derive(Debug)]
pub struct HttpKeySource {
    client: reqwest::Client,
    url: reqwest::Url,
}

const MAX_JWKS_BYTES: usize = 1 << 20;

impl HttpKeySource {
    /// Fetches `url` with `client`.
    pub fn new(client: reqwest::Client, url: reqwest::Url) -> HttpKeySource {
        HttpKeySource { client, url }
    }
}

impl KeySource for HttpKeySource {
    fn fetch(&self) -> BoxFuture<'_, Result<Vec<u8>, FetchError>> {
        Box::pin(async move {
            // The host only: a JWKS URL may carry credentials or a query.
            let span = crate::out_span!("jwks fetch", server.address = self.url.host_str().unwrap_or(""));
            let mut response =
                self.client.get(self.url.clone()).send().instrument(span).await.map_err(|_| FetchError::Transport)?;
            if !response.status().is_success() {
                return Err(FetchError::Status(response.status().as_u16()));
            }
            let mut body = Vec::new();
            while let Some(chunk) = response.chunk().await.map_err(|_| FetchError::Transport)? {
                if body.len() + chunk.len() > MAX_JWKS_BYTES {
                    return Err(FetchError::TooLarge);
                }
                body.extend_from_slice(&chunk);
            }
            Ok(body)
        })
    }
}

/// A replicated pool's keys: every region's JWK Set, fetched each time and merged into one. All
/// must answer: a set missing one region's keys would make that region's tokens look signed by an
/// unknown key (401) rather than unverifiable for now (503). Keys that two regions both publish
/// appear once. Each region's document is bounded (1 MiB), and so is the merge.
pub struct RegionalKeySource {
    regions: Vec<std::sync::Arc<dyn KeySource>>,
}

crate::opaque_debug!(RegionalKeySource);

impl RegionalKeySource {
    /// Merges the sets of `regions` (the primary's first).
    pub fn new(regions: Vec<std::sync::Arc<dyn KeySource>>) -> RegionalKeySource {
        RegionalKeySource { regions }
    }
}

impl KeySource for RegionalKeySource {
    fn fetch(&self) -> BoxFuture<'_, Result<Vec<u8>, FetchError>> {
        Box::pin(async move {
            let fetched = futures_util::future::join_all(self.regions.iter().map(|r| r.fetch())).await;
            let mut keys: Vec<serde_json::Value> = Vec::new();
            for document in fetched {
                let document: serde_json::Value = serde_json::from_slice(&document?)
                    .map_err(|_| FetchError::Document(crate::keys::key_set::JwksError::NotJson))?;
                let Some(serde_json::Value::Array(found)) = document.get("keys") else {
                    return Err(FetchError::Document(crate::keys::key_set::JwksError::NotJson));
                };
                for key in found {
                    if !keys.contains(key) {
                        keys.push(key.clone());
                    }
                }
            }
            Ok(serde_json::to_vec(&serde_json::json!({ "keys": keys })).expect("json serialises"))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    struct Fixed(Result<&'static str, FetchError>);

    impl KeySource for Fixed {
        fn fetch(&self) -> BoxFuture<'_, Result<Vec<u8>, FetchError>> {
            let answer = self.0.clone().map(|s| s.as_bytes().to_vec());
            Box::pin(async move { answer })
        }
    }

    fn regions(answers: Vec<Result<&'static str, FetchError>>) -> RegionalKeySource {
        RegionalKeySource::new(answers.into_iter().map(|a| Arc::new(Fixed(a)) as Arc<dyn KeySource>).collect())
    }

    #[tokio::test]
    async fn every_regions_keys_are_merged_once_and_one_region_failing_fails_the_fetch() {
        let primary = r#"{"keys":[{"kid":"a","n":"1"},{"kid":"b","n":"2"}]}"#;
        let replica = r#"{"keys":[{"kid":"b","n":"2"},{"kid":"c","n":"3"}]}"#;
        let merged = regions(vec![Ok(primary), Ok(replica)]).fetch().await.expect("both answered");
        let merged: serde_json::Value = serde_json::from_slice(&merged).unwrap();
        let kids: Vec<&str> = merged["keys"].as_array().unwrap().iter().map(|k| k["kid"].as_str().unwrap()).collect();
        assert_eq!(kids, ["a", "b", "c"]);
        let down = regions(vec![Ok(primary), Err(FetchError::Status(503))]).fetch().await;
        assert_eq!(down, Err(FetchError::Status(503)), "a set without a region's keys is never served");
        let junk = regions(vec![Ok(primary), Ok(r#"{"no":"keys"}"#)]).fetch().await;
        assert!(junk.is_err());
    }
}
