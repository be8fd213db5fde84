//! Signing, for Keyless's own clients of the query APIs (`keyless iam`, the metadata agent's
//! AssumeRole calls): the headers SigV4 adds to a request, computed from the request and the
//! time the caller gives.
//!
//! <https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_sigv-create-signed-request.html>

use sha2::{Digest as _, Sha256};

use keyless_types::hex;

use crate::canonical::canonical_request;
use crate::verify::{signature, signing_key, string_to_sign};

/// Who signs, where and when.
#[derive(Clone, Copy)]
pub struct Signer<'a> {
    /// The access key id.
    pub access_key_id: &'a str,
    /// Its secret.
    pub secret_access_key: &'a str,
    /// The session token of temporary credentials, sent as `x-amz-security-token`.
    pub session_token: Option<&'a str>,
    /// The region of the credential scope, such as `us-east-1`.
    pub region: &'a str,
    /// The service of the credential scope, such as `sts`.
    pub service: &'a str,
    /// The time of signing, `YYYYMMDDTHHMMSSZ`.
    pub amz_date: &'a str,
}

impl std::fmt::Debug for Signer<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer")
            .field("access_key_id", &self.access_key_id)
            .field("region", &self.region)
            .field("service", &self.service)
            .field("amz_date", &self.amz_date)
            .finish_non_exhaustive()
    }
}

/// The headers to add to `method raw_path?raw_query` carrying `headers` (which must include
/// `host`) and `body`: `x-amz-date`, `x-amz-security-token` when the signer has one, and
/// `authorization`. Every header given is signed.
pub fn sign(
    signer: &Signer<'_>,
    method: &str,
    raw_path: &str,
    raw_query: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Vec<(&'static str, String)> {
    let payload_hash = hex::encode(&Sha256::digest(body));
    sign_payload(signer, method, raw_path, raw_query, headers, &payload_hash)
}

/// As [`sign`], for a body known by its hex SHA-256 `payload_hash` alone, or not at all
/// (`UNSIGNED-PAYLOAD`): what an S3 client streaming a body sends. S3 signs the path as given
/// (encoded once), where the other services normalize it. The caller sends the same value as
/// `x-amz-content-sha256` where the service wants it (S3).
pub fn sign_payload(
    signer: &Signer<'_>,
    method: &str,
    raw_path: &str,
    raw_query: &str,
    headers: &[(&str, &str)],
    payload_hash: &str,
) -> Vec<(&'static str, String)> {
    let mut added = vec![("x-amz-date", signer.amz_date.to_owned())];
    if let Some(token) = signer.session_token {
        added.push(("x-amz-security-token", token.to_owned()));
    }
    let all: Vec<(&str, &str)> = headers
        .iter()
        .copied()
        .chain(added.iter().map(|(k, v)| (*k, v.as_str())))
        .collect();
    let mut signed: Vec<String> = all.iter().map(|(k, _)| k.to_ascii_lowercase()).collect();
    signed.sort();
    signed.dedup();
    let canonical = canonical_request(
        method,
        raw_path,
        raw_query,
        &all,
        &signed,
        payload_hash,
        signer.service == "s3",
    );
    let date = signer.amz_date.get(..8).unwrap_or_default();
    let scope = format!("{date}/{}/{}/aws4_request", signer.region, signer.service);
    let string_to_sign = string_to_sign(signer.amz_date, &scope, &canonical);
    let key = signing_key(
        signer.secret_access_key,
        date,
        signer.region,
        signer.service,
    );
    added.push((
        "authorization",
        format!(
            "AWS4-HMAC-SHA256 Credential={}/{scope}, SignedHeaders={}, Signature={}",
            signer.access_key_id,
            signed.join(";"),
            signature(&key, &string_to_sign)
        ),
    ));
    added
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verify::{Authorization, Request, verify};

    #[test]
    fn what_it_signs_verifies() {
        let signer = Signer {
            access_key_id: "AKIDEXAMPLE",
            secret_access_key: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
            session_token: Some("token"),
            region: "us-east-1",
            service: "sts",
            amz_date: "20261126T010203Z",
        };
        let body = b"Action=AssumeRole&Version=2011-06-15";
        let base = [
            ("host", "127.0.0.1:9000"),
            ("content-type", "application/x-www-form-urlencoded"),
        ];
        let added = sign(&signer, "POST", "/", "", &base, body);
        let names: Vec<&str> = added.iter().map(|(k, _)| *k).collect();
        assert_eq!(
            names,
            ["x-amz-date", "x-amz-security-token", "authorization"]
        );
        let headers: Vec<(&str, &str)> = base
            .iter()
            .copied()
            .chain(added.iter().map(|(k, v)| (*k, v.as_str())))
            .collect();
        let authorization = added[2].1.as_str();
        assert!(authorization.contains(
            "Credential=AKIDEXAMPLE/20261126/us-east-1/sts/aws4_request, SignedHeaders=content-type;host;x-amz-date;x-amz-security-token, Signature="
        ));
        let payload_hash = hex::encode(&Sha256::digest(body));
        let request = Request {
            method: "POST",
            path: "/",
            query: "",
            headers: &headers,
            payload_hash: &payload_hash,
        };
        let parsed = Authorization::parse(authorization).unwrap();
        let verified = verify(
            &request,
            &parsed,
            signer.secret_access_key,
            1_795_654_923,
            900,
        );
        assert!(verified.is_ok(), "{verified:?}");
    }
}
