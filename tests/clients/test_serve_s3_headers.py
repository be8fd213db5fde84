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
