//! Who signed a request: the access key id a signature names, resolved to the secret that
//! checks it and the caller it stands for. Shared by every endpoint (S3, IAM, STS next), so
//! that they all agree on who is who.

use std::sync::Arc;

use keyless_types::Secret;

use crate::{IamStore, Identity};

/// The account root user's long-term key pair. `Debug` does not show the secret.
#[derive(Debug, Clone)]
pub struct RootKey {
    /// `AKIA...`.
    pub access_key_id: String,
    /// The secret access key.
    pub secret: Secret,
}

/// Who signed a request.
#[derive(Debug, Clone)]
pub enum Caller {
    /// The account's root user: everything in the account.
    Root,
    /// An IAM user, with its identity policies.
    User(Arc<Identity>),
}

/// The account's keys: the root user's and its IAM users'.
#[derive(Clone)]
pub struct Keyring {
    root: RootKey,
    store: Arc<dyn IamStore>,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keyring")
            .field("root", &self.root)
            .field("account_id", &self.store.account_id())
            .finish()
    }
}

/// Compares without leaking, through timing, where two strings first differ.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl Keyring {
    /// The keys of `store`'s account, whose root user holds `root`.
    pub fn new(root: RootKey, store: Arc<dyn IamStore>) -> Self {
        Self { root, store }
    }

    /// The IAM state.
    pub fn store(&self) -> &Arc<dyn IamStore> {
        &self.store
    }

    /// The account.
    pub fn account_id(&self) -> &str {
        self.store.account_id()
    }

    /// The secret and caller of an active access key.
    pub fn lookup(&self, access_key_id: &str) -> Option<(Secret, Caller)> {
        if constant_time_eq(access_key_id.as_bytes(), self.root.access_key_id.as_bytes()) {
            return Some((self.root.secret.clone(), Caller::Root));
        }
        let snapshot = self.store.snapshot();
        let credential = snapshot.directory.credential(access_key_id)?;
        Some((
            credential.secret.clone(),
            Caller::User(Arc::clone(&credential.identity)),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{EmbeddedIam, IamState};

    #[test]
    fn resolves_root_and_users_and_nobody_else() {
        let store = EmbeddedIam::in_memory("111122223333", IamState::default()).unwrap();
        store
            .update(&mut |s| {
                s.create_user("bob", "/", "AIDABOB".into(), 0)?;
                s.create_access_key("bob", "AKIABOB".into(), Secret::new("b"), 0)
                    .map(drop)
            })
            .unwrap();
        let ring = Keyring::new(
            RootKey {
                access_key_id: "AKIAROOT".into(),
                secret: Secret::new("r"),
            },
            Arc::new(store),
        );
        assert!(matches!(ring.lookup("AKIAROOT"), Some((s, Caller::Root)) if s.expose() == "r"));
        assert!(matches!(ring.lookup("AKIABOB"), Some((_, Caller::User(u))) if u.name == "bob"));
        assert!(ring.lookup("AKIANOBODY").is_none());
        assert!(!format!("{ring:?}").contains("\"r\""));
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }
}
