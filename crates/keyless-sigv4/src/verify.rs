//! Verifying a signed request: parse the `Authorization` header, rebuild the string to sign,
//! derive the signing key from the secret, compare in constant time, check the clock skew.
//!
//! <https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_sigv-create-signed-request.html>

use hmac::{Hmac, Mac};
use keyless_types::constant_time_eq;
use keyless_types::hex;
use sha2::{Digest, Sha256};

use crate::canonical::canonical_request;

type HmacSha256 = Hmac<Sha256>;

const ALGORITHM: &str = "AWS4-HMAC-SHA256";

/// Why a signature was refused. The messages follow AWS's, which clients print.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SigV4Error {
    /// The `Authorization` header or a date is not in SigV4 form.
    #[error("{0}")]
    Malformed(String),
    /// The request's time is too far from the server's (15 minutes either way).
    #[error("The difference between the request time and the current time is too large.")]
    RequestTimeTooSkewed,
    /// The signature is not the one the secret makes for this request. The canonical request
    /// and string to sign are what AWS returns to help the client find the difference.
    #[error(
        "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method. Consult the service documentation for details."
    )]
    SignatureDoesNotMatch {
        /// What the server signed.
        canonical_request: String,
        /// The string to sign.
        string_to_sign: String,
    },
}

/// The credential scope of a signature: `AKID/20150830/us-east-1/iam/aws4_request`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credential {
    /// The access key id.
    pub access_key_id: String,
    /// `YYYYMMDD`.
    pub date: String,
    /// The region.
    pub region: String,
    /// The service (`iam`, `sts`, `s3`).
    pub service: String,
}

impl Credential {
    /// Parses `AKID/DATE/REGION/SERVICE/aws4_request`.
    pub fn parse(text: &str) -> Result<Self, SigV4Error> {
        let parts: Vec<&str> = text.split('/').collect();
        match parts.as_slice() {
            [key, date, region, service, "aws4_request"]
                if !key.is_empty()
                    && date.len() == 8
                    && date.bytes().all(|b| b.is_ascii_digit()) =>
            {
                Ok(Self {
                    access_key_id: (*key).to_owned(),
                    date: (*date).to_owned(),
                    region: (*region).to_owned(),
                    service: (*service).to_owned(),
                })
            }
            _ => Err(SigV4Error::Malformed(format!(
                "Credential should be scoped to a valid region and service: `{text}`"
            ))),
        }
    }

    /// The credential scope: `DATE/REGION/SERVICE/aws4_request`.
    pub fn scope(&self) -> String {
        format!(
            "{}/{}/{}/aws4_request",
            self.date, self.region, self.service
        )
    }
}

/// A parsed `Authorization: AWS4-HMAC-SHA256 ...` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authorization {
    /// Who signed and for what scope.
    pub credential: Credential,
    /// The signed header names, lowercase, as listed.
    pub signed_headers: Vec<String>,
    /// The signature, hex.
    pub signature: String,
}

impl Authorization {
    /// Parses the header's value.
    pub fn parse(header: &str) -> Result<Self, SigV4Error> {
        let rest = header
            .strip_prefix(ALGORITHM)
            .filter(|r| r.starts_with(' '))
            .ok_or_else(|| {
                SigV4Error::Malformed(format!(
                    "Unsupported Authorization Type: only {ALGORITHM} is accepted"
                ))
            })?;
        let (mut credential, mut signed, mut signature) = (None, None, None);
        for part in rest.split(',') {
            let (k, v) = part.trim().split_once('=').ok_or_else(|| {
                SigV4Error::Malformed(format!(
                    "Authorization header requires a key=value pair: `{}`",
                    part.trim()
                ))
            })?;
            match k {
                "Credential" => credential = Some(Credential::parse(v)?),
                "SignedHeaders" => {
                    signed = Some(
                        v.split(';')
                            .map(str::to_ascii_lowercase)
                            .collect::<Vec<_>>(),
                    )
                }
                "Signature" => signature = Some(v.to_owned()),
                other => {
                    return Err(SigV4Error::Malformed(format!(
                        "Authorization header has an unknown part `{other}`"
                    )));
                }
            }
        }
        match (credential, signed, signature) {
            (Some(credential), Some(signed_headers), Some(signature)) => Ok(Self {
                credential,
                signed_headers,
                signature,
            }),
            _ => Err(SigV4Error::Malformed(
                "Authorization header requires 'Credential', 'SignedHeaders' and 'Signature' parameters".into(),
            )),
        }
    }
}

/// A request as received.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// `GET`, `POST`, ...
    pub method: &'a str,
    /// The path as received (percent-encoded).
    pub path: &'a str,
    /// The query string as received, without `?`.
    pub query: &'a str,
    /// Every header, as received.
    pub headers: &'a [(&'a str, &'a str)],
    /// Hex SHA-256 of the body, or `UNSIGNED-PAYLOAD`.
    pub payload_hash: &'a str,
}

/// A signature that checked out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// The signer's scope.
    pub credential: Credential,
    /// When it was signed, seconds since the epoch.
    pub signed_at: i64,
}

/// The string to sign of a request signed at `amz_date` (`YYYYMMDDTHHMMSSZ`) for `scope`
/// (`DATE/REGION/SERVICE/aws4_request`), whose canonical request is `canonical_request`.
pub fn string_to_sign(amz_date: &str, scope: &str, canonical_request: &str) -> String {
    format!(
        "{ALGORITHM}\n{amz_date}\n{scope}\n{}",
        hex::encode(&Sha256::digest(canonical_request.as_bytes()))
    )
}

/// The key that signs requests for one day, region and service.
pub fn signing_key(secret: &str, date: &str, region: &str, service: &str) -> [u8; 32] {
    let mut key = hmac(format!("AWS4{secret}").as_bytes(), date.as_bytes());
    for part in [region, service, "aws4_request"] {
        key = hmac(&key, part.as_bytes());
    }
    key
}

/// The hex signature of `string_to_sign` with `key`.
pub fn signature(key: &[u8; 32], string_to_sign: &str) -> String {
    hex::encode(&hmac(key, string_to_sign.as_bytes()))
}

fn hmac(key: &[u8], data: &[u8]) -> [u8; 32] {
    // HMAC takes keys of any length.
    let mut mac = <HmacSha256 as Mac>::new_from_slice(key)
        .unwrap_or_else(|_| unreachable!("HMAC accepts any key length"));
    mac.update(data);
    mac.finalize().into_bytes().into()
}

/// Checks `request`'s signature, made with `secret`, at time `now` (seconds since the epoch),
/// allowing `max_skew` seconds between the request's `X-Amz-Date` and `now`.
pub fn verify(
    request: &Request<'_>,
    authorization: &Authorization,
    secret: &str,
    now: i64,
    max_skew: i64,
) -> Result<Verified, SigV4Error> {
    let header = |name: &str| {
        request
            .headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.trim())
    };
    let signed = &authorization.signed_headers;
    if !signed.iter().any(|h| h == "host") {
        return Err(SigV4Error::Malformed(
            "'Host' must be a signed header".into(),
        ));
    }
    let amz_date = header("x-amz-date").ok_or_else(|| {
        SigV4Error::Malformed(
            "Authorization header requires existence of a valid 'X-Amz-Date' header".into(),
        )
    })?;
    let signed_at = keyless_types::time::parse_amz_date(amz_date).ok_or_else(|| {
        SigV4Error::Malformed(format!(
            "X-Amz-Date `{amz_date}` is not in the form YYYYMMDDThhmmssZ"
        ))
    })?;
    let credential = &authorization.credential;
    if !amz_date.starts_with(&credential.date) {
        return Err(SigV4Error::Malformed(format!(
            "Credential should be scoped to a valid date: `{}` is not the date of `{amz_date}`",
            credential.date
        )));
    }
    if (now - signed_at).abs() > max_skew {
        return Err(SigV4Error::RequestTimeTooSkewed);
    }
    let canonical = canonical_request(
        request.method,
        request.path,
        request.query,
        request.headers,
        signed,
        request.payload_hash,
        credential.service == "s3",
    );
    let string_to_sign = string_to_sign(amz_date, &credential.scope(), &canonical);
    let key = signing_key(
        secret,
        &credential.date,
        &credential.region,
        &credential.service,
    );
    let expected = signature(&key, &string_to_sign);
    if constant_time_eq(
        expected.as_bytes(),
        authorization.signature.to_ascii_lowercase().as_bytes(),
    ) {
        Ok(Verified {
            credential: credential.clone(),
            signed_at,
        })
    } else {
        Err(SigV4Error::SignatureDoesNotMatch {
            canonical_request: canonical,
            string_to_sign,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The AWS General Reference's worked example (IAM ListUsers, 2015-08-30) and its signature.
    #[test]
    fn aws_documentation_example() {
        let secret = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
        let key = signing_key(secret, "20150830", "us-east-1", "iam");
        assert_eq!(
            hex::encode(&key),
            "c4afb1cc5771d871763a393e44b703571b55cc28424d1a5e86da6ed3c154a4b9"
        );
        let headers = [
            (
                "Content-Type",
                "application/x-www-form-urlencoded; charset=utf-8",
            ),
            ("Host", "iam.amazonaws.com"),
            ("X-Amz-Date", "20150830T123600Z"),
        ];
        let request = Request {
            method: "GET",
            path: "/",
            query: "Action=ListUsers&Version=2010-05-08",
            headers: &headers,
            payload_hash: "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        };
        let auth = Authorization::parse(
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/iam/aws4_request, SignedHeaders=content-type;host;x-amz-date, Signature=5d672d79c15b13162d9279b0855cfba6789a8edb4c82c400e06b5924a6f2b5d7",
        )
        .unwrap();
        let now = keyless_types::time::parse_amz_date("20150830T123600Z").unwrap();
        let verified = verify(&request, &auth, secret, now, 900).unwrap();
        assert_eq!(verified.credential.access_key_id, "AKIDEXAMPLE");
        assert!(matches!(
            verify(&request, &auth, "wrong", now, 900),
            Err(SigV4Error::SignatureDoesNotMatch { .. })
        ));
        assert_eq!(
            verify(&request, &auth, secret, now + 901, 900),
            Err(SigV4Error::RequestTimeTooSkewed)
        );
        assert_eq!(
            verify(&request, &auth, secret, now - 901, 900),
            Err(SigV4Error::RequestTimeTooSkewed)
        );
    }

    #[test]
    fn malformed_headers() {
        for bad in [
            "",
            "AWS4-HMAC-SHA1 Credential=a/20150830/r/s/aws4_request, SignedHeaders=host, Signature=00",
            "AWS4-HMAC-SHA256 Credential=a/2015/r/s/aws4_request, SignedHeaders=host, Signature=00",
            "AWS4-HMAC-SHA256 Credential=a/20150830/r/s/aws4_request, SignedHeaders=host",
            "AWS4-HMAC-SHA256 Credential=a/20150830/r/s/aws4_request, SignedHeaders=host, Signature=00, Extra=1",
            "AWS4-HMAC-SHA256 garbage",
        ] {
            assert!(
                matches!(Authorization::parse(bad), Err(SigV4Error::Malformed(_))),
                "{bad}"
            );
        }
        assert_eq!(
            keyless_types::time::parse_amz_date("20150230T000000Z"),
            None
        );
        assert_eq!(
            keyless_types::time::parse_amz_date("2015-08-30T12:36:00Z"),
            None
        );
    }
}
