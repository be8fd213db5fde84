"""Versioning as S3 has it, driven with boto3, awscli and rclone: Put/GetBucketVersioning
(Enabled, Suspended, never back), version ids on PUT, copy and multipart, GET/HEAD/DELETE by
`versionId`, delete markers with their headers (404 on the key, 405 when named), DeleteObjects
with versions, ListObjectVersions with its pagination, and the `*Version*` IAM actions.
"""
import json
import os

import botocore
import pytest

from test_serve_s3 import Server, error_code, server  # noqa: F401
from test_serve_s3cmd_rclone import rclone


@pytest.fixture
def s3(server):
    client = server.client(retries={"max_attempts": 1})
    client.create_bucket(Bucket="bkt")
    return client


def versions_of(s3, **kw):
    out = s3.list_object_versions(Bucket="bkt", **kw)
    return ([(v["Key"], v["VersionId"], v["IsLatest"]) for v in out.get("Versions", [])],
            [(m["Key"], m["VersionId"], m["IsLatest"]) for m in out.get("DeleteMarkers", [])])


@pytest.mark.not_on("moto", "ceph", reason="moto answers no `x-amz-delete-marker` when a delete marker is deleted, "
                   "Ceph 16.2 none on a GET or HEAD of a key whose latest version is one")
@pytest.mark.not_on("garage", reason="Garage 2.5 has no versioning (PutBucketVersioning is NotImplemented)")
def test_versions_markers_and_restores_with_boto3(s3):
    assert "Status" not in s3.get_bucket_versioning(Bucket="bkt")
    s3.put_object(Bucket="bkt", Key="k", Body=b"before")
    assert "VersionId" not in s3.put_object(Bucket="bkt", Key="plain", Body=b"x")
    s3.put_bucket_versioning(Bucket="bkt", VersioningConfiguration={"Status": "Enabled"})
    assert s3.get_bucket_versioning(Bucket="bkt")["Status"] == "Enabled"
    v1 = s3.put_object(Bucket="bkt", Key="k", Body=b"one")["VersionId"]
    v2 = s3.put_object(Bucket="bkt", Key="k", Body=b"two")["VersionId"]
    assert v1 != v2
    got = s3.get_object(Bucket="bkt", Key="k")
    assert got["Body"].read() == b"two" and got["VersionId"] == v2
    assert s3.get_object(Bucket="bkt", Key="k", VersionId=v1)["Body"].read() == b"one"
    assert s3.get_object(Bucket="bkt", Key="k", VersionId="null")["Body"].read() == b"before"
    assert s3.head_object(Bucket="bkt", Key="k", VersionId=v1)["ContentLength"] == 3
    versions, markers = versions_of(s3, Prefix="k")
    assert versions == [("k", v2, True), ("k", v1, False), ("k", "null", False)] and markers == []

    # A delete makes a delete marker: the key is gone, its versions are not.
    deleted = s3.delete_object(Bucket="bkt", Key="k")
    assert deleted["DeleteMarker"] is True
    marker = deleted["VersionId"]
    with pytest.raises(botocore.exceptions.ClientError) as e:
        s3.get_object(Bucket="bkt", Key="k")
    assert error_code(e) == "NoSuchKey"
    headers = e.value.response["ResponseMetadata"]["HTTPHeaders"]
    assert headers["x-amz-delete-marker"] == "true" and headers["x-amz-version-id"] == marker
    with pytest.raises(botocore.exceptions.ClientError) as e:
        s3.head_object(Bucket="bkt", Key="k", VersionId=marker)
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 405
    assert "k" not in [o["Key"] for o in s3.list_objects_v2(Bucket="bkt").get("Contents", [])]
    versions, markers = versions_of(s3, Prefix="k")
    assert markers == [("k", marker, True)] and [v[2] for v in versions] == [False] * 3

    # Deleting the marker restores the key; a copy of an old version onto the key restores it too.
    assert s3.delete_object(Bucket="bkt", Key="k", VersionId=marker)["DeleteMarker"] is True
    assert s3.get_object(Bucket="bkt", Key="k")["Body"].read() == b"two"
    copied = s3.copy_object(Bucket="bkt", Key="k", CopySource={"Bucket": "bkt", "Key": "k", "VersionId": v1})
    assert copied["CopySourceVersionId"] == v1 and copied["VersionId"] not in (v1, v2)
    assert s3.get_object(Bucket="bkt", Key="k")["Body"].read() == b"one"

    # Tagging answers the version it tagged, the latest one when none is named.
    latest = s3.head_object(Bucket="bkt", Key="k")["VersionId"]
    tagged = s3.put_object_tagging(Bucket="bkt", Key="k", Tagging={"TagSet": [{"Key": "a", "Value": "1"}]})
    assert tagged["VersionId"] == latest
    tagged = s3.put_object_tagging(Bucket="bkt", Key="k", VersionId=v2, Tagging={"TagSet": []})
    assert tagged["VersionId"] == v2
    assert s3.get_object_tagging(Bucket="bkt", Key="k")["TagSet"] == [{"Key": "a", "Value": "1"}]

    # Unknown and malformed version ids answer as S3 does.
    with pytest.raises(botocore.exceptions.ClientError) as e:
        s3.get_object(Bucket="bkt", Key="k", VersionId=v2[:16] + "0" * 16)
    assert error_code(e) == "NoSuchVersion"
    with pytest.raises(botocore.exceptions.ClientError) as e:
        s3.get_object(Bucket="bkt", Key="k", VersionId="not a version!")
    assert error_code(e) == "InvalidArgument"

    # DeleteObjects with and without versions.
    out = s3.delete_objects(Bucket="bkt", Delete={"Objects": [
        {"Key": "k", "VersionId": v1}, {"Key": "plain"}]})
    by_key = {d["Key"]: d for d in out["Deleted"]}
    assert by_key["k"]["VersionId"] == v1 and "DeleteMarker" not in by_key["k"]
    assert by_key["plain"]["DeleteMarker"] is True and by_key["plain"]["DeleteMarkerVersionId"]
    with pytest.raises(botocore.exceptions.ClientError) as e:
        s3.get_object(Bucket="bkt", Key="k", VersionId=v1)
    assert error_code(e) == "NoSuchVersion"

    # A bucket with versions left is not empty.
    with pytest.raises(botocore.exceptions.ClientError) as e:
        s3.delete_bucket(Bucket="bkt")
    assert error_code(e) == "BucketNotEmpty"


@pytest.mark.not_on("moto", "ceph", reason="neither answers `x-amz-version-id: null` to a PUT in a suspended bucket")
@pytest.mark.not_on("garage", reason="Garage 2.5 has no versioning (PutBucketVersioning is NotImplemented)")
def test_suspended_versioning_and_what_is_refused(s3):
    s3.put_bucket_versioning(Bucket="bkt", VersioningConfiguration={"Status": "Enabled"})
    kept = s3.put_object(Bucket="bkt", Key="k", Body=b"kept")["VersionId"]
    s3.put_bucket_versioning(Bucket="bkt", VersioningConfiguration={"Status": "Suspended"})
    assert s3.get_bucket_versioning(Bucket="bkt")["Status"] == "Suspended"
    s3.put_object(Bucket="bkt", Key="k", Body=b"null 1")
    # The null version of a bucket with versioning answers `null` as its id.
    assert s3.put_object(Bucket="bkt", Key="k", Body=b"null 2")["VersionId"] == "null"
    versions, _ = versions_of(s3)
    assert versions == [("k", "null", True), ("k", kept, False)]
    got = s3.get_object(Bucket="bkt", Key="k", VersionId="null")
    assert got["Body"].read() == b"null 2" and got["VersionId"] == "null"
    deleted = s3.delete_object(Bucket="bkt", Key="k")
    assert deleted["DeleteMarker"] is True and deleted["VersionId"] == "null"
    # A copy may not name a delete marker as its source.
    with pytest.raises(botocore.exceptions.ClientError) as e:
        s3.copy_object(Bucket="bkt", Key="c", CopySource={"Bucket": "bkt", "Key": "k", "VersionId": "null"})
    assert error_code(e) == "InvalidRequest"
    # MFA Delete needs an MFA device: refused, not ignored; a status is required.
    with pytest.raises(botocore.exceptions.ClientError) as e:
        s3.put_bucket_versioning(Bucket="bkt", VersioningConfiguration={"Status": "Enabled", "MFADelete": "Enabled"})
    assert error_code(e) == "NotImplemented"
    with pytest.raises(botocore.exceptions.ClientError) as e:
        s3.list_object_versions(Bucket="bkt", VersionIdMarker=kept)
    assert error_code(e) == "InvalidArgument"


@pytest.mark.not_on("garage", reason="Garage 2.5 has no versioning (PutBucketVersioning is NotImplemented)")
def test_version_listings_page_with_botos_paginator(s3):
    s3.put_bucket_versioning(Bucket="bkt", VersioningConfiguration={"Status": "Enabled"})
    written = {}
    for key in ["a", "b/1", "b/2", "c d+e"]:
        written[key] = [s3.put_object(Bucket="bkt", Key=key, Body=os.urandom(10))["VersionId"] for _ in range(3)]
    s3.delete_object(Bucket="bkt", Key="a")
    pages = list(s3.get_paginator("list_object_versions").paginate(Bucket="bkt", PaginationConfig={"PageSize": 2}))
    assert len(pages) == 7
    listed = [(v["Key"], v["VersionId"]) for p in pages for v in p.get("Versions", [])]
    assert listed == [(k, v) for k in written for v in reversed(written[k])]
    assert sum(len(p.get("DeleteMarkers", [])) for p in pages) == 1
    rolled = s3.list_object_versions(Bucket="bkt", Delimiter="/")
    assert [p["Prefix"] for p in rolled["CommonPrefixes"]] == ["b/"]


@pytest.mark.not_on("garage", reason="Garage 2.5 has no versioning (PutBucketVersioning is NotImplemented)")
def test_awscli_versions(s3, server, tmp_path):
    server.aws("s3api", "put-bucket-versioning", "--bucket", "bkt",
               "--versioning-configuration", "Status=Enabled")
    assert json.loads(server.aws("s3api", "get-bucket-versioning", "--bucket", "bkt").stdout)["Status"] == "Enabled"
    first = s3.put_object(Bucket="bkt", Key="backup.tar", Body=b"monday")["VersionId"]
    s3.put_object(Bucket="bkt", Key="backup.tar", Body=b"tuesday")
    listed = json.loads(server.aws("s3api", "list-object-versions", "--bucket", "bkt").stdout)
    assert [v["IsLatest"] for v in listed["Versions"]] == [True, False]
    out = str(tmp_path / "monday.tar")
    server.aws("s3api", "get-object", "--bucket", "bkt", "--key", "backup.tar", f"--version-id={first}", out)
    assert open(out, "rb").read() == b"monday"


@pytest.mark.not_on("garage", reason="Garage 2.5 has no versioning (PutBucketVersioning is NotImplemented)")
def test_version_actions_are_their_own_permissions(s3, server):
    s3.put_bucket_versioning(Bucket="bkt", VersioningConfiguration={"Status": "Enabled"})
    old = s3.put_object(Bucket="bkt", Key="k", Body=b"old")["VersionId"]
    s3.put_object(Bucket="bkt", Key="k", Body=b"new")
    server.aws("iam", "create-user", "--user-name", "reader")
    key = json.loads(server.aws("iam", "create-access-key", "--user-name", "reader").stdout)["AccessKey"]
    policy = {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": ["s3:GetObject", "s3:DeleteObject"], "Resource": "arn:aws:s3:::bkt/*"},
        {"Effect": "Allow", "Action": "s3:ListBucket", "Resource": "arn:aws:s3:::bkt"},
    ]}
    server.aws("iam", "put-user-policy", "--user-name", "reader", "--policy-name", "latest-only",
               "--policy-document", json.dumps(policy))
    user = server.user(key["AccessKeyId"], key["SecretAccessKey"])
    assert user.get_object(Bucket="bkt", Key="k")["Body"].read() == b"new"
    for call in (lambda: user.get_object(Bucket="bkt", Key="k", VersionId=old),
                 lambda: user.delete_object(Bucket="bkt", Key="k", VersionId=old),
                 lambda: user.list_object_versions(Bucket="bkt")):
        with pytest.raises(botocore.exceptions.ClientError) as e:
            call()
        assert error_code(e) == "AccessDenied"
    # DeleteObject without a version is allowed: it only adds a delete marker.
    assert user.delete_object(Bucket="bkt", Key="k")["DeleteMarker"] is True
    assert s3.get_object(Bucket="bkt", Key="k", VersionId=old)["Body"].read() == b"old"


@pytest.mark.not_on("garage", reason="Garage 2.5 has no versioning (PutBucketVersioning is NotImplemented)")
def test_rclone_sees_versions(s3, server, tmp_path):
    run = rclone(server)
    s3.put_bucket_versioning(Bucket="bkt", VersioningConfiguration={"Status": "Enabled"})
    src = str(tmp_path / "notes.txt")
    for text in ("first\n", "second\n"):
        with open(src, "w") as f:
            f.write(text)
        run("copyto", src, "kl:bkt/notes.txt")
    assert "Enabled" in run("backend", "versioning", "kl:bkt").stdout
    assert run("lsf", "kl:bkt").stdout.split() == ["notes.txt"]
    with_versions = run("lsf", "--s3-versions", "kl:bkt").stdout.split()
    assert len(with_versions) == 2 and "notes.txt" in with_versions, with_versions
    old = next(name for name in with_versions if name != "notes.txt")
    assert run("cat", "--s3-versions", f"kl:bkt/{old}").stdout == "first\n"
