//! Route access levels: what each route asks of a caller. Two sources combine, and neither can
//! weaken the other: Envoy's per-route context extensions set the route's floor, and a matching
//! rule of the policy file can only add to it (a stricter level, more scopes, more groups). When
//! Envoy names no level and no rule matches, the route is `mfa`: the policy fails closed.
//!
//! A path is matched in every spelling an upstream might route it by (as sent, with its
//! percent-encoded characters decoded, and either of those with letter case ignored), and gets
//! the strictest requirement of them all.

use std::borrow::Cow;
use std::path::Path;
use std::sync::{Arc, RwLock};

use serde::Deserialize;

use crate::authz::error::{BadRequest, Forbidden};
use crate::verify::claims::{Claims, Identity};

/// How much a route asks of its caller, from least to most.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
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

    /// The level's name, for the decision log.
    pub fn label(self) -> &'static str {
        match self {
            Access::Public => "public",
            Access::Authenticated => "authenticated",
            Access::Mfa => "mfa",
        }
    }
}

/// Whether a route's decisions are enforced, or only made, logged and counted (shadow mode, for
/// rolling a policy out). Enforcing is the stricter: where two sources disagree, it wins.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Denials are answered.
    Enforce,
    /// Denials are logged and counted; the request goes on.
    Shadow,
}

impl Mode {
    /// Reads a context-extension value; anything unknown enforces (fail closed).
    pub fn from_context(value: &str) -> Mode {
        if value == "shadow" { Mode::Shadow } else { Mode::Enforce }
    }
}

/// Which source set a route's level, for the decision log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LevelSource {
    /// Envoy's `access` context extension alone.
    Envoy,
    /// A rule of the policy file alone.
    Policy,
    /// Both: Envoy's floor and a matching rule.
    EnvoyAndPolicy,
    /// Neither: the file's default (`mfa`).
    Default,
}

impl LevelSource {
    /// The mode as the metrics and logs name it.
    pub fn label(self) -> &'static str {
        match self {
            LevelSource::Envoy => "envoy",
            LevelSource::Policy => "policy",
            LevelSource::EnvoyAndPolicy => "envoy+policy",
            LevelSource::Default => "default",
        }
    }
}

/// A list from the policy file, or a comma-separated one from a context extension.
#[derive(Debug, Clone, Copy)]
pub enum Names<'a> {
    /// From the policy file.
    Listed(&'a [String]),
    /// From Envoy: comma-separated.
    Joined(&'a str),
}

impl<'a> Names<'a> {
    /// The names, trimmed, empty ones skipped.
    pub fn iter(self) -> impl Iterator<Item = &'a str> {
        let (listed, joined) = match self {
            Names::Listed(list) => (list, ""),
            Names::Joined(text) => (&[][..], text),
        };
        listed.iter().map(String::as_str).chain(joined.split(',').map(str::trim)).filter(|s| !s.is_empty())
    }

    /// True when no name is given.
    pub fn is_empty(self) -> bool {
        self.iter().next().is_none()
    }
}

/// The most rules one requirement combines: one per spelling of the path (as sent and decoded,
/// each also without a trailing `/` and without a format suffix: 6), with case kept or ignored (2),
/// for the method and, for `HEAD`, `GET` too (2). Each attempt adds at most one rule, so this many
/// slots can never run out.
const MAX_RULES: usize = 24;

/// What one route requires: the strictest level of its sources, and every source's scopes,
/// groups and issuers.
#[derive(Debug, Clone, Copy)]
pub struct Requirement<'a> {
    /// The level the rule requires.
    pub access: Access,
    /// Envoy's per-route settings, when they named a level or issuers.
    envoy: Option<RouteContext<'a>>,
    /// The distinct rules that matched a spelling of the request, in the order first matched.
    rules: [Option<&'a Rule>; MAX_RULES],
    /// A source said `enforce`.
    explicit_enforce: bool,
    /// A matching rule said nothing of the mode (or nothing matched and Envoy said nothing): the
    /// process default (`--shadow`) applies to it.
    implicit_mode: bool,
    /// More than one issuer is configured: names of groups and scopes must be tied to issuers.
    multi_issuer: bool,
    /// Which source set the level.
    pub source: LevelSource,
}

/// The per-route settings Envoy sent (`check_settings.context_extensions`).
#[derive(Debug, Clone, Copy, Default)]
pub struct RouteContext<'a> {
    /// The `access` context extension.
    pub access: Option<&'a str>,
    /// The `scopes` context extension (space- or comma-separated).
    pub scopes: Option<&'a str>,
    /// The `groups` context extension (comma-separated).
    pub groups: Option<&'a str>,
    /// Issuer names, comma-separated: only tokens of these issuers pass.
    pub issuers: Option<&'a str>,
    /// `shadow` or `enforce`.
    pub mode: Option<&'a str>,
}

/// One source's lists: scopes, groups, issuers.
type Lists<'a> = (Names<'a>, Names<'a>, Names<'a>);

impl<'a> Requirement<'a> {
    /// True when this route's decisions are only observed: every source that speaks of the mode
    /// says `shadow`, where a matching rule without `mode` counts as the process default
    /// (`everywhere`, `--shadow`). One enforced source, in any spelling, enforces.
    pub fn shadow(&self, everywhere: bool) -> bool {
        !self.explicit_enforce && (!self.implicit_mode || everywhere)
    }

    fn lists(&self) -> impl Iterator<Item = Lists<'a>> + '_ {
        let envoy = self.envoy.map(|r| {
            let joined = |v: Option<&'a str>| Names::Joined(v.unwrap_or(""));
            (joined(r.scopes), joined(r.groups), joined(r.issuers))
        });
        let rules = self
            .rules
            .iter()
            .map_while(|r| *r)
            .map(|r| (Names::Listed(&r.scopes), Names::Listed(&r.groups), Names::Listed(&r.issuers)));
        envoy.into_iter().chain(rules)
    }

    fn scopes(&self) -> impl Iterator<Item = &'a str> + '_ {
        self.lists().flat_map(|(scopes, _, _)| scopes.iter())
    }

    /// True when the token's issuer is in every source's issuer list (a source without one
    /// accepts any). On a public route, a token of another issuer is anonymous.
    pub fn accepts_issuer(&self, claims: &Claims) -> bool {
        let issuer = &*claims.issuer_name;
        self.lists().all(|(_, _, names)| names.is_empty() || names.iter().any(|i| i == issuer))
    }

    /// True when groups or scopes are required but no source says of which issuer, while several
    /// are configured: `admin` could then be any issuer's `admin`.
    fn ambiguous(&self) -> bool {
        self.multi_issuer
            && self.lists().any(|(scopes, groups, _)| !scopes.is_empty() || !groups.is_empty())
            && self.lists().all(|(_, _, issuers)| issuers.is_empty())
    }

    /// Checks issuers, scopes, groups and the machine-token rules against verified claims.
    pub fn permits(&self, claims: &Claims) -> Result<(), Forbidden> {
        if !self.accepts_issuer(claims) {
            return Err(Forbidden::IssuerNotAccepted);
        }
        if self.ambiguous() {
            return Err(Forbidden::AmbiguousRoute);
        }
        if matches!(claims.identity, Identity::Machine)
            && (self.access == Access::Mfa || self.scopes().next().is_none())
        {
            // A machine has no user to enrol MFA, and only a scoped rule says what it may do.
            return Err(Forbidden::MachineTokenOnRoute);
        }
        if !self.scopes().all(|wanted| claims.has_scope(wanted)) {
            return Err(Forbidden::InsufficientScope);
        }
        let in_one_of = |groups: Names<'_>| groups.iter().any(|g| claims.groups.iter().any(|have| have == g));
        if !self.lists().all(|(_, groups, _)| groups.is_empty() || in_one_of(groups)) {
            return Err(Forbidden::MissingGroup);
        }
        Ok(())
    }
}

/// An ordered list of rules; first match wins.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    rules: Vec<Rule>,
    /// True when a rule's path holds an upper-case letter: then even an all-lower-case request path
    /// can match it once case is ignored.
    upper_case_rules: bool,
    /// The configured issuers' names (`for_issuers`); a reload is checked against them again.
    issuer_names: Arc<[String]>,
    /// More than one issuer is configured.
    multi_issuer: bool,
}

#[derive(Debug, Clone)]
struct Rule {
    methods: Vec<String>,
    path: PathMatch,
    access: Access,
    scopes: Vec<String>,
    groups: Vec<String>,
    issuers: Vec<String>,
    mode: Option<Mode>,
}

#[derive(Debug, Clone)]
enum PathMatch {
    Exact(String),
    /// Matches the path itself and anything below it, on whole segments.
    Prefix(String),
}

impl PathMatch {
    fn text(&self) -> &str {
        match self {
            PathMatch::Exact(p) | PathMatch::Prefix(p) => p,
        }
    }
}

/// The policy in force, replaced whole on reload; requests in flight keep the one they started with.
#[derive(Clone, Default)]
pub struct SharedPolicy(Arc<RwLock<Arc<Policy>>>);

crate::opaque_debug!(SharedPolicy);

impl SharedPolicy {
    /// Holds `policy`.
    pub fn new(policy: Policy) -> SharedPolicy {
        SharedPolicy(Arc::new(RwLock::new(Arc::new(policy))))
    }

    /// The policy in force.
    pub fn current(&self) -> Arc<Policy> {
        self.0.read().expect("policy lock").clone()
    }

    /// Puts `policy` in force (SIGHUP).
    pub fn replace(&self, policy: Policy) {
        *self.0.write().expect("policy lock") = Arc::new(policy);
    }
}

/// Why a policy file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// The policy file could not be read.
    #[error("cannot read policy file {path}: {error}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        error: std::io::Error,
    },
    /// Not a valid policy.
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

    /// A policy from its TOML text.
    pub fn from_toml(text: &str) -> Result<Policy, PolicyError> {
        let file: PolicyFile = toml::from_str(text).map_err(|e| PolicyError::Invalid(e.message().to_owned()))?;
        let rules: Vec<Rule> =
            file.rule.into_iter().enumerate().map(|(i, r)| r.validate(i + 1)).collect::<Result<_, _>>()?;
        let upper_case_rules = rules.iter().any(|r| r.path.text().bytes().any(|b| b.is_ascii_uppercase()));
        Ok(Policy { rules, upper_case_rules, issuer_names: Arc::from([]), multi_issuer: false })
    }

    /// Checks the policy against the configured issuers (their names): every issuer a rule names
    /// must exist, and with more than one issuer a rule that asks for groups or scopes must name
    /// its issuers, since the same group name may mean different people at two issuers.
    pub fn check_issuers(&self, names: &[String]) -> Result<(), PolicyError> {
        for (n, rule) in self.rules.iter().enumerate() {
            let bad = |what: String| PolicyError::Invalid(format!("rule {} ({}): {what}", n + 1, rule.path.text()));
            if let Some(unknown) = rule.issuers.iter().find(|i| !names.contains(i)) {
                return Err(bad(format!("issuers: {unknown:?} is not a configured issuer")));
            }
            if names.len() > 1 && rule.issuers.is_empty() && !(rule.groups.is_empty() && rule.scopes.is_empty()) {
                return Err(bad(
                    "asks for groups or scopes but names no issuers; with several issuers a group or scope \
                     name means something only at its own issuer: add `issuers = [...]`"
                        .into(),
                ));
            }
        }
        Ok(())
    }

    /// The policy tied to the configured issuers (their names, in order). With several, a route
    /// whose groups or scopes name no issuer is refused at request time (`check_issuers` stops
    /// start-up for the file's rules; Envoy's per-route settings are only seen per request).
    pub fn for_issuers(mut self, names: &[String]) -> Policy {
        self.multi_issuer = names.len() > 1;
        self.issuer_names = names.into();
        self
    }

    /// The issuers it was checked against (`for_issuers`).
    pub fn issuer_names(&self) -> &[String] {
        &self.issuer_names
    }

    /// The requirement for a request: Envoy's settings as the floor, raised by the first matching
    /// rule for each spelling of the path and method; `mfa` when neither says anything. `path` is
    /// as Envoy forwards it (query string included); odd paths are refused, not guessed at.
    pub fn requirement<'a>(
        &'a self,
        method: &str,
        path: &str,
        route: RouteContext<'a>,
    ) -> Result<Requirement<'a>, BadRequest> {
        let path = checked_path(path)?;
        let mut requirement = Requirement {
            access: Access::Public,
            envoy: None,
            rules: [None; MAX_RULES],
            explicit_enforce: route.mode.map(Mode::from_context) == Some(Mode::Enforce),
            implicit_mode: false,
            multi_issuer: self.multi_issuer,
            source: LevelSource::Default,
        };
        if route.access.is_some() || route.issuers.is_some() {
            // Issuers without a level are a restriction all the same (the level stays the policy's).
            requirement.access = route.access.map_or(Access::Public, Access::from_context);
            requirement.envoy = Some(route);
        }
        let decoded = decoded(path);
        let mut spellings = Spellings::default();
        spellings.add_forms(path.as_bytes());
        if path.contains('%') {
            spellings.add_forms(&decoded);
        }
        let may_fold = self.upper_case_rules || decoded.iter().any(u8::is_ascii_uppercase);
        // `HEAD` is answered by the `GET` handler in most frameworks: it gets `GET`'s rules too.
        let methods: &[&str] = if method == "HEAD" { &["HEAD", "GET"] } else { &[method] };
        let (mut rules, mut sent_matched) = (0, false);
        for (s, spelling) in spellings.iter().enumerate() {
            for fold_case in [false, true] {
                if fold_case && !may_fold {
                    continue;
                }
                for (m, method) in methods.iter().enumerate() {
                    let Some(rule) = self.rules.iter().find(|r| r.matches(method, spelling, fold_case)) else {
                        continue;
                    };
                    sent_matched |= s == 0 && !fold_case && m == 0;
                    if requirement.rules[..rules].iter().any(|r| r.is_some_and(|r| std::ptr::eq(r, rule))) {
                        continue;
                    }
                    requirement.access = requirement.access.max(rule.access);
                    match rule.mode {
                        Some(Mode::Enforce) => requirement.explicit_enforce = true,
                        Some(Mode::Shadow) => {}
                        None => requirement.implicit_mode = true,
                    }
                    requirement.rules[rules] = Some(rule);
                    rules += 1;
                }
            }
        }
        if rules == 0 && route.mode.is_none() {
            // Nothing said anything of the mode: the process default.
            requirement.implicit_mode = true;
        }
        if route.access.is_none() && !sent_matched {
            // The path as sent matches no rule and Envoy said nothing: the file's default.
            requirement.access = Access::Mfa;
        }
        requirement.source = match (route.access.is_some(), rules > 0) {
            (true, true) => LevelSource::EnvoyAndPolicy,
            (true, false) => LevelSource::Envoy,
            (false, true) => LevelSource::Policy,
            (false, false) => LevelSource::Default,
        };
        Ok(requirement)
    }
}

/// The spellings of a path an upstream router may take for the same route: the path itself,
/// without a trailing `/` (Express, older Spring), and without a format suffix on its last
/// segment (`/admin.json`: Rails, Spring's suffix patterns). At most 3 for each of the 2 texts
/// (as sent, decoded).
#[derive(Default)]
struct Spellings<'p> {
    forms: [&'p [u8]; 6],
    len: usize,
}

impl<'p> Spellings<'p> {
    fn add_forms(&mut self, path: &'p [u8]) {
        let unslashed = match path {
            [rest @ .., b'/'] if !rest.is_empty() => rest,
            _ => path,
        };
        let segment = unslashed.iter().rposition(|&b| b == b'/').map_or(0, |i| i + 1);
        let unsuffixed = match unslashed[segment..].iter().position(|&b| b == b'.') {
            Some(dot) if dot > 0 => &unslashed[..segment + dot],
            _ => unslashed,
        };
        for form in [path, unslashed, unsuffixed] {
            if !self.forms[..self.len].contains(&form) {
                self.forms[self.len] = form;
                self.len += 1;
            }
        }
    }

    /// The path as sent comes first.
    fn iter(&self) -> impl Iterator<Item = &'p [u8]> + '_ {
        self.forms[..self.len].iter().copied()
    }
}

/// The path as an upstream that percent-decodes it would read it (only when it holds a `%`).
fn decoded(path: &str) -> Cow<'_, [u8]> {
    if path.contains('%') {
        Cow::Owned(percent_encoding::percent_decode_str(path).collect())
    } else {
        Cow::Borrowed(path.as_bytes())
    }
}

impl Rule {
    fn matches(&self, method: &str, path: &[u8], fold_case: bool) -> bool {
        let same = |a: &[u8], b: &[u8]| if fold_case { a.eq_ignore_ascii_case(b) } else { a == b };
        (self.methods.is_empty() || self.methods.iter().any(|m| m == method))
            && match &self.path {
                PathMatch::Exact(p) => same(path, p.as_bytes()),
                PathMatch::Prefix(p) => {
                    let p = p.as_bytes();
                    p.is_empty()
                        || (path.len() >= p.len()
                            && same(&path[..p.len()], p)
                            && (path.len() == p.len() || path[p.len()] == b'/'))
                }
            }
    }
}

/// The path without its query string, refused when it still holds anything an upstream might
/// read differently from us: dot segments, `//`, encoded `/`, `.`, `\` or `%` (a double encoding:
/// an upstream that decodes twice turns `%252f` into `/`), a backslash or a `;`.
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
        || path.contains("%25")
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
    /// Issuer names (`[[issuer]]` `name`, or `default`); only their tokens pass.
    #[serde(default)]
    issuers: Vec<String>,
    /// `shadow` to only observe this rule's decisions, `enforce` to enforce them under `--shadow`.
    mode: Option<Mode>,
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
        if let Some(name) = self.issuers.iter().find(|i| !crate::config::issuer::valid_name(i)) {
            return Err(bad(&format!("issuers: {name:?} is not an issuer name")));
        }
        Ok(Rule {
            methods: self.methods,
            path,
            access: self.access,
            scopes: self.scopes,
            groups: self.groups,
            issuers: self.issuers,
            mode: self.mode,
        })
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

    fn ctx(access: &str) -> RouteContext<'_> {
        RouteContext { access: Some(access), ..RouteContext::default() }
    }

    fn user(groups: &[&str], scope: &str) -> Claims {
        Claims {
            identity: Identity::User { sub: uuid::Uuid::from_u128(1), username: "u".into() },
            groups: groups.iter().map(|g| g.to_string()).collect::<Vec<_>>().into(),
            client_id: "c".into(),
            scope: Some(scope.into()),
            jti: None,
            origin_jti: None,
            exp: 0,
            iat: None,
            auth_time: None,
            mapped: Box::default(),
            issuer: 0,
            issuer_name: "staff".into(),
            iss: Arc::from(""),
            second_factor: None,
        }
    }

    #[test]
    fn envoy_sets_the_floor_and_a_matching_rule_only_adds() {
        let p = Policy::from_toml(FILE).unwrap();
        assert_eq!(p.requirement("GET", "/healthz", ctx("mfa")).unwrap().access, Access::Mfa, "file cannot lower");
        assert_eq!(p.requirement("GET", "/api/admin", ctx("public")).unwrap().access, Access::Mfa, "file raises");
        assert_eq!(p.requirement("GET", "/", ctx("authenticated")).unwrap().access, Access::Authenticated);
        assert_eq!(
            p.requirement("GET", "/unmatched", ctx("public")).unwrap().access,
            Access::Public,
            "the file's unmatched default applies only when Envoy names no level"
        );
        for unknown in ["Public", "none", "", "allow"] {
            assert_eq!(p.requirement("GET", "/healthz", ctx(unknown)).unwrap().access, Access::Mfa, "{unknown:?}");
        }
        assert!(
            p.requirement("GET", "/a/../b", ctx("public")).is_err(),
            "odd paths are refused whatever the route says"
        );
    }

    #[test]
    fn the_rule_groups_apply_under_an_envoy_level() {
        // The shipped setup: Envoy's catch-all says `mfa`, the file says /api/admin needs `admin`.
        let p = Policy::from_toml(FILE).unwrap();
        let rule = p.requirement("GET", "/api/admin/users", ctx("mfa")).unwrap();
        assert_eq!(rule.permits(&user(&["admin"], "")), Ok(()));
        assert_eq!(rule.permits(&user(&["staff"], "")), Err(Forbidden::MissingGroup));
        // Envoy's groups and the file's groups are both required; so are both scope lists.
        let both = RouteContext {
            access: Some("mfa"),
            groups: Some("staff"),
            scopes: Some("extra"),
            ..RouteContext::default()
        };
        let rule = p.requirement("GET", "/api/admin/users", both).unwrap();
        assert_eq!(rule.permits(&user(&["admin", "staff"], "extra")), Ok(()));
        assert_eq!(rule.permits(&user(&["admin"], "extra")), Err(Forbidden::MissingGroup));
        assert_eq!(rule.permits(&user(&["staff"], "extra")), Err(Forbidden::MissingGroup));
        assert_eq!(rule.permits(&user(&["admin", "staff"], "")), Err(Forbidden::InsufficientScope));
        let scoped = RouteContext { access: Some("authenticated"), scopes: Some("a"), ..RouteContext::default() };
        let rule = p.requirement("GET", "/api/reports/1", scoped).unwrap();
        assert_eq!(rule.permits(&user(&[], "a reports/read reports/list")), Ok(()));
        assert_eq!(rule.permits(&user(&[], "reports/read reports/list")), Err(Forbidden::InsufficientScope));
        assert_eq!(rule.permits(&user(&[], "a reports/read")), Err(Forbidden::InsufficientScope));
    }

    #[test]
    fn every_spelling_of_a_path_gets_at_least_its_rules_requirement() {
        let p = Policy::from_toml(FILE).unwrap();
        for path in ["/api/admin/x", "/API/Admin/x", "/api/ADMIN", "/api/%61dmin/x", "/%41PI/admin/x"] {
            for route in [RouteContext::default(), ctx("mfa"), ctx("authenticated"), ctx("public")] {
                let rule = p.requirement("GET", path, route).unwrap();
                assert_eq!(rule.access, Access::Mfa, "{path} {route:?}");
                assert_eq!(rule.permits(&user(&["ops"], "")), Ok(()), "{path}: a listed group passes");
                assert_eq!(rule.permits(&user(&["x"], "")), Err(Forbidden::MissingGroup), "{path} {route:?}");
            }
        }
        // A rule written in upper case still reaches a lower-case path.
        let upper = Policy::from_toml("[[rule]]\nprefix = \"/API\"\naccess = \"mfa\"\ngroups = [\"ops\"]\n").unwrap();
        let rule = upper.requirement("GET", "/api/x", ctx("authenticated")).unwrap();
        assert_eq!((rule.access, rule.permits(&user(&["x"], ""))), (Access::Mfa, Err(Forbidden::MissingGroup)));
        // A public exact rule is not widened to other spellings: those keep the default.
        assert_eq!(access(&p, "GET", "/healthz"), Ok(Access::Public));
        assert_eq!(access(&p, "GET", "/HEALTHZ"), Ok(Access::Mfa));
        assert_eq!(access(&p, "GET", "/API/mfa/x"), Ok(Access::Mfa), "the stricter default, not the bootstrap rule");
    }

    #[test]
    fn a_double_encoding_is_refused() {
        let p = Policy::from_toml(FILE).unwrap();
        for path in ["/api/mfa/..%252fadmin/users", "/a%25", "/a%252e%252e/b", "/%2541"] {
            assert_eq!(access(&p, "GET", path), Err(BadRequest::AmbiguousPath), "{path}");
        }
        assert_eq!(access(&p, "GET", "/api/caf%C3%A9"), Ok(Access::Authenticated), "other encodings are fine");
    }

    #[test]
    fn one_enforced_spelling_is_never_shadowed() {
        // The issue's case: an enforced exact rule, and its prefix in shadow.
        let p = Policy::from_toml(
            "[[rule]]\npath = \"/api/v2/items:purge\"\naccess = \"mfa\"\n\
             [[rule]]\nprefix = \"/api/v2\"\naccess = \"authenticated\"\nmode = \"shadow\"\n",
        )
        .unwrap();
        let shadow = |path: &str, everywhere: bool| p.requirement("POST", path, ctx("mfa")).unwrap().shadow(everywhere);
        assert!(shadow("/api/v2/items", false), "only the shadowed prefix matches: shadowed");
        assert!(!shadow("/api/v2/items:purge", false), "the enforced rule matches as sent");
        assert!(!shadow("/api/v2/items%3Apurge", false), "the prefix matches as sent, the exact rule once decoded");
        assert!(shadow("/api/v2/items%3Apurge", true), "under --shadow the rule without mode is shadowed too");
        // An explicit enforce wins even under --shadow; Envoy's shadow does not outvote a rule.
        let p = Policy::from_toml(
            "[[rule]]\npath = \"/a/x\"\naccess = \"mfa\"\nmode = \"enforce\"\n\
             [[rule]]\nprefix = \"/a\"\naccess = \"mfa\"\nmode = \"shadow\"\n",
        )
        .unwrap();
        assert!(!p.requirement("GET", "/A/x", ctx("mfa")).unwrap().shadow(true), "the folded spelling enforces");
        let envoy_shadow = RouteContext { mode: Some("shadow"), ..ctx("mfa") };
        assert!(!p.requirement("GET", "/a/x", envoy_shadow).unwrap().shadow(false));
        assert!(p.requirement("GET", "/a/y", envoy_shadow).unwrap().shadow(false), "all sources say shadow");
        assert!(p.requirement("GET", "/other", envoy_shadow).unwrap().shadow(false), "Envoy alone says shadow");
        assert!(!p.requirement("GET", "/other", ctx("mfa")).unwrap().shadow(false), "nothing says: the default");
    }

    #[test]
    fn spellings_upstream_routers_treat_alike_get_the_rules_requirement() {
        let p = Policy::from_toml(
            "[[rule]]\nprefix = \"/api/admin\"\naccess = \"mfa\"\ngroups = [\"admin\"]\n\
             [[rule]]\npath = \"/api/export\"\naccess = \"mfa\"\ngroups = [\"ops\"]\n\
             [[rule]]\nmethods = [\"GET\"]\npath = \"/api/report\"\naccess = \"mfa\"\ngroups = [\"ops\"]\n\
             [[rule]]\npath = \"/.well-known/jwks.json\"\naccess = \"public\"\n\
             [[rule]]\nprefix = \"/api\"\naccess = \"authenticated\"\n",
        )
        .unwrap();
        let outsider = user(&["staff"], "");
        let refused = |method: &str, path: &str, group: &str| {
            let rule = p.requirement(method, path, RouteContext::default()).unwrap();
            (rule.access, rule.permits(&outsider), rule.permits(&user(&[group], "")))
        };
        let gated = (Access::Mfa, Err(Forbidden::MissingGroup), Ok(()));
        // A format suffix (Rails, Spring's suffix patterns) routes to the same handler.
        assert_eq!(refused("GET", "/api/admin.json", "admin"), gated);
        assert_eq!(refused("GET", "/api/admin/users.xml", "admin"), gated);
        assert_eq!(refused("GET", "/api/export.csv", "ops"), gated);
        // A trailing slash (Express, older Spring) too.
        assert_eq!(refused("GET", "/api/export/", "ops"), gated);
        assert_eq!(refused("GET", "/api/export.csv/", "ops"), gated);
        // HEAD runs the GET handler (Express, Flask, Go's ServeMux, Spring).
        assert_eq!(refused("HEAD", "/api/report", "ops"), gated);
        assert_eq!(refused("GET", "/api/report", "ops"), gated);
        // Positive controls: other methods and other paths keep their own rules.
        assert_eq!(refused("POST", "/api/report", "ops").1, Ok(()), "POST is not GET");
        assert_eq!(refused("GET", "/api/exports", "ops").1, Ok(()), "another path");
        assert_eq!(refused("GET", "/api/items.json", "ops").0, Access::Authenticated);
        assert_eq!(access(&p, "GET", "/.well-known/jwks.json"), Ok(Access::Public), "a dot-named segment");
        assert_eq!(access(&p, "OPTIONS", "/api/report"), Ok(Access::Authenticated), "OPTIONS is not GET");
    }

    fn of(issuer: &str, groups: &[&str], scope: &str) -> Claims {
        Claims { issuer_name: issuer.into(), ..user(groups, scope) }
    }

    #[test]
    fn with_several_issuers_a_group_or_scope_must_name_its_issuers() {
        let names = ["staff".to_owned(), "partners".to_owned()];
        let loose =
            Policy::from_toml("[[rule]]\nprefix = \"/api/admin\"\naccess = \"mfa\"\ngroups = [\"admin\"]\n").unwrap();
        let refused = loose.check_issuers(&names).expect_err("ambiguous with two issuers").to_string();
        assert!(refused.contains("rule 1 (/api/admin)") && refused.contains("names no issuers"), "{refused}");
        assert!(loose.check_issuers(&names[..1]).is_ok(), "one issuer: no ambiguity");
        let unknown =
            Policy::from_toml("[[rule]]\nprefix = \"/a\"\naccess = \"mfa\"\nissuers = [\"nobody\"]\n").unwrap();
        assert!(
            unknown.check_issuers(&names).unwrap_err().to_string().contains("\"nobody\" is not a configured issuer")
        );
        // Tied to its issuer, the rule means the staff pool's admin group only.
        let tied = Policy::from_toml(
            "[[rule]]\nprefix = \"/api/admin\"\naccess = \"mfa\"\ngroups = [\"admin\"]\nissuers = [\"staff\"]\n",
        )
        .unwrap();
        tied.check_issuers(&names).expect("tied to staff");
        let tied = tied.for_issuers(&names);
        let rule = tied.requirement("GET", "/api/admin/users", ctx("mfa")).unwrap();
        assert_eq!(rule.permits(&of("staff", &["admin"], "")), Ok(()));
        assert_eq!(rule.permits(&of("partners", &["admin"], "")), Err(Forbidden::IssuerNotAccepted));
        // Envoy's per-route groups without issuers, seen only at request time: refused for all.
        let loose = loose.for_issuers(&names);
        let envoy = RouteContext { groups: Some("admin"), ..ctx("mfa") };
        let rule = loose.requirement("GET", "/other", envoy).unwrap();
        assert_eq!(rule.permits(&of("staff", &["admin"], "")), Err(Forbidden::AmbiguousRoute));
        assert_eq!(rule.permits(&of("partners", &["admin"], "")), Err(Forbidden::AmbiguousRoute));
        let scoped = RouteContext { scopes: Some("read"), ..ctx("mfa") };
        assert_eq!(
            loose.requirement("GET", "/x", scoped).unwrap().permits(&of("staff", &[], "read")),
            Err(Forbidden::AmbiguousRoute)
        );
        // Naming the issuers there too makes it unambiguous.
        let named = RouteContext { issuers: Some("staff"), ..envoy };
        let rule = loose.requirement("GET", "/other", named).unwrap();
        assert_eq!(rule.permits(&of("staff", &["admin"], "")), Ok(()));
        assert_eq!(rule.permits(&of("partners", &["admin"], "")), Err(Forbidden::IssuerNotAccepted));
    }

    #[test]
    fn a_public_routes_issuers_decide_whose_identity_it_sees() {
        let p = Policy::from_toml("[[rule]]\npath = \"/news\"\naccess = \"public\"\nissuers = [\"staff\"]\n").unwrap();
        let rule = p.requirement("GET", "/news", RouteContext::default()).unwrap();
        assert_eq!(rule.access, Access::Public);
        assert!(rule.accepts_issuer(&of("staff", &[], "")));
        assert!(!rule.accepts_issuer(&of("partners", &[], "")));
        let envoy = RouteContext { issuers: Some("staff"), ..ctx("public") };
        let empty = Policy::default();
        let rule = empty.requirement("GET", "/x", envoy).unwrap();
        assert_eq!(rule.access, Access::Public);
        assert!(rule.accepts_issuer(&of("staff", &[], "")) && !rule.accepts_issuer(&of("partners", &[], "")));
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
