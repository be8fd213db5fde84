//! `keyless backup list` and `prune`: the backups directly under a prefix, by age.
//! <https://docs.aws.amazon.com/AmazonS3/latest/API/API_ListObjectsV2.html>

use super::progress::human_bytes;
use super::{ListArgs, PruneArgs, S3Url, bare_etag, classify, with_retries};
use crate::output::outln;

/// An object under the prefix.
#[derive(Debug, serde::Serialize)]
#[serde(rename_all = "PascalCase")]
struct Backup {
    key: String,
    size: u64,
    last_modified: String,
    #[serde(rename = "ETag")]
    etag: String,
    #[serde(skip)]
    modified_secs: i64,
}

pub(super) async fn list(args: ListArgs) -> anyhow::Result<()> {
    let url = prefix_url(&args.prefix)?;
    let s3 = super::s3_client(&args.common).await?;
    for backup in backups(&s3, &url).await? {
        if args.json {
            outln!("{}", serde_json::to_string(&backup)?)?;
        } else {
            outln!(
                "{}  {:>10}  s3://{}/{}",
                backup.last_modified.replace('T', " ").trim_end_matches('Z'),
                human_bytes(backup.size),
                url.bucket,
                backup.key
            )?;
        }
    }
    Ok(())
}

pub(super) async fn prune(args: PruneArgs) -> anyhow::Result<()> {
    let url = prefix_url(&args.prefix)?;
    let s3 = super::s3_client(&args.common).await?;
    let mut all = backups(&s3, &url).await?;
    let excess = all.len().saturating_sub(args.keep as usize);
    // Oldest first: the first `excess` go.
    let doomed: Vec<Backup> = all.drain(..excess).collect();
    for backup in &doomed {
        let target = format!("s3://{}/{}", url.bucket, backup.key);
        if args.dry_run {
            outln!("would delete {target}")?;
            continue;
        }
        with_retries(|| async {
            s3.delete_object()
                .bucket(&url.bucket)
                .key(&backup.key)
                .send()
                .await
                .map_err(|e| classify(e, &format!("deleting {target}")))
        })
        .await?;
        outln!("deleted {target}")?;
    }
    eprintln!(
        "{} {} of {} backups under {url}; kept the newest {}",
        if args.dry_run {
            "would delete"
        } else {
            "deleted"
        },
        doomed.len(),
        doomed.len() + all.len(),
        all.len()
    );
    Ok(())
}

fn prefix_url(text: &str) -> anyhow::Result<S3Url> {
    let url = S3Url::parse(text)?;
    anyhow::ensure!(
        url.is_prefix(),
        "{url} names an object; give a prefix ending in `/` or just s3://{}",
        url.bucket
    );
    Ok(url)
}

/// The objects directly under the prefix (not in its sub-folders), oldest first.
async fn backups(s3: &aws_sdk_s3::Client, url: &S3Url) -> anyhow::Result<Vec<Backup>> {
    let mut out = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let page = with_retries(|| async {
            s3.list_objects_v2()
                .bucket(&url.bucket)
                .prefix(&url.key)
                .delimiter("/")
                .set_continuation_token(token.clone())
                .send()
                .await
                .map_err(|e| classify(e, &format!("listing {url}")))
        })
        .await?;
        for object in page.contents() {
            let Some(key) = object.key() else { continue };
            let modified_secs = object.last_modified().map_or(0, |t| t.secs());
            out.push(Backup {
                key: key.to_owned(),
                size: u64::try_from(object.size().unwrap_or(0)).unwrap_or(0),
                last_modified: keyless_types::time::iso8601(modified_secs),
                etag: bare_etag(object.e_tag()),
                modified_secs,
            });
        }
        match page.next_continuation_token() {
            Some(next) if page.is_truncated() == Some(true) => token = Some(next.to_owned()),
            _ => break,
        }
    }
    out.sort_by(|a, b| (a.modified_secs, &a.key).cmp(&(b.modified_secs, &b.key)));
    Ok(out)
}
