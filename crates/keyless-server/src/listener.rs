//! Serving one listener: accepting within a connection limit, backing off when the process is
//! out of file descriptors instead of spinning, closing idle connections, and draining on
//! shutdown: the listener is closed at once (a new connection is refused by the kernel, never
//! half-served), every connection finishes the request it is serving, and whatever is still
//! running when the grace period ends is dropped.
//!
//! Shared by the S3 port, the metadata port and the admin port.

use std::error::Error as StdError;
use std::net::SocketAddr;
use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::body::{Body, Incoming};
use hyper::service::Service;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder as ConnBuilder;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;
use tokio_util::task::TaskTracker;

use crate::lifecycle::Shutdown;

/// How long a client has to finish the TLS handshake.
const TLS_HANDSHAKE: Duration = Duration::from_secs(10);

/// The first pause after an accept error that a pause can cure (no file descriptor, no
/// buffer); doubled on each further error, up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(10);
const MAX_BACKOFF: Duration = Duration::from_secs(1);

/// How often accept errors are logged at the most.
const ERROR_LOG_EVERY: Duration = Duration::from_secs(1);

/// The limits of one listener.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Connections served at once; beyond it new connections wait in the listen backlog.
    pub max_connections: usize,
    /// How long a connection may sit with no request in flight and no byte moving before it is
    /// closed (for HTTP/1.1 also how long a client has to send a request's headers).
    pub idle_timeout: Duration,
    /// How long in-flight requests have to finish once a shutdown is asked for.
    pub shutdown_grace: Duration,
}

/// The listen backlog asked for, where connections past `--max-connections` wait. The kernel
/// caps it at `net.core.somaxconn` (4096 since Linux 5.4); the standard library's 128 would
/// overflow on a burst, and a client whose handshake overflows it waits for SYN retries.
const LISTEN_BACKLOG: u32 = 4096;

/// Binds `addr`, naming the flag it came from when it cannot.
pub(crate) async fn bind(addr: std::net::SocketAddr, flag: &str) -> anyhow::Result<TcpListener> {
    let listen = || {
        let socket = match addr {
            std::net::SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
            std::net::SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
        };
        socket.set_reuseaddr(true)?;
        socket.bind(addr)?;
        socket.listen(LISTEN_BACKLOG)
    };
    anyhow::Context::with_context(listen(), || format!("cannot listen on `{addr}` ({flag})"))
}

/// Serves `listener` until `shutdown`, each connection with the service `make_service` builds
/// for its peer, over TLS when `tls` is given. Returns once every connection has finished or
/// the grace period is over.
pub(crate) async fn serve<F, S, B>(
    name: &'static str,
    listener: TcpListener,
    http: ConnBuilder<TokioExecutor>,
    tls: Option<TlsAcceptor>,
    limits: Limits,
    shutdown: Shutdown,
    make_service: F,
) where
    F: Fn(SocketAddr) -> S,
    S: Service<Request<Incoming>, Response = Response<B>> + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn StdError + Send + Sync>>,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn StdError + Send + Sync>>,
{
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let tracker = TaskTracker::new();
    let mut errors = AcceptErrors::default();
    loop {
        // A slot first: past the limit, connections wait in the kernel's backlog.
        let permit = tokio::select! {
            permit = Arc::clone(&slots).acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
            () = shutdown.requested() => break,
        };
        let (socket, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => {
                    errors.succeeded(name);
                    accepted
                }
                Err(e) => {
                    if let Some(pause) = errors.failed(name, &e) {
                        tokio::select! {
                            () = tokio::time::sleep(pause) => {}
                            () = shutdown.requested() => break,
                        }
                    }
                    continue;
                }
            },
            () = shutdown.requested() => break,
        };
        if let Err(e) = socket.set_nodelay(true) {
            tracing::debug!(error = %e, "cannot set TCP_NODELAY");
        }
        let service = make_service(peer);
        let (http, tls, shutdown) = (http.clone(), tls.clone(), shutdown.clone());
        tracker.spawn(async move {
            let _permit = permit;
            serve_connection(
                socket,
                peer,
                http,
                tls,
                service,
                limits.idle_timeout,
                shutdown,
            )
            .await;
        });
    }
    // Closing the socket refuses new connections at once.
    drop(listener);
    tracker.close();
    if tracker.is_empty() {
        return;
    }
    tracing::info!(
        listener = name,
        connections = tracker.len(),
        "finishing requests in flight"
    );
    if tokio::time::timeout(limits.shutdown_grace, tracker.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            listener = name,
            connections = tracker.len(),
            grace = ?limits.shutdown_grace,
            "the shutdown grace period is over; dropping the connections still open"
        );
    }
}

async fn serve_connection<S, B>(
    socket: TcpStream,
    peer: SocketAddr,
    http: ConnBuilder<TokioExecutor>,
    tls: Option<TlsAcceptor>,
    service: S,
    idle_timeout: Duration,
    shutdown: Shutdown,
) where
    S: Service<Request<Incoming>, Response = Response<B>> + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn StdError + Send + Sync>>,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn StdError + Send + Sync>>,
{
    let activity = Arc::new(Activity::default());
    let counted = |tls: Option<TlsSession>| Counted {
        inner: service,
        activity: Arc::clone(&activity),
        tls,
    };
    let socket = Tracked {
        inner: socket,
        activity: Arc::clone(&activity),
    };
    match tls {
        None => {
            let service = counted(None);
            drive(&http, socket, service, &activity, idle_timeout, &shutdown).await;
        }
        Some(acceptor) => {
            match tokio::time::timeout(TLS_HANDSHAKE, acceptor.accept(socket)).await {
                Ok(Ok(stream)) => {
                    let service = counted(TlsSession::of(stream.get_ref().1));
                    drive(&http, stream, service, &activity, idle_timeout, &shutdown).await;
                }
                Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
            }
        }
    }
}

/// Runs one connection to its end: closed gracefully once idle for `idle_timeout` or once a
/// shutdown is asked for (the request in flight, if any, is answered first).
async fn drive<I, S, B>(
    http: &ConnBuilder<TokioExecutor>,
    io: I,
    service: S,
    activity: &Activity,
    idle_timeout: Duration,
    shutdown: &Shutdown,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: Service<Request<Incoming>, Response = Response<B>> + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn StdError + Send + Sync>>,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn StdError + Send + Sync>>,
{
    let mut conn = pin!(http.serve_connection(TokioIo::new(io), service));
    let mut closing = false;
    let mut seen = activity.moved();
    let mut idle = pin!(tokio::time::sleep(idle_timeout));
    let result = loop {
        tokio::select! {
            result = conn.as_mut() => break result,
            () = shutdown.requested(), if !closing => {
                closing = true;
                conn.as_mut().graceful_shutdown();
            }
            () = idle.as_mut(), if !closing => {
                let moved = activity.moved();
                if moved == seen && activity.in_flight() == 0 {
                    closing = true;
                    conn.as_mut().graceful_shutdown();
                } else {
                    seen = moved;
                    idle.as_mut().reset(tokio::time::Instant::now() + idle_timeout);
                }
            }
        }
    };
    if let Err(e) = result {
        tracing::debug!(error = %e, "connection ended with an error");
    }
}

/// What a connection is doing: bytes read or written so far (a counter the idle check compares
/// between two looks, so no clock is read per byte) and requests in flight.
#[derive(Debug, Default)]
struct Activity {
    moved: AtomicU64,
    in_flight: AtomicUsize,
}

impl Activity {
    fn moved(&self) -> u64 {
        self.moved.load(Ordering::Relaxed)
    }

    fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }
}

/// A socket that counts what moves through it.
struct Tracked<T> {
    inner: T,
    activity: Arc<Activity>,
}

impl<T: AsyncRead + Unpin> AsyncRead for Tracked<T> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = std::pin::Pin::new(&mut self.inner).poll_read(cx, buf);
        let read = buf.filled().len() - before;
        if read > 0 {
            self.activity
                .moved
                .fetch_add(read as u64, Ordering::Relaxed);
        }
        polled
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Tracked<T> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let polled = std::pin::Pin::new(&mut self.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = &polled {
            self.activity.moved.fetch_add(*n as u64, Ordering::Relaxed);
        }
        polled
    }

    fn poll_write_vectored(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let polled = std::pin::Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if let Poll::Ready(Ok(n)) = &polled {
            self.activity.moved.fetch_add(*n as u64, Ordering::Relaxed);
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// A service that counts its requests in flight (until their handler has answered; a body
/// still streaming out moves bytes, which the idle check sees).
struct Counted<S> {
    inner: S,
    activity: Arc<Activity>,
    /// The connection's TLS, put in each request's extensions.
    tls: Option<TlsSession>,
}

/// The TLS a connection negotiated, in CloudTrail's words (`tlsDetails`): `TLSv1.3` and the
/// cipher suite's name (IANA's for TLS 1.3, OpenSSL's for 1.2, as CloudTrail writes them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TlsSession {
    /// `TLSv1.2` or `TLSv1.3`.
    pub(crate) version: &'static str,
    /// `TLS_AES_128_GCM_SHA256`, `ECDHE-RSA-AES128-GCM-SHA256`, ...
    pub(crate) cipher_suite: &'static str,
}

impl TlsSession {
    fn of(conn: &rustls::ServerConnection) -> Option<Self> {
        use rustls::CipherSuite as C;
        let version = match conn.protocol_version()? {
            rustls::ProtocolVersion::TLSv1_3 => "TLSv1.3",
            rustls::ProtocolVersion::TLSv1_2 => "TLSv1.2",
            _ => "unknown",
        };
        let cipher_suite = match conn.negotiated_cipher_suite()?.suite() {
            C::TLS13_AES_128_GCM_SHA256 => "TLS_AES_128_GCM_SHA256",
            C::TLS13_AES_256_GCM_SHA384 => "TLS_AES_256_GCM_SHA384",
            C::TLS13_CHACHA20_POLY1305_SHA256 => "TLS_CHACHA20_POLY1305_SHA256",
            C::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256 => "ECDHE-ECDSA-AES128-GCM-SHA256",
            C::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384 => "ECDHE-ECDSA-AES256-GCM-SHA384",
            C::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256 => "ECDHE-ECDSA-CHACHA20-POLY1305",
            C::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256 => "ECDHE-RSA-AES128-GCM-SHA256",
            C::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384 => "ECDHE-RSA-AES256-GCM-SHA384",
            C::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256 => "ECDHE-RSA-CHACHA20-POLY1305",
            _ => "unknown",
        };
        Some(Self {
            version,
            cipher_suite,
        })
    }
}

impl<S, T> Service<Request<T>> for Counted<S>
where
    S: Service<Request<T>>,
    S::Future: Send + 'static,
    S::Response: 'static,
    S::Error: 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future =
        std::pin::Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send + 'static>>;

    fn call(&self, mut req: Request<T>) -> Self::Future {
        if let Some(tls) = self.tls {
            req.extensions_mut().insert(tls);
        }
        let activity = Arc::clone(&self.activity);
        activity.in_flight.fetch_add(1, Ordering::Relaxed);
        let guard = InFlight(activity);
        let future = self.inner.call(req);
        Box::pin(async move {
            let _guard = guard;
            future.await
        })
    }
}

/// Ends a request's count when its handler finishes or is dropped.
struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Accept errors, told apart and logged at most once a second with a count: the failures and
/// the recoveries both, since a process at its file limit may fail and recover many times a
/// second as connections close one by one.
#[derive(Debug, Default)]
struct AcceptErrors {
    /// The pause before the next accept, after an error a pause can cure.
    backoff: Option<Duration>,
    /// Errors not logged yet, and when a line was last logged.
    unlogged: u64,
    last_logged: Option<tokio::time::Instant>,
    /// Lines logged so far.
    lines: u64,
}

impl AcceptErrors {
    /// Records a failed accept; returns the pause to take before the next.
    fn failed(&mut self, listener: &'static str, e: &std::io::Error) -> Option<Duration> {
        let pause = if is_resource_exhaustion(e) {
            let next = self
                .backoff
                .map_or(FIRST_BACKOFF, |b| (b * 2).min(MAX_BACKOFF));
            self.backoff = Some(next);
            Some(next)
        } else {
            // A connection reset before it was accepted: the next one is unaffected.
            None
        };
        self.unlogged += 1;
        if self.may_log() {
            tracing::warn!(
                listener,
                error = %e,
                errors = self.unlogged,
                pause = ?pause.unwrap_or_default(),
                "accept failed; connections wait in the backlog"
            );
            self.unlogged = 0;
        }
        pause
    }

    /// Records a successful accept. The errors since the last line are told with the next
    /// line when a line was logged within the second.
    fn succeeded(&mut self, listener: &'static str) {
        if self.backoff.take().is_some() && self.unlogged > 0 && self.may_log() {
            tracing::warn!(
                listener,
                errors = self.unlogged,
                "accepting again after accept errors"
            );
            self.unlogged = 0;
        }
    }

    /// Whether a line may be logged now (then it counts as logged).
    fn may_log(&mut self) -> bool {
        let now = tokio::time::Instant::now();
        if self
            .last_logged
            .is_some_and(|at| now.duration_since(at) < ERROR_LOG_EVERY)
        {
            return false;
        }
        self.last_logged = Some(now);
        self.lines += 1;
        true
    }
}

/// Errors that mean the process or the system is out of something a pause may bring back.
fn is_resource_exhaustion(e: &std::io::Error) -> bool {
    const EMFILE: i32 = 24;
    const ENFILE: i32 = 23;
    const ENOBUFS: i32 = 105;
    const ENOMEM: i32 = 12;
    matches!(e.raw_os_error(), Some(EMFILE | ENFILE | ENOBUFS | ENOMEM))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn resource_errors_back_off_and_are_logged_once_a_second() {
        let mut errors = AcceptErrors::default();
        let emfile = std::io::Error::from_raw_os_error(24);
        let pauses: Vec<_> = (0..9)
            .map(|_| errors.failed("s3", &emfile).unwrap())
            .collect();
        assert_eq!(pauses[0], Duration::from_millis(10));
        assert_eq!(pauses[1], Duration::from_millis(20));
        assert_eq!(pauses[8], MAX_BACKOFF);
        // The first was logged; the other eight wait for the next second.
        assert_eq!(errors.unlogged, 8);
        tokio::time::advance(ERROR_LOG_EVERY).await;
        errors.failed("s3", &emfile);
        assert_eq!(errors.unlogged, 0);
        errors.succeeded("s3");
        assert_eq!(errors.backoff, None);
    }

    /// A process at its file limit whose connections close one at a time fails and recovers
    /// over and over: one line a second at the most, whatever the rate.
    #[tokio::test(start_paused = true)]
    async fn failing_and_recovering_in_turn_is_logged_once_a_second() {
        let mut errors = AcceptErrors::default();
        let emfile = std::io::Error::from_raw_os_error(24);
        for _ in 0..1000 {
            errors.failed("s3", &emfile);
            errors.succeeded("s3");
            tokio::time::advance(Duration::from_millis(10)).await;
        }
        // Ten seconds: one line a second, the errors between counted in the next.
        assert!(errors.lines <= 11, "{} lines", errors.lines);
        assert!(errors.unlogged < 100);
    }

    #[test]
    fn a_reset_connection_is_no_reason_to_pause() {
        let mut errors = AcceptErrors::default();
        let reset = std::io::Error::from(std::io::ErrorKind::ConnectionAborted);
        assert_eq!(errors.failed("s3", &reset), None);
    }
}
