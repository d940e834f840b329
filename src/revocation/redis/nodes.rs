//! The connections a [`Target`] needs, made with the `redis` crate's own clients: a command
//! connection to whoever holds the list now (the server, the primary the sentinels name, or the
//! cluster), and a subscription to a node that hears every publish.

use std::time::Duration;

use redis::aio::{ConnectionLike, MultiplexedConnection, PubSub};
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::sentinel::{SentinelClient, SentinelClientBuilder, SentinelServerType};
use redis::{Client, ConnectionAddr, IntoConnectionInfo, RedisFuture, TlsCertificates, TlsMode};
use tokio::sync::Mutex;

use super::target::{Credentials, Target, Topology, host_port};

/// Clients for one deployment.
pub struct Nodes {
    kind: Kind,
}

crate::opaque_debug!(Nodes);

enum Kind {
    Single(Client),
    Sentinel {
        client: Mutex<SentinelClient>,
        master: String,
        /// A connection to one sentinel, kept to ask each second where the primary is.
        asking: Mutex<Option<MultiplexedConnection>>,
    },
    Cluster {
        client: ClusterClient,
        /// A cluster connection kept to ask which node serves the list's slot.
        asking: Mutex<Option<ClusterConnection>>,
        /// The list's slot, asked once (`CLUSTER KEYSLOT`): a key's slot never changes.
        slot: std::sync::OnceLock<i64>,
        /// To reach the node that serves it (credentials, TLS).
        target: Box<Target>,
        certs: Option<TlsCertificates>,
    },
}

/// A command connection: one node's, or the cluster's (which routes by key and follows failovers).
#[derive(Clone)]
pub enum Commands {
    /// One server or the primary.
    Node(MultiplexedConnection),
    /// The cluster.
    Cluster(ClusterConnection),
}

crate::opaque_debug!(Commands);

impl ConnectionLike for Commands {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a redis::Cmd) -> RedisFuture<'a, redis::Value> {
        match self {
            Commands::Node(c) => c.req_packed_command(cmd),
            Commands::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<redis::Value>> {
        match self {
            Commands::Node(c) => c.req_packed_commands(pipeline, offset, count),
            Commands::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Commands::Node(c) => c.get_db(),
            Commands::Cluster(c) => c.get_db(),
        }
    }
}

fn read(path: &std::path::Path, setting: &str) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("{setting}: cannot read {}: {e}", path.display()))
}

fn certificates(target: &Target) -> Result<Option<TlsCertificates>, String> {
    if !target.tls || (target.ca_file.is_none() && target.client_cert.is_none()) {
        return Ok(None);
    }
    let root_cert = target.ca_file.as_deref().map(|p| read(p, "revocation-redis-ca-file")).transpose()?;
    let client_tls = match &target.client_cert {
        Some(c) => Some(redis::ClientTlsConfig {
            client_cert: read(&c.cert, "revocation-redis-client-cert")?,
            client_key: read(&c.key, "revocation-redis-client-key")?,
        }),
        None => None,
    };
    Ok(Some(TlsCertificates { client_tls, root_cert }))
}

/// A client for one node, with the data nodes' credentials.
fn node(host: &str, port: u16, db: i64, target: &Target, certs: &Option<TlsCertificates>) -> Result<Client, String> {
    let scheme = if target.tls { "rediss" } else { "redis" };
    let info =
        format!("{scheme}://{}/{db}", host_port(host, port)).into_connection_info().map_err(|e| e.to_string())?;
    let settings = with_credentials(info.redis_settings().clone(), &target.nodes);
    let info = info.set_redis_settings(settings);
    match certs {
        Some(certs) => Client::build_with_tls(info, certs.clone()),
        None => Client::open(info),
    }
    .map_err(|e| e.to_string())
}

fn with_credentials(mut settings: redis::RedisConnectionInfo, credentials: &Credentials) -> redis::RedisConnectionInfo {
    if let Some(user) = &credentials.username {
        settings = settings.set_username(user);
    }
    if let Some(password) = &credentials.password {
        settings = settings.set_password(password.expose());
    }
    settings
}

/// The address a client connects to, as `host:port`.
fn address(client: &Client) -> String {
    match client.get_connection_info().addr() {
        ConnectionAddr::Tcp(host, port) | ConnectionAddr::TcpTls { host, port, .. } => host_port(host, *port),
        other => other.to_string(),
    }
}

impl Nodes {
    /// Builds the clients; connects to nothing. Errors name the setting at fault.
    pub fn open(target: &Target, timeout: Duration) -> Result<Nodes, String> {
        let certs = certificates(target)?;
        let kind = match &target.topology {
            Topology::Single { host, port, db } => Kind::Single(node(host, *port, *db, target, &certs)?),
            Topology::Sentinel { sentinels, master, db } => {
                let addresses = sentinels.iter().map(|(host, port)| match target.tls {
                    true => {
                        ConnectionAddr::TcpTls { host: host.clone(), port: *port, insecure: false, tls_params: None }
                    }
                    false => ConnectionAddr::Tcp(host.clone(), *port),
                });
                let mut builder = SentinelClientBuilder::new(addresses, master, SentinelServerType::Master)
                    .map_err(|e| e.to_string())?
                    .set_client_to_redis_db(*db);
                if let Some(user) = &target.nodes.username {
                    builder = builder.set_client_to_redis_username(user);
                }
                if let Some(password) = &target.nodes.password {
                    builder = builder.set_client_to_redis_password(password.expose());
                }
                if let Some(user) = &target.sentinels.username {
                    builder = builder.set_client_to_sentinel_username(user);
                }
                if let Some(password) = &target.sentinels.password {
                    builder = builder.set_client_to_sentinel_password(password.expose());
                }
                if target.tls {
                    builder = builder
                        .set_client_to_redis_tls_mode(TlsMode::Secure)
                        .set_client_to_sentinel_tls_mode(TlsMode::Secure);
                    if let Some(certs) = &certs {
                        builder = builder
                            .set_client_to_redis_certificates(certs.clone())
                            .set_client_to_sentinel_certificates(certs.clone());
                    }
                }
                Kind::Sentinel {
                    client: Mutex::new(builder.build().map_err(|e| e.to_string())?),
                    master: master.clone(),
                    asking: Mutex::new(None),
                }
            }
            Topology::Cluster { seeds } => {
                let infos = seeds
                    .iter()
                    .map(|(host, port)| node(host, *port, 0, target, &certs).map(|c| c.get_connection_info().clone()))
                    .collect::<Result<Vec<_>, _>>()?;
                let mut builder = redis::cluster::ClusterClientBuilder::new(infos)
                    .connection_timeout(timeout)
                    .response_timeout(timeout);
                if let Some(user) = &target.nodes.username {
                    builder = builder.username(user);
                }
                if let Some(password) = &target.nodes.password {
                    builder = builder.password(password.expose());
                }
                if target.tls {
                    builder = builder.tls(TlsMode::Secure);
                    if let Some(certs) = &certs {
                        builder = builder.certs(certs.clone());
                    }
                }
                Kind::Cluster {
                    client: builder.build().map_err(|e| e.to_string())?,
                    asking: Mutex::new(None),
                    slot: std::sync::OnceLock::new(),
                    target: Box::new(target.clone()),
                    certs,
                }
            }
        };
        Ok(Nodes { kind })
    }

    /// A command connection to whoever holds the list now.
    pub async fn commands(&self) -> redis::RedisResult<Commands> {
        match &self.kind {
            Kind::Single(client) => client.get_multiplexed_async_connection().await.map(Commands::Node),
            Kind::Sentinel { client, .. } => {
                let primary = client.lock().await.async_get_client().await?;
                primary.get_multiplexed_async_connection().await.map(Commands::Node)
            }
            Kind::Cluster { client, .. } => client.get_async_connection().await.map(Commands::Cluster),
        }
    }

    /// A subscription on the node every revocation is published on (the server, the primary the
    /// sentinels name, or the primary serving the list's slot), and that node's address (Sentinel
    /// and Cluster, where it can move).
    ///
    /// In a Cluster the subscription is on the slot's primary, not any node: a publish reaches the
    /// other nodes over the cluster bus, and a node whose bus is not (yet) linked, such as one just
    /// restarted, can answer pings while it misses publishes. On the primary that ran the publish, a
    /// ping's answer comes after it.
    pub async fn subscription(&self, key: &str) -> redis::RedisResult<(PubSub, Option<String>)> {
        match &self.kind {
            Kind::Single(client) => Ok((client.get_async_pubsub().await?, None)),
            Kind::Sentinel { client, .. } => {
                // The crate checks that the node the sentinels name calls itself master (ROLE).
                let primary = client.lock().await.async_get_client().await?;
                Ok((primary.get_async_pubsub().await?, Some(address(&primary))))
            }
            Kind::Cluster { target, certs, .. } => {
                let (host, port) = self.slot_primary(key).await?;
                let node = node(&host, port, 0, target, certs)
                    .map_err(|e| redis::RedisError::from((redis::ErrorKind::InvalidClientConfig, "node", e)))?;
                Ok((node.get_async_pubsub().await?, Some(host_port(&host, port))))
            }
        }
    }

    /// Where revocations are published now: with Sentinel the primary the sentinels name, in a
    /// Cluster the primary serving `key`'s slot; `None` for one server.
    pub async fn primary(&self, key: &str) -> redis::RedisResult<Option<String>> {
        match &self.kind {
            Kind::Single(_) => Ok(None),
            Kind::Sentinel { client, master, asking } => {
                let mut slot = asking.lock().await;
                let mut connection = match slot.take() {
                    Some(c) => c,
                    None => {
                        client
                            .lock()
                            .await
                            .async_get_sentinel_client()
                            .await?
                            .get_multiplexed_async_connection()
                            .await?
                    }
                };
                let (host, port): (String, u16) = redis::cmd("SENTINEL")
                    .arg("GET-MASTER-ADDR-BY-NAME")
                    .arg(master)
                    .query_async(&mut connection)
                    .await?;
                *slot = Some(connection);
                Ok(Some(host_port(&host, port)))
            }
            Kind::Cluster { .. } => {
                let (host, port) = self.slot_primary(key).await?;
                Ok(Some(host_port(&host, port)))
            }
        }
    }

    /// The primary serving `key`'s slot, as the cluster says now (`CLUSTER KEYSLOT`, `CLUSTER SLOTS`).
    async fn slot_primary(&self, key: &str) -> redis::RedisResult<(String, u16)> {
        let Kind::Cluster { client, asking, slot: known, .. } = &self.kind else {
            return Err((redis::ErrorKind::InvalidClientConfig, "not a cluster").into());
        };
        let mut kept = asking.lock().await;
        let mut connection = match kept.take() {
            Some(c) => c,
            None => client.get_async_connection().await?,
        };
        let slot = match known.get() {
            Some(slot) => *slot,
            None => {
                let slot: i64 = redis::cmd("CLUSTER").arg("KEYSLOT").arg(key).query_async(&mut connection).await?;
                *known.get_or_init(|| slot)
            }
        };
        let ranges: Vec<redis::Value> = redis::cmd("CLUSTER").arg("SLOTS").query_async(&mut connection).await?;
        *kept = Some(connection);
        for range in ranges {
            let redis::Value::Array(fields) = range else { continue };
            let (Some(redis::Value::Int(start)), Some(redis::Value::Int(end)), Some(redis::Value::Array(primary))) =
                (fields.first(), fields.get(1), fields.get(2))
            else {
                continue;
            };
            if (*start..=*end).contains(&slot) {
                let host = match primary.first() {
                    Some(redis::Value::BulkString(b)) => String::from_utf8_lossy(b).into_owned(),
                    Some(redis::Value::SimpleString(s)) => s.clone(),
                    _ => break,
                };
                let port = match primary.get(1) {
                    Some(redis::Value::Int(p)) => u16::try_from(*p).unwrap_or(0),
                    _ => 0,
                };
                return Ok((host, port));
            }
        }
        Err((redis::ErrorKind::ClusterConnectionNotFound, "no primary serves the revocation list's slot").into())
    }
}
