//! What metrics cost a request, beside what the request costs anyway:
//!
//! - `observe/s3-get`: counting one answered GetObject (a request counter, a latency histogram,
//!   bytes, one policy decision), labels already known, as every request after the first pays.
//! - `observe/sts-web-identity`: an issued web identity session (the role label too).
//! - `record/fields`: copying the request's record out of its `RequestLog`, which the request
//!   log line pays already; the ratio `observe/s3-get` : `record/fields` says what metrics add.
//! - `scrape/100-operations`: encoding `/metrics` with 100 operations' series, once per scrape.
//!
//! Run: `cargo bench -p keyless-server --bench metrics`.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use keyless_server::metrics::{Answered, Metrics, ServerMetrics};
use keyless_types::RequestLog;
use keyless_types::audit::{Decisions, Resource};

fn get_object() -> RequestLog {
    let log = RequestLog::new("s3");
    log.update(|f| {
        f.operation = Some("GetObject".into());
        f.principal = Some("arn:aws:sts::000000000000:assumed-role/registry/pod".into());
        f.access_key_id = Some("ASIAKEYLESSEXAMPLE01".into());
        f.bucket = Some("gitlab-registry".into());
        f.key = Some("docker/registry/v2/blobs/sha256/ab/abcdef/data".into());
        f.decisions = Decisions {
            allowed: 1,
            ..Decisions::default()
        };
    });
    log
}

fn bench(c: &mut Criterion) {
    let metrics = Metrics::new();
    let server = ServerMetrics::register(&metrics);
    let answered = Answered {
        status: 200,
        elapsed: Duration::from_micros(180),
        bytes_in: None,
    };
    let log = get_object();
    let fields = log.fields();
    c.bench_function("observe/s3-get", |b| {
        b.iter(|| server.observe(black_box(&fields), black_box(&answered)))
    });
    let mut web = fields.clone();
    web.api = "sts";
    web.operation = Some("AssumeRoleWithWebIdentity".into());
    web.resources.push(Resource {
        arn: "arn:aws:iam::000000000000:role/gitlab-registry".into(),
        account_id: Some("000000000000".into()),
        kind: "AWS::IAM::Role".into(),
    });
    c.bench_function("observe/sts-web-identity", |b| {
        b.iter(|| server.observe(black_box(&web), black_box(&answered)))
    });
    c.bench_function("record/fields", |b| b.iter(|| black_box(log.fields())));
    // Every S3 operation the server implements, each its own series.
    let mut many = fields.clone();
    for op in keyless_s3::ALL_OPS {
        many.operation = Some(op.name().to_owned());
        server.observe(&many, &answered);
    }
    c.bench_function("scrape/every-s3-operation", |b| {
        b.iter(|| black_box(metrics.encode()))
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
