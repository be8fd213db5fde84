"""`keyless serve` driven by Debian's s3cmd and rclone, unmodified, with static keys."""

import filecmp
import os
import shutil
import subprocess

import pytest

from test_serve_s3 import UPSTREAMS, Server, start_server  # noqa: F401
from test_serve_robustness import keys_of

pytestmark = pytest.mark.skipif(
    not (shutil.which("s3cmd") and shutil.which("rclone")),
    reason="s3cmd and rclone come from Debian packages (scripts/test installs them)",
)


@pytest.fixture(params=["embedded", *UPSTREAMS])
def server(request, keyless_bin, tmp_path):
    """Embedded, and in gateway mode in front of moto and Ceph (as test_serve_s3.py's)."""
    s = start_server(request, keyless_bin, tmp_path)
    yield s
    s.stop()


def s3cmd(server, tmp_path):
    keys = keys_of(server)
    host = server.endpoint.removeprefix("http://")
    cfg = tmp_path / "s3cmd.config"
    # GitLab's s3cmd.config, plus the keys and the endpoint.
    cfg.write_text(
        "[default]\n"
        "bucket_location = us-east-1\n"
        f"access_key = {keys['aws_access_key_id']}\n"
        f"secret_key = {keys['aws_secret_access_key']}\n"
        f"host_base = {host}\n"
        f"host_bucket = {host}\n"
        "use_https = False\n"
        "signature_v2 = False\n"
    )

    def run(*args, check=True):
        proc = subprocess.run(["s3cmd", "-c", str(cfg), *args], capture_output=True, text=True, timeout=300)
        if check:
            assert proc.returncode == 0, proc.stdout + proc.stderr
        return proc

    return run


def test_s3cmd_like_gitlabs_backup_job(server, tmp_path):
    run = s3cmd(server, tmp_path)
    small = tmp_path / "small.txt"
    small.write_text("hello from s3cmd\n")
    backup = tmp_path / "1700000000_2026_11_25_17.5.0_gitlab_backup.tar"
    backup.write_bytes(os.urandom(23 * 1024 * 1024))
    run("mb", "s3://gitlab-backups")
    run("put", str(small), "s3://gitlab-backups/small.txt")
    # Multipart, in 5 MiB chunks, as GitLab's backup-utility uploads tarballs.
    run("put", "--multipart-chunk-size-mb=5", str(backup), f"s3://gitlab-backups/{backup.name}")
    listing = run("ls", "s3://gitlab-backups/").stdout
    assert backup.name in listing and "small.txt" in listing
    out = tmp_path / "restored.tar"
    run("get", f"s3://gitlab-backups/{backup.name}", str(out))
    assert filecmp.cmp(out, backup, shallow=False)
    info = run("info", f"s3://gitlab-backups/{backup.name}").stdout
    assert str(backup.stat().st_size) in info
    run("del", "s3://gitlab-backups/small.txt", f"s3://gitlab-backups/{backup.name}")
    run("rb", "s3://gitlab-backups")
    assert "gitlab-backups" not in run("ls").stdout


def test_s3cmd_with_a_wrong_secret_is_refused(server, tmp_path):
    run = s3cmd(server, tmp_path)
    run("mb", "s3://bkt")
    cfg = tmp_path / "s3cmd.config"
    cfg.write_text(cfg.read_text().replace("secret_key = ", "secret_key = x"))
    proc = run("ls", "s3://bkt", check=False)
    assert proc.returncode != 0
    assert "SignatureDoesNotMatch" in proc.stdout + proc.stderr


def rclone(server):
    keys = keys_of(server)
    env = dict(
        os.environ,
        RCLONE_CONFIG_KL_TYPE="s3",
        RCLONE_CONFIG_KL_PROVIDER="Other",
        RCLONE_CONFIG_KL_ACCESS_KEY_ID=keys["aws_access_key_id"],
        RCLONE_CONFIG_KL_SECRET_ACCESS_KEY=keys["aws_secret_access_key"],
        RCLONE_CONFIG_KL_ENDPOINT=server.endpoint,
        RCLONE_CONFIG_KL_REGION="us-east-1",
    )
    # This machine points AWS_CA_BUNDLE at its CA file; rclone's SDK cannot load one into its
    # own transport, and a plain-http endpoint needs none.
    env.pop("AWS_CA_BUNDLE", None)

    def run(*args, check=True):
        proc = subprocess.run(["rclone", "--config", "/dev/null", *args], capture_output=True, text=True, env=env, timeout=300)
        if check:
            assert proc.returncode == 0, proc.stdout + proc.stderr
        return proc

    return run


def test_rclone_sync_and_check(server, tmp_path):
    run = rclone(server)
    src = tmp_path / "src"
    (src / "lfs" / "objects").mkdir(parents=True)
    (src / "lfs" / "objects" / "ab").write_bytes(os.urandom(12 * 1024 * 1024))
    (src / "uploads with space.txt").write_text("upload\n")
    (src / "ünïcödé.txt").write_text("unicode\n")
    run("mkdir", "kl:gitlab-lfs")
    # Multipart above 5 MiB, so the 12 MiB file goes up in parts.
    run("copy", "--s3-upload-cutoff", "5M", "--s3-chunk-size", "5M", str(src), "kl:gitlab-lfs/data")
    listed = sorted(run("lsf", "-R", "--files-only", "kl:gitlab-lfs/data").stdout.splitlines())
    assert listed == sorted(["lfs/objects/ab", "uploads with space.txt", "ünïcödé.txt"])
    run("check", str(src), "kl:gitlab-lfs/data")
    dst = tmp_path / "dst"
    run("copy", "kl:gitlab-lfs/data", str(dst))
    assert filecmp.cmp(src / "lfs" / "objects" / "ab", dst / "lfs" / "objects" / "ab", shallow=False)
    run("delete", "kl:gitlab-lfs/data")
    assert run("lsf", "-R", "kl:gitlab-lfs").stdout.strip() == ""
