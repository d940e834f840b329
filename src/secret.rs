//! Secret settings: kept out of `Debug`, logs and `--help`.

/// A secret setting: never printed, never logged.
#[derive(Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: String) -> Secret {
        Secret(value)
    }

    /// The value, for the one place that sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::str::FromStr for Secret {
    type Err = std::convert::Infallible;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        Ok(Secret(value.to_owned()))
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// Serialized redacted: settings are serialized only to show defaults, and a secret has none.
impl serde::Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str("<redacted>")
    }
}

/// A URL whose userinfo may hold credentials (`redis://:password@host:6379/0`): shown with them
/// replaced by `***`, so an operator still sees where it points.
#[derive(Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(transparent)]
pub struct SecretUrl(String);

impl SecretUrl {
    /// Wraps a URL that may carry credentials.
    pub fn new(value: String) -> SecretUrl {
        SecretUrl(value)
    }

    /// The URL with its credentials, for the one place that connects with it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::str::FromStr for SecretUrl {
    type Err = std::convert::Infallible;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        Ok(SecretUrl(value.to_owned()))
    }
}

impl std::fmt::Display for SecretUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&without_userinfo(&self.0))
    }
}

impl std::fmt::Debug for SecretUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("SecretUrl").field(&without_userinfo(&self.0)).finish()
    }
}

/// Serialized redacted, as [`Secret`] is.
impl serde::Serialize for SecretUrl {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&without_userinfo(&self.0))
    }
}

/// A URL in `Debug` output, its userinfo shown as `***` (as `without_userinfo` writes it).
pub struct ShownUrl<'a>(pub &'a str);

impl std::fmt::Debug for ShownUrl<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(&without_userinfo(self.0), f)
    }
}

/// `url` fit for a log line: a user name or password replaced by `***`. Text that does not parse
/// as a URL is not shown at all, since where its credentials are cannot be told.
pub fn without_userinfo(url: &str) -> String {
    let Ok(mut parsed) = url::Url::parse(url) else { return "<not a url>".to_owned() };
    if parsed.password().is_some() {
        let _ = parsed.set_password(Some("***"));
    }
    if !parsed.username().is_empty() {
        let _ = parsed.set_username("***");
    }
    parsed.into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_url_is_shown_without_its_credentials_but_with_where_it_points() {
        let url: SecretUrl = "redis://user:hunter2@redis:6379/0".parse().unwrap();
        assert_eq!(url.expose(), "redis://user:hunter2@redis:6379/0", "connecting uses the credentials");
        for shown in [url.to_string(), format!("{url:?}"), serde_json::to_string(&url).unwrap()] {
            assert!(shown.contains("redis:6379/0") && shown.contains("***"), "{shown}");
            assert!(!shown.contains("hunter2") && !shown.contains("user"), "{shown}");
        }
        assert_eq!(without_userinfo("redis://:hunter2@redis:6379/0"), "redis://:***@redis:6379/0");
        assert_eq!(without_userinfo("https://keys.example/jwks.json"), "https://keys.example/jwks.json");
        assert_eq!(without_userinfo("redis://:hunter2@[bad"), "<not a url>");
    }
}
