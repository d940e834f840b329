//! The decision: request -> bearer token -> verified claims -> allowed or denied.

use crate::error::{BadRequest, Denied, Invalid};
use crate::token;
use crate::verify::{Claims, Verifier};

/// What a decision needs of an HTTP request, borrowed from whatever carried it.
#[derive(Debug, Clone, Copy, Default)]
pub struct Request<'a> {
    /// The `authorization` header values, as sent.
    pub authorization: Option<&'a str>,
    /// True when the request carried more than one `authorization` header.
    pub authorization_repeated: bool,
    /// The `cookie` header, as sent.
    pub cookie: Option<&'a str>,
    pub method: &'a str,
    pub path: &'a str,
}

/// An allowed request and who made it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Allowed {
    pub claims: Claims,
}

/// Decides requests.
#[derive(Clone)]
pub struct Authorizer {
    verifier: Verifier,
    token_cookie: Option<String>,
}

impl Authorizer {
    /// `token_cookie` names a cookie that may carry the token when no `authorization` header is
    /// sent (browsers cannot set headers on WebSocket or EventSource requests).
    pub fn new(verifier: Verifier, token_cookie: Option<String>) -> Authorizer {
        Authorizer {
            verifier,
            token_cookie,
        }
    }

    /// The whole decision, at Unix time `now`.
    pub async fn check(&self, req: &Request<'_>, now: u64) -> Result<Allowed, Denied> {
        let token = self.credential(req)?;
        let claims = self.verifier.verify(token, now).await?;
        Ok(Allowed { claims })
    }

    pub fn verifier(&self) -> &Verifier {
        &self.verifier
    }

    /// The token: from the `authorization` header, else from the token cookie.
    fn credential<'r>(&self, req: &Request<'r>) -> Result<&'r str, Denied> {
        if let Some(value) = req.authorization {
            // Envoy joins repeated headers with ','; no bearer token can hold one.
            if req.authorization_repeated || value.contains(',') {
                return Err(BadRequest::MultipleCredentials.into());
            }
            return Ok(token::bearer(value)?);
        }
        let (Some(name), Some(cookies)) = (self.token_cookie.as_deref(), req.cookie) else {
            return Err(Invalid::MissingToken.into());
        };
        let mut values = cookies
            .split(';')
            .filter_map(|pair| pair.trim().split_once('='))
            .filter(|(key, _)| *key == name)
            .map(|(_, value)| value.trim_matches('"'));
        match (values.next(), values.next()) {
            (Some(value), None) => Ok(token::checked_token(value)?),
            (Some(_), Some(_)) => Err(BadRequest::MultipleCredentials.into()),
            (None, _) => Err(Invalid::MissingToken.into()),
        }
    }
}
