"""`keyless serve` driven by unmodified boto3 and awscli with the root user's static keys.

Each test gets a fresh server on 127.0.0.1:0 with its own data folder.
"""

import base64
import hashlib
import os
import re
import stat
import subprocess
import time
import urllib.error
import urllib.request

import boto3
import botocore
import pytest
from botocore.config import Config

from conftest import REPO  # noqa: F401


class Server:
    def __init__(self, keyless_bin, data_dir, extra=(), env=None):
        self.data_dir = data_dir
        self.proc = subprocess.Popen(
            [keyless_bin, "serve", "--listen", "127.0.0.1:0", "--data-dir", str(data_dir), *extra],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        line = self.proc.stdout.readline()
        match = re.match(r"keyless: S3 endpoint (https?://\S+)", line)
        if not match:
            self.proc.kill()
            raise RuntimeError(f"unexpected first line {line!r}: {self.proc.stderr.read()}")
        self.endpoint = match.group(1)
        self.credentials = data_dir / "root-credentials"
        self.verify = None
        self.gateway = "--upstream" in [str(a) for a in extra]

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()

    def keys(self):
        """The root user's key pair, from the credentials file the server wrote."""
        return dict(
            line.split(" = ", 1)
            for line in self.credentials.read_text().splitlines()
            if " = " in line
        )

    def client(self, **config):
        session = boto3.session.Session()
        keys = self.keys()
        return session.client(
            "s3",
            endpoint_url=self.endpoint,
            region_name="us-east-1",
            aws_access_key_id=keys["aws_access_key_id"],
            aws_secret_access_key=keys["aws_secret_access_key"],
            config=Config(**config),
            verify=self.verify,
        )

    def user(self, key_id, secret):
        return boto3.session.Session().client(
            "s3", endpoint_url=self.endpoint, region_name="us-east-1",
            aws_access_key_id=key_id, aws_secret_access_key=secret, verify=self.verify,
        )

    def anonymous(self):
        return boto3.session.Session().client(
            "s3",
            endpoint_url=self.endpoint,
            region_name="us-east-1",
            config=Config(signature_version=botocore.UNSIGNED),
            verify=self.verify,
        )

    def aws(self, *args, check=True):
        env = dict(os.environ, AWS_SHARED_CREDENTIALS_FILE=str(self.credentials), AWS_DEFAULT_REGION="us-east-1")
        env.pop("AWS_ACCESS_KEY_ID", None)
        env.pop("AWS_SECRET_ACCESS_KEY", None)
        proc = subprocess.run(["aws", "--endpoint-url", self.endpoint, *args], capture_output=True, text=True, env=env)
        if check:
            assert proc.returncode == 0, proc.stderr
        return proc


UPSTREAMS = {"gateway": "moto_upstream", "gateway-ceph": "ceph_upstream", "gateway-garage": "garage_upstream"}


def start_server(request, keyless_bin, tmp_path):
    """A server for the `server` fixture's parameter: the embedded store, or a gateway
    (`keyless serve --upstream`) in front of moto or Ceph RGW, where the same clients must see
    the same S3."""
    if request.param in UPSTREAMS:
        extra, env, _ = request.getfixturevalue(UPSTREAMS[request.param]).serve_args()
        return Server(keyless_bin, tmp_path / "data", extra=extra, env=env)
    return Server(keyless_bin, tmp_path / "data")


@pytest.fixture(params=["embedded", *UPSTREAMS])
def server(request, keyless_bin, tmp_path):
    s = start_server(request, keyless_bin, tmp_path)
    yield s
    s.stop()


def error_code(excinfo):
    return excinfo.value.response["Error"]["Code"]


def test_root_credentials_are_private(server):
    mode = stat.S_IMODE(server.credentials.stat().st_mode)
    assert mode == 0o600


def test_awscli_round_trip(server, tmp_path):
    src = tmp_path / "report.txt"
    src.write_bytes(b"gitlab backup\n" * 1000)
    server.aws("s3", "mb", "s3://gitlab-backups")
    server.aws("s3", "cp", str(src), "s3://gitlab-backups/2026/report one.txt")
    listing = server.aws("s3", "ls", "--recursive", "s3://gitlab-backups").stdout
    assert "2026/report one.txt" in listing
    dst = tmp_path / "back.txt"
    server.aws("s3", "cp", "s3://gitlab-backups/2026/report one.txt", str(dst))
    assert dst.read_bytes() == src.read_bytes()
    server.aws("s3", "rm", "s3://gitlab-backups/2026/report one.txt")
    server.aws("s3", "rb", "s3://gitlab-backups")
    assert "gitlab-backups" not in server.aws("s3", "ls").stdout


def test_objects_metadata_and_ranges(server):
    s3 = server.client()
    s3.create_bucket(Bucket="bkt")
    body = b"0123456789" * 10
    put = s3.put_object(Bucket="bkt", Key="k", Body=body, ContentType="application/x-tar", Metadata={"Owner": "gitlab"})
    assert put["ETag"] == '"%s"' % hashlib.md5(body).hexdigest()
    got = s3.get_object(Bucket="bkt", Key="k")
    assert got["Body"].read() == body
    assert got["ContentType"] == "application/x-tar"
    assert got["Metadata"] == {"owner": "gitlab"}
    part = s3.get_object(Bucket="bkt", Key="k", Range="bytes=10-19")
    assert part["Body"].read() == b"0123456789"
    assert part["ContentRange"] == "bytes 10-19/100"
    assert part["ResponseMetadata"]["HTTPStatusCode"] == 206
    assert s3.get_object(Bucket="bkt", Key="k", Range="bytes=-3")["Body"].read() == b"789"
    with pytest.raises(botocore.exceptions.ClientError) as e:
        s3.get_object(Bucket="bkt", Key="k", Range="bytes=500-")
    assert error_code(e) == "InvalidRange"
    head = s3.head_object(Bucket="bkt", Key="k")
    assert head["ContentLength"] == 100


def test_odd_keys_round_trip_through_listing(server):
    s3 = server.client()
    s3.create_bucket(Bucket="bkt")
    keys = ["../../etc/passwd", "a//b", "with space", "plus+sign", "ünïcödé/日本語", "percent%20literal", "k" * 1024]
    for i, key in enumerate(keys):
        s3.put_object(Bucket="bkt", Key=key, Body=str(i).encode())
    for i, key in enumerate(keys):
        assert s3.get_object(Bucket="bkt", Key=key)["Body"].read() == str(i).encode()
    listed = [o["Key"] for o in s3.list_objects_v2(Bucket="bkt")["Contents"]]
    assert listed == sorted(keys, key=lambda k: k.encode())
    listed_v1 = [o["Key"] for o in s3.list_objects(Bucket="bkt")["Contents"]]
    assert listed_v1 == listed


def test_listing_with_delimiter_and_pages(server):
    s3 = server.client()
    s3.create_bucket(Bucket="bkt")
    for key in ["a/1", "a/2", "a/b/3", "b/1", "c", "d/1", "e"]:
        s3.put_object(Bucket="bkt", Key=key, Body=b"x")
    page = s3.list_objects_v2(Bucket="bkt", Delimiter="/")
    assert [p["Prefix"] for p in page["CommonPrefixes"]] == ["a/", "b/", "d/"]
    assert [o["Key"] for o in page["Contents"]] == ["c", "e"]
    seen = []
    for p in s3.get_paginator("list_objects_v2").paginate(Bucket="bkt", PaginationConfig={"PageSize": 2}):
        assert p["KeyCount"] <= 2
        seen += [o["Key"] for o in p.get("Contents", [])]
    assert seen == ["a/1", "a/2", "a/b/3", "b/1", "c", "d/1", "e"]
    seen_v1 = []
    for p in s3.get_paginator("list_objects").paginate(Bucket="bkt", PaginationConfig={"PageSize": 3}):
        seen_v1 += [o["Key"] for o in p.get("Contents", [])]
    assert seen_v1 == seen
    assert [o["Key"] for o in s3.list_objects_v2(Bucket="bkt", Prefix="a/")["Contents"]] == ["a/1", "a/2", "a/b/3"]
    assert [o["Key"] for o in s3.list_objects_v2(Bucket="bkt", StartAfter="c")["Contents"]] == ["d/1", "e"]


def test_copy_and_delete_many(server):
    s3 = server.client()
    s3.create_bucket(Bucket="bkt")
    s3.put_object(Bucket="bkt", Key="src", Body=b"data", Metadata={"a": "1"})
    s3.copy_object(Bucket="bkt", Key="dst", CopySource={"Bucket": "bkt", "Key": "src"})
    dst = s3.get_object(Bucket="bkt", Key="dst")
    assert dst["Body"].read() == b"data" and dst["Metadata"] == {"a": "1"}
    s3.copy_object(Bucket="bkt", Key="dst2", CopySource="bkt/src", MetadataDirective="REPLACE", Metadata={"b": "2"})
    assert s3.head_object(Bucket="bkt", Key="dst2")["Metadata"] == {"b": "2"}
    out = s3.delete_objects(Bucket="bkt", Delete={"Objects": [{"Key": "src"}, {"Key": "dst"}, {"Key": "never"}]})
    assert sorted(d["Key"] for d in out["Deleted"]) == ["dst", "never", "src"]
    assert [o["Key"] for o in s3.list_objects_v2(Bucket="bkt")["Contents"]] == ["dst2"]


def test_errors_are_s3s(server):
    s3 = server.client()
    s3.create_bucket(Bucket="bkt")
    with pytest.raises(botocore.exceptions.ClientError) as e:
        s3.create_bucket(Bucket="bkt")
    assert error_code(e) == "BucketAlreadyOwnedByYou"
    with pytest.raises(botocore.exceptions.ClientError) as e:
        s3.get_object(Bucket="bkt", Key="missing")
    assert error_code(e) == "NoSuchKey"
    with pytest.raises(botocore.exceptions.ClientError) as e:
        s3.head_object(Bucket="bkt", Key="missing")
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404
    with pytest.raises(botocore.exceptions.ClientError) as e:
        s3.list_objects_v2(Bucket="nope")
    assert error_code(e) == "NoSuchBucket"
    s3.put_object(Bucket="bkt", Key="k", Body=b"x")
    with pytest.raises(botocore.exceptions.ClientError) as e:
        s3.delete_bucket(Bucket="bkt")
    assert error_code(e) == "BucketNotEmpty"
    with pytest.raises(botocore.exceptions.ClientError) as e:
        s3.create_bucket(Bucket="Not_A_Valid_Bucket")
    assert error_code(e) in ("InvalidBucketName",)


def test_wrong_content_md5_stores_nothing(server):
    s3 = server.client(retries={"max_attempts": 1, "mode": "standard"})
    s3.create_bucket(Bucket="bkt")
    s3.put_object(Bucket="bkt", Key="k", Body=b"original")
    wrong = base64.b64encode(hashlib.md5(b"something else").digest()).decode()
    with pytest.raises(botocore.exceptions.ClientError) as e:
        s3.put_object(Bucket="bkt", Key="k", Body=b"replacement", ContentMD5=wrong)
    assert error_code(e) == "BadDigest"
    assert s3.get_object(Bucket="bkt", Key="k")["Body"].read() == b"original"


def test_credentials_are_checked(server):
    good = server.client()
    good.create_bucket(Bucket="bkt")
    keys = server.client()._request_signer._credentials
    unknown = boto3.session.Session().client(
        "s3", endpoint_url=server.endpoint, region_name="us-east-1",
        aws_access_key_id="AKIAUNKNOWNUNKNOWN00", aws_secret_access_key="x" * 40,
    )
    with pytest.raises(botocore.exceptions.ClientError) as e:
        unknown.list_buckets()
    assert error_code(e) == "InvalidAccessKeyId"
    wrong_secret = boto3.session.Session().client(
        "s3", endpoint_url=server.endpoint, region_name="us-east-1",
        aws_access_key_id=keys.access_key, aws_secret_access_key="y" * 40,
    )
    with pytest.raises(botocore.exceptions.ClientError) as e:
        wrong_secret.list_objects_v2(Bucket="bkt")
    assert error_code(e) == "SignatureDoesNotMatch"
    with_token = boto3.session.Session().client(
        "s3", endpoint_url=server.endpoint, region_name="us-east-1",
        aws_access_key_id=keys.access_key, aws_secret_access_key=keys.secret_key, aws_session_token="forged",
    )
    with pytest.raises(botocore.exceptions.ClientError) as e:
        with_token.list_objects_v2(Bucket="bkt")
    assert error_code(e) == "InvalidToken"
    with pytest.raises(botocore.exceptions.ClientError) as e:
        server.anonymous().list_objects_v2(Bucket="bkt")
    assert error_code(e) == "AccessDenied"


def test_presigned_urls(server):
    s3 = server.client(signature_version="s3v4")
    s3.create_bucket(Bucket="bkt")
    s3.put_object(Bucket="bkt", Key="dir/file name.txt", Body=b"presigned")
    url = s3.generate_presigned_url("get_object", Params={"Bucket": "bkt", "Key": "dir/file name.txt"}, ExpiresIn=60)
    assert "X-Amz-Signature=" in url
    assert urllib.request.urlopen(url).read() == b"presigned"
    expired = s3.generate_presigned_url("get_object", Params={"Bucket": "bkt", "Key": "dir/file name.txt"}, ExpiresIn=1)
    time.sleep(2.1)
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(expired)
    assert e.value.code == 403
    tampered = url.replace("dir/file", "dir/other")
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(tampered)
    assert e.value.code == 403
    # awscli's default presign is SigV2, which is verified too.
    sigv2 = server.aws("s3", "presign", "s3://bkt/dir/file name.txt").stdout.strip()
    assert "Signature=" in sigv2 and "X-Amz-" not in sigv2
    assert urllib.request.urlopen(sigv2).read() == b"presigned"


def test_bucket_policy_decides_anonymous_access(server):
    s3 = server.client()
    anon = server.anonymous()
    s3.create_bucket(Bucket="public")
    s3.put_object(Bucket="public", Key="logo.png", Body=b"png")
    with pytest.raises(botocore.exceptions.ClientError) as e:
        anon.get_object(Bucket="public", Key="logo.png")
    assert error_code(e) == "AccessDenied"
    with pytest.raises(botocore.exceptions.ClientError) as e:
        s3.put_bucket_policy(Bucket="public", Policy='{"Statement": [{"Effect": "allow"}]}')
    assert error_code(e) == "MalformedPolicy"
    policy = """{"Version": "2012-10-17", "Statement": [{
        "Sid": "PublicReadFromLoopback", "Effect": "Allow", "Principal": "*",
        "Action": "s3:GetObject", "Resource": "arn:aws:s3:::public/*",
        "Condition": {"IpAddress": {"aws:SourceIp": "127.0.0.0/8"}}}]}"""
    s3.put_bucket_policy(Bucket="public", Policy=policy)
    assert s3.get_bucket_policy(Bucket="public")["Policy"] == policy
    assert anon.get_object(Bucket="public", Key="logo.png")["Body"].read() == b"png"
    with pytest.raises(botocore.exceptions.ClientError) as e:
        anon.put_object(Bucket="public", Key="logo.png", Body=b"defaced")
    assert error_code(e) == "AccessDenied"
    with pytest.raises(botocore.exceptions.ClientError) as e:
        anon.list_objects_v2(Bucket="public")
    assert error_code(e) == "AccessDenied"
    # The condition is what allows: from another address the same policy denies.
    s3.put_bucket_policy(Bucket="public", Policy=policy.replace("127.0.0.0/8", "10.0.0.0/8"))
    with pytest.raises(botocore.exceptions.ClientError) as e:
        anon.get_object(Bucket="public", Key="logo.png")
    assert error_code(e) == "AccessDenied"
    s3.delete_bucket_policy(Bucket="public")
    with pytest.raises(botocore.exceptions.ClientError) as e:
        s3.get_bucket_policy(Bucket="public")
    assert error_code(e) == "NoSuchBucketPolicy"


def test_a_bucket_policy_with_a_duplicate_key_is_refused(server):
    """`"Principal": {"AWS": "111122223333"}, "Principal": "*"` reads as one account and, to a
    JSON library, is anyone."""
    server.client().create_bucket(Bucket="public")
    policy = ('{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":"111122223333"},'
              '"Principal":"*","Action":"s3:GetObject","Resource":"arn:aws:s3:::public/*"}]}')
    proc = server.aws("s3api", "put-bucket-policy", "--bucket", "public", "--policy", policy, check=False)
    assert proc.returncode != 0
    assert proc.stderr.strip() == (
        "An error occurred (MalformedPolicy) when calling the PutBucketPolicy operation: "
        "Statement[0].Principal: duplicate key: a key may appear only once in an object"
    )
    proc = server.aws("s3api", "get-bucket-policy", "--bucket", "public", check=False)
    assert "(NoSuchBucketPolicy)" in proc.stderr


def test_data_survives_a_restart(keyless_bin, tmp_path):
    first = Server(keyless_bin, tmp_path / "data")
    s3 = first.client()
    s3.create_bucket(Bucket="bkt")
    s3.put_object(Bucket="bkt", Key="k", Body=b"kept")
    first.stop()
    second = Server(keyless_bin, tmp_path / "data")
    try:
        assert second.client().get_object(Bucket="bkt", Key="k")["Body"].read() == b"kept"
    finally:
        second.stop()


def test_awscli_multipart_100_mib(server, tmp_path):
    """awscli switches to multipart above 8 MiB: 100 MiB goes up in 13 parts and comes back whole."""
    src = tmp_path / "big.bin"
    with open(src, "wb") as f:
        f.write(os.urandom(100 * 1024 * 1024))
    server.aws("s3", "mb", "s3://big")
    server.aws("s3", "cp", str(src), "s3://big/registry/blob")
    head = server.client().head_object(Bucket="big", Key="registry/blob")
    assert head["ContentLength"] == 100 * 1024 * 1024
    assert head["ETag"].endswith('-13"'), head["ETag"]
    dst = tmp_path / "back.bin"
    server.aws("s3", "cp", "s3://big/registry/blob", str(dst))
    assert hashlib.sha256(dst.read_bytes()).digest() == hashlib.sha256(src.read_bytes()).digest()


def test_boto3_multipart_api(server):
    s3 = server.client()
    s3.create_bucket(Bucket="mpu")
    s3.put_object(Bucket="mpu", Key="source", Body=b"s" * (6 * 1024 * 1024))
    up = s3.create_multipart_upload(Bucket="mpu", Key="assembled", ContentType="application/x-tar", Metadata={"a": "b"})
    uid = up["UploadId"]
    assert [u["UploadId"] for u in s3.list_multipart_uploads(Bucket="mpu")["Uploads"]] == [uid]
    p1 = s3.upload_part_copy(Bucket="mpu", Key="assembled", UploadId=uid, PartNumber=1,
                             CopySource={"Bucket": "mpu", "Key": "source"}, CopySourceRange="bytes=0-5242879")
    p2 = s3.upload_part(Bucket="mpu", Key="assembled", UploadId=uid, PartNumber=2, Body=b"tail")
    parts = s3.list_parts(Bucket="mpu", Key="assembled", UploadId=uid)["Parts"]
    assert [(p["PartNumber"], p["Size"]) for p in parts] == [(1, 5 * 1024 * 1024), (2, 4)]
    with pytest.raises(botocore.exceptions.ClientError) as e:
        s3.complete_multipart_upload(Bucket="mpu", Key="assembled", UploadId=uid, MultipartUpload={"Parts": [
            {"PartNumber": 2, "ETag": p2["ETag"]}, {"PartNumber": 1, "ETag": p1["CopyPartResult"]["ETag"]}]})
    assert error_code(e) == "InvalidPartOrder"
    done = s3.complete_multipart_upload(Bucket="mpu", Key="assembled", UploadId=uid, MultipartUpload={"Parts": [
        {"PartNumber": 1, "ETag": p1["CopyPartResult"]["ETag"]}, {"PartNumber": 2, "ETag": p2["ETag"]}]})
    assert done["ETag"].endswith('-2"')
    got = s3.get_object(Bucket="mpu", Key="assembled")
    assert got["Body"].read() == b"s" * (5 * 1024 * 1024) + b"tail"
    assert got["ContentType"] == "application/x-tar" and got["Metadata"] == {"a": "b"}
    aborted = s3.create_multipart_upload(Bucket="mpu", Key="never")["UploadId"]
    s3.upload_part(Bucket="mpu", Key="never", UploadId=aborted, PartNumber=1, Body=b"x")
    s3.abort_multipart_upload(Bucket="mpu", Key="never", UploadId=aborted)
    with pytest.raises(botocore.exceptions.ClientError) as e:
        s3.list_parts(Bucket="mpu", Key="never", UploadId=aborted)
    assert error_code(e) == "NoSuchUpload"
    assert "Uploads" not in s3.list_multipart_uploads(Bucket="mpu")


def test_anonymous_copies_need_read_access_to_the_source(server):
    s3 = server.client()
    anon = server.anonymous()
    s3.create_bucket(Bucket="dropbox")
    s3.create_bucket(Bucket="secrets")
    s3.put_object(Bucket="secrets", Key="token", Body=b"hunter2")
    s3.put_bucket_policy(Bucket="dropbox", Policy="""{"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Principal": "*", "Action": ["s3:PutObject", "s3:GetObject"],
        "Resource": "arn:aws:s3:::dropbox/*"}]}""")
    anon.put_object(Bucket="dropbox", Key="note", Body=b"hello")
    assert anon.get_object(Bucket="dropbox", Key="note")["Body"].read() == b"hello"
    anon.copy_object(Bucket="dropbox", Key="copy", CopySource={"Bucket": "dropbox", "Key": "note"})
    with pytest.raises(botocore.exceptions.ClientError) as e:
        anon.copy_object(Bucket="dropbox", Key="stolen", CopySource={"Bucket": "secrets", "Key": "token"})
    assert error_code(e) == "AccessDenied"
    up = anon.create_multipart_upload(Bucket="dropbox", Key="stolen2")["UploadId"]
    with pytest.raises(botocore.exceptions.ClientError) as e:
        anon.upload_part_copy(Bucket="dropbox", Key="stolen2", UploadId=up, PartNumber=1,
                              CopySource={"Bucket": "secrets", "Key": "token"})
    assert error_code(e) == "AccessDenied"
    out = anon.delete_objects(Bucket="secrets", Delete={"Objects": [{"Key": "token"}]})
    assert [(e["Key"], e["Code"]) for e in out["Errors"]] == [("token", "AccessDenied")]
    assert s3.get_object(Bucket="secrets", Key="token")["Body"].read() == b"hunter2"


def test_checksums_are_verified(server, tmp_path):
    import zlib
    # botocore retries S3's BadDigest by design (its _retry.json); one attempt is enough here.
    s3 = server.client(retries={"max_attempts": 1, "mode": "standard"})
    s3.create_bucket(Bucket="sums")
    data = b"gitlab artifacts" * 1000
    good = base64.b64encode(zlib.crc32(data).to_bytes(4, "big")).decode()
    s3.put_object(Bucket="sums", Key="ok", Body=data, ChecksumCRC32=good)
    sha = base64.b64encode(hashlib.sha256(data).digest()).decode()
    s3.put_object(Bucket="sums", Key="ok-sha", Body=data, ChecksumSHA256=sha)
    for kwargs, algorithm in [({"ChecksumCRC32": "AAAAAA=="}, "CRC32"),
                              ({"ChecksumSHA256": base64.b64encode(b"x" * 32).decode()}, "SHA256")]:
        with pytest.raises(botocore.exceptions.ClientError) as e:
            s3.put_object(Bucket="sums", Key="bad", Body=data, **kwargs)
        assert error_code(e) == "BadDigest"
        assert algorithm in e.value.response["Error"]["Message"]
    with pytest.raises(botocore.exceptions.ClientError):
        s3.head_object(Bucket="sums", Key="bad")
    # botocore's default: a streaming upload with a CRC32 trailer.
    src = tmp_path / "f"
    src.write_bytes(data)
    s3.upload_file(str(src), "sums", "trailer")
    assert s3.get_object(Bucket="sums", Key="trailer")["Body"].read() == data


def test_sigv2_header_auth_is_verified_and_dated(server):
    """botocore's SigV2 (`signature_version="s3"`) works; a SigV2 request whose date is more
    than 15 minutes off is refused, so a captured one cannot be replayed."""
    import email.utils
    import hmac

    v2 = server.client(signature_version="s3")
    v2.create_bucket(Bucket="v2bkt")
    v2.put_object(Bucket="v2bkt", Key="k", Body=b"sigv2")
    assert v2.get_object(Bucket="v2bkt", Key="k")["Body"].read() == b"sigv2"

    keys = server.keys()

    def get(date):
        to_sign = f"GET\n\n\n{date}\n/v2bkt/k"
        sig = base64.b64encode(hmac.new(keys["aws_secret_access_key"].encode(), to_sign.encode(), "sha1").digest())
        req = urllib.request.Request(server.endpoint + "/v2bkt/k", headers={
            "Date": date, "Authorization": f"AWS {keys['aws_access_key_id']}:{sig.decode()}"})
        return urllib.request.urlopen(req)

    assert get(email.utils.formatdate(usegmt=True)).read() == b"sigv2"
    with pytest.raises(urllib.error.HTTPError) as e:
        get(email.utils.formatdate(time.time() - 20 * 60, usegmt=True))
    assert e.value.code == 403
    assert b"<Code>RequestTimeTooSkewed</Code>" in e.value.read()
