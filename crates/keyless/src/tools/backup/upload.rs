//! `keyless backup upload`: a file or stdin to one object, multipart with parts in parallel,
//! memory bounded by part size × concurrency, resumable.
//! <https://docs.aws.amazon.com/AmazonS3/latest/userguide/mpuoverview.html>

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use anyhow::Context as _;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use base64::Engine as _;
use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt as _};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use super::progress::Progress;
use super::{
    MAX_PART, MAX_PARTS, MIN_PART, PART_SIZE_META, S3Url, UploadArgs, bare_etag, classify, hex,
    md5, multipart_etag, with_retries,
};

pub(super) async fn run(args: UploadArgs) -> anyhow::Result<()> {
    let destination = S3Url::parse(&args.destination)?;
    let stdin = args.source == "-";
    let key = object_key(&destination, &args.source, args.name.as_deref())?;
    let (reader, size): (Box<dyn AsyncRead + Send + Unpin>, Option<u64>) = if stdin {
        (Box::new(tokio::io::stdin()), None)
    } else {
        let file = tokio::fs::File::open(&args.source)
            .await
            .with_context(|| format!("opening {}", args.source))?;
        let meta = file.metadata().await?;
        anyhow::ensure!(meta.is_file(), "{} is not a regular file", args.source);
        (Box::new(file), Some(meta.len()))
    };
    let part_size = part_size_for(args.part_size, size)?;
    let upload = Upload {
        s3: super::s3_client(&args.common).await?,
        bucket: destination.bucket,
        key,
        part_size,
        concurrency: usize::from(args.concurrency),
        progress: Progress::start("upload", size),
        reused: AtomicU32::new(0),
    };
    let etag = upload.run(reader, !args.no_resume).await?;
    let reused = upload.reused.load(Ordering::Relaxed);
    let summary = upload
        .progress
        .finish(&format!("uploaded s3://{}/{}", upload.bucket, upload.key));
    if reused > 0 {
        eprintln!("{summary}; {reused} parts were already there; ETag {etag}");
    } else {
        eprintln!("{summary}; ETag {etag}");
    }
    Ok(())
}

/// The key: the URL's, or the prefix followed by the file's name (or --name).
fn object_key(url: &S3Url, source: &str, name: Option<&str>) -> anyhow::Result<String> {
    if !url.is_prefix() {
        anyhow::ensure!(
            name.is_none(),
            "give either --name or a key in the URL, not both"
        );
        return Ok(url.key.clone());
    }
    let name = match name {
        Some(name) => name.to_owned(),
        None if source == "-" => anyhow::bail!(
            "uploading stdin to a prefix needs a name: --name NAME, or s3://{}/{}NAME",
            url.bucket,
            url.key
        ),
        None => std::path::Path::new(source)
            .file_name()
            .and_then(|n| n.to_str())
            .with_context(|| format!("{source} has no file name to use as the key"))?
            .to_owned(),
    };
    anyhow::ensure!(
        !name.is_empty() && !name.contains('/'),
        "`{name}` is not a name"
    );
    Ok(format!("{}{name}", url.key))
}

/// The requested part size, grown for a large file so that it fits 10,000 parts.
fn part_size_for(requested: u64, size: Option<u64>) -> anyhow::Result<u64> {
    anyhow::ensure!(
        (MIN_PART..=MAX_PART).contains(&requested),
        "the part size must be between 5 MiB and 5 GiB"
    );
    let Some(size) = size else {
        return Ok(requested);
    };
    let needed = size.div_ceil(MAX_PARTS).div_ceil(1 << 20) << 20;
    let part = requested.max(needed);
    anyhow::ensure!(
        part <= MAX_PART,
        "a file of {size} bytes does not fit in 10,000 parts of at most 5 GiB"
    );
    Ok(part)
}

struct Upload {
    s3: aws_sdk_s3::Client,
    bucket: String,
    key: String,
    part_size: u64,
    concurrency: usize,
    progress: Arc<Progress>,
    /// Parts of a resumed upload that were already in the bucket.
    reused: AtomicU32,
}

/// A part already uploaded: its ETag and size.
type Uploaded = HashMap<i32, (String, u64)>;

impl Upload {
    async fn run(
        &self,
        mut reader: Box<dyn AsyncRead + Send + Unpin>,
        resume: bool,
    ) -> anyhow::Result<String> {
        let first = read_part(&mut reader, self.part_size).await?;
        if (first.len() as u64) < self.part_size {
            return self.put_whole(first).await;
        }
        let (upload_id, uploaded) = self.start(resume).await?;
        let uploaded = Arc::new(uploaded);
        let semaphore = Arc::new(Semaphore::new(self.concurrency));
        let mut tasks = JoinSet::new();
        let mut digests: Vec<[u8; 16]> = Vec::new();
        let mut next = Some((first, semaphore.clone().acquire_owned().await?));
        let mut number: i32 = 0;
        let result: anyhow::Result<()> = async {
            while let Some((data, permit)) = next.take() {
                number += 1;
                anyhow::ensure!(
                    u64::try_from(number).unwrap_or(u64::MAX) <= MAX_PARTS,
                    "the input needs more than 10,000 parts of {} bytes; choose a larger --part-size",
                    self.part_size
                );
                let part = Part {
                    s3: self.s3.clone(),
                    bucket: self.bucket.clone(),
                    key: self.key.clone(),
                    upload_id: upload_id.clone(),
                    number,
                    data,
                };
                let uploaded = uploaded.clone();
                let progress = self.progress.clone();
                tasks.spawn(async move {
                    let _permit = permit;
                    let already = uploaded.get(&part.number);
                    part.send(already, &progress).await
                });
                while let Some(done) = tasks.try_join_next() {
                    self.record(done?, &mut digests)?;
                }
                // A slot first, then the read: at most `concurrency` parts are in memory.
                let permit = semaphore.clone().acquire_owned().await?;
                let data = read_part(&mut reader, self.part_size).await?;
                if !data.is_empty() {
                    next = Some((data, permit));
                }
            }
            while let Some(done) = tasks.join_next().await {
                self.record(done?, &mut digests)?;
            }
            Ok(())
        }
        .await;
        if let Err(e) = result {
            tasks.abort_all();
            return Err(e.context(format!(
                "the upload is unfinished; run the same command again to resume it \
                 (upload id {upload_id})"
            )));
        }
        self.complete(&upload_id, &digests).await
    }

    fn record(
        &self,
        done: anyhow::Result<(i32, [u8; 16], bool)>,
        digests: &mut Vec<[u8; 16]>,
    ) -> anyhow::Result<()> {
        let (number, digest, reused) = done?;
        let index = usize::try_from(number - 1).unwrap_or(usize::MAX);
        if digests.len() <= index {
            digests.resize(index + 1, [0; 16]);
        }
        digests[index] = digest;
        if reused {
            self.reused.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    }

    /// An input smaller than one part: a single PUT.
    async fn put_whole(&self, data: Bytes) -> anyhow::Result<String> {
        let digest = md5(&data);
        let content_md5 = base64::engine::general_purpose::STANDARD.encode(digest);
        let len = data.len() as u64;
        let out = with_retries(|| async {
            self.s3
                .put_object()
                .bucket(&self.bucket)
                .key(&self.key)
                .body(ByteStream::from(data.clone()))
                .content_md5(&content_md5)
                .customize()
                .disable_payload_signing()
                .send()
                .await
                .map_err(|e| classify(e, "uploading"))
        })
        .await?;
        self.progress.add(len);
        let etag = bare_etag(out.e_tag());
        check_etag(&etag, &hex(&digest));
        Ok(etag)
    }

    /// Resumes the newest unfinished upload to the key with the same part size, or creates one.
    async fn start(&self, resume: bool) -> anyhow::Result<(String, Uploaded)> {
        let unfinished = self.unfinished().await;
        for id in &unfinished {
            if !resume {
                tracing::info!(upload_id = %id, "aborting an unfinished upload (--no-resume)");
                if let Err(e) = self
                    .s3
                    .abort_multipart_upload()
                    .bucket(&self.bucket)
                    .key(&self.key)
                    .upload_id(id)
                    .send()
                    .await
                {
                    tracing::warn!(error = %crate::tools::client::sdk_error(&e), "could not abort it");
                }
                continue;
            }
            match self.parts(id).await {
                Ok(parts)
                    if parts
                        .get(&1)
                        .is_some_and(|(_, size)| *size == self.part_size) =>
                {
                    tracing::info!(
                        upload_id = %id,
                        parts = parts.len(),
                        "resuming an unfinished upload; parts with the same content are not sent again"
                    );
                    return Ok((id.clone(), parts));
                }
                Ok(_) => tracing::info!(
                    upload_id = %id,
                    "an unfinished upload has another part size; starting a new one"
                ),
                Err(e) => {
                    tracing::warn!(error = %format!("{e:#}"), "cannot list the parts of an unfinished upload; starting a new one")
                }
            }
        }
        let out = with_retries(|| async {
            self.s3
                .create_multipart_upload()
                .bucket(&self.bucket)
                .key(&self.key)
                .metadata(PART_SIZE_META, self.part_size.to_string())
                .send()
                .await
                .map_err(|e| classify(e, "starting the multipart upload"))
        })
        .await?;
        let id = out
            .upload_id
            .context("the server started an upload without an upload id")?;
        Ok((id, Uploaded::new()))
    }

    /// Unfinished uploads to exactly this key, newest first; none if they cannot be listed
    /// (a role may lack `s3:ListBucketMultipartUploads`).
    async fn unfinished(&self) -> Vec<String> {
        let out = self
            .s3
            .list_multipart_uploads()
            .bucket(&self.bucket)
            .prefix(&self.key)
            .send()
            .await;
        match out {
            Ok(out) => {
                let mut uploads: Vec<_> = out
                    .uploads()
                    .iter()
                    .filter(|u| u.key() == Some(self.key.as_str()))
                    .filter_map(|u| {
                        Some((u.initiated().map(|t| t.secs()), u.upload_id()?.to_owned()))
                    })
                    .collect();
                uploads.sort_by_key(|u| std::cmp::Reverse(u.0));
                uploads.into_iter().map(|(_, id)| id).collect()
            }
            Err(e) => {
                tracing::info!(
                    error = %crate::tools::client::sdk_error(&e),
                    "cannot list unfinished uploads, so none is resumed"
                );
                Vec::new()
            }
        }
    }

    async fn parts(&self, upload_id: &str) -> anyhow::Result<Uploaded> {
        let mut parts = Uploaded::new();
        let mut marker: Option<String> = None;
        loop {
            let out = self
                .s3
                .list_parts()
                .bucket(&self.bucket)
                .key(&self.key)
                .upload_id(upload_id)
                .set_part_number_marker(marker.clone())
                .send()
                .await
                .map_err(|e| anyhow::anyhow!("{}", crate::tools::client::sdk_error(&e)))?;
            for part in out.parts() {
                if let (Some(n), Some(size)) = (part.part_number(), part.size()) {
                    let size = u64::try_from(size).unwrap_or(0);
                    parts.insert(n, (bare_etag(part.e_tag()), size));
                }
            }
            match out.next_part_number_marker() {
                Some(next) if out.is_truncated() == Some(true) => marker = Some(next.to_owned()),
                _ => return Ok(parts),
            }
        }
    }

    async fn complete(&self, upload_id: &str, digests: &[[u8; 16]]) -> anyhow::Result<String> {
        let parts: Vec<CompletedPart> = digests
            .iter()
            .zip(1..)
            .map(|(digest, n)| {
                CompletedPart::builder()
                    .part_number(n)
                    .e_tag(format!("\"{}\"", hex(digest)))
                    .build()
            })
            .collect();
        let body = CompletedMultipartUpload::builder()
            .set_parts(Some(parts))
            .build();
        let out = with_retries(|| async {
            self.s3
                .complete_multipart_upload()
                .bucket(&self.bucket)
                .key(&self.key)
                .upload_id(upload_id)
                .multipart_upload(body.clone())
                .send()
                .await
                .map_err(|e| classify(e, "completing the multipart upload"))
        })
        .await?;
        let etag = bare_etag(out.e_tag());
        check_etag(&etag, &multipart_etag(digests));
        Ok(etag)
    }
}

/// The store's ETag should be the MD5 we computed; a store that encrypts with KMS keys makes
/// other ETags, and then `download` cannot check the object either.
fn check_etag(stored: &str, expected: &str) {
    if stored != expected {
        tracing::warn!(
            stored,
            expected,
            "the store's ETag is not the MD5 of the data, so a download cannot be checked against it"
        );
    }
}

/// One part: its number, data and destination.
struct Part {
    s3: aws_sdk_s3::Client,
    bucket: String,
    key: String,
    upload_id: String,
    number: i32,
    data: Bytes,
}

impl Part {
    /// Sends the part unless the same bytes are already there; returns its MD5 and whether it
    /// was already there.
    async fn send(
        self,
        already: Option<&(String, u64)>,
        progress: &Progress,
    ) -> anyhow::Result<(i32, [u8; 16], bool)> {
        let data = self.data.clone();
        let digest = tokio::task::spawn_blocking(move || md5(&data)).await?;
        let len = self.data.len() as u64;
        if already.is_some_and(|(etag, size)| *size == len && *etag == hex(&digest)) {
            progress.add(len);
            return Ok((self.number, digest, true));
        }
        let content_md5 = base64::engine::general_purpose::STANDARD.encode(digest);
        let what = format!("uploading part {}", self.number);
        with_retries(|| async {
            self.s3
                .upload_part()
                .bucket(&self.bucket)
                .key(&self.key)
                .upload_id(&self.upload_id)
                .part_number(self.number)
                .content_md5(&content_md5)
                .body(ByteStream::from(self.data.clone()))
                // The signed Content-MD5 protects the body; a SHA-256 of it in the signature
                // would cost both sides another pass over every byte.
                .customize()
                .disable_payload_signing()
                .send()
                .await
                .map_err(|e| classify(e, &what))
        })
        .await?;
        progress.add(len);
        Ok((self.number, digest, false))
    }
}

/// Reads up to `size` bytes: less only at the end of the input.
async fn read_part(
    reader: &mut (dyn AsyncRead + Send + Unpin),
    size: u64,
) -> anyhow::Result<Bytes> {
    let size = usize::try_from(size).context("the part size does not fit in memory")?;
    let mut buf = BytesMut::with_capacity(size);
    while buf.len() < size {
        let n = reader
            .take((size - buf.len()) as u64)
            .read_buf(&mut buf)
            .await
            .context("reading the input")?;
        if n == 0 {
            break;
        }
    }
    Ok(buf.freeze())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_come_from_the_url_or_the_file_name() {
        let prefix = S3Url::parse("s3://backups/daily/").unwrap();
        assert_eq!(
            object_key(&prefix, "/srv/1_gitlab_backup.tar", None).unwrap(),
            "daily/1_gitlab_backup.tar"
        );
        assert_eq!(
            object_key(&prefix, "-", Some("2_gitlab_backup.tar")).unwrap(),
            "daily/2_gitlab_backup.tar"
        );
        assert!(object_key(&prefix, "-", None).is_err());
        let root = S3Url::parse("s3://backups").unwrap();
        assert_eq!(object_key(&root, "a.tar", None).unwrap(), "a.tar");
        let exact = S3Url::parse("s3://backups/x.tar").unwrap();
        assert_eq!(object_key(&exact, "-", None).unwrap(), "x.tar");
        assert!(object_key(&exact, "-", Some("y")).is_err());
    }

    #[test]
    fn part_size_grows_to_fit_ten_thousand_parts() {
        assert_eq!(part_size_for(16 << 20, Some(2 << 30)).unwrap(), 16 << 20);
        assert_eq!(part_size_for(16 << 20, None).unwrap(), 16 << 20);
        // 1 TiB needs parts of at least 104.9 MiB: 105 MiB.
        assert_eq!(part_size_for(16 << 20, Some(1 << 40)).unwrap(), 105 << 20);
        assert!(part_size_for(1 << 20, None).is_err());
        assert!(part_size_for(16 << 20, Some(60 << 40)).is_err());
    }

    #[tokio::test]
    async fn parts_are_full_until_the_end_of_a_trickling_input() {
        // A reader that returns 3 bytes per read, like a pipe.
        let data: Vec<u8> = (0..100u8).collect();
        let (mut tx, rx) = tokio::io::duplex(3);
        tokio::spawn(async move {
            use tokio::io::AsyncWriteExt as _;
            tx.write_all(&data).await.unwrap();
        });
        let mut reader: Box<dyn AsyncRead + Send + Unpin> = Box::new(rx);
        let a = read_part(&mut reader, 64).await.unwrap();
        let b = read_part(&mut reader, 64).await.unwrap();
        let c = read_part(&mut reader, 64).await.unwrap();
        assert_eq!((a.len(), b.len(), c.len()), (64, 36, 0));
        assert_eq!(a[63], 63);
        assert_eq!(b[0], 64);
    }
}
