//! TLS on the listeners, with certificates made here: the gRPC listener with a client CA admits
//! only clients holding a certificate that CA signed (mTLS); the HTTP listener speaks HTTPS.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::common::*;
use cognito_authz::config::{Config, TlsFiles};
use cognito_authz::envoy::pb::auth::authorization_client::AuthorizationClient;
use cognito_authz::server;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
};
use tokio::net::TcpListener;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};

/// A certificate authority that can sign server and client certificates.
struct Ca {
    pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl Ca {
    fn new(name: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::DigitalSignature];
        let key = KeyPair::generate().unwrap();
        let pem = params.self_signed(&key).unwrap().pem();
        Ca { pem, issuer: Issuer::new(params, key) }
    }

    /// (certificate PEM, key PEM) for `names`, for a server or a client.
    fn sign(&self, names: &[&str], usage: ExtendedKeyUsagePurpose) -> (String, String) {
        let mut params = CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).unwrap();
        params.distinguished_name.push(DnType::CommonName, names[0]);
        params.extended_key_usages = vec![usage];
        let key = KeyPair::generate().unwrap();
        (params.signed_by(&key, &self.issuer).unwrap().pem(), key.serialize_pem())
    }
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

struct Pki {
    ca: Ca,
    files: TlsFiles,
    dir: PathBuf,
}

/// A CA, a server certificate for localhost and 127.0.0.1, and the files the service reads.
fn pki() -> Pki {
    let ca = Ca::new("test proxy CA");
    let dir = temp_dir("tls");
    let (cert, key) = ca.sign(&["localhost", "127.0.0.1"], ExtendedKeyUsagePurpose::ServerAuth);
    let files = TlsFiles {
        cert: write(&dir, "server.pem", &cert),
        key: write(&dir, "server.key", &key),
        client_ca: Some(write(&dir, "client-ca.pem", &ca.pem)),
    };
    Pki { ca, files, dir }
}

struct Running {
    grpc: String,
    http: String,
    _stop: tokio::sync::oneshot::Sender<()>,
}

async fn start(config: Config) -> Result<Running, String> {
    let listeners = server::Listeners {
        grpc: TcpListener::bind("127.0.0.1:0").await.unwrap(),
        http: TcpListener::bind("127.0.0.1:0").await.unwrap(),
        admin: TcpListener::bind("127.0.0.1:0").await.unwrap(),
        authz_http: None,
    };
    let grpc = format!("https://localhost:{}", listeners.grpc.local_addr().unwrap().port());
    let http = format!("https://localhost:{}", listeners.http.local_addr().unwrap().port());
    let parts = scripted_issuers(&config, vec![(serving(&["kid-1"]), FakeMfa::new())]).await;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(async move {
        server::serve(&config, parts, listeners, axum::Router::new(), async {
            let _ = stopped.await;
        })
        .await
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    if serving.is_finished() {
        return Err(format!("{:#}", serving.await.unwrap().unwrap_err()));
    }
    Ok(Running { grpc, http, _stop: stop })
}

/// Asks for a decision over TLS, presenting `identity` if given. Ok(status code) or the error text.
async fn check(running: &Running, ca_pem: &str, identity: Option<(String, String)>) -> Result<i32, String> {
    let mut tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(ca_pem)).domain_name("localhost");
    if let Some((cert, key)) = identity {
        tls = tls.identity(Identity::from_pem(cert, key));
    }
    let endpoint = Channel::from_shared(running.grpc.clone()).unwrap().tls_config(tls).map_err(|e| e.to_string())?;
    let channel = endpoint.connect().await.map_err(|e| format!("connect: {e:?}"))?;
    let token = key("kid-1").sign(&access_claims());
    let response = AuthorizationClient::new(channel).check(bearer(&token)).await.map_err(|e| format!("rpc: {e:?}"))?;
    Ok(response.into_inner().status.unwrap().code)
}

async fn serving_with_tls() -> (Pki, Running) {
    let pki = pki();
    let mut config = crate::common::config(NO_JWKS);
    config.tls = Some(pki.files.clone());
    let running = start(config).await.expect("serves with TLS");
    (pki, running)
}

#[tokio::test]
async fn grpc_with_a_client_ca_answers_only_clients_that_ca_signed() {
    let (pki, running) = serving_with_tls().await;
    let client = pki.ca.sign(&["envoy"], ExtendedKeyUsagePurpose::ClientAuth);
    let mut allowed = Err(String::new());
    // The first check may race the first key load (503); a decision is what counts.
    for _ in 0..50 {
        allowed = check(&running, &pki.ca.pem, Some(client.clone())).await;
        if allowed == Ok(0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(allowed, Ok(0), "a client the CA signed gets decisions");

    let anonymous = check(&running, &pki.ca.pem, None).await;
    assert!(anonymous.is_err(), "a client without a certificate is refused: {anonymous:?}");

    let rogue = Ca::new("someone else's CA").sign(&["envoy"], ExtendedKeyUsagePurpose::ClientAuth);
    let refused = check(&running, &pki.ca.pem, Some(rogue)).await;
    assert!(refused.is_err(), "a client another CA signed is refused: {refused:?}");

    let plaintext = Channel::from_shared(running.grpc.replace("https://", "http://")).unwrap().connect().await;
    let plain_answer = match plaintext {
        Ok(channel) => AuthorizationClient::new(channel).check(bearer("x.y.z")).await.map(|_| ()),
        Err(e) => Err(tonic::Status::unavailable(e.to_string())),
    };
    // No decision of any kind: a transport failure, not a denial the server made.
    let failure = plain_answer.expect_err("plaintext gRPC gets no decision");
    assert!(
        matches!(failure.code(), tonic::Code::Unavailable | tonic::Code::Unknown | tonic::Code::Internal),
        "{failure:?}"
    );
}

#[tokio::test]
async fn without_a_client_ca_any_tls_client_gets_decisions() {
    let pki = pki();
    let mut config = crate::common::config(NO_JWKS);
    config.tls = Some(TlsFiles { client_ca: None, ..pki.files.clone() });
    let running = start(config).await.expect("serves with TLS");
    let mut answer = Err(String::new());
    for _ in 0..50 {
        answer = check(&running, &pki.ca.pem, None).await;
        if answer == Ok(0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(answer, Ok(0));
}

#[tokio::test]
async fn http_listener_speaks_https_only() {
    let (pki, running) = serving_with_tls().await;
    let client = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(pki.ca.pem.as_bytes()).unwrap()])
        .build()
        .unwrap();
    let response = client.get(format!("{}/auth/me", running.http)).send().await.expect("https answers");
    assert_eq!(response.status(), 403, "no credentials: the route's own answer, over TLS");

    let untrusting = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(Ca::new("other").pem.as_bytes()).unwrap()])
        .build()
        .unwrap();
    assert!(untrusting.get(format!("{}/auth/me", running.http)).send().await.is_err(), "the server proves its name");

    // Plain HTTP to the TLS listener gets no HTTP answer at all (not even an error page).
    let plain = reqwest::get(running.http.replace("https://", "http://") + "/auth/me").await;
    let failure = plain.expect_err("plain HTTP gets no answer");
    assert!(failure.status().is_none(), "{failure:?}");
}

#[tokio::test]
async fn unreadable_or_mismatched_tls_files_stop_start_up_with_their_name() {
    let pki = pki();
    let missing = TlsFiles { cert: pki.dir.join("absent.pem"), ..pki.files.clone() };
    let other_key = write(&pki.dir, "other.key", &KeyPair::generate().unwrap().serialize_pem());
    let mismatched = TlsFiles { key: other_key, ..pki.files.clone() };
    let not_pem = TlsFiles { client_ca: Some(write(&pki.dir, "junk.pem", "not a certificate")), ..pki.files.clone() };
    for (files, expect) in [(missing, "absent.pem"), (mismatched, "does not match"), (not_pem, "junk.pem")] {
        let mut config = crate::common::config(NO_JWKS);
        config.tls = Some(files);
        let error = start(config).await.err().expect("start-up fails");
        assert!(error.contains(expect), "{error}");
    }
}
