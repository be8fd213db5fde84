#![allow(clippy::unwrap_used)] // tests fail loudly

//! Records made from what the layers write, checked field by field against AWS's own
//! examples (the CloudTrail User Guide, the IAM User Guide's web identity event, the S3 User
//! Guide's data event).

use keyless_types::audit::{SessionAttributes, SessionContext, SessionIssuer, WebIdFederationData};
use serde_json::json;

use super::*;

fn web_identity_session() -> UserIdentity {
    UserIdentity {
        kind: "AssumedRole".into(),
        principal_id: Some("AROAEXAMPLE:botocore-session-1".into()),
        arn: Some("arn:aws:sts::123456789012:assumed-role/Alice/botocore-session-1".into()),
        account_id: Some("123456789012".into()),
        access_key_id: Some("ASIAEXAMPLEKEY".into()),
        session_context: Some(SessionContext {
            session_issuer: Some(SessionIssuer {
                kind: "Role".into(),
                principal_id: "AROAEXAMPLE".into(),
                arn: "arn:aws:iam::123456789012:role/Alice".into(),
                account_id: "123456789012".into(),
                user_name: "Alice".into(),
            }),
            web_id_federation_data: Some(WebIdFederationData {
                federated_provider:
                    "arn:aws:iam::123456789012:oidc-provider/oidc.eks.us-east-1.amazonaws.com/id/EXAMPLE"
                        .into(),
                attributes: Default::default(),
            }),
            attributes: SessionAttributes {
                creation_date: "2020-07-23T02:19:34Z".into(),
                mfa_authenticated: "false".into(),
            },
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn exchange(status: u16) -> Exchange<'static> {
    Exchange {
        time: keyless_types::time::parse_iso8601("2020-11-30T15:44:33Z").unwrap(),
        event_id: "ee3b4e0c-ab12-459b-9998-0a5a6f2e4015".into(),
        request_id: "8E96D972160306FA",
        region: "us-east-1",
        account_id: "123456789012",
        source_ip: Some("26.29.66.20".parse().unwrap()),
        user_agent: Some("aws-cli/2.0 Python/3.11"),
        status,
        bytes_in: Some(10),
        bytes_out: Some(0),
        host_id: Some("29xXQBV2O+xOHKItvzY1suLv1i6A52E0zOX159fpfsItYd="),
        written: vec![("ETag", "d41d8cd98f00b204e9800998ecf8427f".into())],
        tls: None,
    }
}

/// The userIdentity of AWS's web-identity data event, verbatim apart from the ids.
#[test]
fn a_web_identity_session_reads_as_in_cloudtrails_example() {
    let written = serde_json::to_value(web_identity_session()).unwrap();
    assert_eq!(
        written,
        json!({
          "type": "AssumedRole",
          "principalId": "AROAEXAMPLE:botocore-session-1",
          "arn": "arn:aws:sts::123456789012:assumed-role/Alice/botocore-session-1",
          "accountId": "123456789012",
          "accessKeyId": "ASIAEXAMPLEKEY",
          "sessionContext": {
            "sessionIssuer": {"type": "Role","principalId": "AROAEXAMPLE",
              "arn": "arn:aws:iam::123456789012:role/Alice","accountId": "123456789012","userName": "Alice"},
            "webIdFederationData": {
              "federatedProvider": "arn:aws:iam::123456789012:oidc-provider/oidc.eks.us-east-1.amazonaws.com/id/EXAMPLE",
              "attributes": {}},
            "attributes": {"mfaAuthenticated": "false","creationDate": "2020-07-23T02:19:34Z"}
          }
        })
    );
}

/// AWS's PutObject data event: the same fields with the same names and kinds of value.
#[test]
fn a_put_object_reads_as_s3s_data_event() {
    let mut fields = RequestFields {
        api: "s3",
        operation: Some("PutObject".into()),
        bucket: Some("DOC-EXAMPLE-BUCKET1".into()),
        key: Some("path/upload.sh".into()),
        identity: Some(web_identity_session()),
        ..Default::default()
    };
    fields
        .request_parameters
        .insert("bucketName".into(), "DOC-EXAMPLE-BUCKET1".into());
    fields
        .request_parameters
        .insert("key".into(), "path/upload.sh".into());
    fields
        .additional
        .insert("SignatureVersion".into(), "SigV4".into());
    fields
        .additional
        .insert("AuthenticationMethod".into(), "AuthHeader".into());
    let record = Record::of(fields, exchange(200)).unwrap();
    let mut value = serde_json::to_value(&record).unwrap();
    value.as_object_mut().unwrap().remove("userIdentity");
    assert_eq!(
        value,
        json!({
          "eventVersion": "1.11",
          "eventTime": "2020-11-30T15:44:33Z",
          "eventSource": "s3.amazonaws.com",
          "eventName": "PutObject",
          "awsRegion": "us-east-1",
          "sourceIPAddress": "26.29.66.20",
          "userAgent": "aws-cli/2.0 Python/3.11",
          "requestParameters": {"bucketName": "DOC-EXAMPLE-BUCKET1", "key": "path/upload.sh"},
          "responseElements": {"ETag": "d41d8cd98f00b204e9800998ecf8427f"},
          "additionalEventData": {"SignatureVersion": "SigV4", "AuthenticationMethod": "AuthHeader",
            "bytesTransferredIn": 10, "bytesTransferredOut": 0,
            "x-amz-id-2": "29xXQBV2O+xOHKItvzY1suLv1i6A52E0zOX159fpfsItYd="},
          "requestID": "8E96D972160306FA",
          "eventID": "ee3b4e0c-ab12-459b-9998-0a5a6f2e4015",
          "readOnly": false,
          "resources": [
            {"type": "AWS::S3::Object", "ARN": "arn:aws:s3:::DOC-EXAMPLE-BUCKET1/path/upload.sh"},
            {"accountId": "123456789012", "type": "AWS::S3::Bucket", "ARN": "arn:aws:s3:::DOC-EXAMPLE-BUCKET1"}
          ],
          "eventType": "AwsApiCall",
          "managementEvent": false,
          "recipientAccountId": "123456789012",
          "eventCategory": "Data"
        })
    );
}

/// AWS's AssumeRoleWithWebIdentity management event (IAM User Guide), with the fields
/// Keyless fills in; the session token is nowhere.
#[test]
fn a_web_identity_call_reads_as_stss_management_event() {
    let mut fields = RequestFields {
        api: "sts",
        operation: Some("AssumeRoleWithWebIdentity".into()),
        identity: Some(UserIdentity {
            kind: "WebIdentityUser".into(),
            principal_id: Some(
                "arn:aws:iam::444455556666:oidc-provider/oidc.example:sts.amazonaws.com:system:serviceaccount:gitlab:registry"
                    .into(),
            ),
            user_name: Some("system:serviceaccount:gitlab:registry".into()),
            identity_provider: Some("arn:aws:iam::444455556666:oidc-provider/oidc.example".into()),
            ..Default::default()
        }),
        response_elements: Some(json!({
            "credentials": {"accessKeyId": "ASIACQRSTUVWRAOEXAMPLE", "expiration": "Mar 23, 2016 2:39:51 AM"},
            "assumedRoleUser": {"assumedRoleId": "AROACQRSTUVWRAOEXAMPLE:s", "arn": "arn:aws:sts::444455556666:assumed-role/FederatedWebIdentityRole/s"},
            "provider": "arn:aws:iam::444455556666:oidc-provider/oidc.example",
            "subjectFromWebIdentityToken": "system:serviceaccount:gitlab:registry",
            "audience": "sts.amazonaws.com"
        })),
        resources: vec![Resource {
            arn: "arn:aws:iam::444455556666:role/FederatedWebIdentityRole".into(),
            account_id: Some("444455556666".into()),
            kind: "AWS::IAM::Role".into(),
        }],
        ..Default::default()
    };
    fields.request_parameters.insert(
        "roleArn".into(),
        "arn:aws:iam::444455556666:role/FederatedWebIdentityRole".into(),
    );
    fields
        .request_parameters
        .insert("roleSessionName".into(), "s".into());
    fields
        .request_parameters
        .insert("durationSeconds".into(), 3600.into());
    let mut x = exchange(200);
    x.account_id = "444455556666";
    let record = Record::of(fields, x).unwrap();
    let value = serde_json::to_value(&record).unwrap();
    assert_eq!(value["eventSource"], "sts.amazonaws.com");
    assert_eq!(value["userIdentity"]["type"], "WebIdentityUser");
    assert_eq!(value["requestParameters"]["durationSeconds"], 3600);
    assert_eq!(
        value["responseElements"]["credentials"],
        json!({"accessKeyId": "ASIACQRSTUVWRAOEXAMPLE", "expiration": "Mar 23, 2016 2:39:51 AM"})
    );
    assert_eq!(value["resources"][0]["type"], "AWS::IAM::Role");
    assert_eq!(value["readOnly"], true);
    assert_eq!(value["managementEvent"], true);
    assert_eq!(value["eventCategory"], "Management");
    // Bytes and host ids are S3's.
    assert!(value.get("additionalEventData").is_none(), "{value}");
}

#[test]
fn a_denial_keeps_its_explanation_and_nothing_it_answered() {
    let fields = RequestFields {
        api: "s3",
        operation: Some("GetObject".into()),
        bucket: Some("b".into()),
        key: Some("k".into()),
        error_code: Some("AccessDenied".into()),
        error_message: Some("Access Denied".into()),
        denial: Some(
            "s3:GetObject on arn:aws:s3:::b/k: implicitDeny: no statement allows it".into(),
        ),
        ..Default::default()
    };
    let record = Record::of(fields, exchange(403)).unwrap();
    assert!(record.is_denied());
    assert_eq!(record.error_code.as_deref(), Some("AccessDenied"));
    assert_eq!(record.response_elements, None);
    assert_eq!(
        record.decision(),
        Some("s3:GetObject on arn:aws:s3:::b/k: implicitDeny: no statement allows it")
    );
    // Refused before the caller was known.
    assert_eq!(record.user_identity.kind, "Unknown");
    assert!(record.read_only);
}

#[test]
fn iam_is_global_and_its_reads_are_read_only() {
    let fields = RequestFields {
        api: "iam",
        operation: Some("ListRoles".into()),
        ..Default::default()
    };
    let mut x = exchange(200);
    x.region = "eu-west-1";
    let record = Record::of(fields.clone(), x).unwrap();
    assert_eq!(record.aws_region, "us-east-1");
    assert!(record.read_only);
    assert_eq!(record.request_parameters, None);
    let create = RequestFields {
        operation: Some("CreateRole".into()),
        ..fields
    };
    assert!(!Record::of(create, exchange(200)).unwrap().read_only);
    // The issuer's documents are not audited.
    let oidc = RequestFields {
        api: "oidc",
        ..Default::default()
    };
    assert!(Record::of(oidc, exchange(200)).is_none());
}
