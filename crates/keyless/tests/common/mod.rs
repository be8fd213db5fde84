//! `keyless serve` as a child process on `127.0.0.1:0`, for the integration tests that drive it
//! with the AWS Rust SDK.

#![allow(dead_code)] // each test file uses part of it

use std::ffi::OsStr;
use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
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
    /// Files made for this server (its configuration), removed with it.
    pub files: Vec<PathBuf>,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
        for file in &self.files {
            let _ = std::fs::remove_file(file);
        }
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
    start_with_env(args, &[])
}

/// An upstream store for gateway mode, on a free loopback port; stopped on drop: moto's S3
/// server (`moto_server` from PyPI's `moto[server]`, which scripts/test installs), or Ceph RGW
/// 16.2 and Garage 2.5 as `scripts/upstreams/*` start them.
pub struct Upstream {
    /// moto's process.
    child: Option<Child>,
    /// The script that started Ceph or Garage, and its folder.
    script: Option<(PathBuf, PathBuf)>,
    /// `http://127.0.0.1:PORT`
    pub endpoint: String,
    /// Keyless's key pair at the upstream.
    pub key: (String, String),
    /// The region its requests are signed for.
    pub region: &'static str,
}

impl Drop for Upstream {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.kill();
            let _ = child.wait();
        }
        if let Some((script, dir)) = &self.script {
            let _ = Command::new(script).arg("stop").arg(dir).status();
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// The key pair Keyless signs with at moto (which takes any).
pub const MOTO_KEY: (&str, &str) = (
    "AKIAUPSTREAMKEYLESS1",
    "upstream-secret-upstream-secret-upstream",
);

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Starts moto.
pub fn moto() -> Upstream {
    let port = free_port();
    let child = Command::new("moto_server")
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("moto_server (pip install 'moto[server]'; scripts/test does)");
    // Up to 30 s for Python to start.
    let mut tries = 0;
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        tries += 1;
        assert!(tries < 300, "moto_server did not start");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    Upstream {
        child: Some(child),
        script: None,
        endpoint: format!("http://127.0.0.1:{port}"),
        key: (MOTO_KEY.0.to_owned(), MOTO_KEY.1.to_owned()),
        region: "us-east-1",
    }
}

/// Starts `scripts/upstreams/NAME` (`ceph-rgw`, `garage`), which prints
/// `endpoint ACCESS_KEY SECRET_KEY`.
pub fn scripted(name: &str, region: &'static str) -> Upstream {
    let script = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../scripts/upstreams")
        .join(name);
    let dir = scratch(name);
    let out = Command::new(&script)
        .arg("start")
        .arg(&dir)
        .arg(free_port().to_string())
        .output()
        .unwrap_or_else(|e| panic!("{}: {e}", script.display()));
    assert!(
        out.status.success(),
        "{name} did not start (scripts/test installs it): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed = String::from_utf8_lossy(&out.stdout);
    let words: Vec<&str> = printed.split_whitespace().collect();
    let [endpoint, access, secret] = words[words.len().saturating_sub(3)..] else {
        panic!("{name} printed {printed:?}");
    };
    Upstream {
        child: None,
        endpoint: endpoint.to_owned(),
        key: (access.to_owned(), secret.to_owned()),
        region,
        script: Some((script, dir)),
    }
}

/// Starts `keyless serve` in gateway mode in front of `upstream`, its buckets under `prefix`.
pub fn start_gateway(upstream: &Upstream, prefix: &str) -> Server {
    start_with_env(
        &[
            OsStr::new("--upstream"),
            OsStr::new(&upstream.endpoint),
            OsStr::new("--upstream-region"),
            OsStr::new(upstream.region),
            OsStr::new("--upstream-bucket-prefix"),
            OsStr::new(prefix),
        ],
        &[
            ("KEYLESS_UPSTREAM_ACCESS_KEY_ID", &upstream.key.0),
            ("KEYLESS_UPSTREAM_SECRET_ACCESS_KEY", &upstream.key.1),
        ],
    )
}

/// [`start`], with `env` added to the server's environment.
pub fn start_with_env(args: &[&OsStr], env: &[(&str, &str)]) -> Server {
    let dir = scratch("data");
    let mut child = Command::new(env!("CARGO_BIN_EXE_keyless"))
        .envs(env.iter().copied())
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "off",
            "--data-dir",
        ])
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
        files: Vec::new(),
    }
}

/// A server with `CONFIG` and `POD_ROLES`, its metadata service on `--imds-listen` with the pod
/// of `PODS` (at 127.0.0.1: this process), and container credentials for `gitlab/toolbox`.
pub fn start_with_pods(name: &str) -> Server {
    let config = scratch(&format!("{name}.toml"));
    std::fs::write(&config, format!("{CONFIG}{POD_ROLES}")).unwrap();
    let pods = scratch(&format!("{name}-pods.json"));
    std::fs::write(&pods, PODS).unwrap();
    let mut server = start(&[
        "--config".as_ref(),
        config.as_os_str(),
        "--imds-listen".as_ref(),
        "127.0.0.1:0".as_ref(),
        "--pods-file".as_ref(),
        pods.as_os_str(),
        "--association".as_ref(),
        "gitlab/toolbox=gitlab-toolbox".as_ref(),
    ]);
    server.files = vec![config, pods];
    server
}

/// Runs `keyless ARGS` (without the test's own AWS keys) and returns its stdout; it must succeed.
pub fn keyless(args: &[&OsStr]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_keyless"))
        .args(args)
        .env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "keyless {args:?}: {stderr}");
    String::from_utf8(out.stdout).unwrap()
}

/// A role for the service account `gitlab/ACCOUNT` with the customer managed policy `policy`,
/// as eksctl makes it (`keyless iam create-service-account`); its ARN.
pub fn service_account(server: &Server, account: &str, policy: &str) -> String {
    let policy = format!("arn:aws:iam::000000000000:policy/{policy}");
    let yaml = keyless(&[
        "iam".as_ref(),
        "create-service-account".as_ref(),
        "--namespace".as_ref(),
        "gitlab".as_ref(),
        "--name".as_ref(),
        account.as_ref(),
        "--attach-policy-arn".as_ref(),
        policy.as_ref(),
        "--endpoint-url".as_ref(),
        server.endpoint.as_ref(),
        "--data-dir".as_ref(),
        server.dir.as_os_str(),
    ]);
    yaml.lines()
        .find_map(|l| l.trim().strip_prefix("eks.amazonaws.com/role-arn: "))
        .unwrap()
        .trim_matches('"')
        .to_owned()
}

/// Writes a service-account token of `gitlab/ACCOUNT` from the server's issuer to `file`, as the
/// kubelet projects it.
pub fn token(server: &Server, account: &str, file: &Path) {
    let token = keyless(&[
        "token".as_ref(),
        "--namespace".as_ref(),
        "gitlab".as_ref(),
        "--service-account".as_ref(),
        account.as_ref(),
        "--data-dir".as_ref(),
        server.dir.as_os_str(),
    ]);
    std::fs::write(file, token).unwrap();
}

/// The policy `registry-rw` (read, write and list on the bucket `registry`), and the buckets
/// `registry` and `other`.
pub const CONFIG: &str = r#"
[[policies]]
name = "registry-rw"
document = '''{"Version": "2012-10-17", "Statement": [
  {"Effect": "Allow", "Action": ["s3:ListBucket"], "Resource": "arn:aws:s3:::registry"},
  {"Effect": "Allow", "Action": ["s3:GetObject", "s3:PutObject", "s3:DeleteObject"],
   "Resource": "arn:aws:s3:::registry/*"}]}'''

[[buckets]]
name = "registry"

[[buckets]]
name = "other"
"#;

/// Roles for pods through the metadata service: both trust its IAM user.
pub const POD_ROLES: &str = r#"
[[roles]]
name = "gitlab-registry"
assume_role_policy = { document = '{"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::000000000000:user/keyless-imds"}, "Action": ["sts:AssumeRole", "sts:TagSession"]}]}' }
policy_arns = ["arn:aws:iam::000000000000:policy/registry-rw"]

[[roles]]
name = "gitlab-toolbox"
assume_role_policy = { document = '{"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::000000000000:user/keyless-imds"}, "Action": ["sts:AssumeRole", "sts:TagSession"]}]}' }
policy_arns = ["arn:aws:iam::000000000000:policy/registry-rw"]
"#;

/// A pod at 127.0.0.1, so that this test's own requests come from it.
pub const PODS: &str = r#"{"kind": "List", "items": [{"kind": "Pod",
  "metadata": {"name": "registry-0", "namespace": "gitlab", "uid": "3f0c-registry-0",
               "annotations": {"iam.amazonaws.com/role": "gitlab-registry"}},
  "spec": {"serviceAccountName": "registry"},
  "status": {"podIP": "127.0.0.1", "phase": "Running"}}]}"#;

/// A reverse proxy in front of `upstream` (`http://HOST:PORT`) that sends every response body
/// back with `Transfer-Encoding: chunked` in chunks of one byte, as a streaming proxy may: each
/// multi-byte UTF-8 character then straddles chunks. Its endpoint, `http://127.0.0.1:PORT`; it
/// serves until the test process ends.
pub fn one_byte_chunks(upstream: &str) -> String {
    use std::io::{Read as _, Write as _};
    let upstream = upstream.strip_prefix("http://").unwrap().to_owned();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for client in listener.incoming() {
            let Ok(client) = client else { continue };
            let upstream = upstream.clone();
            std::thread::spawn(move || {
                let mut reader = BufReader::new(client.try_clone().unwrap());
                let mut client = client;
                // One request at a time on a kept-alive connection.
                loop {
                    let mut head = String::new();
                    loop {
                        let mut line = String::new();
                        if reader.read_line(&mut line).unwrap_or(0) == 0 {
                            return;
                        }
                        let end = line == "\r\n";
                        head.push_str(&line);
                        if end {
                            break;
                        }
                    }
                    let length = header(&head, "content-length").map_or(0, |v| v.parse().unwrap());
                    let mut body = vec![0; length];
                    reader.read_exact(&mut body).unwrap();
                    let mut server = std::net::TcpStream::connect(&upstream).unwrap();
                    server.write_all(head.as_bytes()).unwrap();
                    server.write_all(&body).unwrap();
                    let mut response = BufReader::new(server);
                    let mut status = String::new();
                    response.read_line(&mut status).unwrap();
                    let mut out = status.into_bytes();
                    let mut length = 0;
                    loop {
                        let mut line = String::new();
                        response.read_line(&mut line).unwrap();
                        if line == "\r\n" {
                            break;
                        }
                        let name = line.split(':').next().unwrap().to_ascii_lowercase();
                        assert_ne!(name, "transfer-encoding", "the upstream chunks already");
                        if name == "content-length" {
                            length = line.split(':').nth(1).unwrap().trim().parse().unwrap();
                        } else {
                            out.extend_from_slice(line.as_bytes());
                        }
                    }
                    out.extend_from_slice(b"transfer-encoding: chunked\r\n\r\n");
                    let mut body = vec![0; length];
                    response.read_exact(&mut body).unwrap();
                    for byte in body {
                        out.extend_from_slice(b"1\r\n");
                        out.push(byte);
                        out.extend_from_slice(b"\r\n");
                    }
                    out.extend_from_slice(b"0\r\n\r\n");
                    if client.write_all(&out).is_err() {
                        return;
                    }
                    if header(&head, "connection").is_some_and(|v| v.eq_ignore_ascii_case("close"))
                    {
                        return;
                    }
                }
            });
        }
    });
    endpoint
}

/// The value of header `name` in a request or response head.
fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().find_map(|line| {
        let (key, value) = line.split_once(':')?;
        key.trim().eq_ignore_ascii_case(name).then(|| value.trim())
    })
}
