//! Optional TLS on the listeners (rustls on aws-lc-rs): the gRPC listener through tonic, with
//! client-certificate verification when a CA is given, and the HTTP listener through an accept loop
//! that hands finished handshakes to axum.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::server::TlsStream;
use tonic::transport::{Certificate, Identity, ServerTlsConfig};

use crate::config::TlsFiles;

/// A client that has not finished its handshake in this time is dropped, so slow or silent
/// clients cannot hold handshake slots.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

fn read(path: &std::path::Path, what: &str) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("cannot read the TLS {what} {}", path.display()))
}

/// The listeners' TLS material, read and checked once at start-up: a bad or mismatched file stops
/// start-up with its name rather than with a handshake error later.
pub struct Tls {
    http: TlsAcceptor,
    grpc: ServerTlsConfig,
}

crate::opaque_debug!(Tls);

impl Tls {
    /// Reads and checks `files`.
    pub fn load(files: &TlsFiles) -> anyhow::Result<Tls> {
        let cert_pem = read(&files.cert, "certificate")?;
        let key_pem = read(&files.key, "key")?;
        let chain = CertificateDer::pem_slice_iter(&cert_pem)
            .collect::<Result<Vec<_>, _>>()
            .with_context(|| format!("the TLS certificate {} is not PEM", files.cert.display()))?;
        anyhow::ensure!(!chain.is_empty(), "the TLS certificate {} holds no certificate", files.cert.display());
        let key = PrivateKeyDer::from_pem_slice(&key_pem)
            .with_context(|| format!("the TLS key {} holds no PEM private key", files.key.display()))?;
        // The provider named, not taken from the process default, which is ambiguous (and a panic)
        // when another crate in the tree enables a second rustls backend.
        let provider = Arc::new(tokio_rustls::rustls::crypto::aws_lc_rs::default_provider());
        let mut http = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .context("TLS protocol versions")?
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .with_context(|| {
                format!("the TLS key {} does not match the certificate {}", files.key.display(), files.cert.display())
            })?;
        // HTTP: no client certificates (browsers reach it through the proxy).
        http.alpn_protocols = vec![b"http/1.1".to_vec()];
        // gRPC: the same pair (checked above), and client verification against the CA if set.
        let mut grpc = ServerTlsConfig::new().identity(Identity::from_pem(cert_pem, key_pem));
        if let Some(ca) = &files.client_ca {
            let pem = read(ca, "client CA")?;
            anyhow::ensure!(
                CertificateDer::pem_slice_iter(&pem).next().is_some(),
                "the TLS client CA {} holds no certificate",
                ca.display()
            );
            grpc = grpc.client_ca_root(Certificate::from_pem(pem));
        }
        Ok(Tls { http: TlsAcceptor::from(Arc::new(http)), grpc })
    }

    /// The gRPC listener's configuration, for tonic.
    pub fn grpc(&self) -> ServerTlsConfig {
        self.grpc.clone()
    }

    /// The HTTP listener's acceptor.
    pub fn http(&self) -> TlsAcceptor {
        self.http.clone()
    }
}

/// A TCP listener whose connections come out with their TLS handshake done. Handshakes run in
/// their own tasks, so one slow client does not hold up the others.
#[derive(Debug)]
pub struct TlsListener {
    ready: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local: SocketAddr,
    accepting: JoinHandle<()>,
}

impl TlsListener {
    /// Accepts on `listener`, handshaking with `acceptor`.
    pub fn new(listener: TcpListener, acceptor: TlsAcceptor) -> io::Result<TlsListener> {
        let local = listener.local_addr()?;
        let (tx, ready) = mpsc::channel(64);
        let accepting = tokio::spawn(async move {
            loop {
                let (tcp, peer) = match listener.accept().await {
                    Ok(accepted) => accepted,
                    Err(error) => {
                        // Out of descriptors and the like: wait rather than spin.
                        tracing::warn!(%error, "accepting a connection failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = tcp.set_nodelay(true);
                let (acceptor, tx) = (acceptor.clone(), tx.clone());
                tokio::spawn(async move {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                        Ok(Ok(tls)) => {
                            let _ = tx.send((tls, peer)).await;
                        }
                        // A failed handshake is the client's problem; debug only, so a scan
                        // cannot fill the logs.
                        Ok(Err(error)) => tracing::debug!(%error, "TLS handshake failed"),
                        Err(_) => tracing::debug!("TLS handshake timed out"),
                    }
                });
            }
        });
        Ok(TlsListener { ready, local, accepting })
    }
}

impl Drop for TlsListener {
    fn drop(&mut self) {
        self.accepting.abort();
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(ready) => ready,
            // The accept task only ends when aborted, with the listener.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.local)
    }
}
