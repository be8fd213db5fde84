"""CORS as S3 has it, so that browser uploads with presigned URLs work: Put/Get/DeleteBucketCors
with boto3 and awscli (S3's checks), preflight `OPTIONS` requests as a browser sends them
(unsigned; allowed or 403 AccessForbidden), and the `Access-Control-*` headers on a presigned PUT
and GET that carry an `Origin`.
"""
import json
import urllib.error
import urllib.request

import botocore
import pytest

from test_serve_s3 import Server, error_code, server  # noqa: F401

RULES = [{
    "ID": "browser-uploads",
    "AllowedOrigins": ["https://*.gitlab.example"],
    "AllowedMethods": ["PUT", "GET"],
    "AllowedHeaders": ["content-type", "x-amz-*"],
    "ExposeHeaders": ["ETag"],
    "MaxAgeSeconds": 3000,
}]


def request(url, method="GET", headers=None, data=None):
    req = urllib.request.Request(url, method=method, headers=headers or {}, data=data)
    try:
        with urllib.request.urlopen(req) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()


def preflight(server, path, origin, method, headers=None):
    asked = {"Origin": origin, "Access-Control-Request-Method": method}
    if headers:
        asked["Access-Control-Request-Headers"] = headers
    return request(server.endpoint + path, "OPTIONS", asked)


def test_rules_are_kept_checked_and_removed(server):
    s3 = server.client()
    s3.create_bucket(Bucket="bkt")
    with pytest.raises(botocore.exceptions.ClientError) as e:
        s3.get_bucket_cors(Bucket="bkt")
    assert error_code(e) == "NoSuchCORSConfiguration"
    s3.put_bucket_cors(Bucket="bkt", CORSConfiguration={"CORSRules": RULES})
    got = s3.get_bucket_cors(Bucket="bkt")["CORSRules"]
    assert got == RULES
    shown = json.loads(server.aws("s3api", "get-bucket-cors", "--bucket", "bkt").stdout)
    assert shown["CORSRules"][0]["ID"] == "browser-uploads"
    for bad in ([{**RULES[0], "AllowedMethods": ["PATCH"]}], [{**RULES[0], "AllowedOrigins": ["https://*.*"]}]):
        with pytest.raises(botocore.exceptions.ClientError) as e:
            s3.put_bucket_cors(Bucket="bkt", CORSConfiguration={"CORSRules": bad})
        assert error_code(e) == "InvalidRequest"
    s3.delete_bucket_cors(Bucket="bkt")
    with pytest.raises(botocore.exceptions.ClientError) as e:
        s3.get_bucket_cors(Bucket="bkt")
    assert error_code(e) == "NoSuchCORSConfiguration"


def test_preflights_and_presigned_uploads_from_a_browser_origin(server):
    s3 = server.client(signature_version="s3v4")
    s3.create_bucket(Bucket="bkt")
    origin = "https://app.gitlab.example"
    # No rules yet: a preflight is refused as S3 refuses it.
    status, _, body = preflight(server, "/bkt/upload.bin", origin, "PUT")
    assert status == 403 and b"<Code>AccessForbidden</Code>" in body and b"CORS is not enabled" in body, body
    s3.put_bucket_cors(Bucket="bkt", CORSConfiguration={"CORSRules": RULES})
    status, headers, body = preflight(server, "/bkt/upload.bin", origin, "PUT", "Content-Type")
    assert status == 200, body
    assert headers["Access-Control-Allow-Origin"] == origin
    assert headers["Access-Control-Allow-Methods"] == "PUT, GET"
    assert headers["Access-Control-Allow-Headers"] == "content-type"
    assert headers["Access-Control-Max-Age"] == "3000"
    assert headers["Access-Control-Allow-Credentials"] == "true"
    assert headers["x-amz-request-id"]
    # Another origin, method or header than the rule allows: refused.
    for args in ((origin.replace("gitlab", "evil"), "PUT"), (origin, "DELETE"), (origin, "PUT", "Authorization")):
        status, headers, body = preflight(server, "/bkt/upload.bin", *args)
        assert status == 403 and b"This CORS request is not allowed" in body, (args, body)
        assert "Access-Control-Allow-Origin" not in headers
    # The upload itself, with a presigned URL, as the browser then sends it.
    url = s3.generate_presigned_url("put_object", Params={"Bucket": "bkt", "Key": "upload.bin"})
    status, headers, _ = request(url, "PUT", {"Origin": origin, "Content-Type": "application/octet-stream"},
                                 data=b"from the browser")
    assert status == 200
    assert headers["Access-Control-Allow-Origin"] == origin
    assert headers["Access-Control-Expose-Headers"] == "ETag"
    url = s3.generate_presigned_url("get_object", Params={"Bucket": "bkt", "Key": "upload.bin"})
    status, headers, body = request(url, headers={"Origin": origin})
    assert (status, body) == (200, b"from the browser")
    assert headers["Access-Control-Allow-Origin"] == origin
    # Without an Origin, no CORS headers.
    status, headers, _ = request(url)
    assert status == 200 and "Access-Control-Allow-Origin" not in headers
