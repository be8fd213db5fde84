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
use crate::trail::{BATCH_BYTES, BATCH_RECORDS, Batch};

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

    /// Sends `batch` in POSTs of at most [`BATCH_RECORDS`] records and about [`BATCH_BYTES`],
    /// leaving in it what an error stopped.
    pub(crate) async fn post(&self, batch: &mut Batch) -> Result<(), AuditError> {
        while batch.records > 0 {
            let (mut end, mut records) = (0, 0);
            let left = batch.left();
            for (at, _) in left.iter().enumerate().filter(|(_, b)| **b == b'\n') {
                if records > 0 && (records == BATCH_RECORDS || at + 1 > BATCH_BYTES) {
                    break;
                }
                (end, records) = (at + 1, records + 1);
            }
            self.post_records(&left[..end]).await?;
            if records == batch.records {
                batch.all_taken();
            } else {
                batch.first_taken(records, end);
            }
        }
        Ok(())
    }

    /// One POST of `lines` (newline-terminated records).
    async fn post_records(&self, lines: &[u8]) -> Result<(), AuditError> {
        let mut body = Vec::with_capacity(lines.len() + 16);
        body.extend_from_slice(b"{\"Records\":[");
        let records = lines.split(|b| *b == b'\n').filter(|l| !l.is_empty());
        for (i, record) in records.enumerate() {
            if i > 0 {
                body.push(b',');
            }
            body.extend_from_slice(record);
        }
        body.extend_from_slice(b"]}");
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
