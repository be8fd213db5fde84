//! The trail a server writes to: a bounded queue that requests put their records in without
//! ever waiting, and one writer that takes them out in batches to the sink (a file, standard
//! output, or an HTTPS endpoint). When the sink is slow or down, the queue fills to its bound
//! and further records are dropped and counted (and the count logged), so that requests are
//! never held up and memory never grows past the bound.
//!
//! The queue is one buffer of JSON lines: a request writes its record into a scratch buffer of
//! its thread and copies the line in under the lock, and the writer swaps the whole buffer for
//! the one it wrote last, so that in the steady state no record costs an allocation of its own
//! and a batch is written as it lies in memory.

use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::Notify;

use crate::file::RotatingFile;
use crate::http::HttpSink;
use crate::record::Record;
use crate::{AuditError, SinkSpec};

/// The most records one POST to an HTTP endpoint carries; as many queued make the writer
/// write at once, without lingering.
pub(crate) const BATCH_RECORDS: usize = 1000;
/// The most bytes one POST carries (about; a record is never split); as many queued make the
/// writer write at once. Also the least bound a queue is given.
pub(crate) const BATCH_BYTES: usize = 1 << 20;
/// How long the writer waits, once woken, for more records to write with the first.
const LINGER: Duration = Duration::from_millis(20);
/// How often the count of dropped records is logged, at most.
const DROP_REPORT_EVERY: Duration = Duration::from_secs(10);

/// The handle requests record through. Cheap to clone.
#[derive(Clone)]
pub struct Trail {
    queue: Arc<Queue>,
}

impl std::fmt::Debug for Trail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Trail")
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

/// What a trail has done so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TrailStats {
    /// Records the sink took.
    pub written: u64,
    /// Records dropped because the queue was full (the sink slow or down).
    pub dropped: u64,
    /// Records lost because the sink refused them for good, or the server stopped before
    /// they could be written.
    pub lost: u64,
    /// Writes to the sink that failed (and were retried).
    pub failures: u64,
    /// Writes to the sink that succeeded, each a batch of records.
    pub batches: u64,
    /// Records waiting in the queue.
    pub queued: u64,
}

struct Queue {
    lines: Mutex<Lines>,
    ready: Notify,
    max_bytes: usize,
    written: AtomicU64,
    dropped: AtomicU64,
    lost: AtomicU64,
    failures: AtomicU64,
    batches: AtomicU64,
}

/// What is queued: newline-terminated JSON lines.
#[derive(Default)]
struct Lines {
    buf: Vec<u8>,
    records: usize,
    /// The bytes of the batch the writer holds (being written, or to be tried again): they
    /// count against the bound too.
    held: usize,
    /// The buffer the writer last wrote, emptied, to take the place of `buf` next time.
    spare: Vec<u8>,
}

/// Records taken out of the queue together, as newline-terminated JSON lines, and what the
/// sink has done with them.
pub(crate) struct Batch {
    /// The records; those from `start` on are still to be written.
    lines: Vec<u8>,
    start: usize,
    /// How many records are still to be written.
    pub(crate) records: usize,
    /// Records the sink took since the writer last looked.
    pub(crate) taken: usize,
    /// Writes the sink made since the writer last looked.
    pub(crate) writes: usize,
}

impl Batch {
    /// What is still to be written: newline-terminated JSON lines.
    pub(crate) fn left(&self) -> &[u8] {
        &self.lines[self.start..]
    }

    /// All that was left was written, in one write.
    pub(crate) fn all_taken(&mut self) {
        self.taken += std::mem::take(&mut self.records);
        self.writes += 1;
        self.start = self.lines.len();
    }

    /// The first `records` records left, `bytes` long, were written in one write.
    pub(crate) fn first_taken(&mut self, records: usize, bytes: usize) {
        self.start += bytes;
        self.records -= records;
        self.taken += records;
        self.writes += 1;
    }
}

thread_local! {
    /// Where a request's record is written before it is copied into the queue.
    static SCRATCH: RefCell<Vec<u8>> = RefCell::new(Vec::with_capacity(4096));
}

impl Trail {
    /// A trail whose queue holds at most `max_bytes` of records, and the writer that empties
    /// it into `sink` (which the caller runs as a task).
    pub fn open(sink: &SinkSpec, max_bytes: usize) -> Result<(Trail, Writer), AuditError> {
        let sink = match sink {
            SinkSpec::Stdout => Sink::Stdout(tokio::io::stdout()),
            SinkSpec::File {
                path,
                max_size,
                keep,
            } => Sink::File(RotatingFile::open(path, *max_size, *keep)?),
            SinkSpec::Http {
                url,
                tls,
                token_file,
            } => Sink::Http(Box::new(HttpSink::new(
                url,
                (**tls).clone(),
                token_file.clone(),
            )?)),
        };
        let queue = Arc::new(Queue {
            lines: Mutex::new(Lines::default()),
            ready: Notify::new(),
            max_bytes: max_bytes.max(BATCH_BYTES),
            written: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            lost: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            batches: AtomicU64::new(0),
        });
        let writer = Writer {
            queue: Arc::clone(&queue),
            sink,
        };
        Ok((Trail { queue }, writer))
    }

    /// Puts `record` in the queue, or drops it (counted) when the queue is full. Never waits.
    pub fn record(&self, record: &Record) {
        SCRATCH.with_borrow_mut(|line| {
            line.clear();
            if let Err(e) = serde_json::to_writer(&mut *line, record) {
                tracing::error!(error = %e, "cannot write an audit record");
                self.queue.lost.fetch_add(1, Ordering::Relaxed);
                return;
            }
            line.push(b'\n');
            self.enqueue(line);
            // A record far larger than most is not kept for the next one.
            if line.capacity() > 64 << 10 {
                *line = Vec::with_capacity(4096);
            }
        });
    }

    fn enqueue(&self, line: &[u8]) {
        let mut lines = self.queue.lock();
        if lines.buf.len() + lines.held + line.len() > self.queue.max_bytes {
            drop(lines);
            self.queue.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let was_empty = lines.records == 0;
        lines.buf.extend_from_slice(line);
        lines.records += 1;
        drop(lines);
        // The writer takes everything queued once woken: only the first record wakes it.
        if was_empty {
            self.queue.ready.notify_one();
        }
    }

    /// What the trail has done so far.
    pub fn stats(&self) -> TrailStats {
        let queued = self.queue.lock().records as u64;
        TrailStats {
            written: self.queue.written.load(Ordering::Relaxed),
            dropped: self.queue.dropped.load(Ordering::Relaxed),
            lost: self.queue.lost.load(Ordering::Relaxed),
            failures: self.queue.failures.load(Ordering::Relaxed),
            batches: self.queue.batches.load(Ordering::Relaxed),
            queued,
        }
    }
}

impl Queue {
    fn lock(&self) -> std::sync::MutexGuard<'_, Lines> {
        self.lines.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether a whole batch is waiting.
    fn has_full_batch(&self) -> bool {
        let lines = self.lock();
        lines.records >= BATCH_RECORDS || lines.buf.len() >= BATCH_BYTES
    }

    /// Takes what is queued (none when it is empty), leaving the spare buffer in its place.
    fn batch(&self) -> Option<Batch> {
        let mut lines = self.lock();
        if lines.records == 0 {
            return None;
        }
        let spare = std::mem::take(&mut lines.spare);
        let batch = Batch {
            lines: std::mem::replace(&mut lines.buf, spare),
            start: 0,
            records: std::mem::take(&mut lines.records),
            taken: 0,
            writes: 0,
        };
        lines.held = batch.lines.len();
        Some(batch)
    }

    /// Done with `batch` (written, or given up): its room is free again, and its buffer is
    /// kept for the next swap unless a burst made it large.
    fn release(&self, batch: Batch) {
        let mut buf = batch.lines;
        buf.clear();
        buf.shrink_to(2 * BATCH_BYTES);
        let mut lines = self.lock();
        lines.held = 0;
        if buf.capacity() > lines.spare.capacity() {
            lines.spare = buf;
        }
    }
}

/// Where records go.
enum Sink {
    Stdout(tokio::io::Stdout),
    File(RotatingFile),
    Http(Box<HttpSink>),
}

impl Sink {
    /// Writes `batch`, or as much of it as it can before an error, leaving in it what is
    /// still to be written.
    async fn write(&mut self, batch: &mut Batch) -> Result<(), AuditError> {
        match self {
            Self::Stdout(out) => {
                use tokio::io::AsyncWriteExt as _;
                out.write_all(batch.left())
                    .await
                    .map_err(AuditError::Write)?;
                out.flush().await.map_err(AuditError::Write)?;
            }
            Self::File(file) => file.write(batch.left()).await?,
            Self::Http(http) => return http.post(batch).await,
        }
        batch.all_taken();
        Ok(())
    }
}

/// Empties a trail's queue into its sink.
pub struct Writer {
    queue: Arc<Queue>,
    sink: Sink,
}

impl Writer {
    /// Writes batches until `stop` resolves, then writes what is left within `grace` and
    /// reports what could not be written.
    pub async fn run(mut self, stop: impl std::future::Future<Output = ()>, grace: Duration) {
        let mut stop = std::pin::pin!(stop);
        let mut reported = 0;
        let mut last_report = tokio::time::Instant::now();
        let mut backoff = Duration::from_millis(200);
        let mut pending: Option<Batch> = None;
        // Once `stop` has resolved it is not polled again.
        let mut stopping = false;
        loop {
            let Some(mut batch) = pending.take().or_else(|| self.queue.batch()) else {
                if stopping {
                    break;
                }
                tokio::select! {
                    () = self.queue.ready.notified() => {}
                    () = &mut stop => break,
                }
                // Records come in bursts: a moment's wait makes one write of many.
                tokio::select! {
                    () = tokio::time::sleep(LINGER) => {}
                    () = &mut stop => stopping = true,
                }
                continue;
            };
            let result = self.sink.write(&mut batch).await;
            self.count(&mut batch);
            match result {
                Ok(()) => {
                    self.queue.release(batch);
                    backoff = Duration::from_millis(200);
                    // Less than a batch waiting: linger again rather than write it at once,
                    // or a busy server would have a write (and its thread hand-offs) per
                    // request or two.
                    if !self.queue.has_full_batch() && !stopping {
                        tokio::select! {
                            () = tokio::time::sleep(LINGER) => {}
                            () = &mut stop => stopping = true,
                        }
                    }
                }
                Err(e) => {
                    self.queue.failures.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(error = %e, records = batch.records, retry_in = ?backoff, "cannot write the audit trail");
                    if e.is_transient() {
                        pending = Some(batch);
                    } else {
                        self.lost(batch);
                    }
                    if stopping {
                        break;
                    }
                    tokio::select! {
                        () = tokio::time::sleep(backoff) => {}
                        () = &mut stop => break,
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(30));
                }
            }
            let dropped = self.queue.dropped.load(Ordering::Relaxed);
            if dropped != reported && last_report.elapsed() >= DROP_REPORT_EVERY {
                tracing::warn!(
                    dropped = dropped - reported,
                    total = dropped,
                    "audit records dropped: the trail's sink is slow or down and its queue is full"
                );
                reported = dropped;
                last_report = tokio::time::Instant::now();
            }
        }
        self.finish(pending, grace).await;
    }

    /// The last writes, bounded by `grace`.
    async fn finish(&mut self, mut pending: Option<Batch>, grace: Duration) {
        let deadline = tokio::time::Instant::now() + grace;
        let mut backoff = Duration::from_millis(100);
        while let Some(mut batch) = pending.take().or_else(|| self.queue.batch()) {
            let result = tokio::time::timeout_at(deadline, self.sink.write(&mut batch)).await;
            self.count(&mut batch);
            match result {
                Ok(Ok(())) => {
                    self.queue.release(batch);
                    backoff = Duration::from_millis(100);
                }
                // Tried again until the grace is over: the sink may be back in a moment.
                Ok(Err(e)) if e.is_transient() => {
                    self.queue.failures.fetch_add(1, Ordering::Relaxed);
                    pending = Some(batch);
                    if tokio::time::timeout_at(deadline, tokio::time::sleep(backoff))
                        .await
                        .is_err()
                    {
                        break;
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(2));
                }
                Ok(Err(_)) | Err(_) => {
                    pending = Some(batch);
                    break;
                }
            }
        }
        if let Some(batch) = pending {
            self.lost(batch);
        }
        let left = self.queue.lock().records as u64;
        self.queue.lost.fetch_add(left, Ordering::Relaxed);
        let stats = Trail {
            queue: Arc::clone(&self.queue),
        }
        .stats();
        if stats.dropped + stats.lost > 0 {
            tracing::warn!(
                written = stats.written,
                dropped = stats.dropped,
                lost = stats.lost,
                "audit trail closed with records missing"
            );
        } else {
            tracing::info!(written = stats.written, "audit trail closed");
        }
    }

    /// Counts what the sink took of `batch` since last counted.
    fn count(&self, batch: &mut Batch) {
        let taken = std::mem::take(&mut batch.taken) as u64;
        self.queue.written.fetch_add(taken, Ordering::Relaxed);
        let writes = std::mem::take(&mut batch.writes) as u64;
        self.queue.batches.fetch_add(writes, Ordering::Relaxed);
    }

    fn lost(&self, batch: Batch) {
        self.queue
            .lost
            .fetch_add(batch.records as u64, Ordering::Relaxed);
        self.queue.release(batch);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // tests fail loudly

    use super::*;

    fn record(n: usize) -> Record {
        let fields = keyless_types::RequestFields {
            api: "s3",
            operation: Some("PutObject".into()),
            bucket: Some("bucket".into()),
            key: Some(format!("{n:08}-{}", "k".repeat(900))),
            ..Default::default()
        };
        let exchange = crate::Exchange {
            request_id: "r",
            region: "us-east-1",
            account_id: "000000000000",
            status: 200,
            ..Default::default()
        };
        Record::of(fields, exchange).unwrap()
    }

    /// An HTTP endpoint that answers each POST after `delay`, refusing every `fail_every`th
    /// with a 503; the number of records of each POST it took.
    async fn endpoint(delay: Duration, fail_every: usize) -> (String, Arc<Mutex<Vec<usize>>>) {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/", listener.local_addr().unwrap());
        let took = Arc::new(Mutex::new(Vec::new()));
        let posts = Arc::new(AtomicU64::new(0));
        let kept = Arc::clone(&took);
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let (took, posts) = (Arc::clone(&took), Arc::clone(&posts));
                tokio::spawn(async move {
                    let mut seen = Vec::new();
                    let mut buf = vec![0u8; 64 << 10];
                    loop {
                        let Ok(n) = socket.read(&mut buf).await else {
                            return;
                        };
                        if n == 0 {
                            return;
                        }
                        seen.extend_from_slice(&buf[..n]);
                        // A request is whole once its JSON body has closed.
                        if !seen.ends_with(b"]}") {
                            continue;
                        }
                        let records = seen
                            .windows(14)
                            .filter(|w| *w == b"\"eventVersion\"")
                            .count();
                        seen.clear();
                        tokio::time::sleep(delay).await;
                        let n = posts.fetch_add(1, Ordering::Relaxed) as usize + 1;
                        let answer: &[u8] = if fail_every > 0 && n.is_multiple_of(fail_every) {
                            b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\n\r\n"
                        } else {
                            took.lock().unwrap().push(records);
                            b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n"
                        };
                        if socket.write_all(answer).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        (url, kept)
    }

    fn http_sink(url: String) -> SinkSpec {
        SinkSpec::Http {
            url,
            tls: Arc::new(
                rustls::ClientConfig::builder_with_provider(Arc::new(
                    rustls::crypto::ring::default_provider(),
                ))
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_root_certificates(rustls::RootCertStore::empty())
                .with_no_client_auth(),
            ),
            token_file: None,
        }
    }

    fn small_record() -> Record {
        Record::of(
            keyless_types::RequestFields {
                api: "s3",
                operation: Some("GetObject".into()),
                ..Default::default()
            },
            crate::Exchange {
                request_id: "r",
                status: 200,
                ..Default::default()
            },
        )
        .unwrap()
    }

    /// 2,500 records queued at once go in POSTs of at most 1,000; a POST refused with a 503
    /// is sent again, and no record is sent twice or left out.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_backlog_is_posted_in_batches_and_a_refused_one_again() {
        let (url, took) = endpoint(Duration::ZERO, 2).await;
        let (trail, writer) = Trail::open(&http_sink(url), 64 << 20).unwrap();
        for _ in 0..2500 {
            trail.record(&small_record());
        }
        writer.run(async {}, Duration::from_secs(30)).await;
        let took = took.lock().unwrap().clone();
        assert_eq!(took, [1000, 1000, 500], "{:?}", trail.stats());
        let stats = trail.stats();
        assert_eq!((stats.written, stats.batches, stats.lost), (2500, 3, 0));
        assert_eq!(stats.failures, 2, "{stats:?}");
    }

    /// An endpoint that takes 5 ms to answer each POST, and records coming steadily, ten a
    /// millisecond: once a batch is written the writer lingers again for more, rather than
    /// post at once the few that came in meanwhile (a post each 5 ms).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_steady_stream_is_written_in_batches() {
        let (url, _) = endpoint(Duration::from_millis(5), 0).await;
        let sink = http_sink(url);
        let (trail, writer) = Trail::open(&sink, BATCH_BYTES).unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(writer.run(
            async {
                let _ = stopped.await;
            },
            Duration::from_secs(5),
        ));
        let small = small_record();
        let mut tick = tokio::time::interval(Duration::from_millis(1));
        for n in 0..4000 {
            if n % 10 == 0 {
                tick.tick().await;
            }
            trail.record(&small);
        }
        let _ = stop.send(());
        task.await.unwrap();
        let stats = trail.stats();
        assert_eq!(stats.written, 4000, "{stats:?}");
        // 400 ms at a 20 ms linger: about 20 posts, where a post as soon as the last is
        // answered would make about 80.
        assert!(stats.batches <= 40, "{stats:?}");
    }

    /// A sink that does not keep up: the queue stops at its bound, further records are
    /// dropped and counted, and recording never waits.
    #[tokio::test]
    async fn a_full_queue_drops_and_counts_instead_of_growing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let sink = SinkSpec::File {
            path: path.clone(),
            max_size: 1 << 30,
            keep: 1,
        };
        let (trail, writer) = Trail::open(&sink, BATCH_BYTES).unwrap();
        for n in 0..5000 {
            trail.record(&record(n));
        }
        let stats = trail.stats();
        assert!(stats.dropped > 0, "{stats:?}");
        assert_eq!(stats.queued + stats.dropped, 5000);
        assert!(trail.queue.lock().buf.len() <= BATCH_BYTES);
        let queued = stats.queued;
        // Stopped at once: what is queued is still written, in order.
        writer.run(async {}, Duration::from_secs(5)).await;
        let stats = trail.stats();
        assert_eq!(stats.written, queued);
        let text = std::fs::read_to_string(&path).unwrap();
        let keys: Vec<String> = text
            .lines()
            .map(|l| {
                serde_json::from_str::<Record>(l).unwrap().resources[0]
                    .arn
                    .clone()
            })
            .collect();
        assert_eq!(keys.len() as u64, stats.written);
        assert!(keys.windows(2).all(|w| w[0] < w[1]), "written in order");
        assert_eq!(stats.lost, 0);
    }
}
