//! The denial taxonomy: every reason a request is refused, and the one place it becomes a status.
//!
//! Reasons are fixed strings. Nothing taken from a token (a `kid`, an issuer, a claim) is ever
//! carried here, so nothing a caller sent can be reflected back into a header or a body.

use axum::http::StatusCode;

/// Why a token (or the lack of one) does not authenticate the caller: HTTP 401.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Invalid {
    /// No bearer token.
    #[error("no bearer token")]
    MissingToken,
    /// Authorization header is not a bearer token.
    #[error("authorization header is not a bearer token")]
    NotBearer,
    /// Token is larger than 16 KiB.
    #[error("token is larger than 16 KiB")]
    Oversized,
    /// Token is not a well-formed jwt.
    #[error("token is not a well-formed jwt")]
    Malformed,
    /// Token header is not valid json.
    #[error("token header is not valid json")]
    BadHeader,
    /// Token algorithm is not rs256.
    #[error("token algorithm is not rs256")]
    Algorithm,
    /// Token has no key id.
    #[error("token has no key id")]
    MissingKeyId,
    /// Token header names a critical extension.
    #[error("token header names a critical extension")]
    CriticalHeader,
    /// Token names an unknown key.
    #[error("token names an unknown key")]
    UnknownKey,
    /// Token signature is invalid.
    #[error("token signature is invalid")]
    BadSignature,
    /// Token claims are not valid json or have the wrong types.
    #[error("token claims are not valid json or have the wrong types")]
    BadClaims,
    /// Token json has a duplicated key.
    #[error("token json has a duplicated key")]
    DuplicateKey,
    /// Token has no expiry.
    #[error("token has no expiry")]
    MissingExpiry,
    /// Token has expired.
    #[error("token has expired")]
    Expired,
    /// Token is not yet valid.
    #[error("token is not yet valid")]
    NotYetValid,
    /// Token was issued in the future.
    #[error("token was issued in the future")]
    IssuedInFuture,
    /// Token issuer is not trusted.
    #[error("token issuer is not trusted")]
    WrongIssuer,
    /// Token is not an access token.
    #[error("token is not an access token")]
    NotAccessToken,
    /// Token was issued to a client that is not allowed.
    #[error("token was issued to a client that is not allowed")]
    WrongClient,
    /// Token subject is not a uuid.
    #[error("token subject is not a uuid")]
    BadSubject,
    /// Token has no username.
    #[error("token has no username")]
    MissingUsername,
    /// Token audience is not this api.
    #[error("token audience is not this api")]
    WrongAudience,
    /// Token has no subject.
    #[error("token has no subject")]
    MissingSubject,
    /// Machine tokens are not allowed (--allow-machine-tokens).
    #[error("machine tokens are not allowed (--allow-machine-tokens)")]
    MachineTokensOff,
    /// User is disabled or deleted.
    #[error("user is disabled or deleted")]
    UserDisabled,
    /// The token's username now belongs to another user.
    #[error("the token's username now belongs to another user")]
    UserReplaced,
    /// Token has been revoked.
    #[error("token has been revoked")]
    Revoked,
    /// Token has no jti or origin_jti, so it could not be revoked (--allow-unrevocable-tokens).
    #[error("token has no jti or origin_jti, so it could not be revoked (--allow-unrevocable-tokens)")]
    Unrevocable,
}

/// Why a valid token may not use this route: HTTP 403.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Forbidden {
    /// User has enrolled none of the second factors counted (named).
    #[error("user has enrolled none of the counted second factors")]
    MfaRequired(crate::cognito::MfaFactors),
    /// Token lacks a required scope.
    #[error("token lacks a required scope")]
    InsufficientScope,
    /// User is in none of the groups the route requires.
    #[error("user is in none of the groups the route requires")]
    MissingGroup,
    /// Machine token on a route that does not ask for scopes, or on an mfa route.
    #[error("machine token on a route that does not ask for scopes, or on an mfa route")]
    MachineTokenOnRoute,
    /// Token lacks the aws.cognito.signin.user.admin scope needed to read mfa state.
    #[error("token lacks the aws.cognito.signin.user.admin scope needed to read mfa state")]
    MfaScopeMissing,
    /// A cookie credential on a request that is not same-site (method or websocket from a foreign origin).
    #[error("a cookie credential on a request that is not same-site (method or websocket from a foreign origin)")]
    CrossSiteCookie,
    /// Token issuer is not one the route accepts.
    #[error("token issuer is not one the route accepts")]
    IssuerNotAccepted,
    /// Route asks for groups or scopes without naming issuers, and several issuers are configured.
    #[error("route asks for groups or scopes without naming issuers, and several issuers are configured")]
    AmbiguousRoute,
}

/// An OIDC token whose session shows no second factor on an `mfa` route: HTTP 401 with the
/// RFC 9470 step-up challenge (the client signs in again with a second factor). `acr_values` come
/// from the issuer's configuration (`mfa-acr`), never from a token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("token shows no second factor (amr/acr) on an mfa route")]
pub struct StepUp {
    /// The `acr` values that satisfy the route, said in the challenge (RFC 9470).
    pub acr_values: Option<&'static str>,
}

/// Why the request itself cannot be judged: HTTP 400.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BadRequest {
    /// More than one authorization header or token cookie.
    #[error("more than one authorization header or token cookie")]
    MultipleCredentials,
    /// Check request has no http attributes.
    #[error("check request has no http attributes")]
    NoHttpAttributes,
    /// Path has dot segments, empty segments, encoded separators or a double encoding.
    #[error("path has dot segments, empty segments, encoded separators or a double encoding")]
    AmbiguousPath,
    /// Request carries an identity header under another spelling.
    #[error("request carries an identity header under another spelling")]
    SpoofedIdentityHeader,
}

/// Why no decision can be made right now although the token may be valid: HTTP 503.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Unavailable {
    /// No signing keys have been loaded yet.
    #[error("no signing keys have been loaded yet")]
    NoKeys,
    /// Fetching the signing keys failed.
    #[error("fetching the signing keys failed")]
    KeyFetchFailed,
    /// Fetching the signing keys took too long.
    #[error("fetching the signing keys took too long")]
    KeyFetchTimeout,
    /// Cognito could not be asked for the user's mfa state.
    #[error("cognito could not be asked for the user's mfa state")]
    Cognito,
    /// Cognito throttled the mfa state lookup.
    #[error("cognito throttled the mfa state lookup")]
    CognitoThrottled,
    /// The process-wide budget of mfa lookups per second is spent.
    #[error("the process-wide budget of mfa lookups per second is spent")]
    MfaLookupBudget,
    /// The revocation list has not been confirmed by its store recently enough.
    #[error("the revocation list has not been confirmed by its store recently enough")]
    RevocationsStale,
}

/// A refusal. Every variant is an answer to Envoy, never an RPC error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Denied {
    /// The request itself is refused: 400.
    #[error(transparent)]
    BadRequest(#[from] BadRequest),
    /// No acceptable credential: 401.
    #[error(transparent)]
    Unauthenticated(#[from] Invalid),
    /// A good credential that the route does not admit: 403.
    #[error(transparent)]
    Forbidden(#[from] Forbidden),
    /// The decision cannot be made now: 503.
    #[error(transparent)]
    Unavailable(#[from] Unavailable),
    /// A good credential without the second factor the route needs: 401 with a step-up challenge.
    #[error(transparent)]
    StepUp(#[from] StepUp),
}

/// Gives each reason a short fixed label (snake case of its name) for metrics: a fixed set, so a
/// caller cannot multiply series.
macro_rules! labels {
    ($ty:ident { $($variant:ident => $label:literal),* $(,)? }) => {
        impl $ty {
            /// The condition's name in metrics and logs.
            pub fn label(self) -> &'static str {
                match self {
                    $($ty::$variant { .. } => $label),*
                }
            }
        }
    };
}

labels!(Invalid {
    MissingToken => "missing_token", NotBearer => "not_bearer", Oversized => "oversized", Malformed => "malformed",
    BadHeader => "bad_header", Algorithm => "algorithm", MissingKeyId => "missing_key_id",
    CriticalHeader => "critical_header", UnknownKey => "unknown_key", BadSignature => "signature",
    BadClaims => "bad_claims", DuplicateKey => "duplicate_key", MissingExpiry => "missing_expiry",
    Expired => "expired", NotYetValid => "not_yet_valid", IssuedInFuture => "issued_in_future",
    WrongIssuer => "issuer", NotAccessToken => "not_access_token", WrongClient => "client", BadSubject => "subject",
    MissingUsername => "missing_username", WrongAudience => "audience", MissingSubject => "missing_subject", MachineTokensOff => "machine_token", UserDisabled => "user_disabled",
    UserReplaced => "user_replaced",
    Revoked => "revoked", Unrevocable => "unrevocable",
});
labels!(Forbidden {
    MfaRequired => "mfa_required", InsufficientScope => "insufficient_scope", MissingGroup => "missing_group",
    MachineTokenOnRoute => "machine_token",
    MfaScopeMissing => "mfa_scope_missing", CrossSiteCookie => "cross_site_cookie",
    IssuerNotAccepted => "issuer_not_accepted", AmbiguousRoute => "ambiguous_route",
});
labels!(BadRequest {
    MultipleCredentials => "multiple_credentials", NoHttpAttributes => "no_http_attributes",
    AmbiguousPath => "ambiguous_path", SpoofedIdentityHeader => "spoofed_identity_header",
});
labels!(Unavailable {
    NoKeys => "no_keys", KeyFetchFailed => "key_fetch_failed", KeyFetchTimeout => "key_fetch_timeout",
    Cognito => "cognito", CognitoThrottled => "cognito_throttled", MfaLookupBudget => "mfa_lookup_budget", RevocationsStale => "revocations_stale",
});

/// gRPC status codes Envoy reads from `CheckResponse.status` (0 would mean allow).
pub mod code {
    /// Allowed.
    pub const OK: i32 = 0;
    /// Envoy answers 400 (with our body).
    pub const INVALID_ARGUMENT: i32 = 3;
    /// Envoy answers 403 (with our body).
    pub const PERMISSION_DENIED: i32 = 7;
    /// Envoy answers 503 (with our body).
    pub const UNAVAILABLE: i32 = 14;
    /// Envoy answers 401 (with our body).
    pub const UNAUTHENTICATED: i32 = 16;
}

impl Denied {
    /// The HTTP status Envoy sends to the client.
    pub fn http_status(&self) -> StatusCode {
        match self {
            Denied::BadRequest(_) => StatusCode::BAD_REQUEST,
            Denied::Unauthenticated(_) | Denied::StepUp(_) => StatusCode::UNAUTHORIZED,
            Denied::Forbidden(_) => StatusCode::FORBIDDEN,
            Denied::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// The non-zero gRPC code for `CheckResponse.status`.
    pub fn grpc_code(&self) -> i32 {
        match self {
            Denied::BadRequest(_) => code::INVALID_ARGUMENT,
            Denied::Unauthenticated(_) | Denied::StepUp(_) => code::UNAUTHENTICATED,
            Denied::Forbidden(_) => code::PERMISSION_DENIED,
            Denied::Unavailable(_) => code::UNAVAILABLE,
        }
    }

    /// What the client is told. Deliberately coarse: the detailed reason is logged, not sent,
    /// so the answers are no oracle for which check a forged token failed.
    pub fn client_message(&self) -> &'static str {
        match self {
            Denied::BadRequest(BadRequest::MultipleCredentials) => "More than one credential was sent",
            Denied::BadRequest(BadRequest::NoHttpAttributes) => "Request has no HTTP attributes",
            Denied::BadRequest(BadRequest::AmbiguousPath) => "Request path is ambiguous",
            Denied::BadRequest(BadRequest::SpoofedIdentityHeader) => "Request carries a reserved header",
            Denied::Unauthenticated(Invalid::MissingToken) => "Not authenticated",
            Denied::Unauthenticated(Invalid::Expired) => "Token has expired",
            Denied::Unauthenticated(Invalid::NotYetValid) => "Token is not yet valid",
            Denied::Unauthenticated(Invalid::NotAccessToken) => "Not an access token",
            Denied::Unauthenticated(Invalid::UserDisabled) => "User is disabled",
            Denied::Unauthenticated(Invalid::Revoked) => "Token has been revoked",
            Denied::Unauthenticated(_) => "Could not validate credentials",
            Denied::Forbidden(Forbidden::MfaRequired(factors)) => match factors.label() {
                "totp" => "MFA enrolment required (totp)",
                "sms" => "MFA enrolment required (sms)",
                "email" => "MFA enrolment required (email)",
                "totp,sms" => "MFA enrolment required (one of totp, sms)",
                "totp,email" => "MFA enrolment required (one of totp, email)",
                "sms,email" => "MFA enrolment required (one of sms, email)",
                _ => "MFA enrolment required (one of totp, sms, email)",
            },
            // A group is no OAuth scope, but the client's remedy is the same: other credentials.
            Denied::Forbidden(Forbidden::InsufficientScope | Forbidden::MissingGroup) => "Insufficient scope",
            Denied::Forbidden(Forbidden::IssuerNotAccepted) => "Token issuer is not accepted on this route",
            Denied::Forbidden(Forbidden::AmbiguousRoute) => "Route names groups or scopes without their issuer",
            Denied::StepUp(_) => "Multi-factor authentication required",
            Denied::Forbidden(Forbidden::MachineTokenOnRoute) => "Machine tokens are not allowed on this route",
            Denied::Forbidden(Forbidden::CrossSiteCookie) => "Cookie credentials need a request from an allowed origin",
            Denied::Forbidden(Forbidden::MfaScopeMissing) => {
                "Token lacks the aws.cognito.signin.user.admin scope needed to check MFA"
            }
            Denied::Unavailable(
                Unavailable::Cognito | Unavailable::CognitoThrottled | Unavailable::MfaLookupBudget,
            ) => "MFA status is temporarily unavailable",
            Denied::Unavailable(_) => "Authorization is temporarily unavailable",
        }
    }

    /// The RFC 6750 challenge, where one belongs.
    pub fn www_authenticate(&self) -> Option<String> {
        match self {
            // RFC 6750 §3.1: no error code when the request carried no credentials at all.
            Denied::Unauthenticated(Invalid::MissingToken) => Some("Bearer".to_owned()),
            Denied::Unauthenticated(_) => {
                Some(format!("Bearer error=\"invalid_token\", error_description=\"{}\"", self.client_message()))
            }
            Denied::BadRequest(_) => {
                Some(format!("Bearer error=\"invalid_request\", error_description=\"{}\"", self.client_message()))
            }
            Denied::Forbidden(Forbidden::MfaRequired(_) | Forbidden::CrossSiteCookie) => None,
            Denied::Forbidden(Forbidden::MfaScopeMissing) => Some(format!(
                "Bearer error=\"insufficient_scope\", scope=\"aws.cognito.signin.user.admin\", error_description=\"{}\"",
                self.client_message()
            )),
            Denied::Forbidden(_) => {
                Some(format!("Bearer error=\"insufficient_scope\", error_description=\"{}\"", self.client_message()))
            }
            Denied::StepUp(StepUp { acr_values }) => {
                let acr = acr_values.map(|v| format!(", acr_values=\"{v}\"")).unwrap_or_default();
                Some(format!(
                    "Bearer error=\"insufficient_user_authentication\", error_description=\"{}\"{acr}",
                    self.client_message()
                ))
            }
            Denied::Unavailable(_) => None,
        }
    }

    /// A short fixed label for logs and metrics.
    pub fn outcome(&self) -> &'static str {
        match self {
            Denied::BadRequest(_) => "bad_request",
            Denied::Unauthenticated(_) | Denied::StepUp(_) => "unauthenticated",
            Denied::Forbidden(_) => "forbidden",
            Denied::Unavailable(_) => "unavailable",
        }
    }

    /// The reason's fixed label, for metrics.
    pub fn reason(&self) -> &'static str {
        match *self {
            Denied::BadRequest(r) => r.label(),
            Denied::Unauthenticated(r) => r.label(),
            Denied::Forbidden(r) => r.label(),
            Denied::Unavailable(r) => r.label(),
            Denied::StepUp(_) => "mfa_step_up",
        }
    }
}
