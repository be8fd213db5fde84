//! `keyless serve`: the S3 endpoint on the embedded default (local disk and redb), with IAM,
//! STS and the OIDC issuer on the same port, the root user's key pair created once and kept in
//! the data folder, and optionally the metadata service and the admin listener beside it.
//!
//! [`Server::open`] opens everything (storage, IAM, keys) on listeners the caller bound;
//! [`Server::run`] serves until the shutdown is asked for, then drains.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use hyper_util::rt::TokioExecutor;
use hyper_util::server::conn::auto::Builder as ConnBuilder;
use keyless_iam::{IamStore, Keyring, apply_specs};
use keyless_oidc::{HttpFetch, JwksCache, KeyChain, KeySource, StaticKeys};
use keyless_policy::{Policy, PolicyKind};
use keyless_s3::auth::Authorizer;
use keyless_s3::extensions::{ClientAddr, SecureTransport};
use keyless_s3::service::KeylessS3;
use keyless_s3::store::{DiskStore, ObjectStore as _, StoreError};
use keyless_s3::wire::{Domains, S3Front, SharedHost, StoreCors};
use keyless_sts::{SessionKey, Sts};
use keyless_types::{Clock, RequestLog, Secret};
use s3s::service::S3ServiceBuilder;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::admin::Admin;
use crate::agent::Metadata;
use crate::audit::Audit;
use crate::config::Config;
use crate::lifecycle::{Readiness, Shutdown};
use crate::listener::{self, Limits};
use crate::metrics::{Answered, Metrics, ServerMetrics};
use crate::objects::Objects;
use crate::options::ServeOptions;
use crate::query::QueryApi;
use crate::request_log::{self, RequestLogLevel};

/// How long a client has to send a request's headers, at the most.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// The largest request header block accepted.
const MAX_HEADER_BYTES: usize = 64 * 1024;

/// The sockets a server serves, bound by its caller (the binary, or a test on port 0).
#[derive(Debug)]
pub struct Listeners {
    /// S3, IAM, STS and the OIDC issuer's documents.
    pub s3: TcpListener,
    /// The instance metadata service (`--imds-listen`).
    pub imds: Option<TcpListener>,
    /// `/healthz` and `/readyz` (`--admin-listen`).
    pub admin: Option<TcpListener>,
}

impl Listeners {
    /// Binds the addresses `options` names.
    pub async fn bind(options: &ServeOptions) -> anyhow::Result<Self> {
        Ok(Self {
            s3: crate::listener::bind(options.listen, "--listen").await?,
            imds: match options.imds_listen {
                Some(addr) => Some(crate::listener::bind(addr, "--imds-listen").await?),
                None => None,
            },
            admin: match options.server.admin_listen.addr() {
                Some(addr) => Some(crate::listener::bind(addr, "--admin-listen").await?),
                None => None,
            },
        })
    }
}

/// An opened server, ready to run.
pub struct Server {
    s3: TcpListener,
    admin: Option<TcpListener>,
    imds: Option<(TcpListener, Metadata)>,
    service: S3Front,
    query: QueryApi,
    issuer: Arc<crate::issuer::OwnIssuer>,
    tls: Option<TlsAcceptor>,
    readiness: Readiness,
    limits: Limits,
    request_log: RequestLogLevel,
    banner: String,
    lifecycle: Lifecycle,
    /// IAM state in PostgreSQL, watched for `/readyz`.
    pg: Option<Arc<keyless_postgres::PgIam>>,
    /// The audit trail and its writer, when `--audit-log` asks for one.
    audit: Option<(Audit, keyless_audit::Writer)>,
    metrics: Metrics,
    server_metrics: ServerMetrics,
}

/// The periodic pass of the buckets' lifecycle rules.
struct Lifecycle {
    store: Arc<Objects>,
    clock: Arc<dyn Clock>,
    interval: Duration,
}

/// Objects, versions and uploads one lifecycle pass looks at, at most; the next pass goes on
/// where it stopped.
const LIFECYCLE_BUDGET: usize = 100_000;

impl Lifecycle {
    async fn run(self, shutdown: Shutdown) {
        let mut cursor = keyless_s3::lifecycle::Cursor::default();
        loop {
            tokio::select! {
                () = shutdown.requested() => return,
                () = tokio::time::sleep(self.interval) => {}
            }
            let now = self.clock.unix_millis();
            match keyless_s3::lifecycle::sweep(
                self.store.as_ref(),
                now,
                LIFECYCLE_BUDGET,
                &mut cursor,
            )
            .await
            {
                Ok(swept)
                    if swept.expired + swept.aborted + swept.versions_removed + swept.locked
                        > 0
                        || swept.stopped_at_budget =>
                {
                    tracing::info!(
                        expired = swept.expired,
                        versions_removed = swept.versions_removed,
                        kept_by_object_lock = swept.locked,
                        aborted = swept.aborted,
                        examined = swept.examined,
                        stopped_at_budget = swept.stopped_at_budget,
                        "lifecycle pass"
                    );
                }
                Ok(_) => {}
                Err(e) => tracing::error!(error = %e, "lifecycle pass failed"),
            }
        }
    }
}

impl Server {
    /// Opens the data folder (root key, IAM state, object store, issuer keys), applies the
    /// configuration file and prepares the services on `listeners`.
    pub async fn open(options: ServeOptions, listeners: Listeners) -> anyhow::Result<Self> {
        let mut args = options;
        let mut loaded = match &args.config {
            Some(path) => {
                let (config, base) = Config::read(path)?;
                config
                    .load(&base)
                    .with_context(|| format!("`{}` is not a valid configuration", path.display()))?
            }
            None => Config::default().load(Path::new("."))?,
        };
        // The file's `[upstream]` and `[iam_store]` fill what the command line left unset.
        let from_file = loaded.upstream.is_some() && args.upstream.upstream.is_none();
        if let Some(table) = loaded.upstream.take() {
            table.apply(&mut args.upstream, &loaded.base)?;
        }
        if from_file && args.encryption_key_file.is_some() {
            anyhow::bail!(
                "--encryption-key-file does not go with gateway mode ([upstream]): Keyless seals only what it stores itself"
            );
        }
        if let Some(table) = loaded.iam_store.take() {
            table.apply(&mut args.iam_store, &loaded.base)?;
        }
        if args.iam_store.iam_store.is_some() && args.session_key_file.is_none() {
            anyhow::bail!(
                "IAM state in PostgreSQL needs --session-key-file, the same on every replica: it seals the sessions and what is stored in the database"
            );
        }
        // The data folder holds every object and the IAM state: its owner's alone, created so
        // and tightened if an older version left it open. A folder this user does not own is
        // a volume given to it, whose mode is its giver's. One shared with a group through
        // setgid (a Kubernetes volume of the pod's fsGroup) keeps the group's bits and loses
        // others': taken from the group, the kubelet would see it changed and give the group
        // every file again (fsGroupChangePolicy OnRootMismatch), secrets included.
        {
            use std::os::unix::fs::{DirBuilderExt as _, MetadataExt as _, PermissionsExt as _};
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&args.data_dir)
                .and_then(|()| std::fs::metadata(&args.data_dir))
                .and_then(|folder| {
                    let mode = folder.mode() & 0o7777;
                    let tightened = match (
                        folder.uid() == rustix::process::geteuid().as_raw(),
                        mode & 0o2000 != 0,
                    ) {
                        (false, _) => return Ok(()),
                        // The group's as the kubelet left it; others lose their bits.
                        (true, true) => mode & !0o007,
                        (true, false) => 0o700,
                    };
                    match tightened == mode {
                        true => Ok(()),
                        false => std::fs::set_permissions(
                            &args.data_dir,
                            std::fs::Permissions::from_mode(tightened),
                        ),
                    }
                })
                .with_context(|| {
                    format!(
                        "cannot create the data folder `{}`",
                        args.data_dir.display()
                    )
                })?;
        }
        let data_dir = args.data_dir.canonicalize()?;
        #[allow(clippy::disallowed_types)] // the composition root builds the real clock
        let clock: Arc<dyn Clock> = Arc::new(keyless_types::SystemClock);
        let now = clock.unix_seconds();
        let (session_key, master) = session_key(&data_dir, args.session_key_file.as_deref())?;
        let (iam, pg) =
            crate::replicas::open(&args.iam_store, &data_dir, &args.account_id, &master).await?;
        if pg.is_some() && args.upstream.upstream.is_none() {
            tracing::warn!(
                "--iam-store without --upstream: IAM is shared, but each replica keeps its own objects and bucket policies in its data folder; replicas behind one address need --upstream"
            );
        }
        // Replicas share the root key pair and the issuer's keys through the database.
        if let Some(pg) = &pg {
            if !crate::root::in_environment() {
                crate::replicas::share_file(
                    pg,
                    &data_dir,
                    "root-credentials",
                    crate::root::CREDENTIALS_FILE,
                    crate::root::new_credentials,
                )
                .await?;
            }
            crate::replicas::share_file(
                pg,
                &data_dir,
                "oidc-keys",
                crate::issuer::KEYS_FILE,
                || crate::issuer::new_key_ring(now),
            )
            .await?;
        }
        let (root, credentials_file) = crate::root::root_key(&data_dir)?;
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
        let local = listeners.s3.local_addr()?;
        let scheme = if tls.is_some() { "https" } else { "http" };
        let issuer_url = issuer_url(args.issuer.as_deref(), scheme, local)?;
        if keyless_oidc::is_plain_http_off_loopback(&issuer_url) {
            tracing::warn!(issuer = %issuer_url, "the OIDC issuer is plain HTTP off this host: Keyless checks its own tokens with the keys in memory, but relying parties elsewhere (AWS, other clusters) should fetch its documents over https: give --tls-cert and --tls-key, or --issuer https://... when a TLS proxy is in front");
        }
        let previous_issuer =
            std::fs::read_to_string(data_dir.join(crate::issuer::ISSUER_FILE)).ok();
        let issuer = Arc::new(crate::issuer::OwnIssuer::open(&data_dir, &issuer_url, now)?);
        register_issuer(
            iam.as_ref(),
            &data_dir,
            &args.account_id,
            issuer.url(),
            previous_issuer.as_deref(),
            now,
        )?;
        let readiness = Readiness::default();
        let imds = match listeners.imds {
            Some(imds_listener) => {
                let (id, secret) = match &pg {
                    Some(pg) => shared_imds_key(pg, &data_dir, now).await?,
                    None => imds_key(iam.as_ref(), &data_dir, now)?,
                };
                let imds_local = imds_listener.local_addr()?;
                // The metadata service calls STS on this server's own socket; over TLS it
                // trusts exactly the certificate the server serves (the socket's address is no
                // name the certificate need carry).
                let sts_host = match local.ip() {
                    ip if ip.is_unspecified() => format!("127.0.0.1:{}", local.port()),
                    _ => local.to_string(),
                };
                let sts = keyless_imds::StsClientConfig {
                    endpoint: format!("{scheme}://{sts_host}"),
                    tls: tls.as_ref().map(|tls| {
                        keyless_imds::StsTls::custom(
                            tls.own_client(),
                            "this server's own certificate",
                        )
                    }),
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
                    Some(Arc::clone(&issuer)),
                    // Replicas' metadata services accept each other's IMDSv2 tokens.
                    pg.as_ref().map(|_| {
                        keyless_imds::TokenKey::from_bytes(&crate::replicas::derived_key(
                            &master,
                            b"imdsv2 session tokens",
                        ))
                    }),
                    &readiness,
                )
                .await?;
                Some((imds_listener, service, imds_local))
            }
            None => None,
        };
        let session_key = Arc::new(session_key);
        let root_id = root.access_key_id.clone();
        let keys = Keyring::new(root, Arc::clone(&iam)).with_sessions(session_key.clone());
        // Web identity tokens: the own issuer's keys in memory, then the administrator's JWKS
        // files, then the issuers' discovery documents.
        let fetch_metrics = crate::metrics::FetchMetrics::new();
        let remote = JwksCache::new(fetch_metrics.counted(Arc::new(HttpFetch::new()?)));
        for access in &loaded.provider_access {
            remote.set_fetch(
                &access.url,
                fetch_metrics.counted(Arc::new(access.fetch()?)),
            );
        }
        let verifier = KeyChain::new()
            .with(Arc::clone(&issuer) as Arc<dyn KeySource>)
            .with(Arc::new(StaticKeys::new(loaded.jwks_files()?)))
            .with(Arc::new(remote));
        let sts =
            Sts::new(iam, session_key, Arc::new(verifier)).with_limits(args.sts_limits.limits());
        let gateway_metrics = crate::metrics::GatewayMetrics::new();
        let store = Arc::new(match &args.upstream.upstream {
            Some(url) => {
                Objects::gateway(
                    &args.upstream,
                    url,
                    &data_dir.join("buckets"),
                    pg.as_ref(),
                    Arc::clone(&clock),
                    Arc::new(gateway_metrics.clone()),
                )
                .await?
            }
            None => {
                let master_keys =
                    crate::encryption::load(&data_dir, args.encryption_key_file.as_deref())?;
                Objects::Disk(
                    DiskStore::open_sealing(
                        data_dir.join("objects"),
                        Arc::clone(&clock),
                        master_keys,
                        args.encrypt_objects.sealing(),
                    )
                    .with_context(|| {
                        format!("cannot open the object store in `{}`", data_dir.display())
                    })?,
                )
            }
        });

        create_buckets(store.as_ref(), loaded.buckets).await?;

        let mut builder = S3ServiceBuilder::new(KeylessS3::new(
            Arc::clone(&store),
            &args.region,
            &args.account_id,
            Arc::clone(&clock),
        ));
        let query = QueryApi::new(keys.clone(), Arc::clone(&clock), sts);
        let cors = Arc::new(StoreCors(Arc::clone(&store)));
        let lifecycle = Lifecycle {
            store: Arc::clone(&store),
            clock: Arc::clone(&clock),
            interval: args.lifecycle_interval,
        };
        let authorizer = Authorizer::new(store, keys, clock);
        builder.set_auth(authorizer.clone());
        builder.set_access(authorizer);
        // s3s holds a browser form's file in memory (after the POST policy's signature is
        // checked): bounded per form, and forms are let in a few at a time (FORM_POSTS).
        let mut s3s_config = s3s::config::S3Config::default();
        s3s_config.post_object_max_file_size = POST_OBJECT_MAX_BYTES;
        builder.set_config(Arc::new(s3s::config::StaticConfigProvider::new(Arc::new(
            s3s_config,
        ))));

        let mut host = None;
        if !args.domain.is_empty() {
            // Clients send `Host: bucket.domain` on port 80/443 and `bucket.domain:port` elsewhere.
            let mut domains = args.domain.clone();
            domains.extend(args.domain.iter().map(|d| format!("{d}:{}", local.port())));
            let domains = Domains::new(&domains).context("--domain")?;
            let shared = SharedHost::new(domains);
            builder.set_host(shared.clone());
            host = Some(shared);
        }
        // Request ids, AWS's error texts and the presigned-URL checks around s3s.
        let service = S3Front::new(builder.build(), host).with_cors(cors);
        let endpoint = format!("{scheme}://{local}");
        let mut banner = format!(
            "keyless: S3 endpoint {endpoint}\nkeyless: IAM and STS on the same endpoint; OIDC issuer {}\n",
            issuer.url()
        );
        banner.push_str(&match &credentials_file {
            Some(file) => format!(
                "keyless: root access key {root_id} (secret in {})\nkeyless: try  AWS_SHARED_CREDENTIALS_FILE={} aws --endpoint-url {endpoint} s3 ls\n",
                file.display(),
                file.display()
            ),
            None => {
                format!("keyless: root access key {root_id} (from KEYLESS_ROOT_ACCESS_KEY_ID)\n")
            }
        });
        if let Some(url) = &args.iam_store.iam_store {
            banner.push_str(&format!(
                "keyless: IAM state in PostgreSQL {}, shared with every replica on it\n",
                keyless_postgres::redact_url(url)
            ));
        }
        if let Some((_, _, local)) = &imds {
            banner.push_str(&format!(
                "keyless: metadata service http://{local}; roles for pods must trust arn:aws:iam::{}:user/{IMDS_USER}\n",
                args.account_id
            ));
        }
        if let Some(admin) = &listeners.admin {
            banner.push_str(&format!(
                "keyless: admin http://{} (/healthz, /readyz, /metrics)\n",
                admin.local_addr()?
            ));
        }
        let audit = Audit::open(&args.audit, &args.region, &args.account_id)?;
        let metrics = Metrics::new();
        // Without an admin listener no one reads the request metrics: they are not counted.
        let server_metrics = if listeners.admin.is_some() {
            ServerMetrics::register(&metrics)
        } else {
            ServerMetrics::unread()
        };
        fetch_metrics.register(&metrics);
        if args.upstream.upstream.is_some() {
            gateway_metrics.register(&metrics);
        }
        if let Some((audit, _)) = &audit {
            let snapshot = audit.metrics();
            metrics.register(|r| r.register_collector(Box::new(snapshot)));
        }
        if let Some((_, metadata, _)) = &imds {
            metadata.register_metrics(&metrics);
        }
        if let Some(target) = &args.audit.audit_log {
            banner.push_str(&format!(
                "keyless: audit trail (CloudTrail records) to {}\n",
                if target == "-" {
                    "standard output"
                } else {
                    target
                }
            ));
        }
        tracing::info!(%endpoint, data_dir = %data_dir.display(), "serving S3");
        Ok(Self {
            s3: listeners.s3,
            admin: listeners.admin,
            imds: imds.map(|(listener, service, _)| (listener, service)),
            service,
            query,
            issuer,
            tls: tls.map(|tls| tls.acceptor),
            readiness,
            limits: args.server.limits(),
            request_log: args.server.request_log,
            banner,
            lifecycle,
            pg,
            audit,
            metrics,
            server_metrics,
        })
    }

    /// What the server tells whoever started it: its endpoints and where the root key is.
    pub fn banner(&self) -> &str {
        &self.banner
    }

    /// The readiness `/readyz` reports.
    pub fn readiness(&self) -> Readiness {
        self.readiness.clone()
    }

    /// Serves until `shutdown` is asked for, then stops accepting, reports not-ready, lets the
    /// requests in flight finish within the grace period and returns.
    pub async fn run(self, shutdown: Shutdown) -> anyhow::Result<()> {
        let Self {
            s3,
            admin,
            imds,
            service,
            query,
            issuer,
            tls,
            readiness,
            limits,
            request_log: self_request_log,
            banner: _,
            lifecycle,
            pg,
            audit,
            metrics,
            server_metrics,
        } = self;
        let (audit, audit_writer) = match audit {
            Some((audit, writer)) => {
                let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
                let grace = crate::audit::final_grace(limits.shutdown_grace);
                let task = tokio::spawn(writer.run(
                    async move {
                        let _ = stopped.await;
                    },
                    grace,
                ));
                (Some(audit), Some((stop, task)))
            }
            None => (None, None),
        };
        let clock = Arc::clone(&lifecycle.clock);
        if let Some(pg) = pg {
            tokio::spawn(crate::replicas::watch_link(
                pg,
                readiness.clone(),
                shutdown.clone(),
            ));
        }
        tokio::spawn(
            Arc::clone(&lifecycle.store).watch_upstream(readiness.clone(), shutdown.clone()),
        );
        tokio::spawn(lifecycle.run(shutdown.clone()));
        let admin = Admin::start(admin, readiness, metrics, &shutdown);
        let imds = imds.map(|(listener, metadata)| {
            tokio::spawn(crate::agent::serve(
                listener,
                metadata,
                limits,
                shutdown.clone(),
            ))
        });
        let http = s3_http(limits.idle_timeout);
        let request_log_level = self_request_log;
        let secure = tls.is_some();
        let forms = Arc::new(tokio::sync::Semaphore::new(FORM_POSTS));
        listener::serve("s3", s3, http, tls, limits, shutdown, move |peer| {
            let (service, query, issuer) = (service.clone(), query.clone(), Arc::clone(&issuer));
            let forms = Arc::clone(&forms);
            let (audit, clock) = (audit.clone(), Arc::clone(&clock));
            let server_metrics = server_metrics.clone();
            hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
                #[allow(clippy::disallowed_methods)] // the composition root times requests
                let started = std::time::Instant::now();
                let log = RequestLog::new("s3");
                // What the audit record needs of the request, kept before it is consumed.
                let asked = audit.as_ref().map(|_| {
                    crate::audit::Asked::of(
                        clock.unix_seconds(),
                        req.headers(),
                        req.extensions().get::<listener::TlsSession>().copied(),
                    )
                });
                let bytes_in = crate::audit::bytes_in(req.headers());
                let (audit, server_metrics) = (audit.clone(), server_metrics.clone());
                let method = req.method().clone();
                let expects_continue = expects_continue(req.headers());
                // One id per request, read back by S3, IAM and STS and by the request's log.
                let request_id = keyless_iam::ids::request_id();
                req.extensions_mut().insert(request_id.clone());
                req.extensions_mut().insert(log.clone());
                req.extensions_mut().insert(ClientAddr(peer));
                req.extensions_mut().insert(SecureTransport(secure));
                let (service, query, issuer) =
                    (service.clone(), query.clone(), Arc::clone(&issuer));
                let forms = Arc::clone(&forms);
                async move {
                    let response = async {
                        if let Some(document) = oidc_document(&issuer, &req) {
                            log.update(|f| f.api = "oidc");
                            return Ok(document);
                        }
                        if QueryApi::claims(&req) {
                            return Ok(query.serve(req, Some(peer.ip()), secure).await);
                        }
                        // A browser form (PostObject): a few at a time, since s3s holds each
                        // one's file in memory; its session token and file name are kept on the way.
                        if keyless_s3::wire::form::is_form(req.method(), req.headers()) {
                            let Ok(_permit) = forms.try_acquire() else {
                                let e = s3s::S3Error::with_message(
                                    s3s::S3ErrorCode::SlowDown,
                                    "Please reduce your request rate.",
                                );
                                return Ok(service.refuse(&req, e));
                            };
                            let (req, fields) = keyless_s3::wire::form::sniff_fields(req);
                            let response = service.serve(req).await?;
                            return Ok(
                                keyless_s3::wire::form::name_the_key(response, &fields).await
                            );
                        }
                        sigv2_bucket_path(&mut req);
                        service.serve(req).await
                    }
                    .await;
                    let status = match &response {
                        Ok(response) => response.status().as_u16(),
                        Err(_) => 500,
                    };
                    let elapsed = started.elapsed();
                    let fields = log.fields();
                    request_log::write(
                        request_log_level,
                        &fields,
                        Some(request_id.as_str()),
                        &method,
                        status,
                        elapsed,
                    );
                    server_metrics.observe(
                        &fields,
                        &Answered {
                            status,
                            elapsed,
                            bytes_in,
                        },
                    );
                    let api = fields.api;
                    let mut response = response?;
                    if expects_continue && status >= 300 {
                        // The body may or may not follow a refusal without 100 Continue: the
                        // connection is closed, so that no client reads the next answer on it
                        // as this one's (botocore keeps the refused status for the connection's
                        // next response).
                        response.headers_mut().insert(
                            hyper::header::CONNECTION,
                            hyper::header::HeaderValue::from_static("close"),
                        );
                    }
                    if let (Some(audit), Some(asked)) = (&audit, &asked) {
                        audit.record(
                            fields,
                            crate::audit::Seen {
                                asked,
                                request_id: request_id.as_str(),
                                source_ip: peer.ip(),
                                bytes_in,
                                status,
                                response: response.headers(),
                            },
                        );
                    }
                    if method == hyper::Method::HEAD {
                        // Over HTTP/2 hyper would send a HEAD's body (an error's XML): none goes.
                        *response.body_mut() = s3s::Body::empty();
                    }
                    Ok::<_, s3s::HttpError>(
                        response.map(|body| server_metrics.count_sent(api, body)),
                    )
                }
            })
        })
        .await;
        if let Some(imds) = imds {
            let _ = imds.await;
        }
        // Every request has been answered: the trail writes what is left, then closes.
        if let Some((stop, task)) = audit_writer {
            let _ = stop.send(());
            let _ = task.await;
        }
        admin.stop().await;
        tracing::info!("stopped");
        Ok(())
    }
}

/// Opens and runs a server on `listeners` until `shutdown`, printing nothing: what tests and
/// embedders call.
pub async fn run(
    options: ServeOptions,
    listeners: Listeners,
    shutdown: Shutdown,
) -> anyhow::Result<()> {
    Server::open(options, listeners).await?.run(shutdown).await
}

/// HTTP/1.1 and HTTP/2 for the S3 port. S3 allows 8 KiB of request headers; 64 KiB leaves room
/// and stops abuse. A client that never finishes its headers (slowloris) is let go.
fn s3_http(idle_timeout: Duration) -> ConnBuilder<TokioExecutor> {
    let mut http = ConnBuilder::new(TokioExecutor::new());
    http.http1()
        .max_buf_size(MAX_HEADER_BYTES)
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(idle_timeout.min(HEADER_READ_TIMEOUT));
    http.http2().max_header_list_size(MAX_HEADER_BYTES as u32);
    http
}

/// The session key: from `file`, or from the data folder's `session-key`, created on first
/// start. Base64 of 32 random bytes or more, readable by its owner alone.
/// Returns the key and its master bytes, from which the keys replicas share are derived.
fn session_key(data_dir: &Path, file: Option<&Path>) -> anyhow::Result<(SessionKey, Vec<u8>)> {
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
    let master = crate::private::read_key(&path, 32)?;
    let key = SessionKey::from_master(&master).with_context(|| format!("`{}`", path.display()))?;
    Ok((key, master))
}

/// The URL of this server's issuer: `--issuer`, else the address the S3 port listens on. A
/// wildcard address (`0.0.0.0`, `::`) names no host relying parties could reach, and this
/// server cannot tell which of its addresses they use: it asks for `--issuer` rather than
/// guess (the loopback address it once named is reachable from this host alone).
fn issuer_url(issuer: Option<&str>, scheme: &str, local: SocketAddr) -> anyhow::Result<String> {
    match issuer {
        Some(url) => Ok(url.trim_end_matches('/').to_owned()),
        None if local.ip().is_unspecified() => anyhow::bail!(
            "--listen `{local}` is every address of this host, and the OIDC issuer needs the one URL relying parties and pods reach: give it with --issuer ({scheme}://NODE-ADDRESS:{port}, or https://NAME when a TLS proxy is in front)",
            port = local.port()
        ),
        None => Ok(format!("{scheme}://{local}")),
    }
}

/// The data folder's record of which OIDC provider is this server's own issuer (its key, the
/// URL without the scheme), so that a changed `--issuer` moves that provider.
const OWN_PROVIDER_FILE: &str = "oidc-provider";

/// What [`register_own_provider`] did.
#[derive(Debug, PartialEq, Eq)]
enum Registered {
    /// The provider was there, with this URL.
    Unchanged,
    /// The provider was there under this key with another scheme; its URL is updated.
    Updated,
    /// A new provider.
    Created,
    /// The provider of the issuer's previous URL (given) now has the new one.
    Moved(String),
}

/// Makes `url` this server's own OIDC provider in `state`: the provider of that key if there
/// is one; else the recorded own provider (key `recorded`), moved to the new URL with its
/// audiences, thumbprints, tags and creation date; else a new one with the audience
/// `sts.amazonaws.com`. The own issuer is not a provider others run: `http://` on any host is
/// allowed for it (its keys are in memory, never fetched), so it is entered without IAM's URL
/// check.
fn register_own_provider(
    state: &mut keyless_iam::IamState,
    recorded: Option<&str>,
    url: &str,
    now: i64,
) -> Registered {
    let key = crate::issuer::own_provider_key(url);
    if let Some(existing) = state.oidc_providers.get_mut(&key) {
        if existing.url == url {
            return Registered::Unchanged;
        }
        existing.url = url.to_owned();
        return Registered::Updated;
    }
    let moved = recorded
        .filter(|old| *old != key)
        .and_then(|old| state.oidc_providers.remove(old));
    match moved {
        Some(old) => {
            let from = old.url.clone();
            let provider = keyless_iam::oidc_providers::OidcProvider {
                url: url.to_owned(),
                ..old
            };
            state.oidc_providers.insert(key, provider);
            Registered::Moved(from)
        }
        None => {
            let provider = keyless_iam::oidc_providers::OidcProvider {
                url: url.to_owned(),
                client_ids: vec!["sts.amazonaws.com".to_owned()],
                thumbprints: Vec::new(),
                created: now,
                tags: Vec::new(),
            };
            state.oidc_providers.insert(key, provider);
            Registered::Created
        }
    }
}

/// Registers this server's issuer as its one OIDC provider, so that roles can trust its tokens
/// as they would an EKS cluster's; a changed URL moves the provider recorded in the data
/// folder (or, in a data folder from before that record, the provider of `previous_url`, the
/// issuer of the last start) instead of adding another.
fn register_issuer(
    iam: &dyn IamStore,
    data_dir: &Path,
    account_id: &str,
    url: &str,
    previous_url: Option<&str>,
    now: i64,
) -> anyhow::Result<()> {
    let record = data_dir.join(OWN_PROVIDER_FILE);
    let recorded = match std::fs::read_to_string(&record) {
        Ok(text) => Some(text.trim().to_owned()).filter(|k| !k.is_empty()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(e).with_context(|| format!("cannot read `{}`", record.display())),
    }
    .or_else(|| previous_url.map(|u| crate::issuer::own_provider_key(u.trim())));
    let key = crate::issuer::own_provider_key(url);
    let mut outcome = Registered::Unchanged;
    let unchanged = (iam.snapshot().state.oidc_providers.get(&key)).is_some_and(|p| p.url == url);
    if !unchanged {
        iam.update(&mut |state| {
            outcome = register_own_provider(state, recorded.as_deref(), url, now);
            Ok(())
        })
        .with_context(|| format!("cannot register the OIDC issuer `{url}`"))?;
    }
    if recorded.as_deref() != Some(key.as_str()) {
        std::fs::write(&record, format!("{key}\n"))
            .with_context(|| format!("cannot write `{}`", record.display()))?;
    }
    let arn = |key: &str| format!("arn:aws:iam::{account_id}:oidc-provider/{key}");
    match outcome {
        Registered::Unchanged => {}
        Registered::Updated => {
            tracing::info!(%url, "updated the URL of this server's OIDC provider");
        }
        Registered::Created => {
            tracing::info!(%url, "registered this server's OIDC issuer as an OIDC provider");
        }
        Registered::Moved(from) => {
            let old = crate::issuer::own_provider_key(&from);
            tracing::warn!(
                %from,
                to = %url,
                old_arn = %arn(&old),
                new_arn = %arn(&key),
                "the OIDC issuer's URL changed: this server's OIDC provider moved to the new URL; trust policies naming the old provider (its ARN, or condition keys `{old}:sub`, `{old}:aud`) must name the new one (`{key}:sub`, `{key}:aud`)"
            );
        }
    }
    Ok(())
}

/// The IAM user whose key signs the built-in metadata service's AssumeRole calls.
pub(crate) const IMDS_USER: &str = "keyless-imds";

/// The key of [`IMDS_USER`]: kept in the data folder's `imds-credentials` (mode 0600), and
/// created, with the user, on first use. A key no longer in IAM (an operator deleted it, say
/// because the file leaked) is never brought back: a new one replaces it, file and all.
fn imds_key(iam: &dyn IamStore, data_dir: &Path, now: i64) -> anyhow::Result<(String, Secret)> {
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

/// The metadata service's key when replicas share IAM state: one key for all of them, in the
/// database. The replica that created it adds it to IAM; the others wait for it to appear
/// there. A key deleted from IAM (revoked) is replaced, never brought back.
async fn shared_imds_key(
    pg: &Arc<keyless_postgres::PgIam>,
    data_dir: &Path,
    now: i64,
) -> anyhow::Result<(String, Secret)> {
    const NAME: &str = "imds-credentials";
    let whose = format!("The key of Keyless's metadata service (IAM user {IMDS_USER})");
    let new_pair = || -> anyhow::Result<(String, Secret, Secret)> {
        let (id, secret) = (
            keyless_iam::ids::access_key_id()?,
            keyless_iam::ids::secret_access_key()?,
        );
        let text = Secret::new(crate::root::shared_credentials(&whose, &id, &secret));
        Ok((id, secret, text))
    };
    let add_to_iam = |id: &str, secret: &Secret| {
        pg.update(&mut |state| {
            if state.user(IMDS_USER).is_err() {
                state.create_user(IMDS_USER, "/", keyless_iam::ids::user_id()?, now)?;
            }
            state
                .create_access_key(IMDS_USER, id.to_owned(), secret.clone(), now)
                .map(drop)
        })
        .context("cannot create the metadata service's IAM user and key")
    };
    let (our_id, our_secret, our_text) = new_pair()?;
    let file = data_dir.join(NAME);
    let held =
        crate::replicas::share_file(pg, data_dir, NAME, NAME, || Ok(our_text.clone())).await?;
    let (id, secret) = crate::root::read_shared_credentials(&file, "default")?;
    if id == our_id {
        add_to_iam(&our_id, &our_secret)?;
        tracing::info!(user = IMDS_USER, key = %id, "created the metadata service's key");
        return Ok((id, secret));
    }
    // Another replica created it: it adds it to IAM right after.
    for _ in 0..150 {
        if pg.snapshot().state.access_key(&id).is_some() {
            return Ok((id, secret));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tracing::warn!(user = IMDS_USER, key = %id, "the metadata service's shared key is not in IAM (deleted?); making a new one");
    // The new key is shared first, and added to IAM only once it is the shared one, so that a
    // replica losing this race adds nothing.
    let (id, secret, text) = new_pair()?;
    pg.replace_shared(NAME, held.epoch, &text).await.context(
        "another replica replaced the metadata service's key at the same time: start again",
    )?;
    add_to_iam(&id, &secret)?;
    Ok((id, secret))
}

/// Creates the configuration's buckets that do not exist yet and sets their policies.
async fn create_buckets(
    store: &Objects,
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
    issuer: &crate::issuer::OwnIssuer,
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

/// Whether the request asks for `100 Continue` before it sends its body.
fn expects_continue(headers: &hyper::HeaderMap) -> bool {
    headers
        .get(hyper::header::EXPECT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("100-continue"))
}

/// Browser-form uploads served at once; more wait for a slot by answering `SlowDown` (503), which
/// browsers' upload code retries.
const FORM_POSTS: usize = 4;

/// The largest file a browser form may upload (S3 allows 5 GB; s3s holds the file in memory,
/// so Keyless keeps it to this).
const POST_OBJECT_MAX_BYTES: u64 = 64 * 1024 * 1024;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_issuer_is_the_listen_address_or_asked_for() {
        let at = |s: &str| s.parse::<SocketAddr>().unwrap();
        assert_eq!(
            issuer_url(None, "http", at("10.0.0.5:9000")).unwrap(),
            "http://10.0.0.5:9000"
        );
        assert_eq!(
            issuer_url(None, "https", at("[2001:db8::5]:9000")).unwrap(),
            "https://[2001:db8::5]:9000"
        );
        assert_eq!(
            issuer_url(
                Some("https://keyless.example.com/"),
                "http",
                at("0.0.0.0:9000")
            )
            .unwrap(),
            "https://keyless.example.com"
        );
        for wildcard in ["0.0.0.0:9000", "[::]:9000"] {
            let error = issuer_url(None, "http", at(wildcard))
                .unwrap_err()
                .to_string();
            assert!(
                error.contains("--issuer") && error.contains(":9000"),
                "{error}"
            );
        }
    }

    #[test]
    fn the_own_provider_is_registered_once_and_moved_with_its_url() {
        let mut state = keyless_iam::IamState::default();
        let first = "http://127.0.0.1:9000";
        assert_eq!(
            register_own_provider(&mut state, None, first, 5),
            Registered::Created
        );
        assert_eq!(
            register_own_provider(&mut state, Some("127.0.0.1:9000"), first, 6),
            Registered::Unchanged
        );
        state
            .oidc_providers
            .get_mut("127.0.0.1:9000")
            .unwrap()
            .client_ids
            .push("pods.eks.amazonaws.com".into());

        // A changed URL moves the recorded provider, audiences and creation date kept.
        let second = "https://keyless.example.com";
        assert_eq!(
            register_own_provider(&mut state, Some("127.0.0.1:9000"), second, 7),
            Registered::Moved(first.to_owned())
        );
        assert_eq!(state.oidc_providers.len(), 1);
        let moved = &state.oidc_providers["keyless.example.com"];
        assert_eq!(moved.url, second);
        assert_eq!(moved.created, 5);
        assert_eq!(
            moved.client_ids,
            ["sts.amazonaws.com", "pods.eks.amazonaws.com"]
        );

        // The same host with another scheme is the same provider; http on a node address is
        // allowed for the own issuer.
        assert_eq!(
            register_own_provider(
                &mut state,
                Some("keyless.example.com"),
                "http://keyless.example.com",
                8
            ),
            Registered::Updated
        );
        assert_eq!(
            register_own_provider(
                &mut state,
                Some("keyless.example.com"),
                "http://10.0.0.5:9000",
                9
            ),
            Registered::Moved("http://keyless.example.com".to_owned())
        );
        assert_eq!(
            state.oidc_providers.keys().collect::<Vec<_>>(),
            ["10.0.0.5:9000"]
        );

        // A recorded provider that is gone (an operator deleted it) is not brought back: a new
        // one is made, and other providers are left alone.
        state.oidc_providers.clear();
        register_own_provider(&mut state, None, "https://other.example", 10);
        assert_eq!(
            register_own_provider(&mut state, Some("10.0.0.5:9000"), first, 11),
            Registered::Created
        );
        assert_eq!(state.oidc_providers.len(), 2);
        assert_eq!(state.oidc_providers["127.0.0.1:9000"].created, 11);
    }
}
