//! The thread that owns the connection: it listens for the other replicas' changes, reloads
//! what changed, commits this replica's changes, and reconnects when the database goes away.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio_postgres::config::Host;
use tokio_postgres::{AsyncMessage, Client, Config, NoTls};

use crate::{Committed, Job, Link, PgError, PgOptions, Shared, SharedValue, Ticket, schema};

/// The channel every change is announced on.
const CHANNEL: &str = "keyless";
/// How long one statement may take before the connection is taken for lost.
pub(crate) const STATEMENT_TIMEOUT: Duration = Duration::from_secs(10);
const FIRST_RETRY: Duration = Duration::from_millis(100);
const LAST_RETRY: Duration = Duration::from_secs(5);

/// What a connection is made with: TLS (rustls, the system's roots and the CA bundle) for
/// TCP hosts, none for Unix sockets.
pub(crate) struct Connector {
    config: Config,
    tls: Option<tokio_postgres_rustls::MakeRustlsConnect>,
}

impl Connector {
    pub(crate) fn new(options: &PgOptions) -> Result<Self, PgError> {
        let mut config: Config = options.url.parse().map_err(PgError::Url)?;
        if let Some(password) = &options.password {
            config.password(password.expose().as_bytes());
        }
        if config.get_application_name().is_none() {
            config.application_name("keyless");
        }
        config
            .connect_timeout(STATEMENT_TIMEOUT)
            .keepalives(true)
            .keepalives_idle(Duration::from_secs(30));
        let tcp = config.get_hosts().iter().any(|h| matches!(h, Host::Tcp(_)));
        // TLS is required over TCP unless the URL says otherwise (`sslmode=prefer`, the
        // clients' default, lets anyone on the path downgrade it to plain text).
        let unix = config
            .get_hosts()
            .iter()
            .any(|h| matches!(h, Host::Unix(_)));
        if tcp && !unix && !has_param(&options.url, "sslmode") {
            config.ssl_mode(tokio_postgres::config::SslMode::Require);
        }
        let tls = tcp
            .then(|| -> Result<_, PgError> {
                let mut roots = rustls::RootCertStore::empty();
                for cert in rustls_native_certs::load_native_certs().certs {
                    let _ = roots.add(cert);
                }
                if let Some(path) = &options.ca_bundle {
                    use rustls_pki_types::pem::PemObject as _;
                    let read = |source| PgError::CaBundle {
                        path: path.clone(),
                        source,
                    };
                    let certs = rustls_pki_types::CertificateDer::pem_file_iter(path)
                        .map_err(|e| read(std::io::Error::other(e.to_string())))?;
                    for cert in certs {
                        let cert = cert.map_err(|e| read(std::io::Error::other(e.to_string())))?;
                        roots
                            .add(cert)
                            .map_err(|e| read(std::io::Error::other(e.to_string())))?;
                    }
                }
                let provider = Arc::new(rustls::crypto::ring::default_provider());
                let config = rustls::ClientConfig::builder_with_provider(provider)
                    .with_safe_default_protocol_versions()
                    .map_err(|e| PgError::State(e.to_string()))?
                    .with_root_certificates(roots)
                    .with_no_client_auth();
                Ok(tokio_postgres_rustls::MakeRustlsConnect::new(config))
            })
            .transpose()?;
        Ok(Self { config, tls })
    }

    /// A client, with its notifications on `notes` until the connection ends.
    async fn connect(
        &self,
    ) -> Result<
        (
            Client,
            mpsc::UnboundedReceiver<tokio_postgres::Notification>,
        ),
        PgError,
    > {
        let (notes_tx, notes) = mpsc::unbounded_channel();
        let client = match &self.tls {
            Some(tls) => {
                let (client, connection) = self
                    .config
                    .connect(tls.clone())
                    .await
                    .map_err(PgError::Connect)?;
                tokio::spawn(drive(connection, notes_tx));
                client
            }
            None => {
                let (client, connection) =
                    self.config.connect(NoTls).await.map_err(PgError::Connect)?;
                tokio::spawn(drive(connection, notes_tx));
                client
            }
        };
        Ok((client, notes))
    }
}

/// Whether the URL or key-value string sets `key`.
fn has_param(url: &str, key: &str) -> bool {
    url.split(['?', '&', ' '])
        .any(|pair| pair.split_once('=').is_some_and(|(k, _)| k.trim() == key))
}

/// Polls the connection, forwarding notifications, until it ends (dropping `notes`).
async fn drive<S, T>(
    mut connection: tokio_postgres::Connection<S, T>,
    notes: mpsc::UnboundedSender<tokio_postgres::Notification>,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    loop {
        match std::future::poll_fn(|cx| connection.poll_message(cx)).await {
            Some(Ok(AsyncMessage::Notification(note))) => {
                let _ = notes.send(note);
            }
            Some(Ok(AsyncMessage::Notice(notice))) => {
                tracing::debug!(notice = %notice, "PostgreSQL notice");
            }
            Some(Ok(_)) => {}
            Some(Err(e)) => {
                tracing::debug!(error = %e, "the PostgreSQL connection ended");
                return;
            }
            None => return,
        }
    }
}

async fn timed<T>(
    work: impl Future<Output = Result<T, tokio_postgres::Error>>,
) -> Result<T, PgError> {
    match tokio::time::timeout(STATEMENT_TIMEOUT, work).await {
        Ok(result) => result.map_err(PgError::Query),
        Err(_) => Err(PgError::Timeout(STATEMENT_TIMEOUT)),
    }
}

/// Why a session with the database ended.
enum Ended {
    /// The store was dropped: stop.
    Closed,
    /// The connection was lost: reconnect.
    Lost(PgError),
}

/// The worker: the first connection (reported on `ready`), then sessions and reconnections
/// until the store is dropped.
pub(crate) async fn run(
    connector: Connector,
    shared: Arc<Shared>,
    mut jobs: mpsc::UnboundedReceiver<Job>,
    check_interval: Duration,
    ready: oneshot::Sender<Result<i64, PgError>>,
) {
    /// However the worker ends (the store dropped, or a panic), the link says so.
    struct Stopped<'a>(&'a Shared);
    impl Drop for Stopped<'_> {
        fn drop(&mut self) {
            self.0
                .set_link(Link::Down("the PostgreSQL thread has stopped".into()));
        }
    }
    let _stopped = Stopped(&shared);
    let (client, mut notes, first_epoch) = match first_connection(&connector, &shared).await {
        Ok(first) => first,
        Err(e) => {
            let _ = ready.send(Err(e));
            return;
        }
    };
    let _ = ready.send(Ok(first_epoch));
    shared.set_link(Link::Up);
    let mut session = Some((client, notes));
    let mut retry = FIRST_RETRY;
    loop {
        if let Some((client, notes_rx)) = session.take() {
            notes = notes_rx;
            match serve(&client, &mut notes, &mut jobs, &shared, check_interval).await {
                Ended::Closed => return,
                Ended::Lost(e) => shared.set_link(Link::Down(e.to_string())),
            }
        }
        // Disconnected: answer changes at once (they fail, retryably) while waiting to retry.
        let wait = tokio::time::sleep(retry);
        tokio::pin!(wait);
        loop {
            tokio::select! {
                () = &mut wait => break,
                job = jobs.recv() => match job {
                    None => return,
                    Some(job) => fail(job, &shared),
                },
            }
        }
        retry = (retry * 2).min(LAST_RETRY);
        match reconnect(&connector, &shared).await {
            Ok(connected) => {
                retry = FIRST_RETRY;
                shared.set_link(Link::Up);
                session = Some(connected);
            }
            Err(e) => shared.set_link(Link::Down(e.to_string())),
        }
    }
}

/// Answers a job while disconnected: unreachable, with the reason the link went down.
fn fail(job: Job, shared: &Shared) {
    let why = match &*shared.link.borrow() {
        Link::Down(why) => why.clone(),
        Link::Up => "reconnecting".to_owned(),
    };
    let error = || PgError::Unreachable(why.clone());
    match job {
        Job::Commit { reply, .. } => drop(reply.send(Err(error()))),
        Job::GetOrCreate { reply, .. } => drop(reply.send(Err(error()))),
        Job::Replace { reply, .. } => drop(reply.send(Err(error()))),
    }
}

type Connected = (
    Client,
    mpsc::UnboundedReceiver<tokio_postgres::Notification>,
);

async fn first_connection(
    connector: &Connector,
    shared: &Shared,
) -> Result<
    (
        Client,
        mpsc::UnboundedReceiver<tokio_postgres::Notification>,
        i64,
    ),
    PgError,
> {
    let (mut client, notes) = connector.connect().await?;
    schema::migrate(&mut client).await?;
    ensure_row(&client, shared).await?;
    timed(client.batch_execute(&format!("LISTEN {CHANNEL}"))).await?;
    let epoch = reload_state(&client, shared).await?;
    Ok((client, notes, epoch))
}

/// The account's row, at epoch 0 with an empty state, unless it exists.
async fn ensure_row(client: &Client, shared: &Shared) -> Result<(), PgError> {
    let empty = shared.seal_state(&keyless_iam::IamState::default(), 0)?;
    timed(client.execute(
        "INSERT INTO keyless_iam (account_id, epoch, state) VALUES ($1, 0, $2)
         ON CONFLICT (account_id) DO NOTHING",
        &[&shared.account_id, &empty],
    ))
    .await
    .map(drop)
}

/// A new connection after a loss: listen first, then reload everything, so that no change
/// committed while disconnected is missed.
async fn reconnect(connector: &Connector, shared: &Shared) -> Result<Connected, PgError> {
    let (client, notes) = connector.connect().await?;
    ensure_row(&client, shared).await?;
    timed(client.batch_execute(&format!("LISTEN {CHANNEL}"))).await?;
    reload_state(&client, shared).await?;
    for (name, _) in shared.watched() {
        reload_secret(&client, shared, &name).await?;
    }
    Ok((client, notes))
}

/// Loads the stored state unless it is the one held. Returns the stored epoch.
async fn reload_state(client: &Client, shared: &Shared) -> Result<i64, PgError> {
    let row = timed(client.query_one(
        "SELECT epoch, state FROM keyless_iam WHERE account_id = $1",
        &[&shared.account_id],
    ))
    .await?;
    let epoch: i64 = row.get(0);
    let held = shared.epoch();
    if epoch != held {
        let sealed: Vec<u8> = row.get(1);
        let snapshot = Arc::new(shared.open_state(&sealed, epoch)?);
        if epoch > held {
            if shared.install(epoch, snapshot) && held >= 0 {
                tracing::info!(
                    from = held,
                    to = epoch,
                    "loaded the IAM state another replica changed"
                );
            }
        } else {
            tracing::warn!(
                held,
                stored = epoch,
                "the database's IAM state is older than the one held (restored, or a standby that missed commits): serving the database's"
            );
            shared.install_stored(epoch, snapshot);
        }
    }
    Ok(epoch)
}

async fn reload_secret(client: &Client, shared: &Shared, name: &str) -> Result<(), PgError> {
    let row = timed(client.query_opt(
        "SELECT epoch, value FROM keyless_shared WHERE account_id = $1 AND name = $2",
        &[&shared.account_id, &name],
    ))
    .await?;
    if let Some(row) = row {
        let epoch: i64 = row.get(0);
        let sealed: Vec<u8> = row.get(1);
        let value = shared.open_secret(name, &sealed, epoch)?;
        shared.publish_secret(
            name,
            SharedValue {
                epoch,
                value: Arc::new(value),
            },
        );
    }
    Ok(())
}

/// One connection's life: notifications, this replica's jobs and the periodic check, until the
/// connection is lost or the store dropped.
async fn serve(
    client: &Client,
    notes: &mut mpsc::UnboundedReceiver<tokio_postgres::Notification>,
    jobs: &mut mpsc::UnboundedReceiver<Job>,
    shared: &Shared,
    check_interval: Duration,
) -> Ended {
    let mut check = tokio::time::interval(check_interval);
    check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    check.reset();
    loop {
        let outcome = tokio::select! {
            note = notes.recv() => match note {
                None => Err(PgError::Unreachable("the connection closed".into())),
                Some(note) => on_note(client, shared, note.payload()).await,
            },
            job = jobs.recv() => match job {
                None => return Ended::Closed,
                Some(job) => on_job(client, shared, job).await,
            },
            _ = check.tick() => check_epochs(client, shared).await,
        };
        match outcome {
            Ok(()) => shared.set_link(Link::Up),
            Err(e) if e.is_connection() => return Ended::Lost(e),
            // Connected, but what is stored cannot be served (unsealable, invalid): the last
            // state is served, and `/readyz` says why.
            Err(e) => shared.set_link(Link::Down(e.to_string())),
        }
    }
}

/// `iam ACCOUNT EPOCH` or `secret ACCOUNT NAME EPOCH`.
async fn on_note(client: &Client, shared: &Shared, payload: &str) -> Result<(), PgError> {
    let mut words = payload.split(' ');
    match (words.next(), words.next()) {
        (Some("iam"), Some(account)) if account == shared.account_id => {
            let epoch: i64 = words
                .next()
                .and_then(|e| e.parse().ok())
                .unwrap_or(i64::MAX);
            if epoch != shared.epoch() {
                reload_state(client, shared).await?;
            }
        }
        (Some("secret"), Some(account)) if account == shared.account_id => {
            let (Some(name), epoch) = (words.next(), words.next()) else {
                return Ok(());
            };
            let epoch: i64 = epoch.and_then(|e| e.parse().ok()).unwrap_or(i64::MAX);
            let held = shared.watched().into_iter().find(|(n, _)| n == name);
            if let Some((_, held)) = held
                && held.is_none_or(|h| h < epoch)
            {
                reload_secret(client, shared, name).await?;
            }
        }
        _ => {}
    }
    Ok(())
}

/// The periodic check: the epochs in the database against the ones held.
async fn check_epochs(client: &Client, shared: &Shared) -> Result<(), PgError> {
    let row = timed(client.query_one(
        "SELECT epoch FROM keyless_iam WHERE account_id = $1",
        &[&shared.account_id],
    ))
    .await?;
    let epoch: i64 = row.get(0);
    if epoch != shared.epoch() {
        tracing::warn!(
            held = shared.epoch(),
            stored = epoch,
            "the stored IAM state is not the one held (a lost notification?): reloading"
        );
        reload_state(client, shared).await?;
    }
    let watched = shared.watched();
    if watched.is_empty() {
        return Ok(());
    }
    let rows = timed(client.query(
        "SELECT name, epoch FROM keyless_shared WHERE account_id = $1",
        &[&shared.account_id],
    ))
    .await?;
    for row in rows {
        let (name, epoch): (String, i64) = (row.get(0), row.get(1));
        if let Some((_, held)) = watched.iter().find(|(n, _)| *n == name)
            && held.is_none_or(|h| h < epoch)
        {
            reload_secret(client, shared, &name).await?;
        }
    }
    Ok(())
}

async fn on_job(client: &Client, shared: &Shared, job: Job) -> Result<(), PgError> {
    match job {
        Job::Commit {
            base,
            sealed,
            ticket,
            reply,
        } => {
            {
                let mut held = ticket.lock().unwrap_or_else(|e| e.into_inner());
                if *held == Ticket::Withdrawn {
                    return Ok(());
                }
                *held = Ticket::Taken;
            }
            let committed = timed(client.query_opt(
                "WITH changed AS (
                     UPDATE keyless_iam SET epoch = epoch + 1, state = $3, updated_at = now()
                     WHERE account_id = $1 AND epoch = $2
                     RETURNING epoch
                 )
                 SELECT epoch, pg_notify($4, 'iam ' || $1 || ' ' || epoch) FROM changed",
                &[&shared.account_id, &base, &sealed, &CHANNEL],
            ))
            .await;
            match committed {
                Ok(Some(row)) => {
                    let _ = reply.send(Ok(Committed::At(row.get(0))));
                    Ok(())
                }
                Ok(None) => {
                    // Another replica was first: load its state, then let the caller recompute.
                    let reloaded = reload_state(client, shared).await;
                    let _ = reply.send(match &reloaded {
                        Ok(_) => Ok(Committed::Conflict),
                        Err(e) => Err(PgError::Unreachable(format!(
                            "cannot load the newer IAM state: {e}"
                        ))),
                    });
                    reloaded.map(drop)
                }
                Err(e) if e.is_connection() => {
                    let _ = reply.send(Err(PgError::Unreachable(e.to_string())));
                    Err(e)
                }
                Err(e) => {
                    let _ = reply.send(Err(e));
                    Ok(())
                }
            }
        }
        Job::GetOrCreate {
            name,
            create,
            reply,
        } => {
            let result = get_or_create(client, shared, &name, create.as_deref()).await;
            answer(reply, result)
        }
        Job::Replace {
            name,
            base,
            sealed,
            reply,
        } => {
            let result = timed(client.query_opt(
                "WITH changed AS (
                     UPDATE keyless_shared SET epoch = epoch + 1, value = $4, updated_at = now()
                     WHERE account_id = $1 AND name = $2 AND epoch = $3
                     RETURNING epoch
                 )
                 SELECT epoch, pg_notify($5, 'secret ' || $1 || ' ' || $2 || ' ' || epoch)
                 FROM changed",
                &[&shared.account_id, &name, &base, &sealed, &CHANNEL],
            ))
            .await
            .and_then(|row| match row {
                Some(row) => Ok(row.get(0)),
                None => Err(PgError::Conflict(name.clone())),
            });
            // The caller tries again on the newer value: have it loaded first.
            let result = match result {
                Err(PgError::Conflict(name)) => match reload_secret(client, shared, &name).await {
                    Ok(()) => Err(PgError::Conflict(name)),
                    Err(e) => Err(e),
                },
                other => other,
            };
            answer(reply, result)
        }
    }
}

/// Sends a job's result to its caller; a lost connection is also the worker's to handle.
fn answer<T>(
    reply: oneshot::Sender<Result<T, PgError>>,
    result: Result<T, PgError>,
) -> Result<(), PgError> {
    let lost = result.as_ref().is_err_and(PgError::is_connection);
    let _ = reply.send(result);
    if lost {
        Err(PgError::Unreachable("the connection was lost".into()))
    } else {
        Ok(())
    }
}

async fn get_or_create(
    client: &Client,
    shared: &Shared,
    name: &str,
    create: Option<&[u8]>,
) -> Result<Option<crate::Stored>, PgError> {
    if let Some(create) = create {
        timed(client.query_opt(
            "WITH created AS (
                 INSERT INTO keyless_shared (account_id, name, epoch, value) VALUES ($1, $2, 1, $3)
                 ON CONFLICT (account_id, name) DO NOTHING
                 RETURNING epoch
             )
             SELECT pg_notify($4, 'secret ' || $1 || ' ' || $2 || ' ' || epoch) FROM created",
            &[&shared.account_id, &name, &create, &CHANNEL],
        ))
        .await?;
    }
    let row = timed(client.query_opt(
        "SELECT epoch, value FROM keyless_shared WHERE account_id = $1 AND name = $2",
        &[&shared.account_id, &name],
    ))
    .await?;
    Ok(row.map(|row| (row.get(0), row.get(1))))
}
