//! IAM state shared by several Keyless replicas through PostgreSQL.
//!
//! The state of an account is one sealed document in `keyless_iam` with an **epoch** that every
//! change increments. A change is committed only if the epoch it was computed from is still the
//! current one (so replicas writing at once never lose a change: the loser recomputes on the
//! winner's state), and is announced with `NOTIFY keyless` in the same transaction. Each
//! replica keeps the last state it saw as an immutable [`Snapshot`] that requests read without
//! waiting on the database:
//!
//! - a notification of a newer epoch makes it reload (within milliseconds);
//! - after a reconnection (notifications sent while disconnected are lost) it reloads;
//! - every `check_interval` it compares epochs, which bounds staleness even if a notification
//!   is lost;
//! - while PostgreSQL is down, S3, STS and IMDS keep serving the last snapshot, and changes
//!   fail with [`IamError::Unavailable`] (503, retryable) until it is back.
//!
//! The other values that replicas must share (the root key pair, the OIDC issuer's signing keys,
//! the metadata service's key, the gateway's bucket policies and configurations) live in
//! `keyless_shared`, each with its own epoch, watched the same way. Everything written is sealed under a key derived from the shared session key
//! ([`SealKey`]): the database never holds a secret in the clear.
//!
//! The connection lives on a thread of its own, so that [`IamStore::update`], which is
//! synchronous like the embedded store's, may be called from any context.

mod schema;
mod seal;
mod worker;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use keyless_iam::{Directory, IamError, IamState, IamStore, Snapshot};
use keyless_types::Secret;
use tokio::sync::{mpsc, oneshot, watch};

pub use schema::VERSION as SCHEMA_VERSION;
pub use seal::{SealError, SealKey};

/// How long a change waits for PostgreSQL before it fails as unavailable.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// The default period of the epoch check that bounds staleness when a notification is lost.
pub const DEFAULT_CHECK_INTERVAL: Duration = Duration::from_secs(5);

/// Why the store could not be opened or a secret read or written.
#[derive(Debug, thiserror::Error)]
pub enum PgError {
    /// The URL is not one PostgreSQL's clients read.
    #[error("the PostgreSQL URL is not valid: {0}")]
    Url(#[source] tokio_postgres::Error),
    /// The CA bundle could not be read.
    #[error("cannot read the CA bundle `{path}`: {source}")]
    CaBundle {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// No connection.
    #[error("cannot connect to PostgreSQL: {0}")]
    Connect(#[source] tokio_postgres::Error),
    /// A statement failed.
    #[error("PostgreSQL: {0}")]
    Query(#[source] tokio_postgres::Error),
    /// No answer in time.
    #[error("PostgreSQL did not answer within {0:?}")]
    Timeout(Duration),
    /// The connection is lost (the worker is reconnecting).
    #[error("PostgreSQL is unreachable: {0}")]
    Unreachable(String),
    /// A later Keyless migrated the database.
    #[error(
        "the database's Keyless schema is version {found}, newer than this Keyless knows ({known}): upgrade Keyless"
    )]
    NewerSchema {
        /// The database's version.
        found: i32,
        /// This build's.
        known: i32,
    },
    /// A stored value did not open, or could not be sealed.
    #[error("the value `{row}` in PostgreSQL: {source}")]
    Seal {
        /// The row.
        row: String,
        /// Why.
        source: SealError,
    },
    /// The stored state is not one this Keyless reads, or does not compile.
    #[error("the IAM state in PostgreSQL is not valid: {0}")]
    State(String),
    /// A shared value changed between its read and its replacement.
    #[error("`{0}` was changed by another replica; read it again")]
    Conflict(String),
    /// The store's thread is gone.
    #[error("the PostgreSQL store has stopped")]
    Stopped,
}

impl PgError {
    fn query(e: tokio_postgres::Error) -> Self {
        Self::Query(e)
    }

    /// Whether the connection is gone (the worker reconnects), rather than one statement
    /// failing.
    fn is_connection(&self) -> bool {
        match self {
            Self::Query(e) | Self::Connect(e) => e.is_closed() || e.as_db_error().is_none(),
            Self::Timeout(_) | Self::Unreachable(_) => true,
            _ => false,
        }
    }
}

/// How to reach the database.
pub struct PgOptions {
    /// `postgres://user@host:port/db?sslmode=require` (or `?host=/socket/dir`).
    pub url: String,
    /// The password, when not in the URL.
    pub password: Option<Secret>,
    /// PEM certificates to trust beside the system's, for TLS.
    pub ca_bundle: Option<PathBuf>,
    /// The account whose state this is.
    pub account_id: String,
    /// The key rows are sealed with (from the shared session key).
    pub seal: SealKey,
    /// The period of the epoch check.
    pub check_interval: Duration,
}

impl std::fmt::Debug for PgOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgOptions")
            .field("url", &redact_url(&self.url))
            .field("ca_bundle", &self.ca_bundle)
            .field("account_id", &self.account_id)
            .finish_non_exhaustive()
    }
}

/// `url` with any password (in the user part or a `password=` parameter) replaced, for logs
/// and errors. What is not a `postgres://` URL is not shown at all.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return "<not a postgres:// URL>".into();
    };
    // The user part ends at the last `@` (a password may hold `/`, `?` or `@`).
    let rest = match rest.rsplit_once('@') {
        Some((user, host)) if user.contains(':') => {
            let user = user.split_once(':').map_or(user, |(u, _)| u);
            let user: String = user
                .chars()
                .take_while(|c| !matches!(c, '/' | '?'))
                .collect();
            format!("{user}:<redacted>@{host}")
        }
        _ => rest.to_owned(),
    };
    let (base, query) = rest
        .split_once('?')
        .map_or((rest.as_str(), None), |(b, q)| (b, Some(q)));
    match query {
        None => format!("{scheme}://{base}"),
        Some(query) => {
            let query: Vec<String> = query
                .split('&')
                .map(|pair| match pair.split_once('=') {
                    Some((key, _)) if key.eq_ignore_ascii_case("password") => {
                        format!("{key}=<redacted>")
                    }
                    _ => pair.to_owned(),
                })
                .collect();
            format!("{scheme}://{base}?{}", query.join("&"))
        }
    }
}

/// A value the replicas share (a secret, or a document), as last read.
#[derive(Clone)]
pub struct SharedValue {
    /// Its epoch: 1 when created, incremented by each replacement.
    pub epoch: i64,
    /// Its bytes.
    pub value: Arc<Secret>,
}

impl std::fmt::Debug for SharedValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedValue")
            .field("epoch", &self.epoch)
            .finish_non_exhaustive()
    }
}

/// Whether the replica is in touch with the database, for `/readyz` and logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Link {
    /// Connected, at this epoch.
    Up,
    /// Disconnected since the reason given; serving the last snapshot.
    Down(String),
}

pub(crate) struct Shared {
    account_id: String,
    /// The current epoch and its snapshot.
    current: RwLock<(i64, Arc<Snapshot>)>,
    /// The secrets some part of the server watches, by name.
    secrets: Mutex<HashMap<String, watch::Sender<Option<SharedValue>>>>,
    link: watch::Sender<Link>,
    seal: SealKey,
}

impl Shared {
    /// The additional data of the state at `epoch`: a sealed state opens only for its account
    /// and its epoch, so that an old one written back (by someone with the database but not
    /// the session key) does not open.
    fn state_row(&self, epoch: i64) -> String {
        format!("iam/{}/{epoch}", self.account_id)
    }

    fn secret_row(&self, name: &str, epoch: i64) -> String {
        format!("shared/{}/{name}/{epoch}", self.account_id)
    }

    pub(crate) fn epoch(&self) -> i64 {
        self.current.read().unwrap_or_else(|e| e.into_inner()).0
    }

    /// Makes `snapshot` current if `epoch` is newer than the current one.
    pub(crate) fn install(&self, epoch: i64, snapshot: Arc<Snapshot>) -> bool {
        let mut current = self.current.write().unwrap_or_else(|e| e.into_inner());
        if epoch <= current.0 {
            return false;
        }
        *current = (epoch, snapshot);
        true
    }

    /// Makes the database's state current whatever its epoch: one older than the held one
    /// means the database went back (a restore, a failover to a standby that missed commits),
    /// and the database is the truth.
    pub(crate) fn install_stored(&self, epoch: i64, snapshot: Arc<Snapshot>) {
        let mut current = self.current.write().unwrap_or_else(|e| e.into_inner());
        *current = (epoch, snapshot);
    }

    /// The snapshot of a stored, sealed state.
    pub(crate) fn open_state(&self, sealed: &[u8], epoch: i64) -> Result<Snapshot, PgError> {
        let row = self.state_row(epoch);
        let json = self
            .seal
            .open(&row, sealed)
            .map_err(|source| PgError::Seal { row, source })?;
        let state: IamState =
            serde_json::from_slice(&json).map_err(|e| PgError::State(e.to_string()))?;
        let directory = Directory::compile(&state, &self.account_id)
            .map_err(|e| PgError::State(e.to_string()))?;
        Ok(Snapshot { state, directory })
    }

    pub(crate) fn seal_state(&self, state: &IamState, epoch: i64) -> Result<Vec<u8>, PgError> {
        let json = serde_json::to_vec(state).map_err(|e| PgError::State(e.to_string()))?;
        let row = self.state_row(epoch);
        self.seal
            .seal(&row, &json)
            .map_err(|source| PgError::Seal { row, source })
    }

    pub(crate) fn open_secret(
        &self,
        name: &str,
        sealed: &[u8],
        epoch: i64,
    ) -> Result<Secret, PgError> {
        let row = self.secret_row(name, epoch);
        let bytes = self
            .seal
            .open(&row, sealed)
            .map_err(|source| PgError::Seal { row, source })?;
        let text = String::from_utf8(bytes).map_err(|_| PgError::Seal {
            row: self.secret_row(name, epoch),
            source: SealError::Unsealable,
        })?;
        Ok(Secret::new(text))
    }

    pub(crate) fn seal_secret(
        &self,
        name: &str,
        value: &Secret,
        epoch: i64,
    ) -> Result<Vec<u8>, PgError> {
        let row = self.secret_row(name, epoch);
        self.seal
            .seal(&row, value.expose().as_bytes())
            .map_err(|source| PgError::Seal { row, source })
    }

    pub(crate) fn watched(&self) -> Vec<(String, Option<i64>)> {
        let secrets = self.secrets.lock().unwrap_or_else(|e| e.into_inner());
        secrets
            .iter()
            .map(|(name, tx)| (name.clone(), tx.borrow().as_ref().map(|s| s.epoch)))
            .collect()
    }

    /// Publishes a secret read from the database, if it is newer than what watchers have.
    pub(crate) fn publish_secret(&self, name: &str, secret: SharedValue) {
        let secrets = self.secrets.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(tx) = secrets.get(name) {
            tx.send_if_modified(|held| {
                if held.as_ref().is_some_and(|h| h.epoch >= secret.epoch) {
                    return false;
                }
                *held = Some(secret);
                true
            });
        }
    }

    pub(crate) fn set_link(&self, link: Link) {
        self.link.send_if_modified(|held| {
            if *held == link {
                return false;
            }
            match &link {
                Link::Up => tracing::info!(epoch = self.epoch(), "connected to PostgreSQL"),
                Link::Down(why) => tracing::warn!(
                    reason = %why,
                    epoch = self.epoch(),
                    "lost PostgreSQL: serving the last IAM state; IAM changes fail until it is back"
                ),
            }
            *held = link;
            true
        });
    }
}

/// A shared value as stored: its epoch and sealed bytes.
pub(crate) type Stored = (i64, Vec<u8>);

/// What the worker thread is asked to do.
pub(crate) enum Job {
    /// Commit `sealed` as the state following `base`, unless the caller withdrew it.
    Commit {
        base: i64,
        sealed: Vec<u8>,
        ticket: Arc<Mutex<Ticket>>,
        reply: std::sync::mpsc::Sender<Result<Committed, PgError>>,
    },
    /// Read the shared value `name`, creating it with `create` (if given) when absent.
    GetOrCreate {
        name: String,
        create: Option<Vec<u8>>,
        reply: oneshot::Sender<Result<Option<Stored>, PgError>>,
    },
    /// Replace the secret `name`, read at `base`, with `sealed`.
    Replace {
        name: String,
        base: i64,
        sealed: Vec<u8>,
        reply: oneshot::Sender<Result<i64, PgError>>,
    },
}

/// Whether a commit may still be made: the worker takes it, or the caller, tired of waiting,
/// withdraws it; whichever comes first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ticket {
    Pending,
    Taken,
    Withdrawn,
}

/// How a commit went.
pub(crate) enum Committed {
    /// Committed at this epoch.
    At(i64),
    /// Another replica changed the state first; the worker has loaded its state.
    Conflict,
}

/// The IAM state of one account in PostgreSQL, shared by every replica on the database.
pub struct PgIam {
    shared: Arc<Shared>,
    jobs: mpsc::UnboundedSender<Job>,
    /// Changes from this replica go one at a time, as the embedded store's do.
    writes: Mutex<()>,
    /// The epoch the database held when this replica first connected (0: never written).
    first_epoch: i64,
}

impl std::fmt::Debug for PgIam {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgIam")
            .field("account_id", &self.shared.account_id)
            .field("epoch", &self.shared.epoch())
            .finish_non_exhaustive()
    }
}

impl PgIam {
    /// Connects, applies the schema's migrations, creates the account's row if absent and loads
    /// its state. Fails if the database cannot be reached now: a replica with no state has
    /// nothing to serve. Afterwards, losing the database is survived (see the crate's docs).
    pub async fn connect(options: PgOptions) -> Result<Self, PgError> {
        let connector = worker::Connector::new(&options)?;
        let shared = Arc::new(Shared {
            account_id: options.account_id.clone(),
            current: RwLock::new((
                -1,
                Arc::new(Snapshot {
                    directory: Directory::compile(&IamState::default(), &options.account_id)
                        .map_err(|e| PgError::State(e.to_string()))?,
                    state: IamState::default(),
                }),
            )),
            secrets: Mutex::new(HashMap::new()),
            link: watch::Sender::new(Link::Down("not connected yet".into())),
            seal: options.seal,
        });
        let (jobs, rx) = mpsc::unbounded_channel();
        let (ready, first) = oneshot::channel();
        let worker_shared = Arc::clone(&shared);
        let check_interval = options.check_interval;
        std::thread::Builder::new()
            .name("keyless-postgres".into())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(runtime) => runtime,
                    Err(e) => {
                        let _ = ready.send(Err(PgError::State(format!(
                            "cannot start the PostgreSQL thread's runtime: {e}"
                        ))));
                        return;
                    }
                };
                runtime.block_on(worker::run(
                    connector,
                    worker_shared,
                    rx,
                    check_interval,
                    ready,
                ));
            })
            .map_err(|e| PgError::State(format!("cannot start the PostgreSQL thread: {e}")))?;
        let first_epoch = first.await.map_err(|_| PgError::Stopped)??;
        Ok(Self {
            shared,
            jobs,
            writes: Mutex::new(()),
            first_epoch,
        })
    }

    /// Whether no replica had ever changed the state when this one connected: the moment to
    /// import an embedded store's state.
    pub fn was_empty(&self) -> bool {
        self.first_epoch == 0
    }

    /// The epoch of the state this replica serves.
    pub fn epoch(&self) -> i64 {
        self.shared.epoch()
    }

    /// Whether the replica is in touch with the database.
    pub fn link(&self) -> watch::Receiver<Link> {
        self.shared.link.subscribe()
    }

    /// The shared value `name`, created from `create` if no replica created it yet (the first
    /// replica's value wins; `create` is called only if there is none), and watched from now
    /// on: the receiver holds it, and `changed()` reports its replacements.
    pub async fn shared(
        &self,
        name: &str,
        create: impl FnOnce() -> Result<Secret, PgError>,
    ) -> Result<watch::Receiver<Option<SharedValue>>, PgError> {
        self.load(name, Some(create)).await?.ok_or(PgError::Stopped)
    }

    /// The shared value `name` if a replica created it, watched from now on.
    pub async fn existing(
        &self,
        name: &str,
    ) -> Result<Option<watch::Receiver<Option<SharedValue>>>, PgError> {
        self.load(name, None::<fn() -> Result<Secret, PgError>>)
            .await
    }

    /// The value `name` (created from `create`, if given, when absent), published to its
    /// watchers; `None` if absent and not created.
    async fn load(
        &self,
        name: &str,
        create: Option<impl FnOnce() -> Result<Secret, PgError>>,
    ) -> Result<Option<watch::Receiver<Option<SharedValue>>>, PgError> {
        let mut rx = self.watch(name);
        if rx.borrow().is_some() {
            return Ok(Some(rx));
        }
        let (epoch, sealed) = match (self.read_shared(name).await?, create) {
            (Some(found), _) => found,
            (None, None) => return Ok(None),
            (None, Some(create)) => {
                let create = self.shared.seal_secret(name, &create()?, 1)?;
                let (reply, answer) = oneshot::channel();
                self.jobs
                    .send(Job::GetOrCreate {
                        name: name.to_owned(),
                        create: Some(create),
                        reply,
                    })
                    .map_err(|_| PgError::Stopped)?;
                answer
                    .await
                    .map_err(|_| PgError::Stopped)??
                    .ok_or(PgError::Stopped)?
            }
        };
        let value = self.shared.open_secret(name, &sealed, epoch)?;
        self.shared.publish_secret(
            name,
            SharedValue {
                epoch,
                value: Arc::new(value),
            },
        );
        // The receiver has the value: only what follows is a change.
        rx.mark_unchanged();
        Ok(Some(rx))
    }

    fn watch(&self, name: &str) -> watch::Receiver<Option<SharedValue>> {
        let mut secrets = self
            .shared
            .secrets
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        secrets
            .entry(name.to_owned())
            .or_insert_with(|| watch::Sender::new(None))
            .subscribe()
    }

    async fn read_shared(&self, name: &str) -> Result<Option<Stored>, PgError> {
        let (reply, answer) = oneshot::channel();
        self.jobs
            .send(Job::GetOrCreate {
                name: name.to_owned(),
                create: None,
                reply,
            })
            .map_err(|_| PgError::Stopped)?;
        answer.await.map_err(|_| PgError::Stopped)?
    }

    /// Replaces the secret `name` that was read at `base` (a rotation). Fails with
    /// [`PgError::Conflict`] if another replica replaced it since.
    pub async fn replace_shared(
        &self,
        name: &str,
        base: i64,
        value: &Secret,
    ) -> Result<i64, PgError> {
        let sealed = self.shared.seal_secret(name, value, base + 1)?;
        let (reply, answer) = oneshot::channel();
        self.jobs
            .send(Job::Replace {
                name: name.to_owned(),
                base,
                sealed,
                reply,
            })
            .map_err(|_| PgError::Stopped)?;
        let epoch = answer.await.map_err(|_| PgError::Stopped)??;
        self.shared.publish_secret(
            name,
            SharedValue {
                epoch,
                value: Arc::new(value.clone()),
            },
        );
        Ok(epoch)
    }

    /// The sealed form of `state` at `epoch` as this store writes it (for tests that write the
    /// table behind the store's back).
    pub fn seal_state(&self, state: &IamState, epoch: i64) -> Result<Vec<u8>, PgError> {
        self.shared.seal_state(state, epoch)
    }

    /// Makes `state` the account's first one, if no replica has changed the state yet (epoch
    /// 0). Returns whether it did: the import of a data folder's state, which must never be
    /// merged into another replica's.
    pub fn import(&self, state: &IamState) -> Result<bool, IamError> {
        let _one_at_a_time = self.writes.lock().unwrap_or_else(|e| e.into_inner());
        let directory = Directory::compile(state, &self.shared.account_id)?;
        let sealed = self
            .shared
            .seal_state(state, 1)
            .map_err(|e| unavailable(&e))?;
        match self.commit(0, sealed)? {
            Committed::At(epoch) => {
                let next = Arc::new(Snapshot {
                    state: state.clone(),
                    directory,
                });
                self.shared.install(epoch, next);
                Ok(true)
            }
            Committed::Conflict => Ok(false),
        }
    }

    /// Hands a commit to the worker and waits for its answer. A commit the worker has not begun
    /// when the wait ends is withdrawn, so that a change answered "unavailable" is never
    /// committed later; one it has begun is waited for (its statement has its own timeout).
    fn commit(&self, base: i64, sealed: Vec<u8>) -> Result<Committed, IamError> {
        let ticket = Arc::new(Mutex::new(Ticket::Pending));
        let (reply, answer) = std::sync::mpsc::channel();
        self.jobs
            .send(Job::Commit {
                base,
                sealed,
                ticket: Arc::clone(&ticket),
                reply,
            })
            .map_err(|_| unavailable(&PgError::Stopped))?;
        let answered = match answer.recv_timeout(WRITE_TIMEOUT) {
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                let mut held = ticket.lock().unwrap_or_else(|e| e.into_inner());
                if *held == Ticket::Pending {
                    *held = Ticket::Withdrawn;
                    return Err(unavailable(&PgError::Timeout(WRITE_TIMEOUT)));
                }
                drop(held);
                answer.recv_timeout(worker::STATEMENT_TIMEOUT * 2)
            }
            other => other,
        };
        match answered {
            Ok(Ok(committed)) => Ok(committed),
            Ok(Err(e)) => Err(unavailable(&e)),
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                Err(unavailable(&PgError::Stopped))
            }
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => Err(unavailable(&PgError::Timeout(
                worker::STATEMENT_TIMEOUT * 2,
            ))),
        }
    }
}

fn unavailable(e: &PgError) -> IamError {
    IamError::Unavailable(e.to_string())
}

impl IamStore for PgIam {
    fn account_id(&self) -> &str {
        &self.shared.account_id
    }

    fn snapshot(&self) -> Arc<Snapshot> {
        Arc::clone(
            &self
                .shared
                .current
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .1,
        )
    }

    fn update(
        &self,
        change: &mut dyn FnMut(&mut IamState) -> Result<(), IamError>,
    ) -> Result<Arc<Snapshot>, IamError> {
        let _one_at_a_time = self.writes.lock().unwrap_or_else(|e| e.into_inner());
        // A conflict means another replica committed first: recompute on its state. Each
        // round trip commits someone's change, so this ends; the bound is for a pathological
        // storm of writers.
        for _ in 0..16 {
            let (base, current) = {
                let held = self
                    .shared
                    .current
                    .read()
                    .unwrap_or_else(|e| e.into_inner());
                (held.0, Arc::clone(&held.1))
            };
            let mut state = current.state.clone();
            change(&mut state)?;
            if state == current.state {
                return Ok(current);
            }
            let directory = Directory::compile(&state, &self.shared.account_id)?;
            let sealed = self
                .shared
                .seal_state(&state, base + 1)
                .map_err(|e| unavailable(&e))?;
            match self.commit(base, sealed)? {
                Committed::At(epoch) => {
                    let next = Arc::new(Snapshot { state, directory });
                    self.shared.install(epoch, Arc::clone(&next));
                    return Ok(next);
                }
                Committed::Conflict => continue,
            }
        }
        Err(IamError::Unavailable(
            "too many replicas changed IAM at once; retry".into(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_never_reach_a_log() {
        assert_eq!(
            redact_url("postgres://keyless:hunter2@db:5432/iam?sslmode=require"),
            "postgres://keyless:<redacted>@db:5432/iam?sslmode=require"
        );
        assert_eq!(
            redact_url("postgres://keyless@db/iam"),
            "postgres://keyless@db/iam"
        );
        assert_eq!(
            redact_url("postgres://db/iam?sslmode=require&password=x"),
            "postgres://db/iam?sslmode=require&password=<redacted>"
        );
        assert_eq!(
            redact_url("postgres://keyless:p/a?s@s@db/iam"),
            "postgres://keyless:<redacted>@db/iam"
        );
        assert_eq!(
            redact_url("host=db password=hunter2"),
            "<not a postgres:// URL>"
        );
    }
}
