//! Progress of a transfer: a bar with rate and ETA on a terminal, one line at the end otherwise.

use std::io::{IsTerminal as _, Write as _};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Bytes moved so far, shared by the tasks of a transfer.
#[derive(Debug)]
pub(super) struct Progress {
    verb: &'static str,
    total: Option<u64>,
    done: AtomicU64,
    started: Instant,
    ticker: std::sync::OnceLock<tokio::task::JoinHandle<()>>,
}

impl Progress {
    /// Starts counting; draws a bar on stderr every quarter second when stderr is a terminal.
    pub(super) fn start(verb: &'static str, total: Option<u64>) -> Arc<Self> {
        let tty = std::io::stderr().is_terminal();
        let progress = Arc::new(Self {
            verb,
            total,
            done: AtomicU64::new(0),
            started: now(),
            ticker: std::sync::OnceLock::new(),
        });
        if !tty {
            return progress;
        }
        let weak = Arc::downgrade(&progress);
        let ticker = tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(250));
            loop {
                tick.tick().await;
                let Some(p) = weak.upgrade() else { break };
                eprint!("\r\x1b[2K{}", p.line());
                let _ = std::io::stderr().flush();
            }
        });
        let _ = progress.ticker.set(ticker);
        progress
    }

    pub(super) fn add(&self, bytes: u64) {
        self.done.fetch_add(bytes, Ordering::Relaxed);
    }

    /// Takes back bytes of an attempt that failed and will be repeated.
    pub(super) fn sub(&self, bytes: u64) {
        self.done.fetch_sub(bytes, Ordering::Relaxed);
    }

    pub(super) fn done(&self) -> u64 {
        self.done.load(Ordering::Relaxed)
    }

    fn line(&self) -> String {
        let done = self.done();
        let secs = self.started.elapsed().as_secs_f64().max(1e-3);
        let rate = done as f64 / secs;
        match self.total {
            Some(total) if total > 0 => {
                let fraction = (done as f64 / total as f64).min(1.0);
                let width = 30;
                let filled = (fraction * width as f64) as usize;
                let eta = if rate > 0.0 {
                    format_duration((total.saturating_sub(done)) as f64 / rate)
                } else {
                    "?".to_owned()
                };
                format!(
                    "{} [{}{}] {:>3.0}% {} / {}  {}/s  ETA {eta}",
                    self.verb,
                    "#".repeat(filled),
                    "-".repeat(width - filled),
                    fraction * 100.0,
                    human_bytes(done),
                    human_bytes(total),
                    human_bytes(rate as u64),
                )
            }
            _ => format!(
                "{} {}  {}/s",
                self.verb,
                human_bytes(done),
                human_bytes(rate as u64)
            ),
        }
    }

    /// Stops the bar and says how it went, in one line.
    pub(super) fn finish(&self, what: &str) -> String {
        if let Some(ticker) = self.ticker.get() {
            ticker.abort();
            eprint!("\r\x1b[2K");
        }
        let secs = self.started.elapsed().as_secs_f64();
        let done = self.done();
        format!(
            "{what}: {} in {:.1} s ({}/s)",
            human_bytes(done),
            secs,
            human_bytes((done as f64 / secs.max(1e-3)) as u64)
        )
    }
}

#[allow(clippy::disallowed_methods)] // the binary's wall clock, for rates
fn now() -> Instant {
    Instant::now()
}

/// `1.5 GiB`, `12.0 MiB`, `512 B`.
pub(super) fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

fn format_duration(secs: f64) -> String {
    let s = secs.round() as u64;
    if s >= 3600 {
        format!("{}h{:02}m", s / 3600, s % 3600 / 60)
    } else if s >= 60 {
        format!("{}m{:02}s", s / 60, s % 60)
    } else {
        format!("{s}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_durations_read_well() {
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(3 << 29), "1.5 GiB");
        assert_eq!(format_duration(59.6), "1m00s");
        assert_eq!(format_duration(3725.0), "1h02m");
        assert_eq!(format_duration(7.0), "7s");
    }
}
