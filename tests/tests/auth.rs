//! End-to-end: the real server with an access file, TLS and a client CA (certificates
//! made at test time with rcgen), driven through real gRPC channels: a client
//! certificate authenticates as its caller, a bearer key works over TLS without one,
//! no credential is UNAUTHENTICATED, health needs none; and the access file's limits
//! (batch size, request size, rate) apply; a TLS connection that stalls its handshake,
//! or sends nothing after it, is closed at the opening deadline.

use std::sync::Arc;
use std::time::{Duration, Instant};

use ledger_core::app::SystemClock;
use ledger_core::log::memory::MemoryLog;
use ledger_server::auth::{hash_key, Access, ServerTls};
use ledger_server::pb;
use ledger_server::pb::ledger_commands_client::LedgerCommandsClient;
use ledger_server::pb::ledger_queries_client::LedgerQueriesClient;
use ledger_server::ServeOptions;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::pki_types::pem::PemObject;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};
use tonic::Code;
use tonic_types::StatusExt;

const PLATFORM_KEY: &str = "tbk_test-platform-key";
const BANK_KEY: &str = "tbk_test-bank-key";
const ADMIN_KEY: &str = "tbk_test-admin-key";
/// The bank's client certificate carries this as a DNS SAN (its CN is something else).
const BANK_CERT_NAME: &str = "bank-a.partners.example";

/// A PEM certificate and its PEM key.
struct Pem {
    cert: String,
    key: String,
}

/// A test CA, the server's certificate (localhost) and client certificates.
struct Pki {
    ca: String,
    server: Pem,
    bank: Pem,
    stranger: Pem,
}

fn pki() -> Pki {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "timebank test CA");
    ca.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = Issuer::from_params(&ca, &ca_key);
    let leaf = |sans: &[&str], cn: &str, usage: ExtendedKeyUsagePurpose| {
        let key = KeyPair::generate().unwrap();
        let mut p =
            CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
        p.distinguished_name.push(DnType::CommonName, cn);
        p.extended_key_usages = vec![usage];
        let cert = p.signed_by(&key, &issuer).unwrap();
        Pem {
            cert: cert.pem(),
            key: key.serialize_pem(),
        }
    };
    Pki {
        ca: ca_cert.pem(),
        server: leaf(
            &["localhost"],
            "timebank test server",
            ExtendedKeyUsagePurpose::ServerAuth,
        ),
        bank: leaf(
            &[BANK_CERT_NAME],
            "Bank A gRPC client",
            ExtendedKeyUsagePurpose::ClientAuth,
        ),
        stranger: leaf(
            &["stranger.example"],
            "not in the access file",
            ExtendedKeyUsagePurpose::ClientAuth,
        ),
    }
}

fn access(limits: &str) -> Access {
    Access::from_toml(&format!(
        r#"
[[caller]]
name = "city-platform"
role = "platform"
regions = ["hangzhou"]
key_sha256 = "{}"

[[caller]]
name = "bank-a"
role = "bank"
bank = "bank-a"
key_sha256 = "{}"
certificate_name = "{BANK_CERT_NAME}"

[[caller]]
name = "ops"
role = "admin"
key_sha256 = "{}"

{limits}
"#,
        hash_key(PLATFORM_KEY).to_hex(),
        hash_key(BANK_KEY).to_hex(),
        hash_key(ADMIN_KEY).to_hex(),
    ))
    .unwrap()
}

struct Server {
    addr: std::net::SocketAddr,
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<Result<(), ledger_server::ServeError>>,
}

async fn start(options: ServeOptions) -> Server {
    // The wall clock: the load generator dates its service by it.
    let (addr, stop, task) =
        timebank_tests::listen(Arc::new(MemoryLog::new()), Arc::new(SystemClock), options).await;
    Server { addr, stop, task }
}

impl Server {
    async fn stop(self) {
        let _ = self.stop.send(());
        self.task.await.unwrap().unwrap();
    }
}

/// The server's TLS: its certificate, and the test CA for client certificates.
fn server_tls(pki: &Pki) -> ServerTls {
    ServerTls::from_pem(
        pki.server.cert.as_bytes(),
        pki.server.key.as_bytes(),
        Some(pki.ca.as_bytes()),
    )
    .unwrap()
}

/// A TLS channel trusting the test CA, presenting `identity` if given.
async fn tls_channel(server: &Server, pki: &Pki, identity: Option<&Pem>) -> Channel {
    // tonic's client takes the process's default provider (the server names its own).
    ledger_server::auth::tls::install_crypto_provider();
    let mut tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(&pki.ca))
        .domain_name("localhost");
    if let Some(id) = identity {
        tls = tls.identity(Identity::from_pem(&id.cert, &id.key));
    }
    Channel::from_shared(format!("https://{}", server.addr))
        .unwrap()
        .tls_config(tls)
        .unwrap()
        .connect()
        .await
        .unwrap()
}

async fn plain_channel(server: &Server) -> Channel {
    Channel::from_shared(format!("http://{}", server.addr))
        .unwrap()
        .connect()
        .await
        .unwrap()
}

fn with_key<T>(message: T, key: Option<&str>) -> tonic::Request<T> {
    let mut r = tonic::Request::new(message);
    if let Some(k) = key {
        r.metadata_mut()
            .insert("authorization", format!("Bearer {k}").parse().unwrap());
    }
    r
}

/// GetAccount of an account that does not exist: NOT_FOUND once authenticated.
async fn get_account(channel: &Channel, key: Option<&str>) -> tonic::Status {
    LedgerQueriesClient::new(channel.clone())
        .get_account(with_key(
            pb::GetAccountRequest {
                account_id: "v-nobody".into(),
                ..Default::default()
            },
            key,
        ))
        .await
        .expect_err("no such account")
}

fn assert_unauthenticated(status: &tonic::Status) {
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    assert_eq!(
        status.get_details_error_info().unwrap().reason,
        "UNAUTHENTICATED"
    );
}

async fn health_serving(channel: &Channel) {
    let response = tonic_health::pb::health_client::HealthClient::new(channel.clone())
        .check(tonic_health::pb::HealthCheckRequest {
            service: "timebank.v1.LedgerCommands".into(),
        })
        .await
        .unwrap();
    assert_eq!(
        response.into_inner().status,
        tonic_health::pb::health_check_response::ServingStatus::Serving as i32
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_certificates_and_bearer_keys_authenticate_and_nothing_else_does() {
    let pki = pki();
    let tls = server_tls(&pki);
    // A low rate, so that which caller a call was counted against is visible from
    // outside: the certificate and the bank's key share one budget.
    let options = ServeOptions {
        tls: Some(tls),
        ..ServeOptions::with_access(access(
            "[limits]\nrequests_per_second_max = 1\nburst_max = 5",
        ))
    };
    let server = start(options).await;

    let anonymous = tls_channel(&server, &pki, None).await;
    // Health needs no credential (probes), over TLS as anywhere.
    health_serving(&anonymous).await;
    // No certificate and no key: UNAUTHENTICATED, saying what to send.
    let status = get_account(&anonymous, None).await;
    assert_unauthenticated(&status);
    assert!(status.message().contains("authorization: Bearer"));
    assert_unauthenticated(&get_account(&anonymous, Some("tbk_wrong")).await);

    // A bearer key over TLS, without a client certificate: authenticated, then told
    // (as any platform asking for an account it cannot see, existing or not) that the
    // account is outside its scope.
    assert_eq!(
        get_account(&anonymous, Some(PLATFORM_KEY)).await.code(),
        Code::PermissionDenied
    );

    // The bank's certificate authenticates (as bank-a: see the shared budget below).
    // (Authenticated callers get past authentication to authorisation: a bank may not
    // read accounts, PERMISSION_DENIED.)
    let bank = tls_channel(&server, &pki, Some(&pki.bank)).await;
    assert_eq!(
        get_account(&bank, None).await.code(),
        Code::PermissionDenied
    );
    // A certificate from the trusted CA whose names are in no caller: UNAUTHENTICATED.
    let stranger = tls_channel(&server, &pki, Some(&pki.stranger)).await;
    assert_unauthenticated(&get_account(&stranger, None).await);

    // Spend bank-a's burst through its certificate until it is refused …
    let mut limited = None;
    for _ in 0..20 {
        let s = get_account(&bank, None).await;
        if s.code() != Code::PermissionDenied {
            limited = Some(s);
            break;
        }
    }
    let limited = limited.expect("bank-a is rate limited within 20 calls");
    assert_eq!(limited.code(), Code::ResourceExhausted, "{limited:?}");
    assert_eq!(
        limited.get_details_error_info().unwrap().reason,
        "RATE_LIMITED"
    );
    assert!(limited.get_details_retry_info().is_some());
    // … then bank-a's key, on a channel without a certificate, is over budget too: the
    // certificate was bank-a. The platform has its own budget.
    assert_eq!(
        get_account(&anonymous, Some(BANK_KEY)).await.code(),
        Code::ResourceExhausted
    );
    assert_eq!(
        get_account(&anonymous, Some(PLATFORM_KEY)).await.code(),
        Code::PermissionDenied
    );

    // A plaintext client cannot talk to a TLS listener at all.
    let plain = Channel::from_shared(format!("http://{}", server.addr))
        .unwrap()
        .connect()
        .await;
    if let Ok(plain) = plain {
        assert!(LedgerQueriesClient::new(plain)
            .get_account(pb::GetAccountRequest::default())
            .await
            .is_err());
    }
    drop((anonymous, bank, stranger));
    server.stop().await;
}

/// Reads `stream` until the server closes it (end of stream or an error); how long
/// that took, or None if it was still open after `wait`.
async fn closed_within(
    stream: &mut (impl AsyncReadExt + Unpin),
    wait: Duration,
) -> Option<Duration> {
    let t = Instant::now();
    let mut buf = [0u8; 4096];
    tokio::time::timeout(wait, async {
        while let Ok(n) = stream.read(&mut buf).await {
            if n == 0 {
                break;
            }
        }
    })
    .await
    .ok()
    .map(|()| t.elapsed())
}

/// Security probe (sixteenth session): with TLS, the opening deadline counted the
/// encrypted bytes, so a client that sent the start of a ClientHello and stalled, or
/// finished the handshake and sent nothing, held its socket for good. Now the
/// handshake and the first decrypted bytes must both be in by the deadline; a client
/// that opened in time may then idle.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_connection_that_stalls_in_or_after_its_handshake_is_closed_at_the_deadline() {
    let pki = pki();
    let opening = Duration::from_millis(600);
    let options = ServeOptions {
        tls: Some(server_tls(&pki)),
        connection_opening_max: Some(opening),
        ..ServeOptions::with_access(access(""))
    };
    let server = start(options).await;
    let wait = Duration::from_secs(10);

    // The first 49 bytes of a 512-byte ClientHello record (more than the 24 bytes
    // that used to count as an opening), then nothing.
    let mut stalled = TcpStream::connect(server.addr).await.unwrap();
    let mut hello = vec![0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc];
    hello.extend([0u8; 40]);
    stalled.write_all(&hello).await.unwrap();
    let took = closed_within(&mut stalled, wait)
        .await
        .expect("a stalled handshake is closed");
    assert!(
        took >= opening / 2,
        "closed at the deadline, not before: {took:?}"
    );

    // A whole handshake, then not one byte of HTTP/2.
    ledger_server::auth::tls::install_crypto_provider();
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls::pki_types::CertificateDer::pem_slice_iter(pki.ca.as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let mut client = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    client.alpn_protocols = vec![b"h2".to_vec()];
    let tcp = TcpStream::connect(server.addr).await.unwrap();
    let mut silent = tokio_rustls::TlsConnector::from(Arc::new(client))
        .connect("localhost".try_into().unwrap(), tcp)
        .await
        .expect("the handshake completes");
    assert_eq!(silent.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let took = closed_within(&mut silent, wait)
        .await
        .expect("a silent TLS connection is closed");
    assert!(
        took >= opening / 2,
        "closed at the deadline, not before: {took:?}"
    );

    // A real client opens in time, and may then stay quiet past the deadline.
    let channel = tls_channel(&server, &pki, None).await;
    health_serving(&channel).await;
    tokio::time::sleep(opening * 2).await;
    assert_eq!(
        get_account(&channel, Some(ADMIN_KEY)).await.code(),
        Code::NotFound
    );
    drop(channel);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_access_files_limits_bound_batches_and_request_size() {
    let server = start(ServeOptions::with_access(access(
        "[limits]\nbatch_commands_max = 2\nrequest_bytes_max = 2048",
    )))
    .await;
    let channel = plain_channel(&server).await;
    health_serving(&channel).await;
    let mut commands = LedgerCommandsClient::new(channel.clone());

    let batch = |n: usize| pb::SubmitBatchRequest {
        commands: vec![pb::Command::default(); n],
    };
    let too_large = commands
        .submit_batch(with_key(batch(3), Some(PLATFORM_KEY)))
        .await
        .unwrap_err();
    assert_eq!(too_large.code(), Code::InvalidArgument);
    let info = too_large.get_details_error_info().unwrap();
    assert_eq!(
        (info.reason.as_str(), info.metadata["max"].as_str()),
        ("BATCH_TOO_LARGE", "2")
    );
    // Two commands pass the size check (each line is then refused on its own).
    let ok = commands
        .submit_batch(with_key(batch(2), Some(PLATFORM_KEY)))
        .await
        .unwrap();
    assert_eq!(ok.into_inner().results.len(), 2);
    // Unauthenticated batches are refused before their size is looked at.
    assert_unauthenticated(&commands.submit_batch(batch(3)).await.unwrap_err());

    let big = pb::GetAccountRequest {
        account_id: "v".repeat(4096),
        ..Default::default()
    };
    let status = LedgerQueriesClient::new(channel.clone())
        .get_account(with_key(big, Some(PLATFORM_KEY)))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::OutOfRange, "{status:?}");
    drop((commands, channel));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_an_access_file_every_call_is_admitted() {
    let server = start(ServeOptions::default()).await;
    let channel = plain_channel(&server).await;
    assert_eq!(get_account(&channel, None).await.code(), Code::NotFound);
    // Keys are not looked at in open mode.
    assert_eq!(
        get_account(&channel, Some("tbk_anything")).await.code(),
        Code::NotFound
    );
    drop(channel);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_load_generator_sends_its_api_key() {
    use ledger_server::load::{self, LoadConfig};
    let server = start(ServeOptions::with_access(access(""))).await;
    let mut config = LoadConfig {
        target: format!("http://{}", server.addr),
        mix: "deposit=8,account=2".parse().unwrap(),
        concurrency: 2,
        duration: std::time::Duration::from_millis(300),
        batch: 0,
        volunteers_per_caller: 2,
        connections: 1,
        api_key: Some(ADMIN_KEY.to_owned()),
        rate: None,
    };
    let report = load::run(&config).await.unwrap();
    assert!(report.completed() > 0, "{}", report.render());
    assert_eq!(report.errors(), 0, "{}", report.render());
    config.api_key = None;
    let refused = load::run(&config).await.err().expect("no key, no setup");
    assert!(
        refused.to_string().contains("UNAUTHENTICATED")
            || refused.to_string().contains("credentials"),
        "{refused}"
    );
    server.stop().await;
}
