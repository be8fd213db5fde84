//! `keyless backup` against `keyless serve`, as GitLab's backup job would run it: a role through
//! web identity (IRSA) and no keys anywhere. A 1 GiB upload is killed halfway and resumed, the
//! download is compared byte for byte, and an object corrupted on the way or on the server's
//! disk is refused.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod common;

use std::ffi::OsStr;
use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use sha2::{Digest as _, Sha256};

const CONFIG: &str = r#"
[[policies]]
name = "backups-rw"
document = '''{"Version": "2012-10-17", "Statement": [
  {"Effect": "Allow", "Action": ["s3:ListBucket", "s3:ListBucketMultipartUploads"],
   "Resource": "arn:aws:s3:::backups"},
  {"Effect": "Allow",
   "Action": ["s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:ListMultipartUploadParts",
              "s3:AbortMultipartUpload"],
   "Resource": "arn:aws:s3:::backups/*"}]}'''

[[buckets]]
name = "backups"
"#;

/// The server and the environment of a pod whose service account has the backup role.
struct Setup {
    server: common::Server,
    env: Vec<(String, PathBuf)>,
    scratch: PathBuf,
}

impl Drop for Setup {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.scratch);
    }
}

fn setup(name: &str) -> Setup {
    let scratch = common::scratch(name);
    std::fs::create_dir_all(&scratch).unwrap();
    let config = scratch.join("config.toml");
    std::fs::write(&config, CONFIG).unwrap();
    let server = common::start(&["--config".as_ref(), config.as_os_str()]);
    let role_arn = common::service_account(&server, "toolbox", "backups-rw");
    let token_file = scratch.join("token");
    common::token(&server, "toolbox", &token_file);
    let env = vec![
        ("AWS_ROLE_ARN".to_owned(), PathBuf::from(role_arn)),
        ("AWS_WEB_IDENTITY_TOKEN_FILE".to_owned(), token_file),
        (
            "AWS_ENDPOINT_URL_STS".to_owned(),
            PathBuf::from(&server.endpoint),
        ),
        (
            "AWS_ENDPOINT_URL_S3".to_owned(),
            PathBuf::from(&server.endpoint),
        ),
        ("HOME".to_owned(), scratch.clone()),
    ];
    Setup {
        server,
        env,
        scratch,
    }
}

impl Setup {
    /// `keyless ARGS` in the pod's environment: no AWS setting but the web identity's.
    fn command(&self, args: &[&OsStr]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_keyless"));
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("AWS_") {
                command.env_remove(name);
            }
        }
        command.env("AWS_EC2_METADATA_DISABLED", "true");
        for (name, value) in &self.env {
            command.env(name, value);
        }
        command.args(args);
        command
    }

    fn run(&self, args: &[&OsStr]) -> Output {
        self.command(args).output().unwrap()
    }

    /// The root user's S3 client, to look behind the tool's back.
    fn root_s3(&self) -> aws_sdk_s3::Client {
        let creds = aws_credential_types::Credentials::from_keys(
            &self.server.key.0,
            &self.server.key.1,
            None,
        );
        let config = aws_sdk_s3::config::Builder::new()
            .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
            .region(aws_sdk_s3::config::Region::new("us-east-1"))
            .credentials_provider(creds)
            .endpoint_url(&self.server.endpoint)
            .force_path_style(true)
            .http_client(aws_smithy_http_client::Builder::new().build_http())
            .build();
        aws_sdk_s3::Client::from_conf(config)
    }
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// `size` bytes that do not repeat within a part (xorshift), written 1 MiB at a time.
fn write_data(path: &Path, size: u64, seed: u64) -> Vec<u8> {
    let mut file = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let mut hasher = Sha256::new();
    let mut state = seed | 1;
    let mut block = vec![0u8; 1 << 20];
    let mut left = size;
    while left > 0 {
        for word in block.chunks_exact_mut(8) {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            word.copy_from_slice(&state.to_le_bytes());
        }
        let n = left.min(block.len() as u64) as usize;
        file.write_all(&block[..n]).unwrap();
        hasher.update(&block[..n]);
        left -= n as u64;
    }
    file.flush().unwrap();
    hasher.finalize().to_vec()
}

fn sha256_file(path: &Path) -> Vec<u8> {
    let mut file = std::fs::File::open(path).unwrap();
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf).unwrap();
        if n == 0 {
            return hasher.finalize().to_vec();
        }
        hasher.update(&buf[..n]);
    }
}

/// Parts of the unfinished uploads in the bucket.
async fn uploaded_parts(s3: &aws_sdk_s3::Client) -> usize {
    let Ok(uploads) = s3.list_multipart_uploads().bucket("backups").send().await else {
        return 0;
    };
    let mut parts = 0;
    for upload in uploads.uploads() {
        if let Ok(out) = s3
            .list_parts()
            .bucket("backups")
            .key(upload.key().unwrap())
            .upload_id(upload.upload_id().unwrap())
            .send()
            .await
        {
            parts += out.parts().len();
        }
    }
    parts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gigabyte_through_web_identity_survives_a_kill_and_checks_out() {
    let setup = setup("backup-big");
    let file = setup
        .scratch
        .join("1764115200_2026_11_26_18.6.0_gitlab_backup.tar");
    let digest = write_data(&file, 1 << 30, 0x5eed);
    let upload: [&OsStr; 6] = [
        "backup".as_ref(),
        "upload".as_ref(),
        file.as_os_str(),
        "s3://backups/gitlab/".as_ref(),
        "--part-size".as_ref(),
        "16MiB".as_ref(),
    ];

    // Killed once a quarter of its 64 parts are in the bucket. Sent through a proxy that holds
    // it to at most 64 MiB/s, so that it cannot finish between two looks at the bucket.
    let s3 = setup.root_s3();
    let first_log = setup.scratch.join("first-upload.log");
    let slow = throttling_proxy(setup.server.endpoint.trim_start_matches("http://")).await;
    let mut child = setup
        .command(&upload)
        .env("AWS_ENDPOINT_URL_S3", &slow)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&first_log).unwrap())
        .spawn()
        .unwrap();
    let mut waited = Duration::ZERO;
    while uploaded_parts(&s3).await < 16 {
        assert!(
            waited < Duration::from_secs(600),
            "the upload made no progress"
        );
        waited += Duration::from_millis(50);
        if let Some(status) = child.try_wait().unwrap() {
            let log = std::fs::read_to_string(&first_log).unwrap_or_default();
            panic!("the upload ended early ({status}):\n{log}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let key = "gitlab/1764115200_2026_11_26_18.6.0_gitlab_backup.tar";
    assert!(
        s3.head_object()
            .bucket("backups")
            .key(key)
            .send()
            .await
            .is_err(),
        "a killed upload must not leave an object"
    );

    // Run again: the parts already there are not sent again.
    let out = setup.run(&upload);
    let log = stderr(&out);
    assert!(out.status.success(), "{log}");
    let reused: u32 = log
        .split(" parts were already there")
        .next()
        .and_then(|head| head.rsplit(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no resume in:\n{log}"));
    assert!(reused >= 16, "{log}");
    let head = s3
        .head_object()
        .bucket("backups")
        .key(key)
        .send()
        .await
        .unwrap();
    assert_eq!(head.content_length(), Some(1 << 30));
    assert!(
        head.e_tag().unwrap().ends_with("-64\""),
        "{:?}",
        head.e_tag()
    );
    assert!(
        uploaded_parts(&s3).await == 0,
        "the resumed upload is the one completed"
    );

    // Download and compare.
    let restored = setup.scratch.join("restored.tar");
    let url = format!("s3://backups/{key}");
    let out = setup.run(&[
        "backup".as_ref(),
        "download".as_ref(),
        url.as_ref(),
        restored.as_os_str(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(sha256_file(&restored), digest);
    std::fs::remove_file(&restored).unwrap();
    std::fs::remove_file(&file).unwrap();

    // One byte flipped on the way (a proxy that corrupts every answer 1 MiB in): the tool's
    // own checksum catches what no TLS-less hop would.
    let proxy = corrupting_proxy(setup.server.endpoint.trim_start_matches("http://")).await;
    let out = setup
        .command(&[
            "backup".as_ref(),
            "download".as_ref(),
            url.as_ref(),
            restored.as_os_str(),
        ])
        .env("AWS_ENDPOINT_URL_S3", &proxy)
        .output()
        .unwrap();
    let log = stderr(&out);
    assert!(!out.status.success(), "{log}");
    assert!(log.contains("does not match its checksum"), "{log}");
    assert!(!restored.exists());
    assert!(!setup.scratch.join("restored.tar.keyless-partial").exists());

    // One byte flipped in the object's sealed blob on the server's disk: the server refuses to
    // hand out what it cannot authenticate, and the download fails loudly, leaving no file
    // that looks complete.
    corrupt_largest_file(&setup.server.dir);
    let out = setup.run(&[
        "backup".as_ref(),
        "download".as_ref(),
        url.as_ref(),
        restored.as_os_str(),
    ]);
    let log = stderr(&out);
    assert!(!out.status.success(), "{log}");
    // The flipped byte opens a 16 MiB range (the blob's middle): the server answers 500
    // before any byte of it is sent.
    assert!(log.contains("InternalError"), "{log}");
    assert!(!restored.exists());
    assert!(!setup.scratch.join("restored.tar.keyless-partial").exists());
}

/// A TCP proxy to `upstream` that flips one byte of what the server sends, 1 MiB into each
/// connection (inside the body of the first answer on it: every answer here is larger).
async fn corrupting_proxy(upstream: &str) -> String {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    const AT: usize = 1 << 20;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let upstream = upstream.to_owned();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let upstream = upstream.clone();
            tokio::spawn(async move {
                let Ok(server) = tokio::net::TcpStream::connect(&upstream).await else {
                    return;
                };
                let (mut client_read, mut client_write) = client.into_split();
                let (mut server_read, mut server_write) = server.into_split();
                let requests = tokio::io::copy(&mut client_read, &mut server_write);
                let answers = async {
                    let mut buf = vec![0u8; 64 << 10];
                    let mut seen = 0usize;
                    loop {
                        let n = server_read.read(&mut buf).await?;
                        if n == 0 {
                            return Ok::<_, std::io::Error>(());
                        }
                        if (seen..seen + n).contains(&AT) {
                            buf[AT - seen] ^= 0x01;
                        }
                        seen += n;
                        client_write.write_all(&buf[..n]).await?;
                    }
                };
                let _ = tokio::join!(requests, answers);
            });
        }
    });
    format!("http://{address}")
}

/// A TCP proxy to `upstream` that lets at most 64 KiB of requests through a millisecond, over
/// all its connections together.
async fn throttling_proxy(upstream: &str) -> String {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let upstream = upstream.to_owned();
    let turn = std::sync::Arc::new(tokio::sync::Mutex::new(()));
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let upstream = upstream.clone();
            let turn = std::sync::Arc::clone(&turn);
            tokio::spawn(async move {
                let Ok(server) = tokio::net::TcpStream::connect(&upstream).await else {
                    return;
                };
                let (mut client_read, mut client_write) = client.into_split();
                let (mut server_read, mut server_write) = server.into_split();
                let requests = async {
                    let mut buf = vec![0u8; 64 << 10];
                    loop {
                        let n = client_read.read(&mut buf).await?;
                        if n == 0 {
                            return server_write.shutdown().await;
                        }
                        {
                            let _turn = turn.lock().await;
                            tokio::time::sleep(Duration::from_millis(1)).await;
                        }
                        server_write.write_all(&buf[..n]).await?;
                    }
                };
                let answers = tokio::io::copy(&mut server_read, &mut client_write);
                let _ = tokio::join!(requests, answers);
            });
        }
    });
    format!("http://{address}")
}

/// Flips a byte in the middle of the largest file under `dir` (the object's blob).
fn corrupt_largest_file(dir: &Path) {
    fn walk(dir: &Path, best: &mut Option<(u64, PathBuf)>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let entry = entry.unwrap();
            let meta = entry.metadata().unwrap();
            if meta.is_dir() {
                walk(&entry.path(), best);
            } else if best.as_ref().is_none_or(|(size, _)| meta.len() > *size) {
                *best = Some((meta.len(), entry.path()));
            }
        }
    }
    let mut best = None;
    walk(dir, &mut best);
    let (size, path) = best.unwrap();
    let mut data = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
        .unwrap();
    use std::io::{Seek as _, SeekFrom};
    data.seek(SeekFrom::Start(size / 2)).unwrap();
    let mut byte = [0u8];
    data.read_exact(&mut byte).unwrap();
    data.seek(SeekFrom::Start(size / 2)).unwrap();
    data.write_all(&[byte[0] ^ 0x40]).unwrap();
}

#[test]
fn stdin_to_stdout_list_and_prune() {
    let setup = setup("backup-stream");
    // 40 MiB from a pipe, in 3 parts of 16 MiB.
    let file = setup.scratch.join("input");
    let digest = write_data(&file, 40 << 20, 7);
    let out = setup
        .command(&[
            "backup".as_ref(),
            "upload".as_ref(),
            "-".as_ref(),
            "s3://backups/daily/".as_ref(),
            "--name".as_ref(),
            "1_gitlab_backup.tar".as_ref(),
        ])
        .stdin(std::fs::File::open(&file).unwrap())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));

    let out = setup.run(&[
        "backup".as_ref(),
        "download".as_ref(),
        "s3://backups/daily/1_gitlab_backup.tar".as_ref(),
        "-".as_ref(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(Sha256::digest(&out.stdout).to_vec(), digest);

    // Two small backups more (single PUTs), then keep the newest two.
    for name in ["2_gitlab_backup.tar", "3_gitlab_backup.tar"] {
        let small = setup.scratch.join(name);
        std::fs::write(&small, name).unwrap();
        let out = setup.run(&[
            "backup".as_ref(),
            "upload".as_ref(),
            small.as_os_str(),
            "s3://backups/daily/".as_ref(),
        ]);
        assert!(out.status.success(), "{}", stderr(&out));
        std::thread::sleep(Duration::from_millis(1100)); // distinct LastModified seconds
    }
    let out = setup.run(&[
        "backup".as_ref(),
        "list".as_ref(),
        "s3://backups/daily/".as_ref(),
    ]);
    let listing = String::from_utf8(out.stdout).unwrap();
    let keys: Vec<&str> = listing
        .lines()
        .map(|l| l.rsplit("s3://backups/daily/").next().unwrap())
        .collect();
    assert_eq!(
        keys,
        [
            "1_gitlab_backup.tar",
            "2_gitlab_backup.tar",
            "3_gitlab_backup.tar"
        ],
        "{listing}"
    );
    let out = setup.run(&[
        "backup".as_ref(),
        "prune".as_ref(),
        "s3://backups/daily/".as_ref(),
        "--keep".as_ref(),
        "2".as_ref(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        "deleted s3://backups/daily/1_gitlab_backup.tar\n"
    );
    let out = setup.run(&[
        "backup".as_ref(),
        "list".as_ref(),
        "--json".as_ref(),
        "s3://backups/daily/".as_ref(),
    ]);
    let listing = String::from_utf8(out.stdout).unwrap();
    assert_eq!(listing.lines().count(), 2, "{listing}");
    let first: serde_json::Value = serde_json::from_str(listing.lines().next().unwrap()).unwrap();
    assert_eq!(first["Key"], "daily/2_gitlab_backup.tar");

    // GitLab's s3cmd.config as the only setting: its endpoint, region and keys.
    let s3cfg = setup.scratch.join("s3cmd.config");
    let host = setup.server.endpoint.trim_start_matches("http://");
    std::fs::write(
        &s3cfg,
        format!(
            "[default]\naccess_key = {}\nsecret_key = {}\nhost_base = {host}\n\
             host_bucket = {host}\nuse_https = False\nbucket_location = us-east-1\n",
            setup.server.key.0, setup.server.key.1
        ),
    )
    .unwrap();
    let mut list = Command::new(env!("CARGO_BIN_EXE_keyless"));
    list.args(["backup", "list", "s3://backups/daily/", "--s3cmd-config"])
        .arg(&s3cfg)
        .env("HOME", &setup.scratch)
        .env("AWS_EC2_METADATA_DISABLED", "true");
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("AWS_") {
            list.env_remove(name);
        }
    }
    let out = list.output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(String::from_utf8(out.stdout).unwrap().lines().count(), 2);

    // A missing object and a bad URL are clear errors.
    let out = setup.run(&[
        "backup".as_ref(),
        "download".as_ref(),
        "s3://backups/daily/nope.tar".as_ref(),
        setup.scratch.join("nope").as_os_str(),
    ]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("s3://backups/daily/nope.tar"),
        "{}",
        stderr(&out)
    );
    let out = setup.run(&["backup".as_ref(), "list".as_ref(), "backups/daily".as_ref()]);
    assert!(
        stderr(&out).contains("is not an s3://BUCKET/KEY URL"),
        "{}",
        stderr(&out)
    );
}
