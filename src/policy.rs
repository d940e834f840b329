//! Route access levels: what each route asks of a caller, from a policy file (first match wins)
//! or from Envoy's per-route context extensions (which win: Envoy's configuration is the
//! operator's). Anything unmatched, and any unknown level, is `mfa`: the policy fails closed.

use std::path::Path;

use serde::Deserialize;

use crate::error::{BadRequest, Forbidden};
use crate::verify::{Claims, Identity};

/// How much a route asks of its caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Access {
    /// No token needed; a valid one still yields identity headers.
    Public,
    /// A valid token; MFA not required (the MFA bootstrap routes).
    Authenticated,
    /// A valid token of a user who has enrolled TOTP MFA.
    Mfa,
}

impl Access {
    /// Reads a context-extension value; anything unknown is `mfa` (fail closed).
    pub fn from_context(value: &str) -> Access {
        match value {
            "public" => Access::Public,
            "authenticated" => Access::Authenticated,
            _ => Access::Mfa,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Access::Public => "public",
            Access::Authenticated => "authenticated",
            Access::Mfa => "mfa",
        }
    }
}

/// A list from the policy file, or a comma-separated one from a context extension.
#[derive(Debug, Clone, Copy)]
pub enum Names<'a> {
    Listed(&'a [String]),
    Joined(&'a str),
}

impl<'a> Names<'a> {
    pub fn iter(&self) -> impl Iterator<Item = &'a str> {
        let (listed, joined) = match *self {
            Names::Listed(list) => (list, ""),
            Names::Joined(text) => (&[][..], text),
        };
        listed.iter().map(String::as_str).chain(joined.split(',').map(str::trim)).filter(|s| !s.is_empty())
    }

    pub fn is_empty(&self) -> bool {
        self.iter().next().is_none()
    }
}

/// What one route requires.
#[derive(Debug, Clone, Copy)]
pub struct Requirement<'a> {
    pub access: Access,
    /// Scopes the token must all have (`scope` claim).
    pub scopes: Names<'a>,
    /// Cognito groups of which the user must be in at least one.
    pub groups: Names<'a>,
}

/// The per-route settings Envoy sent (`check_settings.context_extensions`).
#[derive(Debug, Clone, Copy, Default)]
pub struct RouteContext<'a> {
    pub access: Option<&'a str>,
    pub scopes: Option<&'a str>,
    pub groups: Option<&'a str>,
}

impl<'a> Requirement<'a> {
    const MFA: Requirement<'static> =
        Requirement { access: Access::Mfa, scopes: Names::Listed(&[]), groups: Names::Listed(&[]) };

    /// Checks scopes, groups and the machine-token rules against verified claims.
    pub fn permits(&self, claims: &Claims) -> Result<(), Forbidden> {
        if matches!(claims.identity, Identity::Machine) && (self.access == Access::Mfa || self.scopes.is_empty()) {
            // A machine has no user to enrol MFA, and only a scoped rule says what it may do.
            return Err(Forbidden::MachineToken);
        }
        let granted = claims.scope.as_deref().unwrap_or("");
        if !self.scopes.iter().all(|wanted| granted.split(' ').any(|s| s == wanted)) {
            return Err(Forbidden::InsufficientScope);
        }
        if !self.groups.is_empty() && !self.groups.iter().any(|g| claims.groups.iter().any(|have| have == g)) {
            return Err(Forbidden::InsufficientScope);
        }
        Ok(())
    }
}

/// An ordered list of rules; first match wins.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    rules: Vec<Rule>,
}

#[derive(Debug, Clone)]
struct Rule {
    methods: Vec<String>,
    path: PathMatch,
    access: Access,
    scopes: Vec<String>,
    groups: Vec<String>,
}

#[derive(Debug, Clone)]
enum PathMatch {
    Exact(String),
    /// Matches the path itself and anything below it, on whole segments.
    Prefix(String),
}

/// Why a policy file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("cannot read policy file {path}: {error}")]
    Read { path: String, error: std::io::Error },
    #[error("invalid policy file: {0}")]
    Invalid(String),
}

impl Policy {
    /// Reads and validates a policy file.
    pub fn load(path: &Path) -> Result<Policy, PolicyError> {
        let text = std::fs::read_to_string(path)
            .map_err(|error| PolicyError::Read { path: path.display().to_string(), error })?;
        Policy::from_toml(&text)
    }

    pub fn from_toml(text: &str) -> Result<Policy, PolicyError> {
        let file: PolicyFile = toml::from_str(text).map_err(|e| PolicyError::Invalid(e.message().to_owned()))?;
        let rules = file.rule.into_iter().enumerate().map(|(i, r)| r.validate(i + 1)).collect::<Result<_, _>>()?;
        Ok(Policy { rules })
    }

    /// The requirement for a request. Envoy's context extension `access` wins over the file.
    /// `path` is as Envoy forwards it (query string included); odd paths are refused, not guessed at.
    pub fn requirement<'a>(
        &'a self,
        method: &str,
        path: &str,
        route: RouteContext<'a>,
    ) -> Result<Requirement<'a>, BadRequest> {
        let path = checked_path(path)?;
        if let Some(access) = route.access {
            return Ok(Requirement {
                access: Access::from_context(access),
                scopes: Names::Joined(route.scopes.unwrap_or("")),
                groups: Names::Joined(route.groups.unwrap_or("")),
            });
        }
        let rule = self.rules.iter().find(|r| r.matches(method, path));
        Ok(rule.map_or(Requirement::MFA, |r| Requirement {
            access: r.access,
            scopes: Names::Listed(&r.scopes),
            groups: Names::Listed(&r.groups),
        }))
    }

    /// The rules as (methods, path, access) for documentation and tests.
    pub fn describe(&self) -> Vec<(String, String, Access)> {
        self.rules
            .iter()
            .map(|r| {
                let path = match &r.path {
                    PathMatch::Exact(p) => p.clone(),
                    PathMatch::Prefix(p) => format!("{p}/*"),
                };
                (r.methods.join(","), path, r.access)
            })
            .collect()
    }
}

impl Rule {
    fn matches(&self, method: &str, path: &str) -> bool {
        (self.methods.is_empty() || self.methods.iter().any(|m| m == method))
            && match &self.path {
                PathMatch::Exact(p) => path == p,
                PathMatch::Prefix(p) => {
                    p.is_empty()
                        || path.strip_prefix(p.as_str()).is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
                }
            }
    }
}

/// The path without its query string, refused when it still holds anything an upstream might
/// read differently from us: dot segments, `//`, encoded `/`, `.` or `\`, a backslash or a `;`.
pub fn checked_path(path: &str) -> Result<&str, BadRequest> {
    let path = path.split(['?', '#']).next().unwrap_or("");
    let lower_has = |needle: &str| path.as_bytes().windows(3).any(|w| w.eq_ignore_ascii_case(needle.as_bytes()));
    if !path.starts_with('/')
        || path.contains("//")
        || path.contains('\\')
        || path.contains(';')
        || lower_has("%2f")
        || lower_has("%2e")
        || lower_has("%5c")
        || path.split('/').any(|segment| segment == "." || segment == "..")
        || path.bytes().any(|b| b.is_ascii_control() || b == b' ')
    {
        return Err(BadRequest::AmbiguousPath);
    }
    Ok(path)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyFile {
    #[serde(default)]
    rule: Vec<RuleFile>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleFile {
    #[serde(default)]
    methods: Vec<String>,
    path: Option<String>,
    prefix: Option<String>,
    access: Access,
    #[serde(default)]
    scopes: Vec<String>,
    #[serde(default)]
    groups: Vec<String>,
}

impl RuleFile {
    fn validate(self, n: usize) -> Result<Rule, PolicyError> {
        let bad = |what: &str| PolicyError::Invalid(format!("rule {n}: {what}"));
        let path = match (self.path, self.prefix) {
            (Some(p), None) => {
                PathMatch::Exact(checked_path(&p).map_err(|_| bad("path must be a plain absolute path"))?.to_owned())
            }
            (None, Some(p)) => {
                let p = checked_path(&p).map_err(|_| bad("prefix must be a plain absolute path"))?;
                PathMatch::Prefix(p.trim_end_matches('/').to_owned())
            }
            _ => return Err(bad("needs exactly one of `path` and `prefix`")),
        };
        if self.methods.iter().any(|m| m.is_empty() || !m.bytes().all(|b| b.is_ascii_uppercase())) {
            return Err(bad("methods must be upper-case HTTP methods"));
        }
        if self.access == Access::Public && !(self.scopes.is_empty() && self.groups.is_empty()) {
            return Err(bad("a public rule cannot require scopes or groups"));
        }
        Ok(Rule { methods: self.methods, path, access: self.access, scopes: self.scopes, groups: self.groups })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = r#"
        [[rule]]
        path = "/healthz"
        access = "public"

        [[rule]]
        methods = ["GET"]
        prefix = "/api/mfa/"
        access = "authenticated"

        [[rule]]
        prefix = "/api/admin"
        access = "mfa"
        groups = ["admin", "ops"]

        [[rule]]
        prefix = "/api/reports"
        access = "authenticated"
        scopes = ["reports/read", "reports/list"]

        [[rule]]
        prefix = "/api"
        access = "authenticated"
    "#;

    fn access(policy: &Policy, method: &str, path: &str) -> Result<Access, BadRequest> {
        policy.requirement(method, path, RouteContext::default()).map(|r| r.access)
    }

    #[test]
    fn exact_and_segment_prefix_matching() {
        let p = Policy::from_toml(FILE).unwrap();
        assert_eq!(access(&p, "GET", "/healthz"), Ok(Access::Public));
        assert_eq!(access(&p, "GET", "/healthz/x"), Ok(Access::Mfa), "exact means exact");
        assert_eq!(access(&p, "GET", "/healthz?probe=1"), Ok(Access::Public), "query ignored");
        assert_eq!(access(&p, "GET", "/api/mfa"), Ok(Access::Authenticated));
        assert_eq!(access(&p, "GET", "/api/mfa/enrol"), Ok(Access::Authenticated));
        assert_eq!(access(&p, "GET", "/api/mfatastic"), Ok(Access::Authenticated), "falls to the /api rule");
        assert_eq!(access(&p, "GET", "/api/admin/users"), Ok(Access::Mfa));
        assert_eq!(access(&p, "GET", "/apiary"), Ok(Access::Mfa), "/api never matches /apiary");
    }

    #[test]
    fn methods_narrow_a_rule_and_first_match_wins() {
        let p = Policy::from_toml(FILE).unwrap();
        assert_eq!(access(&p, "POST", "/api/mfa/enrol"), Ok(Access::Authenticated), "POST falls through to /api");
        let p = Policy::from_toml(
            "[[rule]]\nmethods=[\"POST\"]\nprefix=\"/x\"\naccess=\"mfa\"\n[[rule]]\nprefix=\"/x\"\naccess=\"public\"\n",
        )
        .unwrap();
        assert_eq!(access(&p, "POST", "/x/1"), Ok(Access::Mfa));
        assert_eq!(access(&p, "GET", "/x/1"), Ok(Access::Public));
    }

    #[test]
    fn unmatched_routes_and_an_empty_policy_are_mfa() {
        assert_eq!(access(&Policy::default(), "GET", "/"), Ok(Access::Mfa));
        assert_eq!(access(&Policy::from_toml(FILE).unwrap(), "DELETE", "/other"), Ok(Access::Mfa));
    }

    #[test]
    fn odd_paths_are_refused() {
        let p = Policy::default();
        for path in [
            "/a/../b",
            "/a/./b",
            "/..",
            "//a",
            "/a//b",
            "/a%2fb",
            "/a%2Fb",
            "/a%2e%2e/b",
            "/a%5Cb",
            "/a\\b",
            "/a;b",
            "a/b",
            "",
            "/a b",
        ] {
            assert_eq!(access(&p, "GET", path), Err(BadRequest::AmbiguousPath), "{path:?}");
        }
        assert_eq!(access(&p, "GET", "/a/b.txt?x=../y"), Ok(Access::Mfa), "the query string is not the path");
    }

    #[test]
    fn context_extension_wins_and_unknown_values_are_mfa() {
        let p = Policy::from_toml(FILE).unwrap();
        let ctx = |access| RouteContext { access: Some(access), ..RouteContext::default() };
        assert_eq!(p.requirement("GET", "/healthz", ctx("mfa")).unwrap().access, Access::Mfa);
        assert_eq!(p.requirement("GET", "/api/admin", ctx("public")).unwrap().access, Access::Public);
        assert_eq!(p.requirement("GET", "/", ctx("authenticated")).unwrap().access, Access::Authenticated);
        for unknown in ["Public", "none", "", "allow"] {
            assert_eq!(p.requirement("GET", "/healthz", ctx(unknown)).unwrap().access, Access::Mfa, "{unknown:?}");
        }
        assert!(
            p.requirement("GET", "/a/../b", ctx("public")).is_err(),
            "odd paths are refused whatever the route says"
        );
    }

    #[test]
    fn invalid_files_are_refused() {
        for bad in [
            "[[rule]]\naccess=\"public\"\n",
            "[[rule]]\npath=\"/a\"\nprefix=\"/a\"\naccess=\"public\"\n",
            "[[rule]]\npath=\"/a\"\naccess=\"everyone\"\n",
            "[[rule]]\npath=\"a\"\naccess=\"mfa\"\n",
            "[[rule]]\npath=\"/a\"\naccess=\"mfa\"\nmethods=[\"get\"]\n",
            "[[rule]]\npath=\"/a\"\naccess=\"public\"\nscopes=[\"x\"]\n",
            "[[rule]]\npath=\"/a\"\naccess=\"mfa\"\ncolour=\"red\"\n",
            "rules = 1",
        ] {
            assert!(Policy::from_toml(bad).is_err(), "{bad}");
        }
    }
}
