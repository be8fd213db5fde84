//! Session tokens that need no session table: the claims of a session, sealed with AES-256-GCM
//! under a key every replica shares, bound to the temporary access key id they were issued
//! with. The secret access key is derived from the access key id with HMAC, so that S3's
//! signature check, which sees only the id, can find it; a replica holding the same key can
//! check any session, and no row is written per session.
//!
//! Token layout (then base64): `version (1) | nonce (12) | sealed claims | tag (16)`, with the
//! version and the access key id as associated data.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use keyless_iam::session::{SessionClaims, SessionTokens, TokenProblem};
use keyless_types::Secret;
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::hkdf;
use ring::hmac;
use ring::rand::{SecureRandom, SystemRandom};

use crate::StsError;

const VERSION: u8 = 1;

/// The largest token accepted, in characters (AWS allows session tokens of several KiB).
pub const MAX_TOKEN_LEN: usize = 8192;

const BASE32: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

/// The key that seals session tokens and derives temporary secrets. `Debug` shows nothing of it.
pub struct SessionKey {
    seal: LessSafeKey,
    secrets: hmac::Key,
    /// The symbol after `ASIA` in the ids this key issues, so that a rotated-in key can tell
    /// its own ids apart.
    tag: u8,
    rng: SystemRandom,
}

impl std::fmt::Debug for SessionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionKey")
            .field("tag", &char::from(self.tag))
            .finish_non_exhaustive()
    }
}

struct Len(usize);

impl hkdf::KeyType for Len {
    fn len(&self) -> usize {
        self.0
    }
}

fn derive(prk: &hkdf::Prk, info: &'static [u8], len: usize) -> Result<Vec<u8>, StsError> {
    let mut out = vec![0u8; len];
    prk.expand(&[info], Len(len))
        .and_then(|okm| okm.fill(&mut out))
        .map_err(|_| StsError::Internal("cannot derive the session keys".into()))?;
    Ok(out)
}

impl SessionKey {
    /// The bytes of a new random master key, to be kept by the operator (32 bytes).
    pub fn generate_bytes() -> Result<[u8; 32], StsError> {
        let mut bytes = [0u8; 32];
        SystemRandom::new()
            .fill(&mut bytes)
            .map_err(|_| StsError::Internal("no randomness from the operating system".into()))?;
        Ok(bytes)
    }

    /// The session key derived from a 32-byte master key.
    pub fn from_master(master: &[u8]) -> Result<Self, StsError> {
        if master.len() < 32 {
            return Err(StsError::Internal(format!(
                "the session key must be at least 32 bytes, not {}",
                master.len()
            )));
        }
        let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, b"keyless session tokens v1").extract(master);
        let seal = derive(&prk, b"seal", 32)?;
        let secrets = derive(&prk, b"secret", 32)?;
        let tag = derive(&prk, b"tag", 1)?[0];
        let seal = UnboundKey::new(&AES_256_GCM, &seal)
            .map_err(|_| StsError::Internal("cannot use the session key".into()))?;
        Ok(Self {
            seal: LessSafeKey::new(seal),
            secrets: hmac::Key::new(hmac::HMAC_SHA256, &secrets),
            tag: BASE32[usize::from(tag) % BASE32.len()],
            rng: SystemRandom::new(),
        })
    }

    /// A new temporary access key id: `ASIA`, this key's symbol and 15 random symbols.
    pub fn new_access_key_id(&self) -> Result<String, StsError> {
        let mut bytes = [0u8; 15];
        self.rng
            .fill(&mut bytes)
            .map_err(|_| StsError::Internal("no randomness from the operating system".into()))?;
        let mut id = String::with_capacity(20);
        id.push_str("ASIA");
        id.push(char::from(self.tag));
        id.extend(
            bytes
                .iter()
                .map(|b| char::from(BASE32[usize::from(*b) % 32])),
        );
        Ok(id)
    }

    fn owns(&self, access_key_id: &str) -> bool {
        access_key_id.len() == 20
            && access_key_id.starts_with("ASIA")
            && access_key_id.as_bytes()[4] == self.tag
            && access_key_id.bytes().all(|b| b.is_ascii_alphanumeric())
    }

    fn derive_secret(&self, access_key_id: &str) -> Secret {
        let tag = hmac::sign(&self.secrets, access_key_id.as_bytes());
        let mut text = STANDARD.encode(tag.as_ref());
        text.truncate(40);
        Secret::new(text)
    }

    /// Issues credentials for `claims`: a new access key id, its secret and the sealed token.
    pub fn issue(&self, claims: &SessionClaims) -> Result<(String, Secret, String), StsError> {
        let access_key_id = self.new_access_key_id()?;
        let token = self.seal(&access_key_id, claims)?;
        let secret = self.derive_secret(&access_key_id);
        Ok((access_key_id, secret, token))
    }

    /// Seals `claims` for `access_key_id`.
    pub fn seal(&self, access_key_id: &str, claims: &SessionClaims) -> Result<String, StsError> {
        let mut nonce = [0u8; NONCE_LEN];
        self.rng
            .fill(&mut nonce)
            .map_err(|_| StsError::Internal("no randomness from the operating system".into()))?;
        let mut data = serde_json::to_vec(claims)
            .map_err(|e| StsError::Internal(format!("cannot encode a session: {e}")))?;
        self.seal
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad(access_key_id)),
                &mut data,
            )
            .map_err(|_| StsError::Internal("cannot seal a session".into()))?;
        let mut out = Vec::with_capacity(1 + NONCE_LEN + data.len());
        out.push(VERSION);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&data);
        Ok(STANDARD.encode(out))
    }
}

fn aad(access_key_id: &str) -> Vec<u8> {
    let mut aad = Vec::with_capacity(1 + access_key_id.len());
    aad.push(VERSION);
    aad.extend_from_slice(access_key_id.as_bytes());
    aad
}

impl SessionTokens for SessionKey {
    fn secret(&self, access_key_id: &str) -> Option<Secret> {
        self.owns(access_key_id)
            .then(|| self.derive_secret(access_key_id))
    }

    fn open(&self, access_key_id: &str, token: &str) -> Result<SessionClaims, TokenProblem> {
        if token.len() > MAX_TOKEN_LEN || !self.owns(access_key_id) {
            return Err(TokenProblem::Invalid);
        }
        let mut bytes = STANDARD
            .decode(token.trim())
            .map_err(|_| TokenProblem::Invalid)?;
        if bytes.len() < 1 + NONCE_LEN + AES_256_GCM.tag_len() || bytes[0] != VERSION {
            return Err(TokenProblem::Invalid);
        }
        let nonce = Nonce::try_assume_unique_for_key(&bytes[1..=NONCE_LEN])
            .map_err(|_| TokenProblem::Invalid)?;
        let plain = self
            .seal
            .open_in_place(
                nonce,
                Aad::from(aad(access_key_id)),
                &mut bytes[1 + NONCE_LEN..],
            )
            .map_err(|_| TokenProblem::Invalid)?;
        serde_json::from_slice(plain).map_err(|_| TokenProblem::Invalid)
    }
}

#[cfg(test)]
mod tests {
    use keyless_iam::session::SessionSubject;

    use super::*;

    fn claims() -> SessionClaims {
        SessionClaims {
            subject: SessionSubject::Role {
                arn: "arn:aws:iam::111122223333:role/gitlab".into(),
                session_name: "gitlab".into(),
            },
            issued: 1_700_000_000,
            expires: 1_700_003_600,
            policy: None,
            policy_arns: vec![],
            tags: vec![],
            source_identity: None,
            web_identity: None,
        }
    }

    fn key() -> SessionKey {
        SessionKey::from_master(&[7u8; 32]).unwrap()
    }

    #[test]
    fn round_trips_and_derives_the_same_secret_on_another_replica() {
        let (id, secret, token) = key().issue(&claims()).unwrap();
        assert!(id.starts_with("ASIA") && id.len() == 20, "{id}");
        assert_eq!(secret.expose().len(), 40);
        let replica = key();
        assert_eq!(replica.open(&id, &token), Ok(claims()));
        assert_eq!(
            replica.secret(&id).map(|s| s.expose().to_owned()),
            Some(secret.expose().to_owned())
        );
        assert!(!format!("{replica:?}").contains("7"));
    }

    #[test]
    fn refuses_tokens_that_are_altered_moved_or_foreign() {
        let k = key();
        let (id, _, token) = k.issue(&claims()).unwrap();
        let (other_id, _, _) = k.issue(&claims()).unwrap();
        // Another access key.
        assert_eq!(k.open(&other_id, &token), Err(TokenProblem::Invalid));
        // Any flipped bit.
        let raw = STANDARD.decode(&token).unwrap();
        for i in 0..raw.len() {
            let mut bad = raw.clone();
            bad[i] ^= 1;
            assert_eq!(
                k.open(&id, &STANDARD.encode(&bad)),
                Err(TokenProblem::Invalid),
                "byte {i}"
            );
        }
        // Truncated, empty, not base64, oversized.
        assert_eq!(
            k.open(&id, &token[..token.len() - 4]),
            Err(TokenProblem::Invalid)
        );
        assert_eq!(k.open(&id, ""), Err(TokenProblem::Invalid));
        assert_eq!(k.open(&id, "%%%"), Err(TokenProblem::Invalid));
        assert_eq!(k.open(&id, &"A".repeat(9000)), Err(TokenProblem::Invalid));
        // Another server's key.
        let stranger = SessionKey::from_master(&[8u8; 32]).unwrap();
        assert_eq!(stranger.open(&id, &token), Err(TokenProblem::Invalid));
        assert!(SessionKey::from_master(&[1u8; 16]).is_err());
    }
}
