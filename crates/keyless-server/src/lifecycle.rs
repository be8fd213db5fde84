//! A server's life: a shutdown asked for once and seen by every listener, the signals that ask
//! for it (SIGTERM, what Kubernetes sends on every rolling update, and SIGINT), and readiness,
//! which `/readyz` reports.
//!
//! <https://kubernetes.io/docs/concepts/workloads/pods/pod-lifecycle/#pod-termination>

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use tokio::sync::watch;

/// The side that asks for a shutdown.
#[derive(Debug, Clone)]
pub struct ShutdownTrigger(Arc<watch::Sender<bool>>);

/// The side that waits for one: cheap to clone, every clone sees the one request.
#[derive(Debug, Clone)]
pub struct Shutdown(watch::Receiver<bool>);

/// A new trigger and the shutdown it asks for.
pub fn shutdown_channel() -> (ShutdownTrigger, Shutdown) {
    let (tx, rx) = watch::channel(false);
    (ShutdownTrigger(Arc::new(tx)), Shutdown(rx))
}

impl ShutdownTrigger {
    /// Asks for the shutdown; asking again does nothing more.
    pub fn trigger(&self) {
        self.0.send_replace(true);
    }
}

impl Shutdown {
    /// Whether the shutdown has been asked for.
    pub fn is_requested(&self) -> bool {
        *self.0.borrow()
    }

    /// Completes once the shutdown is asked for (at once if it was), or when its trigger is
    /// dropped without asking, which means nobody can ask any more: a server whose caller went
    /// away stops too.
    pub async fn requested(&self) {
        let mut rx = self.0.clone();
        // An error is a dropped trigger.
        let _ = rx.wait_for(|asked| *asked).await;
    }
}

/// Asks for the shutdown on the first SIGTERM or SIGINT, and ends the process at once, with
/// the status a shell gives a process killed by that signal, on the second.
pub fn on_signals(trigger: ShutdownTrigger) -> std::io::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    tokio::spawn(async move {
        let mut received = 0;
        loop {
            let (name, status) = tokio::select! {
                _ = term.recv() => ("SIGTERM", 143),
                _ = int.recv() => ("SIGINT", 130),
            };
            received += 1;
            if received == 1 {
                tracing::info!(
                    signal = name,
                    "shutting down: no new connections, finishing requests in flight (a second signal stops at once)"
                );
                trigger.trigger();
            } else {
                tracing::warn!(signal = name, "second signal: stopping at once");
                std::process::exit(status);
            }
        }
    });
    Ok(())
}

/// Raises the soft limit on open files to the hard limit, as Go's runtime does at start: the
/// soft limit (often 1,024) is a leftover of `select(2)`, and a server with thousands of
/// connections needs more. Returns the soft limit in force afterwards (`None`: unlimited).
pub fn raise_open_file_limit() -> Option<u64> {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    match (limit.current, limit.maximum) {
        (Some(soft), Some(hard)) if soft < hard => {
            let raised = Rlimit {
                current: Some(hard),
                maximum: Some(hard),
            };
            match setrlimit(Resource::Nofile, raised) {
                Ok(()) => {
                    tracing::debug!(from = soft, to = hard, "raised the open-file limit");
                    Some(hard)
                }
                Err(e) => {
                    tracing::debug!(soft, hard, error = %e, "cannot raise the open-file limit");
                    Some(soft)
                }
            }
        }
        (soft, hard) => {
            tracing::debug!(
                ?soft,
                ?hard,
                "the open-file limit is already at its hard limit"
            );
            soft
        }
    }
}

/// The soft limit on open files now (`None`: unlimited).
pub fn open_file_limit() -> Option<u64> {
    rustix::process::getrlimit(rustix::process::Resource::Nofile).current
}

/// What a process still waits for before it should get traffic, each with a one-line reason;
/// ready when nothing is pending. Notes are lines `/readyz` adds whether ready or not (a count
/// of something to look at), that do not make it unready. Cheap to clone; clones share the one
/// state.
#[derive(Debug, Clone, Default)]
pub struct Readiness(Arc<Mutex<State>>);

#[derive(Debug, Default)]
struct State {
    pending: BTreeMap<&'static str, String>,
    notes: BTreeMap<&'static str, String>,
}

impl Readiness {
    /// Marks `what` as pending, for `why`.
    pub fn pending(&self, what: &'static str, why: impl Into<String>) {
        self.lock().pending.insert(what, why.into());
    }

    /// Marks `what` as done.
    pub fn done(&self, what: &'static str) {
        self.lock().pending.remove(what);
    }

    /// Whether `what` is pending.
    pub fn is_pending(&self, what: &'static str) -> bool {
        self.lock().pending.contains_key(what)
    }

    /// Sets the note `what` (`None` removes it).
    pub fn note(&self, what: &'static str, line: Option<String>) {
        let mut state = self.lock();
        match line {
            Some(line) => state.notes.insert(what, line),
            None => state.notes.remove(what),
        };
    }

    /// The notes, in order of their names.
    pub fn notes(&self) -> Vec<String> {
        self.lock().notes.values().cloned().collect()
    }

    /// `Ok` when ready, else the reasons, joined on one line.
    pub fn check(&self) -> Result<(), String> {
        let state = self.lock();
        if state.pending.is_empty() {
            return Ok(());
        }
        Err(state
            .pending
            .values()
            .cloned()
            .collect::<Vec<_>>()
            .join("; "))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn every_clone_sees_one_request() {
        let (trigger, shutdown) = shutdown_channel();
        let other = shutdown.clone();
        assert!(!other.is_requested());
        trigger.trigger();
        shutdown.requested().await;
        other.requested().await;
        assert!(other.is_requested());
    }

    #[tokio::test]
    async fn a_dropped_trigger_ends_the_wait() {
        let (trigger, shutdown) = shutdown_channel();
        drop(trigger);
        shutdown.requested().await;
    }

    #[test]
    fn readiness_names_what_is_pending() {
        let ready = Readiness::default();
        assert_eq!(ready.check(), Ok(()));
        ready.pending("pods", "the pod source has not synced");
        ready.pending("shutdown", "shutting down");
        assert_eq!(
            ready.check(),
            Err("the pod source has not synced; shutting down".into())
        );
        ready.done("pods");
        assert_eq!(ready.check(), Err("shutting down".into()));
        ready.note("unmutated", Some("2 pods".into()));
        assert_eq!(ready.notes(), ["2 pods"]);
        ready.note("unmutated", None);
        assert!(ready.notes().is_empty());
    }
}
