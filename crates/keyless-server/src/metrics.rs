//! Prometheus metrics, served as `GET /metrics` on the admin listener of `serve`, `agent` and
//! `webhook` (the text format, by `prometheus-client`). Names follow Prometheus's conventions:
//! the `keyless_` prefix, `_total` counters, `_seconds` histograms, and label sets bounded by
//! what the server itself names (APIs, AWS operations, status classes, error codes, roles);
//! what a client sends never becomes a label unchecked.
//!
//! A request's figures come from its [`RequestFields`], the record every layer writes in, once
//! it is answered ([`ServerMetrics::observe`]); what other parts count themselves (the audit
//! trail, the agent's credential cache) is read at scrape time ([`Snapshot`]).
//!
//! <https://prometheus.io/docs/practices/naming/>

use std::collections::HashSet;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric as _};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};

use keyless_types::RequestFields;

/// The content type of the text format Prometheus scrapes.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// A process's metrics: what `/metrics` encodes. Cheap to clone.
#[derive(Clone)]
pub struct Metrics {
    registry: Arc<Mutex<Registry>>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// An empty registry; its names take the `keyless_` prefix.
    pub fn new() -> Self {
        Self {
            registry: Arc::new(Mutex::new(Registry::with_prefix("keyless"))),
        }
    }

    /// Changes the registry (registering metrics), at start-up.
    pub fn register(&self, change: impl FnOnce(&mut Registry)) {
        change(&mut self.registry.lock().unwrap_or_else(PoisonError::into_inner));
    }

    /// Every metric, in the OpenMetrics text format.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        let registry = self.registry.lock().unwrap_or_else(PoisonError::into_inner);
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &registry);
        text
    }
}

/// `api`, `operation` and `status` (`2xx`, ..., `5xx`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    api: &'static str,
    operation: &'static str,
    status: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OperationLabels {
    api: &'static str,
    operation: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ApiLabels {
    api: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DecisionLabels {
    api: &'static str,
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct IssuedLabels {
    kind: &'static str,
    role: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RefusedLabels {
    operation: &'static str,
    reason: String,
}

/// How many distinct values a label taken from a request may have; the rest read `other`.
const MAX_LABEL_VALUES: usize = 512;

/// The values a label has taken, bounded: a value the server has not seen before becomes
/// `other` once [`MAX_LABEL_VALUES`] are known.
#[derive(Default)]
struct Bounded(Mutex<HashSet<String>>);

impl Bounded {
    fn label(&self, value: &str) -> String {
        let mut seen = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if seen.contains(value) {
            return value.to_owned();
        }
        if seen.len() >= MAX_LABEL_VALUES {
            return "other".to_owned();
        }
        seen.insert(value.to_owned());
        value.to_owned()
    }
}

/// A histogram of times from 1 ms to about 16 s (15 buckets doubling), the range of requests,
/// STS calls, upstream answers and fetches alike.
fn seconds_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 2.0, 15))
}

/// What `keyless serve` counts of the requests it answers (nothing when no admin listener
/// could serve them: [`ServerMetrics::unread`]).
#[derive(Clone)]
pub struct ServerMetrics(Option<Arc<ServerInner>>);

struct ServerInner {
    requests: Family<RequestLabels, Counter>,
    durations: Family<OperationLabels, Histogram>,
    received: Family<ApiLabels, Counter>,
    sent: Family<ApiLabels, Counter>,
    decisions: Family<DecisionLabels, Counter>,
    issued: Family<IssuedLabels, Counter>,
    refused: Family<RefusedLabels, Counter>,
    values: Bounded,
}

/// One answered request, as the metrics see it.
pub struct Answered {
    /// The HTTP status.
    pub status: u16,
    /// From the request's arrival to its answer's head.
    pub elapsed: Duration,
    /// The body's bytes ([`crate::audit::bytes_in`]): counted when the answer is a success, for
    /// which the whole body was read.
    pub bytes_in: Option<u64>,
}

impl ServerMetrics {
    /// Registers the server's metrics in `metrics`.
    pub fn register(metrics: &Metrics) -> Self {
        let inner = ServerInner {
            requests: Family::default(),
            durations: Family::new_with_constructor(seconds_histogram),
            received: Family::default(),
            sent: Family::default(),
            decisions: Family::default(),
            issued: Family::default(),
            refused: Family::default(),
            values: Bounded::default(),
        };
        metrics.register(|r| {
            r.register(
                "requests",
                "Requests answered, by API (s3, iam, sts, oidc), operation and status class",
                inner.requests.clone(),
            );
            r.register_with_unit(
                "request_duration",
                "Time from a request's arrival to its answer's head, by API and operation",
                Unit::Seconds,
                inner.durations.clone(),
            );
            r.register_with_unit(
                "received",
                "Request body bytes received by requests that succeeded, by API (their decoded Content-Length)",
                Unit::Bytes,
                inner.received.clone(),
            );
            r.register_with_unit(
                "sent",
                "Response body bytes sent, by API (counted as they are sent)",
                Unit::Bytes,
                inner.sent.clone(),
            );
            r.register(
                "policy_decisions",
                "Policy decisions, by API and result (allowed, explicit_deny, implicit_deny)",
                inner.decisions.clone(),
            );
            r.register(
                "sts_credentials_issued",
                "Temporary credentials issued, by kind (web_identity, assume_role, session_token) and role",
                inner.issued.clone(),
            );
            r.register(
                "sts_refusals",
                "STS requests refused, by operation and reason (the AWS error code)",
                inner.refused.clone(),
            );
        });
        Self(Some(Arc::new(inner)))
    }

    /// Metrics that count nothing, for a server without an admin listener: no one could read
    /// them.
    pub fn unread() -> Self {
        Self(None)
    }

    /// Counts one answered request.
    pub fn observe(&self, f: &RequestFields, answered: &Answered) {
        let Some(inner) = &self.0 else {
            return;
        };
        let api = f.api;
        let operation = operation_label(api, f.operation.as_deref());
        inner
            .requests
            .get_or_create(&RequestLabels {
                api,
                operation,
                status: status_class(answered.status),
            })
            .inc();
        inner
            .durations
            .get_or_create(&OperationLabels { api, operation })
            .observe(answered.elapsed.as_secs_f64());
        let succeeded = (200..300).contains(&answered.status);
        if let Some(n) = answered.bytes_in.filter(|n| *n > 0 && succeeded) {
            inner.received.get_or_create(&ApiLabels { api }).inc_by(n);
        }
        let d = f.decisions;
        for (result, n) in [
            ("allowed", d.allowed),
            ("explicit_deny", d.explicit_deny),
            ("implicit_deny", d.implicit_deny),
        ] {
            if n > 0 {
                inner
                    .decisions
                    .get_or_create(&DecisionLabels { api, result })
                    .inc_by(u64::from(n));
            }
        }
        if api != "sts" {
            return;
        }
        match (&f.error_code, issued_kind(f.operation.as_deref())) {
            (None, Some(kind)) if answered.status < 300 => {
                let role = f
                    .resources
                    .iter()
                    .find(|r| r.kind == "AWS::IAM::Role")
                    .map(|r| inner.values.label(&r.arn))
                    .unwrap_or_default();
                inner
                    .issued
                    .get_or_create(&IssuedLabels { kind, role })
                    .inc();
            }
            (Some(code), _) => {
                inner
                    .refused
                    .get_or_create(&RefusedLabels {
                        operation,
                        reason: inner.values.label(code),
                    })
                    .inc();
            }
            _ => {}
        }
    }
}

impl ServerMetrics {
    /// `body`, counting its bytes into the bytes `api` sent as they go out: a HEAD's or a
    /// refused request's body that is never sent counts nothing, one cut short counts what went.
    pub fn count_sent<B>(&self, api: &'static str, body: B) -> CountedBody<B> {
        CountedBody {
            inner: body,
            sent: self
                .0
                .as_ref()
                .map(|inner| inner.sent.get_or_create(&ApiLabels { api }).clone()),
        }
    }
}

/// A response body that counts the bytes it yields ([`ServerMetrics::count_sent`]).
pub struct CountedBody<B> {
    inner: B,
    sent: Option<Counter>,
}

impl<B> http_body::Body for CountedBody<B>
where
    B: http_body::Body<Data = bytes::Bytes> + Unpin,
{
    type Data = bytes::Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        let polled = std::pin::Pin::new(&mut self.inner).poll_frame(cx);
        if let std::task::Poll::Ready(Some(Ok(frame))) = &polled
            && let Some(data) = frame.data_ref()
            && !data.is_empty()
            && let Some(sent) = &self.sent
        {
            sent.inc_by(data.len() as u64);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// The `operation` label of a request of `api`: only names the server implements, so that
/// what a client sends never becomes a label. S3's are the operations it authorizes
/// ([`keyless_s3::S3Op`]) and CORS preflights; IAM's and STS's the actions their handlers
/// answer; anything else reads `unknown`.
fn operation_label(api: &str, operation: Option<&str>) -> &'static str {
    let Some(operation) = operation else {
        return "unknown";
    };
    let known = match api {
        "iam" => keyless_iam::api::action_name(operation),
        "sts" => keyless_sts::action_name(operation),
        "s3" if operation == "PreflightRequest" => Some("PreflightRequest"),
        "s3" => keyless_s3::S3Op::from_name(operation).map(keyless_s3::S3Op::name),
        _ => None,
    };
    known.unwrap_or("unknown")
}

/// The kind of credentials an STS operation issues.
fn issued_kind(operation: Option<&str>) -> Option<&'static str> {
    match operation? {
        "AssumeRoleWithWebIdentity" => Some("web_identity"),
        "AssumeRole" => Some("assume_role"),
        "GetSessionToken" => Some("session_token"),
        _ => None,
    }
}

fn status_class(status: u16) -> &'static str {
    match status {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: &'static str,
}

/// What `keyless webhook` counts of the pods it reviews.
#[derive(Clone)]
pub(crate) struct WebhookMetrics {
    reviews: Family<OutcomeLabels, Counter>,
    durations: Histogram,
    missed: prometheus_client::metrics::gauge::Gauge,
}

impl WebhookMetrics {
    /// Registers the webhook's metrics in `metrics`.
    pub(crate) fn register(metrics: &Metrics) -> Self {
        let this = Self {
            reviews: Family::default(),
            // 0.1 ms to about 1.6 s.
            durations: Histogram::new(exponential_buckets(0.0001, 2.0, 15)),
            missed: Default::default(),
        };
        metrics.register(|r| {
            r.register(
                "webhook_reviews",
                "Pod creations reviewed, by outcome (mutated_web_identity, mutated_container_credentials, already_mutated, no_role, skipped, conflict, error)",
                this.reviews.clone(),
            );
            r.register_with_unit(
                "webhook_review_duration",
                "Time to review one pod creation",
                Unit::Seconds,
                this.durations.clone(),
            );
            r.register(
                "webhook_pods_missed",
                "Running pods without the credentials their service account asks for",
                this.missed.clone(),
            );
        });
        this
    }

    /// Counts one review, of `outcome`, that took `elapsed`.
    pub(crate) fn reviewed(&self, outcome: &'static str, elapsed: Duration) {
        self.reviews.get_or_create(&OutcomeLabels { outcome }).inc();
        self.durations.observe(elapsed.as_secs_f64());
    }

    /// How many running pods missed their mutation, now.
    pub(crate) fn set_missed(&self, count: usize) {
        self.missed.set(i64::try_from(count).unwrap_or(i64::MAX));
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HandlerLabels {
    handler: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HandlerStatusLabels {
    handler: &'static str,
    status: &'static str,
}

/// What the metadata agent counts of the requests pods make and the STS calls it makes for
/// them (its cache's figures are a [`Snapshot`] of its own).
#[derive(Clone)]
pub(crate) struct AgentMetrics {
    requests: Family<HandlerStatusLabels, Counter>,
    durations: Family<HandlerLabels, Histogram>,
    sts: Histogram,
}

impl AgentMetrics {
    /// The agent's metrics, all zero, to be registered where they are served.
    pub(crate) fn new() -> Self {
        Self {
            requests: Family::default(),
            // 0.1 ms to about 1.6 s.
            durations: Family::new_with_constructor(|| {
                Histogram::new(exponential_buckets(0.0001, 2.0, 15))
            }),
            // An STS call crosses the network and may be retried.
            sts: seconds_histogram(),
        }
    }

    /// Registers them in `metrics`.
    pub(crate) fn register(&self, metrics: &Metrics) {
        let this = self;
        metrics.register(|r| {
            r.register(
                "agent_requests",
                "Requests pods made, by handler (token, credentials, metadata, container_credentials) and status class",
                this.requests.clone(),
            );
            r.register_with_unit(
                "agent_request_duration",
                "Time to answer a pod's request, by handler",
                Unit::Seconds,
                this.durations.clone(),
            );
            r.register_with_unit(
                "agent_sts_request_duration",
                "Time an STS call for a pod's credentials took, answered or failed",
                Unit::Seconds,
                this.sts.clone(),
            );
        });
    }

    /// Counts one request to `handler`, answered with `status` after `elapsed`.
    pub(crate) fn answered(&self, handler: &'static str, status: u16, elapsed: Duration) {
        let status = status_class(status);
        self.requests
            .get_or_create(&HandlerStatusLabels { handler, status })
            .inc();
        self.durations
            .get_or_create(&HandlerLabels { handler })
            .observe(elapsed.as_secs_f64());
    }

    /// Times one STS call.
    pub(crate) fn sts_call(&self, elapsed: Duration) {
        self.sts.observe(elapsed.as_secs_f64());
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FetchLabels {
    document: &'static str,
    result: &'static str,
}

/// What `keyless serve` counts of the documents it fetches from the OIDC issuers it trusts:
/// discovery documents and key sets, each fetch and how long it took.
#[derive(Clone)]
pub(crate) struct FetchMetrics {
    fetches: Family<FetchLabels, Counter>,
    durations: Histogram,
}

impl FetchMetrics {
    /// The metrics, all zero, to be registered where they are served.
    pub(crate) fn new() -> Self {
        Self {
            fetches: Family::default(),
            // A fetch gives up after 5 s.
            durations: seconds_histogram(),
        }
    }

    /// Registers them in `metrics`.
    pub(crate) fn register(&self, metrics: &Metrics) {
        metrics.register(|r| {
            r.register(
                "oidc_fetches",
                "Documents fetched from trusted OIDC issuers, by document (discovery, keys) and result (ok, error)",
                self.fetches.clone(),
            );
            r.register_with_unit(
                "oidc_fetch_duration",
                "Time a fetch from an OIDC issuer took",
                Unit::Seconds,
                self.durations.clone(),
            );
        });
    }

    /// `fetch`, counted and timed.
    pub(crate) fn counted(
        &self,
        fetch: Arc<dyn keyless_oidc::Fetch>,
    ) -> Arc<dyn keyless_oidc::Fetch> {
        Arc::new(CountedFetch {
            inner: fetch,
            metrics: self.clone(),
        })
    }
}

struct CountedFetch {
    inner: Arc<dyn keyless_oidc::Fetch>,
    metrics: FetchMetrics,
}

#[async_trait::async_trait]
impl keyless_oidc::Fetch for CountedFetch {
    async fn get(&self, url: &str) -> Result<Vec<u8>, keyless_oidc::OidcError> {
        #[allow(clippy::disallowed_methods)] // the composition root times fetches
        let started = std::time::Instant::now();
        let answer = self.inner.get(url).await;
        self.metrics
            .durations
            .observe(started.elapsed().as_secs_f64());
        let document = match url.ends_with("/.well-known/openid-configuration") {
            true => "discovery",
            false => "keys",
        };
        let result = if answer.is_ok() { "ok" } else { "error" };
        self.metrics
            .fetches
            .get_or_create(&FetchLabels { document, result })
            .inc();
        answer
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct UpstreamLabels {
    method: &'static str,
    status: &'static str,
}

/// What gateway mode counts of the requests it sends its upstream store.
#[derive(Clone)]
pub(crate) struct GatewayMetrics {
    requests: Family<UpstreamLabels, Counter>,
    durations: Family<UpstreamLabels, Histogram>,
}

impl GatewayMetrics {
    /// The metrics, all zero, to be registered where they are served.
    pub(crate) fn new() -> Self {
        Self {
            requests: Family::default(),
            durations: Family::new_with_constructor(seconds_histogram),
        }
    }

    /// Registers them in `metrics`.
    pub(crate) fn register(&self, metrics: &Metrics) {
        metrics.register(|r| {
            r.register(
                "upstream_requests",
                "Requests sent to the upstream store, by method and status class (unreachable: no answer)",
                self.requests.clone(),
            );
            r.register_with_unit(
                "upstream_request_duration",
                "Time from sending a request to the upstream to its answer's head",
                Unit::Seconds,
                self.durations.clone(),
            );
        });
    }
}

impl keyless_upstream::UpstreamObserver for GatewayMetrics {
    fn answered(&self, method: &http::Method, status: Option<u16>, elapsed: Duration) {
        let method = match *method {
            http::Method::GET => "GET",
            http::Method::PUT => "PUT",
            http::Method::POST => "POST",
            http::Method::HEAD => "HEAD",
            http::Method::DELETE => "DELETE",
            _ => "other",
        };
        let labels = UpstreamLabels {
            method,
            status: status.map_or("unreachable", status_class),
        };
        self.requests.get_or_create(&labels).inc();
        self.durations
            .get_or_create(&labels)
            .observe(elapsed.as_secs_f64());
    }
}

/// Whether a figure only grows or goes up and down.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Kind {
    Counter,
    Gauge,
}

type Read = Box<dyn Fn() -> Vec<u64> + Send + Sync>;

/// Figures another part keeps itself, read at every scrape: one reader gives every figure at
/// once, so that a scrape sees them from one moment.
pub(crate) struct Snapshot {
    figures: Vec<(&'static str, &'static str, Kind)>,
    read: Read,
}

impl std::fmt::Debug for Snapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Snapshot")
            .field("figures", &self.figures)
            .finish_non_exhaustive()
    }
}

impl Snapshot {
    /// Figures named (without the prefix), explained and kinded as in `figures`, whose values
    /// `read` gives in the same order.
    pub(crate) fn new(
        figures: Vec<(&'static str, &'static str, Kind)>,
        read: impl Fn() -> Vec<u64> + Send + Sync + 'static,
    ) -> Self {
        Self {
            figures,
            read: Box::new(read),
        }
    }
}

impl prometheus_client::collector::Collector for Snapshot {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let values = (self.read)();
        for ((name, help, kind), value) in self.figures.iter().zip(values) {
            match kind {
                Kind::Counter => {
                    let metric = ConstCounter::new(value);
                    metric.encode(encoder.encode_descriptor(
                        name,
                        help,
                        None,
                        MetricType::Counter,
                    )?)?;
                }
                Kind::Gauge => {
                    let metric = ConstGauge::new(i64::try_from(value).unwrap_or(i64::MAX));
                    metric.encode(encoder.encode_descriptor(
                        name,
                        help,
                        None,
                        MetricType::Gauge,
                    )?)?;
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use keyless_types::audit::{Decisions, Resource};

    fn fields(api: &'static str, operation: &str) -> RequestFields {
        RequestFields {
            api,
            operation: Some(operation.to_owned()),
            ..RequestFields::default()
        }
    }

    fn answered(status: u16) -> Answered {
        Answered {
            status,
            elapsed: Duration::from_millis(3),
            bytes_in: Some(10),
        }
    }

    #[test]
    fn a_request_is_counted_with_its_decisions_and_credentials() {
        let metrics = Metrics::new();
        let server = ServerMetrics::register(&metrics);
        let mut put = fields("s3", "PutObject");
        put.decisions = Decisions {
            allowed: 1,
            ..Decisions::default()
        };
        server.observe(&put, &answered(200));
        let mut web = fields("sts", "AssumeRoleWithWebIdentity");
        web.resources.push(Resource {
            arn: "arn:aws:iam::000000000000:role/registry".into(),
            account_id: None,
            kind: "AWS::IAM::Role".into(),
        });
        server.observe(&web, &answered(200));
        let mut denied = fields("sts", "AssumeRoleWithWebIdentity");
        denied.error_code = Some("AccessDenied".into());
        denied.decisions.implicit_deny = 1;
        server.observe(&denied, &answered(403));
        let text = metrics.encode();
        for line in [
            r#"keyless_requests_total{api="s3",operation="PutObject",status="2xx"} 1"#,
            r#"keyless_requests_total{api="sts",operation="AssumeRoleWithWebIdentity",status="4xx"} 1"#,
            r#"keyless_received_bytes_total{api="s3"} 10"#,
            r#"keyless_policy_decisions_total{api="s3",result="allowed"} 1"#,
            r#"keyless_policy_decisions_total{api="sts",result="implicit_deny"} 1"#,
            r#"keyless_sts_credentials_issued_total{kind="web_identity",role="arn:aws:iam::000000000000:role/registry"} 1"#,
            r#"keyless_sts_refusals_total{operation="AssumeRoleWithWebIdentity",reason="AccessDenied"} 1"#,
            r#"keyless_request_duration_seconds_bucket{le="0.004",api="s3",operation="PutObject"} 1"#,
        ] {
            assert!(text.contains(line), "{line} missing from\n{text}");
        }
        // Nothing was sent; the refused request's body is not counted as received.
        assert!(!text.contains("keyless_sent_bytes_total{"), "{text}");
        assert!(
            text.contains(r#"keyless_received_bytes_total{api="sts"} 10"#),
            "{text}"
        );
    }

    #[tokio::test]
    async fn unread_metrics_count_nothing_and_pass_bodies_through() {
        use http_body_util::BodyExt as _;
        let metrics = Metrics::new();
        let server = ServerMetrics::unread();
        server.observe(&fields("s3", "GetObject"), &answered(200));
        let body = server.count_sent("s3", s3s::Body::from("twelve bytes".to_owned()));
        assert_eq!(body.collect().await.unwrap().to_bytes(), "twelve bytes");
        let text = metrics.encode();
        assert!(!text.contains("keyless_requests_total"), "{text}");
    }

    #[test]
    fn operations_are_labelled_only_by_the_names_the_server_implements() {
        assert_eq!(operation_label("iam", Some("CreateUser")), "CreateUser");
        assert_eq!(operation_label("iam", Some("CreateUser2")), "unknown");
        assert_eq!(operation_label("iam", Some("AssumeRole")), "unknown");
        assert_eq!(operation_label("sts", Some("AssumeRole")), "AssumeRole");
        assert_eq!(
            operation_label("sts", Some("a".repeat(10_000).as_str())),
            "unknown"
        );
        assert_eq!(operation_label("s3", Some("GetObject")), "GetObject");
        assert_eq!(
            operation_label("s3", Some("PreflightRequest")),
            "PreflightRequest"
        );
        assert_eq!(operation_label("s3", Some("Operation7")), "unknown");
        assert_eq!(operation_label("oidc", Some("Whatever")), "unknown");
        assert_eq!(operation_label("s3", None), "unknown");
    }

    #[tokio::test]
    async fn bodies_count_what_they_send() {
        use http_body_util::BodyExt as _;
        let metrics = Metrics::new();
        let server = ServerMetrics::register(&metrics);
        let body = server.count_sent("s3", s3s::Body::from("twelve bytes".to_owned()));
        let sent = body.collect().await.unwrap().to_bytes();
        assert_eq!(sent.len(), 12);
        // A body never polled (a HEAD's) sends nothing.
        drop(server.count_sent("iam", s3s::Body::from("unsent".to_owned())));
        let text = metrics.encode();
        assert!(
            text.contains(r#"keyless_sent_bytes_total{api="s3"} 12"#),
            "{text}"
        );
        assert!(
            text.contains(r#"keyless_sent_bytes_total{api="iam"} 0"#),
            "{text}"
        );
    }

    #[test]
    fn labels_from_requests_are_bounded() {
        let bounded = Bounded::default();
        for i in 0..MAX_LABEL_VALUES {
            assert_eq!(bounded.label(&format!("Op{i}")), format!("Op{i}"));
        }
        assert_eq!(bounded.label("YetAnother"), "other");
        assert_eq!(bounded.label("Op0"), "Op0");
    }

    #[test]
    fn snapshots_are_read_at_every_scrape() {
        let metrics = Metrics::new();
        let n = Arc::new(std::sync::atomic::AtomicU64::new(1));
        let read = Arc::clone(&n);
        metrics.register(|r| {
            r.register_collector(Box::new(Snapshot::new(
                vec![
                    ("audit_records_dropped", "Dropped", Kind::Counter),
                    ("audit_records_queued", "Queued", Kind::Gauge),
                ],
                move || vec![read.load(std::sync::atomic::Ordering::Relaxed), 7],
            )))
        });
        assert!(
            metrics
                .encode()
                .contains("keyless_audit_records_dropped_total 1")
        );
        n.store(5, std::sync::atomic::Ordering::Relaxed);
        let text = metrics.encode();
        assert!(
            text.contains("keyless_audit_records_dropped_total 5"),
            "{text}"
        );
        assert!(text.contains("keyless_audit_records_queued 7"), "{text}");
    }
}
