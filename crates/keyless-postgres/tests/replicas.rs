//! Replicas on one real PostgreSQL (a throwaway cluster from `scripts/upstreams/postgres`):
//! changes reach the other replica within a second, concurrent writers lose nothing, a lost
//! notification is caught by the epoch check, the database going away fails writes cleanly
//! while reads go on, and shared secrets are created once and rotated everywhere.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use keyless_iam::{IamState, IamStore};
use keyless_postgres::{Link, PgIam, PgOptions, SealKey};
use keyless_types::Secret;

const ACCOUNT: &str = "111122223333";
const MASTER: &[u8] = b"the session key every replica shares";

struct Postgres {
    dir: tempfile::TempDir,
    url: String,
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/upstreams/postgres")
}

impl Postgres {
    /// A cluster, or `None` where PostgreSQL is not installed (scripts/test installs it; CI
    /// fails rather than skip).
    fn start() -> Option<Self> {
        let dir = tempfile::tempdir().unwrap();
        let out = Command::new(script())
            .args(["start".as_ref(), dir.path().join("pg").as_os_str()])
            .output()
            .unwrap();
        if out.status.code() == Some(3) {
            #[allow(clippy::disallowed_methods)] // CI must not skip
            let ci = std::env::var_os("CI").is_some();
            assert!(!ci, "PostgreSQL is not installed");
            eprintln!("skipped: PostgreSQL is not installed (apt-get install postgresql-15)");
            return None;
        }
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let url = String::from_utf8(out.stdout).unwrap().trim().to_owned();
        Some(Self { dir, url })
    }

    fn run(&self, what: &str) {
        let status = Command::new(script())
            .args([what.as_ref(), self.dir.path().join("pg").as_os_str()])
            .status()
            .unwrap();
        assert!(status.success(), "postgres {what}");
    }

    /// A replica whose periodic check is a minute away: what it sees within a second, it
    /// heard of by notification.
    async fn replica(&self, master: &[u8]) -> Result<PgIam, keyless_postgres::PgError> {
        self.replica_checking(master, Duration::from_secs(60)).await
    }

    async fn replica_checking(
        &self,
        master: &[u8],
        check_interval: Duration,
    ) -> Result<PgIam, keyless_postgres::PgError> {
        PgIam::connect(PgOptions {
            url: self.url.clone(),
            password: None,
            ca_bundle: None,
            account_id: ACCOUNT.into(),
            seal: SealKey::derive(master),
            check_interval,
        })
        .await
    }

    async fn raw(&self) -> tokio_postgres::Client {
        let (client, connection) = tokio_postgres::connect(&self.url, tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(connection);
        client
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let _ = Command::new(script())
            .args(["destroy".as_ref(), self.dir.path().join("pg").as_os_str()])
            .status();
    }
}

fn create_user(store: &dyn IamStore, name: &str) -> Result<(), keyless_iam::IamError> {
    store
        .update(&mut |s| s.create_user(name, "/", format!("AIDA{name}"), 1).map(drop))
        .map(drop)
}

fn has_user(store: &dyn IamStore, name: &str) -> bool {
    store.snapshot().state.user(name).is_ok()
}

/// Waits (in 10 ms steps, at most `limit`) for `done`; returns the steps taken.
async fn within(limit: Duration, done: impl Fn() -> bool) -> Option<u32> {
    let steps = (limit.as_millis() / 10) as u32;
    for step in 0..=steps {
        if done() {
            return Some(step);
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_share_iam_changes_secrets_and_survive_the_database_going_away() {
    let Some(pg) = Postgres::start() else { return };
    let (a, b) = tokio::join!(pg.replica(MASTER), pg.replica(MASTER));
    let (a, b) = (Arc::new(a.unwrap()), Arc::new(b.unwrap()));
    assert!(a.was_empty() && b.was_empty());

    // A change on A reaches B within a second, by its notification.
    create_user(a.as_ref(), "alice").unwrap();
    let steps = within(Duration::from_secs(1), || has_user(b.as_ref(), "alice")).await;
    assert!(steps.is_some(), "B never saw A's user");
    assert_eq!(a.epoch(), b.epoch());

    // Writers on both replicas at once: every change lands, in one order both agree on.
    let writers: Vec<_> = [("a", Arc::clone(&a)), ("b", Arc::clone(&b))]
        .into_iter()
        .map(|(tag, store)| {
            std::thread::spawn(move || {
                for i in 0..15 {
                    create_user(store.as_ref(), &format!("{tag}{i}")).unwrap();
                }
            })
        })
        .collect();
    for w in writers {
        w.join().unwrap();
    }
    let all = || {
        (0..15).all(|i| {
            [a.as_ref(), b.as_ref()]
                .iter()
                .all(|s| has_user(*s, &format!("a{i}")) && has_user(*s, &format!("b{i}")))
        })
    };
    assert!(within(Duration::from_secs(2), all).await.is_some());
    assert_eq!(a.epoch(), 31);
    assert_eq!(a.snapshot().state, b.snapshot().state);

    // A change committed without its notification (as if lost) is found by the epoch check
    // (of a replica that checks every 300 ms; A and B, checking every minute, do not see it).
    let c = pg
        .replica_checking(MASTER, Duration::from_millis(300))
        .await
        .unwrap();
    let mut state = a.snapshot().state.clone();
    state
        .create_user("quiet", "/", "AIDAQUIET".into(), 1)
        .unwrap();
    let sealed = a.seal_state(&state, 32).unwrap();
    let raw = pg.raw().await;
    raw.execute(
        "UPDATE keyless_iam SET epoch = 32, state = $2 WHERE account_id = $1",
        &[&ACCOUNT, &sealed],
    )
    .await
    .unwrap();
    assert!(
        within(Duration::from_secs(2), || has_user(&c, "quiet"))
            .await
            .is_some(),
        "the epoch check did not catch the unannounced change"
    );
    assert!(!has_user(b.as_ref(), "quiet"), "B has no check due yet");
    // A state sealed for another epoch (an old one written back) does not open: C keeps its
    // state rather than serve it.
    let replayed = a.seal_state(&IamState::default(), 32).unwrap();
    raw.execute(
        "UPDATE keyless_iam SET epoch = 33, state = $2 WHERE account_id = $1",
        &[&ACCOUNT, &replayed],
    )
    .await
    .unwrap();
    let mut link = c.link();
    tokio::time::timeout(Duration::from_secs(2), link.wait_for(|l| *l != Link::Up))
        .await
        .expect("the unopenable state was not reported")
        .unwrap();
    assert!(has_user(&c, "quiet"));
    // The database going back (a restore) is followed: its state is the truth.
    let restored = a.seal_state(&a.snapshot().state, 5).unwrap();
    raw.execute(
        "UPDATE keyless_iam SET epoch = 5, state = $2 WHERE account_id = $1",
        &[&ACCOUNT, &restored],
    )
    .await
    .unwrap();
    assert!(
        within(Duration::from_secs(2), || c.epoch() == 5)
            .await
            .is_some(),
        "a replica did not follow the database back"
    );
    tokio::time::timeout(Duration::from_secs(2), link.wait_for(|l| *l == Link::Up))
        .await
        .unwrap()
        .unwrap();
    assert!(!has_user(&c, "quiet"));
    drop(c);
    // A, holding a newer epoch than the database now, conflicts, loads the database's state
    // and commits on it; B follows that change's notification down to the restored line.
    create_user(a.as_ref(), "after-restore").unwrap();
    assert_eq!(a.epoch(), 6);
    assert!(!has_user(a.as_ref(), "quiet"));
    assert!(
        within(Duration::from_secs(1), || has_user(
            b.as_ref(),
            "after-restore"
        ))
        .await
        .is_some()
    );
    assert_eq!(b.epoch(), 6);

    // Secrets: the first replica's value wins; a replacement reaches the other's watcher.
    let mut on_a = a
        .shared("root", || Ok(Secret::new("from a")))
        .await
        .unwrap();
    let on_b = b
        .shared("root", || Ok(Secret::new("from b")))
        .await
        .unwrap();
    let held = on_b.borrow().clone().unwrap();
    assert_eq!(held.value.expose(), "from a");
    b.replace_shared("root", held.epoch, &Secret::new("rotated"))
        .await
        .unwrap();
    tokio::time::timeout(Duration::from_secs(1), on_a.changed())
        .await
        .expect("A never saw the rotation")
        .unwrap();
    assert_eq!(on_a.borrow().as_ref().unwrap().value.expose(), "rotated");
    let stale = a
        .replace_shared("root", held.epoch, &Secret::new("late"))
        .await;
    assert!(
        matches!(stale, Err(keyless_postgres::PgError::Conflict(_))),
        "{stale:?}"
    );

    // The database goes away: reads go on from the snapshot, writes fail as unavailable.
    drop(raw);
    pg.run("stop");
    let err = create_user(a.as_ref(), "during").unwrap_err();
    assert_eq!(err.code(), "ServiceUnavailable", "{err}");
    assert!(has_user(a.as_ref(), "alice"));
    // Back: the replicas reconnect by themselves and writes work again.
    pg.run("start");
    let mut written = false;
    for _ in 0..100 {
        if create_user(a.as_ref(), "after").is_ok() {
            written = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        written,
        "writes never worked again after PostgreSQL came back"
    );
    assert!(
        within(Duration::from_secs(6), || has_user(b.as_ref(), "after"))
            .await
            .is_some(),
        "B did not catch up after the database came back"
    );
    assert!(!has_user(b.as_ref(), "during"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_with_another_session_key_is_refused_and_the_database_holds_no_secret() {
    let Some(pg) = Postgres::start() else { return };
    let a = pg.replica(MASTER).await.unwrap();
    a.update(&mut |s| {
        s.create_user("bob", "/", "AIDABOB".into(), 1)?;
        s.create_access_key(
            "bob",
            "AKIABOB0000000000001".into(),
            Secret::new("the-secret-access-key-of-bob"),
            1,
        )
        .map(drop)
    })
    .unwrap();
    let err = pg.replica(b"some other session key").await.unwrap_err();
    assert!(
        err.to_string().contains("--session-key-file"),
        "unclear: {err}"
    );
    // Nothing readable in the table: no name, no key id, no secret.
    let raw = pg.raw().await;
    let row = raw
        .query_one(
            "SELECT state FROM keyless_iam WHERE account_id = $1",
            &[&ACCOUNT],
        )
        .await
        .unwrap();
    let stored: Vec<u8> = row.get(0);
    let text = String::from_utf8_lossy(&stored);
    assert!(!text.contains("bob") && !text.contains("AKIABOB") && !text.contains("the-secret"));
    // The schema is at this build's version, applied once.
    let versions: i64 = raw
        .query_one("SELECT count(*) FROM keyless_schema", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(versions, i64::from(keyless_postgres::SCHEMA_VERSION));
}
