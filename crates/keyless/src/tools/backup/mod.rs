//! `keyless backup`: GitLab-sized backups to and from a bucket with whatever credentials the
//! pod has, where s3cmd's web identity reaches only AWS's own STS.
//!
//! Uploads are multipart with parts in parallel and bounded memory, resumable, and verified end
//! to end: every part travels with its Content-MD5, and the object's ETag (the MD5 of the part
//! MD5s for a multipart object) is recomputed from the data on download, with the part size
//! stored in the object's metadata.
//! <https://docs.aws.amazon.com/AmazonS3/latest/userguide/checking-object-integrity.html>

mod download;
mod list;
mod progress;
pub(crate) mod s3cmd;
mod upload;

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Args, Subcommand};
pub(crate) use keyless_types::hex::encode as hex;

use crate::tools::client::{Client, ClientArgs};

/// `x-amz-meta-keyless-part-size`: the part size of a multipart upload, so that its ETag can be
/// checked on download.
const PART_SIZE_META: &str = "keyless-part-size";

/// S3's limits on multipart uploads.
const MIN_PART: u64 = 5 << 20;
const MAX_PART: u64 = 5 << 30;
const MAX_PARTS: u64 = 10_000;

/// Back up to and restore from a bucket.
#[derive(Debug, Subcommand)]
pub(crate) enum BackupCommand {
    /// Upload a file, or stdin (`-`), to s3://BUCKET/PREFIX/ (the file's name is appended) or
    /// to s3://BUCKET/KEY.
    ///
    /// An interrupted upload resumes when the same command runs again: parts already in the
    /// bucket with the same content are not sent twice. Example, GitLab's backup job:
    ///
    ///   keyless backup upload --s3cmd-config s3cmd.config 1732590000_gitlab_backup.tar s3://backups/
    Upload(UploadArgs),
    /// Download s3://BUCKET/KEY to a file, or to stdout (`-`), checking it against the checksum
    /// stored with the object; a file is only put in place once it checks out.
    Download(DownloadArgs),
    /// List the backups under s3://BUCKET/PREFIX/, oldest first.
    List(ListArgs),
    /// Delete all but the newest N backups under s3://BUCKET/PREFIX/.
    Prune(PruneArgs),
}

/// Settings every backup command shares.
#[derive(Debug, Args)]
pub(crate) struct CommonArgs {
    #[command(flatten)]
    pub(crate) client: ClientArgs,

    /// Read the endpoint (`host_base`, `use_https`), region (`bucket_location`) and keys
    /// (`access_key`, `secret_key`, `access_token`) from an s3cmd configuration, such as GitLab's
    /// `s3cmd.config` secret; keys there win over every other credential source, as in s3cmd.
    #[arg(long, value_name = "FILE")]
    pub(crate) s3cmd_config: Option<std::path::PathBuf>,
}

/// Arguments of `keyless backup upload`.
#[derive(Debug, Args)]
pub(crate) struct UploadArgs {
    /// The file to upload, or `-` for stdin.
    #[arg(value_name = "FILE|-")]
    pub(crate) source: String,

    /// s3://BUCKET/PREFIX/ (ends with `/`: the file's name is appended) or s3://BUCKET/KEY.
    #[arg(value_name = "S3-URL")]
    pub(crate) destination: String,

    /// The object's name under the prefix, for stdin.
    #[arg(long, value_name = "NAME")]
    pub(crate) name: Option<String>,

    /// The size of each part (e.g. 16MiB, 64MiB); grown for large files to stay within 10,000
    /// parts. Memory use is about part size × concurrency.
    #[arg(long, default_value = "16MiB", value_parser = parse_size, value_name = "SIZE")]
    pub(crate) part_size: u64,

    /// Parts in flight at once.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=64), value_name = "N")]
    pub(crate) concurrency: u16,

    /// Start afresh instead of resuming an unfinished upload to the same key; unfinished uploads
    /// to the key are aborted first.
    #[arg(long)]
    pub(crate) no_resume: bool,

    #[command(flatten)]
    pub(crate) common: CommonArgs,
}

/// Arguments of `keyless backup download`.
#[derive(Debug, Args)]
pub(crate) struct DownloadArgs {
    /// s3://BUCKET/KEY.
    #[arg(value_name = "S3-URL")]
    pub(crate) source: String,

    /// The file to write, or `-` for stdout; an existing file is replaced only once the
    /// download checks out.
    #[arg(value_name = "FILE|-")]
    pub(crate) destination: String,

    /// Ranges in flight at once.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=64), value_name = "N")]
    pub(crate) concurrency: u16,

    #[command(flatten)]
    pub(crate) common: CommonArgs,
}

/// Arguments of `keyless backup list`.
#[derive(Debug, Args)]
pub(crate) struct ListArgs {
    /// s3://BUCKET/ or s3://BUCKET/PREFIX/.
    #[arg(value_name = "S3-URL")]
    pub(crate) prefix: String,

    /// Print JSON lines (`Key`, `Size`, `LastModified`, `ETag`).
    #[arg(long)]
    pub(crate) json: bool,

    #[command(flatten)]
    pub(crate) common: CommonArgs,
}

/// Arguments of `keyless backup prune`.
#[derive(Debug, Args)]
pub(crate) struct PruneArgs {
    /// s3://BUCKET/ or s3://BUCKET/PREFIX/.
    #[arg(value_name = "S3-URL")]
    pub(crate) prefix: String,

    /// How many of the newest backups to keep (by last-modified time, then name).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub(crate) keep: u32,

    /// Only say what would be deleted.
    #[arg(long)]
    pub(crate) dry_run: bool,

    #[command(flatten)]
    pub(crate) common: CommonArgs,
}

pub(crate) fn run(cmd: BackupCommand) -> anyhow::Result<ExitCode> {
    let runtime = crate::tools::client::runtime()?;
    runtime.block_on(async {
        match cmd {
            BackupCommand::Upload(args) => upload::run(args).await,
            BackupCommand::Download(args) => download::run(args).await,
            BackupCommand::List(args) => list::list(args).await,
            BackupCommand::Prune(args) => list::prune(args).await,
        }
    })?;
    Ok(ExitCode::SUCCESS)
}

/// The S3 client for a backup command: the s3cmd configuration's settings, if any, under the
/// command line's.
async fn s3_client(common: &CommonArgs) -> anyhow::Result<aws_sdk_s3::Client> {
    let mut args = common.client.clone();
    let explicit = match &common.s3cmd_config {
        Some(path) => s3cmd::apply(path, &mut args)?,
        None => None,
    };
    let client = Client::load(&args, explicit).await?;
    if let Ok(creds) = client.credentials().await {
        let source = crate::tools::client::describe_source(&creds, args.profile.as_deref());
        tracing::info!(
            source = %source,
            endpoint = client.s3_endpoint.as_deref().unwrap_or("AWS"),
            "credentials found"
        );
    }
    Ok(client.s3_for_transfers())
}

/// `s3://bucket/key`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct S3Url {
    pub(crate) bucket: String,
    pub(crate) key: String,
}

impl S3Url {
    pub(crate) fn parse(url: &str) -> anyhow::Result<Self> {
        let rest = url
            .strip_prefix("s3://")
            .with_context(|| format!("`{url}` is not an s3://BUCKET/KEY URL"))?;
        let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
        anyhow::ensure!(!bucket.is_empty(), "`{url}` names no bucket");
        Ok(Self {
            bucket: bucket.to_owned(),
            key: key.to_owned(),
        })
    }

    /// Whether the URL names a prefix (a folder) rather than an object.
    pub(crate) fn is_prefix(&self) -> bool {
        self.key.is_empty() || self.key.ends_with('/')
    }
}

impl std::fmt::Display for S3Url {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "s3://{}/{}", self.bucket, self.key)
    }
}

/// `16MiB`, `64M`, `1GiB`, `5242880`.
pub(crate) fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, unit) = t.split_at(split);
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("`{text}` is not a size such as 16MiB"))?;
    let shift = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        _ => return Err(format!("`{text}`: the unit must be KiB, MiB or GiB")),
    };
    n.checked_mul(1 << shift)
        .ok_or_else(|| format!("`{text}` is too large"))
}

/// Whether a failed attempt is worth repeating.
pub(crate) enum Failure {
    /// A network error, a timeout, a 5xx or a throttle.
    Transient(anyhow::Error),
    /// Anything else: a 4xx, a checksum the server refused, a local error.
    Fatal(anyhow::Error),
}

/// Classifies an SDK error: server errors, throttling and transport errors are transient.
pub(crate) fn classify<E>(
    e: aws_sdk_s3::error::SdkError<E, aws_sdk_s3::config::http::HttpResponse>,
    what: &str,
) -> Failure
where
    E: std::error::Error + aws_sdk_s3::error::ProvideErrorMetadata + Send + Sync + 'static,
{
    use aws_sdk_s3::error::{ProvideErrorMetadata as _, SdkError};
    let transient = match &e {
        SdkError::ServiceError(_) => {
            matches!(
                e.code(),
                Some("InternalError" | "SlowDown" | "ServiceUnavailable" | "RequestTimeout")
            )
        }
        SdkError::ResponseError(_) => true,
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) => true,
        _ => false,
    };
    let error = anyhow::anyhow!("{what}: {}", crate::tools::client::sdk_error(&e));
    if transient {
        Failure::Transient(error)
    } else {
        Failure::Fatal(error)
    }
}

/// Runs `attempt` up to five times, backing off 0.5 s, 1 s, 2 s, 4 s between transient failures.
pub(crate) async fn with_retries<T, F, Fut>(mut attempt: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, Failure>>,
{
    const ATTEMPTS: u32 = 5;
    let mut delay = Duration::from_millis(500);
    for n in 1..=ATTEMPTS {
        match attempt().await {
            Ok(value) => return Ok(value),
            Err(Failure::Fatal(e)) => return Err(e),
            Err(Failure::Transient(e)) if n == ATTEMPTS => {
                return Err(e.context(format!("gave up after {ATTEMPTS} attempts")));
            }
            Err(Failure::Transient(e)) => {
                tracing::warn!(error = %format!("{e:#}"), retry_in = ?delay, "transient failure");
                tokio::time::sleep(delay).await;
                delay *= 2;
            }
        }
    }
    unreachable!("the last attempt returns")
}

/// The hex MD5 of the MD5s of the parts, with `-N`: S3's ETag of a multipart object.
pub(crate) fn multipart_etag(part_md5s: &[[u8; 16]]) -> String {
    use md5::{Digest as _, Md5};
    let mut hasher = Md5::new();
    for md5 in part_md5s {
        hasher.update(md5);
    }
    format!("{}-{}", hex(&hasher.finalize()), part_md5s.len())
}

pub(crate) fn md5(data: &[u8]) -> [u8; 16] {
    use md5::{Digest as _, Md5};
    Md5::digest(data).into()
}

/// An ETag without its quotes.
pub(crate) fn bare_etag(etag: Option<&str>) -> String {
    etag.unwrap_or_default().trim_matches('"').to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_name_a_bucket_and_a_key_or_a_prefix() {
        let url = S3Url::parse("s3://backups/gitlab/1_gitlab_backup.tar").unwrap();
        assert_eq!(url.bucket, "backups");
        assert_eq!(url.key, "gitlab/1_gitlab_backup.tar");
        assert!(!url.is_prefix());
        assert!(S3Url::parse("s3://backups").unwrap().is_prefix());
        assert!(S3Url::parse("s3://backups/daily/").unwrap().is_prefix());
        assert!(S3Url::parse("backups/x").is_err());
        assert!(S3Url::parse("s3:///x").is_err());
    }

    #[test]
    fn sizes_take_binary_units() {
        assert_eq!(parse_size("16MiB"), Ok(16 << 20));
        assert_eq!(parse_size("64M"), Ok(64 << 20));
        assert_eq!(parse_size("1gib"), Ok(1 << 30));
        assert_eq!(parse_size("5242880"), Ok(5_242_880));
        assert!(parse_size("16 parsecs").is_err());
        assert!(parse_size("MiB").is_err());
        assert!(parse_size("99999999999999GiB").is_err());
    }

    #[test]
    fn multipart_etag_is_the_md5_of_the_part_md5s() {
        // Two parts whose MD5s are those of "a" and "b": md5(md5("a") ‖ md5("b")) with `-2`.
        let etag = multipart_etag(&[md5(b"a"), md5(b"b")]);
        let mut both = md5(b"a").to_vec();
        both.extend_from_slice(&md5(b"b"));
        assert_eq!(etag, format!("{}-2", hex(&md5(&both))));
        assert_eq!(hex(&md5(b"")), "d41d8cd98f00b204e9800998ecf8427e");
    }
}
