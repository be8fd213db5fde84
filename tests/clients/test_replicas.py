"""Replicas: two `keyless serve` processes on one PostgreSQL (`--iam-store`), in gateway mode in
front of one upstream store (moto), behind a real TCP load balancer (Debian's haproxy), as a
Deployment with N replicas runs them.

What one replica is told, the other enforces within a second: IAM users and keys, session
tokens, bucket policies, the root key pair, the OIDC issuer's keys and their rotation. Killing a
replica in the middle of a 1 GiB multipart upload costs the client retries, not the object.
Stopping PostgreSQL mid-traffic costs S3 and STS nothing; IAM changes fail as retryable
ServiceUnavailable, then work again once it is back, with no restart.
"""

import base64
import hashlib
import json
import os
import shutil
import subprocess
import threading
import time
import urllib.request

import boto3
import botocore
import pytest
from botocore.config import Config

from conftest import REPO, free_port
from test_serve_lifecycle import Serve, get, wait_until

PG = REPO / "scripts" / "upstreams" / "postgres"
S3_ALL = json.dumps({"Version": "2012-10-17", "Statement": [
    {"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]})


class Postgres:
    def __init__(self, work):
        if not shutil.which("haproxy"):
            pytest.skip("haproxy is missing: apt-get install haproxy")
        self.dir = work / "pg"
        proc = subprocess.run([str(PG), "start", str(self.dir)], capture_output=True, text=True)
        if proc.returncode == 3:
            pytest.skip("PostgreSQL is missing: apt-get install postgresql-15")
        assert proc.returncode == 0, proc.stderr
        self.url = proc.stdout.strip()

    def run(self, what):
        subprocess.run([str(PG), what, str(self.dir)], check=True, capture_output=True)

    def destroy(self):
        subprocess.run([str(PG), "destroy", str(self.dir)], check=False, capture_output=True)


class Cluster:
    """Replicas A (flags) and B (the same from its configuration file), haproxy in front
    (`self.endpoint`), one PostgreSQL, one moto."""

    def __init__(self, keyless_bin, work, moto):
        self.work, self.bin = work, keyless_bin
        self.pg = Postgres(work)
        self.session_key = work / "session-key"
        self.session_key.write_text(base64.b64encode(os.urandom(32)).decode() + "\n")
        self.session_key.chmod(0o600)
        self.lb_port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.lb_port}"
        self.moto = moto
        self.extra, self.env, self.prefix = moto.serve_args()
        self.a = self.start("a")
        self.b = self.start_from_file("b")
        self.haproxy = None
        self.start_haproxy()

    def start(self, name):
        return Serve(self.bin, self.work / name, self.work / name / "data", env=self.env, extra=[
            *self.extra, "--iam-store", self.pg.url, "--session-key-file", str(self.session_key),
            "--issuer", self.endpoint, "--iam-store-check-interval", "1s"])

    def start_from_file(self, name):
        """A replica given its upstream and database in the configuration file's `[upstream]`
        and `[iam_store]` tables rather than flags."""
        url, prefix = self.extra[self.extra.index("--upstream") + 1], self.prefix
        config = self.work / f"{name}.toml"
        config.write_text(f"""[upstream]
url = "{url}"
bucket_prefix = "{prefix}"

[iam_store]
url = "{self.pg.url}"
check_interval = "1s"
""")
        return Serve(self.bin, self.work / name, self.work / name / "data", env=self.env, extra=[
            "--config", str(config), "--session-key-file", str(self.session_key), "--issuer", self.endpoint])

    def start_haproxy(self):
        cfg = self.work / "haproxy.cfg"
        servers = "\n".join(
            f"  server {n} 127.0.0.1:{s.port} check port {s.admin.rsplit(':', 1)[1]} inter 200ms fall 1 rise 1"
            for n, s in (("a", self.a), ("b", self.b)))
        cfg.write_text(f"""global
  maxconn 2000
defaults
  mode tcp
  timeout connect 1s
  timeout client 120s
  timeout server 120s
  retries 3
  option redispatch
frontend s3
  bind 127.0.0.1:{self.lb_port}
  default_backend replicas
backend replicas
  balance roundrobin
  option httpchk
  http-check send meth GET uri /readyz
{servers}
""")
        self.haproxy_log = open(self.work / "haproxy.log", "w")
        self.haproxy = subprocess.Popen(["haproxy", "-db", "-f", str(cfg)],
                                        stdout=self.haproxy_log, stderr=subprocess.STDOUT)
        wait_until("haproxy listens", lambda: self.try_lb(), timeout=10)

    def try_lb(self):
        try:
            return get(f"127.0.0.1:{self.lb_port}", "/", timeout=1)[0] > 0
        except OSError:
            return False

    def stop(self):
        for s in (self.a, self.b):
            s.kill()
        if self.haproxy:
            self.haproxy.kill()
            self.haproxy.wait()
            self.haproxy_log.close()
        self.pg.destroy()

    def keys(self):
        return self.a.keys()

    def client(self, service, endpoint, key_id=None, secret=None, token=None, **config):
        keys = self.keys()
        return boto3.session.Session().client(
            service, endpoint_url=endpoint, region_name="us-east-1",
            aws_access_key_id=key_id or keys["aws_access_key_id"],
            aws_secret_access_key=secret or keys["aws_secret_access_key"],
            aws_session_token=token, config=Config(**config))


@pytest.fixture
def cluster(keyless_bin, tmp_path, moto_upstream):
    c = Cluster(keyless_bin, tmp_path, moto_upstream)
    yield c
    c.stop()


def error_code(excinfo):
    return error_code_of(excinfo.value)


def error_code_of(e):
    return e.response["Error"]["Code"]


def until(check, timeout, every=0.01):
    """Seconds until `check()` first holds (raises after `timeout`)."""
    start = time.monotonic()
    while True:
        try:
            if check():
                return time.monotonic() - start
        except botocore.exceptions.ClientError:
            pass
        if time.monotonic() - start > timeout:
            raise AssertionError(f"not within {timeout} s")
        time.sleep(every)


def test_replicas_share_the_root_key_and_what_one_is_told_the_other_enforces_within_a_second(cluster):
    a, b = cluster.a, cluster.b
    # One root key pair, created by the first replica, written to both data folders.
    assert a.keys() == b.keys()
    assert (b.data_dir / "oidc-keys.json").read_bytes() == (a.data_dir / "oidc-keys.json").read_bytes()
    iam_a = cluster.client("iam", a.endpoint)
    s3_a = cluster.client("s3", a.endpoint)
    s3_a.create_bucket(Bucket="shared")
    s3_a.put_object(Bucket="shared", Key="k", Body=b"v")

    # A user and key made through A sign requests B accepts, within a second.
    iam_a.create_user(UserName="registry")
    iam_a.put_user_policy(UserName="registry", PolicyName="s3", PolicyDocument=S3_ALL)
    key = iam_a.create_access_key(UserName="registry")["AccessKey"]
    s3_b = cluster.client("s3", b.endpoint, key["AccessKeyId"], key["SecretAccessKey"],
                          retries={"max_attempts": 1})
    took = until(lambda: s3_b.get_object(Bucket="shared", Key="k")["Body"].read() == b"v", timeout=1.0)
    print(f"user made on A signed on B after {took * 1000:.0f} ms")

    # Deleting the key on A revokes it on B within a second.
    iam_a.delete_access_key(UserName="registry", AccessKeyId=key["AccessKeyId"])

    def refused():
        try:
            s3_b.list_buckets()
            return False
        except botocore.exceptions.ClientError as e:
            return e.response["Error"]["Code"] == "InvalidAccessKeyId"
    until(refused, timeout=1.0)

    # A session token from A works on B (the session key is shared; nothing else is needed).
    creds = cluster.client("sts", a.endpoint).get_session_token()["Credentials"]
    sts_b = cluster.client("sts", b.endpoint, creds["AccessKeyId"], creds["SecretAccessKey"],
                           creds["SessionToken"])
    assert sts_b.get_caller_identity()["Arn"].endswith(":root")

    # A bucket policy set through B is enforced by A within a second.
    anonymous_a = boto3.session.Session().client(
        "s3", endpoint_url=a.endpoint, region_name="us-east-1",
        config=Config(signature_version=botocore.UNSIGNED, retries={"max_attempts": 1}))
    with pytest.raises(botocore.exceptions.ClientError) as e:
        anonymous_a.get_object(Bucket="shared", Key="k")
    assert error_code(e) == "AccessDenied"
    cluster.client("s3", b.endpoint).put_bucket_policy(Bucket="shared", Policy=json.dumps({
        "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": "*",
                                                "Action": "s3:GetObject", "Resource": "arn:aws:s3:::shared/*"}]}))
    until(lambda: anonymous_a.get_object(Bucket="shared", Key="k")["Body"].read() == b"v", timeout=1.0)
    assert "shared/*" in s3_a.get_bucket_policy(Bucket="shared")["Policy"]

    # Nothing in PostgreSQL is readable: no user name, no key id, no policy.
    dump = subprocess.run(["psql", cluster.pg.url, "-Atc",
                           "SELECT encode(state, 'escape') FROM keyless_iam; SELECT encode(value, 'escape') FROM keyless_shared"],
                          capture_output=True, text=True, check=True).stdout
    for plain in ("registry", key["AccessKeyId"], cluster.keys()["aws_access_key_id"], "s3:GetObject"):
        assert plain not in dump


def test_the_issuers_keys_are_shared_and_a_rotation_reaches_every_replica(cluster, keyless_bin):
    a, b = cluster.a, cluster.b
    iam = cluster.client("iam", a.endpoint)
    provider = cluster.endpoint.removeprefix("http://")
    iam.create_role(RoleName="ci", AssumeRolePolicyDocument=json.dumps({
        "Version": "2012-10-17", "Statement": [{
            "Effect": "Allow", "Principal": {"Federated": f"arn:aws:iam::000000000000:oidc-provider/{provider}"},
            "Action": "sts:AssumeRoleWithWebIdentity",
            "Condition": {"StringEquals": {f"{provider}:sub": "system:serviceaccount:ci:runner"}}}]}))

    def token(data_dir):
        return subprocess.run([keyless_bin, "token", "--data-dir", str(data_dir), "--namespace", "ci",
                               "--service-account", "runner"],
                              capture_output=True, text=True, check=True).stdout.strip()

    def assume(endpoint, jwt):
        sts = boto3.session.Session().client("sts", endpoint_url=endpoint, region_name="us-east-1",
                                             config=Config(signature_version=botocore.UNSIGNED))
        return sts.assume_role_with_web_identity(RoleArn="arn:aws:iam::000000000000:role/ci",
                                                 RoleSessionName="runner", WebIdentityToken=jwt)
    # A token minted from A's data folder is accepted by B, and through the load balancer.
    jwt = token(a.data_dir)
    assert assume(b.endpoint, jwt)["AssumedRoleUser"]["Arn"].endswith(":assumed-role/ci/runner")
    assert assume(cluster.endpoint, jwt)["AssumedRoleUser"]["Arn"].endswith(":assumed-role/ci/runner")

    def kids(replica):
        return {k["kid"] for k in json.loads(get(f"{replica.host}:{replica.port}", "/.well-known/jwks.json")[1])["keys"]}
    before = kids(a)
    assert kids(b) == before
    out = subprocess.run([keyless_bin, "oidc", "rotate", "--iam-store", cluster.pg.url,
                          "--session-key-file", str(cluster.session_key)],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    took = until(lambda: kids(a) > before and kids(b) > before, timeout=1.0)
    print(f"rotation published by both replicas after {took * 1000:.0f} ms")
    # The new key signs (B's data folder now holds it) and A accepts its tokens.
    new = token(b.data_dir)
    header = json.loads(base64.urlsafe_b64decode(new.split(".")[0] + "=="))
    assert header["kid"] not in before
    assert assume(a.endpoint, new)["AssumedRoleUser"]["Arn"].endswith(":assumed-role/ci/runner")
    # Tokens of the old key still verify until they expire.
    assert assume(a.endpoint, jwt)


def test_killing_a_replica_during_a_1_gib_multipart_upload_loses_nothing(cluster, tmp_path):
    src = tmp_path / "big.bin"
    chunk = os.urandom(1 << 20)
    digest = hashlib.md5()
    with open(src, "wb") as f:
        for i in range(1024):
            block = chunk[i % 7:] + chunk[:i % 7]
            f.write(block)
            digest.update(block)
    cluster.client("s3", cluster.endpoint).create_bucket(Bucket="backups")
    env = dict(os.environ, AWS_ACCESS_KEY_ID=cluster.keys()["aws_access_key_id"],
               AWS_SECRET_ACCESS_KEY=cluster.keys()["aws_secret_access_key"], AWS_DEFAULT_REGION="us-east-1")
    upload = subprocess.Popen(["aws", "--endpoint-url", cluster.endpoint, "s3", "cp", str(src), "s3://backups/big.bin"],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    # Once parts are flowing through both replicas, A dies mid-request.
    wait_until("parts reach the upstream", lambda: any(
        u["Key"] == "big.bin" for u in cluster.moto.client().list_multipart_uploads(
            Bucket=cluster.prefix + "backups").get("Uploads", [])), timeout=60, every=0.2)
    time.sleep(2)
    cluster.a.proc.kill()
    out, err = upload.communicate(timeout=600)
    assert upload.returncode == 0, err
    # A had taken parts before it died (round robin), so the client did retry onto B.
    assert "UploadPart" in cluster.a.log.read_text()
    # The object is whole, read back through the load balancer and from the upstream directly.
    got = cluster.client("s3", cluster.endpoint).get_object(Bucket="backups", Key="big.bin")
    assert got["ContentLength"] == 1 << 30
    back = hashlib.md5()
    for part in iter(lambda: got["Body"].read(8 << 20), b""):
        back.update(part)
    assert back.hexdigest() == digest.hexdigest()
    head = cluster.moto.client().head_object(Bucket=cluster.prefix + "backups", Key="big.bin")
    assert head["ContentLength"] == 1 << 30


def test_postgres_stopped_mid_traffic_costs_s3_nothing_and_iam_writes_fail_cleanly(cluster):
    a, b = cluster.a, cluster.b
    s3 = cluster.client("s3", cluster.endpoint, retries={"max_attempts": 1})
    s3.create_bucket(Bucket="traffic")
    iam_a = cluster.client("iam", a.endpoint, retries={"max_attempts": 1})
    iam_a.create_user(UserName="before")
    until(lambda: cluster.client("iam", b.endpoint).get_user(UserName="before"), timeout=1.0)

    errors, done, count = [], threading.Event(), [0]

    def traffic():
        sts = cluster.client("sts", cluster.endpoint, retries={"max_attempts": 1})
        while not done.is_set():
            try:
                n = count[0]
                s3.put_object(Bucket="traffic", Key=f"k{n % 20}", Body=b"x" * 1024)
                assert s3.get_object(Bucket="traffic", Key=f"k{n % 20}")["Body"].read() == b"x" * 1024
                sts.get_caller_identity()
                count[0] += 1
            except Exception as e:  # every failure counts
                errors.append(repr(e))
    worker = threading.Thread(target=traffic)
    worker.start()
    try:
        time.sleep(1)
        cluster.pg.run("stop")
        time.sleep(1)
        # IAM writes: a retryable 503 with AWS's text, on either replica.
        for iam in (iam_a, cluster.client("iam", b.endpoint, retries={"max_attempts": 1})):
            with pytest.raises(botocore.exceptions.ClientError) as e:
                iam.create_user(UserName="during")
            assert error_code(e) == "ServiceUnavailable"
            assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 503
            assert e.value.response["Error"]["Message"] == "The request has failed due to a temporary failure of the server."
        # IAM reads still answer from the last state.
        assert iam_a.get_user(UserName="before")["User"]["UserName"] == "before"
        # /readyz stays ready (the replica serves) and says what is missing.
        status, body = get(a.admin, "/readyz")
        assert status == 200 and "iam-store: " in body and "PostgreSQL" in body, body
        time.sleep(1)
        cluster.pg.run("start")
        # Back without a restart: writes work again within seconds, and reach the other replica.
        for _ in range(75):
            try:
                iam_a.create_user(UserName="after")
                break
            except botocore.exceptions.ClientError as e:  # only "not yet" may be retried
                assert error_code_of(e) == "ServiceUnavailable", e
                time.sleep(0.2)
        else:
            raise AssertionError("IAM writes never worked again")
        until(lambda: cluster.client("iam", b.endpoint).get_user(UserName="after"), timeout=6)
        time.sleep(0.5)
    finally:
        done.set()
        worker.join()
    assert errors == [], errors[:5]
    assert count[0] > 20, count[0]
    status, body = get(a.admin, "/readyz")
    assert status == 200 and "iam-store" not in body, body
