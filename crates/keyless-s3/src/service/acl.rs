//! ACLs as AWS answers them for a bucket whose Object Ownership is "bucket owner enforced"
//! (every new bucket since April 2023): ACLs are disabled, access is granted by policies.
//! Reading an ACL answers the owner's `FULL_CONTROL`; setting one is accepted only when it
//! grants nothing beyond that (`private`, `bucket-owner-full-control`, or the owner's full
//! control spelled out), anything else is `AccessControlListNotSupported`.
//!
//! <https://docs.aws.amazon.com/AmazonS3/latest/userguide/about-object-ownership.html>
//! <https://docs.aws.amazon.com/AmazonS3/latest/API/API_GetBucketAcl.html>
//! <https://docs.aws.amazon.com/AmazonS3/latest/API/API_PutObjectAcl.html>

use http::HeaderMap;
use s3s::dto::*;
use s3s::{S3Request, S3Response, S3Result, s3_error};

use super::KeylessS3;
use crate::store::ObjectStore;
use crate::wire::store_error;

/// The canned ACLs that grant nothing beyond the owner's full control, for objects.
const OBJECT_CANNED: [&str; 2] = [
    ObjectCannedACL::PRIVATE,
    ObjectCannedACL::BUCKET_OWNER_FULL_CONTROL,
];

/// The same for buckets (`bucket-owner-full-control` is no bucket ACL on S3).
const BUCKET_CANNED: [&str; 1] = [BucketCannedACL::PRIVATE];

/// The grant headers, which name grantees.
const GRANT_HEADERS: [&str; 5] = [
    "x-amz-grant-full-control",
    "x-amz-grant-read",
    "x-amz-grant-read-acp",
    "x-amz-grant-write",
    "x-amz-grant-write-acp",
];

/// What an ACL is set on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum AclOf {
    /// A bucket (CreateBucket, PutBucketAcl).
    Bucket,
    /// An object (PutObject, CopyObject, CreateMultipartUpload, PutObjectAcl).
    Object,
}

fn not_supported() -> s3s::S3Error {
    s3_error!(
        AccessControlListNotSupported,
        "The bucket does not allow ACLs"
    )
}

/// Whether a grant header's value names the owner alone (`id="OWNER"`, quoted or not).
fn owner_only(value: &str, owner_id: &str) -> bool {
    value.split(',').all(|grantee| {
        grantee
            .trim()
            .strip_prefix("id=")
            .is_some_and(|id| id.trim_matches('"') == owner_id)
    })
}

/// Refuses the `x-amz-acl` and `x-amz-grant-*` headers of a request that would grant more
/// than the owner's full control.
pub(super) fn refuse_acl_headers(headers: &HeaderMap, of: AclOf, owner_id: &str) -> S3Result<()> {
    if let Some(canned) = headers.get("x-amz-acl") {
        let canned = canned.to_str().unwrap_or_default();
        let accepted: &[&str] = match of {
            AclOf::Bucket => &BUCKET_CANNED,
            AclOf::Object => &OBJECT_CANNED,
        };
        if !accepted.contains(&canned) {
            return Err(not_supported());
        }
    }
    for name in GRANT_HEADERS {
        for value in headers.get_all(name) {
            let value = value.to_str().unwrap_or_default();
            if name != "x-amz-grant-full-control" || !owner_only(value, owner_id) {
                return Err(not_supported());
            }
        }
    }
    Ok(())
}

/// Refuses an `AccessControlPolicy` body that grants anything but the owner's full control.
fn refuse_policy(policy: Option<&AccessControlPolicy>, owner_id: &str) -> S3Result<()> {
    let Some(policy) = policy else { return Ok(()) };
    let owner_full_control = |g: &Grant| {
        g.permission.as_ref().map(Permission::as_str) == Some(Permission::FULL_CONTROL)
            && g.grantee
                .as_ref()
                .is_some_and(|who| who.id.as_deref() == Some(owner_id) && who.uri.is_none())
    };
    if policy.grants.iter().flatten().all(owner_full_control) {
        Ok(())
    } else {
        Err(not_supported())
    }
}

impl<S: ObjectStore> KeylessS3<S> {
    /// The owner of every bucket and object: the account.
    pub(super) fn owner(&self) -> Owner {
        Owner {
            id: Some(self.owner_id.clone()),
            display_name: Some("keyless".to_owned()),
        }
    }

    /// The owner's `FULL_CONTROL`, the one grant of every bucket and object.
    fn owner_grants(&self) -> Grants {
        vec![Grant {
            grantee: Some(Grantee {
                display_name: Some("keyless".to_owned()),
                email_address: None,
                id: Some(self.owner_id.clone()),
                type_: Type::from_static(Type::CANONICAL_USER),
                uri: None,
            }),
            permission: Some(Permission::from_static(Permission::FULL_CONTROL)),
        }]
    }

    pub(super) async fn get_bucket_acl_(
        &self,
        req: S3Request<GetBucketAclInput>,
    ) -> S3Result<S3Response<GetBucketAclOutput>> {
        self.store
            .head_bucket(&req.input.bucket)
            .await
            .map_err(store_error)?;
        Ok(S3Response::new(GetBucketAclOutput {
            grants: Some(self.owner_grants()),
            owner: Some(self.owner()),
        }))
    }

    pub(super) async fn get_object_acl_(
        &self,
        req: S3Request<GetObjectAclInput>,
    ) -> S3Result<S3Response<GetObjectAclOutput>> {
        self.store
            .head_object(
                &req.input.bucket,
                &req.input.key,
                req.input.version_id.as_deref(),
            )
            .await
            .map_err(store_error)?;
        Ok(S3Response::new(GetObjectAclOutput {
            grants: Some(self.owner_grants()),
            owner: Some(self.owner()),
            ..Default::default()
        }))
    }

    pub(super) async fn put_bucket_acl_(
        &self,
        req: S3Request<PutBucketAclInput>,
    ) -> S3Result<S3Response<PutBucketAclOutput>> {
        self.store
            .head_bucket(&req.input.bucket)
            .await
            .map_err(store_error)?;
        refuse_acl_headers(&req.headers, AclOf::Bucket, &self.owner_id)?;
        refuse_policy(req.input.access_control_policy.as_ref(), &self.owner_id)?;
        Ok(S3Response::new(PutBucketAclOutput {}))
    }

    pub(super) async fn put_object_acl_(
        &self,
        req: S3Request<PutObjectAclInput>,
    ) -> S3Result<S3Response<PutObjectAclOutput>> {
        self.store
            .head_object(
                &req.input.bucket,
                &req.input.key,
                req.input.version_id.as_deref(),
            )
            .await
            .map_err(store_error)?;
        refuse_acl_headers(&req.headers, AclOf::Object, &self.owner_id)?;
        refuse_policy(req.input.access_control_policy.as_ref(), &self.owner_id)?;
        Ok(S3Response::new(PutObjectAclOutput::default()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::headers;

    fn refused(pairs: &[(&'static str, &'static str)], of: AclOf) -> bool {
        refuse_acl_headers(&headers(pairs), of, "111122223333").is_err()
    }

    #[test]
    fn owner_only_acls_pass_and_the_rest_are_refused() {
        assert!(!refused(&[], AclOf::Object));
        assert!(!refused(&[("x-amz-acl", "private")], AclOf::Object));
        assert!(!refused(
            &[("x-amz-acl", "bucket-owner-full-control")],
            AclOf::Object
        ));
        assert!(!refused(&[("x-amz-acl", "private")], AclOf::Bucket));
        assert!(refused(
            &[("x-amz-acl", "bucket-owner-full-control")],
            AclOf::Bucket
        ));
        for canned in [
            "public-read",
            "public-read-write",
            "authenticated-read",
            "x",
        ] {
            assert!(refused(&[("x-amz-acl", canned)], AclOf::Object), "{canned}");
            assert!(refused(&[("x-amz-acl", canned)], AclOf::Bucket), "{canned}");
        }
        assert!(!refused(
            &[("x-amz-grant-full-control", "id=\"111122223333\"")],
            AclOf::Object
        ));
        assert!(refused(
            &[("x-amz-grant-full-control", "id=999999999999")],
            AclOf::Object
        ));
        assert!(refused(
            &[(
                "x-amz-grant-read",
                "uri=\"http://acs.amazonaws.com/groups/global/AllUsers\""
            )],
            AclOf::Object
        ));
        let e = refuse_acl_headers(
            &headers(&[("x-amz-acl", "public-read")]),
            AclOf::Object,
            "1",
        )
        .unwrap_err();
        assert_eq!(e.code().as_str(), "AccessControlListNotSupported");
    }

    #[test]
    fn an_acl_body_may_grant_the_owner_alone() {
        let grant = |id: &str, permission: &'static str| Grant {
            grantee: Some(Grantee {
                display_name: None,
                email_address: None,
                id: Some(id.to_owned()),
                type_: Type::from_static(Type::CANONICAL_USER),
                uri: None,
            }),
            permission: Some(Permission::from_static(permission)),
        };
        let policy = |grants| AccessControlPolicy {
            grants: Some(grants),
            owner: None,
        };
        assert!(refuse_policy(None, "o").is_ok());
        assert!(
            refuse_policy(
                Some(&policy(vec![grant("o", Permission::FULL_CONTROL)])),
                "o"
            )
            .is_ok()
        );
        assert!(
            refuse_policy(
                Some(&policy(vec![grant("x", Permission::FULL_CONTROL)])),
                "o"
            )
            .is_err()
        );
        assert!(refuse_policy(Some(&policy(vec![grant("o", Permission::READ)])), "o").is_err());
    }
}
