//! The parts of a stored object: GET and HEAD with `partNumber` (the part's bytes, as a
//! ranged read, with `x-amz-mp-parts-count`), and GetObjectAttributes.
//!
//! <https://docs.aws.amazon.com/AmazonS3/latest/API/API_GetObject.html#API_GetObject_RequestSyntax>
//! <https://docs.aws.amazon.com/AmazonS3/latest/API/API_GetObjectAttributes.html>

use s3s::dto::*;
use s3s::{S3ErrorCode, S3Request, S3Response, S3Result, s3_error};

use super::KeylessS3;
use super::bucket::timestamp;
use super::encryption::{Carries, refuse_unimplemented};
use crate::extensions::MayList;
use crate::store::{ByteRange, ByteStream, ObjectInfo, ObjectStore};
use crate::wire::{aws_error, store_error};

/// Part numbers S3 accepts.
const PART_NUMBERS: std::ops::RangeInclusive<i32> = 1..=10_000;

/// A part number of a request, or S3's `InvalidArgument`.
pub(super) fn part_number(n: i32) -> S3Result<u32> {
    if PART_NUMBERS.contains(&n) {
        Ok(n.unsigned_abs())
    } else {
        Err(s3_error!(
            InvalidArgument,
            "Part number must be an integer between 1 and 10000, inclusive"
        ))
    }
}

/// S3's answer to a part the object does not have: 416 `InvalidPartNumber`.
fn invalid_part_number() -> s3s::S3Error {
    let mut e = aws_error(S3ErrorCode::Custom("InvalidPartNumber".into()));
    e.set_status_code(http::StatusCode::RANGE_NOT_SATISFIABLE);
    e
}

/// What a GET or HEAD of one part answers besides the object's own headers.
pub(super) struct PartRead {
    /// The bytes of the object it selects, as a range (`None`: all of an empty object).
    pub(super) range: Option<ByteRange>,
    /// `x-amz-mp-parts-count`: only for an object uploaded in parts.
    pub(super) parts_count: Option<i32>,
}

/// Part `number` of `info`, or 416 `InvalidPartNumber`. An object stored whole is one part.
pub(super) fn part_of(info: &ObjectInfo, number: u32) -> S3Result<PartRead> {
    let ((offset, len), count) = info.part_range(number).ok_or_else(invalid_part_number)?;
    Ok(PartRead {
        range: len.checked_sub(1).map(|n| ByteRange::From {
            first: offset,
            last: Some(offset + n),
        }),
        parts_count: (!info.parts.is_empty()).then(|| i32::try_from(count).unwrap_or(i32::MAX)),
    })
}

/// `partNumber` with a `Range` is refused, as S3 refuses it.
pub(super) fn refuse_range_with_part(range: bool, part: Option<i32>) -> S3Result<Option<u32>> {
    match part {
        Some(_) if range => Err(s3_error!(
            InvalidRequest,
            "Cannot specify both Range header and partNumber query parameter"
        )),
        Some(n) => part_number(n).map(Some),
        None => Ok(None),
    }
}

impl<S: ObjectStore> KeylessS3<S> {
    /// Reads part `number` of an object: its record, then the part's range of the same
    /// object (read again when an overwrite came between the two).
    pub(super) async fn read_part(
        &self,
        bucket: &str,
        key: &str,
        version: Option<&str>,
        number: u32,
        may_list: Option<MayList>,
    ) -> S3Result<(ObjectInfo, ByteStream, PartRead)> {
        for _ in 0..3 {
            let info = self
                .store
                .parted_object(bucket, key, version)
                .await
                .map_err(|e| super::object::missing_key(e, may_list))?;
            let part = part_of(&info, number)?;
            let (read, stream) = self
                .store
                .get_object(bucket, key, version, part.range)
                .await
                .map_err(|e| super::object::missing_key(e, may_list))?;
            if read.etag == info.etag {
                return Ok((read, stream, part));
            }
        }
        Err(store_error(crate::store::StoreError::Io(
            std::io::Error::other(format!(
                "object `{key}` kept changing while its part was read"
            )),
        )))
    }

    pub(super) async fn get_object_attributes_(
        &self,
        req: S3Request<GetObjectAttributesInput>,
    ) -> S3Result<S3Response<GetObjectAttributesOutput>> {
        refuse_unimplemented(&req.headers, Carries::CustomerKey)?;
        let may_list = req.extensions.get::<MayList>().copied();
        let input = req.input;
        // SDKs send one `x-amz-object-attributes` header of comma-separated names.
        let wants = |name: &str| {
            input
                .object_attributes
                .iter()
                .flat_map(|a| a.as_str().split(','))
                .any(|a| a.trim() == name)
        };
        let (bucket, key, version) = (&input.bucket, &input.key, input.version_id.as_deref());
        let info = match wants(ObjectAttributes::OBJECT_PARTS) {
            true => self.store.parted_object(bucket, key, version).await,
            false => self.store.head_object(bucket, key, version).await,
        }
        .map_err(|e| super::object::missing_key(e, may_list))?;
        let parts = (wants(ObjectAttributes::OBJECT_PARTS) && !info.parts.is_empty()).then(|| {
            let max = input.max_parts.unwrap_or(1000).clamp(0, 1000);
            let marker = input.part_number_marker.unwrap_or(0);
            let after: Vec<_> = info
                .parts
                .iter()
                .filter(|p| i64::from(p.number) > i64::from(marker))
                .collect();
            let page = &after[..after.len().min(usize::try_from(max).unwrap_or(0))];
            GetObjectAttributesParts {
                total_parts_count: Some(i32::try_from(info.parts.len()).unwrap_or(i32::MAX)),
                part_number_marker: Some(marker),
                max_parts: Some(max),
                is_truncated: Some(page.len() < after.len()),
                next_part_number_marker: page
                    .last()
                    .map(|p| i32::try_from(p.number).unwrap_or(i32::MAX)),
                parts: Some(
                    page.iter()
                        .map(|p| ObjectPart {
                            part_number: Some(i32::try_from(p.number).unwrap_or(i32::MAX)),
                            size: Some(i64::try_from(p.size).unwrap_or(i64::MAX)),
                            ..Default::default()
                        })
                        .collect(),
                ),
            }
        });
        Ok(S3Response::new(GetObjectAttributesOutput {
            e_tag: wants(ObjectAttributes::ETAG).then(|| ETag::Strong(info.etag.clone())),
            object_size: wants(ObjectAttributes::OBJECT_SIZE)
                .then(|| i64::try_from(info.size).unwrap_or(i64::MAX)),
            storage_class: wants(ObjectAttributes::STORAGE_CLASS)
                .then(|| StorageClass::from_static(StorageClass::STANDARD)),
            object_parts: parts,
            last_modified: Some(timestamp(info.last_modified_ms)),
            version_id: info.version_header(),
            ..Default::default()
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::ObjectPart;

    fn object(size: u64, parts: &[u64]) -> ObjectInfo {
        ObjectInfo {
            key: "k".into(),
            size,
            etag: "e".into(),
            last_modified_ms: 0,
            content_type: None,
            metadata: Default::default(),
            sealed: false,
            tags: Vec::new(),
            headers: Default::default(),
            parts: parts
                .iter()
                .zip(1..)
                .map(|(size, number)| ObjectPart {
                    number,
                    size: *size,
                })
                .collect(),
            version_id: None,
            versioned: false,
            lock: Default::default(),
        }
    }

    #[test]
    fn parts_are_ranges_of_the_object() {
        let mp = object(13, &[5, 5, 3]);
        let p2 = part_of(&mp, 2).unwrap();
        assert_eq!(
            p2.range,
            Some(ByteRange::From {
                first: 5,
                last: Some(9)
            })
        );
        assert_eq!(p2.parts_count, Some(3));
        let e = part_of(&mp, 4).err().unwrap();
        assert_eq!(e.code().as_str(), "InvalidPartNumber");
        assert_eq!(
            e.status_code(),
            Some(http::StatusCode::RANGE_NOT_SATISFIABLE)
        );

        // An object stored whole is its one part, with no parts count.
        let whole = part_of(&object(7, &[]), 1).unwrap();
        assert_eq!(whole.parts_count, None);
        assert!(whole.range.is_some());
        assert!(part_of(&object(7, &[]), 2).is_err());
        assert_eq!(part_of(&object(0, &[]), 1).unwrap().range, None);
    }

    #[test]
    fn part_numbers_and_ranges_are_checked() {
        assert_eq!(refuse_range_with_part(false, Some(3)).unwrap(), Some(3));
        assert_eq!(refuse_range_with_part(true, None).unwrap(), None);
        let e = refuse_range_with_part(true, Some(1)).unwrap_err();
        assert_eq!(e.code().as_str(), "InvalidRequest");
        let e = refuse_range_with_part(false, Some(0)).unwrap_err();
        assert_eq!(e.code().as_str(), "InvalidArgument");
        assert!(refuse_range_with_part(false, Some(10_001)).is_err());
    }
}
