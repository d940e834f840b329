//! The only module that names the AWS SDK: the Cognito API client behind the seams of
//! `crate::cognito` (MFA lookups through `AdminGetUser` or `GetUser`, user attributes, sign-outs).

use std::time::Duration;

use aws_sdk_cognitoidentityprovider as idp;
use futures_util::future::BoxFuture;
pub use idp::config::Credentials;
use idp::error::{ProvideErrorMetadata, SdkError};

use crate::cognito::{Answer, CognitoError, MfaFactors, MfaLookup, MfaSource, MfaState, User, UserCalls};

/// The Cognito API through the AWS SDK: MFA lookups (`AdminGetUser` or `GetUser`), user
/// attributes, and sign-outs.
#[derive(Debug)]
pub struct SdkCognito {
    client: idp::Client,
    user_pool_id: String,
    lookup: MfaLookup,
    factors: MfaFactors,
}

impl SdkCognito {
    /// Builds the client: credentials from the standard chain (environment, profile, web identity,
    /// container credentials, instance metadata) unless `credentials` are given (an emulator,
    /// tests: nothing read from the process environment), one attempt at most `attempt` long, two
    /// attempts within `deadline`.
    pub async fn new(
        region: &str,
        endpoint: Option<&str>,
        user_pool_id: &str,
        lookup: MfaLookup,
        (attempt, deadline): (Duration, Duration),
        credentials: Option<Credentials>,
    ) -> SdkCognito {
        let mut loader = aws_config::defaults(aws_config::BehaviorVersion::v2026_01_12())
            .region(aws_config::Region::new(region.to_owned()));
        if let Some(endpoint) = endpoint {
            loader = loader.endpoint_url(endpoint);
        }
        if let Some(credentials) = credentials {
            loader = loader.credentials_provider(credentials);
        }
        let shared = loader.load().await;
        let config = idp::config::Builder::from(&shared)
            .timeout_config(
                aws_config::timeout::TimeoutConfig::builder()
                    .connect_timeout(attempt)
                    .operation_attempt_timeout(attempt)
                    .operation_timeout(deadline)
                    .build(),
            )
            .retry_config(
                aws_config::retry::RetryConfig::standard()
                    .with_max_attempts(2)
                    .with_initial_backoff(Duration::from_millis(50)),
            )
            .build();
        SdkCognito {
            client: idp::Client::from_conf(config),
            user_pool_id: user_pool_id.to_owned(),
            lookup,
            factors: MfaFactors::default(),
        }
    }

    /// Counts these second factors as enrolment (TOTP alone by default).
    pub fn counting(mut self, factors: MfaFactors) -> SdkCognito {
        self.factors = factors;
        self
    }
}

impl UserCalls for SdkCognito {
    fn user_attributes<'a>(
        &'a self,
        access_token: &'a str,
    ) -> BoxFuture<'a, Result<Vec<(String, String)>, CognitoError>> {
        Box::pin(async move {
            let out = self.client.get_user().access_token(access_token).send().await.map_err(classify)?;
            let mut attributes = vec![("username".to_owned(), out.username().to_owned())];
            for a in out.user_attributes() {
                attributes.push((a.name().to_owned(), a.value().unwrap_or_default().to_owned()));
            }
            Ok(attributes)
        })
    }

    fn global_sign_out<'a>(&'a self, access_token: &'a str) -> BoxFuture<'a, Result<(), CognitoError>> {
        Box::pin(async move {
            self.client.global_sign_out().access_token(access_token).send().await.map(|_| ()).map_err(classify)
        })
    }

    fn admin_global_sign_out<'a>(&'a self, username: &'a str) -> BoxFuture<'a, Result<(), CognitoError>> {
        Box::pin(async move {
            let call = self.client.admin_user_global_sign_out().user_pool_id(&self.user_pool_id).username(username);
            call.send().await.map(|_| ()).map_err(classify)
        })
    }
}

impl MfaSource for SdkCognito {
    fn mfa_state<'a>(&'a self, user: User<'a>) -> Answer<'a> {
        Box::pin(async move {
            let answer = match self.lookup {
                MfaLookup::AdminGetUser => {
                    let call = self.client.admin_get_user().user_pool_id(&self.user_pool_id).username(user.username);
                    match call.send().await {
                        Ok(out) if !same_user(out.user_attributes(), user.sub) => Ok(MfaState::Replaced),
                        Ok(out) if !out.enabled() => Ok(MfaState::Gone),
                        Ok(out) => Ok(state_of(out.user_mfa_setting_list(), self.factors)),
                        Err(error) => Err(classify(error)),
                    }
                }
                MfaLookup::GetUser => match self.client.get_user().access_token(user.access_token).send().await {
                    Ok(out) if !same_user(out.user_attributes(), user.sub) => Ok(MfaState::Replaced),
                    Ok(out) => Ok(state_of(out.user_mfa_setting_list(), self.factors)),
                    Err(error) => Err(classify(error)),
                },
            };
            match answer {
                Err(CognitoError::Refused) => Ok(MfaState::Gone),
                other => other,
            }
        })
    }

    fn needs_admin_scope(&self) -> bool {
        self.lookup == MfaLookup::GetUser
    }
}

/// True when Cognito's `sub` attribute is the token's. A missing `sub` is not a match: an answer
/// that cannot be tied to the token's user is not used.
fn same_user(attributes: &[idp::types::AttributeType], sub: &uuid::Uuid) -> bool {
    let found = attributes.iter().find(|a| a.name() == "sub").and_then(|a| a.value());
    found.and_then(|s| uuid::Uuid::try_parse(s).ok()).is_some_and(|found| found == *sub)
}

fn state_of(settings: &[String], factors: MfaFactors) -> MfaState {
    // AWS omits the list when unset; moto sends []: both read as not enrolled.
    if factors.any_in(settings) { MfaState::Enrolled } else { MfaState::NotEnrolled }
}

/// Sorts an SDK error by Cognito's error code (`__type`), never by its message.
fn classify<E: ProvideErrorMetadata, R>(error: SdkError<E, R>) -> CognitoError {
    match &error {
        SdkError::ServiceError(service) => match service.err().code() {
            Some(
                "UserNotFoundException"
                | "NotAuthorizedException"
                | "PasswordResetRequiredException"
                | "UserNotConfirmedException",
            ) => CognitoError::Refused,
            Some("TooManyRequestsException" | "LimitExceededException") => CognitoError::Throttled,
            Some(code) => {
                tracing::warn!(code = crate::telemetry::audit::loggable(code), "cognito answered an unexpected error");
                CognitoError::Unexpected
            }
            None => CognitoError::Unexpected,
        },
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) => CognitoError::Unreachable,
        _ => CognitoError::Unexpected,
    }
}
