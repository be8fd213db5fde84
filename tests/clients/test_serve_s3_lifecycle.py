"""Bucket lifecycle as S3 has it, driven with boto3 and awscli: Put/Get/DeleteBucketLifecycle-
Configuration with S3's checks and texts, what Keyless does not offer refused (transitions)
rather than ignored, and the rules applied by the server's periodic pass: expired objects under
the rule's prefix deleted, others kept, incomplete multipart uploads aborted; in a versioned
bucket, noncurrent versions expired (keeping the newest ones asked for) and delete markers left
alone removed. The server's clock is moved three days on with libfaketime, then back.
"""
import json
import os
import time

import botocore
import pytest

from test_serve_s3 import Server, error_code, server  # noqa: F401
from test_serve_s3_errors import faketime_library, printed_error

RULES = [
    {
        "ID": "expire-logs",
        "Status": "Enabled",
        "Filter": {"Prefix": "logs/"},
        "Expiration": {"Days": 1},
        "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 1},
    },
    {"ID": "off", "Status": "Disabled", "Filter": {"Prefix": ""}, "Expiration": {"Days": 1}},
]


def test_configurations_are_kept_checked_and_removed(server):
    s3 = server.client()
    s3.create_bucket(Bucket="bkt")
    with pytest.raises(botocore.exceptions.ClientError) as e:
        s3.get_bucket_lifecycle_configuration(Bucket="bkt")
    assert error_code(e) == "NoSuchLifecycleConfiguration"
    s3.put_bucket_lifecycle_configuration(Bucket="bkt", LifecycleConfiguration={"Rules": RULES})
    got = s3.get_bucket_lifecycle_configuration(Bucket="bkt")["Rules"]
    assert [r["ID"] for r in got] == ["expire-logs", "off"]
    assert got[0]["Expiration"] == {"Days": 1}
    assert got[0]["Filter"] == {"Prefix": "logs/"}
    assert got[0]["AbortIncompleteMultipartUpload"] == {"DaysAfterInitiation": 1}
    assert got[1]["Status"] == "Disabled"
    shown = json.loads(server.aws("s3api", "get-bucket-lifecycle-configuration", "--bucket", "bkt").stdout)
    assert shown["Rules"][0]["ID"] == "expire-logs"
    for bad, code in [
        ([{"ID": "a", "Status": "Enabled", "Filter": {}, "Expiration": {"Days": 0}}], "InvalidArgument"),
        ([{"ID": "a", "Status": "Enabled", "Filter": {}}], "InvalidRequest"),
        ([{"ID": "a", "Status": "Enabled", "Filter": {}, "Expiration": {"Days": 1}},
          {"ID": "a", "Status": "Enabled", "Filter": {}, "Expiration": {"Days": 2}}], "InvalidArgument"),
        ([{"ID": "a", "Status": "Enabled", "Filter": {}, "NoncurrentVersionExpiration": {"NoncurrentDays": 0}}],
         "InvalidArgument"),
        ([{"ID": "a", "Status": "Enabled", "Filter": {},
           "Expiration": {"Days": 1, "ExpiredObjectDeleteMarker": True}}], "InvalidArgument"),
        ([{"ID": "a", "Status": "Enabled", "Filter": {}, "Transitions": [{"Days": 30, "StorageClass": "GLACIER"}]}],
         "NotImplemented"),
    ]:
        with pytest.raises(botocore.exceptions.ClientError) as e:
            s3.put_bucket_lifecycle_configuration(Bucket="bkt", LifecycleConfiguration={"Rules": bad})
        assert error_code(e) == code, bad
    # The refused ones changed nothing.
    assert len(s3.get_bucket_lifecycle_configuration(Bucket="bkt")["Rules"]) == 2
    s3.delete_bucket_lifecycle(Bucket="bkt")
    proc = server.aws("s3api", "get-bucket-lifecycle-configuration", "--bucket", "bkt", check=False)
    assert printed_error(proc) == (
        "An error occurred (NoSuchLifecycleConfiguration) when calling the GetBucketLifecycleConfiguration "
        "operation: The lifecycle configuration does not exist"
    )


def faketime_server(keyless_bin, tmp_path):
    """`keyless serve` with a lifecycle pass every second, under libfaketime: the file it
    returns holds the clock's offset (`+3d`)."""
    library = faketime_library()
    if library is None:
        pytest.skip("libfaketime is not installed (apt-get install faketime; scripts/test does)")
    offset = tmp_path / "faketime"
    offset.write_text("+0\n")
    env = dict(os.environ, LD_PRELOAD=library, FAKETIME_TIMESTAMP_FILE=str(offset),
               FAKETIME_CACHE_DURATION="1", FAKETIME_DONT_FAKE_MONOTONIC="1")
    return Server(keyless_bin, tmp_path / "data", extra=["--lifecycle-interval", "1s"], env=env), offset


def test_the_periodic_pass_expires_objects_and_aborts_uploads(keyless_bin, tmp_path):
    server, offset = faketime_server(keyless_bin, tmp_path)
    try:
        s3 = server.client()
        s3.create_bucket(Bucket="bkt")
        for key in ("logs/a", "logs/b", "keep/c"):
            s3.put_object(Bucket="bkt", Key=key, Body=b"x" * 100)
        upload = s3.create_multipart_upload(Bucket="bkt", Key="logs/big")["UploadId"]
        kept_upload = s3.create_multipart_upload(Bucket="bkt", Key="keep/big")["UploadId"]
        s3.put_bucket_lifecycle_configuration(Bucket="bkt", LifecycleConfiguration={"Rules": RULES})
        # A pass now changes nothing: nothing is a day old.
        time.sleep(2.5)
        keys = [o["Key"] for o in s3.list_objects_v2(Bucket="bkt")["Contents"]]
        assert keys == ["keep/c", "logs/a", "logs/b"]
        # Three days on, for a few passes; then back, so that signatures are in time again.
        offset.write_text("+3d\n")
        time.sleep(4)
        offset.write_text("+0\n")
        time.sleep(2)
        keys = [o["Key"] for o in s3.list_objects_v2(Bucket="bkt").get("Contents", [])]
        assert keys == ["keep/c"]
        uploads = [u["UploadId"] for u in s3.list_multipart_uploads(Bucket="bkt").get("Uploads", [])]
        assert uploads == [kept_upload], (uploads, upload)
    finally:
        server.stop()
    log = server.proc.stderr.read()
    assert "lifecycle pass" in log and "expired=2" in log and "aborted=1" in log, log


VERSION_RULES = [
    {"ID": "old-backups", "Status": "Enabled", "Filter": {"Prefix": "backups/"},
     "NoncurrentVersionExpiration": {"NoncurrentDays": 1, "NewerNoncurrentVersions": 1}},
    {"ID": "markers", "Status": "Enabled", "Filter": {"Prefix": "gone/"},
     "Expiration": {"ExpiredObjectDeleteMarker": True},
     "NoncurrentVersionExpiration": {"NoncurrentDays": 1}},
]


def test_the_periodic_pass_expires_noncurrent_versions_and_lone_markers(keyless_bin, tmp_path):
    server, offset = faketime_server(keyless_bin, tmp_path)
    try:
        s3 = server.client()
        s3.create_bucket(Bucket="bkt")
        s3.put_bucket_versioning(Bucket="bkt", VersioningConfiguration={"Status": "Enabled"})
        ids = [s3.put_object(Bucket="bkt", Key="backups/db.tar", Body=str(i).encode())["VersionId"]
               for i in range(4)]
        s3.put_object(Bucket="bkt", Key="gone/x", Body=b"x")
        s3.delete_object(Bucket="bkt", Key="gone/x")
        s3.put_bucket_lifecycle_configuration(Bucket="bkt", LifecycleConfiguration={"Rules": VERSION_RULES})
        got = s3.get_bucket_lifecycle_configuration(Bucket="bkt")["Rules"]
        assert got[0]["NoncurrentVersionExpiration"] == {"NoncurrentDays": 1, "NewerNoncurrentVersions": 1}
        assert got[1]["Expiration"] == {"ExpiredObjectDeleteMarker": True}
        offset.write_text("+3d\n")
        time.sleep(4)
        offset.write_text("+0\n")
        time.sleep(2)
        versions = s3.list_object_versions(Bucket="bkt")
        kept = [v["VersionId"] for v in versions.get("Versions", [])]
        # The current version and the newest noncurrent one; gone/x's version and then its
        # marker, alone, are gone.
        assert kept == [ids[3], ids[2]], versions
        assert "DeleteMarkers" not in versions, versions
    finally:
        server.stop()
    log = server.proc.stderr.read()
    assert "versions_removed=" in log, log
