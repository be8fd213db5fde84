//! The `IamStore` seam and its embedded implementation: the account's IAM state, kept durable
//! in a redb file (or only in memory, the test double), and published as an immutable
//! [`Snapshot`] that requests read without locking out writers.
//!
//! Writes are rare (an administrator changing users and policies) and go one at a time: each
//! applies its change to a copy of the state, compiles it, commits it durably, and only then
//! makes it current, so a failed or refused change leaves nothing behind.

use std::path::Path;
use std::sync::{Arc, Mutex, RwLock};

use keyless_types::SecretFileError;
use redb::{ReadableDatabase as _, TableDefinition};

use crate::state::IamState;
use crate::{Directory, IamError};

/// One version of the IAM state with its compiled view.
#[derive(Debug)]
pub struct Snapshot {
    /// The state.
    pub state: IamState,
    /// The active keys and compiled identities of `state`.
    pub directory: Directory,
}

/// Where IAM state lives: the embedded store now, a database next.
pub trait IamStore: Send + Sync + 'static {
    /// The account the state belongs to.
    fn account_id(&self) -> &str;

    /// The current state.
    fn snapshot(&self) -> Arc<Snapshot>;

    /// Applies `change` to the current state and makes the result durable and current, or
    /// leaves everything as it was if `change` or the commit fails. Changes are serialized.
    fn update(
        &self,
        change: &mut dyn FnMut(&mut IamState) -> Result<(), IamError>,
    ) -> Result<Arc<Snapshot>, IamError>;
}

const STATE: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("iam");
const STATE_KEY: &str = "state";
const ACCOUNT_KEY: &str = "account";

/// IAM state in a redb file, or in memory alone.
pub struct EmbeddedIam {
    account_id: String,
    current: RwLock<Arc<Snapshot>>,
    /// Held while a change is applied; `None` keeps the state in memory only.
    db: Mutex<Option<redb::Database>>,
}

impl std::fmt::Debug for EmbeddedIam {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedIam")
            .field("account_id", &self.account_id)
            .finish_non_exhaustive()
    }
}

fn storage(e: impl std::fmt::Display) -> IamError {
    IamError::Storage(e.to_string())
}

impl EmbeddedIam {
    /// A store in memory, starting from `state`.
    pub fn in_memory(account_id: &str, state: IamState) -> Result<Self, IamError> {
        Ok(Self {
            account_id: account_id.to_owned(),
            current: RwLock::new(Arc::new(Snapshot {
                directory: Directory::compile(&state, account_id)?,
                state,
            })),
            db: Mutex::new(None),
        })
    }

    /// Opens the store in `file`, creating it (readable by its owner only) if absent. A file
    /// that belongs to another account is refused.
    pub fn open(file: &Path, account_id: &str) -> Result<Self, IamError> {
        use std::os::unix::fs::OpenOptionsExt as _;
        // Created readable by its owner alone before redb writes a byte: it holds secrets.
        std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(file)
            .map_err(|e| storage(format!("cannot open `{}`: {e}", file.display())))?;
        crate::check_secret_file(file).map_err(|e| match e {
            SecretFileError::Unreadable { source, .. } => {
                storage(format!("cannot open `{}`: {source}", file.display()))
            }
            open => storage(open),
        })?;
        let db = redb::Database::create(file)
            .map_err(|e| storage(format!("cannot open `{}`: {e}", file.display())))?;
        let (stored_account, state) = {
            let read = db.begin_read().map_err(storage)?;
            match read.open_table(STATE) {
                Ok(table) => {
                    let account = table
                        .get(ACCOUNT_KEY)
                        .map_err(storage)?
                        .map(|v| String::from_utf8_lossy(v.value()).into_owned());
                    let state = match table.get(STATE_KEY).map_err(storage)? {
                        Some(v) => serde_json::from_slice(v.value()).map_err(|e| {
                            storage(format!(
                                "`{}` holds an unreadable state: {e}",
                                file.display()
                            ))
                        })?,
                        None => IamState::default(),
                    };
                    (account, state)
                }
                Err(redb::TableError::TableDoesNotExist(_)) => (None, IamState::default()),
                Err(e) => return Err(storage(e)),
            }
        };
        if let Some(stored) = stored_account.filter(|a| a != account_id) {
            return Err(storage(format!(
                "`{}` holds the IAM state of account {stored}, not {account_id}",
                file.display()
            )));
        }
        let store = Self::in_memory(account_id, state)?;
        *store.db.lock().unwrap_or_else(|e| e.into_inner()) = Some(db);
        Ok(store)
    }

    fn persist(&self, db: &redb::Database, state: &IamState) -> Result<(), IamError> {
        let json = serde_json::to_vec(state).map_err(storage)?;
        let write = db.begin_write().map_err(storage)?;
        {
            let mut table = write.open_table(STATE).map_err(storage)?;
            table
                .insert(ACCOUNT_KEY, self.account_id.as_bytes())
                .map_err(storage)?;
            table.insert(STATE_KEY, json.as_slice()).map_err(storage)?;
        }
        write.commit().map_err(storage)
    }
}

impl IamStore for EmbeddedIam {
    fn account_id(&self) -> &str {
        &self.account_id
    }

    fn snapshot(&self) -> Arc<Snapshot> {
        Arc::clone(&self.current.read().unwrap_or_else(|e| e.into_inner()))
    }

    fn update(
        &self,
        change: &mut dyn FnMut(&mut IamState) -> Result<(), IamError>,
    ) -> Result<Arc<Snapshot>, IamError> {
        let db = self.db.lock().unwrap_or_else(|e| e.into_inner());
        let mut state = self.snapshot().state.clone();
        change(&mut state)?;
        let directory = Directory::compile(&state, &self.account_id)?;
        if let Some(db) = db.as_ref() {
            self.persist(db, &state)?;
        }
        let next = Arc::new(Snapshot { state, directory });
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::clone(&next);
        Ok(next)
    }
}

#[cfg(test)]
mod tests {
    use keyless_types::Secret;

    use super::*;

    fn add_bob(store: &EmbeddedIam) {
        store
            .update(&mut |s| {
                s.create_user("bob", "/", "AIDABOB".into(), 1)?;
                s.create_access_key("bob", "AKIABOB0000000000001".into(), Secret::new("x"), 1)
                    .map(drop)
            })
            .unwrap();
    }

    #[test]
    fn changes_survive_a_reopen_and_refused_ones_leave_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("iam.redb");
        {
            let store = EmbeddedIam::open(&file, "111122223333").unwrap();
            add_bob(&store);
            let err = store
                .update(&mut |s| {
                    s.create_user("carol", "/", "AIDAC".into(), 2)?;
                    s.create_user("bob", "/", "AIDAB2".into(), 2).map(drop)
                })
                .unwrap_err();
            assert_eq!(err.code(), "EntityAlreadyExists");
            assert!(store.snapshot().state.user("carol").is_err());
        }
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let store = EmbeddedIam::open(&file, "111122223333").unwrap();
        let snap = store.snapshot();
        assert!(snap.state.user("carol").is_err());
        let c = snap.directory.credential("AKIABOB0000000000001").unwrap();
        assert_eq!(c.identity.arn, "arn:aws:iam::111122223333:user/bob");
        drop(store);
        let err = EmbeddedIam::open(&file, "444455556666").unwrap_err();
        assert!(err.to_string().contains("account 111122223333"), "{err}");
    }

    #[test]
    fn a_store_readable_by_others_is_refused() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("iam.redb");
        drop(EmbeddedIam::open(&file, "111122223333").unwrap());
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = EmbeddedIam::open(&file, "111122223333").unwrap_err();
        assert!(err.to_string().contains("chmod 600"), "{err}");
    }

    #[test]
    fn inactive_keys_sign_nothing() {
        let store = EmbeddedIam::in_memory("111122223333", IamState::default()).unwrap();
        add_bob(&store);
        let id = "AKIABOB0000000000001";
        assert!(store.snapshot().directory.credential(id).is_some());
        store
            .update(&mut |s| s.update_access_key("bob", id, false))
            .unwrap();
        assert!(store.snapshot().directory.credential(id).is_none());
    }
}
