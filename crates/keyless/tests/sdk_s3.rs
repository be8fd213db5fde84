//! `keyless serve` driven by the AWS Rust SDK (`aws-sdk-s3`), unmodified, with its defaults:
//! flexible checksums (CRC32, sent as a trailer of streaming uploads), path-style addressing
//! against a custom endpoint.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod common;

use std::io::{Read as _, Write as _};
use std::time::Duration;

use aws_sdk_s3::Client;
use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_s3::presigning::PresigningConfig;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart, Delete, ObjectIdentifier};

fn client(endpoint: &str, access_key_id: &str, secret: &str) -> Client {
    let http = aws_smithy_http_client::Builder::new().build_http();
    let config = aws_sdk_s3::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(endpoint)
        .force_path_style(true)
        .credentials_provider(Credentials::new(
            access_key_id,
            secret,
            None,
            None,
            "keyless-test",
        ))
        .http_client(http)
        .build();
    Client::from_conf(config)
}

/// A plain HTTP GET, for presigned URLs.
fn http_get(url: &str) -> (u16, Vec<u8>) {
    let rest = url.strip_prefix("http://").unwrap();
    let (host, path) = rest.split_at(rest.find('/').unwrap());
    let mut stream = std::net::TcpStream::connect(host).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).unwrap();
    let split = response.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let head = String::from_utf8_lossy(&response[..split]).to_string();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, response[split + 4..].to_vec())
}

async fn objects_listings_and_checksums_on(server: common::Server) {
    let s3 = client(&server.endpoint, &server.key.0, &server.key.1);
    s3.create_bucket().bucket("sdk").send().await.unwrap();
    let put = s3
        .put_object()
        .bucket("sdk")
        .key("dir/hello.txt")
        .content_type("text/plain")
        .metadata("owner", "gitlab")
        .body(ByteStream::from_static(b"hello from the Rust SDK"))
        .send()
        .await
        .unwrap();
    assert!(put.e_tag().unwrap().starts_with('"'));
    let got = s3
        .get_object()
        .bucket("sdk")
        .key("dir/hello.txt")
        .send()
        .await
        .unwrap();
    assert_eq!(got.content_type(), Some("text/plain"));
    assert_eq!(got.metadata().unwrap()["owner"], "gitlab");
    assert_eq!(
        got.body.collect().await.unwrap().into_bytes().as_ref(),
        b"hello from the Rust SDK"
    );

    // A file body streams with the SDK's CRC32 trailer.
    let path = std::env::temp_dir().join(format!("keyless-sdk-file-{}", std::process::id()));
    let data: Vec<u8> = (0..3 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(&path, &data).unwrap();
    s3.put_object()
        .bucket("sdk")
        .key("file.bin")
        .body(ByteStream::from_path(&path).await.unwrap())
        .send()
        .await
        .unwrap();
    std::fs::remove_file(&path).unwrap();
    let back = s3
        .get_object()
        .bucket("sdk")
        .key("file.bin")
        .send()
        .await
        .unwrap();
    assert_eq!(
        back.body.collect().await.unwrap().into_bytes().as_ref(),
        &data[..]
    );
    let range = s3
        .get_object()
        .bucket("sdk")
        .key("file.bin")
        .range("bytes=10-19")
        .send()
        .await
        .unwrap();
    assert_eq!(range.content_range(), Some("bytes 10-19/3145728"));
    assert_eq!(
        range.body.collect().await.unwrap().into_bytes().as_ref(),
        &data[10..20]
    );

    // A wrong checksum stores nothing.
    let err = s3
        .put_object()
        .bucket("sdk")
        .key("bad")
        .checksum_crc32("AAAAAA==")
        .body(ByteStream::from_static(b"not matching"))
        .send()
        .await
        .unwrap_err();
    assert_eq!(err.into_service_error().meta().code(), Some("BadDigest"));
    assert!(
        s3.head_object()
            .bucket("sdk")
            .key("bad")
            .send()
            .await
            .is_err()
    );

    for key in ["a/1", "a/2", "b/1", "c"] {
        s3.put_object()
            .bucket("sdk")
            .key(key)
            .body(ByteStream::from_static(b"x"))
            .send()
            .await
            .unwrap();
    }
    let page = s3
        .list_objects_v2()
        .bucket("sdk")
        .delimiter("/")
        .send()
        .await
        .unwrap();
    let prefixes: Vec<&str> = page
        .common_prefixes()
        .iter()
        .filter_map(|p| p.prefix())
        .collect();
    assert_eq!(prefixes, ["a/", "b/", "dir/"]);
    let keys: Vec<&str> = page.contents().iter().filter_map(|o| o.key()).collect();
    assert_eq!(keys, ["c", "file.bin"]);
    let mut pages = s3
        .list_objects_v2()
        .bucket("sdk")
        .max_keys(2)
        .into_paginator()
        .send();
    let mut all = Vec::new();
    while let Some(page) = pages.next().await {
        all.extend(
            page.unwrap()
                .contents()
                .iter()
                .filter_map(|o| o.key().map(str::to_owned)),
        );
    }
    assert_eq!(all, ["a/1", "a/2", "b/1", "c", "dir/hello.txt", "file.bin"]);

    s3.copy_object()
        .bucket("sdk")
        .key("copy")
        .copy_source("sdk/c")
        .send()
        .await
        .unwrap();
    let deleted = s3
        .delete_objects()
        .bucket("sdk")
        .delete(
            Delete::builder()
                .objects(ObjectIdentifier::builder().key("a/1").build().unwrap())
                .objects(ObjectIdentifier::builder().key("copy").build().unwrap())
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.deleted().len(), 2);

    // Presigned GET, fetched by a plain HTTP client.
    let presigned = s3
        .get_object()
        .bucket("sdk")
        .key("dir/hello.txt")
        .presigned(PresigningConfig::expires_in(Duration::from_secs(60)).unwrap())
        .await
        .unwrap();
    let (status, body) = http_get(presigned.uri());
    assert_eq!(status, 200);
    assert_eq!(body, b"hello from the Rust SDK");
}

async fn multipart_upload_on(server: common::Server) {
    let s3 = client(&server.endpoint, &server.key.0, &server.key.1);
    s3.create_bucket().bucket("mpu").send().await.unwrap();
    let upload = s3
        .create_multipart_upload()
        .bucket("mpu")
        .key("big")
        .send()
        .await
        .unwrap();
    let id = upload.upload_id().unwrap();
    let chunks = [
        vec![1u8; 5 * 1024 * 1024],
        vec![2u8; 5 * 1024 * 1024],
        vec![3u8; 1024],
    ];
    let mut parts = Vec::new();
    for (i, chunk) in chunks.iter().enumerate() {
        let n = i32::try_from(i + 1).unwrap();
        let part = s3
            .upload_part()
            .bucket("mpu")
            .key("big")
            .upload_id(id)
            .part_number(n)
            .body(ByteStream::from(chunk.clone()))
            .send()
            .await
            .unwrap();
        parts.push(
            CompletedPart::builder()
                .part_number(n)
                .e_tag(part.e_tag().unwrap())
                .build(),
        );
    }
    let done = s3
        .complete_multipart_upload()
        .bucket("mpu")
        .key("big")
        .upload_id(id)
        .multipart_upload(
            CompletedMultipartUpload::builder()
                .set_parts(Some(parts))
                .build(),
        )
        .send()
        .await
        .unwrap();
    assert!(done.e_tag().unwrap().ends_with("-3\""));
    let got = s3
        .get_object()
        .bucket("mpu")
        .key("big")
        .send()
        .await
        .unwrap();
    assert_eq!(got.content_length(), Some(10 * 1024 * 1024 + 1024));
    assert_eq!(
        got.body.collect().await.unwrap().into_bytes().as_ref(),
        chunks.concat().as_slice()
    );
}

async fn wrong_keys_are_refused_on(server: common::Server) {
    let err = client(&server.endpoint, &server.key.0, "not-the-secret")
        .list_buckets()
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        err.into_service_error().meta().code(),
        Some("SignatureDoesNotMatch")
    );
    let err = client(&server.endpoint, "AKIANOBODYNOBODY0000", "x")
        .list_buckets()
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        err.into_service_error().meta().code(),
        Some("InvalidAccessKeyId")
    );
}

async fn conditional_reads_and_writes_on(server: common::Server) {
    use aws_sdk_s3::error::ProvideErrorMetadata as _;
    let s3 = client(&server.endpoint, &server.key.0, &server.key.1);
    s3.create_bucket().bucket("cond").send().await.unwrap();
    let put = s3
        .put_object()
        .bucket("cond")
        .key("k")
        .body(ByteStream::from_static(b"0123456789"))
        .send()
        .await
        .unwrap();
    let etag = put.e_tag().unwrap().to_owned();
    // A ranged GET pinned to another ETag (what `keyless backup download` sends for every
    // range) is refused, not served from the replaced object.
    let err = s3
        .get_object()
        .bucket("cond")
        .key("k")
        .range("bytes=2-4")
        .if_match("\"0123456789abcdef0123456789abcdef\"")
        .send()
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("PreconditionFailed"), "{err:?}");
    let got = s3
        .get_object()
        .bucket("cond")
        .key("k")
        .range("bytes=2-4")
        .if_match(&etag)
        .send()
        .await
        .unwrap();
    assert_eq!(
        got.body.collect().await.unwrap().into_bytes().as_ref(),
        b"234"
    );
    // If-None-Match with the current ETag: 304, which the SDK reports as an error.
    let err = s3
        .get_object()
        .bucket("cond")
        .key("k")
        .if_none_match(&etag)
        .send()
        .await
        .unwrap_err();
    let status = err.raw_response().map(|r| r.status().as_u16());
    assert_eq!(status, Some(304), "{err:?}");
    // A conditional write never overwrites.
    let err = s3
        .put_object()
        .bucket("cond")
        .key("k")
        .if_none_match("*")
        .body(ByteStream::from_static(b"other"))
        .send()
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("PreconditionFailed"), "{err:?}");
    let kept = s3
        .get_object()
        .bucket("cond")
        .key("k")
        .send()
        .await
        .unwrap();
    assert_eq!(
        kept.body.collect().await.unwrap().into_bytes().as_ref(),
        b"0123456789"
    );
}

async fn versioned_buckets_on(server: common::Server) {
    use aws_sdk_s3::error::ProvideErrorMetadata as _;
    use aws_sdk_s3::types::{
        BucketVersioningStatus, Delete, ObjectIdentifier, VersioningConfiguration,
    };
    let s3 = client(&server.endpoint, &server.key.0, &server.key.1);
    s3.create_bucket().bucket("ver").send().await.unwrap();
    s3.put_bucket_versioning()
        .bucket("ver")
        .versioning_configuration(
            VersioningConfiguration::builder()
                .status(BucketVersioningStatus::Enabled)
                .build(),
        )
        .send()
        .await
        .unwrap();
    let status = s3
        .get_bucket_versioning()
        .bucket("ver")
        .send()
        .await
        .unwrap();
    assert_eq!(status.status(), Some(&BucketVersioningStatus::Enabled));
    let mut ids = Vec::new();
    for body in [&b"first"[..], b"second"] {
        let put = s3
            .put_object()
            .bucket("ver")
            .key("k")
            .body(ByteStream::from(body.to_vec()))
            .send()
            .await
            .unwrap();
        ids.push(put.version_id().unwrap().to_owned());
    }
    let old = s3
        .get_object()
        .bucket("ver")
        .key("k")
        .version_id(&ids[0])
        .send()
        .await
        .unwrap();
    assert_eq!(old.version_id(), Some(ids[0].as_str()));
    assert_eq!(
        old.body.collect().await.unwrap().into_bytes(),
        &b"first"[..]
    );

    let deleted = s3
        .delete_object()
        .bucket("ver")
        .key("k")
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.delete_marker(), Some(true));
    let err = s3
        .get_object()
        .bucket("ver")
        .key("k")
        .send()
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("NoSuchKey"), "{err:?}");

    let listed = s3
        .list_object_versions()
        .bucket("ver")
        .send()
        .await
        .unwrap();
    let versions: Vec<_> = listed
        .versions()
        .iter()
        .map(|v| (v.version_id().unwrap(), v.is_latest().unwrap()))
        .collect();
    assert_eq!(
        versions,
        [(ids[1].as_str(), false), (ids[0].as_str(), false)]
    );
    let markers = listed.delete_markers();
    assert_eq!(markers.len(), 1);
    assert_eq!(markers[0].is_latest(), Some(true));

    // Every version and the marker, in one DeleteObjects: the bucket can then go.
    let mut objects: Vec<ObjectIdentifier> = ids
        .iter()
        .map(|id| {
            ObjectIdentifier::builder()
                .key("k")
                .version_id(id)
                .build()
                .unwrap()
        })
        .collect();
    objects.push(
        ObjectIdentifier::builder()
            .key("k")
            .version_id(markers[0].version_id().unwrap())
            .build()
            .unwrap(),
    );
    let out = s3
        .delete_objects()
        .bucket("ver")
        .delete(
            Delete::builder()
                .set_objects(Some(objects))
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(out.deleted().len(), 3);
    assert!(out.errors().is_empty());
    s3.delete_bucket().bucket("ver").send().await.unwrap();
}

// Each test on the embedded store, and in gateway mode in front of moto; then all of them in
// front of Ceph RGW 16.2 and of Garage 2.5, one upstream started for each suite.

#[tokio::test]
async fn objects_listings_and_checksums() {
    objects_listings_and_checksums_on(common::start(&[])).await;
}

#[tokio::test]
async fn objects_listings_and_checksums_through_the_gateway() {
    let moto = common::moto();
    objects_listings_and_checksums_on(common::start_gateway(&moto, "sdk-")).await;
}

#[tokio::test]
async fn multipart_upload() {
    multipart_upload_on(common::start(&[])).await;
}

#[tokio::test]
async fn multipart_upload_through_the_gateway() {
    let moto = common::moto();
    multipart_upload_on(common::start_gateway(&moto, "sdk-")).await;
}

#[tokio::test]
async fn wrong_keys_are_refused() {
    wrong_keys_are_refused_on(common::start(&[])).await;
}

#[tokio::test]
async fn wrong_keys_are_refused_through_the_gateway() {
    let moto = common::moto();
    wrong_keys_are_refused_on(common::start_gateway(&moto, "sdk-")).await;
}

#[tokio::test]
async fn conditional_reads_and_writes() {
    conditional_reads_and_writes_on(common::start(&[])).await;
}

#[tokio::test]
async fn conditional_reads_and_writes_through_the_gateway() {
    let moto = common::moto();
    conditional_reads_and_writes_on(common::start_gateway(&moto, "sdk-")).await;
}

#[tokio::test]
async fn versioned_buckets() {
    versioned_buckets_on(common::start(&[])).await;
}

#[tokio::test]
async fn versioned_buckets_through_the_gateway() {
    let moto = common::moto();
    versioned_buckets_on(common::start_gateway(&moto, "sdk-")).await;
}

#[tokio::test]
async fn the_suite_through_a_gateway_in_front_of_ceph() {
    let ceph = common::scripted("ceph-rgw", "us-east-1");
    objects_listings_and_checksums_on(common::start_gateway(&ceph, "objects-")).await;
    multipart_upload_on(common::start_gateway(&ceph, "multipart-")).await;
    wrong_keys_are_refused_on(common::start_gateway(&ceph, "keys-")).await;
    conditional_reads_and_writes_on(common::start_gateway(&ceph, "conditional-")).await;
    versioned_buckets_on(common::start_gateway(&ceph, "versioned-")).await;
}

#[tokio::test]
async fn the_suite_through_a_gateway_in_front_of_garage() {
    let garage = common::scripted("garage", "garage");
    objects_listings_and_checksums_on(common::start_gateway(&garage, "objects-")).await;
    multipart_upload_on(common::start_gateway(&garage, "multipart-")).await;
    wrong_keys_are_refused_on(common::start_gateway(&garage, "keys-")).await;
    conditional_reads_and_writes_on(common::start_gateway(&garage, "conditional-")).await;
    // Garage 2.5 has no versioning (PutBucketVersioning is NotImplemented).
}
