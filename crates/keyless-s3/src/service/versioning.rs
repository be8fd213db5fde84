//! Versioning: Get/PutBucketVersioning and ListObjectVersions. (Versions themselves are read,
//! tagged and deleted by the object operations with `versionId`.)
//!
//! <https://docs.aws.amazon.com/AmazonS3/latest/API/API_PutBucketVersioning.html>
//! <https://docs.aws.amazon.com/AmazonS3/latest/API/API_ListObjectVersions.html>

use s3s::dto::*;
use s3s::{S3Request, S3Response, S3Result, s3_error};

use super::KeylessS3;
use super::bucket::timestamp;
use super::list::{Encoder, delimiter, max_keys};
use crate::store::{ObjectStore, VersionQuery, Versioning};
use crate::wire::store_error;

impl<S: ObjectStore> KeylessS3<S> {
    /// Never enabled: no `Status` at all, as S3 answers.
    pub(super) async fn get_bucket_versioning_(
        &self,
        req: S3Request<GetBucketVersioningInput>,
    ) -> S3Result<S3Response<GetBucketVersioningOutput>> {
        let state = self
            .store
            .versioning(&req.input.bucket)
            .await
            .map_err(store_error)?;
        let status = match state {
            Versioning::Unversioned => None,
            Versioning::Enabled => Some(BucketVersioningStatus::ENABLED),
            Versioning::Suspended => Some(BucketVersioningStatus::SUSPENDED),
        };
        Ok(S3Response::new(GetBucketVersioningOutput {
            status: status.map(BucketVersioningStatus::from_static),
            mfa_delete: None,
        }))
    }

    /// `Enabled` or `Suspended`; a bucket never goes back to unversioned. MFA Delete needs an
    /// MFA device, which Keyless has not: refused, not ignored.
    pub(super) async fn put_bucket_versioning_(
        &self,
        req: S3Request<PutBucketVersioningInput>,
    ) -> S3Result<S3Response<PutBucketVersioningOutput>> {
        let input = req.input;
        let config = input.versioning_configuration;
        if config
            .mfa_delete
            .as_ref()
            .is_some_and(|m| m.as_str() == MFADelete::ENABLED)
            || input.mfa.is_some()
        {
            return Err(s3_error!(
                NotImplemented,
                "MFA Delete is not supported: Keyless has no MFA devices."
            ));
        }
        let state = match config.status.as_ref().map(BucketVersioningStatus::as_str) {
            Some(BucketVersioningStatus::ENABLED) => Versioning::Enabled,
            Some(BucketVersioningStatus::SUSPENDED) => Versioning::Suspended,
            _ => {
                return Err(s3_error!(
                    MalformedXML,
                    "The XML you provided was not well-formed or did not validate against our published schema"
                ));
            }
        };
        self.store
            .set_versioning(&input.bucket, state)
            .await
            .map_err(store_error)?;
        Ok(S3Response::new(PutBucketVersioningOutput::default()))
    }

    pub(super) async fn list_object_versions_(
        &self,
        req: S3Request<ListObjectVersionsInput>,
    ) -> S3Result<S3Response<ListObjectVersionsOutput>> {
        let mut input = req.input;
        input.delimiter = delimiter(input.delimiter);
        let enc = Encoder::new(input.encoding_type.as_ref())?;
        if input.version_id_marker.is_some() && input.key_marker.is_none() {
            return Err(s3_error!(
                InvalidArgument,
                "A version-id marker cannot be specified without a key marker."
            ));
        }
        let prefix = input.prefix.clone().unwrap_or_default();
        let max = max_keys(input.max_keys)?;
        let page = self
            .store
            .list_versions(
                &input.bucket,
                VersionQuery {
                    prefix: &prefix,
                    delimiter: input.delimiter.as_deref(),
                    key_marker: input.key_marker.as_deref().filter(|m| !m.is_empty()),
                    version_id_marker: input.version_id_marker.as_deref().filter(|m| !m.is_empty()),
                    max_keys: max,
                },
            )
            .await
            .map_err(store_error)?;
        let owner = self.owner();
        let (mut versions, mut markers) = (Vec::new(), Vec::new());
        for entry in &page.versions {
            let info = &entry.info;
            let version_id = Some(info.version_id.clone().unwrap_or_else(|| "null".into()));
            let key = Some(enc.apply(info.key.clone()));
            let last_modified = Some(timestamp(info.last_modified_ms));
            if entry.delete_marker {
                markers.push(DeleteMarkerEntry {
                    is_latest: Some(entry.is_latest),
                    key,
                    last_modified,
                    owner: Some(owner.clone()),
                    version_id,
                });
            } else {
                versions.push(ObjectVersion {
                    e_tag: Some(ETag::Strong(info.etag.clone())),
                    is_latest: Some(entry.is_latest),
                    key,
                    last_modified,
                    owner: Some(owner.clone()),
                    size: Some(i64::try_from(info.size).unwrap_or(i64::MAX)),
                    storage_class: Some(ObjectVersionStorageClass::from_static(
                        ObjectVersionStorageClass::STANDARD,
                    )),
                    version_id,
                    ..Default::default()
                });
            }
        }
        let common_prefixes = page
            .common_prefixes
            .iter()
            .map(|p| CommonPrefix {
                prefix: Some(enc.apply(p.clone())),
            })
            .collect::<Vec<_>>();
        Ok(S3Response::new(ListObjectVersionsOutput {
            name: Some(input.bucket),
            prefix: Some(enc.apply(prefix)),
            delimiter: input.delimiter.map(|d| enc.apply(d)),
            encoding_type: input.encoding_type,
            key_marker: Some(input.key_marker.map(|m| enc.apply(m)).unwrap_or_default()),
            version_id_marker: Some(input.version_id_marker.unwrap_or_default()),
            max_keys: Some(i32::try_from(max).unwrap_or(i32::MAX)),
            is_truncated: Some(page.truncated),
            next_key_marker: page.next_key_marker.map(|m| enc.apply(m)),
            next_version_id_marker: page.next_version_id_marker,
            versions: (!versions.is_empty()).then_some(versions),
            delete_markers: (!markers.is_empty()).then_some(markers),
            common_prefixes: (!common_prefixes.is_empty()).then_some(common_prefixes),
            ..Default::default()
        }))
    }
}
