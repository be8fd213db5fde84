//! IMDSv2 session tokens, stateless: an HMAC-SHA256 over the pod's UID and address and the
//! token's expiry, under a key made when the agent starts. A token is good only for the pod it
//! was issued to: another pod, even one on the same address later, cannot use it.
//!
//! <https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/configuring-instance-metadata-service.html>
//!
//! A token is `base64url(version ‖ expiry (8 bytes, big-endian) ‖ tag (32 bytes))`: 55
//! characters, about as long as AWS's. A restart makes a new key, so earlier tokens answer 401 and clients
//! get a new one, as they do when a token expires.

use std::net::IpAddr;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::hmac;
use ring::rand::{SecureRandom as _, SystemRandom};

use crate::ImdsError;
use crate::pods::Pod;

/// The shortest token lifetime a client may ask for, seconds.
pub const MIN_TOKEN_TTL: u32 = 1;
/// The longest token lifetime a client may ask for, seconds (six hours).
pub const MAX_TOKEN_TTL: u32 = 21_600;

const VERSION: u8 = 1;
const TOKEN_BYTES: usize = 1 + 8 + 32;
/// Longer texts are refused before decoding.
const MAX_TOKEN_CHARS: usize = 128;
/// Separates the parts of what is signed from what other keys might sign.
const CONTEXT: &[u8] = b"keyless-imds-token-v1\0";

/// What a token is bound to: the pod's UID (empty for an address no pod is known on) and its
/// address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenBinding<'a> {
    /// The pod's UID.
    pub uid: &'a str,
    /// The pod's address.
    pub ip: IpAddr,
}

impl<'a> TokenBinding<'a> {
    /// The binding of `pod`.
    pub fn of(pod: &'a Pod) -> Self {
        Self {
            uid: &pod.uid,
            ip: pod.ip,
        }
    }
}

/// Issues and checks session tokens under one key.
pub struct TokenKey {
    key: hmac::Key,
}

impl std::fmt::Debug for TokenKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenKey(<redacted>)")
    }
}

impl TokenKey {
    /// A new random key.
    pub fn generate() -> Result<Self, ImdsError> {
        let mut bytes = [0u8; 32];
        SystemRandom::new()
            .fill(&mut bytes)
            .map_err(|_| ImdsError::Random)?;
        Ok(Self::from_bytes(&bytes))
    }

    /// The key of `bytes` (tests, or a key shared by agents).
    pub fn from_bytes(bytes: &[u8]) -> Self {
        Self {
            key: hmac::Key::new(hmac::HMAC_SHA256, bytes),
        }
    }

    /// What a token's tag signs.
    fn message(binding: TokenBinding<'_>, expiry: i64) -> Vec<u8> {
        let mut message = Vec::with_capacity(CONTEXT.len() + 1 + 8 + 8 + binding.uid.len() + 17);
        message.extend_from_slice(CONTEXT);
        message.push(VERSION);
        message.extend_from_slice(&expiry.to_be_bytes());
        message.extend_from_slice(&(binding.uid.len() as u64).to_be_bytes());
        message.extend_from_slice(binding.uid.as_bytes());
        match binding.ip {
            IpAddr::V4(ip) => {
                message.push(4);
                message.extend_from_slice(&ip.octets());
            }
            IpAddr::V6(ip) => {
                message.push(6);
                message.extend_from_slice(&ip.octets());
            }
        }
        message
    }

    /// A token for `binding`, good for `ttl_seconds` from `now` (unix seconds).
    pub fn issue(&self, binding: TokenBinding<'_>, ttl_seconds: u32, now: i64) -> String {
        let expiry = now.saturating_add(i64::from(ttl_seconds));
        let mut bytes = Vec::with_capacity(TOKEN_BYTES);
        bytes.push(VERSION);
        bytes.extend_from_slice(&expiry.to_be_bytes());
        bytes.extend_from_slice(hmac::sign(&self.key, &Self::message(binding, expiry)).as_ref());
        URL_SAFE_NO_PAD.encode(bytes)
    }

    /// Whether `token` was issued by this key for `binding` and is not expired at `now`.
    pub fn check(&self, token: &str, binding: TokenBinding<'_>, now: i64) -> bool {
        let token = token.trim();
        if token.len() > MAX_TOKEN_CHARS {
            return false;
        }
        let Ok(bytes) = URL_SAFE_NO_PAD.decode(token) else {
            return false;
        };
        let [version, rest @ ..] = bytes.as_slice() else {
            return false;
        };
        if *version != VERSION || rest.len() != TOKEN_BYTES - 1 {
            return false;
        }
        let (expiry, tag) = rest.split_at(8);
        let Ok(expiry) = <[u8; 8]>::try_from(expiry).map(i64::from_be_bytes) else {
            return false;
        };
        // `hmac::verify` compares in constant time.
        let valid = hmac::verify(&self.key, &Self::message(binding, expiry), tag).is_ok();
        valid && now < expiry
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_795_650_000;

    fn pod(uid: &str, ip: &str) -> (String, IpAddr) {
        (uid.to_owned(), ip.parse().unwrap())
    }

    fn binding(p: &(String, IpAddr)) -> TokenBinding<'_> {
        TokenBinding { uid: &p.0, ip: p.1 }
    }

    #[test]
    fn a_token_is_good_for_its_pod_until_it_expires() {
        let key = TokenKey::from_bytes(b"k");
        let web = pod("u1", "10.0.0.1");
        let token = key.issue(binding(&web), 60, NOW);
        assert_eq!(token.len(), 55);
        assert!(
            token
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        );
        assert!(key.check(&token, binding(&web), NOW));
        assert!(key.check(&token, binding(&web), NOW + 59));
        assert!(!key.check(&token, binding(&web), NOW + 60));
    }

    #[test]
    fn a_token_is_refused_to_other_pods_addresses_and_keys() {
        let key = TokenKey::from_bytes(b"k");
        let web = pod("u1", "10.0.0.1");
        let token = key.issue(binding(&web), 21_600, NOW);
        // A new pod on the old pod's address.
        assert!(!key.check(&token, binding(&pod("u2", "10.0.0.1")), NOW));
        // The same pod seen from another address.
        assert!(!key.check(&token, binding(&pod("u1", "10.0.0.2")), NOW));
        assert!(!key.check(&token, binding(&pod("u1", "::ffff:10.0.0.1")), NOW));
        // Another agent's key (or this agent before a restart).
        assert!(!TokenKey::from_bytes(b"other").check(&token, binding(&web), NOW));
        assert!(
            !TokenKey::generate()
                .unwrap()
                .check(&token, binding(&web), NOW)
        );
    }

    #[test]
    fn forged_and_malformed_tokens_are_refused() {
        let key = TokenKey::from_bytes(b"k");
        let web = pod("u1", "10.0.0.1");
        let token = key.issue(binding(&web), 60, NOW);
        // A later expiry written into a genuine token.
        let mut bytes = URL_SAFE_NO_PAD.decode(&token).unwrap();
        bytes[1..9].copy_from_slice(&(NOW + 9999).to_be_bytes());
        assert!(!key.check(&URL_SAFE_NO_PAD.encode(&bytes), binding(&web), NOW + 100));
        for bad in [
            "",
            "AAAA",
            "not base64!",
            &"A".repeat(500),
            &token[..54],
            &format!("{token}A"),
        ] {
            assert!(!key.check(bad, binding(&web), NOW), "{bad}");
        }
        let mut versioned = URL_SAFE_NO_PAD.decode(&token).unwrap();
        versioned[0] = 2;
        assert!(!key.check(&URL_SAFE_NO_PAD.encode(&versioned), binding(&web), NOW));
    }

    #[test]
    fn the_key_is_not_printed() {
        assert_eq!(
            format!("{:?}", TokenKey::from_bytes(b"k")),
            "TokenKey(<redacted>)"
        );
    }
}
