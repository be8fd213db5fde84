//! Tags as S3 takes them, in one place for the operations that set them (`service/`) and the
//! condition keys that read them (`auth/`): the `x-amz-tagging` header (`k1=v1&k2=v2`,
//! form-encoded), tag sets of request bodies, and S3's limits and texts.
//!
//! <https://docs.aws.amazon.com/AmazonS3/latest/userguide/object-tagging.html>

use std::collections::HashSet;

use s3s::dto::TagSet;
use s3s::{S3Result, s3_error};

/// Tags one object may carry.
pub(crate) const MAX_OBJECT_TAGS: usize = 10;
/// Tags one bucket may carry.
pub(crate) const MAX_BUCKET_TAGS: usize = 50;

/// Checks tags as S3 does: at most `max`, keys of 1 to 128 characters, values of up to 256,
/// each key once.
pub(crate) fn check_tags(tags: &[(String, String)], max: usize) -> S3Result<()> {
    if tags.len() > max {
        return Err(if max == MAX_OBJECT_TAGS {
            s3_error!(InvalidTag, "Object tags cannot be greater than {max}")
        } else {
            s3_error!(InvalidTag, "Bucket tag count cannot be greater than {max}")
        });
    }
    let mut keys = HashSet::new();
    for (key, value) in tags {
        if key.is_empty() || key.chars().count() > 128 {
            return Err(s3_error!(
                InvalidTag,
                "The TagKey you have provided is invalid"
            ));
        }
        if value.chars().count() > 256 {
            return Err(s3_error!(
                InvalidTag,
                "The TagValue you have provided is invalid"
            ));
        }
        if !keys.insert(key.as_str()) {
            return Err(s3_error!(
                InvalidTag,
                "Cannot provide multiple Tags with the same key"
            ));
        }
    }
    Ok(())
}

/// The tags of an `x-amz-tagging` header (`k1=v1&k2=v2`, form-encoded), checked.
pub(crate) fn header_tags(header: Option<&str>) -> S3Result<Vec<(String, String)>> {
    let Some(text) = header.filter(|t| !t.is_empty()) else {
        return Ok(Vec::new());
    };
    let tags: Vec<(String, String)> = text
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let decode = |s: &str| keyless_types::encoding::form_decode(s).into_owned();
            (decode(k), decode(v))
        })
        .collect();
    check_tags(&tags, MAX_OBJECT_TAGS)?;
    Ok(tags)
}

/// A tag set of a request body as pairs.
pub(crate) fn body_tags(set: &TagSet) -> S3Result<Vec<(String, String)>> {
    set.iter()
        .map(|tag| match (&tag.key, &tag.value) {
            (Some(k), Some(v)) => Ok((k.clone(), v.clone())),
            _ => Err(s3_error!(
                MalformedXML,
                "The XML you provided was not well-formed or did not validate against our published schema"
            )),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_are_checked_as_s3_checks_them() {
        assert_eq!(
            header_tags(Some("project=gitlab&team=a%20b")).unwrap(),
            [
                ("project".into(), "gitlab".into()),
                ("team".into(), "a b".into())
            ]
        );
        assert!(header_tags(None).unwrap().is_empty());
        let eleven: String = (0..11).map(|i| format!("k{i}=v&")).collect();
        assert!(header_tags(Some(&eleven)).is_err());
        assert!(header_tags(Some("a=1&a=2")).is_err());
        assert!(header_tags(Some(&format!("{}=v", "k".repeat(129)))).is_err());
        assert!(header_tags(Some(&format!("k={}", "v".repeat(257)))).is_err());
        assert!(header_tags(Some("=v")).is_err());
    }
}
