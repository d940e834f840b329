//! The decision: request -> route requirement -> bearer token -> verified claims -> policy -> MFA
//! -> allowed or denied.

pub mod credential;
pub mod error;
pub mod headers;
pub mod observed;
pub mod policy;

use std::sync::Arc;

use crate::authz::error::{BadRequest, Denied, Forbidden, Invalid, StepUp};
use crate::authz::headers::Qualifiers;
use crate::authz::policy::{Access, LevelSource, RouteContext, SharedPolicy};
use crate::mfa::MfaGate;
use crate::revocation::Revocations;
use crate::verify::claims::Claims;
use crate::verify::token;
use crate::verify::{IssuerRules, Verifier};

/// What a decision needs of an HTTP request, borrowed from whatever carried it.
#[derive(Debug, Clone, Copy, Default)]
pub struct Request<'a> {
    /// The `authorization` header value, as sent.
    pub authorization: Option<&'a str>,
    /// True when the request carried more than one `authorization` header.
    pub authorization_repeated: bool,
    /// The `cookie` header, as sent.
    pub cookie: Option<&'a str>,
    /// The `origin` header, as sent.
    pub origin: Option<&'a str>,
    /// True for a WebSocket upgrade (`upgrade: websocket`).
    pub websocket: bool,
    /// True when a header name reads as an identity header once `_` is taken for `-` (`x_user_id`)
    /// without being it: upstreams that treat the two alike would take it for ours.
    pub spoofed_identity: bool,
    /// The request method.
    pub method: &'a str,
    /// The proxy's `x-request-id`, for the decision log.
    pub request_id: Option<&'a str>,
    /// The path as the proxy forwards it, query string included.
    pub path: &'a str,
    /// Per-route settings from the proxy.
    pub route: RouteContext<'a>,
    /// The client prefers an HTML page (a browser navigating): see [`prefers_html`].
    pub html: bool,
}

/// True when an `Accept` header names `text/html` before any JSON type: a browser navigating to a
/// page, not a script calling an API (which asks for JSON, or for anything).
pub fn prefers_html(accept: &str) -> bool {
    let html = accept.find("text/html");
    let json = accept.find("json");
    html.is_some_and(|h| json.is_none_or(|j| h < j))
}

/// An allowed request and who made it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Allowed {
    /// A public route without a valid token.
    Anonymous,
    /// A verified caller.
    Verified(Arc<Claims>),
}

/// A decision and what was learnt on the way, for the answer and the decision log.
#[derive(Debug, Clone)]
pub struct Decision {
    /// Allowed, and as whom, or why not.
    pub outcome: Result<Allowed, Denied>,
    /// The route's requirement, once the path was understood.
    pub route: Option<Route>,
    /// The caller, when the token verified (also when the route then refused them).
    pub caller: Option<Arc<Claims>>,
}

/// What the policy said of a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    /// The access level that applied.
    pub level: Access,
    /// Who set it (Envoy, the policy file, both, or the default).
    pub source: LevelSource,
    /// Only observed: the answer is an allow whatever the decision.
    pub shadow: bool,
}

/// Decides requests.
#[derive(Clone)]
pub struct Authorizer {
    verifier: Verifier,
    revocations: Revocations,
    policy: SharedPolicy,
    /// Each issuer's MFA gate (a Cognito issuer's asks its own pool at its own endpoint), by
    /// issuer position; never empty.
    gates: Arc<[MfaGate]>,
    token_cookie: Option<String>,
    /// Origins from which a cookie credential may come on a request that is not a plain GET/HEAD.
    allowed_origins: Arc<[String]>,
    /// `--shadow`: routes whose sources say nothing of the mode are only observed.
    shadow: bool,
    /// How each issuer's identity values are written (qualified by issuer with several).
    qualifiers: Qualifiers,
}

crate::opaque_debug!(Authorizer);

impl Authorizer {
    /// `token_cookie` names a cookie that may carry the token when no `authorization` header is
    /// sent (browsers cannot set headers on WebSocket or EventSource requests); `allowed_origins`
    /// are the sites that may use it beyond a plain GET or HEAD. `gates`: one MFA gate per issuer,
    /// in the verifier's issuer order (an OIDC issuer's is never asked).
    pub fn new(
        verifier: Verifier,
        revocations: Revocations,
        policy: SharedPolicy,
        gates: Vec<MfaGate>,
        token_cookie: Option<String>,
        allowed_origins: Vec<String>,
    ) -> Authorizer {
        Authorizer {
            verifier,
            revocations,
            policy,
            gates: {
                assert!(!gates.is_empty(), "one MFA gate per issuer");
                gates.into()
            },
            token_cookie,
            allowed_origins: allowed_origins.into(),
            shadow: false,
            qualifiers: Qualifiers::default(),
        }
    }

    /// With `everywhere` (`--shadow`), routes whose sources say nothing of the mode are only
    /// observed. Defaults to off.
    pub fn shadow_by_default(mut self, everywhere: bool) -> Authorizer {
        self.shadow = everywhere;
        self
    }

    /// Writes each issuer's identity values as `qualifiers` say (by default bare, as with one
    /// issuer). Every transport's answer takes them from here.
    pub fn qualifying(mut self, qualifiers: Qualifiers) -> Authorizer {
        self.qualifiers = qualifiers;
        self
    }

    /// How each issuer's identity values are written.
    pub fn qualifiers(&self) -> &Qualifiers {
        &self.qualifiers
    }

    /// The whole decision, at Unix time `now`.
    pub async fn check(&self, req: &Request<'_>, now: u64) -> Result<Allowed, Denied> {
        self.decide(req, now).await.outcome
    }

    /// The decision with what was learnt on the way (the route, the caller).
    pub async fn decide(&self, req: &Request<'_>, now: u64) -> Decision {
        let mut decision = Decision { outcome: Ok(Allowed::Anonymous), route: None, caller: None };
        decision.outcome = self.run(req, now, &mut decision).await;
        decision
    }

    async fn run(&self, req: &Request<'_>, now: u64, seen: &mut Decision) -> Result<Allowed, Denied> {
        if req.spoofed_identity {
            return Err(BadRequest::SpoofedIdentityHeader.into());
        }
        let policy = self.policy.current();
        let rule = policy.requirement(req.method, req.path, req.route)?;
        seen.route = Some(Route { level: rule.access, source: rule.source, shadow: rule.shadow(self.shadow) });
        if rule.access == Access::Public {
            let allowed = match self.identify(req, now).await {
                // The route's issuers hold here too: another issuer's token is anonymous.
                Allowed::Verified(claims) if !rule.accepts_issuer(&claims) => Allowed::Anonymous,
                allowed => allowed,
            };
            if let Allowed::Verified(claims) = &allowed {
                seen.caller = Some(claims.clone());
            }
            return Ok(allowed);
        }
        let token = self.credential(req)?;
        let claims = self.authenticate(token, now).await?;
        seen.caller = Some(claims.clone());
        rule.permits(&claims)?;
        if rule.access == Access::Mfa {
            self.require_mfa(&claims, token).await?;
        }
        Ok(Allowed::Verified(claims))
    }

    /// The second factor, as the token's issuer knows it: a Cognito pool is asked whether the
    /// user enrolled a counted factor (403 if not: enrol first); an OIDC token, or a Cognito token
    /// with `amr` under `mfa-from-amr`, must itself show one (401 with the RFC 9470 challenge: sign
    /// in again with a second factor), with no Cognito call.
    async fn require_mfa(&self, claims: &Arc<Claims>, token: &str) -> Result<(), Denied> {
        match claims.second_factor {
            None => self.gates.get(claims.issuer).unwrap_or(&self.gates[0]).require(claims, token).await,
            Some(_) if !self.gates[0].enforced() => Ok(()),
            Some(true) => Ok(()),
            Some(false) => {
                let step_up = match self.verifier.issuers().get(claims.issuer).map(|i| &i.rules) {
                    Some(IssuerRules::Oidc { step_up, .. }) => *step_up,
                    _ => StepUp { acr_values: None },
                };
                Err(step_up.into())
            }
        }
    }

    /// A verified token that has not been revoked.
    pub async fn authenticate(&self, token: &str, now: u64) -> Result<Arc<Claims>, Denied> {
        let claims = self.verifier.verify(token, now).await?;
        self.revocations.check(&claims, now)?;
        Ok(claims)
    }

    /// On a public route: the caller's identity when a valid token comes along, else anonymous.
    async fn identify(&self, req: &Request<'_>, now: u64) -> Allowed {
        let Ok(token) = self.credential(req) else { return Allowed::Anonymous };
        match self.authenticate(token, now).await {
            Ok(claims) => Allowed::Verified(claims),
            Err(_) => Allowed::Anonymous,
        }
    }

    /// Whether a cookie credential may be used for this request. A browser sends cookies along with
    /// requests other sites make: a GET or HEAD changes nothing, but any other method (CSRF) and a
    /// WebSocket upgrade (cross-site WebSocket hijacking) must come from an allowed `Origin`. A
    /// WebSocket client that is not a browser sends none.
    fn same_site(&self, req: &Request<'_>) -> bool {
        let allowed = |origin: &str| self.allowed_origins.iter().any(|o| o == origin);
        match (req.websocket, req.origin) {
            (true, None) => true,
            (true, Some(origin)) => allowed(origin),
            (false, _) if matches!(req.method, "GET" | "HEAD") => true,
            (false, origin) => origin.is_some_and(allowed),
        }
    }

    /// The token: from the `authorization` header, else from the token cookie.
    fn credential<'r>(&self, req: &Request<'r>) -> Result<&'r str, Denied> {
        if req.authorization_repeated {
            return Err(BadRequest::MultipleCredentials.into());
        }
        if let Some(token) = credential::bearer(req.authorization.map(Some).into_iter())? {
            return Ok(token);
        }
        let (Some(name), Some(cookies)) = (self.token_cookie.as_deref(), req.cookie) else {
            return Err(Invalid::MissingToken.into());
        };
        match credential::cookie([cookies], name)? {
            Some(_) if !self.same_site(req) => Err(Forbidden::CrossSiteCookie.into()),
            Some(value) => Ok(token::checked_token(value)?),
            None => Err(Invalid::MissingToken.into()),
        }
    }
}
