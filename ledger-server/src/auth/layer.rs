//! The authentication layer: a tower layer around the whole gRPC router that
//! authenticates every call to a `timebank.v1` service, rate-limits it per caller,
//! and hands the [`Caller`] to the service in the request's extensions.
//!
//! Option not taken: a tonic interceptor per service. It would have to be repeated on
//! every service added (and forgetting one would leave it open), and interceptors
//! cannot see the path, so health and reflection could not be told apart.

use std::num::NonZeroU32;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::future::Either;
use governor::clock::Clock;
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use http::header::AUTHORIZATION;
use http::HeaderMap;
use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};
use x509_parser::extensions::GeneralName;

use super::file::Access;
use super::key::hash_key;
use super::Caller;
use crate::status;

/// Calls under this path prefix are authenticated. Everything else stays open:
/// `/grpc.health.v1.` because liveness and readiness probes (Kubernetes, load
/// balancers) call it without credentials and it says nothing but "serving", and
/// `/grpc.reflection.` because it serves the public schema (the same `.proto` files
/// that are in the repository), which tools such as grpcurl need before their first
/// authenticated call. Unknown paths reach the router and get `UNIMPLEMENTED`.
pub const AUTHENTICATED_PREFIX: &str = "/timebank.v1.";

/// Why a call was not authenticated. The messages are fixed: they say what to send,
/// and never echo or depend on what was sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("no credentials: send the header `authorization: Bearer <API key>`, or connect over mutual TLS with a client certificate named in the server's access file")]
    Missing,
    #[error(
        "malformed authorization header: send exactly one header `authorization: Bearer <API key>`"
    )]
    Malformed,
    #[error("the API key is not valid: send a key the server's operator issued (`ledger-server keygen`) as `authorization: Bearer <API key>`")]
    UnknownKey,
    #[error("the client certificate names no caller of the server's access file: ask the operator to add its name as certificate_name, or send `authorization: Bearer <API key>`")]
    UnknownCertificate,
    #[error("the client certificate's names match more than one caller of the access file: use a certificate with one caller's name, or send `authorization: Bearer <API key>`")]
    AmbiguousCertificate,
    #[error("the client certificate cannot be read as X.509: use another certificate, or send `authorization: Bearer <API key>`")]
    BadCertificate,
}

/// Authenticate one call: the bearer key if there is an `authorization` header
/// (a wrong key fails even when a certificate would match: what the client sent
/// explicitly is what it means), else the client certificate verified by the TLS
/// handshake, if any. `certificates` is the peer's chain, end-entity first.
pub fn authenticate(
    access: &Access,
    headers: &HeaderMap,
    certificates: Option<&[impl AsRef<[u8]>]>,
) -> Result<Caller, AuthError> {
    if let Some(key) = bearer(headers)? {
        return access
            .by_key(&hash_key(key))
            .cloned()
            .ok_or(AuthError::UnknownKey);
    }
    let Some(leaf) = certificates.and_then(|c| c.first()) else {
        return Err(AuthError::Missing);
    };
    let mut found: Option<&Caller> = None;
    for name in certificate_names(leaf.as_ref())? {
        if let Some(caller) = access.by_certificate_name(&name) {
            match found {
                Some(f) if f.name != caller.name => return Err(AuthError::AmbiguousCertificate),
                _ => found = Some(caller),
            }
        }
    }
    found.cloned().ok_or(AuthError::UnknownCertificate)
}

/// The key of the one `authorization: Bearer …` header, if there is one. The scheme
/// is case-insensitive (RFC 6750 and RFC 9110 say so).
fn bearer(headers: &HeaderMap) -> Result<Option<&str>, AuthError> {
    let mut values = headers.get_all(AUTHORIZATION).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(AuthError::Malformed);
    }
    let value = value.to_str().map_err(|_| AuthError::Malformed)?;
    let (scheme, key) = value.trim().split_once(' ').ok_or(AuthError::Malformed)?;
    let key = key.trim();
    if !scheme.eq_ignore_ascii_case("bearer") || key.is_empty() || key.contains(' ') {
        return Err(AuthError::Malformed);
    }
    Ok(Some(key))
}

/// The names a certificate gives its subject: its subject CNs and DNS SANs.
/// Parsing once per call costs tens of microseconds; caching per connection would
/// need a connection id tonic does not expose.
pub fn certificate_names(der: &[u8]) -> Result<Vec<String>, AuthError> {
    let (_, cert) =
        x509_parser::parse_x509_certificate(der).map_err(|_| AuthError::BadCertificate)?;
    let mut names: Vec<String> = cert
        .subject()
        .iter_common_name()
        .filter_map(|cn| cn.as_str().ok())
        .map(str::to_owned)
        .collect();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            if let GeneralName::DNSName(dns) = name {
                names.push((*dns).to_owned());
            }
        }
    }
    Ok(names)
}

/// What the layer checks when there is an access file.
struct Guard {
    access: Arc<Access>,
    /// Keyed by caller name. Only authenticated callers get a cell, so the map holds
    /// at most one entry per caller of the access file: it cannot be grown by
    /// strangers (option not taken: keying by peer address, which a client behind a
    /// NAT shares with others and an attacker can vary).
    limiter: DefaultKeyedRateLimiter<String>,
    requests_per_second_max: u32,
    /// Most bytes of a refused call's body read before it is answered
    /// ([`drain_refused`]): the access file's `request_bytes_max`.
    request_bytes_max: usize,
}

/// Longest the layer reads a refused call's body before it answers anyway: 1 s. A
/// client sends a unary request's message right after its headers, so this is only
/// reached by one that stalls, which then gets its refusal (and the stream reset).
pub const REFUSED_BODY_WAIT_MAX: Duration = Duration::from_secs(1);

/// Read and drop a refused call's request body, at most `max` bytes and
/// [`REFUSED_BODY_WAIT_MAX`], before the refusal is sent.
///
/// Why: answering before the client's DATA frame arrived makes h2 reset the stream
/// (RST_STREAM NO_ERROR, RFC 9113 §8.1), and the DATA arriving after it is a stream
/// error that h2 counts against the connection; at 1,024 of them (hyper's
/// `max_local_error_reset_streams`) it closes the whole connection with
/// ENHANCE_YOUR_CALM. Under `ledger-server load` over its rate, that ended every
/// other call in flight on the connection with `UNKNOWN` or a `RESOURCE_EXHAUSTED`
/// without `RATE_LIMITED`, about once a second. Option not taken: raising that limit,
/// which exists against floods of resets.
async fn drain_refused<B>(body: B, max: usize)
where
    B: http_body::Body,
{
    use http_body_util::BodyExt;
    let mut body = std::pin::pin!(body);
    let read = async {
        let mut seen = 0usize;
        while let Some(Ok(frame)) = body.frame().await {
            if let Some(data) = frame.data_ref() {
                seen = seen.saturating_add(bytes::Buf::remaining(data));
                if seen > max {
                    break;
                }
            }
        }
    };
    let _ = tokio::time::timeout(REFUSED_BODY_WAIT_MAX, read).await;
}

/// Authenticates `timebank.v1` calls (see the module). Without an access file (open
/// mode: tests, and embedders that authenticate in front of the server) every call is
/// [`Caller::unauthenticated_admin`] and nothing is rate-limited.
#[derive(Clone)]
pub struct AuthLayer {
    guard: Option<Arc<Guard>>,
}

impl AuthLayer {
    pub fn new(access: Option<Arc<Access>>) -> Self {
        let guard = access.map(|access| {
            let limits = access.limits;
            // Limits are validated non-zero when the file is read; MIN only guards a
            // hand-built `Access`.
            let rate = NonZeroU32::new(limits.requests_per_second_max).unwrap_or(NonZeroU32::MIN);
            let burst = NonZeroU32::new(limits.burst_max).unwrap_or(NonZeroU32::MIN);
            Arc::new(Guard {
                limiter: RateLimiter::keyed(Quota::per_second(rate).allow_burst(burst)),
                requests_per_second_max: limits.requests_per_second_max,
                request_bytes_max: limits.request_bytes_max,
                access,
            })
        });
        Self { guard }
    }

    /// Open mode: no access file.
    pub fn open() -> Self {
        Self { guard: None }
    }
}

impl<S> tower::Layer<S> for AuthLayer {
    type Service = Authenticate<S>;
    fn layer(&self, inner: S) -> Self::Service {
        Authenticate {
            inner,
            guard: self.guard.clone(),
        }
    }
}

#[derive(Clone)]
pub struct Authenticate<S> {
    inner: S,
    guard: Option<Arc<Guard>>,
}

/// Why the layer answered a call itself.
enum Refusal {
    Unauthenticated(AuthError),
    RateLimited(std::time::Duration),
}

impl Guard {
    fn admit<B>(&self, request: &http::Request<B>) -> Result<Caller, Refusal> {
        let certificates = request
            .extensions()
            .get::<TlsConnectInfo<TcpConnectInfo>>()
            .and_then(TlsConnectInfo::peer_certs);
        let caller = authenticate(
            &self.access,
            request.headers(),
            certificates.as_deref().map(Vec::as_slice),
        )
        .map_err(|e| {
            tracing::debug!(path = request.uri().path(), "unauthenticated call: {e}");
            Refusal::Unauthenticated(e)
        })?;
        if let Err(not_until) = self.limiter.check_key(&caller.name) {
            let retry_after = not_until.wait_time_from(self.limiter.clock().now());
            tracing::debug!(caller = %caller.name, ?retry_after, "rate limited");
            return Err(Refusal::RateLimited(retry_after));
        }
        Ok(caller)
    }
}

/// A refusal being answered once the call's body is read ([`drain_refused`]).
type Refusing<T, E> = Pin<Box<dyn std::future::Future<Output = Result<T, E>> + Send>>;

impl<S, B, R> tower::Service<http::Request<B>> for Authenticate<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<R>>,
    S::Error: Send + 'static,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    R: Default + Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Either<S::Future, Refusing<S::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        if !request.uri().path().starts_with(AUTHENTICATED_PREFIX) {
            return Either::Left(self.inner.call(request));
        }
        let caller = match &self.guard {
            None => Caller::unauthenticated_admin(),
            Some(guard) => match guard.admit(&request) {
                Ok(caller) => caller,
                // Answering without calling the inner service leaves the readiness it
                // reported unused; the router (axum) reserves nothing in poll_ready.
                Err(refusal) => {
                    let status = match refusal {
                        Refusal::Unauthenticated(e) => status::unauthenticated_status(&e),
                        Refusal::RateLimited(retry_after) => {
                            status::rate_limited_status(guard.requests_per_second_max, retry_after)
                        }
                    };
                    let max = guard.request_bytes_max;
                    let body = request.into_body();
                    return Either::Right(Box::pin(async move {
                        drain_refused(body, max).await;
                        Ok(status.into_http())
                    }));
                }
            },
        };
        // tonic moves the http extensions into the `tonic::Request`'s: services read
        // it as `request.extensions().get::<Caller>()`.
        request.extensions_mut().insert(caller);
        Either::Left(self.inner.call(request))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::Role;
    use futures::future;
    use http::HeaderValue;
    use tonic::Code;
    use tonic_types::StatusExt;

    const NO_CERTS: Option<&[Vec<u8>]> = None;

    fn access(limits: &str) -> Access {
        let h = |k: &str| hash_key(k).to_hex();
        Access::from_toml(&format!(
            r#"
[[caller]]
name = "platform"
role = "platform"
regions = ["hangzhou"]
key_sha256 = "{}"
[[caller]]
name = "shop"
role = "merchant"
merchant = "merchant-001"
key_sha256 = "{}"
[[caller]]
name = "bank"
role = "bank"
bank = "bank-demo"
key_sha256 = "{}"
[[caller]]
name = "audit"
role = "auditor"
key_sha256 = "{}"
[[caller]]
name = "ops"
role = "admin"
key_sha256 = "{}"
{limits}
"#,
            h("tbk_platform"),
            h("tbk_shop"),
            h("tbk_bank"),
            h("tbk_audit"),
            h("tbk_ops"),
        ))
        .unwrap()
    }

    fn headers(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(AUTHORIZATION, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn bearer_keys_authenticate_each_role_and_nothing_else() {
        let a = access("");
        for (key, name, role) in [
            ("tbk_platform", "platform", "platform"),
            ("tbk_shop", "shop", "merchant"),
            ("tbk_bank", "bank", "bank"),
            ("tbk_audit", "audit", "auditor"),
            ("tbk_ops", "ops", "admin"),
        ] {
            let c = authenticate(&a, &headers(&[&format!("Bearer {key}")]), NO_CERTS).unwrap();
            assert_eq!((c.name.as_str(), c.role.name()), (name, role));
        }
        let c = authenticate(&a, &headers(&["bearer  tbk_bank "]), NO_CERTS).unwrap();
        assert_eq!(
            c.role,
            Role::Bank {
                bank: "bank-demo".into()
            }
        );
        for (sent, want) in [
            (&[][..], AuthError::Missing),
            (&["Bearer tbk_nobody"][..], AuthError::UnknownKey),
            // A key's hash is not a key.
            (
                &[&*format!("Bearer {}", hash_key("tbk_ops").to_hex())][..],
                AuthError::UnknownKey,
            ),
            (&["tbk_ops"][..], AuthError::Malformed),
            (&["Basic tbk_ops"][..], AuthError::Malformed),
            (&["Bearer "][..], AuthError::Malformed),
            (&["Bearer a b"][..], AuthError::Malformed),
            (
                &["Bearer tbk_ops", "Bearer tbk_ops"][..],
                AuthError::Malformed,
            ),
        ] {
            assert_eq!(
                authenticate(&a, &headers(sent), NO_CERTS),
                Err(want),
                "{sent:?}"
            );
        }
    }

    #[test]
    fn a_wrong_key_fails_even_with_a_matching_certificate_and_garbage_is_no_certificate() {
        let a = access("");
        assert_eq!(
            authenticate(
                &a,
                &headers(&["Bearer nope"]),
                Some(&[b"garbage".to_vec()][..])
            ),
            Err(AuthError::UnknownKey)
        );
        assert_eq!(
            authenticate(&a, &HeaderMap::new(), Some(&[b"garbage".to_vec()][..])),
            Err(AuthError::BadCertificate)
        );
        // An empty chain is no certificate.
        assert_eq!(
            authenticate(&a, &HeaderMap::new(), Some(&[] as &[Vec<u8>])),
            Err(AuthError::Missing)
        );
    }

    fn request(path: &str, auth: Option<&str>) -> http::Request<String> {
        let mut r = http::Request::builder().uri(path);
        if let Some(a) = auth {
            r = r.header(AUTHORIZATION, a);
        }
        r.body(String::new()).unwrap()
    }

    /// The inner service answers with the caller it was given, in a header.
    fn echo() -> impl tower::Service<
        http::Request<String>,
        Response = http::Response<String>,
        Error = std::convert::Infallible,
        Future = future::Ready<Result<http::Response<String>, std::convert::Infallible>>,
    > + Clone {
        tower::service_fn(|r: http::Request<String>| {
            let who = r
                .extensions()
                .get::<Caller>()
                .map_or("none".to_owned(), |c| c.name.clone());
            future::ready(Ok(http::Response::builder()
                .header("x-caller", who)
                .body(String::new())
                .unwrap()))
        })
    }

    async fn call(
        layer: &AuthLayer,
        r: http::Request<String>,
    ) -> (Option<Code>, Option<String>, http::Response<String>) {
        use tower::{Layer, ServiceExt};
        let response = layer.layer(echo()).oneshot(r).await.unwrap();
        let status = tonic::Status::from_header_map(response.headers());
        let who = response
            .headers()
            .get("x-caller")
            .map(|v| v.to_str().unwrap().to_owned());
        (status.map(|s| s.code()), who, response)
    }

    #[tokio::test]
    async fn the_layer_guards_timebank_paths_only_and_inserts_the_caller() {
        let layer = AuthLayer::new(Some(Arc::new(access(""))));
        let path = "/timebank.v1.LedgerCommands/DepositHours";
        let (code, who, response) = call(&layer, request(path, None)).await;
        assert_eq!((code, who), (Some(Code::Unauthenticated), None));
        let status = tonic::Status::from_header_map(response.headers()).unwrap();
        let info = status.get_details_error_info().unwrap();
        assert_eq!(info.reason, "UNAUTHENTICATED");
        assert!(status.message().contains("authorization: Bearer"));
        let (code, who, _) = call(&layer, request(path, Some("Bearer tbk_shop"))).await;
        assert_eq!((code, who.as_deref()), (None, Some("shop")));
        for open in [
            "/grpc.health.v1.Health/Check",
            "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
        ] {
            let (code, who, _) = call(&layer, request(open, None)).await;
            assert_eq!((code, who.as_deref()), (None, Some("none")), "{open}");
        }
        // Open mode: every timebank call is the unauthenticated admin.
        let (code, who, _) = call(&AuthLayer::open(), request(path, None)).await;
        assert_eq!((code, who.as_deref()), (None, Some("unauthenticated")));
    }

    #[tokio::test]
    async fn a_caller_over_its_rate_gets_resource_exhausted_with_retry_info_others_do_not() {
        let layer = AuthLayer::new(Some(Arc::new(access(
            "[limits]\nrequests_per_second_max = 1\nburst_max = 3",
        ))));
        let path = "/timebank.v1.LedgerQueries/GetAccount";
        for _ in 0..3 {
            let (code, _, _) = call(&layer, request(path, Some("Bearer tbk_bank"))).await;
            assert_eq!(code, None);
        }
        let (code, _, response) = call(&layer, request(path, Some("Bearer tbk_bank"))).await;
        assert_eq!(code, Some(Code::ResourceExhausted));
        let status = tonic::Status::from_header_map(response.headers()).unwrap();
        assert_eq!(
            status.get_details_error_info().unwrap().reason,
            "RATE_LIMITED"
        );
        let retry = status
            .get_details_retry_info()
            .unwrap()
            .retry_delay
            .unwrap();
        assert!(retry > std::time::Duration::ZERO && retry <= std::time::Duration::from_secs(1));
        // Another caller has its own budget; unauthenticated calls spend nobody's.
        let (code, _, _) = call(&layer, request(path, Some("Bearer tbk_audit"))).await;
        assert_eq!(code, None);
        let (code, _, _) = call(&layer, request(path, None)).await;
        assert_eq!(code, Some(Code::Unauthenticated));
    }
}
