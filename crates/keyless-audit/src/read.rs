//! Reading a trail back: JSON lines as Keyless writes them, or CloudTrail's own log files
//! (`{"Records": [...]}`, one document a line), and the filters `keyless audit` offers: by
//! principal, role, namespace, pod, bucket, operation, decision and time.

use std::io::BufRead;

use keyless_types::pod_tags::{NAMESPACE_TAG, POD_NAME_TAG};

use crate::record::Record;

/// Why a trail could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The file could not be read.
    #[error("cannot read the trail")]
    Io(#[from] std::io::Error),
    /// A line is not a record.
    #[error("line {line}: not an audit record")]
    Record {
        /// The line, from 1.
        line: usize,
        /// The parser's complaint.
        #[source]
        source: serde_json::Error,
    },
}

/// Every record of `input`, in order: a record a line, or a `{"Records": [...]}` document a
/// line. Empty lines are skipped; a line that is neither is an error naming it.
pub fn records(input: impl BufRead) -> impl Iterator<Item = Result<Record, ReadError>> {
    #[derive(serde::Deserialize)]
    struct File {
        #[serde(rename = "Records")]
        records: Vec<Record>,
    }
    input
        .lines()
        .enumerate()
        .flat_map(|(n, line)| -> Vec<Result<Record, ReadError>> {
            let line = match line {
                Ok(line) => line,
                Err(e) => return vec![Err(ReadError::Io(e))],
            };
            let text = line.trim();
            if text.is_empty() {
                return Vec::new();
            }
            if text.starts_with("{\"Records\"") {
                return match serde_json::from_str::<File>(text) {
                    Ok(file) => file.records.into_iter().map(Ok).collect(),
                    Err(source) => vec![Err(ReadError::Record {
                        line: n + 1,
                        source,
                    })],
                };
            }
            vec![
                serde_json::from_str(text).map_err(|source| ReadError::Record {
                    line: n + 1,
                    source,
                }),
            ]
        })
}

/// Which records to show. Every filter given must match.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// The caller: its ARN, its name (a user's, a session's role's), or its principal id.
    pub principal: Option<String>,
    /// The role whose sessions made the request (name or ARN), or that an STS call assumed.
    pub role: Option<String>,
    /// The pod's namespace, from the session's tags or the web identity's service account.
    pub namespace: Option<String>,
    /// The pod's name, from the session's tags.
    pub pod: Option<String>,
    /// The bucket.
    pub bucket: Option<String>,
    /// The operation (`PutObject`, `AssumeRoleWithWebIdentity`).
    pub event: Option<String>,
    /// `Some(true)`: denials only; `Some(false)`: what was not denied.
    pub denied: Option<bool>,
    /// From this time on (seconds since the epoch).
    pub since: Option<i64>,
    /// Up to this time.
    pub until: Option<i64>,
}

impl Filter {
    /// Whether `record` passes every filter.
    pub fn matches(&self, record: &Record) -> bool {
        let identity = &record.user_identity;
        let session = identity.session_context.as_ref();
        let issuer = session.and_then(|s| s.session_issuer.as_ref());
        let tag = |name: &str| session.and_then(|s| s.session_tags.get(name));
        let is = |want: &Option<String>, have: &[Option<&str>]| {
            want.as_deref()
                .is_none_or(|want| have.iter().flatten().any(|h| *h == want))
        };
        let role_arns: Vec<&str> = record
            .resources
            .iter()
            .filter(|r| r.kind == "AWS::IAM::Role")
            .map(|r| r.arn.as_str())
            .chain(issuer.map(|i| i.arn.as_str()))
            .collect();
        let role_names: Vec<&str> = role_arns
            .iter()
            .filter_map(|arn| arn.rsplit('/').next())
            .collect();
        let time = keyless_types::time::parse_iso8601(&record.event_time);
        // A web identity's subject names its service account: system:serviceaccount:NS:NAME.
        let sa_namespace = identity
            .user_name
            .as_deref()
            .and_then(|sub| sub.strip_prefix("system:serviceaccount:"))
            .and_then(|rest| rest.split(':').next());
        is(
            &self.principal,
            &[
                identity.arn.as_deref(),
                identity.user_name.as_deref(),
                identity.principal_id.as_deref(),
                issuer.map(|i| i.user_name.as_str()),
            ],
        ) && self
            .role
            .as_deref()
            .is_none_or(|want| role_arns.contains(&want) || role_names.contains(&want))
            && is(
                &self.namespace,
                &[tag(NAMESPACE_TAG).map(String::as_str), sa_namespace],
            )
            && is(&self.pod, &[tag(POD_NAME_TAG).map(String::as_str)])
            && is(
                &self.bucket,
                &[record
                    .request_parameters
                    .as_ref()
                    .and_then(|p| p.get("bucketName"))
                    .and_then(|b| b.as_str())],
            )
            && is(&self.event, &[Some(record.event_name.as_str())])
            && self
                .denied
                .is_none_or(|denied| record.is_denied() == denied)
            && self
                .since
                .is_none_or(|since| time.is_some_and(|t| t >= since))
            && self
                .until
                .is_none_or(|until| time.is_some_and(|t| t <= until))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // tests fail loudly

    use super::*;

    fn parse(text: &str) -> Vec<Record> {
        records(text.as_bytes()).collect::<Result<_, _>>().unwrap()
    }

    const DENIED: &str = r#"{"eventVersion":"1.11","userIdentity":{"type":"AssumedRole","principalId":"AROA1:s","arn":"arn:aws:sts::111122223333:assumed-role/registry/s","accountId":"111122223333","sessionContext":{"sessionIssuer":{"type":"Role","principalId":"AROA1","arn":"arn:aws:iam::111122223333:role/gitlab/registry","accountId":"111122223333","userName":"registry"},"attributes":{"creationDate":"2026-12-07T03:00:00Z","mfaAuthenticated":"false"},"sessionTags":{"kubernetes-namespace":"gitlab","kubernetes-pod-name":"registry-0"}}},"eventTime":"2026-12-07T03:00:05Z","eventSource":"s3.amazonaws.com","eventName":"PutObject","awsRegion":"us-east-1","sourceIPAddress":"10.0.0.5","userAgent":"docker-distribution","errorCode":"AccessDenied","errorMessage":"Access Denied","requestParameters":{"bucketName":"registry","key":"a"},"responseElements":null,"additionalEventData":{"policyDecision":"s3:PutObject on arn:aws:s3:::registry/a: implicitDeny: no statement allows it"},"requestID":"R1","eventID":"E1","readOnly":false,"eventType":"AwsApiCall","managementEvent":false,"recipientAccountId":"111122223333","eventCategory":"Data"}"#;

    #[test]
    fn reads_json_lines_and_cloudtrail_files_alike() {
        let lines = format!("{DENIED}\n\n{DENIED}\n");
        assert_eq!(parse(&lines).len(), 2);
        let file = format!("{{\"Records\":[{DENIED},{DENIED},{DENIED}]}}\n");
        assert_eq!(parse(&file).len(), 3);
        let bad = records("{\"eventVersion\": 3}\n".as_bytes())
            .next()
            .unwrap();
        assert!(
            matches!(bad, Err(ReadError::Record { line: 1, .. })),
            "{bad:?}"
        );
    }

    #[test]
    fn filters_by_role_pod_namespace_bucket_decision_and_time() {
        let record = &parse(DENIED)[0];
        let at = |f: Filter| f.matches(record);
        assert!(at(Filter::default()));
        assert!(at(Filter {
            role: Some("registry".into()),
            ..Default::default()
        }));
        assert!(at(Filter {
            role: Some("arn:aws:iam::111122223333:role/gitlab/registry".into()),
            ..Default::default()
        }));
        assert!(!at(Filter {
            role: Some("webservice".into()),
            ..Default::default()
        }));
        assert!(at(Filter {
            namespace: Some("gitlab".into()),
            ..Default::default()
        }));
        assert!(!at(Filter {
            namespace: Some("default".into()),
            ..Default::default()
        }));
        assert!(at(Filter {
            pod: Some("registry-0".into()),
            ..Default::default()
        }));
        assert!(at(Filter {
            bucket: Some("registry".into()),
            ..Default::default()
        }));
        assert!(!at(Filter {
            bucket: Some("uploads".into()),
            ..Default::default()
        }));
        assert!(at(Filter {
            denied: Some(true),
            ..Default::default()
        }));
        assert!(!at(Filter {
            denied: Some(false),
            ..Default::default()
        }));
        assert!(at(Filter {
            event: Some("PutObject".into()),
            ..Default::default()
        }));
        let t = keyless_types::time::parse_iso8601("2026-12-07T03:00:05Z").unwrap();
        assert!(at(Filter {
            since: Some(t),
            until: Some(t),
            ..Default::default()
        }));
        assert!(!at(Filter {
            since: Some(t + 1),
            ..Default::default()
        }));
        assert!(at(Filter {
            principal: Some("arn:aws:sts::111122223333:assumed-role/registry/s".into()),
            ..Default::default()
        }));
        assert_eq!(
            record.decision(),
            Some("s3:PutObject on arn:aws:s3:::registry/a: implicitDeny: no statement allows it")
        );
    }
}
