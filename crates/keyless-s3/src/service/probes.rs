//! The bucket configurations Keyless does not offer, answered as S3 answers them for a bucket
//! that never had one, so that tools which probe them (Terraform, rclone, s3cmd, backup tools)
//! go on instead of stopping at a 501: the "not configured" errors (each AWS's code and text in
//! `wire/errors.rs`), and for versioning, ownership, logging and notifications the answer of
//! a new bucket.
//!
//! <https://docs.aws.amazon.com/AmazonS3/latest/API/ErrorResponses.html>
//! <https://docs.aws.amazon.com/AmazonS3/latest/API/API_GetBucketVersioning.html>
//! <https://docs.aws.amazon.com/AmazonS3/latest/API/API_GetBucketOwnershipControls.html>

use s3s::dto::*;
use s3s::{S3Error, S3ErrorCode, S3Request, S3Response, S3Result, s3_error};

use super::KeylessS3;
use crate::cors::Cors;
use crate::lifecycle::Lifecycle;
use crate::store::{BucketConfig, ObjectStore, Sealing};
use crate::wire::{aws_error, store_error};

/// A bucket without the configuration: S3's error of that code, with S3's status (404 for
/// all of them; s3s has no status for `NoSuchPublicAccessBlockConfiguration` and 400 for
/// `ServerSideEncryptionConfigurationNotFoundError`, which S3 answers with 404).
pub(super) fn not_configured(code: &'static str) -> S3Error {
    let mut e = aws_error(
        S3ErrorCode::from_bytes(code.as_bytes()).unwrap_or(S3ErrorCode::Custom(code.into())),
    );
    e.set_status_code(http::StatusCode::NOT_FOUND);
    e
}

impl<S: ObjectStore> KeylessS3<S> {
    /// The bucket must exist: `NoSuchBucket` otherwise.
    async fn existing(&self, bucket: &str) -> S3Result<()> {
        self.store
            .head_bucket(bucket)
            .await
            .map(drop)
            .map_err(store_error)
    }

    pub(super) async fn get_bucket_encryption_(
        &self,
        req: S3Request<GetBucketEncryptionInput>,
    ) -> S3Result<S3Response<GetBucketEncryptionOutput>> {
        self.existing(&req.input.bucket).await?;
        // Every object sealed: as S3 answers since 2023 for every bucket, SSE-S3 is the
        // default, and the only kind Keyless keeps. Sealed on request: the bucket's own.
        let configured = match self.store.sealing() {
            Sealing::All => true,
            Sealing::Requested => self
                .store
                .bucket_config(&req.input.bucket, BucketConfig::Encryption)
                .await
                .map_err(store_error)?
                .is_some(),
            Sealing::Off => false,
        };
        if !configured {
            return Err(not_configured(
                "ServerSideEncryptionConfigurationNotFoundError",
            ));
        }
        let rule = ServerSideEncryptionRule {
            apply_server_side_encryption_by_default: Some(ServerSideEncryptionByDefault {
                kms_master_key_id: None,
                sse_algorithm: ServerSideEncryption::from_static(ServerSideEncryption::AES256),
            }),
            bucket_key_enabled: Some(false),
        };
        Ok(S3Response::new(GetBucketEncryptionOutput {
            server_side_encryption_configuration: Some(ServerSideEncryptionConfiguration {
                rules: vec![rule],
            }),
        }))
    }

    /// PutBucketEncryption: SSE-S3 is every object's encryption already, so a configuration
    /// that asks for it is accepted as is; one that asks for KMS is refused, never ignored.
    pub(super) async fn put_bucket_encryption_(
        &self,
        req: S3Request<PutBucketEncryptionInput>,
    ) -> S3Result<S3Response<PutBucketEncryptionOutput>> {
        self.existing(&req.input.bucket).await?;
        let rules = &req.input.server_side_encryption_configuration.rules;
        if rules.is_empty() {
            return Err(aws_error(S3ErrorCode::MalformedXML));
        }
        for rule in rules {
            let default = rule.apply_server_side_encryption_by_default.as_ref();
            let algorithm = default.map(|d| d.sse_algorithm.as_str());
            match algorithm {
                Some(ServerSideEncryption::AES256)
                    if default.is_some_and(|d| d.kms_master_key_id.is_none()) => {}
                Some(ServerSideEncryption::AES256) => {
                    return Err(s3_error!(
                        InvalidArgument,
                        "a KMS key id is only allowed with aws:kms"
                    ));
                }
                Some(ServerSideEncryption::AWS_KMS | ServerSideEncryption::AWS_KMS_DSSE) => {
                    return Err(s3_error!(
                        NotImplemented,
                        "Keyless does not implement server-side encryption with KMS keys: its objects are encrypted with SSE-S3 (AES256)"
                    ));
                }
                _ => {
                    return Err(s3_error!(
                        InvalidArgument,
                        "The encryption method specified is not supported"
                    ));
                }
            }
        }
        match self.store.sealing() {
            Sealing::Off => {
                return Err(s3_error!(
                    NotImplemented,
                    "this store keeps objects in plaintext: encryption at rest is off"
                ));
            }
            Sealing::Requested => self.set_default_encryption(&req.input.bucket, true).await?,
            Sealing::All => {}
        }
        Ok(S3Response::new(PutBucketEncryptionOutput::default()))
    }

    /// DeleteBucketEncryption: the bucket goes back to the default: SSE-S3 where every object
    /// is sealed (which it already has), none where objects are sealed on request.
    pub(super) async fn delete_bucket_encryption_(
        &self,
        req: S3Request<DeleteBucketEncryptionInput>,
    ) -> S3Result<S3Response<DeleteBucketEncryptionOutput>> {
        self.existing(&req.input.bucket).await?;
        if self.store.sealing() == Sealing::Requested {
            self.set_default_encryption(&req.input.bucket, false)
                .await?;
        }
        Ok(S3Response::new(DeleteBucketEncryptionOutput::default()))
    }

    async fn set_default_encryption(&self, bucket: &str, on: bool) -> S3Result<()> {
        self.store
            .set_bucket_config(
                bucket,
                BucketConfig::Encryption,
                on.then(|| ServerSideEncryption::AES256.to_owned()),
            )
            .await
            .map_err(store_error)
    }

    pub(super) async fn get_bucket_replication_(
        &self,
        req: S3Request<GetBucketReplicationInput>,
    ) -> S3Result<S3Response<GetBucketReplicationOutput>> {
        self.existing(&req.input.bucket).await?;
        Err(not_configured("ReplicationConfigurationNotFoundError"))
    }

    pub(super) async fn get_bucket_website_(
        &self,
        req: S3Request<GetBucketWebsiteInput>,
    ) -> S3Result<S3Response<GetBucketWebsiteOutput>> {
        self.existing(&req.input.bucket).await?;
        Err(not_configured("NoSuchWebsiteConfiguration"))
    }

    pub(super) async fn get_bucket_cors_(
        &self,
        req: S3Request<GetBucketCorsInput>,
    ) -> S3Result<S3Response<GetBucketCorsOutput>> {
        let cors = self
            .store
            .bucket_config(&req.input.bucket, BucketConfig::Cors)
            .await
            .map_err(store_error)?;
        let Some(cors) = cors.and_then(|t| serde_json::from_str::<Cors>(&t).ok()) else {
            return Err(not_configured("NoSuchCORSConfiguration"));
        };
        Ok(S3Response::new(GetBucketCorsOutput {
            cors_rules: Some(cors.to_s3()),
        }))
    }

    pub(super) async fn put_bucket_cors_(
        &self,
        req: S3Request<PutBucketCorsInput>,
    ) -> S3Result<S3Response<PutBucketCorsOutput>> {
        let input = req.input;
        self.existing(&input.bucket).await?;
        let cors = Cors::from_s3(&input.cors_configuration).map_err(|r| {
            let code = S3ErrorCode::from_bytes(r.code.as_bytes())
                .unwrap_or(S3ErrorCode::Custom(r.code.into()));
            S3Error::with_message(code, r.message)
        })?;
        let text = serde_json::to_string(&cors)
            .map_err(|e| s3_error!(InternalError, "cannot encode the configuration: {e}"))?;
        self.store
            .set_bucket_config(&input.bucket, BucketConfig::Cors, Some(text))
            .await
            .map_err(store_error)?;
        Ok(S3Response::new(PutBucketCorsOutput::default()))
    }

    pub(super) async fn delete_bucket_cors_(
        &self,
        req: S3Request<DeleteBucketCorsInput>,
    ) -> S3Result<S3Response<DeleteBucketCorsOutput>> {
        self.store
            .set_bucket_config(&req.input.bucket, BucketConfig::Cors, None)
            .await
            .map_err(store_error)?;
        Ok(S3Response::new(DeleteBucketCorsOutput::default()))
    }

    pub(super) async fn get_bucket_lifecycle_configuration_(
        &self,
        req: S3Request<GetBucketLifecycleConfigurationInput>,
    ) -> S3Result<S3Response<GetBucketLifecycleConfigurationOutput>> {
        let lifecycle = self
            .store
            .bucket_config(&req.input.bucket, BucketConfig::Lifecycle)
            .await
            .map_err(store_error)?;
        let Some(lifecycle) = lifecycle.and_then(|t| serde_json::from_str::<Lifecycle>(&t).ok())
        else {
            return Err(not_configured("NoSuchLifecycleConfiguration"));
        };
        Ok(S3Response::new(GetBucketLifecycleConfigurationOutput {
            rules: Some(lifecycle.to_s3()),
            transition_default_minimum_object_size: None,
        }))
    }

    pub(super) async fn put_bucket_lifecycle_configuration_(
        &self,
        req: S3Request<PutBucketLifecycleConfigurationInput>,
    ) -> S3Result<S3Response<PutBucketLifecycleConfigurationOutput>> {
        let input = req.input;
        self.existing(&input.bucket).await?;
        let Some(config) = input.lifecycle_configuration else {
            return Err(aws_error(S3ErrorCode::MalformedXML));
        };
        let lifecycle = Lifecycle::from_s3(&config).map_err(|r| {
            let code = S3ErrorCode::from_bytes(r.code.as_bytes())
                .unwrap_or(S3ErrorCode::Custom(r.code.into()));
            S3Error::with_message(code, r.message)
        })?;
        let text = serde_json::to_string(&lifecycle)
            .map_err(|e| s3_error!(InternalError, "cannot encode the configuration: {e}"))?;
        self.store
            .set_bucket_config(&input.bucket, BucketConfig::Lifecycle, Some(text))
            .await
            .map_err(store_error)?;
        Ok(S3Response::new(
            PutBucketLifecycleConfigurationOutput::default(),
        ))
    }

    pub(super) async fn delete_bucket_lifecycle_(
        &self,
        req: S3Request<DeleteBucketLifecycleInput>,
    ) -> S3Result<S3Response<DeleteBucketLifecycleOutput>> {
        self.store
            .set_bucket_config(&req.input.bucket, BucketConfig::Lifecycle, None)
            .await
            .map_err(store_error)?;
        Ok(S3Response::new(DeleteBucketLifecycleOutput::default()))
    }

    pub(super) async fn get_public_access_block_(
        &self,
        req: S3Request<GetPublicAccessBlockInput>,
    ) -> S3Result<S3Response<GetPublicAccessBlockOutput>> {
        self.existing(&req.input.bucket).await?;
        Err(not_configured("NoSuchPublicAccessBlockConfiguration"))
    }

    /// Every bucket's objects belong to the bucket's owner, ACLs disabled.
    pub(super) async fn get_bucket_ownership_controls_(
        &self,
        req: S3Request<GetBucketOwnershipControlsInput>,
    ) -> S3Result<S3Response<GetBucketOwnershipControlsOutput>> {
        self.existing(&req.input.bucket).await?;
        Ok(S3Response::new(GetBucketOwnershipControlsOutput {
            ownership_controls: Some(OwnershipControls {
                rules: vec![OwnershipControlsRule {
                    object_ownership: ObjectOwnership::from_static(
                        ObjectOwnership::BUCKET_OWNER_ENFORCED,
                    ),
                }],
            }),
        }))
    }

    /// An empty `BucketLoggingStatus`: logging off.
    pub(super) async fn get_bucket_logging_(
        &self,
        req: S3Request<GetBucketLoggingInput>,
    ) -> S3Result<S3Response<GetBucketLoggingOutput>> {
        self.existing(&req.input.bucket).await?;
        Ok(S3Response::new(GetBucketLoggingOutput::default()))
    }

    /// An empty `NotificationConfiguration`: no notifications.
    pub(super) async fn get_bucket_notification_configuration_(
        &self,
        req: S3Request<GetBucketNotificationConfigurationInput>,
    ) -> S3Result<S3Response<GetBucketNotificationConfigurationOutput>> {
        self.existing(&req.input.bucket).await?;
        Ok(S3Response::new(
            GetBucketNotificationConfigurationOutput::default(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_configured_is_404_with_awss_text() {
        for code in [
            "ServerSideEncryptionConfigurationNotFoundError",
            "ObjectLockConfigurationNotFoundError",
            "ReplicationConfigurationNotFoundError",
            "NoSuchWebsiteConfiguration",
            "NoSuchCORSConfiguration",
            "NoSuchLifecycleConfiguration",
            "NoSuchTagSet",
            "NoSuchPublicAccessBlockConfiguration",
        ] {
            let e = not_configured(code);
            assert_eq!(e.code().as_str(), code);
            assert_eq!(e.status_code(), Some(http::StatusCode::NOT_FOUND), "{code}");
            assert!(
                e.message()
                    .is_some_and(|m| Some(m) == crate::wire::aws_message(code)),
                "{code}"
            );
        }
    }
}
