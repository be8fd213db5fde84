"""Gateway mode (`keyless serve --upstream URL`): Keyless in front of an S3 store it does not own.

The S3 suites (test_serve_s3*.py) run through the gateway already, in front of moto (their
`server` fixture's `gateway` parameter). This file checks what only a gateway has: what the
upstream holds, read back directly with the upstream's own keys; what stays in Keyless (bucket
policies, signatures); the bucket prefix of tenants sharing an upstream account; and how the
gateway answers while its upstream is down.
"""

import base64
import hashlib
import json
import os
import subprocess
import time
import urllib.error
import urllib.request

import botocore
import pytest
from botocore.config import Config

from conftest import MotoUpstream
from test_serve_lifecycle import Serve


def error_code(excinfo):
    return excinfo.value.response["Error"]["Code"]


@pytest.fixture(params=["moto_upstream", "ceph_upstream", "garage_upstream"], ids=["moto", "ceph", "garage"])
def gateway(request, keyless_bin, tmp_path):
    """A gateway in front of moto, and of Ceph RGW; `upstream` is the store behind it."""
    upstream = request.getfixturevalue(request.param)
    extra, env, prefix = upstream.serve_args()
    s = Serve(keyless_bin, tmp_path / "run", tmp_path / "data", extra=extra, env=env)
    s.prefix, s.upstream = prefix, upstream
    yield s
    s.kill()


def readyz(serve):
    try:
        with urllib.request.urlopen(f"http://{serve.admin}/readyz", timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def wait_ready(serve, want, timeout=30, saying=None):
    """/readyz's text once it is ready (`want`) or not, and says `saying` when given."""
    deadline = time.monotonic() + timeout
    while True:
        status, text = readyz(serve)
        if (status == 200) == want and (saying is None or saying in text):
            return text
        assert time.monotonic() < deadline, f"/readyz stayed {status}: {text}"
        time.sleep(0.2)


def test_objects_land_upstream_whole_with_their_metadata(gateway, tmp_path):
    s3 = gateway.client()
    s3.create_bucket(Bucket="registry")
    s3.put_object(Bucket="registry", Key="docker/blob one", Body=b"layer" * 1000,
                  ContentType="application/octet-stream", Metadata={"digest": "sha256:abc"},
                  CacheControl="max-age=60")
    # awscli: a 24 MiB file goes up in parts (the upload id is moto's), and a tree by sync.
    big = tmp_path / "backup.tar"
    big.write_bytes(os.urandom(24 * 1024 * 1024))
    tree = tmp_path / "tree"
    (tree / "a").mkdir(parents=True)
    for name, data in (("a/1.txt", b"one"), ("a/2.txt", b"two"), ("3 + 4.txt", b"three and four")):
        (tree / name).write_bytes(data)
    env = dict(os.environ, AWS_SHARED_CREDENTIALS_FILE=str(gateway.credentials), AWS_DEFAULT_REGION="us-east-1")
    env.pop("AWS_ACCESS_KEY_ID", None)
    env.pop("AWS_SECRET_ACCESS_KEY", None)
    for args in (["s3", "cp", str(big), "s3://registry/backups/backup.tar"],
                 ["s3", "sync", str(tree), "s3://registry/tree"]):
        proc = subprocess.run(["aws", "--endpoint-url", gateway.endpoint, *args], capture_output=True, text=True, env=env)
        assert proc.returncode == 0, proc.stderr

    # Read from the upstream itself, with its own keys: the bytes and metadata Keyless stored.
    direct = gateway.upstream.client()
    bucket = gateway.prefix + "registry"
    got = direct.get_object(Bucket=bucket, Key="docker/blob one")
    assert got["Body"].read() == b"layer" * 1000
    assert got["ContentType"] == "application/octet-stream"
    assert got["Metadata"] == {"digest": "sha256:abc"} and got["CacheControl"] == "max-age=60"
    assert got["ETag"] == '"%s"' % hashlib.md5(b"layer" * 1000).hexdigest()
    whole = direct.get_object(Bucket=bucket, Key="backups/backup.tar")
    assert whole["ETag"].endswith('-3"'), whole["ETag"]
    assert hashlib.sha256(whole["Body"].read()).digest() == hashlib.sha256(big.read_bytes()).digest()
    listed = sorted(o["Key"] for o in direct.list_objects_v2(Bucket=bucket, Prefix="tree/")["Contents"])
    assert listed == ["tree/3 + 4.txt", "tree/a/1.txt", "tree/a/2.txt"]
    assert direct.get_object(Bucket=bucket, Key="tree/3 + 4.txt")["Body"].read() == b"three and four"
    # And the other way: what the upstream has, Keyless serves (ranges too).
    direct.put_object(Bucket=bucket, Key="direct", Body=b"0123456789")
    assert s3.get_object(Bucket="registry", Key="direct", Range="bytes=2-4")["Body"].read() == b"234"


def test_checksums_are_verified_by_keyless_and_sent_upstream_plainly(gateway):
    """boto3 sends its default CRC32 in an aws-chunked trailer; Keyless checks it and sends the
    upstream a plain body of the decoded length. A body that fails its digest never reaches the
    upstream whole, so nothing is stored."""
    s3 = gateway.client()
    s3.create_bucket(Bucket="sums")
    s3.put_object(Bucket="sums", Key="crc", Body=b"checked" * 100)
    s3.put_object(Bucket="sums", Key="sha", Body=b"sha256", ChecksumAlgorithm="SHA256")
    direct = gateway.upstream.client()
    bucket = gateway.prefix + "sums"
    assert direct.get_object(Bucket=bucket, Key="crc")["Body"].read() == b"checked" * 100
    assert direct.get_object(Bucket=bucket, Key="sha")["Body"].read() == b"sha256"
    wrong = base64.b64encode(hashlib.md5(b"something else").digest()).decode()
    with pytest.raises(botocore.exceptions.ClientError) as e:
        s3.put_object(Bucket="sums", Key="bad", Body=b"payload", ContentMD5=wrong)
    assert error_code(e) == "BadDigest"
    with pytest.raises(botocore.exceptions.ClientError) as e:
        direct.head_object(Bucket=bucket, Key="bad")
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404
    # An empty body is checked too, though no byte of it is ever read.
    s3.put_object(Bucket="sums", Key="empty", Body=b"kept")
    with pytest.raises(botocore.exceptions.ClientError) as e:
        s3.put_object(Bucket="sums", Key="empty", Body=b"", ChecksumCRC32="AQIDBA==")
    assert error_code(e) == "BadDigest"
    assert direct.get_object(Bucket=bucket, Key="empty")["Body"].read() == b"kept"


def test_bucket_policies_and_signatures_stay_in_keyless(gateway):
    s3 = gateway.client()
    s3.create_bucket(Bucket="site")
    s3.put_object(Bucket="site", Key="public/index.html", Body=b"<h1>hi</h1>")
    s3.put_object(Bucket="site", Key="private/key", Body=b"secret")
    policy = {"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Principal": "*", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::site/public/*"}]}
    s3.put_bucket_policy(Bucket="site", Policy=json.dumps(policy))
    assert json.loads(s3.get_bucket_policy(Bucket="site")["Policy"]) == policy
    with urllib.request.urlopen(f"{gateway.endpoint}/site/public/index.html", timeout=10) as r:
        assert r.read() == b"<h1>hi</h1>"
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(f"{gateway.endpoint}/site/private/key", timeout=10)
    assert e.value.code == 403
    # A key pair Keyless does not know is refused by Keyless, whatever the upstream would say.
    stranger = gateway.client()
    stranger._request_signer._credentials = botocore.credentials.Credentials(
        gateway.upstream.ACCESS_KEY, gateway.upstream.SECRET_KEY)
    with pytest.raises(botocore.exceptions.ClientError) as e:
        stranger.get_object(Bucket="site", Key="public/index.html")
    assert error_code(e) == "InvalidAccessKeyId"
    # The upstream was never given the policy.
    with pytest.raises(botocore.exceptions.ClientError) as e:
        gateway.upstream.client().get_bucket_policy(Bucket=gateway.prefix + "site")
    # (Garage has no bucket policies at all.)
    assert error_code(e) == ("NotImplemented" if gateway.upstream.REGION == "garage" else "NoSuchBucketPolicy")


def test_tenants_share_one_upstream_account_by_prefix(keyless_bin, tmp_path, moto_upstream):
    tenants = []
    for name in ("team-a-", "team-b-"):
        extra, env, _ = moto_upstream.serve_args(prefix=name)
        tenants.append(Serve(keyless_bin, tmp_path / name, tmp_path / name / "data", extra=extra, env=env))
    try:
        a, b = (t.client() for t in tenants)
        a.create_bucket(Bucket="logs")
        a.put_object(Bucket="logs", Key="k", Body=b"a's")
        b.create_bucket(Bucket="logs")
        assert b.list_objects_v2(Bucket="logs").get("KeyCount") == 0
        assert [x["Name"] for x in a.list_buckets()["Buckets"]] == ["logs"]
        names = [x["Name"] for x in moto_upstream.client().list_buckets()["Buckets"]]
        assert "team-a-logs" in names and "team-b-logs" in names
        assert moto_upstream.client().get_object(Bucket="team-a-logs", Key="k")["Body"].read() == b"a's"
    finally:
        for t in tenants:
            t.kill()


def bytes_read(pid):
    """What the process has read so far, sockets included (/proc/PID/io's `rchar`)."""
    with open(f"/proc/{pid}/io") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("rchar:"))


def test_copies_are_made_upstream(gateway):
    """CopyObject and UploadPartCopy are the upstream's own copies: Keyless checks the source's
    conditions and directives, and no byte of the source passes through it."""
    s3 = gateway.client()
    s3.create_bucket(Bucket="copies")
    data = os.urandom(16 * 1024 * 1024)
    s3.put_object(Bucket="copies", Key="src", Body=data, ContentType="application/x-tar",
                  Metadata={"origin": "backup"})
    etag = s3.head_object(Bucket="copies", Key="src")["ETag"]
    before = bytes_read(gateway.proc.pid)
    copied = s3.copy_object(Bucket="copies", Key="same", CopySource={"Bucket": "copies", "Key": "src"})
    assert copied["CopyObjectResult"]["ETag"] == etag
    s3.copy_object(Bucket="copies", Key="replaced", CopySource="copies/src", MetadataDirective="REPLACE",
                   ContentType="text/plain", Metadata={"origin": "copy"})
    up = s3.create_multipart_upload(Bucket="copies", Key="assembled")["UploadId"]
    parts = []
    for number, span in ((1, f"bytes=0-{5 * 1024 * 1024 - 1}"), (2, f"bytes={5 * 1024 * 1024}-{len(data) - 1}")):
        part = s3.upload_part_copy(Bucket="copies", Key="assembled", UploadId=up, PartNumber=number,
                                   CopySource="copies/src", CopySourceRange=span)
        parts.append({"PartNumber": number, "ETag": part["CopyPartResult"]["ETag"]})
    s3.complete_multipart_upload(Bucket="copies", Key="assembled", UploadId=up, MultipartUpload={"Parts": parts})
    read = bytes_read(gateway.proc.pid) - before
    assert read < 1024 * 1024, f"Keyless read {read} bytes for copies of 16 MiB"

    direct = gateway.upstream.client()
    bucket = gateway.prefix + "copies"
    same = direct.get_object(Bucket=bucket, Key="same")
    assert same["Body"].read() == data
    assert same["ContentType"] == "application/x-tar" and same["Metadata"] == {"origin": "backup"}
    replaced = direct.get_object(Bucket=bucket, Key="replaced")
    assert replaced["Body"].read() == data
    assert replaced["ContentType"] == "text/plain" and replaced["Metadata"] == {"origin": "copy"}
    assert direct.get_object(Bucket=bucket, Key="assembled")["Body"].read() == data
    # A source key that needs encoding in x-amz-copy-source, and tags that go with the copy.
    odd = "dir with space/ü+&=.txt"
    s3.put_object(Bucket="copies", Key=odd, Body=b"odd", Tagging="team=registry")
    s3.copy_object(Bucket="copies", Key="odd-copy", CopySource={"Bucket": "copies", "Key": odd})
    assert direct.get_object(Bucket=bucket, Key="odd-copy")["Body"].read() == b"odd"
    s3.copy_object(Bucket="copies", Key="retagged", CopySource={"Bucket": "copies", "Key": odd},
                   TaggingDirective="REPLACE", Tagging="team=copies")
    if gateway.upstream.TAGS:
        assert s3.get_object_tagging(Bucket="copies", Key="odd-copy")["TagSet"] == [
            {"Key": "team", "Value": "registry"}]
        assert s3.get_object_tagging(Bucket="copies", Key="retagged")["TagSet"] == [
            {"Key": "team", "Value": "copies"}]
    # The source's conditions are Keyless's, with S3's answers.
    with pytest.raises(botocore.exceptions.ClientError) as e:
        s3.copy_object(Bucket="copies", Key="never", CopySource="copies/src", CopySourceIfMatch='"0000"')
    assert error_code(e) == "PreconditionFailed"
    with pytest.raises(botocore.exceptions.ClientError) as e:
        s3.copy_object(Bucket="copies", Key="never", CopySource="copies/absent")
    assert error_code(e) == "NoSuchKey"
    with pytest.raises(botocore.exceptions.ClientError) as e:
        s3.copy_object(Bucket="copies", Key="never", CopySource="no-such-bucket/src")
    assert error_code(e) == "NoSuchBucket"
    up = s3.create_multipart_upload(Bucket="copies", Key="never")["UploadId"]
    with pytest.raises(botocore.exceptions.ClientError) as e:
        s3.upload_part_copy(Bucket="copies", Key="never", UploadId=up, PartNumber=1,
                            CopySource="copies/src", CopySourceRange=f"bytes={len(data)}-{len(data) + 9}")
    assert error_code(e) == "InvalidRange"
    s3.abort_multipart_upload(Bucket="copies", Key="never", UploadId=up)


def test_object_lock_is_refused_as_not_implemented(gateway):
    s3 = gateway.client(retries={"max_attempts": 1})
    s3.create_bucket(Bucket="locked")
    with pytest.raises(botocore.exceptions.ClientError) as e:
        s3.put_object_lock_configuration(Bucket="locked", ObjectLockConfiguration={"ObjectLockEnabled": "Enabled"})
    assert error_code(e) == "NotImplemented"
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 501
    assert e.value.response["Error"]["Message"] == (
        "A header you provided implies functionality that is not implemented")


def test_an_upstream_that_is_down_answers_retryable_503_and_readyz_says_so(keyless_bin, tmp_path):
    upstream = MotoUpstream(tmp_path)
    extra, env, _ = upstream.serve_args()
    serve = Serve(keyless_bin, tmp_path / "run", tmp_path / "data", extra=extra, env=env)
    try:
        wait_ready(serve, True)
        s3 = serve.client(retries={"max_attempts": 1})
        s3.create_bucket(Bucket="bkt")
        s3.put_object(Bucket="bkt", Key="k", Body=b"x")
        upstream.stop()
        started = time.monotonic()
        with pytest.raises(botocore.exceptions.ClientError) as e:
            s3.get_object(Bucket="bkt", Key="k")
        assert error_code(e) == "ServiceUnavailable"
        assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 503
        assert time.monotonic() - started < 5, "a refused connection is answered at once"
        text = wait_ready(serve, False, saying="unavailable")
        assert "upstream store" in text, text
        # The metrics count what the upstream answered, and what it did not.
        from test_metrics import scrape, value
        _, samples = scrape(f"http://{serve.admin}")
        assert value(samples, "keyless_upstream_requests_total", method="PUT", status="2xx") >= 2
        assert value(samples, "keyless_upstream_requests_total", method="GET", status="unreachable") >= 1
        answered = value(samples, "keyless_upstream_request_duration_seconds_count", method="PUT", status="2xx")
        assert answered == value(samples, "keyless_upstream_requests_total", method="PUT", status="2xx")
        # IAM does not need the upstream.
        serve_env = dict(os.environ, AWS_SHARED_CREDENTIALS_FILE=str(serve.credentials), AWS_DEFAULT_REGION="us-east-1")
        serve_env.pop("AWS_ACCESS_KEY_ID", None)
        serve_env.pop("AWS_SECRET_ACCESS_KEY", None)
        proc = subprocess.run(["aws", "--endpoint-url", serve.endpoint, "iam", "create-user", "--user-name", "u"],
                              capture_output=True, text=True, env=serve_env)
        assert proc.returncode == 0, proc.stderr
    finally:
        serve.kill()


def test_a_gateway_starts_unready_without_its_upstream_and_needs_its_keys(keyless_bin, tmp_path):
    dead = f"http://127.0.0.1:{__import__('conftest').free_port()}"
    env = dict(KEYLESS_UPSTREAM_ACCESS_KEY_ID="AKIAEXAMPLE", KEYLESS_UPSTREAM_SECRET_ACCESS_KEY="secret")
    serve = Serve(keyless_bin, tmp_path / "run", tmp_path / "data", extra=["--upstream", dead], env=env)
    try:
        text = wait_ready(serve, False, saying="unavailable")
        assert "upstream store" in text, text
    finally:
        serve.kill()
    clean = {k: v for k, v in os.environ.items() if not k.startswith("KEYLESS_UPSTREAM_")}
    proc = subprocess.run([keyless_bin, "serve", "--listen", "127.0.0.1:0", "--data-dir", str(tmp_path / "d2"),
                           "--upstream", dead], capture_output=True, text=True, env=clean, timeout=30)
    assert proc.returncode != 0
    assert "KEYLESS_UPSTREAM_ACCESS_KEY_ID" in proc.stderr, proc.stderr


def test_an_upstream_refusing_keylesss_key_is_the_gateways_fault(keyless_bin, tmp_path, ceph_upstream):
    """Ceph checks Keyless's upstream key: a wrong one is answered 503 (never the upstream's
    403 SignatureDoesNotMatch, which would tell the client its own request is wrong), and
    /readyz says why."""
    extra, env, _ = ceph_upstream.serve_args()
    env["KEYLESS_UPSTREAM_SECRET_ACCESS_KEY"] = "not-the-secret"
    serve = Serve(keyless_bin, tmp_path / "run", tmp_path / "data", extra=extra, env=env)
    try:
        text = wait_ready(serve, False, saying="refused Keyless's request")
        assert "SignatureDoesNotMatch" in text, text
        s3 = serve.client(retries={"max_attempts": 1})
        with pytest.raises(botocore.exceptions.ClientError) as e:
            s3.list_objects_v2(Bucket="anything")
        assert (error_code(e), e.value.response["ResponseMetadata"]["HTTPStatusCode"]) == ("ServiceUnavailable", 503)
    finally:
        serve.kill()
