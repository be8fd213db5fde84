"""S3's error texts, request ids and presigned-URL limits, as awscli prints them and botocore
parses them: AWS's message for each code, what the server signed for SignatureDoesNotMatch
(botocore's own canonical request and string to sign), one id per request in the headers and
the body, IAM's and STS's ids, URLs presigned for more than a week, malformed signatures, and a
URL presigned with a session's credentials refused once the session expires (the server's clock
moved on with libfaketime).
"""
import glob
import json
import os
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
import xml.etree.ElementTree as ET

import boto3
import botocore
import botocore.auth
import pytest
from botocore.config import Config

from test_serve_s3 import Server, server  # noqa: F401

SIGNATURE_DOES_NOT_MATCH = (
    "The request signature we calculated does not match the signature you provided. "
    "Check your key and signing method."
)
A_WEEK = (
    "X-Amz-Expires must be less than a week (in seconds); that is, "
    "the given X-Amz-Expires must be less than 604800 seconds"
)


def aws_as(server, key_id, secret, *args):
    """awscli with explicit keys (no credentials file), as a user would run it."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(AWS_ACCESS_KEY_ID=key_id, AWS_SECRET_ACCESS_KEY=secret, AWS_DEFAULT_REGION="us-east-1",
               AWS_CONFIG_FILE="/nonexistent", AWS_SHARED_CREDENTIALS_FILE="/nonexistent")
    return subprocess.run(["aws", "--endpoint-url", server.endpoint, *args], capture_output=True, text=True, env=env)


def printed_error(proc):
    """The line awscli prints for a service error."""
    assert proc.returncode != 0, proc.stdout
    lines = [line for line in proc.stderr.splitlines() if line.startswith("An error occurred")]
    assert len(lines) == 1, proc.stderr
    return lines[0]


def fetch(url, method="GET"):
    """Status, headers and body of a plain HTTP request (no signing, no retries)."""
    request = urllib.request.Request(url, method=method)
    try:
        with urllib.request.urlopen(request) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()


def error_fields(body):
    root = ET.fromstring(body)
    assert root.tag == "Error", body
    return {child.tag: child.text or "" for child in root}


def test_awscli_prints_aws_messages(server):
    keys = server.keys()
    key_id, secret = keys["aws_access_key_id"], keys["aws_secret_access_key"]
    server.aws("s3api", "create-bucket", "--bucket", "bkt")
    wrong = aws_as(server, key_id, "x" * 40, "s3api", "list-objects-v2", "--bucket", "bkt")
    assert printed_error(wrong) == (
        "An error occurred (SignatureDoesNotMatch) when calling the ListObjectsV2 operation: "
        + SIGNATURE_DOES_NOT_MATCH
    )
    invalid = server.aws("s3api", "create-bucket", "--bucket", "Not_A_Valid_Bucket", check=False)
    assert printed_error(invalid) == (
        "An error occurred (InvalidBucketName) when calling the CreateBucket operation: "
        "The specified bucket is not valid."
    )
    no_key = server.aws("s3api", "get-object", "--bucket", "bkt", "--key", "missing", "/dev/null", check=False)
    assert printed_error(no_key) == (
        "An error occurred (NoSuchKey) when calling the GetObject operation: The specified key does not exist."
    )
    no_bucket = server.aws("s3api", "list-objects-v2", "--bucket", "nope", check=False)
    assert printed_error(no_bucket) == (
        "An error occurred (NoSuchBucket) when calling the ListObjectsV2 operation: "
        "The specified bucket does not exist"
    )
    denied = server.aws("--no-sign-request", "s3api", "list-objects-v2", "--bucket", "bkt", check=False)
    assert printed_error(denied) == (
        "An error occurred (AccessDenied) when calling the ListObjectsV2 operation: Access Denied"
    )
    unknown = aws_as(server, "AKIAUNKNOWNUNKNOWN00", secret, "s3api", "list-objects-v2", "--bucket", "bkt")
    assert printed_error(unknown) == (
        "An error occurred (InvalidAccessKeyId) when calling the ListObjectsV2 operation: "
        "The AWS Access Key Id you provided does not exist in our records."
    )


def test_botocore_reads_what_the_server_signed(server, monkeypatch):
    server.client().create_bucket(Bucket="bkt")
    signed = []
    canonical_request = botocore.auth.SigV4Auth.canonical_request
    string_to_sign = botocore.auth.SigV4Auth.string_to_sign

    def spy_canonical(self, request):
        text = canonical_request(self, request)
        signed.append(("canonical", text))
        return text

    def spy_string(self, request, canonical):
        text = string_to_sign(self, request, canonical)
        signed.append(("string", text))
        return text

    monkeypatch.setattr(botocore.auth.SigV4Auth, "canonical_request", spy_canonical)
    monkeypatch.setattr(botocore.auth.SigV4Auth, "string_to_sign", spy_string)
    keys = server.keys()
    wrong = boto3.session.Session().client(
        "s3", endpoint_url=server.endpoint, region_name="us-east-1",
        aws_access_key_id=keys["aws_access_key_id"], aws_secret_access_key="y" * 40,
        config=Config(retries={"max_attempts": 1, "mode": "standard"}),
    )
    with pytest.raises(botocore.exceptions.ClientError) as e:
        wrong.list_objects_v2(Bucket="bkt", Prefix="a b/é")
    error = e.value.response["Error"]
    mine = dict(signed[-2:])
    assert set(mine) == {"canonical", "string"}, signed
    assert error["Code"] == "SignatureDoesNotMatch"
    assert error["Message"] == SIGNATURE_DOES_NOT_MATCH
    assert error["AWSAccessKeyId"] == keys["aws_access_key_id"]
    assert error["CanonicalRequest"] == mine["canonical"]
    assert error["StringToSign"] == mine["string"]
    assert error["StringToSignBytes"] == " ".join(f"{b:02x}" for b in mine["string"].encode())
    assert error["CanonicalRequestBytes"] == " ".join(f"{b:02x}" for b in mine["canonical"].encode())
    # Neither the signature sent nor any secret is echoed.
    assert "SignatureProvided" not in error
    assert "y" * 40 not in json.dumps(e.value.response)
    assert keys["aws_secret_access_key"] not in json.dumps(e.value.response)


def test_request_ids_on_s3_responses(server):
    s3 = server.client()
    s3.create_bucket(Bucket="bkt")
    first = s3.list_buckets()["ResponseMetadata"]
    second = s3.list_buckets()["ResponseMetadata"]
    for meta in (first, second):
        assert meta["RequestId"] == meta["HTTPHeaders"]["x-amz-request-id"]
        assert meta["HostId"] == meta["HTTPHeaders"]["x-amz-id-2"]
        assert meta["RequestId"] and meta["HostId"]
    assert first["RequestId"] != second["RequestId"]
    assert first["HostId"] != second["HostId"]
    # Errors: the same id in the headers and the body.
    ids = set()
    for _ in range(2):
        status, headers, body = fetch(f"{server.endpoint}/bkt/k")
        assert status == 403
        fields = error_fields(body)
        assert fields["Code"] == "AccessDenied" and fields["Message"] == "Access Denied"
        assert fields["RequestId"] == headers["x-amz-request-id"]
        assert fields["HostId"] == headers["x-amz-id-2"]
        ids.add(fields["RequestId"])
    assert len(ids) == 2
    with pytest.raises(botocore.exceptions.ClientError) as e:
        s3.get_object(Bucket="bkt", Key="missing")
    meta = e.value.response["ResponseMetadata"]
    assert meta["RequestId"] == meta["HTTPHeaders"]["x-amz-request-id"] not in ids
    assert e.value.response["Error"]["Key"] == "missing"
    # A malformed browser form (refused as it streams in) carries them too.
    request = urllib.request.Request(f"{server.endpoint}/bkt", data=b"--x--", method="POST",
                                     headers={"Content-Type": "multipart/form-data; boundary=x"})
    try:
        urllib.request.urlopen(request)
        raise AssertionError("form POST served")
    except urllib.error.HTTPError as refused:
        assert refused.code == 400
        fields = error_fields(refused.read())
        assert fields["Code"] == "MalformedPOSTRequest"
        assert fields["RequestId"] == refused.headers["x-amz-request-id"]


def test_request_ids_on_iam_and_sts(server):
    keys = server.keys()
    session = boto3.session.Session(aws_access_key_id=keys["aws_access_key_id"],
                                    aws_secret_access_key=keys["aws_secret_access_key"], region_name="us-east-1")
    iam = session.client("iam", endpoint_url=server.endpoint)
    sts = session.client("sts", endpoint_url=server.endpoint)
    seen = set()
    for call in (iam.list_users, iam.list_users, sts.get_caller_identity, sts.get_caller_identity):
        meta = call()["ResponseMetadata"]
        # botocore reads RequestId from the body's <ResponseMetadata>.
        assert meta["RequestId"] == meta["HTTPHeaders"]["x-amzn-requestid"]
        seen.add(meta["RequestId"])
    assert len(seen) == 4
    with pytest.raises(botocore.exceptions.ClientError) as e:
        iam.get_user(UserName="nobody")
    meta = e.value.response["ResponseMetadata"]
    assert e.value.response["Error"]["Code"] == "NoSuchEntity"
    assert meta["RequestId"] == meta["HTTPHeaders"]["x-amzn-requestid"] not in seen


def with_query(url, **changes):
    parts = urllib.parse.urlsplit(url)
    query = urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
    query = [(k, changes.pop(k, v)) for k, v in query]
    assert not changes, changes
    return urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(query, safe="/")))


def test_presigned_url_limits(server):
    s3 = server.client(signature_version="s3v4")
    s3.create_bucket(Bucket="bkt")
    s3.put_object(Bucket="bkt", Key="k", Body=b"presigned")
    week = s3.generate_presigned_url("get_object", Params={"Bucket": "bkt", "Key": "k"}, ExpiresIn=604800)
    assert fetch(week)[0] == 200
    year = s3.generate_presigned_url("get_object", Params={"Bucket": "bkt", "Key": "k"}, ExpiresIn=31536000)
    assert "X-Amz-Expires=31536000" in year
    status, headers, body = fetch(year)
    assert status == 400
    fields = error_fields(body)
    assert (fields["Code"], fields["Message"]) == ("AuthorizationQueryParametersError", A_WEEK)
    assert fields["RequestId"] == headers["x-amz-request-id"]
    # S3's texts for an expiry that is not a positive number.
    url = s3.generate_presigned_url("get_object", Params={"Bucket": "bkt", "Key": "k"}, ExpiresIn=60)
    for expires, status, code, message in [
        ("-1", 400, "AuthorizationQueryParametersError", "X-Amz-Expires must be non-negative"),
        ("soon", 400, "AuthorizationQueryParametersError", "X-Amz-Expires should be a number"),
        ("0", 403, "AccessDenied", "Request has expired"),
    ]:
        got_status, _, body = fetch(with_query(url, **{"X-Amz-Expires": expires}))
        fields = error_fields(body)
        assert (got_status, fields["Code"], fields["Message"]) == (status, code, message), expires
    # A signature that cannot be one does not match, and the body says what the server signed.
    signature = urllib.parse.parse_qs(urllib.parse.urlsplit(url).query)["X-Amz-Signature"][0]
    status, _, body = fetch(with_query(url, **{"X-Amz-Signature": "deadbeef"}))
    assert status == 403
    fields = error_fields(body)
    assert (fields["Code"], fields["Message"]) == ("SignatureDoesNotMatch", SIGNATURE_DOES_NOT_MATCH)
    assert fields["CanonicalRequest"].startswith("GET\n/bkt/k\nX-Amz-Algorithm=AWS4-HMAC-SHA256&")
    assert fields["CanonicalRequest"].endswith("\nhost\nUNSIGNED-PAYLOAD")
    assert fields["StringToSign"].startswith("AWS4-HMAC-SHA256\n")
    assert "deadbeef" not in body.decode() and signature not in body.decode()
    # A real signature for another key does not match either (s3s's own check).
    status, _, body = fetch(url.replace("/bkt/k?", "/bkt/other?"))
    assert status == 403 and error_fields(body)["Code"] == "SignatureDoesNotMatch"
    assert fetch(url)[0] == 200


def faketime_library():
    found = sorted(glob.glob("/usr/lib/*/faketime/libfaketimeMT.so.1") + glob.glob("/usr/lib/faketime/libfaketimeMT.so.1"))
    return found[0] if found else None


def test_presigned_url_dies_with_its_session(keyless_bin, tmp_path):
    """A URL presigned for an hour with a 15-minute session is served while the session lives
    and refused with ExpiredToken once it has expired (as S3 does), not before: the server's
    clock is moved 16 minutes on with libfaketime (the `faketime` Debian package)."""
    library = faketime_library()
    if library is None:
        pytest.skip("libfaketime is not installed (apt-get install faketime; scripts/test does)")
    offset = tmp_path / "faketime"
    offset.write_text("+0\n")
    env = dict(os.environ, LD_PRELOAD=library, FAKETIME_TIMESTAMP_FILE=str(offset),
               FAKETIME_CACHE_DURATION="1", FAKETIME_DONT_FAKE_MONOTONIC="1")
    server = Server(keyless_bin, tmp_path / "data", env=env)
    try:
        root = server.client(signature_version="s3v4")
        root.create_bucket(Bucket="bkt")
        root.put_object(Bucket="bkt", Key="k", Body=b"for a while")
        server.aws("iam", "create-user", "--user-name", "alice")
        server.aws("iam", "put-user-policy", "--user-name", "alice", "--policy-name", "read",
                   "--policy-document", json.dumps({"Version": "2012-10-17", "Statement": [
                       {"Effect": "Allow", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::bkt/*"}]}))
        key = json.loads(server.aws("iam", "create-access-key", "--user-name", "alice").stdout)["AccessKey"]
        creds = boto3.session.Session().client(
            "sts", endpoint_url=server.endpoint, region_name="us-east-1",
            aws_access_key_id=key["AccessKeyId"], aws_secret_access_key=key["SecretAccessKey"],
        ).get_session_token(DurationSeconds=900)["Credentials"]
        temporary = boto3.session.Session().client(
            "s3", endpoint_url=server.endpoint, region_name="us-east-1",
            aws_access_key_id=creds["AccessKeyId"], aws_secret_access_key=creds["SecretAccessKey"],
            aws_session_token=creds["SessionToken"], config=Config(signature_version="s3v4"),
        )
        params = {"Bucket": "bkt", "Key": "k"}
        # Longer than the session: S3 signs it and serves it while the session lives.
        url = temporary.generate_presigned_url("get_object", Params=params, ExpiresIn=3600)
        assert "X-Amz-Security-Token=" in url
        assert fetch(url)[:1] == (200,)
        assert fetch(url)[2] == b"for a while"
        long_term = root.generate_presigned_url("get_object", Params=params, ExpiresIn=3600)
        offset.write_text("+960\n")  # 16 minutes on: the session is over, the URLs are not
        time.sleep(2.5)
        status, _, body = fetch(url)
        fields = error_fields(body)
        assert (status, fields["Code"], fields["Message"]) == (400, "ExpiredToken", "The provided token has expired.")
        assert creds["SessionToken"] not in body.decode()
        # The clock alone refuses nothing: the root user's URL of the same hour is served.
        assert fetch(long_term)[0] == 200
    finally:
        server.stop()
