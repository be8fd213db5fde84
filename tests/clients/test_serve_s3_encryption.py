"""Encryption at rest (SSE-S3) as S3 has it since 2023, driven with boto3, awscli and s3cmd:
every object sealed with AES-256-GCM under its own data key (the data folder holds no
plaintext: the test greps it), `x-amz-server-side-encryption: AES256` echoed on PUT, GET, HEAD,
copies and multipart, GetBucketEncryption answering the default SSE-S3 rule, KMS refused,
AWS's "deny unencrypted uploads" bucket policy working as written, ranges across parts, and
`keyless encryption rotate` re-wrapping data keys at the next start without touching the data.
"""
import json
import pathlib
import subprocess

import botocore
import pytest

from test_serve_s3 import Server, error_code, server  # noqa: F401
from test_serve_s3cmd_rclone import s3cmd

pytestmark = pytest.mark.embedded_only("Keyless seals objects on its own disk only")

MARKER = b"PLAINTEXT-MARKER-"


def marked(n):
    return MARKER * n


def data_holds_plaintext(data_dir: pathlib.Path) -> bool:
    return any(MARKER in f.read_bytes() for f in data_dir.rglob("*") if f.is_file())


@pytest.fixture
def s3(server):
    client = server.client(retries={"max_attempts": 1})
    client.create_bucket(Bucket="bkt")
    return client


def test_objects_are_sealed_on_disk_and_answered_as_sse_s3(server, s3):
    small, large = marked(10), marked(100_000)
    for key, body in (("small", small), ("large", large)):
        put = s3.put_object(Bucket="bkt", Key=key, Body=body)
        assert put["ServerSideEncryption"] == "AES256"
        got = s3.get_object(Bucket="bkt", Key=key)
        assert got["ServerSideEncryption"] == "AES256"
        assert got["Body"].read() == body
        assert s3.head_object(Bucket="bkt", Key=key)["ServerSideEncryption"] == "AES256"
    # Asked for explicitly, as GitLab's `server_side_encryption: AES256` asks.
    put = s3.put_object(Bucket="bkt", Key="asked", Body=marked(5), ServerSideEncryption="AES256")
    assert put["ServerSideEncryption"] == "AES256"
    copy = s3.copy_object(Bucket="bkt", Key="copy", CopySource={"Bucket": "bkt", "Key": "large"})
    assert copy["ServerSideEncryption"] == "AES256"
    assert s3.get_object(Bucket="bkt", Key="copy")["Body"].read() == large
    assert not data_holds_plaintext(server.data_dir), "plaintext found in the data folder"


def test_multipart_objects_are_sealed_and_ranges_cross_parts(server, s3):
    first, second = marked(5 * 1024 * 1024 // len(MARKER) + 1), marked(4000)
    created = s3.create_multipart_upload(Bucket="bkt", Key="mp")
    assert created["ServerSideEncryption"] == "AES256"
    upload = created["UploadId"]
    parts = []
    for n, body in ((1, first), (2, second)):
        part = s3.upload_part(Bucket="bkt", Key="mp", UploadId=upload, PartNumber=n, Body=body)
        assert part["ServerSideEncryption"] == "AES256"
        parts.append({"PartNumber": n, "ETag": part["ETag"]})
    done = s3.complete_multipart_upload(Bucket="bkt", Key="mp", UploadId=upload, MultipartUpload={"Parts": parts})
    assert done["ServerSideEncryption"] == "AES256"
    whole = first + second
    assert s3.get_object(Bucket="bkt", Key="mp")["Body"].read() == whole
    at = len(first) - 100
    got = s3.get_object(Bucket="bkt", Key="mp", Range=f"bytes={at}-{at + 70_000}")
    assert got["Body"].read() == whole[at:at + 70_001]
    assert not data_holds_plaintext(server.data_dir)


def test_bucket_encryption_answers_the_default_and_refuses_kms(s3):
    rules = s3.get_bucket_encryption(Bucket="bkt")["ServerSideEncryptionConfiguration"]["Rules"]
    assert rules[0]["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"
    s3.put_bucket_encryption(Bucket="bkt", ServerSideEncryptionConfiguration={
        "Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]})
    with pytest.raises(botocore.exceptions.ClientError) as e:
        s3.put_bucket_encryption(Bucket="bkt", ServerSideEncryptionConfiguration={
            "Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms"}}]})
    assert error_code(e) == "NotImplemented"
    s3.delete_bucket_encryption(Bucket="bkt")
    with pytest.raises(botocore.exceptions.ClientError) as e:
        s3.get_bucket_encryption(Bucket="nope")
    assert error_code(e) == "NoSuchBucket"


def test_awss_deny_unencrypted_uploads_policy_works_as_written(server, s3):
    # The bucket policy of the AWS Knowledge Center's "deny unencrypted uploads", as written, with a
    # statement that lets anyone upload otherwise.
    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {"Sid": "AnyoneMayUpload", "Effect": "Allow", "Principal": "*", "Action": "s3:PutObject",
             "Resource": "arn:aws:s3:::bkt/*"},
            {"Sid": "DenyIncorrectEncryptionHeader", "Effect": "Deny", "Principal": "*", "Action": "s3:PutObject",
             "Resource": "arn:aws:s3:::bkt/*",
             "Condition": {"StringNotEquals": {"s3:x-amz-server-side-encryption": "AES256"}}},
            {"Sid": "DenyUnEncryptedObjectUploads", "Effect": "Deny", "Principal": "*", "Action": "s3:PutObject",
             "Resource": "arn:aws:s3:::bkt/*",
             "Condition": {"Null": {"s3:x-amz-server-side-encryption": "true"}}},
        ],
    }
    s3.put_bucket_policy(Bucket="bkt", Policy=json.dumps(policy))
    anonymous = server.anonymous()
    with pytest.raises(botocore.exceptions.ClientError) as e:
        anonymous.put_object(Bucket="bkt", Key="plain", Body=b"x")
    assert error_code(e) == "AccessDenied"
    anonymous.put_object(Bucket="bkt", Key="sealed", Body=b"x", ServerSideEncryption="AES256")
    assert s3.get_object(Bucket="bkt", Key="sealed")["Body"].read() == b"x"


def test_s3cmd_with_server_side_encryption(server, s3, tmp_path):
    run = s3cmd(server, tmp_path)
    source = tmp_path / "backup.tar"
    source.write_bytes(marked(200_000))
    run("put", "--server-side-encryption", str(source), "s3://bkt/backups/backup.tar")
    out = tmp_path / "back.tar"
    run("get", "s3://bkt/backups/backup.tar", str(out))
    assert out.read_bytes() == source.read_bytes()
    assert s3.head_object(Bucket="bkt", Key="backups/backup.tar")["ServerSideEncryption"] == "AES256"
    assert not data_holds_plaintext(server.data_dir)


def test_rotation_rewraps_data_keys_and_leaves_the_data(keyless_bin, tmp_path):
    data = tmp_path / "data"
    server = Server(keyless_bin, data)
    s3 = server.client()
    s3.create_bucket(Bucket="bkt")
    s3.put_object(Bucket="bkt", Key="k", Body=marked(100_000))
    server.stop()
    blobs = {f: f.read_bytes() for f in (data / "objects" / "blobs").rglob("*") if f.is_file()}
    assert (data / "encryption-keys.json").stat().st_mode & 0o777 == 0o600
    old = json.loads((data / "encryption-keys.json").read_text())
    proc = subprocess.run([keyless_bin, "encryption", "rotate", "--data-dir", str(data)],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    rotated = json.loads((data / "encryption-keys.json").read_text())
    assert rotated["active"] != old["active"] and old["active"] in rotated["keys"]
    server = Server(keyless_bin, data)
    server.stop()
    # The start re-wrapped every data key: the new key alone now opens the objects...
    only_new = {"active": rotated["active"], "keys": {rotated["active"]: rotated["keys"][rotated["active"]]}}
    (data / "encryption-keys.json").write_text(json.dumps(only_new))
    server = Server(keyless_bin, data)
    try:
        assert server.client().get_object(Bucket="bkt", Key="k")["Body"].read() == marked(100_000)
    finally:
        server.stop()
    # ...and the data itself was not rewritten.
    assert {f: f.read_bytes() for f in (data / "objects" / "blobs").rglob("*") if f.is_file()} == blobs


def test_sealing_only_what_asks_for_it(keyless_bin, tmp_path):
    """`--encrypt-objects requested`: S3 before 2023. Only writes that ask for SSE-S3 (the
    header, or the bucket's default encryption) are sealed and answered as such; the rest are
    plaintext on disk (for disks that encrypt already), and everything reads back."""
    server = Server(keyless_bin, tmp_path / "data", ["--encrypt-objects", "requested"])
    try:
        s3 = server.client(retries={"max_attempts": 1})
        s3.create_bucket(Bucket="bkt")
        plain = b"CLEAR-" * 20_000
        put = s3.put_object(Bucket="bkt", Key="plain", Body=plain)
        assert "ServerSideEncryption" not in put
        assert "ServerSideEncryption" not in s3.head_object(Bucket="bkt", Key="plain")
        e = pytest.raises(botocore.exceptions.ClientError, s3.get_bucket_encryption, Bucket="bkt")
        assert error_code(e) == "ServerSideEncryptionConfigurationNotFoundError"
        assert any(b"CLEAR-" * 100 in f.read_bytes() for f in server.data_dir.rglob("*") if f.is_file())

        asked = s3.put_object(Bucket="bkt", Key="asked", Body=marked(10_000), ServerSideEncryption="AES256")
        assert asked["ServerSideEncryption"] == "AES256"
        got = s3.get_object(Bucket="bkt", Key="asked")
        assert got["ServerSideEncryption"] == "AES256" and got["Body"].read() == marked(10_000)

        # A bucket default seals every write to it, multipart parts included.
        s3.put_bucket_encryption(Bucket="bkt", ServerSideEncryptionConfiguration={
            "Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]})
        rule = s3.get_bucket_encryption(Bucket="bkt")["ServerSideEncryptionConfiguration"]["Rules"][0]
        assert rule["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"
        assert s3.put_object(Bucket="bkt", Key="default", Body=marked(20))["ServerSideEncryption"] == "AES256"
        created = s3.create_multipart_upload(Bucket="bkt", Key="mp")
        assert created["ServerSideEncryption"] == "AES256"
        part = s3.upload_part(Bucket="bkt", Key="mp", UploadId=created["UploadId"], PartNumber=1,
                              Body=marked(1000))
        assert part["ServerSideEncryption"] == "AES256"
        done = s3.complete_multipart_upload(Bucket="bkt", Key="mp", UploadId=created["UploadId"],
                                            MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": part["ETag"]}]})
        assert done["ServerSideEncryption"] == "AES256"
        assert s3.get_object(Bucket="bkt", Key="mp")["Body"].read() == marked(1000)
        assert not data_holds_plaintext(server.data_dir), "a sealed write left plaintext"

        s3.delete_bucket_encryption(Bucket="bkt")
        assert "ServerSideEncryption" not in s3.put_object(Bucket="bkt", Key="after", Body=b"x")
        assert s3.get_object(Bucket="bkt", Key="plain")["Body"].read() == plain
    finally:
        server.stop()
