//! Where key documents come from: the `KeySource` trait (the network edge, so tests need no
//! network), its HTTP(S) fetcher with same-origin redirects only, and why a fetch fails.

use futures_util::future::BoxFuture;

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
            let mut response = self.client.get(self.url.clone()).send().await.map_err(|_| FetchError::Transport)?;
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
