//! `keyless backup download`: an object to a file or stdout in parallel ranges, checked against
//! the object's ETag; a file appears under its name only once it checks out.
//! <https://docs.aws.amazon.com/AmazonS3/latest/API/API_GetObject.html>

use std::io::Write as _;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use bytes::Bytes;
use futures_util::StreamExt as _;
use md5::{Digest as _, Md5};
use tokio::io::AsyncWriteExt as _;

use super::progress::Progress;
use super::{
    DownloadArgs, Failure, PART_SIZE_META, S3Url, bare_etag, classify, hex, md5, multipart_etag,
    with_retries,
};

/// Ranges of objects whose parts are unknown.
const RANGE: u64 = 16 << 20;

/// How the data can be checked against the ETag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Check {
    /// A single-part object: the ETag is the MD5 of the data.
    Whole,
    /// A multipart object with parts of this size: the ETag is the MD5 of the part MD5s.
    Parts(u64),
    /// Neither can be told (another tool's multipart upload, or a store whose ETags are not
    /// MD5s): the download is not checked.
    None,
}

impl Check {
    fn for_object(size: u64, etag: &str, part_size: Option<u64>) -> Self {
        let is_hex = |s: &str| s.len() == 32 && s.bytes().all(|b| b.is_ascii_hexdigit());
        match etag.split_once('-') {
            None if is_hex(etag) => Self::Whole,
            Some((digest, count)) if is_hex(digest) => {
                let count: u64 = count.parse().unwrap_or(0);
                match part_size {
                    Some(part) if part > 0 && size.div_ceil(part) == count => Self::Parts(part),
                    _ => Self::None,
                }
            }
            _ => Self::None,
        }
    }

    /// The range size: one part per range when parts are checked.
    fn range(self) -> u64 {
        match self {
            Self::Parts(part) => part,
            Self::Whole | Self::None => RANGE,
        }
    }
}

pub(super) async fn run(args: DownloadArgs) -> anyhow::Result<()> {
    let source = S3Url::parse(&args.source)?;
    anyhow::ensure!(
        !source.is_prefix(),
        "{source} names a prefix; give the object's key (see `keyless backup list`)"
    );
    let s3 = super::s3_client(&args.common).await?;
    let head = with_retries(|| async {
        s3.head_object()
            .bucket(&source.bucket)
            .key(&source.key)
            .send()
            .await
            .map_err(|e| classify(e, &format!("reading {source}")))
    })
    .await?;
    let size = u64::try_from(head.content_length().unwrap_or(0)).unwrap_or(0);
    let etag = bare_etag(head.e_tag());
    let part_size = head
        .metadata()
        .and_then(|m| m.get(PART_SIZE_META))
        .and_then(|v| v.parse().ok());
    let check = Check::for_object(size, &etag, part_size);
    if check == Check::None {
        tracing::warn!(
            etag,
            "{source} was not uploaded by keyless backup and its ETag is not an MD5, so the download cannot be checked"
        );
    }

    let destination = destination_path(&args.destination, &source.key);
    let (sink, partial) = Sink::open(&destination)?;
    let progress = Progress::start("download", Some(size));
    let fetch = Fetch {
        s3,
        source: source.clone(),
        etag: etag.clone(),
        size,
        check,
        concurrency: usize::from(args.concurrency),
    };
    let result = fetch.run(sink, &progress).await;
    let summary = progress.finish(&format!("downloaded {source}"));
    match (result, partial) {
        (Ok(sink), Some(partial)) => {
            sink.finish().await?;
            let destination = PathBuf::from(&destination);
            std::fs::rename(&partial, &destination).with_context(|| {
                format!("moving {} to {}", partial.display(), destination.display())
            })?;
            eprintln!("{summary} to {}", destination.display());
            Ok(())
        }
        (Ok(sink), None) => {
            sink.finish().await?;
            eprintln!("{summary}");
            Ok(())
        }
        (Err(e), Some(partial)) => {
            let _ = std::fs::remove_file(&partial);
            Err(e.context(format!("nothing was written to {destination}")))
        }
        (Err(e), None) => Err(e.context("the data written to stdout is incomplete or corrupt")),
    }
}

/// The file to write: the argument, or the key's last segment inside it when it is a directory
/// (`.`, `restore/`), as `aws s3 cp` and s3cmd do.
fn destination_path(argument: &str, key: &str) -> String {
    if argument == "-" {
        return argument.to_owned();
    }
    let is_dir = argument.ends_with('/') || std::path::Path::new(argument).is_dir();
    if !is_dir {
        return argument.to_owned();
    }
    let name = key.rsplit('/').next().unwrap_or(key);
    format!("{}/{name}", argument.trim_end_matches('/'))
}

struct Fetch {
    s3: aws_sdk_s3::Client,
    source: S3Url,
    etag: String,
    size: u64,
    check: Check,
    concurrency: usize,
}

impl Fetch {
    /// Fetches the ranges, `concurrency` at a time, and writes them in order.
    async fn run(&self, mut sink: Sink, progress: &Progress) -> anyhow::Result<Sink> {
        let range = self.check.range();
        let ranges =
            (0..self.size.div_ceil(range)).map(|i| (i * range, ((i + 1) * range).min(self.size)));
        let mut chunks = futures_util::stream::iter(ranges)
            .map(|(start, end)| self.range(start, end))
            .buffered(self.concurrency);
        let mut whole = Md5::new();
        let mut digests = Vec::new();
        while let Some(chunk) = chunks.next().await {
            let (data, digest) = chunk?;
            match self.check {
                Check::Whole => whole.update(&data),
                Check::Parts(_) => digests.push(digest),
                Check::None => {}
            }
            progress.add(data.len() as u64);
            sink.write(data).await?;
        }
        let computed = match self.check {
            Check::Whole => hex(&whole.finalize()),
            Check::Parts(_) => multipart_etag(&digests),
            Check::None => return Ok(sink),
        };
        anyhow::ensure!(
            computed == self.etag,
            "{} does not match its checksum: the stored ETag is {} but the data gives {computed}; \
             the object is corrupt",
            self.source,
            self.etag
        );
        Ok(sink)
    }

    /// One range, retried; with its MD5 when parts are checked.
    async fn range(&self, start: u64, end: u64) -> anyhow::Result<(Bytes, [u8; 16])> {
        let what = format!("reading bytes {start}-{} of {}", end - 1, self.source);
        let data = with_retries(|| async {
            let out = self
                .s3
                .get_object()
                .bucket(&self.source.bucket)
                .key(&self.source.key)
                .range(format!("bytes={start}-{}", end - 1))
                .if_match(format!("\"{}\"", self.etag))
                .send()
                .await
                .map_err(|e| match classify(e, &what) {
                    Failure::Fatal(e) if format!("{e:#}").contains("PreconditionFailed") => {
                        Failure::Fatal(e.context("the object was replaced during the download"))
                    }
                    other => other,
                })?;
            let data = out
                .body
                .collect()
                .await
                .map_err(|e| Failure::Transient(anyhow::anyhow!("{what}: {e}")))?
                .into_bytes();
            if data.len() as u64 != end - start {
                return Err(Failure::Transient(anyhow::anyhow!(
                    "{what}: the server sent {} bytes",
                    data.len()
                )));
            }
            Ok(data)
        })
        .await?;
        let digest = match self.check {
            Check::Parts(_) => {
                let part = data.clone();
                tokio::task::spawn_blocking(move || md5(&part)).await?
            }
            Check::Whole | Check::None => [0; 16],
        };
        Ok((data, digest))
    }
}

/// Where the data goes: a partial file beside the destination, or stdout.
enum Sink {
    File(Arc<std::fs::File>),
    Stdout(tokio::io::Stdout),
}

impl Sink {
    /// Opens `DESTINATION.keyless-partial`, or stdout for `-`.
    fn open(destination: &str) -> anyhow::Result<(Self, Option<PathBuf>)> {
        if destination == "-" {
            return Ok((Self::Stdout(tokio::io::stdout()), None));
        }
        let path = PathBuf::from(format!("{destination}.keyless-partial"));
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .with_context(|| format!("creating {}", path.display()))?;
        Ok((Self::File(Arc::new(file)), Some(path)))
    }

    async fn write(&mut self, data: Bytes) -> anyhow::Result<()> {
        match self {
            Self::File(file) => {
                let file = file.clone();
                tokio::task::spawn_blocking(move || (&*file).write_all(&data))
                    .await?
                    .context("writing the download")
            }
            Self::Stdout(out) => out.write_all(&data).await.context("writing to stdout"),
        }
    }

    /// Makes the data durable before the file takes its name.
    async fn finish(self) -> anyhow::Result<()> {
        match self {
            Self::File(file) => tokio::task::spawn_blocking(move || file.sync_all())
                .await?
                .context("flushing the download to disk"),
            Self::Stdout(mut out) => out.flush().await.context("writing to stdout"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_directory_destination_takes_the_key_name() {
        assert_eq!(destination_path("-", "a/b.tar"), "-");
        assert_eq!(destination_path("out.tar", "a/b.tar"), "out.tar");
        assert_eq!(destination_path("restore/", "a/b.tar"), "restore/b.tar");
        let dir = std::env::temp_dir();
        let expected = format!("{}/b.tar", dir.to_str().unwrap().trim_end_matches('/'));
        assert_eq!(destination_path(dir.to_str().unwrap(), "a/b.tar"), expected);
    }

    #[test]
    fn the_etag_says_how_to_check() {
        let md5 = "9e107d9d372bb6826bd81d3542a419d6";
        assert_eq!(Check::for_object(43, md5, None), Check::Whole);
        let multi = format!("{md5}-3");
        assert_eq!(
            Check::for_object(40 << 20, &multi, Some(16 << 20)),
            Check::Parts(16 << 20)
        );
        // The stored part size disagrees with the part count: not checkable.
        assert_eq!(
            Check::for_object(40 << 20, &multi, Some(8 << 20)),
            Check::None
        );
        assert_eq!(Check::for_object(40 << 20, &multi, None), Check::None);
        // KMS-encrypted objects have ETags that are not MD5s.
        assert_eq!(Check::for_object(1, "not-an-md5", None), Check::None);
    }
}
