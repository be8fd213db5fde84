//! `keyless serve`: the S3 endpoint on the embedded default (local disk and redb), with the
//! root user's key pair created once and kept in the data folder.

use std::io::Write as _;
use std::path::Path;
use std::sync::Arc;
use std::time::SystemTime;

use anyhow::Context as _;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder as ConnBuilder;
use keyless_iam::{EmbeddedIam, IamStore, Keyring, apply_specs};
use keyless_policy::{Policy, PolicyKind};
use keyless_s3::access::{Authorizer, ClientAddr, SecureTransport};
use keyless_s3::service::KeylessS3;
use keyless_s3::store::{DiskStore, ObjectStore as _, StoreError};
use keyless_sts::{SessionKey, Sts};
use keyless_types::{Clock, Secret};
use s3s::host::MultiDomain;
use s3s::service::S3ServiceBuilder;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::cli::ServeArgs;
use crate::config::Config;
use crate::query::QueryApi;

/// The system clock: the one place that reads the time.
pub(crate) struct SystemClock;

impl Clock for SystemClock {
    #[allow(clippy::disallowed_methods)] // the binary supplies the real clock
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }
}

/// How long a client has to send a request's headers.
const HEADER_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// How long a client has to finish the TLS handshake.
const TLS_HANDSHAKE: std::time::Duration = std::time::Duration::from_secs(10);

/// The largest request header block accepted.
const MAX_HEADER_BYTES: usize = 64 * 1024;

pub(crate) fn run(args: ServeArgs) -> anyhow::Result<std::process::ExitCode> {
    block_on(serve(args))
}

/// Runs a long-lived command (`serve`, `agent`) on the multi-threaded runtime.
pub(crate) fn block_on(
    command: impl std::future::Future<Output = anyhow::Result<()>>,
) -> anyhow::Result<std::process::ExitCode> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(command)?;
    Ok(std::process::ExitCode::SUCCESS)
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let loaded = match &args.config {
        Some(path) => {
            let (config, base) = Config::read(path)?;
            config
                .load(&base)
                .with_context(|| format!("`{}` is not a valid configuration", path.display()))?
        }
        None => Config::default().load(Path::new("."))?,
    };
    std::fs::create_dir_all(&args.data_dir).with_context(|| {
        format!(
            "cannot create the data folder `{}`",
            args.data_dir.display()
        )
    })?;
    let data_dir = args.data_dir.canonicalize()?;
    let (root, credentials_file) = crate::root::root_key(&data_dir)?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let iam = EmbeddedIam::open(&data_dir.join("iam.redb"), &args.account_id)
        .context("cannot open the IAM store")?;
    let now = clock.unix_seconds();
    iam.update(&mut |state| {
        apply_specs(
            state,
            &args.account_id,
            &loaded.policies,
            &loaded.users,
            &loaded.roles,
            &loaded.oidc_providers,
            now,
        )
    })
    .context("the configuration's IAM users, policies, roles and providers are not valid")?;
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some(crate::tls::acceptor(cert, key)?),
        (None, None) => None,
        _ => anyhow::bail!("--tls-cert and --tls-key go together"),
    };
    let listener = TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on `{}`", args.listen))?;
    let local = listener.local_addr()?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    let issuer_url = match &args.issuer {
        Some(url) => url.trim_end_matches('/').to_owned(),
        None if local.ip().is_unspecified() => format!("{scheme}://127.0.0.1:{}", local.port()),
        None => format!("{scheme}://{local}"),
    };
    let issuer = Arc::new(crate::oidc::OwnIssuer::open(&data_dir, &issuer_url, now)?);
    register_issuer(&iam, issuer.url(), now)?;
    let imds = match args.imds_listen {
        Some(addr) => {
            anyhow::ensure!(
                tls.is_none(),
                "--imds-listen needs the S3 endpoint on plain HTTP for now (the metadata service calls STS on it)"
            );
            let (id, secret) = imds_key(&iam, &data_dir, now)?;
            let imds_listener = TcpListener::bind(addr)
                .await
                .with_context(|| format!("cannot listen on `{addr}` (--imds-listen)"))?;
            let imds_local = imds_listener.local_addr()?;
            let sts_host = match local.ip() {
                ip if ip.is_unspecified() => format!("127.0.0.1:{}", local.port()),
                _ => local.to_string(),
            };
            let sts = keyless_imds::StsClientConfig {
                endpoint: format!("http://{sts_host}"),
                region: args.region.clone(),
                access_key_id: id,
                secret_access_key: secret,
                session_token: None,
                timeout: keyless_imds::DEFAULT_STS_TIMEOUT,
            };
            let service = crate::agent::start(
                &args.imds,
                &args.account_id,
                sts,
                imds_local,
                Some(&issuer_url),
            )
            .await?;
            Some((imds_listener, service, imds_local))
        }
        None => None,
    };
    let iam: Arc<dyn IamStore> = Arc::new(iam);
    let session_key = Arc::new(session_key(&data_dir, args.session_key_file.as_deref())?);
    let root_id = root.access_key_id.clone();
    let keys = Keyring::new(root, Arc::clone(&iam)).with_sessions(session_key.clone());
    let verifier = crate::oidc::Verifier::new(
        Arc::clone(&issuer),
        loaded.jwks_files()?,
        keyless_oidc::JwksCache::new(Arc::new(keyless_oidc::HttpFetch::new()?)),
    );
    let sts = Sts::new(iam, session_key, Arc::new(verifier));
    let store = Arc::new(
        DiskStore::open(data_dir.join("objects"), Arc::clone(&clock))
            .with_context(|| format!("cannot open the object store in `{}`", data_dir.display()))?,
    );

    create_buckets(store.as_ref(), loaded.buckets).await?;

    let mut builder = S3ServiceBuilder::new(KeylessS3::new(
        Arc::clone(&store),
        &args.region,
        &args.account_id,
    ));
    let query = QueryApi::new(keys.clone(), Arc::clone(&clock), sts);
    let authorizer = Authorizer::new(store, keys, clock);
    builder.set_auth(authorizer.clone());
    builder.set_access(authorizer);

    if !args.domain.is_empty() {
        // Clients send `Host: bucket.domain` on port 80/443 and `bucket.domain:port` elsewhere.
        let mut domains = args.domain.clone();
        domains.extend(args.domain.iter().map(|d| format!("{d}:{}", local.port())));
        let host = MultiDomain::new(&domains)
            .map_err(|e| anyhow::anyhow!("--domain: {e}: {}", args.domain.join(", ")))?;
        builder.set_host(host);
    }
    let service = builder.build();
    let endpoint = format!("{scheme}://{local}");
    let banner = match &credentials_file {
        Some(file) => format!(
            "keyless: S3 endpoint {endpoint}\nkeyless: IAM and STS on the same endpoint; OIDC issuer {}\nkeyless: root access key {} (secret in {})\nkeyless: try  AWS_SHARED_CREDENTIALS_FILE={} aws --endpoint-url {endpoint} s3 ls\n",
            issuer.url(),
            root_id,
            file.display(),
            file.display()
        ),
        None => format!(
            "keyless: S3 endpoint {endpoint}\nkeyless: IAM and STS on the same endpoint; OIDC issuer {}\nkeyless: root access key {} (from KEYLESS_ROOT_ACCESS_KEY_ID)\n",
            issuer.url(),
            root_id
        ),
    };
    let banner = match &imds {
        Some((_, _, local)) => format!(
            "{banner}keyless: metadata service http://{local}; roles for pods must trust arn:aws:iam::{}:user/{IMDS_USER}\n",
            args.account_id
        ),
        None => banner,
    };
    // The banner is for whoever started the server; if they stopped reading (a closed pipe),
    // the server goes on serving.
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_all(banner.as_bytes()).and_then(|()| out.flush()) {
        tracing::debug!(error = %e, "cannot print the banner");
    }
    drop(out);
    tracing::info!(%endpoint, data_dir = %data_dir.display(), "serving S3");
    if let Some((listener, service, local)) = imds {
        tracing::info!(%local, "serving instance metadata");
        tokio::spawn(async move {
            if let Err(e) = crate::agent::serve(listener, service).await {
                tracing::error!(error = %e, "the metadata service stopped");
            }
        });
    }

    accept_loop(listener, service, query, issuer, tls).await
}

/// The next connection on `listener`, without Nagle delay (small responses go out at once);
/// `None` once `shutdown` completes. A failed accept is logged and the next one awaited.
pub(crate) async fn next_connection(
    listener: &TcpListener,
    mut shutdown: std::pin::Pin<&mut impl std::future::Future>,
) -> Option<(tokio::net::TcpStream, std::net::SocketAddr)> {
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((socket, peer)) => {
                    if let Err(e) = socket.set_nodelay(true) {
                        tracing::debug!(error = %e, "cannot set TCP_NODELAY");
                    }
                    return Some((socket, peer));
                }
                Err(e) => tracing::warn!(error = %e, "accept failed"),
            },
            _ = &mut shutdown => return None,
        }
    }
}

/// The session key: from `file`, or from the data folder's `session-key`, created on first
/// start. Base64 of 32 random bytes or more, readable by its owner alone.
fn session_key(data_dir: &Path, file: Option<&Path>) -> anyhow::Result<SessionKey> {
    use base64::Engine as _;
    let engine = base64::engine::general_purpose::STANDARD;
    let path = match file {
        Some(file) => file.to_path_buf(),
        None => {
            let path = data_dir.join("session-key");
            if !path.exists() {
                let bytes = SessionKey::generate_bytes()?;
                crate::private::create(&path, format!("{}\n", engine.encode(bytes)).as_bytes())?;
            }
            path
        }
    };
    let text = crate::private::read(&path)?;
    let master = engine
        .decode(String::from_utf8_lossy(&text).trim())
        .with_context(|| format!("`{}` is not base64", path.display()))?;
    SessionKey::from_master(&master).with_context(|| format!("`{}`", path.display()))
}

/// Registers this server's issuer as an OIDC provider (audience `sts.amazonaws.com`) unless
/// it already is, so that roles can trust its tokens as they would an EKS cluster's.
fn register_issuer(iam: &EmbeddedIam, url: &str, now: i64) -> anyhow::Result<()> {
    let provider = keyless_types::ProviderUrl::parse(url)
        .with_context(|| format!("the OIDC issuer `{url}`"))?;
    if iam
        .snapshot()
        .state
        .oidc_providers
        .contains_key(provider.key())
    {
        return Ok(());
    }
    iam.update(&mut |state| {
        let new = keyless_iam::oidc_providers::NewOidcProvider {
            url: url.to_owned(),
            client_ids: vec!["sts.amazonaws.com".to_owned()],
            ..Default::default()
        };
        state.create_oidc_provider(new, now).map(drop)
    })
    .with_context(|| format!("cannot register the OIDC issuer `{url}`"))?;
    tracing::info!(%url, "registered this server's OIDC issuer as an OIDC provider");
    Ok(())
}

/// The IAM user whose key signs the built-in metadata service's AssumeRole calls.
pub(crate) const IMDS_USER: &str = "keyless-imds";

/// The key of [`IMDS_USER`]: kept in the data folder's `imds-credentials` (mode 0600), and
/// created, with the user, on first use. A key no longer in IAM (an operator deleted it, say
/// because the file leaked) is never brought back: a new one replaces it, file and all.
fn imds_key(iam: &EmbeddedIam, data_dir: &Path, now: i64) -> anyhow::Result<(String, Secret)> {
    let file = data_dir.join("imds-credentials");
    if file.exists() {
        let (id, secret) = crate::root::read_shared_credentials(&file, "default")?;
        if iam.snapshot().state.access_key(&id).is_some() {
            return Ok((id, secret));
        }
        tracing::warn!(user = IMDS_USER, key = %id, "the metadata service's key is gone from IAM; making a new one");
    }
    let (id, secret) = (
        keyless_iam::ids::access_key_id()?,
        keyless_iam::ids::secret_access_key()?,
    );
    iam.update(&mut |state| {
        if state.user(IMDS_USER).is_err() {
            state.create_user(IMDS_USER, "/", keyless_iam::ids::user_id()?, now)?;
        }
        state
            .create_access_key(IMDS_USER, id.clone(), secret.clone(), now)
            .map(drop)
    })
    .context("cannot create the metadata service's IAM user and key")?;
    let whose = format!("The key of Keyless's metadata service (IAM user {IMDS_USER})");
    let text = crate::root::shared_credentials(&whose, &id, &secret);
    crate::private::replace(&file, text.as_bytes())?;
    tracing::info!(user = IMDS_USER, key = %id, "created the metadata service's key");
    Ok((id, secret))
}

/// Creates the configuration's buckets that do not exist yet and sets their policies.
async fn create_buckets(
    store: &DiskStore,
    buckets: Vec<(String, Option<String>)>,
) -> anyhow::Result<()> {
    for (i, (name, policy)) in buckets.into_iter().enumerate() {
        match store.create_bucket(&name).await {
            Ok(_) => tracing::info!(bucket = %name, "created bucket"),
            Err(StoreError::BucketAlreadyExists(_)) => {}
            Err(e) => {
                return Err(e).with_context(|| format!("buckets[{i}]: cannot create `{name}`"));
            }
        }
        if let Some(text) = policy {
            Policy::parse_as(&text, PolicyKind::Resource)
                .with_context(|| format!("buckets[{i}].policy"))?;
            store.set_bucket_policy(&name, Some(text)).await?;
        }
    }
    Ok(())
}

async fn accept_loop(
    listener: TcpListener,
    service: s3s::service::S3Service,
    query: QueryApi,
    issuer: Arc<crate::oidc::OwnIssuer>,
    tls: Option<TlsAcceptor>,
) -> anyhow::Result<()> {
    let mut http = ConnBuilder::new(TokioExecutor::new());
    // S3 allows 8 KiB of request headers; 64 KiB leaves room and stops abuse.
    http.http1()
        .max_buf_size(MAX_HEADER_BYTES)
        // A client that never finishes its headers (slowloris) is let go.
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT);
    http.http2().max_header_list_size(MAX_HEADER_BYTES as u32);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let shutdown = tokio::signal::ctrl_c();
    tokio::pin!(shutdown);
    while let Some((socket, peer)) = next_connection(&listener, shutdown.as_mut()).await {
        let secure = tls.is_some();
        let (service, query, issuer) = (service.clone(), query.clone(), Arc::clone(&issuer));
        let per_request =
            hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
                req.extensions_mut().insert(ClientAddr(peer));
                req.extensions_mut().insert(SecureTransport(secure));
                let (service, query, issuer) =
                    (service.clone(), query.clone(), Arc::clone(&issuer));
                async move {
                    if let Some(document) = oidc_document(&issuer, &req) {
                        return Ok(document);
                    }
                    if QueryApi::claims(&req) {
                        return Ok(query.serve(req, Some(peer.ip()), secure).await);
                    }
                    // s3s reads a browser-form POST (PostObject) whole, before any check;
                    // Keyless does not serve it, so it is refused before a byte is read.
                    if is_form_post(&req) {
                        return Ok(not_implemented(
                            "POST uploads from browser forms are not supported.",
                        ));
                    }
                    sigv2_bucket_path(&mut req);
                    hyper::service::Service::call(&service, req).await
                }
            });
        let (http, watcher, tls) = (http.clone(), graceful.watcher(), tls.clone());
        tokio::spawn(async move {
            let served = match tls {
                None => {
                    watcher
                        .watch(
                            http.serve_connection(TokioIo::new(socket), per_request)
                                .into_owned(),
                        )
                        .await
                }
                Some(acceptor) => {
                    match tokio::time::timeout(TLS_HANDSHAKE, acceptor.accept(socket)).await {
                        Ok(Ok(stream)) => {
                            watcher
                                .watch(
                                    http.serve_connection(TokioIo::new(stream), per_request)
                                        .into_owned(),
                                )
                                .await
                        }
                        Ok(Err(e)) => {
                            tracing::debug!(%peer, error = %e, "TLS handshake failed");
                            return;
                        }
                        Err(_) => {
                            tracing::debug!(%peer, "TLS handshake timed out");
                            return;
                        }
                    }
                }
            };
            if let Err(e) = served {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
    tracing::info!("shutting down: finishing requests in flight");
    graceful.shutdown().await;
    Ok(())
}

/// SigV2 signs a bucket-level request with the resource `/bucket/` (what botocore and AWS
/// compute), while s3s signs the path as sent, `/bucket` in path style. The path is given its
/// slash for s3s, which routes both alike.
fn sigv2_bucket_path<B>(req: &mut hyper::Request<B>) {
    let v2 = req
        .headers()
        .get(hyper::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.starts_with("AWS "));
    let path = req.uri().path();
    if !v2 || path.len() < 2 || path[1..].contains('/') {
        return;
    }
    let path_and_query = match req.uri().query() {
        Some(q) => format!("{path}/?{q}"),
        None => format!("{path}/"),
    };
    let mut parts = req.uri().clone().into_parts();
    match path_and_query.parse() {
        Ok(pq) => parts.path_and_query = Some(pq),
        Err(_) => return,
    }
    if let Ok(uri) = hyper::Uri::from_parts(parts) {
        *req.uri_mut() = uri;
    }
}

/// The issuer's discovery or JWKS document, for an unsigned GET of its path.
fn oidc_document<B>(
    issuer: &crate::oidc::OwnIssuer,
    req: &hyper::Request<B>,
) -> Option<hyper::Response<s3s::Body>> {
    if req.method() != hyper::Method::GET
        || req.headers().contains_key(hyper::header::AUTHORIZATION)
    {
        return None;
    }
    let body = issuer.document(req.uri().path())?;
    let mut response = hyper::Response::new(s3s::Body::from(body));
    let headers = response.headers_mut();
    headers.insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    headers.insert(
        hyper::header::CACHE_CONTROL,
        hyper::header::HeaderValue::from_static("public, max-age=300"),
    );
    Some(response)
}

fn is_form_post<B>(req: &hyper::Request<B>) -> bool {
    req.method() == hyper::Method::POST
        && crate::query::content_type_is(req.headers(), "multipart/form-data")
}

fn not_implemented(message: &str) -> hyper::Response<s3s::Body> {
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>NotImplemented</Code><Message>{message}</Message></Error>"
    );
    let mut response = hyper::Response::new(s3s::Body::from(body));
    *response.status_mut() = hyper::StatusCode::NOT_IMPLEMENTED;
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/xml"),
    );
    response
}
