//! The route table from S3 operations to IAM: the action each operation needs, the resource it
//! acts on, and the condition keys of its request context.
//!
//! <https://docs.aws.amazon.com/AmazonS3/latest/userguide/using-with-s3-policy-actions.html>
//! <https://docs.aws.amazon.com/service-authorization/latest/reference/list_amazons3.html>
//!
//! The map is a `match` without a catch-all arm, so an operation cannot be added without its
//! IAM action.

use keyless_types::RequestLog;
use std::borrow::Cow;

use keyless_policy::Context;
use keyless_types::time::iso8601;

/// The S3 operations Keyless serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[allow(missing_docs)]
pub enum S3Op {
    AbortMultipartUpload,
    CompleteMultipartUpload,
    CopyObject,
    CreateBucket,
    CreateMultipartUpload,
    DeleteBucket,
    DeleteBucketPolicy,
    DeleteObject,
    DeleteObjects,
    GetBucketAcl,
    GetBucketCors,
    PutBucketCors,
    DeleteBucketCors,
    GetBucketEncryption,
    PutBucketEncryption,
    DeleteBucketEncryption,
    GetBucketLifecycleConfiguration,
    PutBucketLifecycleConfiguration,
    DeleteBucketLifecycle,
    GetBucketLocation,
    GetBucketLogging,
    GetBucketNotificationConfiguration,
    GetBucketOwnershipControls,
    GetBucketPolicy,
    GetBucketReplication,
    GetBucketTagging,
    PutBucketTagging,
    DeleteBucketTagging,
    PutObjectTagging,
    GetObjectTagging,
    DeleteObjectTagging,
    GetBucketVersioning,
    PutBucketVersioning,
    ListObjectVersions,
    GetBucketWebsite,
    GetObject,
    GetObjectAcl,
    GetObjectAttributes,
    GetObjectLockConfiguration,
    PutObjectLockConfiguration,
    GetObjectRetention,
    PutObjectRetention,
    GetObjectLegalHold,
    PutObjectLegalHold,
    GetPublicAccessBlock,
    HeadBucket,
    HeadObject,
    ListBuckets,
    ListMultipartUploads,
    ListObjects,
    ListObjectsV2,
    ListParts,
    PutBucketAcl,
    PutBucketPolicy,
    PutObject,
    PostObject,
    PutObjectAcl,
    UploadPart,
    UploadPartCopy,
}

/// What an operation's resource is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// The account's buckets as a whole (`ListBuckets`): resource `*`.
    Service,
    /// A bucket: `arn:aws:s3:::BUCKET`.
    Bucket,
    /// An object: `arn:aws:s3:::BUCKET/KEY`.
    Object,
}

/// Every operation, for tables and tests.
pub const ALL_OPS: [S3Op; 59] = [
    S3Op::AbortMultipartUpload,
    S3Op::CompleteMultipartUpload,
    S3Op::CopyObject,
    S3Op::CreateBucket,
    S3Op::CreateMultipartUpload,
    S3Op::DeleteBucket,
    S3Op::DeleteBucketPolicy,
    S3Op::DeleteObject,
    S3Op::DeleteObjects,
    S3Op::GetBucketAcl,
    S3Op::GetBucketCors,
    S3Op::PutBucketCors,
    S3Op::DeleteBucketCors,
    S3Op::GetBucketEncryption,
    S3Op::PutBucketEncryption,
    S3Op::DeleteBucketEncryption,
    S3Op::GetBucketLifecycleConfiguration,
    S3Op::PutBucketLifecycleConfiguration,
    S3Op::DeleteBucketLifecycle,
    S3Op::GetBucketLocation,
    S3Op::GetBucketLogging,
    S3Op::GetBucketNotificationConfiguration,
    S3Op::GetBucketOwnershipControls,
    S3Op::GetBucketPolicy,
    S3Op::GetBucketReplication,
    S3Op::GetBucketTagging,
    S3Op::PutBucketTagging,
    S3Op::DeleteBucketTagging,
    S3Op::PutObjectTagging,
    S3Op::GetObjectTagging,
    S3Op::DeleteObjectTagging,
    S3Op::GetBucketVersioning,
    S3Op::PutBucketVersioning,
    S3Op::ListObjectVersions,
    S3Op::GetBucketWebsite,
    S3Op::GetObject,
    S3Op::GetObjectAcl,
    S3Op::GetObjectAttributes,
    S3Op::GetObjectLockConfiguration,
    S3Op::PutObjectLockConfiguration,
    S3Op::GetObjectRetention,
    S3Op::PutObjectRetention,
    S3Op::GetObjectLegalHold,
    S3Op::PutObjectLegalHold,
    S3Op::GetPublicAccessBlock,
    S3Op::HeadBucket,
    S3Op::HeadObject,
    S3Op::ListBuckets,
    S3Op::ListMultipartUploads,
    S3Op::ListObjects,
    S3Op::ListObjectsV2,
    S3Op::ListParts,
    S3Op::PutBucketAcl,
    S3Op::PutBucketPolicy,
    S3Op::PutObject,
    S3Op::PostObject,
    S3Op::PutObjectAcl,
    S3Op::UploadPart,
    S3Op::UploadPartCopy,
];

impl S3Op {
    /// The operation's name in the S3 API reference (`GetObject`).
    pub fn name(self) -> &'static str {
        match self {
            Self::AbortMultipartUpload => "AbortMultipartUpload",
            Self::CompleteMultipartUpload => "CompleteMultipartUpload",
            Self::CopyObject => "CopyObject",
            Self::CreateBucket => "CreateBucket",
            Self::CreateMultipartUpload => "CreateMultipartUpload",
            Self::DeleteBucket => "DeleteBucket",
            Self::DeleteBucketPolicy => "DeleteBucketPolicy",
            Self::DeleteObject => "DeleteObject",
            Self::DeleteObjects => "DeleteObjects",
            Self::GetBucketAcl => "GetBucketAcl",
            Self::GetBucketCors => "GetBucketCors",
            Self::PutBucketCors => "PutBucketCors",
            Self::DeleteBucketCors => "DeleteBucketCors",
            Self::GetBucketEncryption => "GetBucketEncryption",
            Self::PutBucketEncryption => "PutBucketEncryption",
            Self::DeleteBucketEncryption => "DeleteBucketEncryption",
            Self::GetBucketLifecycleConfiguration => "GetBucketLifecycleConfiguration",
            Self::PutBucketLifecycleConfiguration => "PutBucketLifecycleConfiguration",
            Self::DeleteBucketLifecycle => "DeleteBucketLifecycle",
            Self::GetBucketLocation => "GetBucketLocation",
            Self::GetBucketLogging => "GetBucketLogging",
            Self::GetBucketNotificationConfiguration => "GetBucketNotificationConfiguration",
            Self::GetBucketOwnershipControls => "GetBucketOwnershipControls",
            Self::GetBucketPolicy => "GetBucketPolicy",
            Self::GetBucketReplication => "GetBucketReplication",
            Self::GetBucketTagging => "GetBucketTagging",
            Self::PutBucketTagging => "PutBucketTagging",
            Self::DeleteBucketTagging => "DeleteBucketTagging",
            Self::PutObjectTagging => "PutObjectTagging",
            Self::GetObjectTagging => "GetObjectTagging",
            Self::DeleteObjectTagging => "DeleteObjectTagging",
            Self::GetBucketVersioning => "GetBucketVersioning",
            Self::PutBucketVersioning => "PutBucketVersioning",
            Self::ListObjectVersions => "ListObjectVersions",
            Self::GetBucketWebsite => "GetBucketWebsite",
            Self::GetObject => "GetObject",
            Self::GetObjectAcl => "GetObjectAcl",
            Self::GetObjectAttributes => "GetObjectAttributes",
            Self::GetObjectLockConfiguration => "GetObjectLockConfiguration",
            Self::PutObjectLockConfiguration => "PutObjectLockConfiguration",
            Self::GetObjectRetention => "GetObjectRetention",
            Self::PutObjectRetention => "PutObjectRetention",
            Self::GetObjectLegalHold => "GetObjectLegalHold",
            Self::PutObjectLegalHold => "PutObjectLegalHold",
            Self::GetPublicAccessBlock => "GetPublicAccessBlock",
            Self::HeadBucket => "HeadBucket",
            Self::HeadObject => "HeadObject",
            Self::ListBuckets => "ListBuckets",
            Self::ListMultipartUploads => "ListMultipartUploads",
            Self::ListObjects => "ListObjects",
            Self::ListObjectsV2 => "ListObjectsV2",
            Self::ListParts => "ListParts",
            Self::PutBucketAcl => "PutBucketAcl",
            Self::PutBucketPolicy => "PutBucketPolicy",
            Self::PutObject => "PutObject",
            Self::PostObject => "PostObject",
            Self::PutObjectAcl => "PutObjectAcl",
            Self::UploadPart => "UploadPart",
            Self::UploadPartCopy => "UploadPartCopy",
        }
    }

    /// The operation with this API name, if Keyless serves it.
    pub fn from_name(name: &str) -> Option<Self> {
        ALL_OPS.iter().copied().find(|op| op.name() == name)
    }

    /// The IAM action that authorizes the operation on its resource.
    pub fn action(self) -> &'static str {
        match self {
            Self::AbortMultipartUpload => "s3:AbortMultipartUpload",
            Self::CompleteMultipartUpload
            | Self::CopyObject
            | Self::CreateMultipartUpload
            | Self::PutObject
            | Self::PostObject
            | Self::UploadPart
            | Self::UploadPartCopy => "s3:PutObject",
            Self::CreateBucket => "s3:CreateBucket",
            Self::DeleteBucket => "s3:DeleteBucket",
            Self::DeleteBucketPolicy => "s3:DeleteBucketPolicy",
            Self::DeleteObject | Self::DeleteObjects => "s3:DeleteObject",
            Self::GetBucketLocation => "s3:GetBucketLocation",
            Self::GetBucketPolicy => "s3:GetBucketPolicy",
            Self::GetObject | Self::HeadObject => "s3:GetObject",
            Self::HeadBucket | Self::ListObjects | Self::ListObjectsV2 => "s3:ListBucket",
            Self::ListBuckets => "s3:ListAllMyBuckets",
            Self::ListMultipartUploads => "s3:ListBucketMultipartUploads",
            Self::ListParts => "s3:ListMultipartUploadParts",
            Self::PutBucketPolicy => "s3:PutBucketPolicy",
            Self::GetBucketAcl => "s3:GetBucketAcl",
            Self::GetBucketCors => "s3:GetBucketCORS",
            // S3 has no separate permission to delete it.
            Self::PutBucketCors | Self::DeleteBucketCors => "s3:PutBucketCORS",
            Self::GetBucketEncryption => "s3:GetEncryptionConfiguration",
            // Both change the configuration: S3 has no separate delete permission for it.
            Self::PutBucketEncryption | Self::DeleteBucketEncryption => {
                "s3:PutEncryptionConfiguration"
            }
            Self::GetBucketLifecycleConfiguration => "s3:GetLifecycleConfiguration",
            // S3 has no separate permission to delete it.
            Self::PutBucketLifecycleConfiguration | Self::DeleteBucketLifecycle => {
                "s3:PutLifecycleConfiguration"
            }
            Self::GetBucketLogging => "s3:GetBucketLogging",
            Self::GetBucketNotificationConfiguration => "s3:GetBucketNotification",
            Self::GetBucketOwnershipControls => "s3:GetBucketOwnershipControls",
            Self::GetBucketReplication => "s3:GetReplicationConfiguration",
            Self::GetBucketTagging => "s3:GetBucketTagging",
            // S3 has no separate permission to delete them.
            Self::PutBucketTagging | Self::DeleteBucketTagging => "s3:PutBucketTagging",
            Self::PutObjectTagging => "s3:PutObjectTagging",
            Self::GetObjectTagging => "s3:GetObjectTagging",
            Self::DeleteObjectTagging => "s3:DeleteObjectTagging",
            Self::GetBucketVersioning => "s3:GetBucketVersioning",
            Self::PutBucketVersioning => "s3:PutBucketVersioning",
            Self::ListObjectVersions => "s3:ListBucketVersions",
            Self::GetBucketWebsite => "s3:GetBucketWebsite",
            Self::GetObjectAcl => "s3:GetObjectAcl",
            Self::GetObjectAttributes => "s3:GetObjectAttributes",
            Self::GetObjectLockConfiguration => "s3:GetBucketObjectLockConfiguration",
            Self::PutObjectLockConfiguration => "s3:PutBucketObjectLockConfiguration",
            Self::GetObjectRetention => "s3:GetObjectRetention",
            Self::PutObjectRetention => "s3:PutObjectRetention",
            Self::GetObjectLegalHold => "s3:GetObjectLegalHold",
            Self::PutObjectLegalHold => "s3:PutObjectLegalHold",
            Self::GetPublicAccessBlock => "s3:GetBucketPublicAccessBlock",
            Self::PutBucketAcl => "s3:PutBucketAcl",
            Self::PutObjectAcl => "s3:PutObjectAcl",
        }
    }

    /// The IAM action when the request names a version (`versionId`): AWS's `*Version*`
    /// action where the operation has one, otherwise [`S3Op::action`].
    /// <https://docs.aws.amazon.com/service-authorization/latest/reference/list_amazons3.html>
    pub fn action_for(self, version_id: Option<&str>) -> &'static str {
        match (self, version_id) {
            (Self::GetObjectAttributes, Some(_)) => "s3:GetObjectVersionAttributes",
            (Self::GetObject | Self::HeadObject, Some(_)) => "s3:GetObjectVersion",
            (Self::DeleteObject | Self::DeleteObjects, Some(_)) => "s3:DeleteObjectVersion",
            (Self::GetObjectTagging, Some(_)) => "s3:GetObjectVersionTagging",
            (Self::PutObjectTagging, Some(_)) => "s3:PutObjectVersionTagging",
            (Self::DeleteObjectTagging, Some(_)) => "s3:DeleteObjectVersionTagging",
            (Self::GetObjectAcl, Some(_)) => "s3:GetObjectVersionAcl",
            (Self::PutObjectAcl, Some(_)) => "s3:PutObjectVersionAcl",
            (op, _) => op.action(),
        }
    }

    /// What the action's resource is. (`DeleteObjects` is authorized once per key.)
    pub fn scope(self) -> Scope {
        match self {
            Self::ListBuckets => Scope::Service,
            Self::CreateBucket
            | Self::DeleteBucket
            | Self::DeleteBucketPolicy
            | Self::GetBucketLocation
            | Self::GetBucketPolicy
            | Self::HeadBucket
            | Self::ListMultipartUploads
            | Self::ListObjects
            | Self::ListObjectsV2
            | Self::GetBucketAcl
            | Self::GetBucketCors
            | Self::PutBucketCors
            | Self::DeleteBucketCors
            | Self::GetBucketEncryption
            | Self::PutBucketEncryption
            | Self::DeleteBucketEncryption
            | Self::GetBucketLifecycleConfiguration
            | Self::PutBucketLifecycleConfiguration
            | Self::DeleteBucketLifecycle
            | Self::GetBucketLogging
            | Self::GetBucketNotificationConfiguration
            | Self::GetBucketOwnershipControls
            | Self::GetBucketReplication
            | Self::GetBucketTagging
            | Self::PutBucketTagging
            | Self::DeleteBucketTagging
            | Self::GetBucketVersioning
            | Self::PutBucketVersioning
            | Self::ListObjectVersions
            | Self::GetBucketWebsite
            | Self::GetObjectLockConfiguration
            | Self::PutObjectLockConfiguration
            | Self::GetPublicAccessBlock
            | Self::PutBucketAcl
            | Self::PutBucketPolicy => Scope::Bucket,
            Self::AbortMultipartUpload
            | Self::CompleteMultipartUpload
            | Self::CopyObject
            | Self::CreateMultipartUpload
            | Self::DeleteObject
            | Self::DeleteObjects
            | Self::GetObject
            | Self::HeadObject
            | Self::ListParts
            | Self::PutObject
            | Self::PostObject
            | Self::UploadPart
            | Self::GetObjectAcl
            | Self::GetObjectAttributes
            | Self::PutObjectAcl
            | Self::PutObjectTagging
            | Self::GetObjectTagging
            | Self::DeleteObjectTagging
            | Self::GetObjectRetention
            | Self::PutObjectRetention
            | Self::GetObjectLegalHold
            | Self::PutObjectLegalHold
            | Self::UploadPartCopy => Scope::Object,
        }
    }

    /// Whether AWS evaluates `s3:ExistingObjectTag/<key>` (the object's own tags) for the
    /// operation.
    /// <https://docs.aws.amazon.com/AmazonS3/latest/userguide/tagging-and-policies.html>
    pub fn sees_existing_tags(self) -> bool {
        matches!(
            self,
            Self::GetObject
                | Self::HeadObject
                | Self::GetObjectAcl
                | Self::PutObjectAcl
                | Self::GetObjectAttributes
                | Self::GetObjectTagging
                | Self::PutObjectTagging
                | Self::DeleteObjectTagging
        )
    }

    /// Whether the operation also reads a source object (`x-amz-copy-source`), which needs
    /// `s3:GetObject` on that object too.
    pub fn reads_copy_source(self) -> bool {
        matches!(self, Self::CopyObject | Self::UploadPartCopy)
    }

    /// The further actions AWS requires of a request that asks for Object Lock: a write with
    /// a retention needs `s3:PutObjectRetention`, with a legal hold `s3:PutObjectLegalHold`; a
    /// bucket created with Object Lock needs `s3:PutBucketObjectLockConfiguration` and
    /// `s3:PutBucketVersioning`. Each on the operation's own resource.
    /// <https://docs.aws.amazon.com/AmazonS3/latest/userguide/object-lock-managing.html>
    pub fn also_needs(self, asks: LockAsks) -> Vec<&'static str> {
        let mut out = Vec::new();
        match self {
            Self::PutObject | Self::CopyObject | Self::CreateMultipartUpload | Self::PostObject => {
                if asks.retention {
                    out.push("s3:PutObjectRetention");
                }
                if asks.legal_hold {
                    out.push("s3:PutObjectLegalHold");
                }
            }
            Self::CreateBucket if asks.bucket_lock => {
                out.extend([
                    "s3:PutBucketObjectLockConfiguration",
                    "s3:PutBucketVersioning",
                ]);
            }
            _ => {}
        }
        out
    }

    /// Whether `x-amz-bypass-governance-retention` means something to the operation.
    pub fn may_bypass_governance(self) -> bool {
        matches!(
            self,
            Self::DeleteObject | Self::DeleteObjects | Self::PutObjectRetention
        )
    }

    /// The resource ARN of the operation on `bucket` and `key`.
    pub fn resource(self, bucket: &str, key: &str) -> String {
        match self.scope() {
            Scope::Service => "*".to_owned(),
            Scope::Bucket => bucket_arn(bucket),
            Scope::Object => object_arn(bucket, key),
        }
    }
}

/// The action that lets a request bypass governance-mode retention.
pub const BYPASS_GOVERNANCE: &str = "s3:BypassGovernanceRetention";

/// What a request asks of Object Lock, for [`S3Op::also_needs`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LockAsks {
    /// A retention (`x-amz-object-lock-mode` and `-retain-until-date`).
    pub retention: bool,
    /// A legal hold (`x-amz-object-lock-legal-hold`).
    pub legal_hold: bool,
    /// A bucket with Object Lock (`x-amz-bucket-object-lock-enabled: true`).
    pub bucket_lock: bool,
}

/// `arn:aws:s3:::BUCKET`.
pub fn bucket_arn(bucket: &str) -> String {
    format!("arn:aws:s3:::{bucket}")
}

/// `arn:aws:s3:::BUCKET/KEY`.
pub fn object_arn(bucket: &str, key: &str) -> String {
    format!("arn:aws:s3:::{bucket}/{key}")
}

/// How the request was authenticated, as `s3:authType` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthType {
    /// `Authorization` header.
    Header,
    /// Presigned URL (query string).
    QueryString,
    /// Browser POST form.
    Post,
}

impl AuthType {
    fn as_str(self) -> &'static str {
        match self {
            Self::Header => "REST-HEADER",
            Self::QueryString => "REST-QUERY-STRING",
            Self::Post => "POST",
        }
    }
}

/// What the server knows of one request, from which its condition keys are built.
///
/// <https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_condition-keys.html>
/// <https://docs.aws.amazon.com/AmazonS3/latest/API/bucket-policy-s3-sigv4-conditions.html>
#[derive(Debug, Clone, Default)]
pub struct RequestFacts<'a> {
    /// The client's address.
    pub source_ip: Option<std::net::IpAddr>,
    /// Whether the request came over TLS.
    pub secure_transport: bool,
    /// Seconds since the epoch (the caller reads the clock).
    pub epoch_seconds: i64,
    /// `aws:username` (IAM users only).
    pub username: Option<&'a str>,
    /// `aws:userid`: the user's id, or `ROLEID:SESSION` for a role session.
    pub userid: Option<&'a str>,
    /// `aws:PrincipalArn`: the user's ARN, or the role's ARN for a session.
    pub principal_arn: Option<&'a str>,
    /// `aws:PrincipalAccount`.
    pub principal_account: Option<&'a str>,
    /// `aws:PrincipalType`: `User`, `AssumedRole`, `Account` or `Anonymous`.
    pub principal_type: Option<&'a str>,
    /// `aws:TokenIssueTime`, for temporary credentials (ISO 8601).
    pub token_issue_time: Option<&'a str>,
    /// `s3:signatureversion`: `AWS4-HMAC-SHA256` or `AWS`.
    pub signature_version: Option<&'a str>,
    /// `s3:authType`.
    pub auth_type: Option<AuthType>,
    /// `s3:x-amz-content-sha256`, as the client sent it.
    pub content_sha256: Option<&'a str>,
    /// `s3:x-amz-server-side-encryption`: the encryption the request asks for, as sent (what
    /// the classic "deny unencrypted uploads" bucket policy tests).
    pub server_side_encryption: Option<&'a str>,
    /// The tags the request sets (`x-amz-tagging`, PutObjectTagging's body):
    /// `s3:RequestObjectTag/<key>` and `s3:RequestObjectTagKeys`.
    pub request_tags: &'a [(String, String)],
    /// The tags of the object the request acts on, when a policy asks about them:
    /// `s3:ExistingObjectTag/<key>`.
    pub existing_tags: &'a [(String, String)],
    /// `s3:versionid`: the version the request names (`versionId`).
    pub version_id: Option<&'a str>,
    /// `s3:object-lock-mode`: the retention mode the request sets.
    pub object_lock_mode: Option<&'a str>,
    /// `s3:object-lock-retain-until-date`: the end of the retention it sets (ISO 8601).
    pub object_lock_retain_until_date: Option<&'a str>,
    /// `s3:object-lock-remaining-retention-days`: whole days from now to that end.
    pub object_lock_remaining_retention_days: Option<i64>,
    /// `s3:object-lock-legal-hold`: the legal hold it sets (`ON`, `OFF`).
    pub object_lock_legal_hold: Option<&'a str>,
    /// `s3:prefix`, `s3:delimiter` and `s3:max-keys` for listings.
    pub prefix: Option<&'a str>,
    /// See `prefix`.
    pub delimiter: Option<&'a str>,
    /// See `prefix`.
    pub max_keys: Option<i64>,
    /// The request's record, where a refusal's explanation goes (not a condition key).
    pub log: Option<RequestLog>,
}

impl RequestFacts<'_> {
    /// The request context the policy engine decides with.
    pub fn context(&self) -> Context {
        let mut ctx = Context::with_capacity(16);
        let mut put = |key: &'static str, value: Option<Cow<'_, str>>| {
            if let Some(v) = value {
                ctx.insert(key, v.into_owned());
            }
        };
        put(
            "aws:SourceIp",
            self.source_ip.map(|ip| ip.to_string().into()),
        );
        put(
            "aws:SecureTransport",
            Some(self.secure_transport.to_string().into()),
        );
        put("aws:CurrentTime", Some(iso8601(self.epoch_seconds).into()));
        put("aws:EpochTime", Some(self.epoch_seconds.to_string().into()));
        put("aws:username", self.username.map(Cow::Borrowed));
        put("aws:userid", self.userid.map(Cow::Borrowed));
        put("aws:PrincipalArn", self.principal_arn.map(Cow::Borrowed));
        put(
            "aws:PrincipalAccount",
            self.principal_account.map(Cow::Borrowed),
        );
        put("aws:PrincipalType", self.principal_type.map(Cow::Borrowed));
        put(
            "aws:TokenIssueTime",
            self.token_issue_time.map(Cow::Borrowed),
        );
        put(
            "s3:signatureversion",
            self.signature_version.map(Cow::Borrowed),
        );
        put("s3:authType", self.auth_type.map(|a| a.as_str().into()));
        put("s3:versionid", self.version_id.map(Cow::Borrowed));
        put(
            "s3:x-amz-content-sha256",
            self.content_sha256.map(Cow::Borrowed),
        );
        put(
            "s3:x-amz-server-side-encryption",
            self.server_side_encryption.map(Cow::Borrowed),
        );
        put(
            "s3:object-lock-mode",
            self.object_lock_mode.map(Cow::Borrowed),
        );
        put(
            "s3:object-lock-retain-until-date",
            self.object_lock_retain_until_date.map(Cow::Borrowed),
        );
        put(
            "s3:object-lock-remaining-retention-days",
            self.object_lock_remaining_retention_days
                .map(|n| n.to_string().into()),
        );
        put(
            "s3:object-lock-legal-hold",
            self.object_lock_legal_hold.map(Cow::Borrowed),
        );
        put("s3:prefix", self.prefix.map(Cow::Borrowed));
        put("s3:delimiter", self.delimiter.map(Cow::Borrowed));
        put("s3:max-keys", self.max_keys.map(|n| n.to_string().into()));
        for (key, value) in self.request_tags {
            ctx.insert(format!("s3:RequestObjectTag/{key}"), value.clone());
        }
        if !self.request_tags.is_empty() {
            ctx.insert_multi(
                "s3:RequestObjectTagKeys",
                self.request_tags.iter().map(|(k, _)| k.clone()),
            );
        }
        for (key, value) in self.existing_tags {
            ctx.insert(format!("s3:ExistingObjectTag/{key}"), value.clone());
        }
        ctx
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for op in ALL_OPS {
            assert_eq!(S3Op::from_name(op.name()), Some(op));
            assert!(op.action().starts_with("s3:"));
        }
        assert_eq!(S3Op::from_name("PutBucketWebsite"), None);
    }

    /// The permissions the S3 User Guide lists for each operation.
    #[test]
    fn actions_follow_the_s3_permission_table() {
        let table = [
            ("GetObject", "s3:GetObject", "arn:aws:s3:::b/k"),
            ("HeadObject", "s3:GetObject", "arn:aws:s3:::b/k"),
            ("PutObject", "s3:PutObject", "arn:aws:s3:::b/k"),
            ("CopyObject", "s3:PutObject", "arn:aws:s3:::b/k"),
            ("CreateMultipartUpload", "s3:PutObject", "arn:aws:s3:::b/k"),
            ("UploadPart", "s3:PutObject", "arn:aws:s3:::b/k"),
            ("UploadPartCopy", "s3:PutObject", "arn:aws:s3:::b/k"),
            (
                "CompleteMultipartUpload",
                "s3:PutObject",
                "arn:aws:s3:::b/k",
            ),
            (
                "AbortMultipartUpload",
                "s3:AbortMultipartUpload",
                "arn:aws:s3:::b/k",
            ),
            (
                "ListParts",
                "s3:ListMultipartUploadParts",
                "arn:aws:s3:::b/k",
            ),
            ("DeleteObject", "s3:DeleteObject", "arn:aws:s3:::b/k"),
            ("DeleteObjects", "s3:DeleteObject", "arn:aws:s3:::b/k"),
            ("ListObjects", "s3:ListBucket", "arn:aws:s3:::b"),
            ("ListObjectsV2", "s3:ListBucket", "arn:aws:s3:::b"),
            ("HeadBucket", "s3:ListBucket", "arn:aws:s3:::b"),
            (
                "ListMultipartUploads",
                "s3:ListBucketMultipartUploads",
                "arn:aws:s3:::b",
            ),
            (
                "GetBucketLocation",
                "s3:GetBucketLocation",
                "arn:aws:s3:::b",
            ),
            ("CreateBucket", "s3:CreateBucket", "arn:aws:s3:::b"),
            ("DeleteBucket", "s3:DeleteBucket", "arn:aws:s3:::b"),
            ("PutBucketPolicy", "s3:PutBucketPolicy", "arn:aws:s3:::b"),
            ("GetBucketPolicy", "s3:GetBucketPolicy", "arn:aws:s3:::b"),
            (
                "DeleteBucketPolicy",
                "s3:DeleteBucketPolicy",
                "arn:aws:s3:::b",
            ),
            ("GetBucketAcl", "s3:GetBucketAcl", "arn:aws:s3:::b"),
            ("GetBucketCors", "s3:GetBucketCORS", "arn:aws:s3:::b"),
            ("PutBucketCors", "s3:PutBucketCORS", "arn:aws:s3:::b"),
            ("DeleteBucketCors", "s3:PutBucketCORS", "arn:aws:s3:::b"),
            (
                "PutBucketEncryption",
                "s3:PutEncryptionConfiguration",
                "arn:aws:s3:::b",
            ),
            (
                "DeleteBucketEncryption",
                "s3:PutEncryptionConfiguration",
                "arn:aws:s3:::b",
            ),
            (
                "GetBucketEncryption",
                "s3:GetEncryptionConfiguration",
                "arn:aws:s3:::b",
            ),
            (
                "PutBucketLifecycleConfiguration",
                "s3:PutLifecycleConfiguration",
                "arn:aws:s3:::b",
            ),
            (
                "DeleteBucketLifecycle",
                "s3:PutLifecycleConfiguration",
                "arn:aws:s3:::b",
            ),
            (
                "GetBucketLifecycleConfiguration",
                "s3:GetLifecycleConfiguration",
                "arn:aws:s3:::b",
            ),
            ("GetBucketLogging", "s3:GetBucketLogging", "arn:aws:s3:::b"),
            (
                "GetBucketNotificationConfiguration",
                "s3:GetBucketNotification",
                "arn:aws:s3:::b",
            ),
            (
                "GetBucketOwnershipControls",
                "s3:GetBucketOwnershipControls",
                "arn:aws:s3:::b",
            ),
            (
                "GetBucketReplication",
                "s3:GetReplicationConfiguration",
                "arn:aws:s3:::b",
            ),
            ("GetBucketTagging", "s3:GetBucketTagging", "arn:aws:s3:::b"),
            ("PutBucketTagging", "s3:PutBucketTagging", "arn:aws:s3:::b"),
            (
                "DeleteBucketTagging",
                "s3:PutBucketTagging",
                "arn:aws:s3:::b",
            ),
            (
                "PutObjectTagging",
                "s3:PutObjectTagging",
                "arn:aws:s3:::b/k",
            ),
            (
                "GetObjectTagging",
                "s3:GetObjectTagging",
                "arn:aws:s3:::b/k",
            ),
            (
                "DeleteObjectTagging",
                "s3:DeleteObjectTagging",
                "arn:aws:s3:::b/k",
            ),
            (
                "GetBucketVersioning",
                "s3:GetBucketVersioning",
                "arn:aws:s3:::b",
            ),
            ("GetBucketWebsite", "s3:GetBucketWebsite", "arn:aws:s3:::b"),
            ("GetObjectAcl", "s3:GetObjectAcl", "arn:aws:s3:::b/k"),
            (
                "GetObjectAttributes",
                "s3:GetObjectAttributes",
                "arn:aws:s3:::b/k",
            ),
            (
                "GetObjectLockConfiguration",
                "s3:GetBucketObjectLockConfiguration",
                "arn:aws:s3:::b",
            ),
            (
                "GetPublicAccessBlock",
                "s3:GetBucketPublicAccessBlock",
                "arn:aws:s3:::b",
            ),
            ("PutBucketAcl", "s3:PutBucketAcl", "arn:aws:s3:::b"),
            ("PutObjectAcl", "s3:PutObjectAcl", "arn:aws:s3:::b/k"),
            ("ListBuckets", "s3:ListAllMyBuckets", "*"),
            ("PostObject", "s3:PutObject", "arn:aws:s3:::b/k"),
            (
                "PutBucketVersioning",
                "s3:PutBucketVersioning",
                "arn:aws:s3:::b",
            ),
            (
                "ListObjectVersions",
                "s3:ListBucketVersions",
                "arn:aws:s3:::b",
            ),
            (
                "PutObjectLockConfiguration",
                "s3:PutBucketObjectLockConfiguration",
                "arn:aws:s3:::b",
            ),
            (
                "GetObjectRetention",
                "s3:GetObjectRetention",
                "arn:aws:s3:::b/k",
            ),
            (
                "PutObjectRetention",
                "s3:PutObjectRetention",
                "arn:aws:s3:::b/k",
            ),
            (
                "GetObjectLegalHold",
                "s3:GetObjectLegalHold",
                "arn:aws:s3:::b/k",
            ),
            (
                "PutObjectLegalHold",
                "s3:PutObjectLegalHold",
                "arn:aws:s3:::b/k",
            ),
        ];
        assert_eq!(table.len(), ALL_OPS.len());
        for (name, action, resource) in table {
            let op = S3Op::from_name(name).unwrap();
            assert_eq!(op.action(), action, "{name}");
            assert_eq!(op.resource("b", "k"), resource, "{name}");
        }
        assert!(S3Op::CopyObject.reads_copy_source());
        assert!(S3Op::UploadPartCopy.reads_copy_source());
        assert!(!S3Op::PutObject.reads_copy_source());
    }

    #[test]
    fn object_lock_asks_need_their_own_actions() {
        let none = LockAsks::default();
        let all = LockAsks {
            retention: true,
            legal_hold: true,
            bucket_lock: true,
        };
        assert!(S3Op::PutObject.also_needs(none).is_empty());
        assert_eq!(
            S3Op::PutObject.also_needs(all),
            ["s3:PutObjectRetention", "s3:PutObjectLegalHold"]
        );
        assert_eq!(
            S3Op::CreateMultipartUpload.also_needs(LockAsks {
                legal_hold: true,
                ..none
            }),
            ["s3:PutObjectLegalHold"]
        );
        assert_eq!(
            S3Op::CreateBucket.also_needs(all),
            [
                "s3:PutBucketObjectLockConfiguration",
                "s3:PutBucketVersioning"
            ]
        );
        assert!(S3Op::GetObject.also_needs(all).is_empty());
        assert!(S3Op::DeleteObject.may_bypass_governance());
        assert!(!S3Op::PutObject.may_bypass_governance());
    }

    #[test]
    fn a_named_version_needs_the_version_action() {
        let op = S3Op::GetObjectAttributes;
        assert_eq!(op.action_for(None), "s3:GetObjectAttributes");
        assert_eq!(op.action_for(Some("null")), "s3:GetObjectVersionAttributes");
        assert_eq!(S3Op::GetObject.action_for(None), "s3:GetObject");
        for (op, action) in [
            (S3Op::GetObject, "s3:GetObjectVersion"),
            (S3Op::HeadObject, "s3:GetObjectVersion"),
            (S3Op::DeleteObject, "s3:DeleteObjectVersion"),
            (S3Op::DeleteObjects, "s3:DeleteObjectVersion"),
            (S3Op::GetObjectTagging, "s3:GetObjectVersionTagging"),
            (S3Op::PutObjectTagging, "s3:PutObjectVersionTagging"),
            (S3Op::DeleteObjectTagging, "s3:DeleteObjectVersionTagging"),
            (S3Op::GetObjectAcl, "s3:GetObjectVersionAcl"),
            (S3Op::PutObjectAcl, "s3:PutObjectVersionAcl"),
        ] {
            assert_eq!(op.action_for(Some("null")), action, "{op:?}");
        }
        assert_eq!(S3Op::PutObject.action_for(Some("v")), "s3:PutObject");
    }

    #[test]
    fn context_keys() {
        let facts = RequestFacts {
            source_ip: Some("10.1.2.3".parse().unwrap()),
            secure_transport: true,
            epoch_seconds: 1_795_608_000,
            username: Some("alice"),
            principal_arn: Some("arn:aws:iam::111122223333:user/alice"),
            auth_type: Some(AuthType::QueryString),
            prefix: Some("home/alice/"),
            max_keys: Some(1000),
            ..Default::default()
        };
        let ctx = facts.context();
        let get = |k: &str| ctx.get(k).map(|v| v.values[0].clone());
        assert_eq!(get("aws:SourceIp").as_deref(), Some("10.1.2.3"));
        assert_eq!(get("aws:SecureTransport").as_deref(), Some("true"));
        assert_eq!(
            get("aws:CurrentTime").as_deref(),
            Some("2026-11-25T12:00:00Z")
        );
        assert_eq!(get("aws:EpochTime").as_deref(), Some("1795608000"));
        assert_eq!(get("s3:authType").as_deref(), Some("REST-QUERY-STRING"));
        assert_eq!(get("s3:prefix").as_deref(), Some("home/alice/"));
        assert_eq!(get("s3:max-keys").as_deref(), Some("1000"));
        assert_eq!(get("aws:userid"), None);
        assert_eq!(iso8601(0), "1970-01-01T00:00:00Z");
        assert_eq!(iso8601(951_782_400), "2000-02-29T00:00:00Z");
    }
}
