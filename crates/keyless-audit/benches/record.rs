//! What the audit trail costs a request, piece by piece, for a 4 KiB GetObject made with a pod's
//! web-identity session (the record `scripts/bench/audit` writes about 1 KB of):
//!
//! - `record/of`: making the CloudTrail record from what the layers wrote.
//! - `record/serialize`: writing it as a JSON line.
//! - `trail/record`: both, and putting the line in the trail's queue (emptied as it fills).
//! - `event-id`: the record's `eventID`.
//!
//! Run: `cargo bench -p keyless-audit --bench record`.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use keyless_audit::{Exchange, Record, SinkSpec, Trail};
use keyless_types::RequestFields;
use keyless_types::audit::{
    SessionAttributes, SessionContext, SessionIssuer, UserIdentity, WebIdFederationData,
};
use serde_json::json;

fn fields() -> RequestFields {
    let mut tags = serde_json::Map::new();
    for (name, value) in [
        ("kubernetes-namespace", "gitlab"),
        ("kubernetes-service-account", "registry"),
        ("kubernetes-pod-name", "registry-6f7c9d8b5-x2x9q"),
        ("kubernetes-pod-uid", "0c1d2e3f-4a5b-6c7d-8e9f-a0b1c2d3e4f5"),
    ] {
        tags.insert(name.into(), value.into());
    }
    let identity = UserIdentity {
        kind: "AssumedRole".into(),
        principal_id: Some("AROAKEYLESSEXAMPLE01:botocore-session-1".into()),
        arn: Some("arn:aws:sts::000000000000:assumed-role/registry/botocore-session-1".into()),
        account_id: Some("000000000000".into()),
        access_key_id: Some("ASIAKEYLESSEXAMPLE01".into()),
        session_context: Some(SessionContext {
            session_issuer: Some(SessionIssuer {
                kind: "Role".into(),
                principal_id: "AROAKEYLESSEXAMPLE01".into(),
                arn: "arn:aws:iam::000000000000:role/registry".into(),
                account_id: "000000000000".into(),
                user_name: "registry".into(),
            }),
            web_id_federation_data: Some(WebIdFederationData {
                federated_provider: "arn:aws:iam::000000000000:oidc-provider/oidc.keyless.example"
                    .into(),
                attributes: Default::default(),
            }),
            attributes: SessionAttributes {
                creation_date: "2026-12-07T15:00:00Z".into(),
                mfa_authenticated: "false".into(),
            },
            ..Default::default()
        }),
        ..Default::default()
    };
    let mut fields = RequestFields {
        api: "s3",
        ..Default::default()
    };
    fields.operation = Some("GetObject".into());
    fields.bucket = Some("gitlab-registry".into());
    fields.key = Some("docker/registry/v2/blobs/sha256/ab/abcdef0123/data".into());
    fields.identity = Some(identity);
    fields.request_parameters = json!({
        "bucketName": "gitlab-registry",
        "Host": "127.0.0.1:9000",
        "key": "docker/registry/v2/blobs/sha256/ab/abcdef0123/data",
    })
    .as_object()
    .unwrap()
    .clone();
    fields.additional = json!({
        "SignatureVersion": "SigV4",
        "AuthenticationMethod": "QueryString",
        "principalTags": tags,
    })
    .as_object()
    .unwrap()
    .clone();
    fields
}

fn exchange() -> Exchange<'static> {
    Exchange {
        time: 1_796_655_600,
        event_id: "ee3b4e0c-ab12-459b-9998-0a5a6f2e4015".into(),
        request_id: "3b1e6f0c-2a4d-4c5e-8f9a-0b1c2d3e4f50",
        region: "us-east-1",
        account_id: "000000000000",
        source_ip: Some("10.0.3.7".parse().unwrap()),
        user_agent: Some("aws-sdk-go/1.44.0 (go1.21; linux; amd64) docker-distribution/v2.8"),
        status: 200,
        bytes_in: Some(0),
        bytes_out: Some(4096),
        host_id: Some("29xXQBV2O+xOHKItvzY1suLv1i6A52E0zOX159fpfsItYd="),
        written: Vec::new(),
        tls: None,
    }
}

fn bench(c: &mut Criterion) {
    let (fields, exchange) = (fields(), exchange());
    let record = Record::of(fields.clone(), exchange.clone()).unwrap();
    eprintln!(
        "a record is {} bytes",
        serde_json::to_string(&record).unwrap().len()
    );
    c.bench_function("record/of", |b| {
        b.iter_batched(
            || (fields.clone(), exchange.clone()),
            |(f, e)| Record::of(f, e),
            criterion::BatchSize::SmallInput,
        )
    });
    c.bench_function("record/serialize", |b| {
        b.iter(|| serde_json::to_string(black_box(&record)).unwrap())
    });

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let sink = SinkSpec::File {
        path: dir.path().join("audit.jsonl"),
        max_size: 64 << 20,
        keep: 1,
    };
    let (trail, writer) = runtime
        .block_on(async { Trail::open(&sink, 64 << 20) })
        .unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = runtime.spawn(writer.run(
        async {
            let _ = stopped.await;
        },
        Duration::from_secs(5),
    ));
    c.bench_function("trail/record", |b| {
        b.iter_batched(
            || (fields.clone(), exchange.clone()),
            |(f, e)| trail.record(&Record::of(f, e).unwrap()),
            criterion::BatchSize::SmallInput,
        )
    });
    let _ = stop.send(());
    runtime.block_on(task).unwrap();
    eprintln!("{:?}", trail.stats());
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(3));
    targets = bench
}
criterion_main!(benches);
