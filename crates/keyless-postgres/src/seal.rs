//! What Keyless writes to PostgreSQL is sealed (AES-256-GCM) under a key derived from the
//! session key every replica already shares, so that a dump of the database, a backup or a
//! read-only role reveals no secret access key and no signing key. The additional data binds
//! each sealed value to its account and row: a value copied to another row does not open.

use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::hkdf;

const VERSION: u8 = 1;
const SALT: &[u8] = b"keyless postgres";
const INFO: &[u8] = b"keyless postgres state seal v1";

/// The key the rows are sealed with.
pub struct SealKey(LessSafeKey);

impl std::fmt::Debug for SealKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SealKey(<redacted>)")
    }
}

/// Why a value could not be sealed or opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    /// No randomness for a nonce.
    #[error("the system's random source failed")]
    Random,
    /// Altered, copied from another row, or sealed under another session key.
    #[error(
        "it was sealed under another session key (every replica needs the same --session-key-file), or altered"
    )]
    Unsealable,
}

impl SealKey {
    /// The key derived from the session key's master bytes (HKDF-SHA256).
    pub fn derive(master: &[u8]) -> Self {
        let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, SALT).extract(master);
        let mut key = [0u8; 32];
        prk.expand(&[INFO], &AES_256_GCM)
            .and_then(|okm| okm.fill(&mut key))
            .expect("32 bytes is a valid HKDF-SHA256 output length");
        let key = UnboundKey::new(&AES_256_GCM, &key).expect("32 bytes is an AES-256 key");
        Self(LessSafeKey::new(key))
    }

    /// `value` sealed for the row `row`: version, a random nonce, the ciphertext and its tag.
    pub fn seal(&self, row: &str, value: &[u8]) -> Result<Vec<u8>, SealError> {
        let mut nonce = [0u8; NONCE_LEN];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut nonce)
            .map_err(|_| SealError::Random)?;
        let mut out = Vec::with_capacity(1 + NONCE_LEN + value.len() + 16);
        out.push(VERSION);
        out.extend_from_slice(&nonce);
        let mut body = value.to_vec();
        self.0
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(row.as_bytes()),
                &mut body,
            )
            .map_err(|_| SealError::Random)?;
        out.extend_from_slice(&body);
        Ok(out)
    }

    /// Opens what [`SealKey::seal`] sealed for `row`.
    pub fn open(&self, row: &str, sealed: &[u8]) -> Result<Vec<u8>, SealError> {
        let (&version, rest) = sealed.split_first().ok_or(SealError::Unsealable)?;
        if version != VERSION || rest.len() < NONCE_LEN {
            return Err(SealError::Unsealable);
        }
        let (nonce, body) = rest.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| SealError::Unsealable)?;
        let mut body = body.to_vec();
        let plain = self
            .0
            .open_in_place(nonce, Aad::from(row.as_bytes()), &mut body)
            .map_err(|_| SealError::Unsealable)?;
        Ok(plain.to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_value_opens_for_its_row_and_key_only() {
        let key = SealKey::derive(b"master bytes of the session key, 32+");
        let sealed = key.seal("iam/111122223333", b"state").unwrap();
        assert_eq!(key.open("iam/111122223333", &sealed).unwrap(), b"state");
        assert!(key.open("iam/444455556666", &sealed).is_err());
        let other = SealKey::derive(b"another session key's master bytes");
        assert!(other.open("iam/111122223333", &sealed).is_err());
        let mut altered = sealed.clone();
        *altered.last_mut().unwrap() ^= 1;
        assert!(key.open("iam/111122223333", &altered).is_err());
        assert!(key.open("iam/111122223333", &[]).is_err());
        assert!(key.open("iam/111122223333", &sealed[..5]).is_err());
        // Two seals of one value differ (random nonces).
        assert_ne!(key.seal("r", b"v").unwrap(), key.seal("r", b"v").unwrap());
    }
}
