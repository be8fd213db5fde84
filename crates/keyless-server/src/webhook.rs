//! `keyless webhook`: the pod-identity admission webhook, served over HTTPS (`POST /mutate`) as
//! the API server calls it, with its service accounts from the Kubernetes API (a watch, and a
//! GET on a miss) or a file, and the report of running pods that missed their mutation.
//!
//! <https://kubernetes.io/docs/reference/access-authn-authz/extensible-admission-controllers/>
//!
//! A review: the method, `Content-Type: application/json` (else 415, as AWS's webhook), a body
//! of at most 3 MiB (the API server's own request limit; else 413), an AdmissionReview (else
//! 400, saying why); then the service account (the directory, else a GET), the rules of
//! `keyless_webhook::mutate`, one log line, and the answer. The webhook never refuses a pod for
//! a fault of its own unless `--failure-policy fail`.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use bytes::Bytes;
use http_body_util::{BodyExt as _, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioExecutor;
use hyper_util::server::conn::auto::Builder as ConnBuilder;
use keyless_imds::{FileChange, FileWatch, RoleConfig, RoleResolver};
use keyless_types::{AccountId, Clock};
use keyless_webhook::{
    Associations, CaBundle, Directory, FailurePolicy, PodRecord, ServiceAccount, Settings,
};
use tokio::net::TcpListener;

use crate::admin::Admin;
use crate::lifecycle::{Readiness, Shutdown};
use crate::listener::{self, Limits};
use crate::metrics::{Metrics, WebhookMetrics};
use crate::options::WebhookOptions;
use crate::self_signed::{HeldCert, SelfSigned};

/// The path the API server posts reviews to.
pub const MUTATE_PATH: &str = "/mutate";
/// The largest review read.
const MAX_BODY: usize = 3 << 20;
/// Where a pod finds its own namespace (the kubelet's service-account mount).
const OWN_NAMESPACE_FILE: &str = "/var/run/secrets/kubernetes.io/serviceaccount/namespace";
/// How often the files are looked at for changes.
const FILE_POLL: Duration = Duration::from_millis(500);
/// The Event's reason on a pod that runs without its credentials.
const MISSED_REASON: &str = "PodIdentityNotInjected";
/// The Events' component.
const COMPONENT: &str = "keyless-webhook";

/// The sockets the webhook serves, bound by its caller.
#[derive(Debug)]
pub struct WebhookListeners {
    /// `POST /mutate`, over TLS.
    pub webhook: TcpListener,
    /// `/healthz` and `/readyz` (`--admin-listen`).
    pub admin: Option<TcpListener>,
}

impl WebhookListeners {
    /// Binds the addresses `options` names.
    pub async fn bind(options: &WebhookOptions) -> anyhow::Result<Self> {
        Ok(Self {
            webhook: listener::bind(options.listen, "--listen").await?,
            admin: match options.server.admin_listen.addr() {
                Some(addr) => Some(listener::bind(addr, "--admin-listen").await?),
                None => None,
            },
        })
    }
}

/// What answers reviews: the rules, their inputs, and the API for misses.
struct Handler {
    settings: Settings,
    roles: RoleResolver,
    associations: Arc<RwLock<Arc<Associations>>>,
    /// The associations of the command line, to which the file's are added.
    flag_associations: Vec<keyless_webhook::Association>,
    directory: Directory,
    client: Option<keyless_k8s::Client>,
    failure_policy: FailurePolicy,
    /// Namespaces `keyless webhook config` leaves out (kube-system, and the webhook's own):
    /// their pods are never mutated, so never reported either.
    unmutated_namespaces: Vec<String>,
    metrics: WebhookMetrics,
}

/// An opened webhook, ready to run.
pub struct Webhook {
    listeners: WebhookListeners,
    handler: Arc<Handler>,
    tls: tokio_rustls::TlsAcceptor,
    readiness: Readiness,
    limits: Limits,
    banner: String,
    metrics: Metrics,
}

impl Webhook {
    /// Reads the certificate, starts the sources and prepares the webhook on `listeners`.
    pub async fn open(args: WebhookOptions, listeners: WebhookListeners) -> anyhow::Result<Self> {
        let held = Arc::new(HeldCert::default());
        let tls = match (&args.tls_cert, &args.tls_key) {
            (Some(cert), Some(key)) => crate::tls::acceptor(cert, key)?.acceptor,
            _ if args.self_signed => crate::self_signed::acceptor(Arc::clone(&held))?,
            _ => anyhow::bail!(
                "the webhook needs --tls-cert and --tls-key, or --self-signed: the API server calls webhooks over HTTPS only"
            ),
        };
        let ca_bundle = match &args.ca_bundle_config_map {
            Some(text) => Some(parse_ca_bundle(text)?),
            None => None,
        };
        let settings = Settings {
            audience: args.token_audience.clone(),
            token_expiration: args.token_expiration,
            mount_path: args.token_mount_path.clone(),
            region: args.region.clone(),
            regional_sts: args.sts_regional_endpoints,
            sts_endpoint: args.sts_endpoint.clone(),
            s3_endpoint: args.s3_endpoint.clone(),
            ca_bundle,
            container_credentials_uri: args.container_credentials_uri.clone(),
            token_fs_group: args.token_fs_group,
        };
        let mut role_config =
            RoleConfig::new(AccountId::parse(&args.account_id).context("--account-id")?);
        role_config.restrict_namespaces = args.namespace_restrictions;
        let readiness = Readiness::default();
        let directory = Directory::new();
        let client = if args.kubernetes {
            let kubeconfig = args.kubeconfig.as_ref().and_then(|list| {
                std::env::split_paths(list)
                    .next()
                    .filter(|p| !p.as_os_str().is_empty())
            });
            Some(
                keyless_k8s::client(kubeconfig.as_deref())
                    .await
                    .context("cannot reach the Kubernetes API")?,
            )
        } else {
            None
        };
        if args.self_signed {
            let client = client.clone().context("--self-signed needs --kubernetes")?;
            let service = args
                .service_name
                .clone()
                .context("--self-signed needs --service-name")?;
            let namespace = match &args.namespace {
                Some(ns) => ns.clone(),
                None => std::fs::read_to_string(OWN_NAMESPACE_FILE)
                    .map(|ns| ns.trim().to_owned())
                    .ok()
                    .filter(|ns| !ns.is_empty())
                    .with_context(|| format!("--self-signed needs --namespace (there is no {OWN_NAMESPACE_FILE} to read it from)"))?,
            };
            let site = SelfSigned {
                service,
                namespace,
                webhook_configuration: args.webhook_configuration.clone(),
            };
            readiness.pending(
                crate::self_signed::READINESS,
                format!(
                    "the self-signed certificate is not in place yet (Secret {}/{})",
                    site.namespace,
                    site.secret_name()
                ),
            );
            #[allow(clippy::disallowed_types)] // the composition root's clock
            let clock: Arc<dyn Clock> = Arc::new(keyless_types::SystemClock);
            tokio::spawn(crate::self_signed::maintain(
                client,
                site,
                held,
                readiness.clone(),
                clock,
            ));
        }
        let metrics = Metrics::new();
        let handler = Arc::new(Handler {
            metrics: WebhookMetrics::register(&metrics),
            settings,
            roles: RoleResolver::new(role_config)?,
            associations: Arc::new(RwLock::new(Arc::new(Associations::new(
                args.associations.clone(),
            )))),
            flag_associations: args.associations.clone(),
            directory: directory.clone(),
            client: client.clone(),
            failure_policy: args.failure_policy.policy(),
            unmutated_namespaces: ["kube-system".to_owned()]
                .into_iter()
                .chain(args.namespace.clone())
                .collect(),
        });
        if let Some(path) = &args.associations_file {
            readiness.pending("associations", "the associations file has not been read");
            tokio::spawn(watch_associations(
                path.clone(),
                Arc::clone(&handler),
                readiness.clone(),
            ));
        }
        match (&args.service_accounts_file, &client) {
            (Some(path), _) => {
                readiness.pending(
                    "service-accounts",
                    "the service accounts file has not been read",
                );
                tokio::spawn(watch_accounts_file(
                    path.clone(),
                    directory,
                    readiness.clone(),
                ));
            }
            (None, Some(client)) => {
                readiness.pending(
                    "service-accounts",
                    "the service accounts have not been listed",
                );
                let (watching, ready) = (client.clone(), readiness.clone());
                tokio::spawn(async move {
                    let synced = move || ready.done("service-accounts");
                    if let Err(e) =
                        keyless_k8s::watch_service_accounts(watching, directory, synced).await
                    {
                        tracing::error!(error = %e, "the service account watch stopped");
                    }
                });
                tokio::spawn(report_unmutated(
                    client.clone(),
                    Arc::clone(&handler),
                    readiness.clone(),
                    args.report_every,
                ));
            }
            (None, None) => anyhow::bail!(
                "the webhook needs its service accounts: give --kubernetes, or --service-accounts-file"
            ),
        }
        let local = listeners.webhook.local_addr()?;
        let mut banner = format!("keyless: webhook https://{local}{MUTATE_PATH}\n");
        if let Some(admin) = &listeners.admin {
            banner.push_str(&format!(
                "keyless: admin http://{} (/healthz, /readyz, /metrics)\n",
                admin.local_addr()?
            ));
        }
        tracing::info!(%local, "serving the pod-identity webhook");
        Ok(Self {
            listeners,
            handler,
            tls,
            readiness,
            limits: args.server.limits(),
            banner,
            metrics,
        })
    }

    /// What the webhook tells whoever started it.
    pub fn banner(&self) -> &str {
        &self.banner
    }

    /// Serves until `shutdown`, then drains.
    pub async fn run(self, shutdown: Shutdown) -> anyhow::Result<()> {
        let admin = Admin::start(
            self.listeners.admin,
            self.readiness,
            self.metrics,
            &shutdown,
        );
        let mut http = ConnBuilder::new(TokioExecutor::new());
        http.http1()
            .timer(hyper_util::rt::TokioTimer::new())
            .header_read_timeout(self.limits.idle_timeout.min(Duration::from_secs(10)));
        let handler = self.handler;
        listener::serve(
            "webhook",
            self.listeners.webhook,
            http,
            Some(self.tls),
            self.limits,
            shutdown,
            move |_| {
                let handler = Arc::clone(&handler);
                hyper::service::service_fn(move |req: Request<Incoming>| {
                    let handler = Arc::clone(&handler);
                    async move { Ok::<_, std::convert::Infallible>(handler.handle(req).await) }
                })
            },
        )
        .await;
        admin.stop().await;
        tracing::info!("stopped");
        Ok(())
    }
}

/// A review's outcome as the metrics label it.
fn outcome_label(outcome: &keyless_webhook::Outcome) -> &'static str {
    use keyless_webhook::{IdentityKind, Outcome};
    match outcome {
        Outcome::Mutated(IdentityKind::WebIdentity) => "mutated_web_identity",
        Outcome::Mutated(IdentityKind::PodIdentity) => "mutated_container_credentials",
        Outcome::AlreadyMutated => "already_mutated",
        Outcome::NoIdentity => "no_role",
        Outcome::Skipped => "skipped",
        Outcome::Conflict => "conflict",
    }
}

/// `NAME[:KEY]`.
fn parse_ca_bundle(text: &str) -> anyhow::Result<CaBundle> {
    let (name, key) = text.split_once(':').unwrap_or((text, "ca.crt"));
    let dns_ok = |s: &str| {
        !s.is_empty()
            && s.len() <= 253
            && s.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
    };
    let key_ok = |s: &str| {
        !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
    };
    if !dns_ok(name) || !key_ok(key) {
        anyhow::bail!(
            "--ca-bundle-config-map `{text}` is not NAME[:KEY] (a ConfigMap's name, and a key such as ca.crt)"
        );
    }
    Ok(CaBundle {
        config_map: name.to_owned(),
        key: key.to_owned(),
    })
}

fn text(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

fn json(body: Vec<u8>) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

impl Handler {
    async fn handle(&self, req: Request<Incoming>) -> Response<Full<Bytes>> {
        match (req.method(), req.uri().path()) {
            (&Method::POST, MUTATE_PATH) => {}
            (&Method::GET, "/healthz") => return text(StatusCode::OK, "ok\n".into()),
            (_, MUTATE_PATH) => {
                return text(
                    StatusCode::METHOD_NOT_ALLOWED,
                    "POST an AdmissionReview to /mutate\n".into(),
                );
            }
            _ => {
                return text(
                    StatusCode::NOT_FOUND,
                    "not found: the webhook answers POST /mutate\n".into(),
                );
            }
        }
        let json_body = req
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"));
        if !json_body {
            return text(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "an AdmissionReview is posted as Content-Type: application/json\n".into(),
            );
        }
        let body = match Limited::new(req.into_body(), MAX_BODY).collect().await {
            Ok(body) => body.to_bytes(),
            Err(e)
                if e.downcast_ref::<http_body_util::LengthLimitError>()
                    .is_some() =>
            {
                return text(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!("an AdmissionReview is at most {MAX_BODY} bytes\n"),
                );
            }
            Err(e) => {
                return text(
                    StatusCode::BAD_REQUEST,
                    format!("cannot read the body: {e}\n"),
                );
            }
        };
        let review = match keyless_webhook::review::parse(&body) {
            Ok(review) => review,
            Err(e) => {
                tracing::warn!(error = %e, "webhook: refused a body that is not an AdmissionReview");
                return text(StatusCode::BAD_REQUEST, format!("keyless webhook: {e}\n"));
            }
        };
        json(self.review(&review).await)
    }

    /// The answer to one review.
    async fn review(&self, review: &keyless_webhook::review::Review) -> Vec<u8> {
        if !review.is_pod_creation() {
            return review.allow(&[], &[]);
        }
        #[allow(clippy::disallowed_methods)] // the composition root times reviews
        let started = Instant::now();
        let namespace = review.pod_namespace();
        let pod = &review.object;
        let account_name = keyless_webhook::service_account_name(pod);
        let account = match self.service_account(namespace, account_name).await {
            Ok(account) => account,
            Err(e) => {
                let message =
                    format!("cannot read service account {namespace}/{account_name}: {e}");
                tracing::error!(%namespace, service_account = %account_name, error = %e, "webhook: service account unknown");
                self.metrics.reviewed("error", started.elapsed());
                return match self.failure_policy {
                    FailurePolicy::Fail => {
                        review.deny(500, &format!("keyless webhook: {message}"), &[])
                    }
                    FailurePolicy::Ignore => {
                        review.allow(&[], &[format!("{message}; the pod is not mutated")])
                    }
                };
            }
        };
        let namespace_object = self.directory.namespace(namespace);
        let associations = Arc::clone(&self.associations.read().unwrap_or_else(|e| e.into_inner()));
        let mutation = keyless_webhook::mutate(
            &self.settings,
            &self.roles,
            &associations,
            namespace,
            pod,
            account.as_deref(),
            namespace_object.as_deref(),
        );
        let name = pod["metadata"]["name"]
            .as_str()
            .or(pod["metadata"]["generateName"].as_str())
            .unwrap_or("");
        tracing::info!(
            uid = %review.uid,
            %namespace,
            pod = %name,
            service_account = %account_name,
            outcome = mutation.outcome.as_str(),
            operations = mutation.patch.len(),
            warnings = mutation.warnings.len(),
            micros = started.elapsed().as_micros() as u64,
            "webhook: review"
        );
        for warning in &mutation.warnings {
            tracing::warn!(%namespace, pod = %name, %warning, "webhook: warning");
        }
        self.metrics
            .reviewed(outcome_label(&mutation.outcome), started.elapsed());
        review.allow(&mutation.patch, &mutation.warnings)
    }

    /// The service account, from the directory, else (with the API) read at once.
    async fn service_account(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Option<Arc<ServiceAccount>>, keyless_k8s::K8sError> {
        if let Some(found) = self.directory.service_account(namespace, name) {
            return Ok(Some(found));
        }
        let Some(client) = &self.client else {
            return Ok(None);
        };
        let found = keyless_k8s::get_service_account(client.clone(), namespace, name).await?;
        tracing::info!(%namespace, service_account = %name, found = found.is_some(), "webhook: service account not watched yet; read from the API");
        Ok(found.map(|account| {
            self.directory.upsert_account(account.clone());
            Arc::new(account)
        }))
    }
}

/// Loads the service accounts file into `directory`, again whenever it changes.
async fn watch_accounts_file(path: std::path::PathBuf, directory: Directory, readiness: Readiness) {
    let mut changes = FileWatch::new(path.clone(), FILE_POLL);
    loop {
        match changes.next().await {
            FileChange::Changed => {
                let loaded = std::fs::read(&path)
                    .map_err(|e| e.to_string())
                    .and_then(|bytes| {
                        keyless_webhook::parse_list(&bytes).map_err(|e| e.to_string())
                    });
                match loaded {
                    Ok((accounts, namespaces)) => {
                        tracing::info!(path = %path.display(), service_accounts = accounts.len(), namespaces = namespaces.len(), "webhook: service accounts file loaded");
                        directory.replace_accounts(accounts);
                        directory.replace_namespaces(namespaces);
                        readiness.done("service-accounts");
                    }
                    Err(error) => {
                        tracing::warn!(path = %path.display(), %error, "webhook: service accounts file not loaded; keeping the last good one")
                    }
                }
            }
            FileChange::Unreadable(error) => {
                tracing::warn!(path = %path.display(), %error, "webhook: cannot read the service accounts file; keeping the last good one");
            }
        }
    }
}

/// Loads the associations file, again whenever it changes.
async fn watch_associations(path: std::path::PathBuf, handler: Arc<Handler>, readiness: Readiness) {
    let mut changes = FileWatch::new(path.clone(), FILE_POLL);
    loop {
        match changes.next().await {
            FileChange::Changed => {
                let loaded = std::fs::read_to_string(&path)
                    .map_err(|e| e.to_string())
                    .and_then(|text| Associations::parse(&text).map_err(|e| e.to_string()));
                match loaded {
                    Ok(pairs) => {
                        let all = Associations::new(
                            handler.flag_associations.iter().cloned().chain(pairs),
                        );
                        tracing::info!(path = %path.display(), associations = all.len(), "webhook: associations loaded");
                        *handler
                            .associations
                            .write()
                            .unwrap_or_else(|e| e.into_inner()) = Arc::new(all);
                        readiness.done("associations");
                    }
                    Err(error) => {
                        tracing::warn!(path = %path.display(), %error, "webhook: associations file not loaded; keeping the last good one")
                    }
                }
            }
            FileChange::Unreadable(error) => {
                tracing::warn!(path = %path.display(), %error, "webhook: cannot read the associations file; keeping the last good one");
            }
        }
    }
}

/// Running pods, and those reported as running without their credentials.
#[derive(Default)]
struct Report {
    pods: HashMap<String, PodRecord>,
    /// UID → the reason, for pods reported.
    reported: HashMap<String, String>,
}

/// Watches the cluster's pods and reports, once per pod, each that runs without the token its
/// service account asks for: a log line, a Warning Event on the pod, and a count in
/// `/readyz`'s notes. Checked after each change of a pod and every `every` (for service
/// accounts given a role after their pods started).
async fn report_unmutated(
    client: keyless_k8s::Client,
    handler: Arc<Handler>,
    readiness: Readiness,
    every: Duration,
) {
    #[allow(clippy::disallowed_types)] // the composition root builds the real clock
    let clock: Arc<dyn Clock> = Arc::new(keyless_types::SystemClock);
    let report = Arc::new(std::sync::Mutex::new(Report::default()));
    let (wake, mut woken) = tokio::sync::mpsc::channel::<()>(1);
    {
        let report = Arc::clone(&report);
        let client = client.clone();
        tokio::spawn(async move {
            let result = keyless_k8s::watch_pods(client, move |change| {
                let mut report = report.lock().unwrap_or_else(|e| e.into_inner());
                match change {
                    keyless_k8s::PodChange::Listed(pods) => {
                        report.pods = pods.into_iter().map(|p| (p.uid.clone(), p)).collect();
                        let Report { pods, reported } = &mut *report;
                        reported.retain(|uid, _| pods.contains_key(uid));
                    }
                    keyless_k8s::PodChange::Upserted(pod) => {
                        report.pods.insert(pod.uid.clone(), pod);
                    }
                    keyless_k8s::PodChange::Removed(uid) => {
                        report.pods.remove(&uid);
                        report.reported.remove(&uid);
                    }
                }
                let _ = wake.try_send(());
            })
            .await;
            if let Err(e) = result {
                tracing::error!(error = %e, "the pod watch stopped; pods without their credentials are not reported");
            }
        });
    }
    let mut tick = tokio::time::interval(every);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            Some(()) = woken.recv() => {}
        }
        if readiness.is_pending("service-accounts") {
            continue; // not listed yet: every pod would look unmutated
        }
        let associations = Arc::clone(
            &handler
                .associations
                .read()
                .unwrap_or_else(|e| e.into_inner()),
        );
        let new: Vec<(PodRecord, String)> = {
            let mut report = report.lock().unwrap_or_else(|e| e.into_inner());
            let Report { pods, reported } = &mut *report;
            let mut new = Vec::new();
            for (uid, pod) in pods.iter() {
                if handler.unmutated_namespaces.contains(&pod.namespace) {
                    continue;
                }
                match pod.missed(&handler.settings, &handler.directory, &associations) {
                    Some(reason) if !reported.contains_key(uid) => {
                        reported.insert(uid.clone(), reason.clone());
                        new.push((pod.clone(), reason));
                    }
                    Some(_) => {}
                    None => {
                        reported.remove(uid);
                    }
                }
            }
            let count = reported.len();
            handler.metrics.set_missed(count);
            readiness.note(
                "unmutated",
                (count > 0).then(|| format!("pods running without the credentials their service account asks for: {count} (see the webhook's log and the pods' Events)")),
            );
            new
        };
        for (pod, reason) in new {
            tracing::warn!(namespace = %pod.namespace, pod = %pod.name, %reason, "webhook: pod runs without its credentials");
            let now = keyless_types::time::iso8601(clock.unix_seconds());
            if let Err(e) =
                keyless_k8s::warn_pod(&client, &pod, MISSED_REASON, &reason, COMPONENT, &now).await
            {
                tracing::warn!(namespace = %pod.namespace, pod = %pod.name, error = %e, "webhook: cannot post the Event");
            }
        }
    }
}
