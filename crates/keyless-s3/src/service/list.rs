//! Listings: ListObjects (v1, markers) and ListObjectsV2 (continuation tokens), with prefixes,
//! delimiters, pagination and `encoding-type=url` (which botocore always asks for).
//!
//! <https://docs.aws.amazon.com/AmazonS3/latest/API/API_ListObjectsV2.html>
//! <https://docs.aws.amazon.com/AmazonS3/latest/API/API_ListObjects.html>

use base64::Engine as _;
use keyless_types::encoding::uri_encode;
use s3s::dto::*;
use s3s::{S3Request, S3Response, S3Result, s3_error};

use super::KeylessS3;
use super::bucket::timestamp;
use crate::store::{ListPage, ListQuery, ObjectStore};
use crate::wire::store_error;

/// The default and largest page.
const MAX_KEYS: i32 = 1000;

pub(super) struct Encoder(bool);

impl Encoder {
    pub(super) fn new(encoding: Option<&EncodingType>) -> S3Result<Self> {
        match encoding {
            None => Ok(Self(false)),
            Some(e) if e.as_str() == EncodingType::URL => Ok(Self(true)),
            Some(e) => Err(s3_error!(
                InvalidArgument,
                "Invalid Encoding Method specified in Request: {}",
                e.as_str()
            )),
        }
    }

    pub(super) fn apply(&self, text: String) -> String {
        if self.0 {
            // Unreserved characters and `/` left as they are; a space becomes `%20` and `+`
            // becomes `%2B`, so that clients decoding with form rules get the key back.
            uri_encode(&text, true)
        } else {
            text
        }
    }
}

pub(super) fn max_keys(requested: Option<i32>) -> S3Result<usize> {
    match requested {
        Some(n) if n < 0 => Err(s3_error!(InvalidArgument, "max-keys cannot be negative")),
        Some(n) => Ok(usize::try_from(n.min(MAX_KEYS)).unwrap_or(0)),
        None => Ok(MAX_KEYS as usize),
    }
}

/// An empty `delimiter=` is no delimiter, as on S3.
pub(super) fn delimiter(d: Option<String>) -> Option<String> {
    d.filter(|d| !d.is_empty())
}

fn contents(page: &ListPage, enc: &Encoder, owner: Option<&Owner>) -> Vec<Object> {
    page.objects
        .iter()
        .map(|o| Object {
            owner: owner.cloned(),
            key: Some(enc.apply(o.key.clone())),
            size: Some(i64::try_from(o.size).unwrap_or(i64::MAX)),
            e_tag: Some(ETag::Strong(o.etag.clone())),
            last_modified: Some(timestamp(o.last_modified_ms)),
            storage_class: Some(ObjectStorageClass::from_static(
                ObjectStorageClass::STANDARD,
            )),
            ..Default::default()
        })
        .collect()
}

fn prefixes(page: &ListPage, enc: &Encoder) -> Vec<CommonPrefix> {
    page.common_prefixes
        .iter()
        .map(|p| CommonPrefix {
            prefix: Some(enc.apply(p.clone())),
        })
        .collect()
}

/// Continuation tokens are opaque to clients: the key to resume after, base64url-encoded.
pub(super) fn token_for(after: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(after)
}

pub(super) fn after_token(token: &str) -> S3Result<String> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or_else(|| {
            s3_error!(
                InvalidArgument,
                "The continuation token provided is incorrect"
            )
        })
}

impl<S: ObjectStore> KeylessS3<S> {
    pub(super) async fn list_objects_v2_(
        &self,
        req: S3Request<ListObjectsV2Input>,
    ) -> S3Result<S3Response<ListObjectsV2Output>> {
        let mut input = req.input;
        input.delimiter = delimiter(input.delimiter);
        let enc = Encoder::new(input.encoding_type.as_ref())?;
        // `fetch-owner=true`: each object's owner, the account that owns every object here.
        let owner = input.fetch_owner.unwrap_or(false).then(|| self.owner());
        let after = match (&input.continuation_token, &input.start_after) {
            (Some(token), _) => Some(after_token(token)?),
            (None, Some(start)) => Some(start.clone()),
            (None, None) => None,
        };
        let prefix = input.prefix.clone().unwrap_or_default();
        let max = max_keys(input.max_keys)?;
        let page = self
            .store
            .list_objects(
                &input.bucket,
                ListQuery {
                    prefix: &prefix,
                    delimiter: input.delimiter.as_deref(),
                    after: after.as_deref(),
                    max_keys: max,
                },
            )
            .await
            .map_err(store_error)?;
        let key_count = page.objects.len() + page.common_prefixes.len();
        Ok(S3Response::new(ListObjectsV2Output {
            name: Some(input.bucket),
            prefix: Some(enc.apply(prefix)),
            delimiter: input.delimiter.map(|d| enc.apply(d)),
            start_after: input.start_after.map(|s| enc.apply(s)),
            max_keys: Some(i32::try_from(max).unwrap_or(MAX_KEYS)),
            key_count: Some(i32::try_from(key_count).unwrap_or(i32::MAX)),
            is_truncated: Some(page.truncated),
            continuation_token: input.continuation_token,
            next_continuation_token: page.next_after.as_deref().map(token_for),
            contents: Some(contents(&page, &enc, owner.as_ref())),
            common_prefixes: Some(prefixes(&page, &enc)),
            encoding_type: input.encoding_type,
            ..Default::default()
        }))
    }

    pub(super) async fn list_objects_(
        &self,
        req: S3Request<ListObjectsInput>,
    ) -> S3Result<S3Response<ListObjectsOutput>> {
        let mut input = req.input;
        input.delimiter = delimiter(input.delimiter);
        let enc = Encoder::new(input.encoding_type.as_ref())?;
        let prefix = input.prefix.clone().unwrap_or_default();
        let max = max_keys(input.max_keys)?;
        let page = self
            .store
            .list_objects(
                &input.bucket,
                ListQuery {
                    prefix: &prefix,
                    delimiter: input.delimiter.as_deref(),
                    after: input.marker.as_deref().filter(|m| !m.is_empty()),
                    max_keys: max,
                },
            )
            .await
            .map_err(store_error)?;
        Ok(S3Response::new(ListObjectsOutput {
            name: Some(input.bucket),
            prefix: Some(enc.apply(prefix)),
            delimiter: input.delimiter.map(|d| enc.apply(d)),
            marker: Some(enc.apply(input.marker.unwrap_or_default())),
            max_keys: Some(i32::try_from(max).unwrap_or(MAX_KEYS)),
            is_truncated: Some(page.truncated),
            next_marker: page.next_after.clone().map(|m| enc.apply(m)),
            // ListObjects (v1) always names the owner.
            contents: Some(contents(&page, &enc, Some(&self.owner()))),
            common_prefixes: Some(prefixes(&page, &enc)),
            encoding_type: input.encoding_type,
            ..Default::default()
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_encoding_round_trips_through_form_decoding() {
        let enc = Encoder(true);
        assert_eq!(enc.apply("a b+c/ü?.txt".into()), "a%20b%2Bc/%C3%BC%3F.txt");
        assert_eq!(Encoder(false).apply("a b".into()), "a b");
    }

    #[test]
    fn tokens_are_opaque_and_checked() {
        let t = token_for("dir/ünï");
        assert_eq!(after_token(&t).unwrap(), "dir/ünï");
        assert!(after_token("!!!").is_err());
    }
}
