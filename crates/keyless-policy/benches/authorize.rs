//! Decisions per second: compile once, evaluate many.
//!
//! - `role10`: a role with 10 statements, 3 conditions on the statement that allows, and an S3
//!   request context of the size the server builds (12 keys).
//! - `policy100`: a 100-statement policy whose last statement is the one that matches.
//! - `context+role10`: building the request context too, as the server does per request.
//! - `compile/...`: parsing and compiling the same documents, to show what compiling per request
//!   would cost (ratio against `role10`).
//!
//! Run: `cargo bench -p keyless-policy --bench authorize`.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use keyless_policy::{Context, Policy, PolicySet, Request, Source, authorize};
use serde_json::json;

fn role10() -> String {
    let mut statements = Vec::new();
    for (i, bucket) in [
        "gitlab-artifacts",
        "gitlab-lfs",
        "gitlab-uploads",
        "gitlab-packages",
        "gitlab-backups",
        "gitlab-tmp",
        "gitlab-pages",
        "gitlab-mr-diffs",
        "gitlab-terraform-state",
    ]
    .iter()
    .enumerate()
    {
        statements.push(json!({
            "Sid": format!("Bucket{i}"),
            "Effect": "Allow",
            "Action": ["s3:GetObject", "s3:PutObject", "s3:DeleteObject"],
            "Resource": format!("arn:aws:s3:::{bucket}/*")
        }));
    }
    statements.push(json!({
        "Sid": "Registry",
        "Effect": "Allow",
        "Action": ["s3:GetObject", "s3:PutObject", "s3:ListBucket", "s3:DeleteObject"],
        "Resource": ["arn:aws:s3:::gitlab-registry", "arn:aws:s3:::gitlab-registry/*"],
        "Condition": {
            "IpAddress": {"aws:SourceIp": ["10.0.0.0/8", "192.168.0.0/16"]},
            "Bool": {"aws:SecureTransport": "true"},
            "StringLike": {"aws:PrincipalArn": "arn:aws:iam::111122223333:role/gitlab-*"}
        }
    }));
    json!({"Version": "2012-10-17", "Statement": statements}).to_string()
}

fn policy100() -> String {
    let statements: Vec<_> = (0..100)
        .map(|i| {
            json!({
                "Sid": format!("S{i}"),
                "Effect": "Allow",
                "Action": ["s3:GetObject", "s3:PutObject", format!("s3:Get*Tag{i}")],
                "Resource": [format!("arn:aws:s3:::tenant-{i}/*"), format!("arn:aws:s3:::tenant-{i}")],
                "Condition": {"StringEquals": {"aws:PrincipalTag/tenant": format!("t{i}")}}
            })
        })
        .collect();
    json!({"Version": "2012-10-17", "Statement": statements}).to_string()
}

fn s3_context(tenant: &str) -> Context {
    let mut ctx = Context::with_capacity(12);
    ctx.insert("aws:SourceIp", "10.42.0.17")
        .insert("aws:SecureTransport", "true")
        .insert("aws:CurrentTime", "2026-11-25T12:00:00Z")
        .insert("aws:EpochTime", "1795608000")
        .insert("aws:username", "gitlab-registry")
        .insert("aws:userid", "AROAEXAMPLE:pod-a")
        .insert(
            "aws:PrincipalArn",
            "arn:aws:iam::111122223333:role/gitlab-registry",
        )
        .insert("aws:PrincipalAccount", "111122223333")
        .insert("aws:PrincipalTag/tenant", tenant)
        .insert("s3:signatureversion", "AWS4-HMAC-SHA256")
        .insert("s3:authType", "REST-HEADER")
        .insert("s3:x-amz-content-sha256", "UNSIGNED-PAYLOAD");
    ctx
}

fn bench(c: &mut Criterion) {
    let role_text = role10();
    let big_text = policy100();
    let role = Policy::parse(&role_text).unwrap();
    let big = Policy::parse(&big_text).unwrap();
    let role_sources = [Source::new("gitlab-registry", &role)];
    let big_sources = [Source::new("tenants", &big)];
    let role_set = PolicySet {
        identity: &role_sources,
        ..Default::default()
    };
    let big_set = PolicySet {
        identity: &big_sources,
        ..Default::default()
    };

    let ctx = s3_context("t99");
    let role_req = Request::new(
        "s3:GetObject",
        "arn:aws:s3:::gitlab-registry/docker/registry/v2/blobs/sha256/ab/data",
        &ctx,
    );
    assert!(authorize(&role_set, &role_req).verdict.is_allowed());
    let big_req = Request::new("s3:PutObject", "arn:aws:s3:::tenant-99/object", &ctx);
    assert!(authorize(&big_set, &big_req).verdict.is_allowed());

    let mut g = c.benchmark_group("decide");
    g.bench_function("role10", |b| {
        b.iter(|| authorize(black_box(&role_set), black_box(&role_req)))
    });
    g.bench_function("policy100", |b| {
        b.iter(|| authorize(black_box(&big_set), black_box(&big_req)))
    });
    g.bench_function("context+role10", |b| {
        b.iter(|| {
            let ctx = s3_context("t1");
            let req = Request::new(
                "s3:GetObject",
                "arn:aws:s3:::gitlab-registry/docker/x",
                &ctx,
            );
            authorize(black_box(&role_set), black_box(&req)).verdict
        })
    });
    g.finish();

    let mut g = c.benchmark_group("compile");
    g.bench_function("role10", |b| {
        b.iter(|| Policy::parse(black_box(&role_text)).unwrap())
    });
    g.bench_function("policy100", |b| {
        b.iter(|| Policy::parse(black_box(&big_text)).unwrap())
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
