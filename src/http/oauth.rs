//! The OAuth 2.0 endpoints of the Cognito hosted UI (or any RFC 6749 server): token exchange,
//! refresh, userinfo and refresh-token revocation, as a confidential client (HTTP Basic).

use std::time::Duration;
use tracing::Instrument as _;

use serde::Deserialize;

pub use crate::secret::Secret;

/// Where the endpoints are.
#[derive(Clone, Default)]
pub struct Endpoints {
    /// `/oauth2/token`: code and refresh grants.
    pub token: Option<reqwest::Url>,
    /// `/oauth2/userInfo`.
    pub userinfo: Option<reqwest::Url>,
    /// `/oauth2/revoke`: refresh-token revocation.
    pub revoke: Option<reqwest::Url>,
    /// The hosted UI's `/logout`, which the browser visits to end the Cognito session.
    pub logout: Option<reqwest::Url>,
}

/// Each URL without its userinfo.
impl std::fmt::Debug for Endpoints {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        fn shown(url: &Option<reqwest::Url>) -> Option<crate::secret::ShownUrl<'_>> {
            url.as_ref().map(|u| crate::secret::ShownUrl(u.as_str()))
        }
        f.debug_struct("Endpoints")
            .field("token", &shown(&self.token))
            .field("userinfo", &shown(&self.userinfo))
            .field("revoke", &shown(&self.revoke))
            .field("logout", &shown(&self.logout))
            .finish()
    }
}

impl Endpoints {
    /// The Cognito hosted-UI paths under a domain such as `https://auth.example.com`.
    pub fn under(domain: &reqwest::Url) -> Endpoints {
        let at = |path: &str| domain.join(path).ok();
        Endpoints {
            token: at("/oauth2/token"),
            userinfo: at("/oauth2/userInfo"),
            revoke: at("/oauth2/revoke"),
            logout: at("/logout"),
        }
    }
}

/// The confidential client of the HTTP module.
#[derive(Debug, Clone)]
pub struct OAuthConfig {
    /// Cognito's OAuth endpoints.
    pub endpoints: Endpoints,
    /// The app client that exchanges codes.
    pub client_id: String,
    /// Its secret, for a confidential client.
    pub secret: Option<Secret>,
}

/// What the token endpoint gives.
#[derive(Debug, Clone, Deserialize)]
pub struct Tokens {
    /// The access token.
    pub access_token: String,
    /// A refresh token (not on every refresh grant).
    #[serde(default)]
    pub refresh_token: Option<String>,
    /// The access token's lifetime in seconds.
    #[serde(default)]
    pub expires_in: Option<u64>,
}

/// Why an endpoint call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OAuthError {
    /// The grant or token was refused (`invalid_grant`, or 401 from userinfo): the caller's fault.
    #[error("the authorization server refused the grant or token")]
    Refused,
    /// The server answered another error (`invalid_client`, `unsupported_token_type`, 5xx).
    #[error("the authorization server answered an error")]
    Upstream,
    /// No answer within the deadline.
    #[error("the authorization server could not be reached")]
    Unreachable,
    /// The endpoint was not configured.
    #[error("this endpoint is not configured")]
    NotConfigured,
}

/// A confidential OAuth client.
#[derive(Clone, Debug)]
pub struct OAuthClient {
    http: reqwest::Client,
    endpoints: Endpoints,
    client_id: String,
    secret: Option<Secret>,
}

#[derive(Deserialize)]
struct ErrorBody {
    error: Option<String>,
}

impl OAuthClient {
    /// A client of `endpoints`; each call takes at most `timeout`; redirects are not followed.
    pub fn new(endpoints: Endpoints, client_id: String, secret: Option<Secret>, timeout: Duration) -> OAuthClient {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("an http client with rustls");
        OAuthClient { http, endpoints, client_id, secret }
    }

    /// Where it calls.
    pub fn endpoints(&self) -> &Endpoints {
        &self.endpoints
    }

    /// Its app client.
    pub fn client_id(&self) -> &str {
        &self.client_id
    }

    /// `grant_type=authorization_code` (with the PKCE verifier when given).
    pub async fn exchange_code(
        &self,
        code: &str,
        redirect_uri: &str,
        verifier: Option<&str>,
    ) -> Result<Tokens, OAuthError> {
        let mut form = vec![("grant_type", "authorization_code"), ("code", code), ("redirect_uri", redirect_uri)];
        if let Some(v) = verifier {
            form.push(("code_verifier", v));
        }
        self.token_request(&form).await
    }

    /// `grant_type=refresh_token`.
    pub async fn refresh(&self, refresh_token: &str) -> Result<Tokens, OAuthError> {
        self.token_request(&[("grant_type", "refresh_token"), ("refresh_token", refresh_token)]).await
    }

    /// The userinfo endpoint, with the user's access token.
    pub async fn userinfo(&self, access_token: &str) -> Result<serde_json::Map<String, serde_json::Value>, OAuthError> {
        let url = self.endpoints.userinfo.clone().ok_or(OAuthError::NotConfigured)?;
        let span = crate::out_span!("oauth userinfo");
        let response = self
            .http
            .get(url)
            .bearer_auth(access_token)
            .send()
            .instrument(span)
            .await
            .map_err(|_| OAuthError::Unreachable)?;
        match response.status().as_u16() {
            200 => response.json().await.map_err(|_| OAuthError::Upstream),
            400 | 401 | 403 => Err(OAuthError::Refused),
            _ => Err(OAuthError::Upstream),
        }
    }

    /// Revokes a refresh token (RFC 7009); Cognito also invalidates the access tokens minted from it.
    pub async fn revoke(&self, refresh_token: &str) -> Result<(), OAuthError> {
        let url = self.endpoints.revoke.clone().ok_or(OAuthError::NotConfigured)?;
        let form = [("token", refresh_token), ("token_type_hint", "refresh_token")];
        let span = crate::out_span!("oauth revoke");
        let response = self.authed(self.http.post(url)).form(&self.with_client(&form)).send().instrument(span).await;
        let response = response.map_err(|_| OAuthError::Unreachable)?;
        tracing::debug!(status = response.status().as_u16(), "revocation endpoint answered");
        if response.status().is_success() { Ok(()) } else { Err(OAuthError::Upstream) }
    }

    async fn token_request(&self, form: &[(&str, &str)]) -> Result<Tokens, OAuthError> {
        let url = self.endpoints.token.clone().ok_or(OAuthError::NotConfigured)?;
        // The grant type is a fixed value: never the code, the refresh token or the secret.
        let grant_type = form.iter().find(|(k, _)| *k == "grant_type").map_or("none", |(_, v)| *v);
        let span = crate::out_span!("oauth token", grant_type);
        let response = self.authed(self.http.post(url)).form(&self.with_client(form)).send().instrument(span).await;
        let response = response.map_err(|_| OAuthError::Unreachable)?;
        let status = response.status().as_u16();
        let grant = grant_type;
        tracing::debug!(grant, status, "token endpoint answered");
        if status == 200 {
            return response.json().await.map_err(|_| OAuthError::Upstream);
        }
        let error = response.json::<ErrorBody>().await.ok().and_then(|b| b.error);
        match (status, error.as_deref()) {
            (400 | 401, Some("invalid_grant")) => Err(OAuthError::Refused),
            _ => Err(OAuthError::Upstream),
        }
    }

    fn with_client<'a>(&'a self, form: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
        let mut all = form.to_vec();
        all.push(("client_id", &self.client_id));
        all
    }

    fn authed(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.secret {
            Some(secret) => request.basic_auth(&self.client_id, Some(secret.expose())),
            None => request,
        }
    }
}
