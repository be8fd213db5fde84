//! CloudTrail's record, and how one is made from what the layers of a request wrote in its
//! [`RequestFields`] and what the server knows of the exchange (time, address, status, TLS).
//! Pure: the caller gives the time and the event id.
//!
//! <https://docs.aws.amazon.com/awscloudtrail/latest/userguide/cloudtrail-event-reference-record-contents.html>

use std::net::IpAddr;

use keyless_types::RequestFields;
use keyless_types::audit::{Resource, UserIdentity};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The record format's version Keyless writes (CloudTrail's current one).
pub const EVENT_VERSION: &str = "1.11";

/// The key of `additionalEventData` that says why the policy engine refused: the policy and
/// statement that denied, or that none allowed. For operators; the client never sees it.
pub const DECISION_KEY: &str = "policyDecision";

/// One CloudTrail record. Fields absent from a request are left out (or `null`, where
/// CloudTrail writes `null`), so tools that read CloudTrail read it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Record {
    /// [`EVENT_VERSION`].
    #[serde(default)]
    pub event_version: String,
    /// Who made the request.
    #[serde(default)]
    pub user_identity: UserIdentity,
    /// When, to the second (ISO 8601, UTC).
    #[serde(default)]
    pub event_time: String,
    /// `s3.amazonaws.com`, `iam.amazonaws.com` or `sts.amazonaws.com`.
    #[serde(default)]
    pub event_source: String,
    /// The operation (`GetObject`, `CreateRole`, `AssumeRoleWithWebIdentity`).
    #[serde(default)]
    pub event_name: String,
    /// The region (`us-east-1` for IAM, which is global).
    #[serde(default)]
    pub aws_region: String,
    /// The client's address.
    #[serde(rename = "sourceIPAddress", default)]
    pub source_ip_address: String,
    /// The client's `User-Agent`.
    #[serde(default)]
    pub user_agent: String,
    /// The AWS error code, when the request failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_code: Option<String>,
    /// The error's message, as the client read it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_message: Option<String>,
    /// The request's parameters, secrets left out; `null` when it had none.
    #[serde(default)]
    pub request_parameters: Option<Map<String, Value>>,
    /// What the answer said that CloudTrail keeps; `null` for reads and failures.
    #[serde(default)]
    pub response_elements: Option<Value>,
    /// How the request was signed, the bytes it moved, and [`DECISION_KEY`] for a denial.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub additional_event_data: Option<Map<String, Value>>,
    /// The id the response carried (`x-amz-request-id`, `x-amzn-RequestId`).
    #[serde(rename = "requestID", default)]
    pub request_id: String,
    /// This record's own id (a GUID).
    #[serde(rename = "eventID", default)]
    pub event_id: String,
    /// Whether the operation only reads.
    #[serde(default)]
    pub read_only: bool,
    /// What it acted on.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resources: Vec<Resource>,
    /// `AwsApiCall`.
    #[serde(default)]
    pub event_type: String,
    /// Whether it is a management event (IAM, STS, bucket configuration) rather than a data
    /// event (objects).
    #[serde(default)]
    pub management_event: bool,
    /// The account.
    #[serde(default)]
    pub recipient_account_id: String,
    /// `Management` or `Data`.
    #[serde(default)]
    pub event_category: String,
    /// The connection's TLS, when Keyless terminated it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_details: Option<TlsDetails>,
}

/// A record's `tlsDetails`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TlsDetails {
    /// `TLSv1.2`, `TLSv1.3`.
    pub tls_version: String,
    /// The negotiated cipher suite.
    pub cipher_suite: String,
    /// The `Host` the client sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_provided_host_header: Option<String>,
}

/// What the server knows of one exchange, beyond what the layers wrote.
#[derive(Debug, Clone, Default)]
pub struct Exchange<'a> {
    /// Seconds since the epoch, when the request arrived.
    pub time: i64,
    /// This record's id.
    pub event_id: String,
    /// The request id the response carried.
    pub request_id: &'a str,
    /// The server's region.
    pub region: &'a str,
    /// The account.
    pub account_id: &'a str,
    /// The client's address.
    pub source_ip: Option<IpAddr>,
    /// The client's `User-Agent`.
    pub user_agent: Option<&'a str>,
    /// The answer's status.
    pub status: u16,
    /// The request's `Content-Length`, if it gave one.
    pub bytes_in: Option<u64>,
    /// The answer's `Content-Length`, if it gave one.
    pub bytes_out: Option<u64>,
    /// `x-amz-id-2` of an S3 answer.
    pub host_id: Option<&'a str>,
    /// What an S3 write answered that CloudTrail keeps: `ETag`, `x-amz-version-id`,
    /// `x-amz-server-side-encryption`.
    pub written: Vec<(&'static str, String)>,
    /// The TLS the connection negotiated.
    pub tls: Option<TlsDetails>,
}

impl Record {
    /// The record of a request of S3, IAM or STS; `None` for anything else (the issuer's
    /// documents, the admin endpoints).
    pub fn of(fields: RequestFields, exchange: Exchange<'_>) -> Option<Self> {
        let api = Api::of(fields.api)?;
        let event_name = fields.operation.clone().unwrap_or_else(|| "Unknown".into());
        let read_only = api.read_only(&event_name);
        let data = api == Api::S3 && is_data_event(&event_name, fields.key.is_some());
        let identity = fields.identity.unwrap_or_else(|| UserIdentity {
            // Refused before the caller was known (a bad signature, an unknown key).
            kind: "Unknown".into(),
            access_key_id: fields.access_key_id,
            ..UserIdentity::default()
        });
        let mut resources = Vec::new();
        if let Some(bucket) = &fields.bucket
            && api == Api::S3
        {
            if let Some(key) = &fields.key {
                resources.push(Resource {
                    arn: format!("arn:aws:s3:::{bucket}/{key}"),
                    account_id: None,
                    kind: "AWS::S3::Object".into(),
                });
            }
            resources.push(Resource {
                arn: format!("arn:aws:s3:::{bucket}"),
                account_id: Some(exchange.account_id.to_owned()),
                kind: "AWS::S3::Bucket".into(),
            });
        }
        resources.extend(fields.resources);

        let mut additional = fields.additional;
        if api == Api::S3 {
            additional.insert(
                "bytesTransferredIn".into(),
                exchange.bytes_in.unwrap_or(0).into(),
            );
            additional.insert(
                "bytesTransferredOut".into(),
                exchange.bytes_out.unwrap_or(0).into(),
            );
            if let Some(host_id) = exchange.host_id {
                additional.insert("x-amz-id-2".into(), host_id.into());
            }
            if let Some(tls) = &exchange.tls {
                additional.insert("CipherSuite".into(), tls.cipher_suite.clone().into());
            }
        }
        if let Some(why) = fields.denial {
            additional.insert(DECISION_KEY.into(), why.into());
        }
        let failed = exchange.status >= 300 && exchange.status != 304;
        let response_elements = if failed {
            None
        } else if api == Api::S3 {
            (!read_only && !exchange.written.is_empty()).then(|| {
                Value::Object(
                    exchange
                        .written
                        .iter()
                        .map(|(name, value)| ((*name).to_owned(), value.clone().into()))
                        .collect(),
                )
            })
        } else {
            fields.response_elements
        };
        let (error_code, error_message) = match fields.error_code {
            Some(code) if failed => (Some(code), fields.error_message),
            _ if exchange.status >= 500 => (Some("InternalError".into()), None),
            _ => (None, None),
        };
        Some(Self {
            event_version: EVENT_VERSION.into(),
            user_identity: identity,
            event_time: keyless_types::time::iso8601(exchange.time),
            event_source: api.source().into(),
            event_name,
            aws_region: match api {
                Api::Iam => "us-east-1".into(),
                _ => exchange.region.to_owned(),
            },
            source_ip_address: exchange
                .source_ip
                .map(|ip| ip.to_canonical().to_string())
                .unwrap_or_default(),
            user_agent: exchange.user_agent.unwrap_or_default().to_owned(),
            error_code,
            error_message,
            request_parameters: (!fields.request_parameters.is_empty())
                .then_some(fields.request_parameters),
            response_elements,
            additional_event_data: (!additional.is_empty()).then_some(additional),
            request_id: exchange.request_id.to_owned(),
            event_id: exchange.event_id,
            read_only,
            resources,
            event_type: "AwsApiCall".into(),
            management_event: !data,
            recipient_account_id: exchange.account_id.to_owned(),
            event_category: if data { "Data" } else { "Management" }.into(),
            tls_details: exchange.tls,
        })
    }

    /// Whether the request was refused by the policy engine (or as any AccessDenied).
    pub fn is_denied(&self) -> bool {
        self.error_code.as_deref() == Some("AccessDenied")
            || self
                .additional_event_data
                .as_ref()
                .is_some_and(|d| d.contains_key(DECISION_KEY))
    }

    /// Why the policy engine refused, for operators.
    pub fn decision(&self) -> Option<&str> {
        self.additional_event_data
            .as_ref()?
            .get(DECISION_KEY)?
            .as_str()
    }
}

/// The APIs the trail records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Api {
    S3,
    Iam,
    Sts,
}

impl Api {
    fn of(name: &str) -> Option<Self> {
        match name {
            "s3" => Some(Self::S3),
            "iam" => Some(Self::Iam),
            "sts" => Some(Self::Sts),
            _ => None,
        }
    }

    fn source(self) -> &'static str {
        match self {
            Self::S3 => "s3.amazonaws.com",
            Self::Iam => "iam.amazonaws.com",
            Self::Sts => "sts.amazonaws.com",
        }
    }

    /// As CloudTrail marks them: reads of S3 and IAM, and every STS call (issuing a session
    /// changes nothing in the account).
    fn read_only(self, operation: &str) -> bool {
        match self {
            Self::Sts => true,
            Self::S3 => {
                ["Get", "Head", "List"]
                    .iter()
                    .any(|p| operation.starts_with(p))
                    || operation == "SelectObjectContent"
            }
            Self::Iam => ["Get", "List", "Simulate"]
                .iter()
                .any(|p| operation.starts_with(p)),
        }
    }
}

/// Whether an S3 operation is a data event: what acts on objects (and lists them), as
/// CloudTrail sorts them; bucket configuration is management.
fn is_data_event(operation: &str, has_key: bool) -> bool {
    has_key
        || matches!(
            operation,
            "ListObjects"
                | "ListObjectsV2"
                | "ListObjectVersions"
                | "ListMultipartUploads"
                | "DeleteObjects"
                | "PostObject"
        )
}

#[cfg(test)]
mod tests;
