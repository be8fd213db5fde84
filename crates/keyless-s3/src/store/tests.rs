#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

//! The conformance suite: both backends must behave the same, so the in-memory double can stand
//! in for the disk in server tests.

use std::sync::Arc;

use bytes::Bytes;
use futures_util::StreamExt as _;
use keyless_types::FixedClock;
use md5::{Digest as _, Md5};

use super::*;

fn clock() -> Arc<FixedClock> {
    Arc::new(FixedClock::at_unix(1_795_608_000))
}

fn body(parts: &[&[u8]]) -> ByteStream {
    let chunks: Vec<std::io::Result<Bytes>> = parts
        .iter()
        .map(|p| Ok(Bytes::copy_from_slice(p)))
        .collect();
    Box::pin(futures_util::stream::iter(chunks))
}

async fn read(stream: ByteStream) -> Vec<u8> {
    stream
        .map(|c| c.unwrap())
        .collect::<Vec<_>>()
        .await
        .concat()
}

async fn get(store: &impl ObjectStore, bucket: &str, key: &str) -> Option<Vec<u8>> {
    match store.get_object(bucket, key, None, None).await {
        Ok((_, s)) => Some(read(s).await),
        Err(StoreError::NoSuchKey { .. }) => None,
        Err(e) => panic!("{e}"),
    }
}

async fn put(store: &impl ObjectStore, bucket: &str, key: &str, data: &[u8]) -> ObjectInfo {
    store
        .put_object(bucket, key, body(&[data]), PutOptions::default())
        .await
        .unwrap()
}

fn keys(page: &ListPage) -> Vec<&str> {
    page.objects.iter().map(|o| o.key.as_str()).collect()
}

async fn buckets(store: impl ObjectStore) {
    assert_eq!(store.create_bucket("b").await.unwrap().name, "b");
    assert!(matches!(
        store.create_bucket("b").await,
        Err(StoreError::BucketAlreadyExists(_))
    ));
    store.create_bucket("a").await.unwrap();
    let names: Vec<String> = store
        .list_buckets()
        .await
        .unwrap()
        .into_iter()
        .map(|b| b.name)
        .collect();
    assert_eq!(names, ["a", "b"]);
    assert_eq!(
        store.head_bucket("b").await.unwrap().created_ms,
        1_795_608_000_000
    );
    put(&store, "b", "k", b"x").await;
    assert!(matches!(
        store.delete_bucket("b").await,
        Err(StoreError::BucketNotEmpty(_))
    ));
    store
        .delete_object("b", "k", None, Governance::Binds)
        .await
        .unwrap();
    store.delete_bucket("b").await.unwrap();
    assert!(matches!(
        store.head_bucket("b").await,
        Err(StoreError::NoSuchBucket(_))
    ));
    assert!(matches!(
        store.delete_bucket("b").await,
        Err(StoreError::NoSuchBucket(_))
    ));
    assert!(matches!(
        store
            .put_object("nope", "k", body(&[b"x"]), PutOptions::default())
            .await,
        Err(StoreError::NoSuchBucket(_))
    ));
    assert!(matches!(
        store
            .delete_object("nope", "k", None, Governance::Binds)
            .await,
        Err(StoreError::NoSuchBucket(_))
    ));
    assert!(matches!(
        store.list_objects("nope", ListQuery::default()).await,
        Err(StoreError::NoSuchBucket(_))
    ));
}

/// The stored headers the conformance tests write and read back.
fn stored_headers() -> ContentHeaders {
    ContentHeaders {
        cache_control: Some("max-age=3600".into()),
        content_disposition: Some("attachment; filename=\"hello.txt\"".into()),
        content_encoding: Some("gzip".into()),
        content_language: Some("de-CH".into()),
        expires: Some("Wed, 21 Oct 2015 07:28:00 GMT".into()),
    }
}

async fn objects(store: impl ObjectStore) {
    store.create_bucket("b").await.unwrap();
    let options = PutOptions {
        content_type: Some("text/plain".into()),
        metadata: [("owner".to_owned(), "gitlab".to_owned())].into(),
        content_md5: Some(Md5::digest(b"hello world").into()),
        headers: stored_headers(),
        content_length: Some(11),
        verifier: None,
        condition: None,
        tags: vec![("kind".to_owned(), "greeting".to_owned())],
        lock: ObjectLock::default(),
        seal: false,
    };
    let info = store
        .put_object("b", "dir/hello.txt", body(&[b"hello ", b"world"]), options)
        .await
        .unwrap();
    assert_eq!(info.etag, "5eb63bbbe01eeed093cb22bb8f5acdc3");
    assert_eq!(info.size, 11);
    let head = store.head_object("b", "dir/hello.txt", None).await.unwrap();
    assert_eq!(head, info);
    assert_eq!(head.content_type.as_deref(), Some("text/plain"));
    assert_eq!(head.metadata["owner"], "gitlab");
    assert_eq!(head.headers, stored_headers());
    assert!(head.parts.is_empty());
    assert_eq!(head.part_range(1), Some(((0, 11), 1)));
    assert_eq!(head.part_range(2), None);
    assert_eq!(
        get(&store, "b", "dir/hello.txt").await.unwrap(),
        b"hello world"
    );

    // Overwrite replaces the whole object.
    put(&store, "b", "dir/hello.txt", b"bye").await;
    assert_eq!(get(&store, "b", "dir/hello.txt").await.unwrap(), b"bye");

    // Deleting an absent key succeeds.
    store
        .delete_object("b", "never", None, Governance::Binds)
        .await
        .unwrap();
    store
        .delete_object("b", "dir/hello.txt", None, Governance::Binds)
        .await
        .unwrap();
    assert_eq!(get(&store, "b", "dir/hello.txt").await, None);
    assert!(matches!(
        store.head_object("b", "dir/hello.txt", None).await,
        Err(StoreError::NoSuchKey { .. })
    ));

    // An empty object.
    let empty = put(&store, "b", "empty", b"").await;
    assert_eq!(empty.etag, "d41d8cd98f00b204e9800998ecf8427e");
    assert_eq!(get(&store, "b", "empty").await.unwrap(), b"");
}

async fn odd_keys(store: impl ObjectStore) {
    store.create_bucket("b").await.unwrap();
    let long = "k".repeat(1024);
    let odd = [
        "../../etc/passwd",
        "a//b",
        "/leading",
        "with space",
        "ünïcödé/日本語",
        "..",
        ".",
        "trailing/",
        long.as_str(),
    ];
    for (i, key) in odd.iter().enumerate() {
        put(&store, "b", key, format!("{i}").as_bytes()).await;
    }
    for (i, key) in odd.iter().enumerate() {
        assert_eq!(
            get(&store, "b", key).await.unwrap(),
            format!("{i}").as_bytes(),
            "{key}"
        );
    }
    let page = store
        .list_objects(
            "b",
            ListQuery {
                max_keys: 1000,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let mut sorted: Vec<&str> = odd.to_vec();
    sorted.sort();
    assert_eq!(keys(&page), sorted);
}

async fn refused_bodies_store_nothing(store: impl ObjectStore) {
    store.create_bucket("b").await.unwrap();
    put(&store, "b", "k", b"original").await;
    let bad_md5 = PutOptions {
        content_md5: Some([0; 16]),
        ..Default::default()
    };
    assert!(matches!(
        store
            .put_object("b", "k", body(&[b"new data"]), bad_md5)
            .await,
        Err(StoreError::BadDigest)
    ));
    let short = PutOptions {
        content_length: Some(100),
        ..Default::default()
    };
    assert!(matches!(
        store
            .put_object("b", "k", body(&[b"new data"]), short)
            .await,
        Err(StoreError::IncompleteBody {
            expected: 100,
            got: 8
        })
    ));
    let failing: ByteStream = Box::pin(futures_util::stream::iter(vec![
        Ok(Bytes::from_static(b"partial")),
        Err(std::io::Error::new(
            std::io::ErrorKind::ConnectionReset,
            "client went away",
        )),
    ]));
    assert!(matches!(
        store
            .put_object("b", "k", failing, PutOptions::default())
            .await,
        Err(StoreError::Body(_))
    ));
    struct Refuse;
    impl BodyVerifier for Refuse {
        fn update(&mut self, _chunk: &[u8]) {}
        fn verify(self: Box<Self>) -> Result<(), StoreError> {
            Err(StoreError::ChecksumMismatch("CRC32"))
        }
    }
    let refused = PutOptions {
        verifier: Some(Verifier(Box::new(Refuse))),
        ..Default::default()
    };
    assert!(matches!(
        store
            .put_object("b", "k", body(&[b"new data"]), refused)
            .await,
        Err(StoreError::ChecksumMismatch("CRC32"))
    ));
    assert_eq!(get(&store, "b", "k").await.unwrap(), b"original");
    assert!(matches!(
        store
            .put_object(
                "b",
                "fresh",
                body(&[b"x"]),
                PutOptions {
                    content_md5: Some([0; 16]),
                    ..Default::default()
                }
            )
            .await,
        Err(StoreError::BadDigest)
    ));
    assert_eq!(get(&store, "b", "fresh").await, None);
}

async fn ranges(store: impl ObjectStore) {
    store.create_bucket("b").await.unwrap();
    put(&store, "b", "k", b"0123456789").await;
    let store = &store;
    let read_range = |r| async move {
        let (_, s) = store.get_object("b", "k", None, Some(r)).await?;
        Ok::<_, StoreError>(read(s).await)
    };
    assert_eq!(
        read_range(ByteRange::From {
            first: 2,
            last: Some(4)
        })
        .await
        .unwrap(),
        b"234"
    );
    assert_eq!(
        read_range(ByteRange::From {
            first: 7,
            last: None
        })
        .await
        .unwrap(),
        b"789"
    );
    assert_eq!(
        read_range(ByteRange::From {
            first: 8,
            last: Some(100)
        })
        .await
        .unwrap(),
        b"89"
    );
    assert_eq!(read_range(ByteRange::Suffix(3)).await.unwrap(), b"789");
    assert_eq!(
        read_range(ByteRange::Suffix(30)).await.unwrap(),
        b"0123456789"
    );
    assert!(matches!(
        read_range(ByteRange::From {
            first: 10,
            last: None
        })
        .await,
        Err(StoreError::InvalidRange { size: 10 })
    ));
    assert!(matches!(
        read_range(ByteRange::From {
            first: 5,
            last: Some(2)
        })
        .await,
        Err(StoreError::InvalidRange { .. })
    ));
    assert!(matches!(
        read_range(ByteRange::Suffix(0)).await,
        Err(StoreError::InvalidRange { .. })
    ));
}

async fn listing(store: impl ObjectStore) {
    store.create_bucket("b").await.unwrap();
    store.create_bucket("c").await.unwrap();
    for key in ["a/1", "a/2", "a/b/3", "b/1", "c", "d/1", "d/2", "e"] {
        put(&store, "b", key, b"x").await;
    }
    put(&store, "c", "a/1", b"other bucket").await;
    let list = |prefix: &'static str,
                delimiter: Option<&'static str>,
                after: Option<String>,
                max_keys: usize| {
        let store = &store;
        async move {
            store
                .list_objects(
                    "b",
                    ListQuery {
                        prefix,
                        delimiter,
                        after: after.as_deref(),
                        max_keys,
                    },
                )
                .await
                .unwrap()
        }
    };
    let all = list("", None, None, 1000).await;
    assert_eq!(
        keys(&all),
        ["a/1", "a/2", "a/b/3", "b/1", "c", "d/1", "d/2", "e"]
    );
    assert!(!all.truncated);

    // max-keys=0: an empty page, not truncated (S3 answers so); an empty delimiter is none.
    let none = list("", Some("/"), None, 0).await;
    assert_eq!(none, ListPage::default());
    assert_eq!(keys(&list("", Some(""), None, 1000).await), keys(&all));

    let rolled = list("", Some("/"), None, 1000).await;
    assert_eq!(keys(&rolled), ["c", "e"]);
    assert_eq!(rolled.common_prefixes, ["a/", "b/", "d/"]);

    let under_a = list("a/", Some("/"), None, 1000).await;
    assert_eq!(keys(&under_a), ["a/1", "a/2"]);
    assert_eq!(under_a.common_prefixes, ["a/b/"]);

    // Pages of two, keys and prefixes counted together, resuming after the last one.
    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let page = list("", Some("/"), after.clone(), 2).await;
        seen.extend(page.common_prefixes.iter().cloned());
        seen.extend(page.objects.iter().map(|o| o.key.clone()));
        assert!(page.objects.len() + page.common_prefixes.len() <= 2);
        if !page.truncated {
            break;
        }
        after = page.next_after.clone();
    }
    seen.sort();
    assert_eq!(seen, ["a/", "b/", "c", "d/", "e"]);

    let page = list("", None, Some("a/b/3".into()), 2).await;
    assert_eq!(keys(&page), ["b/1", "c"]);
    assert!(page.truncated);
    assert_eq!(page.next_after.as_deref(), Some("c"));
    let nothing = list("zzz", None, None, 1000).await;
    assert!(nothing.objects.is_empty() && !nothing.truncated);
}

async fn policies(store: impl ObjectStore) {
    store.create_bucket("b").await.unwrap();
    assert_eq!(store.bucket_policy("b").await.unwrap(), None);
    store
        .set_bucket_policy("b", Some("{\"Statement\":[]}".into()))
        .await
        .unwrap();
    assert_eq!(
        store.bucket_policy("b").await.unwrap().as_deref(),
        Some("{\"Statement\":[]}")
    );
    store.set_bucket_policy("b", None).await.unwrap();
    assert_eq!(store.bucket_policy("b").await.unwrap(), None);
    assert!(matches!(
        store.bucket_policy("nope").await,
        Err(StoreError::NoSuchBucket(_))
    ));
}

async fn multipart(store: impl ObjectStore) {
    store.create_bucket("b").await.unwrap();
    let options = PutOptions {
        content_type: Some("application/x-tar".into()),
        metadata: [("kind".to_owned(), "backup".to_owned())].into(),
        headers: stored_headers(),
        ..Default::default()
    };
    let up = store
        .create_upload("b", "backup.tar", options)
        .await
        .unwrap();
    let id = up.upload_id.clone();
    let upload = UploadRef {
        bucket: "b",
        key: "backup.tar",
        upload_id: &id,
    };
    let big = vec![1u8; MIN_PART_SIZE as usize];
    let p1 = store
        .upload_part(upload, 1, body(&[&big]), PutOptions::default())
        .await
        .unwrap();
    let p2 = store
        .upload_part(upload, 2, body(&[b"tail"]), PutOptions::default())
        .await
        .unwrap();
    // A part uploaded again replaces the earlier one.
    let p2 = {
        let again = store
            .upload_part(upload, 2, body(&[b"end"]), PutOptions::default())
            .await
            .unwrap();
        assert_ne!(again.etag, p2.etag);
        again
    };
    let parts = store.list_parts(upload).await.unwrap();
    assert_eq!(
        parts
            .iter()
            .map(|p| (p.part_number, p.size))
            .collect::<Vec<_>>(),
        [(1, MIN_PART_SIZE), (2, 3)]
    );
    let listed = store.list_uploads("b", "back").await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].upload_id, id);
    assert!(store.list_uploads("b", "other").await.unwrap().is_empty());

    // Refused completions leave the upload as it was.
    let with = |list: &[(u32, &str)]| {
        list.iter()
            .map(|(n, e)| (*n, e.to_string()))
            .collect::<Vec<_>>()
    };
    assert!(matches!(
        store
            .complete_upload(upload, with(&[(1, &p1.etag), (2, "0000")]), None)
            .await,
        Err(StoreError::InvalidPart(2))
    ));
    assert!(matches!(
        store
            .complete_upload(upload, with(&[(2, &p2.etag), (1, &p1.etag)]), None)
            .await,
        Err(StoreError::InvalidPartOrder)
    ));
    assert!(matches!(
        store
            .complete_upload(upload, with(&[(2, &p2.etag), (3, "x")]), None)
            .await,
        Err(StoreError::InvalidPart(3))
    ));
    assert!(matches!(
        store.complete_upload(upload, Vec::new(), None).await,
        Err(StoreError::InvalidPart(0))
    ));
    let wrong_key = UploadRef {
        key: "other.tar",
        ..upload
    };
    assert!(matches!(
        store.list_parts(wrong_key).await,
        Err(StoreError::NoSuchUpload(_))
    ));

    let quoted = format!("\"{}\"", p1.etag);
    let info = store
        .complete_upload(upload, with(&[(1, &quoted), (2, &p2.etag)]), None)
        .await
        .unwrap();
    assert!(info.etag.ends_with("-2"), "{}", info.etag);
    assert_eq!(info.size, MIN_PART_SIZE + 3);
    let data = get(&store, "b", "backup.tar").await.unwrap();
    assert_eq!(&data[..big.len()], &big[..]);
    assert_eq!(&data[big.len()..], b"end");
    let head = store.head_object("b", "backup.tar", None).await.unwrap();
    assert_eq!(head.content_type.as_deref(), Some("application/x-tar"));
    assert_eq!(head.metadata["kind"], "backup");
    assert_eq!(head.headers, stored_headers());
    assert_eq!(
        head.parts,
        [
            ObjectPart {
                number: 1,
                size: MIN_PART_SIZE
            },
            ObjectPart { number: 2, size: 3 }
        ]
    );
    assert_eq!(head.part_range(1), Some(((0, MIN_PART_SIZE), 2)));
    assert_eq!(head.part_range(2), Some(((MIN_PART_SIZE, 3), 2)));
    assert_eq!(head.part_range(3), None);
    assert!(matches!(
        store.list_parts(upload).await,
        Err(StoreError::NoSuchUpload(_))
    ));
    assert!(store.list_uploads("b", "").await.unwrap().is_empty());
}

async fn multipart_small_parts_and_abort(store: impl ObjectStore) {
    store.create_bucket("b").await.unwrap();
    let up = store
        .create_upload("b", "k", PutOptions::default())
        .await
        .unwrap();
    let upload = UploadRef {
        bucket: "b",
        key: "k",
        upload_id: &up.upload_id,
    };
    let a = store
        .upload_part(upload, 1, body(&[b"small"]), PutOptions::default())
        .await
        .unwrap();
    let b = store
        .upload_part(upload, 2, body(&[b"last"]), PutOptions::default())
        .await
        .unwrap();
    assert!(matches!(
        store
            .complete_upload(upload, vec![(1, a.etag.clone()), (2, b.etag.clone())], None)
            .await,
        Err(StoreError::EntityTooSmall { part: 1, size: 5 })
    ));
    // One part may be of any size.
    let one = store
        .create_upload("b", "single", PutOptions::default())
        .await
        .unwrap();
    let single = UploadRef {
        bucket: "b",
        key: "single",
        upload_id: &one.upload_id,
    };
    let only = store
        .upload_part(single, 1, body(&[b"tiny"]), PutOptions::default())
        .await
        .unwrap();
    store
        .complete_upload(single, vec![(1, only.etag)], None)
        .await
        .unwrap();
    assert_eq!(get(&store, "b", "single").await.unwrap(), b"tiny");

    let bad_md5 = PutOptions {
        content_md5: Some([0; 16]),
        ..Default::default()
    };
    assert!(matches!(
        store.upload_part(upload, 3, body(&[b"x"]), bad_md5).await,
        Err(StoreError::BadDigest)
    ));
    assert_eq!(store.list_parts(upload).await.unwrap().len(), 2);
    store.abort_upload(upload).await.unwrap();
    assert!(matches!(
        store.abort_upload(upload).await,
        Err(StoreError::NoSuchUpload(_))
    ));
    assert!(matches!(
        store
            .upload_part(upload, 1, body(&[b"late"]), PutOptions::default())
            .await,
        Err(StoreError::NoSuchUpload(_))
    ));
    assert_eq!(get(&store, "b", "k").await, None);
    assert!(matches!(
        store
            .create_upload("nope", "k", PutOptions::default())
            .await,
        Err(StoreError::NoSuchBucket(_))
    ));
}

async fn deleting_a_bucket_discards_its_uploads(store: impl ObjectStore) {
    store.create_bucket("b").await.unwrap();
    let up = store
        .create_upload("b", "k", PutOptions::default())
        .await
        .unwrap();
    let upload = UploadRef {
        bucket: "b",
        key: "k",
        upload_id: &up.upload_id,
    };
    let part = store
        .upload_part(upload, 1, body(&[b"old tenant"]), PutOptions::default())
        .await
        .unwrap();
    store.delete_bucket("b").await.unwrap();
    // Regression: a new bucket of the same name inherited the upload and could complete it.
    store.create_bucket("b").await.unwrap();
    assert!(store.list_uploads("b", "").await.unwrap().is_empty());
    assert!(matches!(
        store
            .complete_upload(upload, vec![(1, part.etag)], None)
            .await,
        Err(StoreError::NoSuchUpload(_))
    ));
}

fn conditional(condition: WriteCondition) -> PutOptions {
    PutOptions {
        condition: Some(condition),
        ..Default::default()
    }
}

async fn conditional_writes(store: impl ObjectStore) {
    store.create_bucket("b").await.unwrap();
    let large = vec![7u8; 200 * 1024];
    for data in [&b"first"[..], &large[..]] {
        let key = format!("k{}", data.len());
        let first = store
            .put_object(
                "b",
                &key,
                body(&[data]),
                conditional(WriteCondition::Absent),
            )
            .await
            .unwrap();
        // If-None-Match: * on an existing key writes nothing.
        assert!(matches!(
            store
                .put_object(
                    "b",
                    &key,
                    body(&[b"second"]),
                    conditional(WriteCondition::Absent)
                )
                .await,
            Err(StoreError::PreconditionFailed)
        ));
        assert_eq!(get(&store, "b", &key).await.unwrap(), data);
        // If-Match with another ETag writes nothing; with the current one it replaces.
        assert!(matches!(
            store
                .put_object(
                    "b",
                    &key,
                    body(&[b"second"]),
                    conditional(WriteCondition::ETag("0".repeat(32)))
                )
                .await,
            Err(StoreError::PreconditionFailed)
        ));
        assert_eq!(get(&store, "b", &key).await.unwrap(), data);
        let second = store
            .put_object(
                "b",
                &key,
                body(&[b"second"]),
                conditional(WriteCondition::ETag(first.etag.clone())),
            )
            .await
            .unwrap();
        assert_eq!(get(&store, "b", &key).await.unwrap(), b"second");
        store
            .put_object(
                "b",
                &key,
                body(&[data]),
                conditional(WriteCondition::Exists),
            )
            .await
            .unwrap();
        assert_ne!(second.etag, first.etag);
    }
    // If-Match on an absent key: NoSuchKey, as S3 answers.
    for condition in [WriteCondition::Exists, WriteCondition::ETag("0".repeat(32))] {
        assert!(matches!(
            store
                .put_object("b", "absent", body(&[b"x"]), conditional(condition))
                .await,
            Err(StoreError::NoSuchKey { .. })
        ));
    }
    assert!(get(&store, "b", "absent").await.is_none());
}

/// Many writers of `If-None-Match: *` to one key at once: exactly one wins, and the key holds
/// its data.
async fn racing_conditional_writers(store: impl ObjectStore) {
    let store = Arc::new(store);
    store.create_bucket("b").await.unwrap();
    let mut tasks = Vec::new();
    for i in 0..48u32 {
        let store = Arc::clone(&store);
        tasks.push(tokio::spawn(async move {
            let data = if i % 2 == 0 {
                vec![i as u8; 16]
            } else {
                vec![i as u8; 100 * 1024]
            };
            let result = store
                .put_object(
                    "b",
                    "once",
                    body(&[&data]),
                    conditional(WriteCondition::Absent),
                )
                .await;
            (data, result)
        }));
    }
    let mut winners = Vec::new();
    for task in tasks {
        match task.await.unwrap() {
            (data, Ok(_)) => winners.push(data),
            (_, Err(StoreError::PreconditionFailed)) => {}
            (_, Err(e)) => panic!("{e}"),
        }
    }
    assert_eq!(winners.len(), 1, "exactly one conditional writer wins");
    assert_eq!(get(store.as_ref(), "b", "once").await.unwrap(), winners[0]);
}

async fn completions_conditional_and_repeated(store: impl ObjectStore) {
    store.create_bucket("b").await.unwrap();
    put(&store, "b", "taken", b"old").await;
    let up = store
        .create_upload("b", "taken", PutOptions::default())
        .await
        .unwrap();
    let id = up.upload_id.clone();
    let upload = UploadRef {
        bucket: "b",
        key: "taken",
        upload_id: &id,
    };
    let big = vec![3u8; MIN_PART_SIZE as usize];
    let p1 = store
        .upload_part(upload, 1, body(&[&big]), PutOptions::default())
        .await
        .unwrap();
    let p2 = store
        .upload_part(upload, 2, body(&[b"end"]), PutOptions::default())
        .await
        .unwrap();
    let parts = vec![(1, p1.etag.clone()), (2, format!("\"{}\"", p2.etag))];
    // If-None-Match: * on a taken key: refused, and the upload is still there to complete.
    assert!(matches!(
        store
            .complete_upload(upload, parts.clone(), Some(WriteCondition::Absent))
            .await,
        Err(StoreError::PreconditionFailed)
    ));
    assert_eq!(store.list_parts(upload).await.unwrap().len(), 2);
    assert_eq!(get(&store, "b", "taken").await.unwrap(), b"old");
    let old = store.head_object("b", "taken", None).await.unwrap();
    let done = store
        .complete_upload(upload, parts.clone(), Some(WriteCondition::ETag(old.etag)))
        .await
        .unwrap();
    assert!(done.etag.ends_with("-2"), "{}", done.etag);
    // Retried after it succeeded (the response was lost): the same answer.
    let again = store
        .complete_upload(upload, parts.clone(), None)
        .await
        .unwrap();
    assert_eq!(again, done);
    // But not with other parts, nor for another key.
    assert!(matches!(
        store
            .complete_upload(upload, vec![(1, p1.etag.clone())], None)
            .await,
        Err(StoreError::NoSuchUpload(_))
    ));
    let elsewhere = UploadRef {
        key: "other",
        ..upload
    };
    assert!(matches!(
        store.complete_upload(elsewhere, parts, None).await,
        Err(StoreError::NoSuchUpload(_))
    ));
}

async fn versions(store: &impl ObjectStore, bucket: &str) -> Vec<(String, String, bool, bool)> {
    let page = store
        .list_versions(
            bucket,
            VersionQuery {
                max_keys: 1000,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    page.versions
        .into_iter()
        .map(|e| {
            (
                e.info.key,
                e.info.version_id.unwrap_or_else(|| "null".into()),
                e.delete_marker,
                e.is_latest,
            )
        })
        .collect()
}

async fn get_version(store: &impl ObjectStore, key: &str, version: &str) -> Vec<u8> {
    let (_, stream) = store
        .get_object("b", key, Some(version), None)
        .await
        .unwrap();
    read(stream).await
}

async fn versioning_keeps_every_version(store: impl ObjectStore) {
    store.create_bucket("b").await.unwrap();
    assert_eq!(
        store.versioning("b").await.unwrap(),
        Versioning::Unversioned
    );
    // Written before versioning: the null version, and no version id.
    let first = put(&store, "b", "k", b"zero").await;
    assert_eq!(first.version_id, None);
    let big = vec![7u8; 100_000]; // a blob, not inline
    put(&store, "b", "big", &big).await;
    store
        .set_versioning("b", Versioning::Enabled)
        .await
        .unwrap();
    assert_eq!(store.versioning("b").await.unwrap(), Versioning::Enabled);
    let one = put(&store, "b", "k", b"one").await;
    let two = put(&store, "b", "k", b"two").await;
    let (v1, v2) = (one.version_id.unwrap(), two.version_id.unwrap());
    assert_ne!(v1, v2);
    assert_eq!(get(&store, "b", "k").await.unwrap(), b"two");
    assert_eq!(get_version(&store, "k", &v1).await, b"one");
    assert_eq!(get_version(&store, "k", "null").await, b"zero");
    let head = store.head_object("b", "k", Some(&v1)).await.unwrap();
    assert_eq!(head.version_id.as_deref(), Some(v1.as_str()));
    assert_eq!(
        versions(&store, "b").await,
        [
            ("big".into(), "null".into(), false, true),
            ("k".into(), v2.clone(), false, true),
            ("k".into(), v1.clone(), false, false),
            ("k".into(), "null".into(), false, false),
        ]
    );

    // A delete without a version: a delete marker on top, the versions stay.
    let deleted = store
        .delete_object("b", "k", None, Governance::Binds)
        .await
        .unwrap();
    assert!(deleted.delete_marker);
    let marker = deleted.version_id.unwrap();
    assert!(matches!(
        store.get_object("b", "k", None, None).await,
        Err(StoreError::DeleteMarker { requested: false, version_id: Some(ref id) }) if *id == marker
    ));
    assert!(matches!(
        store.head_object("b", "k", Some(&marker)).await,
        Err(StoreError::DeleteMarker {
            requested: true,
            ..
        })
    ));
    let listed = store
        .list_objects(
            "b",
            ListQuery {
                max_keys: 1000,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(
        listed
            .objects
            .iter()
            .map(|o| o.key.as_str())
            .collect::<Vec<_>>(),
        ["big"]
    );
    assert_eq!(get_version(&store, "k", &v2).await, b"two");
    let all = versions(&store, "b").await;
    assert_eq!(all[1], ("k".into(), marker.clone(), true, true));
    assert_eq!(all.len(), 5);

    // Deleting the marker brings the newest version back; deleting that, the one before.
    let undone = store
        .delete_object("b", "k", Some(&marker), Governance::Binds)
        .await
        .unwrap();
    assert_eq!(
        undone,
        Deleted {
            version_id: Some(marker),
            delete_marker: true
        }
    );
    assert_eq!(get(&store, "b", "k").await.unwrap(), b"two");
    store
        .delete_object("b", "k", Some(&v2), Governance::Binds)
        .await
        .unwrap();
    assert_eq!(get(&store, "b", "k").await.unwrap(), b"one");
    assert!(matches!(
        store.get_object("b", "k", Some(&v2), None).await,
        Err(StoreError::NoSuchVersion { .. })
    ));
    // A version that never was, and what cannot be a version id.
    let never = new_version_id(1 << 40).unwrap();
    assert!(matches!(
        store.head_object("b", "k", Some(&never)).await,
        Err(StoreError::NoSuchVersion { .. })
    ));
    assert!(matches!(
        store.head_object("b", "k", Some("not a version")).await,
        Err(StoreError::InvalidVersionId(_))
    ));
    assert_eq!(
        store
            .delete_object("b", "k", Some(&never), Governance::Binds)
            .await
            .unwrap(),
        Deleted {
            version_id: Some(never),
            delete_marker: false
        }
    );

    // Tags belong to one version.
    let tags = vec![("t".to_owned(), "1".to_owned())];
    store
        .update_object("b", "k", Some("null"), ObjectUpdate::Tags(tags.clone()))
        .await
        .unwrap();
    let null = store.head_object("b", "k", Some("null")).await.unwrap();
    assert_eq!(null.tags, tags);
    assert!(
        store
            .head_object("b", "k", None)
            .await
            .unwrap()
            .tags
            .is_empty()
    );

    // The bucket is not empty while any version is left.
    for (key, version, _, _) in versions(&store, "b").await {
        assert!(matches!(
            store.delete_bucket("b").await,
            Err(StoreError::BucketNotEmpty(_))
        ));
        store
            .delete_object("b", &key, Some(&version), Governance::Binds)
            .await
            .unwrap();
    }
    assert!(versions(&store, "b").await.is_empty());
    store.delete_bucket("b").await.unwrap();
}

async fn suspended_versioning_replaces_the_null_version(store: impl ObjectStore) {
    store.create_bucket("b").await.unwrap();
    store
        .set_versioning("b", Versioning::Enabled)
        .await
        .unwrap();
    let kept = put(&store, "b", "k", b"kept").await.version_id.unwrap();
    store
        .set_versioning("b", Versioning::Suspended)
        .await
        .unwrap();
    // A bucket never goes back to unversioned.
    store
        .set_versioning("b", Versioning::Unversioned)
        .await
        .unwrap();
    assert_eq!(store.versioning("b").await.unwrap(), Versioning::Suspended);
    assert_eq!(put(&store, "b", "k", b"first null").await.version_id, None);
    assert_eq!(put(&store, "b", "k", b"second null").await.version_id, None);
    assert_eq!(
        versions(&store, "b").await,
        [
            ("k".into(), "null".into(), false, true),
            ("k".into(), kept.clone(), false, false),
        ]
    );
    assert_eq!(get_version(&store, "k", "null").await, b"second null");
    // A delete makes a null delete marker, which replaces the null version.
    let deleted = store
        .delete_object("b", "k", None, Governance::Binds)
        .await
        .unwrap();
    assert_eq!(
        deleted,
        Deleted {
            version_id: None,
            delete_marker: true
        }
    );
    assert_eq!(
        versions(&store, "b").await,
        [
            ("k".into(), "null".into(), true, true),
            ("k".into(), kept.clone(), false, false),
        ]
    );
    // Multipart completions are versions too, and a repeated completion names the same one.
    store
        .set_versioning("b", Versioning::Enabled)
        .await
        .unwrap();
    let up = store
        .create_upload("b", "k", PutOptions::default())
        .await
        .unwrap();
    let upload = UploadRef {
        bucket: "b",
        key: "k",
        upload_id: &up.upload_id,
    };
    let part = store
        .upload_part(upload, 1, body(&[b"parts"]), PutOptions::default())
        .await
        .unwrap();
    let done = store
        .complete_upload(upload, vec![(1, part.etag.clone())], None)
        .await
        .unwrap();
    assert!(done.version_id.is_some());
    let again = store
        .complete_upload(upload, vec![(1, part.etag)], None)
        .await
        .unwrap();
    assert_eq!(again, done);
    assert_eq!(get(&store, "b", "k").await.unwrap(), b"parts");
    assert_eq!(versions(&store, "b").await.len(), 3);
}

async fn version_listings_page_and_roll_up(store: impl ObjectStore) {
    store.create_bucket("b").await.unwrap();
    store
        .set_versioning("b", Versioning::Enabled)
        .await
        .unwrap();
    for key in ["a", "a", "a", "d/1", "d/2", "e"] {
        put(&store, "b", key, key.as_bytes()).await;
    }
    store
        .delete_object("b", "e", None, Governance::Binds)
        .await
        .unwrap();
    let mut seen = Vec::new();
    let (mut key_marker, mut version_marker) = (None::<String>, None::<String>);
    loop {
        let page = store
            .list_versions(
                "b",
                VersionQuery {
                    key_marker: key_marker.as_deref(),
                    version_id_marker: version_marker.as_deref(),
                    max_keys: 2,
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        seen.extend(
            page.versions
                .iter()
                .map(|e| (e.info.key.clone(), e.is_latest)),
        );
        if !page.truncated {
            break;
        }
        key_marker = page.next_key_marker;
        version_marker = page.next_version_id_marker;
    }
    let expected: Vec<(String, bool)> = [
        ("a", true),
        ("a", false),
        ("a", false),
        ("d/1", true),
        ("d/2", true),
        ("e", true),
        ("e", false),
    ]
    .iter()
    .map(|(k, l)| ((*k).to_owned(), *l))
    .collect();
    assert_eq!(seen, expected);
    let rolled = store
        .list_versions(
            "b",
            VersionQuery {
                delimiter: Some("/"),
                max_keys: 1000,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(rolled.common_prefixes, ["d/"]);
    assert_eq!(rolled.versions.len(), 5);
}

/// Object Lock as both stores keep it: a bucket's default retention on new versions (and
/// completed uploads), what retention and legal holds forbid and allow, as time goes by, and
/// the refusal of locks in a bucket without Object Lock.
async fn object_lock(store: impl ObjectStore, clock: Arc<FixedClock>) {
    use crate::object_lock::{DefaultRetention, LockConfig, LockMode, Retention};
    const DAY: i64 = 24 * 3600 * 1000;
    let now = keyless_types::Clock::unix_millis(clock.as_ref());
    let locked = |r: Result<Deleted, StoreError>| matches!(r, Err(StoreError::ObjectLocked(_)));

    store.create_bucket("plain").await.unwrap();
    let asked = ObjectLock {
        legal_hold: Some(true),
        ..Default::default()
    };
    let with_lock = || PutOptions {
        lock: asked,
        ..Default::default()
    };
    assert!(matches!(
        store
            .put_object("plain", "k", body(&[b"x"]), with_lock())
            .await,
        Err(StoreError::NoObjectLock(_))
    ));
    assert!(matches!(
        store.create_upload("plain", "k", with_lock()).await,
        Err(StoreError::NoObjectLock(_))
    ));
    put(&store, "plain", "k", b"x").await;
    assert!(matches!(
        store
            .update_object("plain", "k", None, ObjectUpdate::LegalHold(true))
            .await,
        Err(StoreError::NoObjectLock(_))
    ));

    store.create_bucket("b").await.unwrap();
    // Object Lock needs versioning enabled, and keeps it so.
    let none = Some(serde_json::to_string(&LockConfig::default()).unwrap());
    assert!(matches!(
        store
            .set_bucket_config("b", BucketConfig::ObjectLock, none)
            .await,
        Err(StoreError::InvalidBucketState(_))
    ));
    store
        .set_versioning("b", Versioning::Enabled)
        .await
        .unwrap();
    let config = LockConfig {
        default: Some(DefaultRetention::new(LockMode::Governance, Some(1), None).unwrap()),
    };
    store
        .set_bucket_config(
            "b",
            BucketConfig::ObjectLock,
            Some(serde_json::to_string(&config).unwrap()),
        )
        .await
        .unwrap();

    assert!(matches!(
        store.set_versioning("b", Versioning::Suspended).await,
        Err(StoreError::InvalidBucketState(_))
    ));

    // The default: governance for a day, which gives way only to a bypass.
    let g = put(&store, "b", "g", b"governed").await;
    let gv = g.version_id.clone().unwrap();
    assert_eq!(
        g.lock.retention,
        Some(Retention {
            mode: LockMode::Governance,
            until_ms: now + DAY
        })
    );
    assert!(locked(
        store
            .delete_object("b", "g", Some(&gv), Governance::Binds)
            .await
    ));
    store
        .delete_object("b", "g", Some(&gv), Governance::Bypassed)
        .await
        .unwrap();

    // Compliance asked for: nobody deletes the version, though a delete marker goes on top.
    let until = now + 2 * DAY;
    let c = store
        .put_object(
            "b",
            "c",
            body(&[b"complied"]),
            PutOptions {
                lock: ObjectLock {
                    retention: Some(Retention {
                        mode: LockMode::Compliance,
                        until_ms: until,
                    }),
                    legal_hold: None,
                },
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let cv = c.version_id.clone().unwrap();
    assert!(locked(
        store
            .delete_object("b", "c", Some(&cv), Governance::Bypassed)
            .await
    ));
    let marker = store
        .delete_object("b", "c", None, Governance::Binds)
        .await
        .unwrap();
    assert!(marker.delete_marker);
    let shorter = Retention {
        mode: LockMode::Compliance,
        until_ms: until - 1,
    };
    assert!(matches!(
        store
            .update_object(
                "b",
                "c",
                Some(&cv),
                ObjectUpdate::Retention(Some(shorter), Governance::Bypassed)
            )
            .await,
        Err(StoreError::ObjectLocked(_))
    ));
    let longer = Retention {
        mode: LockMode::Compliance,
        until_ms: until + DAY,
    };
    let extended = store
        .update_object(
            "b",
            "c",
            Some(&cv),
            ObjectUpdate::Retention(Some(longer), Governance::Binds),
        )
        .await
        .unwrap();
    assert_eq!(extended.lock.retention, Some(longer));
    assert_eq!(
        store
            .head_object("b", "c", Some(&cv))
            .await
            .unwrap()
            .lock
            .retention,
        Some(longer)
    );

    // A completed upload takes its own legal hold and the bucket's default.
    let upload = store.create_upload("b", "m", with_lock()).await.unwrap();
    let up = UploadRef {
        bucket: "b",
        key: "m",
        upload_id: &upload.upload_id,
    };
    let part = store
        .upload_part(up, 1, body(&[b"part"]), PutOptions::default())
        .await
        .unwrap();
    let m = store
        .complete_upload(up, vec![(1, part.etag)], None)
        .await
        .unwrap();
    assert_eq!(m.lock.legal_hold, Some(true));
    assert_eq!(m.lock.retention.map(|r| r.mode), Some(LockMode::Governance));
    let mv = m.version_id.clone().unwrap();

    // Once retention ends only the legal hold binds, until it is lifted.
    clock.advance(std::time::Duration::from_secs(4 * 24 * 3600));
    store
        .delete_object("b", "c", Some(&cv), Governance::Binds)
        .await
        .unwrap();
    assert!(locked(
        store
            .delete_object("b", "m", Some(&mv), Governance::Bypassed)
            .await
    ));
    let lifted = store
        .update_object("b", "m", Some(&mv), ObjectUpdate::LegalHold(false))
        .await
        .unwrap();
    assert_eq!(lifted.lock.legal_hold, Some(false));
    store
        .delete_object("b", "m", Some(&mv), Governance::Binds)
        .await
        .unwrap();
}

#[tokio::test]
async fn memory_object_lock() {
    let clock = clock();
    object_lock(MemoryStore::new(clock.clone()), clock).await;
}

#[tokio::test]
async fn disk_object_lock() {
    let dir = tempfile::tempdir().unwrap();
    let clock = clock();
    object_lock(DiskStore::open(dir.path(), clock.clone()).unwrap(), clock).await;
}

macro_rules! conformance {
    ($backend:ident, $make:expr) => {
        mod $backend {
            use super::*;

            #[tokio::test]
            async fn buckets() {
                let dir = tempfile::tempdir().unwrap();
                super::buckets(($make)(dir.path())).await
            }
            #[tokio::test]
            async fn objects() {
                let dir = tempfile::tempdir().unwrap();
                super::objects(($make)(dir.path())).await
            }
            #[tokio::test]
            async fn odd_keys() {
                let dir = tempfile::tempdir().unwrap();
                super::odd_keys(($make)(dir.path())).await
            }
            #[tokio::test]
            async fn refused_bodies_store_nothing() {
                let dir = tempfile::tempdir().unwrap();
                super::refused_bodies_store_nothing(($make)(dir.path())).await
            }
            #[tokio::test]
            async fn ranges() {
                let dir = tempfile::tempdir().unwrap();
                super::ranges(($make)(dir.path())).await
            }
            #[tokio::test]
            async fn listing() {
                let dir = tempfile::tempdir().unwrap();
                super::listing(($make)(dir.path())).await
            }
            #[tokio::test]
            async fn multipart() {
                let dir = tempfile::tempdir().unwrap();
                super::multipart(($make)(dir.path())).await
            }
            #[tokio::test]
            async fn multipart_small_parts_and_abort() {
                let dir = tempfile::tempdir().unwrap();
                super::multipart_small_parts_and_abort(($make)(dir.path())).await
            }
            #[tokio::test]
            async fn deleting_a_bucket_discards_its_uploads() {
                let dir = tempfile::tempdir().unwrap();
                super::deleting_a_bucket_discards_its_uploads(($make)(dir.path())).await
            }
            #[tokio::test]
            async fn conditional_writes() {
                let dir = tempfile::tempdir().unwrap();
                super::conditional_writes(($make)(dir.path())).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn racing_conditional_writers() {
                let dir = tempfile::tempdir().unwrap();
                super::racing_conditional_writers(($make)(dir.path())).await
            }
            #[tokio::test]
            async fn completions_conditional_and_repeated() {
                let dir = tempfile::tempdir().unwrap();
                super::completions_conditional_and_repeated(($make)(dir.path())).await
            }
            #[tokio::test]
            async fn policies() {
                let dir = tempfile::tempdir().unwrap();
                super::policies(($make)(dir.path())).await
            }
            #[tokio::test]
            async fn versioning_keeps_every_version() {
                let dir = tempfile::tempdir().unwrap();
                super::versioning_keeps_every_version(($make)(dir.path())).await
            }
            #[tokio::test]
            async fn suspended_versioning_replaces_the_null_version() {
                let dir = tempfile::tempdir().unwrap();
                super::suspended_versioning_replaces_the_null_version(($make)(dir.path())).await
            }
            #[tokio::test]
            async fn version_listings_page_and_roll_up() {
                let dir = tempfile::tempdir().unwrap();
                super::version_listings_page_and_roll_up(($make)(dir.path())).await
            }
        }
    };
}

conformance!(memory, |_| MemoryStore::new(clock()));
conformance!(disk, |dir: &std::path::Path| DiskStore::open(dir, clock())
    .unwrap());

#[test]
fn object_records_of_older_versions_still_read() {
    // An `ObjectInfo` as versions before stored headers and parts wrote it.
    let old =
        r#"{"key":"k","size":3,"etag":"e","last_modified_ms":1,"content_type":null,"metadata":{}}"#;
    let info: ObjectInfo = serde_json::from_str(old).unwrap();
    assert!(info.headers.is_empty());
    assert!(info.parts.is_empty());
    // Empty headers and parts are not written at all.
    assert_eq!(serde_json::to_string(&info).unwrap(), old);
}

fn files_under(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(files_under(&path));
        } else {
            out.push(path);
        }
    }
    out
}

#[tokio::test]
async fn disk_keeps_data_across_reopen_and_leaves_no_garbage() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = DiskStore::open(dir.path(), clock()).unwrap();
        store.create_bucket("b").await.unwrap();
        // Larger than the inline limit, so that each version is a blob file.
        put(&store, "b", "k", &big(b'1')).await;
        put(&store, "b", "k", &big(b'2')).await;
        put(&store, "b", "gone", &big(b'x')).await;
        store
            .delete_object("b", "gone", None, Governance::Binds)
            .await
            .unwrap();
        let _ = store
            .put_object(
                "b",
                "bad",
                body(&[&big(b'x')]),
                PutOptions {
                    content_md5: Some([0; 16]),
                    ..Default::default()
                },
            )
            .await;
        // One blob for one live object: overwrites, deletes and refusals left nothing behind.
        assert_eq!(files_under(&dir.path().join("blobs")).len(), 1);
        assert!(files_under(&dir.path().join("tmp")).is_empty());
    }
    let store = DiskStore::open(dir.path(), clock()).unwrap();
    assert_eq!(get(&store, "b", "k").await.unwrap(), big(b'2'));
    // Nothing is ever written outside the store's folder, whatever the key.
    put(&store, "b", "../../escape", b"x").await;
    assert!(!dir.path().parent().unwrap().join("escape").exists());
}

#[tokio::test]
async fn disk_recovers_from_a_crash_mid_put() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = DiskStore::open(dir.path(), clock()).unwrap();
        store.create_bucket("b").await.unwrap();
        put(&store, "b", "k", &big(b'c')).await;
    }
    // What a crash leaves: a half-written temporary file, and a renamed blob whose commit never
    // happened.
    std::fs::write(dir.path().join("tmp").join("0123abcd"), b"half of an upl").unwrap();
    let orphan_dir = dir.path().join("blobs").join("ff");
    std::fs::create_dir_all(&orphan_dir).unwrap();
    std::fs::write(
        orphan_dir.join("ff00000000000000000000000000000000"),
        b"renamed, never committed",
    )
    .unwrap();

    let store = DiskStore::open(dir.path(), clock()).unwrap();
    assert_eq!(get(&store, "b", "k").await.unwrap(), big(b'c'));
    assert!(files_under(&dir.path().join("tmp")).is_empty());
    assert_eq!(files_under(&dir.path().join("blobs")).len(), 1);
    let page = store
        .list_objects(
            "b",
            ListQuery {
                max_keys: 10,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(keys(&page), ["k"]);
}

#[tokio::test]
async fn disk_multipart_leaves_no_part_blobs_and_keeps_live_uploads_across_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let id = {
        let store = DiskStore::open(dir.path(), clock()).unwrap();
        store.create_bucket("b").await.unwrap();
        let done = store
            .create_upload("b", "done", PutOptions::default())
            .await
            .unwrap();
        let upload = UploadRef {
            bucket: "b",
            key: "done",
            upload_id: &done.upload_id,
        };
        let part = store
            .upload_part(upload, 1, body(&[b"one"]), PutOptions::default())
            .await
            .unwrap();
        store
            .complete_upload(upload, vec![(1, part.etag)], None)
            .await
            .unwrap();
        let aborted = store
            .create_upload("b", "aborted", PutOptions::default())
            .await
            .unwrap();
        let upload = UploadRef {
            bucket: "b",
            key: "aborted",
            upload_id: &aborted.upload_id,
        };
        store
            .upload_part(upload, 1, body(&[b"gone"]), PutOptions::default())
            .await
            .unwrap();
        store.abort_upload(upload).await.unwrap();
        let live = store
            .create_upload("b", "live", PutOptions::default())
            .await
            .unwrap();
        let upload = UploadRef {
            bucket: "b",
            key: "live",
            upload_id: &live.upload_id,
        };
        store
            .upload_part(upload, 1, body(&[b"kept"]), PutOptions::default())
            .await
            .unwrap();
        // The completed object and the live upload's part: nothing else.
        assert_eq!(files_under(&dir.path().join("blobs")).len(), 2);
        live.upload_id
    };
    let store = DiskStore::open(dir.path(), clock()).unwrap();
    assert_eq!(files_under(&dir.path().join("blobs")).len(), 2);
    let upload = UploadRef {
        bucket: "b",
        key: "live",
        upload_id: &id,
    };
    let parts = store.list_parts(upload).await.unwrap();
    store
        .complete_upload(upload, vec![(1, parts[0].etag.clone())], None)
        .await
        .unwrap();
    assert_eq!(get(&store, "b", "live").await.unwrap(), b"kept");
    assert_eq!(get(&store, "b", "done").await.unwrap(), b"one");
}

#[tokio::test]
async fn a_second_opener_leaves_the_first_ones_files_alone() {
    let dir = tempfile::tempdir().unwrap();
    let first = DiskStore::open(dir.path(), clock()).unwrap();
    first.create_bucket("b").await.unwrap();
    let in_flight = dir.path().join("tmp").join("upload-in-progress");
    std::fs::write(&in_flight, b"half").unwrap();
    // Regression: the second opener cleaned tmp/ before finding the database locked.
    assert!(DiskStore::open(dir.path(), clock()).is_err());
    assert!(in_flight.exists());
    let empty = files_under(&dir.path().join("blobs"));
    assert!(empty.is_empty());
    drop(first);
}

/// 100 KiB: above the inline limit.
fn big(byte: u8) -> Vec<u8> {
    vec![byte; 100 * 1024]
}

#[tokio::test]
async fn small_objects_live_in_their_record_and_large_ones_in_blobs() {
    let dir = tempfile::tempdir().unwrap();
    let store = DiskStore::open(dir.path(), clock()).unwrap();
    store.create_bucket("b").await.unwrap();
    let blobs = || files_under(&dir.path().join("blobs")).len();
    put(&store, "b", "k", &vec![7u8; 64 * 1024]).await;
    assert_eq!(blobs(), 0);
    put(&store, "b", "k", &vec![8u8; 64 * 1024 + 1]).await;
    assert_eq!(blobs(), 1);
    assert_eq!(
        get(&store, "b", "k").await.unwrap(),
        vec![8u8; 64 * 1024 + 1]
    );
    // Back to small: the large version's blob goes.
    put(&store, "b", "k", b"small again").await;
    assert_eq!(blobs(), 0);
    let (_, part) = store
        .get_object(
            "b",
            "k",
            None,
            Some(ByteRange::From {
                first: 6,
                last: None,
            }),
        )
        .await
        .unwrap();
    assert_eq!(read(part).await, b"again");
    store
        .delete_object("b", "k", None, Governance::Binds)
        .await
        .unwrap();
    assert_eq!(get(&store, "b", "k").await, None);
    // A large body that fails its digest after the inline limit stores nothing.
    let bad = PutOptions {
        content_md5: Some([0; 16]),
        ..Default::default()
    };
    assert!(matches!(
        store.put_object("b", "k", body(&[&big(b'z')]), bad).await,
        Err(StoreError::BadDigest)
    ));
    assert_eq!(blobs(), 0);
    assert!(files_under(&dir.path().join("tmp")).is_empty());
}

#[tokio::test]
async fn reads_survive_a_concurrent_overwrite() {
    let dir = tempfile::tempdir().unwrap();
    let store = DiskStore::open(dir.path(), clock()).unwrap();
    store.create_bucket("b").await.unwrap();
    let big = vec![7u8; 3 * 1024 * 1024];
    put(&store, "b", "k", &big).await;
    let (_, stream) = store.get_object("b", "k", None, None).await.unwrap();
    put(&store, "b", "k", b"small").await;
    // The reader keeps the version it opened, whole.
    assert_eq!(read(stream).await, big);
    assert_eq!(get(&store, "b", "k").await.unwrap(), b"small");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_puts_are_grouped_and_each_answered() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(DiskStore::open(dir.path(), clock()).unwrap());
    store.create_bucket("b").await.unwrap();
    let mut tasks = Vec::new();
    for i in 0..64u32 {
        let store = Arc::clone(&store);
        tasks.push(tokio::spawn(async move {
            // Half small (inline), half large (blob files); every fourth to a key shared by all.
            let key = if i % 4 == 0 {
                "shared".to_owned()
            } else {
                format!("k{i}")
            };
            let data = if i % 2 == 0 {
                vec![i as u8; 10]
            } else {
                vec![i as u8; 70 * 1024]
            };
            store
                .put_object("b", &key, body(&[&data]), PutOptions::default())
                .await
                .unwrap();
            (key, data)
        }));
    }
    let mut written = Vec::new();
    for t in tasks {
        written.push(t.await.unwrap());
    }
    for (key, data) in &written {
        if key != "shared" {
            assert_eq!(&get(store.as_ref(), "b", key).await.unwrap(), data);
        }
    }
    // The shared key holds one of its writers' data, whole.
    let shared = get(store.as_ref(), "b", "shared").await.unwrap();
    assert!(written.iter().any(|(k, d)| k == "shared" && *d == shared));
    // Blob files: exactly the large objects still referenced.
    let page = store
        .list_objects(
            "b",
            ListQuery {
                max_keys: 1000,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let large = page.objects.iter().filter(|o| o.size > 64 * 1024).count();
    assert_eq!(files_under(&dir.path().join("blobs")).len(), large);
    // A commit to a bucket that is gone fails alone.
    store
        .delete_object("b", "shared", None, Governance::Binds)
        .await
        .unwrap();
    assert!(matches!(
        store
            .put_object("gone", "k", body(&[b"x"]), PutOptions::default())
            .await,
        Err(StoreError::NoSuchBucket(_))
    ));
}

fn mode(path: &std::path::Path) -> u32 {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// Every folder under `dir` (itself included) and every file, with its mode.
fn modes_under(dir: &std::path::Path) -> Vec<(std::path::PathBuf, u32)> {
    let mut out = vec![(dir.to_owned(), mode(dir))];
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(modes_under(&path));
        } else {
            out.push((path.clone(), mode(&path)));
        }
    }
    out
}

#[tokio::test]
async fn disk_files_are_readable_by_their_owner_alone() {
    use std::os::unix::fs::PermissionsExt as _;
    let parent = tempfile::tempdir().unwrap();
    let root = parent.path().join("objects");
    {
        let store = DiskStore::open(&root, clock()).unwrap();
        store.create_bucket("b").await.unwrap();
        put(&store, "b", "k", &big(b'1')).await;
        let up = store
            .create_upload("b", "mp", PutOptions::default())
            .await
            .unwrap();
        let upload = UploadRef {
            bucket: "b",
            key: "mp",
            upload_id: &up.upload_id,
        };
        store
            .upload_part(upload, 1, body(&[&big(b'p')]), PutOptions::default())
            .await
            .unwrap();
    }
    let found = modes_under(&root);
    // Two blobs (the object, the part), their folders, meta.redb.
    assert!(
        found.iter().filter(|(p, _)| p.is_file()).count() >= 3,
        "{found:?}"
    );
    for (path, m) in &found {
        let want = if path.is_dir() { 0o700 } else { 0o600 };
        assert_eq!(*m, want, "{}", path.display());
    }
    // A store an older version left open is tightened when it opens.
    for (path, _) in &found {
        let open = if path.is_dir() { 0o755 } else { 0o644 };
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(open)).unwrap();
    }
    let store = DiskStore::open(&root, clock()).unwrap();
    assert_eq!(get(&store, "b", "k").await.unwrap(), big(b'1'));
    for (path, m) in modes_under(&root) {
        if path.is_dir() {
            assert_eq!(m, 0o700, "{}", path.display());
        }
    }
    assert_eq!(mode(&root.join("meta.redb")), 0o600);
}

conformance!(disk_sealed, |dir: &std::path::Path| DiskStore::open_sealed(
    dir,
    clock(),
    Arc::new(seal::MasterKeys::generate().unwrap())
)
.unwrap());

/// Every byte of every file under `dir`, concatenated.
fn all_bytes_under(dir: &std::path::Path) -> Vec<u8> {
    files_under(dir)
        .iter()
        .flat_map(|f| std::fs::read(f).unwrap())
        .collect()
}

/// An object body that is easy to find: a marker repeated.
fn marked(n: usize) -> Vec<u8> {
    b"PLAINTEXT-MARKER-".repeat(n)
}

async fn sealed_multipart(store: &DiskStore, key: &str) -> Vec<u8> {
    let up = store
        .create_upload("b", key, PutOptions::default())
        .await
        .unwrap();
    let upload = UploadRef {
        bucket: "b",
        key,
        upload_id: &up.upload_id,
    };
    let first = marked(MIN_PART_SIZE as usize / 17 + 1);
    let second = marked(3000);
    let p1 = store
        .upload_part(upload, 1, body(&[&first]), PutOptions::default())
        .await
        .unwrap();
    let p2 = store
        .upload_part(upload, 2, body(&[&second]), PutOptions::default())
        .await
        .unwrap();
    store
        .complete_upload(upload, vec![(1, p1.etag), (2, p2.etag)], None)
        .await
        .unwrap();
    [first, second].concat()
}

#[tokio::test]
async fn sealing_on_request_seals_only_what_asked() {
    let dir = tempfile::tempdir().unwrap();
    let keys = Arc::new(seal::MasterKeys::generate().unwrap());
    let store = DiskStore::open_sealing(dir.path(), clock(), keys, Sealing::Requested).unwrap();
    assert_eq!(store.sealing(), Sealing::Requested);
    store.create_bucket("b").await.unwrap();
    let asked = || PutOptions {
        seal: true,
        ..Default::default()
    };
    let clear = b"CLEAR-TEXT-".repeat(10_000);
    assert!(!put(&store, "b", "clear", &clear).await.sealed);
    for (key, data) in [("small", marked(10)), ("large", marked(20_000))] {
        let info = store
            .put_object("b", key, body(&[&data]), asked())
            .await
            .unwrap();
        assert!(info.sealed, "{key}");
        assert_eq!(get(&store, "b", key).await.unwrap(), data);
    }
    let up = store.create_upload("b", "mp", asked()).await.unwrap();
    let upload = UploadRef {
        bucket: "b",
        key: "mp",
        upload_id: &up.upload_id,
    };
    let part = store
        .upload_part(upload, 1, body(&[&marked(100)]), PutOptions::default())
        .await
        .unwrap();
    assert!(part.sealed);
    let done = store
        .complete_upload(upload, vec![(1, part.etag)], None)
        .await
        .unwrap();
    assert!(done.sealed);
    let on_disk = all_bytes_under(dir.path());
    let holds = |needle: &[u8]| on_disk.windows(needle.len()).any(|w| w == needle);
    assert!(
        !holds(b"PLAINTEXT-MARKER-"),
        "a sealed write left plaintext"
    );
    assert!(
        holds(b"CLEAR-TEXT-CLEAR-TEXT-"),
        "the unsealed write was sealed"
    );
    assert_eq!(get(&store, "b", "clear").await.unwrap(), clear);
}

#[tokio::test]
async fn sealed_objects_are_not_plaintext_on_disk_and_ranges_open_across_parts() {
    let dir = tempfile::tempdir().unwrap();
    let keys = Arc::new(seal::MasterKeys::generate().unwrap());
    let store = DiskStore::open_sealed(dir.path(), clock(), keys).unwrap();
    store.create_bucket("b").await.unwrap();
    let small = marked(10);
    let large = marked(20_000);
    let info = put(&store, "b", "small", &small).await;
    // The ETag is the plaintext's MD5, as S3 gives for SSE-S3 objects.
    assert_eq!(info.etag, keyless_types::hex::encode(&Md5::digest(&small)));
    put(&store, "b", "large", &large).await;
    let whole = sealed_multipart(&store, "parts").await;
    let on_disk = all_bytes_under(dir.path());
    assert!(
        !on_disk
            .windows(b"PLAINTEXT-MARKER-".len())
            .any(|w| w == b"PLAINTEXT-MARKER-"),
        "plaintext found in the data folder"
    );
    assert_eq!(get(&store, "b", "small").await.unwrap(), small);
    assert_eq!(get(&store, "b", "large").await.unwrap(), large);
    assert_eq!(get(&store, "b", "parts").await.unwrap(), whole);
    // Ranges: inside a segment, across segments, across the parts' boundary, the last byte.
    let boundary = (MIN_PART_SIZE as usize / 17 + 1) * 17;
    for (first, last) in [
        (3u64, 9u64),
        (65_530, 65_560),
        (boundary as u64 - 7, boundary as u64 + 40_000),
        (whole.len() as u64 - 1, whole.len() as u64 - 1),
    ] {
        let (_, stream) = store
            .get_object(
                "b",
                "parts",
                None,
                Some(ByteRange::From {
                    first,
                    last: Some(last),
                }),
            )
            .await
            .unwrap();
        assert_eq!(
            read(stream).await,
            &whole[first as usize..=last as usize],
            "{first}-{last}"
        );
    }
}

#[tokio::test]
async fn a_rotated_master_key_rewraps_data_keys_and_altered_bytes_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut keys = seal::MasterKeys::generate().unwrap();
    let large = marked(20_000);
    let whole = {
        let store =
            DiskStore::open_sealed(dir.path(), clock(), Arc::new(keys_clone(&keys))).unwrap();
        store.create_bucket("b").await.unwrap();
        put(&store, "b", "small", b"tiny").await;
        put(&store, "b", "large", &large).await;
        sealed_multipart(&store, "parts").await
    };
    let blobs_before = all_bytes_under(&dir.path().join("blobs"));
    keys.rotate().unwrap();
    {
        // Opening with the new active key re-wraps every data key...
        DiskStore::open_sealed(dir.path(), clock(), Arc::new(keys_clone(&keys))).unwrap();
    }
    // ...without touching the data,
    assert_eq!(all_bytes_under(&dir.path().join("blobs")), blobs_before);
    // so that the new key alone now opens everything.
    let only_new = seal::MasterKeys::from_json(
        format!(
            r#"{{"active":"{a}","keys":{{"{a}":"{k}"}}}}"#,
            a = keys.active(),
            k = active_hex(&keys)
        )
        .as_bytes(),
    )
    .unwrap();
    let store = DiskStore::open_sealed(dir.path(), clock(), Arc::new(only_new)).unwrap();
    assert_eq!(get(&store, "b", "small").await.unwrap(), b"tiny");
    assert_eq!(get(&store, "b", "large").await.unwrap(), large);
    assert_eq!(get(&store, "b", "parts").await.unwrap(), whole);
    // A flipped byte in a blob's first segment fails the read before any byte is served.
    let blob = files_under(&dir.path().join("blobs"))
        .into_iter()
        .find(|f| std::fs::metadata(f).unwrap().len() > 200_000)
        .unwrap();
    let mut bytes = std::fs::read(&blob).unwrap();
    bytes[100] ^= 1;
    std::fs::write(&blob, bytes).unwrap();
    let mut refused = 0;
    for key in ["large", "parts"] {
        match store.get_object("b", key, None, None).await {
            Err(StoreError::Sealed(e)) => {
                assert!(e.contains(&format!("s3://b/{key}")), "{e}");
                refused += 1;
            }
            Err(e) => panic!("{e}"),
            Ok(_) => {}
        }
    }
    assert_eq!(refused, 1, "an altered blob was served");
}

#[tokio::test]
async fn an_altered_segment_past_the_first_mebibyte_ends_the_body() {
    let dir = tempfile::tempdir().unwrap();
    let keys = seal::MasterKeys::generate().unwrap();
    let store = DiskStore::open_sealed(dir.path(), clock(), Arc::new(keys)).unwrap();
    store.create_bucket("b").await.unwrap();
    let data = marked(200_000); // 3.4 MB
    put(&store, "b", "k", &data).await;
    let blob = files_under(&dir.path().join("blobs")).pop().unwrap();
    let mut bytes = std::fs::read(&blob).unwrap();
    bytes[2 << 20] ^= 1;
    std::fs::write(&blob, bytes).unwrap();

    // The answer starts (the first MiB is sound), then ends with an error, never with the
    // altered segment.
    let (_, mut stream) = store.get_object("b", "k", None, None).await.unwrap();
    let mut served = Vec::new();
    let error = loop {
        match stream.next().await {
            Some(Ok(chunk)) => served.extend_from_slice(&chunk),
            Some(Err(e)) => break e,
            None => panic!("an altered blob was served whole"),
        }
    };
    assert_eq!(error.kind(), std::io::ErrorKind::InvalidData);
    assert!(
        served.len() >= 1 << 20 && served.len() < 2 << 20,
        "{}",
        served.len()
    );
    assert_eq!(served, data[..served.len()]);
    // A range that starts past the damage is unaffected.
    let tail = ByteRange::From {
        first: 3 << 20,
        last: None,
    };
    let (_, stream) = store.get_object("b", "k", None, Some(tail)).await.unwrap();
    let tail_bytes = read(stream).await;
    assert_eq!(tail_bytes, data[3 << 20..]);
}

#[tokio::test]
async fn plaintext_objects_stay_readable_once_the_store_seals() {
    let dir = tempfile::tempdir().unwrap();
    let large = marked(20_000);
    {
        let store = DiskStore::open(dir.path(), clock()).unwrap();
        store.create_bucket("b").await.unwrap();
        put(&store, "b", "small", b"old").await;
        put(&store, "b", "large", &large).await;
    }
    let keys = Arc::new(seal::MasterKeys::generate().unwrap());
    let store = DiskStore::open_sealed(dir.path(), clock(), keys).unwrap();
    assert_eq!(get(&store, "b", "small").await.unwrap(), b"old");
    assert_eq!(get(&store, "b", "large").await.unwrap(), large);
    put(&store, "b", "new", b"sealed now").await;
    assert_eq!(get(&store, "b", "new").await.unwrap(), b"sealed now");
}

fn keys_clone(keys: &seal::MasterKeys) -> seal::MasterKeys {
    seal::MasterKeys::from_json(keys.to_json().expose().as_bytes()).unwrap()
}

fn active_hex(keys: &seal::MasterKeys) -> String {
    let file: serde_json::Value = serde_json::from_str(keys.to_json().expose()).unwrap();
    file["keys"][keys.active()].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn versions_and_their_blobs_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let old = vec![1u8; 200_000];
    let new = vec![2u8; 200_000];
    let (v_old, v_small) = {
        let store = DiskStore::open(dir.path(), clock()).unwrap();
        store.create_bucket("b").await.unwrap();
        store
            .set_versioning("b", Versioning::Enabled)
            .await
            .unwrap();
        let v_old = put(&store, "b", "big", &old).await.version_id.unwrap();
        put(&store, "b", "big", &new).await;
        let v_small = put(&store, "b", "small", b"inline")
            .await
            .version_id
            .unwrap();
        put(&store, "b", "small", b"newer").await;
        store
            .delete_object("b", "small", None, Governance::Binds)
            .await
            .unwrap();
        (v_old, v_small)
    };
    // Opening removes orphan blobs: a noncurrent version's blob is not one.
    let store = DiskStore::open(dir.path(), clock()).unwrap();
    assert_eq!(get_version(&store, "big", &v_old).await, old);
    assert_eq!(get(&store, "b", "big").await.unwrap(), new);
    assert_eq!(get_version(&store, "small", &v_small).await, b"inline");
    assert!(matches!(
        store.head_object("b", "small", None).await,
        Err(StoreError::DeleteMarker { .. })
    ));
    assert_eq!(versions(&store, "b").await.len(), 5);
    // Deleting a version for good removes its blob.
    let blobs = files_under(&dir.path().join("blobs")).len();
    store
        .delete_object("b", "big", Some(&v_old), Governance::Binds)
        .await
        .unwrap();
    assert_eq!(files_under(&dir.path().join("blobs")).len(), blobs - 1);
}
