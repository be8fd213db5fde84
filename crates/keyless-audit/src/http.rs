//! The trail sent to an HTTP(S) endpoint: each batch is one `POST` of CloudTrail's log file
//! shape, `{"Records": [...]}`, as `application/json`, with a bearer token when one is given.
//! A 2xx answer takes the batch; a failure to connect, a timeout, a 408, 429 or 5xx is tried
//! again (the writer backs off); any other answer refuses the batch for good.

use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use crate::AuditError;

/// How long one POST may take.
const POST_TIMEOUT: Duration = Duration::from_secs(10);

/// An HTTP endpoint that takes batches of records.
pub(crate) struct HttpSink {
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    url: http::Uri,
    token_file: Option<PathBuf>,
}

impl HttpSink {
    pub(crate) fn new(
        url: &str,
        tls: rustls::ClientConfig,
        token_file: Option<PathBuf>,
    ) -> Result<Self, AuditError> {
        let uri: http::Uri = url.parse().map_err(|_| AuditError::Url(url.to_owned()))?;
        if !matches!(uri.scheme_str(), Some("http" | "https")) || uri.authority().is_none() {
            return Err(AuditError::Url(url.to_owned()));
        }
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_connect_timeout(Some(POST_TIMEOUT));
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        Ok(Self {
            client: Client::builder(TokioExecutor::new()).build(connector),
            url: uri,
            token_file,
        })
    }

    /// Sends one batch.
    pub(crate) async fn post(&self, batch: &[String]) -> Result<(), AuditError> {
        let mut body = String::with_capacity(batch.iter().map(|l| l.len() + 1).sum::<usize>() + 16);
        body.push_str("{\"Records\":[");
        for (i, line) in batch.iter().enumerate() {
            if i > 0 {
                body.push(',');
            }
            body.push_str(line);
        }
        body.push_str("]}");
        let mut request = http::Request::post(self.url.clone())
            .header(http::header::CONTENT_TYPE, "application/json")
            .header(
                http::header::USER_AGENT,
                concat!("keyless/", env!("CARGO_PKG_VERSION")),
            );
        if let Some(file) = &self.token_file {
            let token =
                std::fs::read_to_string(file).map_err(|e| AuditError::Open(file.clone(), e))?;
            let mut value = http::HeaderValue::from_str(&format!("Bearer {}", token.trim()))
                .map_err(|_| AuditError::Url("the token file holds no valid token".into()))?;
            value.set_sensitive(true);
            request = request.header(http::header::AUTHORIZATION, value);
        }
        let request = request
            .body(Full::new(Bytes::from(body)))
            .map_err(|_| AuditError::Url(self.url.to_string()))?;
        let response = tokio::time::timeout(POST_TIMEOUT, self.client.request(request))
            .await
            .map_err(|_| AuditError::Unreachable("no answer in time".into()))?
            .map_err(|e| AuditError::Unreachable(keyless_types::error_chain(&e)))?;
        let status = response.status().as_u16();
        match status {
            200..=299 => Ok(()),
            408 | 429 | 500..=599 => Err(AuditError::Unreachable(format!("HTTP {status}"))),
            _ => Err(AuditError::Refused(status)),
        }
    }
}
