//! Encryption at rest against plaintext, side by side in one run: the disk store writing and
//! reading 256 MiB in one stream, on one core (a current-thread runtime), once without master
//! keys and once sealing every segment with AES-256-GCM. The target: sealed at least
//! 0.8x plaintext.
//!
//! `cargo bench -p keyless-s3 --bench sealing` (the store's files go under target/tmp)

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use futures_util::StreamExt as _;
use keyless_s3::store::seal::MasterKeys;
use keyless_s3::store::{ByteStream, DiskStore, ObjectStore, PutOptions};
use keyless_types::FixedClock;

const SIZE: usize = 256 * 1024 * 1024;
/// What a client's body arrives in.
const CHUNK: usize = 64 * 1024;

fn body(data: &Bytes) -> ByteStream {
    let chunks: Vec<std::io::Result<Bytes>> = (0..data.len())
        .step_by(CHUNK)
        .map(|at| Ok(data.slice(at..(at + CHUNK).min(data.len()))))
        .collect();
    Box::pin(futures_util::stream::iter(chunks))
}

fn bench(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let data = Bytes::from(
        (0..SIZE)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect::<Vec<u8>>(),
    );
    // On the disk that holds target/, not a tmpfs.
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("dir");
    let clock = Arc::new(FixedClock::at_unix(1_800_000_000));
    let plain = DiskStore::open(dir.path().join("plain"), clock.clone()).expect("store");
    let keys = Arc::new(MasterKeys::generate().expect("keys"));
    let sealed = DiskStore::open_sealed(dir.path().join("sealed"), clock, keys).expect("store");
    let mut group = c.benchmark_group("disk_store_256MiB");
    group.throughput(Throughput::Bytes(SIZE as u64));
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(20));
    for (name, store) in [("plaintext", &plain), ("sealed", &sealed)] {
        runtime.block_on(store.create_bucket("b")).expect("bucket");
        // What the GETs read, whether or not the PUTs run (`-- get`).
        runtime
            .block_on(store.put_object("b", "k", body(&data), PutOptions::default()))
            .expect("put");
        group.bench_function(format!("put/{name}"), |b| {
            b.iter(|| {
                runtime
                    .block_on(store.put_object("b", "k", body(&data), PutOptions::default()))
                    .expect("put")
            })
        });
        group.bench_function(format!("get/{name}"), |b| {
            b.iter(|| {
                runtime.block_on(async {
                    let (_, mut stream) =
                        store.get_object("b", "k", None, None).await.expect("get");
                    let mut n = 0;
                    while let Some(chunk) = stream.next().await {
                        n += chunk.expect("chunk").len();
                    }
                    assert_eq!(n, SIZE);
                })
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
