//! A server in process, on listeners bound to `127.0.0.1:0` (the point of the
//! `Server::open(options, listeners)` / `run(shutdown)` shape): the admin probes answer, a
//! request in flight when the shutdown is asked for is answered whole while new connections are
//! refused, HTTP/2 connections are told to go away, a connection that never sends a byte is
//! closed once idle, and `run` returns with every port closed.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::net::SocketAddr;
use std::time::Duration;

use keyless_server::{Listeners, ServeOptions, Server, ShutdownTrigger, options, shutdown_channel};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;

/// How long anything here may take; far more than it needs.
const PATIENCE: Duration = Duration::from_secs(10);

struct Running {
    s3: SocketAddr,
    admin: SocketAddr,
    trigger: ShutdownTrigger,
    run: JoinHandle<anyhow::Result<()>>,
    _data: tempfile::TempDir,
}

/// Opens a server on `127.0.0.1:0` with `extra` options and runs it in a task.
async fn start(extra: &[&str]) -> Running {
    let data = tempfile::tempdir().unwrap();
    let dir = data.path().join("data");
    let dir = dir.to_str().unwrap();
    let mut words = vec![
        "--listen",
        "127.0.0.1:0",
        "--admin-listen",
        "127.0.0.1:0",
        "--data-dir",
        dir,
    ];
    words.extend_from_slice(extra);
    let options: ServeOptions = options::parse(&words).unwrap();
    let listeners = Listeners::bind(&options).await.unwrap();
    let s3 = listeners.s3.local_addr().unwrap();
    let admin = listeners.admin.as_ref().unwrap().local_addr().unwrap();
    let server = Server::open(options, listeners).await.unwrap();
    assert!(
        server
            .banner()
            .contains(&format!("keyless: admin http://{admin}"))
    );
    let (trigger, shutdown) = shutdown_channel();
    let run = tokio::spawn(server.run(shutdown));
    Running {
        s3,
        admin,
        trigger,
        run,
        _data: data,
    }
}

impl Running {
    /// Asks for the shutdown and waits for `run` to return.
    async fn stop(self) {
        self.trigger.trigger();
        tokio::time::timeout(PATIENCE, self.run)
            .await
            .expect("run returns after the shutdown")
            .unwrap()
            .unwrap();
        for addr in [self.s3, self.admin] {
            assert!(refused(addr).await, "{addr} still accepts connections");
        }
    }
}

/// Sends one HTTP/1.1 request (with `Connection: close`) and reads the whole answer.
async fn http(addr: SocketAddr, method: &str, path: &str) -> String {
    let mut socket = TcpStream::connect(addr).await.unwrap();
    let head = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    socket.write_all(head.as_bytes()).await.unwrap();
    read_to_end(&mut socket).await
}

async fn read_to_end(socket: &mut TcpStream) -> String {
    let mut answer = Vec::new();
    tokio::time::timeout(PATIENCE, socket.read_to_end(&mut answer))
        .await
        .expect("an answer")
        .unwrap();
    String::from_utf8(answer).unwrap()
}

/// Whether a new connection to `addr` is refused.
async fn refused(addr: SocketAddr) -> bool {
    match TcpStream::connect(addr).await {
        Err(e) => e.kind() == std::io::ErrorKind::ConnectionRefused,
        Ok(_) => false,
    }
}

/// Waits until `check` holds, for [`PATIENCE`] at the most.
async fn eventually<F: AsyncFnMut() -> bool>(what: &str, mut check: F) {
    let wait = async {
        while !check().await {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    tokio::time::timeout(PATIENCE, wait)
        .await
        .unwrap_or_else(|_| panic!("not within {PATIENCE:?}: {what}"));
}

#[tokio::test]
async fn the_admin_listener_answers_probes() {
    let server = start(&[]).await;
    let healthz = http(server.admin, "GET", "/healthz").await;
    assert!(healthz.starts_with("HTTP/1.1 200 OK\r\n"), "{healthz}");
    assert!(healthz.ends_with("\r\n\r\nok\n"), "{healthz}");
    let readyz = http(server.admin, "GET", "/readyz").await;
    assert!(readyz.starts_with("HTTP/1.1 200 OK\r\n"), "{readyz}");
    let other = http(server.admin, "GET", "/nothing").await;
    assert!(other.starts_with("HTTP/1.1 404 "), "{other}");
    // The S3 port answers S3: an anonymous request is denied.
    let s3 = http(server.s3, "GET", "/").await;
    assert!(s3.starts_with("HTTP/1.1 403 "), "{s3}");
    assert!(s3.contains("<Code>AccessDenied</Code>"), "{s3}");
    server.stop().await;
}

/// An STS query request whose body is half sent when the shutdown is asked for: the S3 port
/// closes at once and `/readyz` turns 503, the request is answered whole once its body is in,
/// and only then does `run` return.
#[tokio::test]
async fn a_request_in_flight_is_answered_while_new_connections_are_refused() {
    let mut server = start(&[]).await;
    let body = "Action=GetCallerIdentity&Version=2011-06-15";
    let (first, rest) = body.split_at(10);
    let mut socket = TcpStream::connect(server.s3).await.unwrap();
    let head = format!(
        "POST / HTTP/1.1\r\nHost: {}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{first}",
        server.s3,
        body.len()
    );
    socket.write_all(head.as_bytes()).await.unwrap();
    // The request is in the server's hands once the port's only connection is accepted; a
    // probe on the admin port proves the runtime has moved on since.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        http(server.admin, "GET", "/healthz")
            .await
            .contains(" 200 ")
    );

    server.trigger.trigger();
    let s3 = server.s3;
    eventually("the S3 port refuses connections", async || {
        refused(s3).await
    })
    .await;
    let admin = server.admin;
    eventually("/readyz says 503", async || {
        let answer = http(admin, "GET", "/readyz").await;
        answer.starts_with("HTTP/1.1 503 ")
            && answer.ends_with("\r\n\r\nnot ready: shutting down\n")
    })
    .await;
    assert!(
        !server.run.is_finished(),
        "run returned with a request in flight"
    );
    let mut byte = [0u8; 1];
    let early = tokio::time::timeout(Duration::from_millis(200), socket.read(&mut byte)).await;
    assert!(early.is_err(), "answered before the body was in: {early:?}");

    socket.write_all(rest.as_bytes()).await.unwrap();
    let answer = read_to_end(&mut socket).await;
    let (head, xml) = answer.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 "), "{answer}");
    assert!(
        head.to_ascii_lowercase().contains("\r\nconnection: close"),
        "{head}"
    );
    assert!(
        xml.contains("<ErrorResponse") && xml.trim_end().ends_with("</ErrorResponse>"),
        "{xml}"
    );
    tokio::time::timeout(PATIENCE, &mut server.run)
        .await
        .expect("run returns once the request is answered")
        .unwrap()
        .unwrap();
    assert!(refused(server.admin).await);
}

/// A frame of HTTP/2 (RFC 9113, section 4.1): its type and payload.
async fn read_frame(socket: &mut TcpStream) -> Option<(u8, Vec<u8>)> {
    let mut header = [0u8; 9];
    socket.read_exact(&mut header).await.ok()?;
    let length = u32::from_be_bytes([0, header[0], header[1], header[2]]) as usize;
    let mut payload = vec![0u8; length];
    socket.read_exact(&mut payload).await.ok()?;
    Some((header[3], payload))
}

const SETTINGS: u8 = 0x4;
const PING: u8 = 0x6;
const GOAWAY: u8 = 0x7;

/// An HTTP/2 connection (prior knowledge, as gRPC-style clients open them) idle at shutdown is
/// sent GOAWAY, then closed; `run` does not wait for it.
#[tokio::test]
async fn http2_connections_are_sent_goaway_on_shutdown() {
    let server = start(&[]).await;
    let mut socket = TcpStream::connect(server.s3).await.unwrap();
    socket
        .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0")
        .await
        .unwrap();
    let (kind, _) = tokio::time::timeout(PATIENCE, read_frame(&mut socket))
        .await
        .unwrap()
        .expect("the server's SETTINGS");
    assert_eq!(kind, SETTINGS);
    // ACK the server's settings.
    socket.write_all(b"\0\0\0\x04\x01\0\0\0\0").await.unwrap();

    let Running {
        trigger, run, s3, ..
    } = server;
    trigger.trigger();
    let mut goaway = None;
    let frames = async {
        while let Some((kind, payload)) = read_frame(&mut socket).await {
            match kind {
                GOAWAY => goaway = Some(payload),
                PING => {
                    // Answer h2's graceful-shutdown PING so that it may send the final GOAWAY.
                    let mut ack = b"\0\0\x08\x06\x01\0\0\0\0".to_vec();
                    ack.extend_from_slice(&payload);
                    let _ = socket.write_all(&ack).await;
                }
                _ => {}
            }
        }
    };
    tokio::time::timeout(PATIENCE, frames)
        .await
        .expect("the server closes the connection");
    let goaway = goaway.expect("a GOAWAY frame before the close");
    // Error code 0: NO_ERROR, a graceful close.
    assert_eq!(goaway[4..8], [0, 0, 0, 0], "{goaway:?}");
    tokio::time::timeout(PATIENCE, run)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(refused(s3).await);
}

/// A client that connects and never sends a byte (still in the HTTP version detection) is
/// closed once idle, and so is an HTTP/1.1 keep-alive connection after its request.
#[tokio::test]
async fn idle_connections_are_closed() {
    let server = start(&["--idle-timeout", "300ms"]).await;
    let mut silent = TcpStream::connect(server.s3).await.unwrap();
    let mut kept = TcpStream::connect(server.s3).await.unwrap();
    let head = format!("GET / HTTP/1.1\r\nHost: {}\r\n\r\n", server.s3);
    kept.write_all(head.as_bytes()).await.unwrap();
    let mut buf = [0u8; 4096];
    let n = kept.read(&mut buf).await.unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 403 "));
    // Both end (read_to_end sees EOF) well within the patience.
    assert_eq!(read_to_end(&mut silent).await, "");
    read_to_end(&mut kept).await;
    server.stop().await;
}
