//! `keyless serve` as a child process on `127.0.0.1:0`, for the integration tests that drive it
//! with the AWS Rust SDK.

#![allow(dead_code)] // each test file uses part of it

use std::ffi::OsStr;
use std::io::{BufRead as _, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

/// A running server; killed and its data folder removed on drop.
pub struct Server {
    child: Child,
    /// `http://127.0.0.1:PORT`
    pub endpoint: String,
    /// The data folder.
    pub dir: PathBuf,
    /// The root user's key pair.
    pub key: (String, String),
    /// The metadata service, `http://127.0.0.1:PORT`, when started with `--imds-listen`.
    pub imds: Option<String>,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A scratch path unique to this process and thread.
pub fn scratch(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!(
        "keyless-{name}-{}-{:?}",
        std::process::id(),
        std::thread::current().id()
    ))
}

/// Starts `keyless serve` with a fresh data folder and `args` added.
pub fn start(args: &[&OsStr]) -> Server {
    let dir = scratch("data");
    let mut child = Command::new(env!("CARGO_BIN_EXE_keyless"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(&dir)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Only the lines needed are read; the rest of the banner meets a closed pipe, which must not
    // stop the server (it once did).
    let mut banner = BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    banner.read_line(&mut first).unwrap();
    let endpoint = first.trim().rsplit(' ').next().unwrap().to_owned();
    assert!(endpoint.starts_with("http://127.0.0.1:"), "{first}");
    let imds = args.contains(&OsStr::new("--imds-listen")).then(|| {
        let mut line = String::new();
        while !line.contains("metadata service") {
            line.clear();
            assert!(
                banner.read_line(&mut line).unwrap() > 0,
                "no metadata service line"
            );
        }
        let url = line.split("metadata service ").nth(1).unwrap();
        url.split(';').next().unwrap().to_owned()
    });
    let creds = std::fs::read_to_string(dir.join("root-credentials")).unwrap();
    let value = |name: &str| {
        creds
            .lines()
            .find_map(|l| l.strip_prefix(name).and_then(|r| r.strip_prefix(" = ")))
            .unwrap()
            .to_owned()
    };
    let key = (value("aws_access_key_id"), value("aws_secret_access_key"));
    Server {
        child,
        endpoint,
        dir,
        key,
        imds,
    }
}
