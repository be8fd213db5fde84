//! The trail a server writes to: a bounded queue that requests put their records in without
//! ever waiting, and one writer that takes them out in batches to the sink (a file, standard
//! output, or an HTTPS endpoint). When the sink is slow or down, the queue fills to its bound
//! and further records are dropped and counted (and the count logged), so that requests are
//! never held up and memory never grows past the bound.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::Notify;

use crate::file::RotatingFile;
use crate::http::HttpSink;
use crate::record::Record;
use crate::{AuditError, SinkSpec};

/// The most records one batch carries.
const BATCH_RECORDS: usize = 1000;
/// The most bytes one batch carries (about; a record is never split).
const BATCH_BYTES: usize = 1 << 20;
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
}

#[derive(Default)]
struct Lines {
    items: VecDeque<String>,
    bytes: usize,
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
        });
        let writer = Writer {
            queue: Arc::clone(&queue),
            sink,
        };
        Ok((Trail { queue }, writer))
    }

    /// Puts `record` in the queue, or drops it (counted) when the queue is full. Never waits.
    pub fn record(&self, record: &Record) {
        let line = match serde_json::to_string(record) {
            Ok(line) => line,
            Err(e) => {
                tracing::error!(error = %e, "cannot write an audit record");
                self.queue.lost.fetch_add(1, Ordering::Relaxed);
                return;
            }
        };
        let mut lines = self.queue.lock();
        if lines.bytes + line.len() > self.queue.max_bytes {
            drop(lines);
            self.queue.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let was_empty = lines.items.is_empty();
        lines.bytes += line.len();
        lines.items.push_back(line);
        drop(lines);
        // The writer takes everything queued once woken: only the first record wakes it.
        if was_empty {
            self.queue.ready.notify_one();
        }
    }

    /// What the trail has done so far.
    pub fn stats(&self) -> TrailStats {
        let queued = self.queue.lock().items.len() as u64;
        TrailStats {
            written: self.queue.written.load(Ordering::Relaxed),
            dropped: self.queue.dropped.load(Ordering::Relaxed),
            lost: self.queue.lost.load(Ordering::Relaxed),
            failures: self.queue.failures.load(Ordering::Relaxed),
            queued,
        }
    }
}

impl Queue {
    fn lock(&self) -> std::sync::MutexGuard<'_, Lines> {
        self.lines.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Takes the next batch out of the queue.
    fn batch(&self) -> Vec<String> {
        let mut lines = self.lock();
        let mut batch = Vec::new();
        let mut bytes = 0;
        while let Some(line) = lines.items.front() {
            if !batch.is_empty()
                && (batch.len() == BATCH_RECORDS || bytes + line.len() > BATCH_BYTES)
            {
                break;
            }
            bytes += line.len();
            if let Some(line) = lines.items.pop_front() {
                batch.push(line);
            }
        }
        lines.bytes -= bytes;
        batch
    }
}

/// Where records go.
enum Sink {
    Stdout(tokio::io::Stdout),
    File(RotatingFile),
    Http(Box<HttpSink>),
}

impl Sink {
    async fn write(&mut self, batch: &[String]) -> Result<(), AuditError> {
        match self {
            Self::Stdout(out) => {
                use tokio::io::AsyncWriteExt as _;
                let mut text = String::with_capacity(batch.iter().map(|l| l.len() + 1).sum());
                for line in batch {
                    text.push_str(line);
                    text.push('\n');
                }
                out.write_all(text.as_bytes())
                    .await
                    .map_err(AuditError::Write)?;
                out.flush().await.map_err(AuditError::Write)
            }
            Self::File(file) => file.write(batch).await,
            Self::Http(http) => http.post(batch).await,
        }
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
        let mut pending: Vec<String> = Vec::new();
        // Once `stop` has resolved it is not polled again.
        let mut stopping = false;
        loop {
            if pending.is_empty() {
                pending = self.queue.batch();
            }
            if pending.is_empty() {
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
            }
            match self.sink.write(&pending).await {
                Ok(()) => {
                    self.queue
                        .written
                        .fetch_add(pending.len() as u64, Ordering::Relaxed);
                    pending.clear();
                    backoff = Duration::from_millis(200);
                }
                Err(e) => {
                    self.queue.failures.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(error = %e, records = pending.len(), retry_in = ?backoff, "cannot write the audit trail");
                    if !e.is_transient() {
                        self.queue
                            .lost
                            .fetch_add(pending.len() as u64, Ordering::Relaxed);
                        pending.clear();
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
    async fn finish(&mut self, mut pending: Vec<String>, grace: Duration) {
        let deadline = tokio::time::Instant::now() + grace;
        let mut backoff = Duration::from_millis(100);
        loop {
            if pending.is_empty() {
                pending = self.queue.batch();
            }
            if pending.is_empty() {
                break;
            }
            match tokio::time::timeout_at(deadline, self.sink.write(&pending)).await {
                Ok(Ok(())) => {
                    self.queue
                        .written
                        .fetch_add(pending.len() as u64, Ordering::Relaxed);
                    pending.clear();
                    backoff = Duration::from_millis(100);
                }
                // Tried again until the grace is over: the sink may be back in a moment.
                Ok(Err(e)) if e.is_transient() => {
                    self.queue.failures.fetch_add(1, Ordering::Relaxed);
                    if tokio::time::timeout_at(deadline, tokio::time::sleep(backoff))
                        .await
                        .is_err()
                    {
                        break;
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(2));
                }
                Ok(Err(_)) | Err(_) => break,
            }
        }
        let left = pending.len() as u64 + self.queue.lock().items.len() as u64;
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
        assert!(trail.queue.lock().bytes <= BATCH_BYTES);
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
