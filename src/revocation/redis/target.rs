//! Which Redis the store talks to: one server, a primary behind Sentinel, or a Cluster, read from
//! the store's URL and its settings. Pure: nothing here connects.
//!
//! The shape is chosen by the URL's scheme, so that one setting (one Secret in Kubernetes) names
//! the whole deployment:
//!
//! - `redis://[USER[:PASSWORD]@]HOST[:PORT][/DB]`, `rediss://…` (TLS): one server;
//! - `redis+sentinel://[USER[:PASSWORD]@]S1[:PORT],S2[:PORT],…/MASTER[/DB]`, `rediss+sentinel://…`:
//!   the sentinels (port 26379 by default) and the master's name; USER and PASSWORD are the data
//!   nodes' (the sentinels' own come from their settings);
//! - `redis+cluster://[USER[:PASSWORD]@]N1[:PORT],N2[:PORT],…`, `rediss+cluster://…`: seed nodes.

use std::time::Duration;

use crate::secret::Secret;

/// How a Redis deployment is laid out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Topology {
    /// One server (or a managed primary endpoint), with its database number.
    Single {
        /// Host name or address.
        host: String,
        /// Port.
        port: u16,
        /// Database number.
        db: i64,
    },
    /// A primary found through sentinels, which follow it when a replica is promoted.
    Sentinel {
        /// The sentinels, `(host, port)`.
        sentinels: Vec<(String, u16)>,
        /// The name the sentinels monitor the primary under.
        master: String,
        /// Database number.
        db: i64,
    },
    /// A Redis Cluster, found through any of its nodes.
    Cluster {
        /// Seed nodes, `(host, port)`.
        seeds: Vec<(String, u16)>,
    },
}

/// Client certificate and key for mutual TLS, as paths.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientCert {
    /// PEM certificate chain.
    pub cert: std::path::PathBuf,
    /// PEM private key.
    pub key: std::path::PathBuf,
}

/// Credentials of one kind of node.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Credentials {
    /// ACL user name (Redis 6+); without it, the `default` user.
    pub username: Option<String>,
    /// Password.
    pub password: Option<Secret>,
}

/// How long a revocation waits for replicas before it is acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Durability {
    /// Replicas that must hold a revocation (Redis `WAIT`) before a logout is acknowledged; 0 does
    /// not wait.
    pub replicas: u32,
    /// How long to wait for them; past it the logout answers 503.
    pub timeout: Duration,
}

/// Everything needed to reach the store's Redis.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Where the data lives.
    pub topology: Topology,
    /// TLS to every node (and sentinel).
    pub tls: bool,
    /// A CA to trust instead of the system's (TLS only).
    pub ca_file: Option<std::path::PathBuf>,
    /// A client certificate (TLS only).
    pub client_cert: Option<ClientCert>,
    /// The data nodes' credentials.
    pub nodes: Credentials,
    /// The sentinels' own credentials (Sentinel only).
    pub sentinels: Credentials,
    /// What an acknowledged revocation waits for.
    pub durability: Durability,
}

/// The settings besides the URL.
#[derive(Debug, Clone, Default)]
pub struct TargetSettings {
    /// `--revocation-redis-username`.
    pub username: Option<String>,
    /// `--revocation-redis-password`.
    pub password: Option<Secret>,
    /// `--revocation-redis-sentinel-username`.
    pub sentinel_username: Option<String>,
    /// `--revocation-redis-sentinel-password`.
    pub sentinel_password: Option<Secret>,
    /// `--revocation-redis-ca-file`.
    pub ca_file: Option<std::path::PathBuf>,
    /// `--revocation-redis-client-cert`.
    pub client_cert: Option<std::path::PathBuf>,
    /// `--revocation-redis-client-key`.
    pub client_key: Option<std::path::PathBuf>,
    /// `--revocation-min-replicas`; without it, 0 for one server and 1 for Sentinel or Cluster.
    pub min_replicas: Option<u32>,
    /// `--revocation-replica-timeout-ms`.
    pub replica_timeout: Duration,
}

/// A setting that cannot be used, and why: `(setting, problem)`.
pub type TargetError = (&'static str, String);

const STORE: &str = "revocation-store";

impl Target {
    /// Reads the URL (`--revocation-store`) and the settings beside it.
    pub fn parse(url: &str, settings: TargetSettings) -> Result<Target, TargetError> {
        let bad = |problem: &str| (STORE, problem.to_owned());
        let (scheme, rest) = url.split_once("://").ok_or_else(|| bad("must be a redis URL"))?;
        let (tls, shape) = match scheme {
            "redis" => (false, ""),
            "rediss" => (true, ""),
            "redis+sentinel" => (false, "sentinel"),
            "rediss+sentinel" => (true, "sentinel"),
            "redis+cluster" => (false, "cluster"),
            "rediss+cluster" => (true, "cluster"),
            _ => {
                return Err(bad(
                    "must start with redis://, rediss://, redis+sentinel://, redis+cluster:// (or rediss+…)",
                ));
            }
        };
        let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
        if path.contains(['?', '#']) || authority.contains(['?', '#']) {
            return Err(bad("takes no query or fragment: use the revocation-redis-* settings"));
        }
        let (userinfo, hosts) = match authority.rsplit_once('@') {
            Some((userinfo, hosts)) => (Some(userinfo), hosts),
            None => (None, authority),
        };
        let from_url = userinfo.map(credentials).transpose().map_err(|p| bad(&p))?.unwrap_or_default();
        let default_port = if shape == "sentinel" { 26379 } else { 6379 };
        let hosts = host_list(hosts, default_port).map_err(|p| bad(&p))?;
        let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        let db = |segment: Option<&&str>| match segment {
            None => Ok(0),
            Some(s) => s
                .parse::<i64>()
                .ok()
                .filter(|n| (0..=15_999).contains(n))
                .ok_or_else(|| bad("names no database number")),
        };
        let topology = match shape {
            "" => {
                let [(host, port)] = <[_; 1]>::try_from(hosts).map_err(|_| {
                    bad("one server takes one host; several need redis+sentinel:// or redis+cluster://")
                })?;
                if segments.len() > 1 {
                    return Err(bad("has a path besides the database number"));
                }
                Topology::Single { host, port, db: db(segments.first())? }
            }
            "sentinel" => {
                let master =
                    segments.first().ok_or_else(|| bad("needs the master's name: redis+sentinel://S1,S2,S3/MASTER"))?;
                if segments.len() > 2 {
                    return Err(bad("has a path besides the master's name and the database number"));
                }
                let master = percent_encoding::percent_decode_str(master)
                    .decode_utf8()
                    .map_err(|_| bad("the master's name is not UTF-8"))?;
                Topology::Sentinel { sentinels: hosts, master: master.into_owned(), db: db(segments.get(1))? }
            }
            _ => {
                if !segments.is_empty() {
                    return Err(bad("a cluster has only database 0: give no path"));
                }
                Topology::Cluster { seeds: hosts }
            }
        };
        Target::with_settings(topology, tls, from_url, settings)
    }

    fn with_settings(
        topology: Topology,
        tls: bool,
        from_url: Credentials,
        s: TargetSettings,
    ) -> Result<Target, TargetError> {
        if from_url.password.is_some() && s.password.is_some() {
            return Err(("revocation-redis-password", "and a password in revocation-store disagree: give one".into()));
        }
        if from_url.username.is_some() && s.username.is_some() {
            return Err(("revocation-redis-username", "and a user in revocation-store disagree: give one".into()));
        }
        let sentinel = matches!(topology, Topology::Sentinel { .. });
        if !sentinel && (s.sentinel_username.is_some() || s.sentinel_password.is_some()) {
            return Err(("revocation-redis-sentinel-password", "is only for redis+sentinel:// stores".into()));
        }
        if !tls && (s.ca_file.is_some() || s.client_cert.is_some() || s.client_key.is_some()) {
            return Err((
                "revocation-redis-ca-file",
                "and the client certificate need TLS: a rediss… store URL".into(),
            ));
        }
        let client_cert = match (s.client_cert, s.client_key) {
            (Some(cert), Some(key)) => Some(ClientCert { cert, key }),
            (None, None) => None,
            _ => return Err(("revocation-redis-client-cert", "and revocation-redis-client-key come together".into())),
        };
        // Sentinel and Cluster exist to survive a primary's loss, which a revocation only survives
        // on a replica; one server may have none to wait for.
        let replicas = s.min_replicas.unwrap_or(if matches!(topology, Topology::Single { .. }) { 0 } else { 1 });
        if replicas > 0 && s.replica_timeout.is_zero() {
            return Err(("revocation-replica-timeout-ms", "must be above 0 (WAIT 0 waits for ever)".into()));
        }
        Ok(Target {
            topology,
            tls,
            ca_file: s.ca_file,
            client_cert,
            nodes: Credentials {
                username: from_url.username.or(s.username),
                password: from_url.password.or(s.password),
            },
            sentinels: Credentials { username: s.sentinel_username, password: s.sentinel_password },
            durability: Durability { replicas, timeout: s.replica_timeout },
        })
    }

    /// Where it points, without credentials, for log lines.
    pub fn shown(&self) -> String {
        let list = |hosts: &[(String, u16)]| hosts.iter().map(|(h, p)| host_port(h, *p)).collect::<Vec<_>>().join(",");
        let s = if self.tls { "s" } else { "" };
        match &self.topology {
            Topology::Single { host, port, db } => format!("redis{s}://{}/{db}", host_port(host, *port)),
            Topology::Sentinel { sentinels, master, db } => {
                format!("redis{s}+sentinel://{}/{master}/{db}", list(sentinels))
            }
            Topology::Cluster { seeds } => format!("redis{s}+cluster://{}", list(seeds)),
        }
    }
}

/// `host:port`, with an IPv6 address in brackets.
pub fn host_port(host: &str, port: u16) -> String {
    if host.contains(':') { format!("[{host}]:{port}") } else { format!("{host}:{port}") }
}

fn credentials(userinfo: &str) -> Result<Credentials, String> {
    let decode = |s: &str| {
        percent_encoding::percent_decode_str(s)
            .decode_utf8()
            .map(|s| s.into_owned())
            .map_err(|_| "has credentials that are not UTF-8 once decoded".to_owned())
    };
    let (user, password) = match userinfo.split_once(':') {
        Some((user, password)) => (user, Some(password)),
        None => (userinfo, None),
    };
    Ok(Credentials {
        username: Some(decode(user)?).filter(|u| !u.is_empty()),
        password: password.map(decode).transpose()?.filter(|p| !p.is_empty()).map(Secret::new),
    })
}

fn host_list(hosts: &str, default_port: u16) -> Result<Vec<(String, u16)>, String> {
    let mut list = Vec::new();
    for item in hosts.split(',') {
        let (host, port) = match item.strip_prefix('[') {
            Some(v6) => {
                let (host, after) = v6.split_once(']').ok_or("has an IPv6 address without its closing ]")?;
                (host, after.strip_prefix(':'))
            }
            None => match item.rsplit_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (item, None),
            },
        };
        let valid = |c: char| c.is_ascii_alphanumeric() || "-._:".contains(c);
        if host.is_empty() || !host.chars().all(valid) {
            return Err("names a host that is empty or not a host name".into());
        }
        let port = match port {
            None => default_port,
            Some(p) => p.parse::<u16>().ok().filter(|p| *p > 0).ok_or("names a port that is not 1 to 65535")?,
        };
        list.push((host.to_owned(), port));
    }
    Ok(list)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> TargetSettings {
        TargetSettings { replica_timeout: Duration::from_millis(500), ..TargetSettings::default() }
    }

    fn parse(url: &str) -> Result<Target, TargetError> {
        Target::parse(url, settings())
    }

    #[test]
    fn each_scheme_names_its_shape() {
        let single = parse("redis://:pw@cache.internal:6380/2").unwrap();
        assert_eq!(single.topology, Topology::Single { host: "cache.internal".into(), port: 6380, db: 2 });
        assert_eq!(single.nodes.password.as_ref().map(Secret::expose), Some("pw"));
        assert_eq!((single.tls, single.durability.replicas), (false, 0));

        let sentinel = parse("rediss+sentinel://authz:p%40ss@s1,s2:26380,[::1]/my%20primary/1").unwrap();
        let hosts = vec![("s1".into(), 26379), ("s2".into(), 26380), ("::1".into(), 26379)];
        assert_eq!(sentinel.topology, Topology::Sentinel { sentinels: hosts, master: "my primary".into(), db: 1 });
        assert_eq!(sentinel.nodes.username.as_deref(), Some("authz"));
        assert_eq!(sentinel.nodes.password.as_ref().map(Secret::expose), Some("p@ss"));
        assert_eq!((sentinel.tls, sentinel.durability.replicas), (true, 1));
        assert_eq!(sentinel.shown(), "rediss+sentinel://s1:26379,s2:26380,[::1]:26379/my primary/1");

        let cluster = parse("redis+cluster://n1:7000,n2:7001").unwrap();
        assert_eq!(cluster.topology, Topology::Cluster { seeds: vec![("n1".into(), 7000), ("n2".into(), 7001)] });
        assert_eq!(cluster.durability.replicas, 1);
        assert!(!cluster.shown().contains('@'));
    }

    #[test]
    fn a_url_that_cannot_be_read_stops_start_up_naming_the_setting() {
        for url in [
            "http://h:6379",
            "redis://a,b:6379",
            "redis+sentinel://s1,s2",
            "redis+sentinel://s1/m/1/extra",
            "redis+cluster://n1/3",
            "redis://h:0",
            "redis://h:99999",
            "redis://h/x",
            "redis://h/0?password=x",
            "redis+cluster://n1,,n2",
            "redis://h%20x:6379",
            "redis://[::1:6379",
        ] {
            assert_eq!(parse(url).map(|_| ()).unwrap_err().0, "revocation-store", "{url}");
        }
        assert!(parse("redis://[::1]:6379/0").is_ok(), "the positive control: an IPv6 host");
    }

    #[test]
    fn two_settings_that_disagree_stop_start_up() {
        let with = |f: fn(&mut TargetSettings)| {
            let mut s = settings();
            f(&mut s);
            s
        };
        let password = with(|s| s.password = Some(Secret::new("x".into())));
        assert_eq!(Target::parse("redis://:y@h", password.clone()).unwrap_err().0, "revocation-redis-password");
        let ok = Target::parse("redis://h", password).unwrap();
        assert_eq!(ok.nodes.password.as_ref().map(Secret::expose), Some("x"), "the setting alone is used");

        let ca = with(|s| s.ca_file = Some("/ca.pem".into()));
        assert_eq!(Target::parse("redis://h", ca.clone()).unwrap_err().0, "revocation-redis-ca-file");
        assert!(Target::parse("rediss://h", ca).is_ok());

        let half = with(|s| s.client_cert = Some("/c.pem".into()));
        assert_eq!(Target::parse("rediss://h", half).unwrap_err().0, "revocation-redis-client-cert");

        let sentinel_pw = with(|s| s.sentinel_password = Some(Secret::new("s".into())));
        assert_eq!(
            Target::parse("redis://h", sentinel_pw.clone()).unwrap_err().0,
            "revocation-redis-sentinel-password"
        );
        assert!(Target::parse("redis+sentinel://s/m", sentinel_pw).is_ok());

        let no_wait = with(|s| s.replica_timeout = Duration::ZERO);
        assert_eq!(Target::parse("redis+cluster://n", no_wait.clone()).unwrap_err().0, "revocation-replica-timeout-ms");
        let explicit = with(|s| {
            s.replica_timeout = Duration::ZERO;
            s.min_replicas = Some(0);
        });
        assert_eq!(Target::parse("redis+cluster://n", explicit).unwrap().durability.replicas, 0);
    }
}
