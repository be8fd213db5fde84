//! `keyless backup download`: an object to a file or stdout in parallel ranges, checked against
//! the object's ETag; a file appears under its name only once it checks out.
//! <https://docs.aws.amazon.com/AmazonS3/latest/API/API_GetObject.html>

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use bytes::Bytes;
use futures_util::{StreamExt as _, TryStreamExt as _};
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
            .map_err(|e| {
                let missing = e.raw_response().is_some_and(|r| r.status().as_u16() == 404);
                match classify(e, &format!("reading {source}")) {
                    Failure::Fatal(_) if missing => Failure::Fatal(anyhow::anyhow!(
                        "{source} does not exist (see `keyless backup list`)"
                    )),
                    other => other,
                }
            })
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
    async fn run(&self, sink: Sink, progress: &Progress) -> anyhow::Result<Sink> {
        let (sink, computed) = match sink {
            Sink::File(file) => {
                let computed = self.to_file(&file, progress).await?;
                (Sink::File(file), computed)
            }
            Sink::Stdout(out) => {
                let (out, computed) = self.to_stdout(out, progress).await?;
                (Sink::Stdout(out), computed)
            }
        };
        if let Some(computed) = computed {
            anyhow::ensure!(
                computed == self.etag,
                "{} does not match its checksum: the stored ETag is {} but the data gives \
                 {computed}; the object is corrupt",
                self.source,
                self.etag
            );
        }
        Ok(sink)
    }

    /// `(start, end)` of ranges of `size` bytes.
    fn ranges(&self, size: u64) -> impl Iterator<Item = (u64, u64)> + use<> {
        let total = self.size;
        (0..total.div_ceil(size)).map(move |i| (i * size, ((i + 1) * size).min(total)))
    }

    /// Ranges in parallel, each written at its offset as it streams in and hashed on the way:
    /// no range is held in memory. A single-part object is one stream, hashed in order.
    async fn to_file(
        &self,
        file: &Arc<std::fs::File>,
        progress: &Progress,
    ) -> anyhow::Result<Option<String>> {
        let range = match self.check {
            Check::Whole => self.size.max(1),
            check => check.range(),
        };
        let mut digests: Vec<(u64, [u8; 16])> = futures_util::stream::iter(self.ranges(range))
            .map(|(start, end)| async move {
                let digest = self.range_to_file(start, end, file, progress).await?;
                anyhow::Ok((start, digest))
            })
            .buffer_unordered(self.concurrency)
            .try_collect()
            .await?;
        digests.sort_unstable_by_key(|(start, _)| *start);
        let digests: Vec<[u8; 16]> = digests.into_iter().map(|(_, d)| d).collect();
        Ok(match self.check {
            Check::Whole => Some(hex(digests
                .first()
                .copied()
                .unwrap_or_else(|| md5(b""))
                .as_slice())),
            Check::Parts(_) => Some(multipart_etag(&digests)),
            Check::None => None,
        })
    }

    /// Ranges in parallel, `concurrency` held in memory, written to stdout in order.
    async fn to_stdout(
        &self,
        mut out: tokio::io::Stdout,
        progress: &Progress,
    ) -> anyhow::Result<(tokio::io::Stdout, Option<String>)> {
        let mut chunks = futures_util::stream::iter(self.ranges(self.check.range()))
            .map(|(start, end)| self.range_bytes(start, end))
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
            out.write_all(&data).await.context("writing to stdout")?;
        }
        let computed = match self.check {
            Check::Whole => Some(hex(&whole.finalize())),
            Check::Parts(_) => Some(multipart_etag(&digests)),
            Check::None => None,
        };
        Ok((out, computed))
    }

    /// `GetObject` of one range, pinned to the ETag seen at the start: an object replaced
    /// meanwhile answers 412 instead of mixing versions.
    async fn get(
        &self,
        start: u64,
        end: u64,
        what: &str,
    ) -> Result<aws_sdk_s3::operation::get_object::GetObjectOutput, Failure> {
        self.s3
            .get_object()
            .bucket(&self.source.bucket)
            .key(&self.source.key)
            .range(format!("bytes={start}-{}", end - 1))
            .if_match(format!("\"{}\"", self.etag))
            .send()
            .await
            .map_err(|e| match classify(e, what) {
                Failure::Fatal(e) if format!("{e:#}").contains("PreconditionFailed") => {
                    Failure::Fatal(e.context("the object was replaced during the download"))
                }
                other => other,
            })
    }

    /// One range streamed to its place in the file, retried from its start; its MD5.
    async fn range_to_file(
        &self,
        start: u64,
        end: u64,
        file: &Arc<std::fs::File>,
        progress: &Progress,
    ) -> anyhow::Result<[u8; 16]> {
        use std::os::unix::fs::FileExt as _;
        let what = format!(
            "reading bytes {start}-{} of {}",
            end.max(1) - 1,
            self.source
        );
        if start == end {
            return Ok(md5(b""));
        }
        with_retries(|| async {
            let mut counted = 0;
            let attempt = async {
                let mut body = self.get(start, end, &what).await?.body;
                let mut hasher = Md5::new();
                let mut offset = start;
                while let Some(chunk) = body.try_next().await.map_err(|e| {
                    Failure::Transient(anyhow::anyhow!(
                        "{what}: the body broke off after {} bytes ({e})",
                        offset - start
                    ))
                })? {
                    hasher.update(&chunk);
                    file.write_all_at(&chunk, offset).map_err(|e| {
                        Failure::Fatal(anyhow::anyhow!("writing the download: {e}"))
                    })?;
                    offset += chunk.len() as u64;
                    counted += chunk.len() as u64;
                    progress.add(chunk.len() as u64);
                }
                if offset != end {
                    return Err(Failure::Transient(anyhow::anyhow!(
                        "{what}: the server sent {} bytes",
                        offset - start
                    )));
                }
                Ok(hasher.finalize().into())
            }
            .await;
            if attempt.is_err() {
                // The next attempt starts the range again.
                progress.sub(counted);
            }
            attempt
        })
        .await
    }

    /// One range in memory, retried; with its MD5 when parts are checked.
    async fn range_bytes(&self, start: u64, end: u64) -> anyhow::Result<(Bytes, [u8; 16])> {
        let what = format!("reading bytes {start}-{} of {}", end - 1, self.source);
        let data = with_retries(|| async {
            let data = self
                .get(start, end, &what)
                .await?
                .body
                .collect()
                .await
                .map_err(|e| {
                    Failure::Transient(anyhow::anyhow!("{what}: the body broke off ({e})"))
                })?
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

    /// Flushes stdout. A file is not fsynced (no more than awscli's, s3cmd's or rclone's): it
    /// takes its name only once its data checked out, and after a crash the download is run
    /// again.
    async fn finish(self) -> anyhow::Result<()> {
        match self {
            Self::File(_) => Ok(()),
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
