//! Fresh identifiers and secrets, in the shapes AWS uses: `AIDA`/`AROA`/`ANPA` unique ids, `AKIA`
//! access key ids and 40-character secret access keys, from the operating system's randomness.
//!
//! <https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_identifiers.html#identifiers-unique-ids>

use keyless_types::{RequestId, Secret};

use crate::IamError;

const UPPER_BASE32: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
const BASE64: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// `len` symbols drawn uniformly from `alphabet` (whose size divides 256).
fn random_text(len: usize, alphabet: &[u8]) -> Result<String, IamError> {
    debug_assert_eq!(256 % alphabet.len(), 0);
    let mut bytes = vec![0u8; len];
    getrandom::fill(&mut bytes)
        .map_err(|e| IamError::Storage(format!("no randomness from the operating system: {e}")))?;
    Ok(bytes
        .iter()
        .map(|b| char::from(alphabet[usize::from(*b) % alphabet.len()]))
        .collect())
}

/// A user's unique id: `AIDA` and 17 characters.
pub fn user_id() -> Result<String, IamError> {
    Ok(format!("AIDA{}", random_text(17, UPPER_BASE32)?))
}

/// A role's unique id: `AROA` and 17 characters.
pub fn role_id() -> Result<String, IamError> {
    Ok(format!("AROA{}", random_text(17, UPPER_BASE32)?))
}

/// A managed policy's unique id: `ANPA` and 17 characters.
pub fn policy_id() -> Result<String, IamError> {
    Ok(format!("ANPA{}", random_text(17, UPPER_BASE32)?))
}

/// A long-term access key id: `AKIA` and 16 characters.
pub fn access_key_id() -> Result<String, IamError> {
    Ok(format!("AKIA{}", random_text(16, UPPER_BASE32)?))
}

/// A secret access key: 40 characters of base64's alphabet.
pub fn secret_access_key() -> Result<Secret, IamError> {
    random_text(40, BASE64).map(Secret::new)
}

/// A request id, as AWS puts in every response: made once per request, where it enters the
/// server, and put in the request's extensions.
pub fn request_id() -> RequestId {
    RequestId::new(guid())
}

/// A GUID (`8-4-4-4-12` hex digits): an audit record's `eventID`, a request's id.
pub fn guid() -> String {
    // Not a secret; without randomness it is still unique enough to read logs.
    let hex = random_text(32, b"0123456789abcdef").unwrap_or_else(|_| "0".repeat(32));
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_have_aws_shapes() {
        let user = user_id().unwrap();
        assert!(user.starts_with("AIDA") && user.len() == 21, "{user}");
        assert_ne!(user, user_id().unwrap());
        assert!(policy_id().unwrap().starts_with("ANPA"));
        let role = role_id().unwrap();
        assert!(role.starts_with("AROA") && role.len() == 21, "{role}");
        let key = access_key_id().unwrap();
        assert!(key.starts_with("AKIA") && key.len() == 20);
        assert_eq!(secret_access_key().unwrap().expose().len(), 40);
        assert_eq!(request_id().as_str().len(), 36);
        assert_ne!(request_id(), request_id());
    }
}
