//! Who signed a request: the access key id a signature names, resolved to the secret that
//! checks it and the caller it stands for. Shared by every endpoint (S3, IAM, STS), so that
//! they all agree on who is who. Temporary keys (`ASIA...`) come with a session token, opened
//! through [`SessionTokens`] and resolved against the current IAM state.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock, Weak};

use keyless_policy::{Policy, PolicyKind};
use keyless_types::{Secret, constant_time_eq};

use crate::caller::{Caller, Session, SessionKind};
use crate::session::{
    SessionClaims, SessionSubject, SessionTokens, TokenProblem, is_temporary_key,
};
use crate::state::{UserPolicy, UserPolicyKind};
use crate::{IamStore, Snapshot, managed};

/// The account root user's long-term key pair. `Debug` does not show the secret.
#[derive(Debug, Clone)]
pub struct RootKey {
    /// `AKIA...`.
    pub access_key_id: String,
    /// The secret access key.
    pub secret: Secret,
}

/// The account's keys: the root user's and its IAM users'.
#[derive(Clone)]
pub struct Keyring {
    root: RootKey,
    store: Arc<dyn IamStore>,
    sessions: Option<Arc<dyn SessionTokens>>,
    /// Inline session policies compiled once per text (a session's requests all carry it).
    compiled: Arc<Mutex<HashMap<String, Arc<Policy>>>>,
    /// Sessions already opened, by temporary access key id: a session's later requests skip
    /// deriving its secret and decoding, decrypting and resolving its token. An entry serves
    /// only the exact token it was opened from, and only while the IAM state it was resolved
    /// against is current.
    opened: Arc<RwLock<HashMap<String, Opened>>>,
}

/// A session token opened and resolved once.
struct Opened {
    token: String,
    secret: Secret,
    /// The IAM state the session was resolved against (weak: an old state is not kept alive,
    /// and while this is held its address is not reused).
    snapshot: Weak<Snapshot>,
    session: Arc<Session>,
}

/// Why a key and token were refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyProblem {
    /// No such active key.
    UnknownKey,
    /// A token that is malformed, altered, sealed for another key, or sent with a long-term
    /// key; or a temporary key sent without its token.
    InvalidToken,
    /// A token past its expiry.
    ExpiredToken,
}

/// How many compiled session policies are kept.
const MAX_COMPILED: usize = 1024;

/// How many opened sessions are kept: with tokens of a few hundred bytes, a few MiB (tokens
/// may be up to 8 KiB, so 32 MiB at worst).
const MAX_OPENED: usize = 4096;

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keyring")
            .field("root", &self.root)
            .field("account_id", &self.store.account_id())
            .finish()
    }
}

impl Keyring {
    /// The keys of `store`'s account, whose root user holds `root`.
    pub fn new(root: RootKey, store: Arc<dyn IamStore>) -> Self {
        Self {
            root,
            store,
            sessions: None,
            compiled: Arc::default(),
            opened: Arc::default(),
        }
    }

    /// Accepts temporary credentials opened by `sessions`.
    pub fn with_sessions(mut self, sessions: Arc<dyn SessionTokens>) -> Self {
        self.sessions = Some(sessions);
        self
    }

    /// The IAM state.
    pub fn store(&self) -> &Arc<dyn IamStore> {
        &self.store
    }

    /// The account.
    pub fn account_id(&self) -> &str {
        self.store.account_id()
    }

    /// The secret that checks signatures by `access_key_id`: a long-term key's, or the one
    /// derived for a temporary key (whose token is checked by [`Keyring::resolve`]).
    pub fn secret(&self, access_key_id: &str) -> Option<Secret> {
        if is_temporary_key(access_key_id) {
            let opened = self.opened.read().unwrap_or_else(|e| e.into_inner());
            if let Some(entry) = opened.get(access_key_id) {
                return Some(entry.secret.clone());
            }
            drop(opened);
            return self.sessions.as_ref()?.secret(access_key_id);
        }
        self.lookup(access_key_id).map(|(secret, _)| secret)
    }

    /// The caller of `access_key_id` with the session token the request carried: temporary
    /// keys need their token, long-term keys must come without one. The secret is not part of
    /// the answer: the signature check asks [`Keyring::secret`] for it, and deriving a
    /// temporary key's secret twice per request would cost an HMAC for nothing.
    pub fn resolve(
        &self,
        access_key_id: &str,
        token: Option<&str>,
        now: i64,
    ) -> Result<Caller, KeyProblem> {
        if !is_temporary_key(access_key_id) {
            if token.is_some() {
                return Err(KeyProblem::InvalidToken);
            }
            return self
                .lookup(access_key_id)
                .map(|(_, caller)| caller)
                .ok_or(KeyProblem::UnknownKey);
        }
        let sessions = self.sessions.as_ref().ok_or(KeyProblem::UnknownKey)?;
        let token = token.ok_or(KeyProblem::UnknownKey)?;
        let snapshot = self.store.snapshot();
        let session = match self.reopen(access_key_id, token, &snapshot) {
            Some(session) => session,
            None => {
                let claims =
                    sessions
                        .open(access_key_id, token)
                        .map_err(|problem| match problem {
                            TokenProblem::Invalid => KeyProblem::InvalidToken,
                            TokenProblem::Expired => KeyProblem::ExpiredToken,
                        })?;
                let session = Arc::new(
                    self.session(&snapshot, access_key_id, claims)
                        .ok_or(KeyProblem::InvalidToken)?,
                );
                if let Some(secret) = sessions.secret(access_key_id) {
                    self.remember(token, secret, &snapshot, &session);
                }
                session
            }
        };
        if session.claims.expires <= now {
            return Err(KeyProblem::ExpiredToken);
        }
        Ok(Caller::Session(session))
    }

    /// The session `token` opened to before, if it was opened with `access_key_id` against
    /// the current state `snapshot`.
    fn reopen(
        &self,
        access_key_id: &str,
        token: &str,
        snapshot: &Arc<Snapshot>,
    ) -> Option<Arc<Session>> {
        let opened = self.opened.read().unwrap_or_else(|e| e.into_inner());
        let entry = opened.get(access_key_id)?;
        (constant_time_eq(entry.token.as_bytes(), token.as_bytes())
            && std::ptr::eq(entry.snapshot.as_ptr(), Arc::as_ptr(snapshot)))
        .then(|| Arc::clone(&entry.session))
    }

    fn remember(
        &self,
        token: &str,
        secret: Secret,
        snapshot: &Arc<Snapshot>,
        session: &Arc<Session>,
    ) {
        let mut opened = self.opened.write().unwrap_or_else(|e| e.into_inner());
        if opened.len() >= MAX_OPENED {
            opened.clear();
        }
        opened.insert(
            session.access_key_id.clone(),
            Opened {
                token: token.to_owned(),
                secret,
                snapshot: Arc::downgrade(snapshot),
                session: Arc::clone(session),
            },
        );
    }

    /// A session as the current state has it; `None` when its role or user is gone or its
    /// policies no longer compile.
    fn session(
        &self,
        snapshot: &Snapshot,
        access_key_id: &str,
        claims: SessionClaims,
    ) -> Option<Session> {
        let account_id = self.account_id().to_owned();
        let (kind, arn, user_id) = match &claims.subject {
            SessionSubject::Role { arn, session_name } => {
                let role = snapshot.directory.role_by_arn(arn)?;
                let session_arn = format!(
                    "arn:aws:sts::{account_id}:assumed-role/{}/{session_name}",
                    role.name
                );
                let user_id = format!("{}:{session_name}", role.role_id);
                (SessionKind::Role(Arc::clone(role)), session_arn, user_id)
            }
            SessionSubject::User(name) => {
                let user = snapshot.directory.user(name)?;
                let (arn, id) = (user.arn.clone(), user.user_id.clone());
                (SessionKind::User(Arc::clone(user)), arn, id)
            }
            SessionSubject::Root => (
                SessionKind::Root,
                format!("arn:aws:iam::{account_id}:root"),
                account_id.clone(),
            ),
        };
        let session_policies = self.session_policies(snapshot, &claims)?;
        Some(Session {
            access_key_id: access_key_id.to_owned(),
            claims,
            kind,
            arn,
            user_id,
            account_id,
            session_policies,
        })
    }

    /// The session's policies, compiled: the inline one, then the managed ones by ARN.
    fn session_policies(
        &self,
        snapshot: &Snapshot,
        claims: &SessionClaims,
    ) -> Option<Option<Vec<UserPolicy>>> {
        if claims.policy.is_none() && claims.policy_arns.is_empty() {
            return Some(None);
        }
        let mut out = Vec::with_capacity(1 + claims.policy_arns.len());
        if let Some(text) = &claims.policy {
            out.push(UserPolicy {
                name: "session policy".into(),
                kind: UserPolicyKind::Inline,
                policy: self.compile(text)?,
            });
        }
        for arn in &claims.policy_arns {
            let (name, kind, document) = match managed::by_arn(arn) {
                Some(m) => (m.name, UserPolicyKind::AwsManaged, m.document),
                None => {
                    let p = snapshot.state.policy(self.account_id(), arn).ok()?;
                    (
                        p.name.as_str(),
                        UserPolicyKind::CustomerManaged,
                        p.default_document(),
                    )
                }
            };
            out.push(UserPolicy {
                name: name.to_owned(),
                kind,
                policy: self.compile(document)?,
            });
        }
        Some(Some(out))
    }

    fn compile(&self, text: &str) -> Option<Arc<Policy>> {
        let mut cache = self.compiled.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(policy) = cache.get(text) {
            return Some(Arc::clone(policy));
        }
        let policy = Arc::new(Policy::parse_as(text, PolicyKind::Identity).ok()?);
        if cache.len() >= MAX_COMPILED {
            cache.clear();
        }
        cache.insert(text.to_owned(), Arc::clone(&policy));
        Some(policy)
    }

    /// The secret and caller of an active long-term access key.
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
    }

    /// Tokens are `ACCESS-KEY-ID|N`, opened to `claims[N]` when the id matches; counts opens.
    struct Tokens {
        claims: Vec<SessionClaims>,
        opens: Mutex<usize>,
    }

    impl SessionTokens for Tokens {
        fn secret(&self, access_key_id: &str) -> Option<Secret> {
            Some(Secret::new(format!("secret of {access_key_id}")))
        }

        fn open(&self, access_key_id: &str, token: &str) -> Result<SessionClaims, TokenProblem> {
            *self.opens.lock().unwrap_or_else(|e| e.into_inner()) += 1;
            let (id, n) = token.split_once('|').ok_or(TokenProblem::Invalid)?;
            let n: usize = n.parse().map_err(|_| TokenProblem::Invalid)?;
            match self.claims.get(n) {
                Some(claims) if id == access_key_id => Ok(claims.clone()),
                _ => Err(TokenProblem::Invalid),
            }
        }
    }

    #[test]
    fn opened_sessions_are_reused_only_for_their_key_and_the_current_state() {
        let store = Arc::new(EmbeddedIam::in_memory("111122223333", IamState::default()).unwrap());
        let trust = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::111122223333:root"},"Action":"sts:AssumeRole"}]}"#;
        store
            .update(&mut |s| {
                let new = crate::roles::NewRole {
                    name: "registry",
                    path: "/",
                    assume_role_policy: trust,
                    ..Default::default()
                };
                s.create_role("111122223333", new, "AROAREGISTRY".into(), 0)
                    .map(drop)
            })
            .unwrap();
        let claims = SessionClaims {
            subject: SessionSubject::Role {
                arn: "arn:aws:iam::111122223333:role/registry".into(),
                session_name: "pod".into(),
            },
            issued: 100,
            expires: 1000,
            policy: None,
            policy_arns: Vec::new(),
            tags: Vec::new(),
            source_identity: None,
            web_identity: None,
        };
        let tokens = Arc::new(Tokens {
            claims: vec![claims],
            opens: Mutex::new(0),
        });
        let ring = Keyring::new(
            RootKey {
                access_key_id: "AKIAROOT".into(),
                secret: Secret::new("r"),
            },
            Arc::clone(&store) as Arc<dyn IamStore>,
        )
        .with_sessions(Arc::clone(&tokens) as Arc<dyn SessionTokens>);
        let opens = || *tokens.opens.lock().unwrap_or_else(|e| e.into_inner());
        let session = |caller: Result<Caller, KeyProblem>| match caller {
            Ok(Caller::Session(s)) => s,
            other => panic!("not a session: {other:?}"),
        };

        let (key, token) = ("ASIAONE", "ASIAONE|0");
        let first = session(ring.resolve(key, Some(token), 500));
        assert_eq!(
            first.arn,
            "arn:aws:sts::111122223333:assumed-role/registry/pod"
        );
        let again = session(ring.resolve(key, Some(token), 501));
        assert!(
            Arc::ptr_eq(&first, &again),
            "the second request reuses the session"
        );
        assert_eq!(opens(), 1);

        // The same token with another key is opened again (and refused), never served.
        assert_eq!(
            ring.resolve("ASIATWO", Some(token), 502).unwrap_err(),
            KeyProblem::InvalidToken
        );
        // The key with any other token is opened again (and refused).
        assert_eq!(
            ring.resolve(key, Some("ASIAONE|7"), 502).unwrap_err(),
            KeyProblem::InvalidToken
        );
        assert_eq!(opens(), 3);
        // Expiry holds for a remembered session too.
        assert_eq!(
            ring.resolve(key, Some(token), 1000).unwrap_err(),
            KeyProblem::ExpiredToken
        );
        // A change to IAM resolves the session again: a deleted role ends it.
        store.update(&mut |s| s.delete_role("registry")).unwrap();
        assert_eq!(
            ring.resolve(key, Some(token), 503).unwrap_err(),
            KeyProblem::InvalidToken
        );
        assert!(ring.secret(key).is_some());
    }
}
