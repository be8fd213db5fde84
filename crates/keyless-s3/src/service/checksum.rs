//! `x-amz-checksum-*`: the checksum a client sends with an upload, in a header or (streaming
//! uploads, which the AWS SDKs send by default) in a trailer, verified before anything is
//! stored.
//!
//! <https://docs.aws.amazon.com/AmazonS3/latest/userguide/checking-object-integrity.html>

use http::HeaderMap;
use s3s::checksum::ChecksumHasher;
use s3s::crypto::Checksum as _;
use s3s::dto::Checksum;
use s3s::{S3Result, s3_error};

use crate::store::{BodyVerifier, StoreError, Verifier};

/// The algorithms S3 knows, by header name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Algorithm {
    Crc32,
    Crc32c,
    Sha1,
    Sha256,
    Crc64Nvme,
}

const ALGORITHMS: [(Algorithm, &str, &str); 5] = [
    (Algorithm::Crc32, "x-amz-checksum-crc32", "CRC32"),
    (Algorithm::Crc32c, "x-amz-checksum-crc32c", "CRC32C"),
    (Algorithm::Sha1, "x-amz-checksum-sha1", "SHA1"),
    (Algorithm::Sha256, "x-amz-checksum-sha256", "SHA256"),
    (
        Algorithm::Crc64Nvme,
        "x-amz-checksum-crc64nvme",
        "CRC64NVME",
    ),
];

enum Expected {
    /// Sent in a header.
    Header(String),
    /// Promised by `x-amz-trailer`, readable once the body is consumed.
    Trailer(Option<s3s::TrailingHeaders>),
}

struct ChecksumCheck {
    algorithm: Algorithm,
    header: &'static str,
    name: &'static str,
    hasher: ChecksumHasher,
    expected: Expected,
}

impl BodyVerifier for ChecksumCheck {
    fn update(&mut self, chunk: &[u8]) {
        self.hasher.update(chunk);
    }

    fn verify(self: Box<Self>) -> Result<(), StoreError> {
        let computed: Checksum = self.hasher.finalize();
        let computed = match self.algorithm {
            Algorithm::Crc32 => computed.checksum_crc32,
            Algorithm::Crc32c => computed.checksum_crc32c,
            Algorithm::Sha1 => computed.checksum_sha1,
            Algorithm::Sha256 => computed.checksum_sha256,
            Algorithm::Crc64Nvme => computed.checksum_crc64nvme,
        };
        let expected = match self.expected {
            Expected::Header(value) => Some(value),
            Expected::Trailer(trailers) => trailers
                .and_then(|t| {
                    t.read(|h| {
                        h.get(self.header)
                            .and_then(|v| v.to_str().ok())
                            .map(str::to_owned)
                    })
                })
                .flatten(),
        };
        match (computed, expected) {
            (Some(c), Some(e)) if c == e.trim() => Ok(()),
            _ => Err(StoreError::ChecksumMismatch(self.name)),
        }
    }
}

fn hasher(algorithm: Algorithm) -> ChecksumHasher {
    let mut h = ChecksumHasher::default();
    match algorithm {
        Algorithm::Crc32 => h.crc32 = Some(s3s::crypto::Crc32::new()),
        Algorithm::Crc32c => h.crc32c = Some(s3s::crypto::Crc32c::new()),
        Algorithm::Sha1 => h.sha1 = Some(s3s::crypto::Sha1::new()),
        Algorithm::Sha256 => h.sha256 = Some(s3s::crypto::Sha256::new()),
        Algorithm::Crc64Nvme => h.crc64nvme = Some(s3s::crypto::Crc64Nvme::new()),
    }
    h
}

/// The check a request's headers ask for, if any.
pub(super) fn verifier(
    headers: &HeaderMap,
    trailers: Option<s3s::TrailingHeaders>,
) -> S3Result<Option<Verifier>> {
    let trailer_names: Vec<String> = headers
        .get_all("x-amz-trailer")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|n| n.trim().to_ascii_lowercase())
        .collect();
    for (algorithm, header, name) in ALGORITHMS {
        let expected = if let Some(value) = headers.get(header) {
            let value = value
                .to_str()
                .map_err(|_| s3_error!(InvalidRequest, "Value for {header} header is invalid."))?;
            Expected::Header(value.to_owned())
        } else if trailer_names.iter().any(|n| n == header) {
            Expected::Trailer(trailers.clone())
        } else {
            continue;
        };
        return Ok(Some(Verifier(Box::new(ChecksumCheck {
            algorithm,
            header,
            name,
            hasher: hasher(algorithm),
            expected,
        }))));
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(header: &str, value: &str, body: &[u8]) -> Result<(), StoreError> {
        let mut headers = HeaderMap::new();
        headers.insert(
            http::HeaderName::from_bytes(header.as_bytes()).unwrap(),
            value.parse().unwrap(),
        );
        let Verifier(mut v) = verifier(&headers, None).unwrap().unwrap();
        v.update(&body[..3]);
        v.update(&body[3..]);
        v.verify()
    }

    #[test]
    fn header_checksums() {
        // Values computed with python's zlib.crc32, crc32c and hashlib.sha256 of b"hello world".
        assert!(check("x-amz-checksum-crc32", "DUoRhQ==", b"hello world").is_ok());
        assert!(
            check(
                "x-amz-checksum-sha256",
                "uU0nuZNNPgilLlLX2n2r+sSE7+N6U4DukIj3rOLvzek=",
                b"hello world"
            )
            .is_ok()
        );
        assert!(matches!(
            check("x-amz-checksum-crc32", "DUoRhQ==", b"hello World"),
            Err(StoreError::ChecksumMismatch("CRC32"))
        ));
        assert!(verifier(&HeaderMap::new(), None).unwrap().is_none());
    }

    #[test]
    fn a_promised_trailer_that_never_comes_fails() {
        let mut headers = HeaderMap::new();
        headers.insert("x-amz-trailer", "x-amz-checksum-crc32c".parse().unwrap());
        let Verifier(v) = verifier(&headers, None).unwrap().unwrap();
        assert!(matches!(
            v.verify(),
            Err(StoreError::ChecksumMismatch("CRC32C"))
        ));
    }
}
