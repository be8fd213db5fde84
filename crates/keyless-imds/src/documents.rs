//! The bodies the metadata service answers: the credentials and `iam/info` JSON, the instance
//! identity document, the directory listings, and the made-up ids (instance, instance profile)
//! that clients expect to find in them.
//!
//! <https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/instancedata-data-categories.html>,
//! <https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/instance-identity-documents.html>

use std::net::IpAddr;

use keyless_types::time::iso8601;
use serde::Serialize;

use crate::credentials::Credentials;

/// `/` lists the API versions.
pub(crate) const ROOT: &str = "latest";
/// `/latest/`.
pub(crate) const LATEST: &str = "dynamic\nmeta-data";
/// `/latest/meta-data/`: what this service answers.
pub(crate) const META_DATA: &str =
    "iam/\ninstance-id\ninstance-type\nlocal-ipv4\nplacement/\nservices/";
/// `/latest/meta-data/iam/`.
pub(crate) const IAM: &str = "info\nsecurity-credentials/";
/// `/latest/meta-data/placement/`.
pub(crate) const PLACEMENT: &str = "availability-zone\nregion";
/// `/latest/meta-data/services/`.
pub(crate) const SERVICES: &str = "domain\npartition";
/// `/latest/dynamic/`.
pub(crate) const DYNAMIC: &str = "instance-identity/";
/// `/latest/dynamic/instance-identity/`.
pub(crate) const INSTANCE_IDENTITY: &str = "document";

/// `/latest/meta-data/iam/security-credentials/ROLE`, as EC2 writes it.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct CredentialsDocument<'a> {
    code: &'a str,
    last_updated: String,
    #[serde(rename = "Type")]
    kind: &'a str,
    access_key_id: &'a str,
    secret_access_key: &'a str,
    token: &'a str,
    expiration: String,
}

/// The credentials document of `creds`.
pub(crate) fn credentials_json(creds: &Credentials) -> String {
    to_json(&CredentialsDocument {
        code: "Success",
        last_updated: iso8601(creds.last_updated),
        kind: "AWS-HMAC",
        access_key_id: &creds.access_key_id,
        secret_access_key: creds.secret_access_key.expose(),
        token: creds.session_token.expose(),
        expiration: iso8601(creds.expiration),
    })
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct InfoDocument {
    code: &'static str,
    last_updated: String,
    instance_profile_arn: String,
    instance_profile_id: String,
}

/// `/latest/meta-data/iam/info` for the role `role_arn`, at `now`: an instance profile named
/// (and pathed) like the role.
pub(crate) fn info_json(role_arn: &str, now: i64) -> String {
    let instance_profile_arn = match role_arn.split_once(":role/") {
        Some((head, path)) => format!("{head}:instance-profile/{path}"),
        None => role_arn.to_owned(),
    };
    to_json(&InfoDocument {
        code: "Success",
        last_updated: iso8601(now),
        instance_profile_id: format!("AIPA{}", base32_id(role_arn, 17)),
        instance_profile_arn,
    })
}

/// What the instance identity document says.
pub(crate) struct Identity<'a> {
    pub(crate) account_id: &'a str,
    pub(crate) region: &'a str,
    pub(crate) instance_id: &'a str,
    pub(crate) instance_type: &'a str,
    pub(crate) private_ip: IpAddr,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct IdentityDocument<'a> {
    account_id: &'a str,
    architecture: &'a str,
    availability_zone: String,
    billing_products: Option<()>,
    devpay_product_codes: Option<()>,
    marketplace_product_codes: Option<()>,
    instance_id: &'a str,
    instance_type: &'a str,
    private_ip: String,
    region: &'a str,
    version: &'a str,
}

/// `/latest/dynamic/instance-identity/document` (unsigned: there is no signature document).
pub(crate) fn identity_json(identity: &Identity<'_>) -> String {
    to_json(&IdentityDocument {
        account_id: identity.account_id,
        architecture: architecture(),
        availability_zone: availability_zone(identity.region),
        billing_products: None,
        devpay_product_codes: None,
        marketplace_product_codes: None,
        instance_id: identity.instance_id,
        instance_type: identity.instance_type,
        private_ip: identity.private_ip.to_string(),
        region: identity.region,
        version: "2017-09-30",
    })
}

/// The zone of a region: its first, `a`.
pub(crate) fn availability_zone(region: &str) -> String {
    format!("{region}a")
}

/// The DNS suffix of a partition's services.
pub(crate) fn domain(partition: &str) -> &'static str {
    match partition {
        "aws-cn" => "amazonaws.com.cn",
        _ => "amazonaws.com",
    }
}

/// EC2's name of this machine's architecture.
fn architecture() -> &'static str {
    match std::env::consts::ARCH {
        "aarch64" => "arm64",
        "x86" => "i386",
        other => other,
    }
}

/// An instance id for `seed` (a pod's UID): `i-` and 17 hex digits, the same every time.
pub(crate) fn instance_id(seed: &str) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, seed.as_bytes());
    let hex = keyless_types::hex::encode(digest.as_ref());
    format!("i-{}", &hex[..17])
}

/// `len` characters of AWS's unique-id alphabet (`A-Z2-7`) derived from `seed`.
fn base32_id(seed: &str, len: usize) -> String {
    const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let digest = ring::digest::digest(&ring::digest::SHA256, seed.as_bytes());
    digest
        .as_ref()
        .iter()
        .take(len)
        .map(|b| char::from(ALPHABET[usize::from(b % 32)]))
        .collect()
}

fn to_json(value: &impl Serialize) -> String {
    // Plain structs of strings: serialization cannot fail.
    serde_json::to_string(value).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use keyless_types::Secret;

    /// 2026-11-26T01:00:00Z.
    const NOW: i64 = 1_795_654_800;

    #[test]
    fn the_credentials_document_has_ec2s_fields_in_ec2s_order() {
        let creds = Credentials {
            access_key_id: "ASIAEXAMPLE".into(),
            secret_access_key: Secret::new("s3cr3t/+"),
            session_token: Secret::new("t0k3n=="),
            expiration: NOW + 3600,
            last_updated: NOW,
        };
        assert_eq!(
            credentials_json(&creds),
            r#"{"Code":"Success","LastUpdated":"2026-11-26T01:00:00Z","Type":"AWS-HMAC","AccessKeyId":"ASIAEXAMPLE","SecretAccessKey":"s3cr3t/+","Token":"t0k3n==","Expiration":"2026-11-26T02:00:00Z"}"#
        );
    }

    #[test]
    fn the_info_document_names_an_instance_profile_like_the_role() {
        let info: serde_json::Value =
            serde_json::from_str(&info_json("arn:aws:iam::123456789012:role/team/app", NOW))
                .unwrap();
        assert_eq!(info["Code"], "Success");
        assert_eq!(info["LastUpdated"], "2026-11-26T01:00:00Z");
        assert_eq!(
            info["InstanceProfileArn"],
            "arn:aws:iam::123456789012:instance-profile/team/app"
        );
        let id = info["InstanceProfileId"].as_str().unwrap();
        assert_eq!(id.len(), 21);
        assert!(id.starts_with("AIPA"));
        assert!(
            id.bytes()
                .all(|b| b.is_ascii_uppercase() || (b'2'..=b'7').contains(&b))
        );
        let keys: Vec<&String> = info.as_object().unwrap().keys().collect();
        assert_eq!(keys.len(), 4);
    }

    #[test]
    fn the_identity_document() {
        let doc = identity_json(&Identity {
            account_id: "123456789012",
            region: "eu-west-1",
            instance_id: "i-0123456789abcdef0",
            instance_type: "keyless.pod",
            private_ip: "10.1.0.5".parse().unwrap(),
        });
        let doc: serde_json::Value = serde_json::from_str(&doc).unwrap();
        assert_eq!(doc["accountId"], "123456789012");
        assert_eq!(doc["region"], "eu-west-1");
        assert_eq!(doc["availabilityZone"], "eu-west-1a");
        assert_eq!(doc["instanceId"], "i-0123456789abcdef0");
        assert_eq!(doc["instanceType"], "keyless.pod");
        assert_eq!(doc["privateIp"], "10.1.0.5");
        assert_eq!(doc["version"], "2017-09-30");
        assert!(doc["billingProducts"].is_null());
        assert!(!doc["architecture"].as_str().unwrap().is_empty());
    }

    #[test]
    fn made_up_ids_are_stable_and_well_formed() {
        let id = instance_id("11111111-aaaa");
        assert_eq!(id, instance_id("11111111-aaaa"));
        assert_ne!(id, instance_id("22222222-bbbb"));
        assert_eq!(id.len(), 19);
        assert!(id[2..].bytes().all(|b| b.is_ascii_hexdigit()));
        assert_eq!(domain("aws-cn"), "amazonaws.com.cn");
        assert_eq!(domain("aws"), "amazonaws.com");
    }
}
