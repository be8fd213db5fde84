//! The schema, versioned: each migration is applied once, in order, in one transaction under an
//! advisory lock, so that replicas starting together apply it once between them.

use tokio_postgres::Client;

use crate::PgError;

/// The migrations, in order; the index plus one is the version. Never edit one that shipped:
/// append.
const MIGRATIONS: &[&str] = &[
    // 1: the IAM state of each account, one sealed document with the epoch of its last change;
    // the secrets the replicas share (root key, issuer keys), sealed, each with its own epoch.
    "CREATE TABLE keyless_iam (
         account_id text PRIMARY KEY,
         epoch bigint NOT NULL,
         state bytea NOT NULL,
         updated_at timestamptz NOT NULL DEFAULT now()
     );
     CREATE TABLE keyless_shared (
         account_id text NOT NULL,
         name text NOT NULL,
         epoch bigint NOT NULL,
         value bytea NOT NULL,
         updated_at timestamptz NOT NULL DEFAULT now(),
         PRIMARY KEY (account_id, name)
     );",
];

/// The advisory lock migrations hold: "keyless" in ASCII.
const LOCK: i64 = 0x006b_6579_6c65_7373;

/// The version this build knows.
pub const VERSION: i32 = MIGRATIONS.len() as i32;

/// Applies the migrations the database lacks. Returns how many were applied.
pub(crate) async fn migrate(client: &mut Client) -> Result<usize, PgError> {
    let tx = client.transaction().await.map_err(PgError::query)?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&LOCK])
        .await
        .map_err(PgError::query)?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS keyless_schema (
             version integer PRIMARY KEY,
             applied_at timestamptz NOT NULL DEFAULT now()
         )",
    )
    .await
    .map_err(PgError::query)?;
    let row = tx
        .query_one("SELECT coalesce(max(version), 0) FROM keyless_schema", &[])
        .await
        .map_err(PgError::query)?;
    let have: i32 = row.get(0);
    if have > VERSION {
        return Err(PgError::NewerSchema {
            found: have,
            known: VERSION,
        });
    }
    let mut applied = 0;
    for (version, sql) in (1..).zip(MIGRATIONS) {
        if version <= have {
            continue;
        }
        tx.batch_execute(sql).await.map_err(PgError::query)?;
        tx.execute(
            "INSERT INTO keyless_schema (version) VALUES ($1)",
            &[&version],
        )
        .await
        .map_err(PgError::query)?;
        tracing::info!(version, "applied a PostgreSQL schema migration");
        applied += 1;
    }
    tx.commit().await.map_err(PgError::query)?;
    Ok(applied)
}
