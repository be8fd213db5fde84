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

/// A GUID (`8-4-4-4-12` hex digits): an audit record's `eventID`, a request's id. Not a
/// secret, only unique: drawn from a generator of the thread's own (SplitMix64) seeded once
/// from the operating system's randomness, since a system call for every request's two ids
/// cost more than the rest of the id.
pub fn guid() -> String {
    use std::cell::Cell;
    thread_local! {
        static STATE: Cell<u64> = Cell::new({
            let mut seed = [0u8; 8];
            // Without randomness the ids are still unique within the thread.
            let _ = getrandom::fill(&mut seed);
            u64::from_le_bytes(seed)
        });
    }
    let next = || {
        STATE.with(|state| {
            let mut z = state.get().wrapping_add(0x9e37_79b9_7f4a_7c15);
            state.set(z);
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        })
    };
    let bits = (u128::from(next()) << 64) | u128::from(next());
    let mut id = String::with_capacity(36);
    for digit in 0..32 {
        if matches!(digit, 8 | 12 | 16 | 20) {
            id.push('-');
        }
        let nibble = (bits >> (124 - 4 * digit)) & 0xf;
        id.push(char::from(b"0123456789abcdef"[nibble as usize]));
    }
    id
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

    #[test]
    fn guids_are_shaped_as_guids_and_do_not_repeat() {
        let ids: std::collections::HashSet<String> = (0..10_000).map(|_| guid()).collect();
        assert_eq!(ids.len(), 10_000);
        for id in ids.iter().take(100) {
            let parts: Vec<usize> = id.split('-').map(str::len).collect();
            assert_eq!(parts, [8, 4, 4, 4, 12], "{id}");
            assert!(
                id.chars()
                    .all(|c| c == '-' || c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
            );
        }
        // Another thread draws from a generator of its own.
        let other = std::thread::spawn(guid).join().unwrap_or_default();
        assert!(!ids.contains(&other));
    }
}
