"""Headers, parts and listings as S3 has them, driven with boto3 and awscli: `Cache-Control`,
`Expires`, `Content-Disposition`, `Content-Language` and `Content-Encoding` stored by PUT,
CreateMultipartUpload and CopyObject (COPY keeps them, REPLACE takes the request's) and
returned on GET and HEAD; the `response-*` overrides (refused on anonymous requests); GET and
HEAD with `partNumber`; GetObjectAttributes; ListObjectsV2 `fetch-owner`, `max-keys=0` and an
empty delimiter; ListBuckets pagination.
"""
import datetime
import json
import urllib.error
import urllib.request

import botocore
import pytest

from test_serve_s3 import error_code, server  # noqa: F401

MIB = 1024 * 1024
EXPIRES = datetime.datetime(2030, 1, 2, 3, 4, 5, tzinfo=datetime.timezone.utc)
STORED = {
    "CacheControl": "max-age=3600, public",
    "ContentDisposition": 'attachment; filename="report.txt"',
    "ContentEncoding": "gzip",
    "ContentLanguage": "de-CH",
}


def status(excinfo):
    return excinfo.value.response["ResponseMetadata"]["HTTPStatusCode"]


@pytest.fixture
def s3(server):
    client = server.client(retries={"max_attempts": 1})
    client.create_bucket(Bucket="bkt")
    return client


def expires_of(response):
    """`Expires` as boto3 gives it: a datetime (older botocore) or the raw `ExpiresString`."""
    return response.get("ExpiresString") or response["ResponseMetadata"]["HTTPHeaders"].get("expires")


def assert_stored(response):
    for name, value in STORED.items():
        assert response.get(name) == value, (name, response.get(name))
    assert expires_of(response) == "Wed, 02 Jan 2030 03:04:05 GMT"


def test_put_stores_the_headers_and_get_and_head_return_them(s3):
    s3.put_object(Bucket="bkt", Key="k", Body=b"hello", ContentType="text/plain", Expires=EXPIRES, **STORED)
    for call in (s3.get_object, s3.head_object):
        got = call(Bucket="bkt", Key="k")
        assert_stored(got)
        assert got["ContentType"] == "text/plain"
    # A ranged GET carries them too.
    assert_stored(s3.get_object(Bucket="bkt", Key="k", Range="bytes=0-1"))
    # An overwrite without them drops them.
    s3.put_object(Bucket="bkt", Key="k", Body=b"bye")
    plain = s3.head_object(Bucket="bkt", Key="k")
    assert "CacheControl" not in plain and "ContentLanguage" not in plain and expires_of(plain) is None


def test_multipart_uploads_give_the_completed_object_their_headers(s3):
    up = s3.create_multipart_upload(Bucket="bkt", Key="mp", Expires=EXPIRES, **STORED)["UploadId"]
    p1 = s3.upload_part(Bucket="bkt", Key="mp", UploadId=up, PartNumber=1, Body=b"a" * 5 * MIB)["ETag"]
    p2 = s3.upload_part(Bucket="bkt", Key="mp", UploadId=up, PartNumber=2, Body=b"tail")["ETag"]
    s3.complete_multipart_upload(Bucket="bkt", Key="mp", UploadId=up, MultipartUpload={"Parts": [
        {"PartNumber": 1, "ETag": p1}, {"PartNumber": 2, "ETag": p2}]})
    assert_stored(s3.head_object(Bucket="bkt", Key="mp"))
    assert_stored(s3.get_object(Bucket="bkt", Key="mp"))


def test_copy_keeps_the_headers_and_replace_takes_the_requests(s3):
    s3.put_object(Bucket="bkt", Key="src", Body=b"hello", Expires=EXPIRES, **STORED)
    s3.copy_object(Bucket="bkt", Key="kept", CopySource={"Bucket": "bkt", "Key": "src"})
    assert_stored(s3.head_object(Bucket="bkt", Key="kept"))
    s3.copy_object(Bucket="bkt", Key="replaced", CopySource={"Bucket": "bkt", "Key": "src"},
                   MetadataDirective="REPLACE", CacheControl="no-store", ContentLanguage="fr")
    replaced = s3.head_object(Bucket="bkt", Key="replaced")
    assert replaced["CacheControl"] == "no-store" and replaced["ContentLanguage"] == "fr"
    assert "ContentDisposition" not in replaced and expires_of(replaced) is None


def test_response_overrides_replace_the_stored_headers(s3):
    s3.put_object(Bucket="bkt", Key="k", Body=b"hello", ContentType="text/plain", **STORED)
    overrides = {
        "ResponseContentType": "image/png",
        "ResponseContentLanguage": "en",
        "ResponseExpires": EXPIRES,
        "ResponseCacheControl": "no-cache",
        "ResponseContentDisposition": "inline",
        "ResponseContentEncoding": "identity",
    }
    for call in (s3.get_object, s3.head_object):
        got = call(Bucket="bkt", Key="k", **overrides)
        assert got["ContentType"] == "image/png"
        assert got["ContentLanguage"] == "en"
        assert got["CacheControl"] == "no-cache"
        assert got["ContentDisposition"] == "inline"
        assert got["ContentEncoding"] == "identity"
        assert expires_of(got) == "Wed, 02 Jan 2030 03:04:05 GMT"
    # One override leaves the other stored headers as they are.
    got = s3.get_object(Bucket="bkt", Key="k", ResponseContentDisposition="inline")
    assert got["ContentDisposition"] == "inline" and got["CacheControl"] == STORED["CacheControl"]
    # A presigned URL carries them: the way a browser is sent a download under another name.
    url = s3.generate_presigned_url("get_object", Params={
        "Bucket": "bkt", "Key": "k", "ResponseContentDisposition": 'attachment; filename="x.bin"'})
    with urllib.request.urlopen(url) as r:
        assert r.headers["Content-Disposition"] == 'attachment; filename="x.bin"'
        assert r.read() == b"hello"


def test_response_overrides_are_refused_on_anonymous_requests(server, s3):
    s3.put_object(Bucket="bkt", Key="k", Body=b"hello", ContentType="text/plain")
    s3.put_bucket_policy(Bucket="bkt", Policy=json.dumps({"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Principal": "*", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::bkt/*"}]}))
    anon = server.anonymous()
    assert anon.get_object(Bucket="bkt", Key="k")["ContentType"] == "text/plain"
    with pytest.raises(botocore.exceptions.ClientError) as e:
        anon.get_object(Bucket="bkt", Key="k", ResponseContentType="text/html")
    assert (status(e), error_code(e)) == (400, "InvalidRequest")
    assert "anonymous" in e.value.response["Error"]["Message"]
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(f"{server.endpoint}/bkt/k?response-content-type=text/html")
    assert e.value.code == 400


def test_awscli_stores_and_returns_the_headers(server, tmp_path):
    src = tmp_path / "page.html"
    src.write_bytes(b"<p>hi</p>")
    server.aws("s3", "mb", "s3://cli")
    server.aws("s3", "cp", str(src), "s3://cli/page.html", "--cache-control", "max-age=60",
               "--content-disposition", "inline", "--content-language", "en-GB",
               "--expires", "2030-01-02T03:04:05Z")
    head = json.loads(server.aws("s3api", "head-object", "--bucket", "cli", "--key", "page.html").stdout)
    assert head["CacheControl"] == "max-age=60"
    assert head["ContentDisposition"] == "inline"
    assert head["ContentLanguage"] == "en-GB"
    assert "2030" in (head.get("ExpiresString") or head.get("Expires") or "")
    out = tmp_path / "out.html"
    got = json.loads(server.aws("s3api", "get-object", "--bucket", "cli", "--key", "page.html",
                                "--response-content-type", "text/plain", str(out)).stdout)
    assert got["ContentType"] == "text/plain" and got["CacheControl"] == "max-age=60"
    assert out.read_bytes() == b"<p>hi</p>"


@pytest.fixture
def multipart(s3):
    """`mp`: parts of 5 MiB of `a`, 5 MiB of `b` and `tail`; `whole`: one PUT."""
    up = s3.create_multipart_upload(Bucket="bkt", Key="mp")["UploadId"]
    parts = []
    for number, body in ((1, b"a" * 5 * MIB), (2, b"b" * 5 * MIB), (3, b"tail")):
        etag = s3.upload_part(Bucket="bkt", Key="mp", UploadId=up, PartNumber=number, Body=body)["ETag"]
        parts.append({"PartNumber": number, "ETag": etag})
    etag = s3.complete_multipart_upload(Bucket="bkt", Key="mp", UploadId=up, MultipartUpload={"Parts": parts})["ETag"]
    s3.put_object(Bucket="bkt", Key="whole", Body=b"hello")
    return etag


@pytest.mark.not_on("ceph", reason="Ceph 16.2 ignores partNumber (it answers the whole object), so its objects read as one part")
def test_get_and_head_with_part_number_answer_the_part(s3, multipart):
    size = 10 * MIB + 4
    got = s3.get_object(Bucket="bkt", Key="mp", PartNumber=2)
    assert got["ResponseMetadata"]["HTTPStatusCode"] == 206
    assert got["ContentRange"] == f"bytes {5 * MIB}-{10 * MIB - 1}/{size}"
    assert got["PartsCount"] == 3 and got["ContentLength"] == 5 * MIB
    assert got["ETag"] == multipart
    assert got["Body"].read() == b"b" * 5 * MIB
    assert s3.get_object(Bucket="bkt", Key="mp", PartNumber=3)["Body"].read() == b"tail"
    head = s3.head_object(Bucket="bkt", Key="mp", PartNumber=3)
    assert head["ResponseMetadata"]["HTTPStatusCode"] == 206
    assert head["ContentLength"] == 4 and head["PartsCount"] == 3
    assert head["ContentRange"] == f"bytes {10 * MIB}-{size - 1}/{size}"
    for call in (s3.get_object, s3.head_object):
        with pytest.raises(botocore.exceptions.ClientError) as e:
            call(Bucket="bkt", Key="mp", PartNumber=4)
        assert status(e) == 416
        if call is s3.get_object:
            assert error_code(e) == "InvalidPartNumber"
            assert e.value.response["Error"]["Message"] == "The requested partnumber is not satisfiable"
    with pytest.raises(botocore.exceptions.ClientError) as e:
        s3.get_object(Bucket="bkt", Key="mp", PartNumber=1, Range="bytes=0-1")
    assert (status(e), error_code(e)) == (400, "InvalidRequest")


def test_part_number_on_an_object_stored_whole(s3, multipart):
    got = s3.get_object(Bucket="bkt", Key="whole", PartNumber=1)
    assert got["Body"].read() == b"hello" and got["ContentLength"] == 5
    assert "PartsCount" not in got
    with pytest.raises(botocore.exceptions.ClientError) as e:
        s3.get_object(Bucket="bkt", Key="whole", PartNumber=2)
    assert (status(e), error_code(e)) == (416, "InvalidPartNumber")


@pytest.mark.not_on("ceph", reason="Ceph 16.2 ignores partNumber (it answers the whole object), so its objects read as one part")
def test_awscli_downloads_a_part(server, s3, multipart, tmp_path):
    out = tmp_path / "part3"
    got = json.loads(server.aws("s3api", "get-object", "--bucket", "bkt", "--key", "mp",
                                "--part-number", "3", str(out)).stdout)
    assert got["PartsCount"] == 3 and out.read_bytes() == b"tail"


@pytest.mark.not_on("ceph", reason="Ceph 16.2 ignores partNumber (it answers the whole object), so its objects read as one part")
def test_get_object_attributes(s3, multipart):
    all_attributes = ["ETag", "ObjectSize", "ObjectParts", "StorageClass", "Checksum"]
    got = s3.get_object_attributes(Bucket="bkt", Key="mp", ObjectAttributes=all_attributes)
    # AWS writes this ETag without quotes; s3s 0.14 always quotes an ETag in XML.
    assert got["ETag"].strip('"') == multipart.strip('"')
    assert got["ObjectSize"] == 10 * MIB + 4
    assert got["StorageClass"] == "STANDARD"
    assert got["ObjectParts"]["TotalPartsCount"] == 3
    assert [(p["PartNumber"], p["Size"]) for p in got["ObjectParts"]["Parts"]] == [
        (1, 5 * MIB), (2, 5 * MIB), (3, 4)]
    page = s3.get_object_attributes(Bucket="bkt", Key="mp", ObjectAttributes=["ObjectParts"],
                                    MaxParts=2)["ObjectParts"]
    assert page["IsTruncated"] and page["NextPartNumberMarker"] == 2
    assert [p["PartNumber"] for p in page["Parts"]] == [1, 2]
    rest = s3.get_object_attributes(Bucket="bkt", Key="mp", ObjectAttributes=["ObjectParts"],
                                    PartNumberMarker=2)["ObjectParts"]
    assert [p["PartNumber"] for p in rest["Parts"]] == [3] and not rest["IsTruncated"]
    # Only what was asked for; an object stored whole has no parts.
    whole = s3.get_object_attributes(Bucket="bkt", Key="whole", ObjectAttributes=["ObjectSize", "ObjectParts"])
    assert whole["ObjectSize"] == 5 and "ETag" not in whole and "ObjectParts" not in whole
    with pytest.raises(botocore.exceptions.ClientError) as e:
        s3.get_object_attributes(Bucket="bkt", Key="absent", ObjectAttributes=["ETag"])
    assert (status(e), error_code(e)) == (404, "NoSuchKey")


@pytest.mark.not_on("moto", reason="moto answers a HEAD of a version that does not exist with the object")
@pytest.mark.not_on("garage", reason="Garage 2.5 has no versioning: it answers 400 to any version id but null")
def test_get_object_attributes_of_a_version(s3, multipart):
    with pytest.raises(botocore.exceptions.ClientError) as e:
        s3.get_object_attributes(Bucket="bkt", Key="whole", ObjectAttributes=["ETag"],
                                 VersionId="3HL4kqtJlcpXroDTDmjVBH40Nrjfkd")
    assert (status(e), error_code(e)) == (404, "NoSuchVersion")
    assert s3.get_object_attributes(Bucket="bkt", Key="whole", ObjectAttributes=["ObjectSize"],
                                    VersionId="null")["ObjectSize"] == 5


@pytest.mark.not_on("ceph", reason="Ceph 16.2 ignores partNumber (it answers the whole object), so its objects read as one part")
def test_awscli_get_object_attributes(server, s3, multipart):
    got = json.loads(server.aws("s3api", "get-object-attributes", "--bucket", "bkt", "--key", "mp",
                                "--object-attributes", "ETag", "ObjectSize", "ObjectParts").stdout)
    assert got["ObjectSize"] == 10 * MIB + 4 and got["ObjectParts"]["TotalPartsCount"] == 3


def test_list_objects_v2_fetch_owner_max_keys_0_and_an_empty_delimiter(s3):
    for key in ("a/1", "a/2", "b"):
        s3.put_object(Bucket="bkt", Key=key, Body=b"x")
    owner = s3.list_buckets()["Owner"]
    listed = s3.list_objects_v2(Bucket="bkt", FetchOwner=True)["Contents"]
    assert [o["Owner"] for o in listed] == [owner] * 3 and owner["ID"]
    assert all("Owner" not in o for o in s3.list_objects_v2(Bucket="bkt")["Contents"])
    # ListObjects (v1) names the owner unasked.
    assert s3.list_objects(Bucket="bkt")["Contents"][0]["Owner"] == owner
    empty = s3.list_objects_v2(Bucket="bkt", MaxKeys=0)
    assert empty["IsTruncated"] is False and empty["KeyCount"] == 0
    assert "Contents" not in empty and "NextContinuationToken" not in empty
    flat = s3.list_objects_v2(Bucket="bkt", Delimiter="")
    assert [o["Key"] for o in flat["Contents"]] == ["a/1", "a/2", "b"] and "CommonPrefixes" not in flat
    assert "Delimiter" not in flat


def test_list_buckets_pages_by_max_buckets_and_filters_by_prefix(s3):
    for name in ("logs-a", "logs-b", "logs-c", "other"):
        s3.create_bucket(Bucket=name)
    first = s3.list_buckets(MaxBuckets=2)
    assert [b["Name"] for b in first["Buckets"]] == ["bkt", "logs-a"]
    token = first["ContinuationToken"]
    second = s3.list_buckets(MaxBuckets=2, ContinuationToken=token)
    assert [b["Name"] for b in second["Buckets"]] == ["logs-b", "logs-c"]
    third = s3.list_buckets(MaxBuckets=2, ContinuationToken=second["ContinuationToken"])
    assert [b["Name"] for b in third["Buckets"]] == ["other"] and "ContinuationToken" not in third
    by_prefix = s3.list_buckets(Prefix="logs-")
    assert [b["Name"] for b in by_prefix["Buckets"]] == ["logs-a", "logs-b", "logs-c"]
    assert by_prefix["Prefix"] == "logs-"
    assert s3.list_buckets(BucketRegion="eu-west-1")["Buckets"] == []
    assert len(s3.list_buckets(BucketRegion="us-east-1")["Buckets"]) == 5
    # Without max-buckets every bucket comes in one page.
    assert len(s3.list_buckets()["Buckets"]) == 5 and "ContinuationToken" not in s3.list_buckets()


def test_awscli_pages_list_buckets(server, s3):
    for name in ("cli-1", "cli-2", "cli-3"):
        s3.create_bucket(Bucket=name)
    # awscli follows the continuation tokens itself: every bucket, one page at a time.
    got = json.loads(server.aws("s3api", "list-buckets", "--page-size", "1").stdout)
    assert [b["Name"] for b in got["Buckets"]] == ["bkt", "cli-1", "cli-2", "cli-3"]
    by_prefix = json.loads(server.aws("s3api", "list-buckets", "--prefix", "cli-", "--page-size", "2").stdout)
    assert [b["Name"] for b in by_prefix["Buckets"]] == ["cli-1", "cli-2", "cli-3"]
