"""Browser-form uploads (POST Object) as S3 has them, with forms made by boto3's
`generate_presigned_post` and posted by `requests` as a browser posts them: the POST policy's
signature and conditions checked (`content-length-range`, `starts-with`, expiry), `${filename}`
in the key, `success_action_status`, temporary credentials whose session token travels in the
form, and the IAM decision as for PutObject (an IAM user without `s3:PutObject` on the key is
refused); the form's ACL and encryption fields refused as PutObject's headers are.
"""
import json

import boto3
import pytest
import requests

from test_serve_s3 import Server, error_code, server  # noqa: F401


def post(form, data, name="hello.txt", **extra):
    fields = dict(form["fields"], **extra)
    return requests.post(form["url"], data=fields, files={"file": (name, data)}, timeout=30)


def code_of(response):
    return response.text.split("<Code>", 1)[1].split("</Code>", 1)[0] if "<Code>" in response.text else None


@pytest.fixture
def s3(server):
    client = server.client(retries={"max_attempts": 1})
    client.create_bucket(Bucket="bkt")
    return client


def test_a_presigned_post_uploads_with_its_conditions(server, s3):
    form = s3.generate_presigned_post(
        "bkt", "uploads/${filename}", Fields={"Content-Type": "text/plain", "success_action_status": "201"},
        Conditions=[["content-length-range", 1, 1000], ["starts-with", "$key", "uploads/"],
                    {"Content-Type": "text/plain"}, {"success_action_status": "201"}],
        ExpiresIn=300)
    done = post(form, b"hello from a browser")
    assert done.status_code == 201, done.text
    assert "<Key>uploads/hello.txt</Key>" in done.text
    got = s3.get_object(Bucket="bkt", Key="uploads/hello.txt")
    assert got["Body"].read() == b"hello from a browser" and got["ContentType"] == "text/plain"
    assert got.get("ServerSideEncryption") == (None if server.gateway else "AES256")
    # Over the policy's length range: refused, nothing stored.
    too_big = post(form, b"x" * 1001, name="big.txt")
    assert too_big.status_code == 400 and code_of(too_big) == "EntityTooLarge", too_big.text
    # A field the policy does not allow.
    other_type = post(form, b"x", name="x.txt", **{"Content-Type": "text/html"})
    assert other_type.status_code == 403 and code_of(other_type) == "AccessDenied", other_type.text
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket="bkt")["Contents"]]
    assert keys == ["uploads/hello.txt"]
    # A tampered policy fails its signature.
    tampered = dict(form, fields=dict(form["fields"], key="elsewhere/${filename}"))
    refused = post(tampered, b"x")
    assert refused.status_code == 403, refused.text


def test_an_expired_policy_is_refused(s3):
    form = s3.generate_presigned_post("bkt", "k", ExpiresIn=-60)
    refused = post(form, b"late")
    assert refused.status_code == 403 and code_of(refused) == "AccessDenied", refused.text


def test_temporary_credentials_and_the_iam_decision(s3, server):
    server.aws("iam", "create-user", "--user-name", "uploader")
    key = json.loads(server.aws("iam", "create-access-key", "--user-name", "uploader").stdout)["AccessKey"]
    policy = {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "s3:PutObject", "Resource": "arn:aws:s3:::bkt/avatars/*"}]}
    server.aws("iam", "put-user-policy", "--user-name", "uploader", "--policy-name", "avatars",
               "--policy-document", json.dumps(policy))
    sts = boto3.session.Session().client("sts", endpoint_url=server.endpoint, region_name="us-east-1",
                                         aws_access_key_id=key["AccessKeyId"], aws_secret_access_key=key["SecretAccessKey"])
    temp = sts.get_session_token(DurationSeconds=900)["Credentials"]
    session = boto3.session.Session().client(
        "s3", endpoint_url=server.endpoint, region_name="us-east-1",
        aws_access_key_id=temp["AccessKeyId"], aws_secret_access_key=temp["SecretAccessKey"],
        aws_session_token=temp["SessionToken"])
    form = session.generate_presigned_post("bkt", "avatars/${filename}", ExpiresIn=300)
    assert "x-amz-security-token" in form["fields"]
    done = post(form, b"PNG...", name="me.png")
    assert done.status_code == 204, done.text
    assert s3.get_object(Bucket="bkt", Key="avatars/me.png")["Body"].read() == b"PNG..."
    # Without its token the temporary key is nobody.
    fields = {k: v for k, v in form["fields"].items() if k != "x-amz-security-token"}
    refused = requests.post(form["url"], data=fields, files={"file": ("me.png", b"x")}, timeout=30)
    assert refused.status_code in (400, 403), refused.text
    # Outside the user's prefix: the IAM decision refuses it, as for a PUT.
    elsewhere = session.generate_presigned_post("bkt", "private/${filename}", ExpiresIn=300)
    denied = post(elsewhere, b"x", name="x.txt")
    assert denied.status_code == 403 and code_of(denied) == "AccessDenied", denied.text
    with pytest.raises(Exception):
        s3.head_object(Bucket="bkt", Key="private/x.txt")


def test_acl_and_encryption_fields_are_refused_not_ignored(s3):
    public = s3.generate_presigned_post("bkt", "k", Fields={"acl": "public-read"},
                                        Conditions=[{"acl": "public-read"}], ExpiresIn=300)
    refused = post(public, b"x")
    assert code_of(refused) == "AccessControlListNotSupported", refused.text
    kms = s3.generate_presigned_post("bkt", "k", Fields={"x-amz-server-side-encryption": "aws:kms"},
                                     Conditions=[{"x-amz-server-side-encryption": "aws:kms"}], ExpiresIn=300)
    refused = post(kms, b"x")
    assert refused.status_code == 501 and code_of(refused) == "NotImplemented", refused.text
    with pytest.raises(Exception):
        s3.head_object(Bucket="bkt", Key="k")
    # `private` is what "bucket owner enforced" means: accepted.
    private = s3.generate_presigned_post("bkt", "k", Fields={"acl": "private"},
                                         Conditions=[{"acl": "private"}], ExpiresIn=300)
    assert post(private, b"x").status_code == 204


def test_forms_are_let_in_a_few_at_a_time(s3, server):
    # s3s holds a form's file in memory: four forms at once, the fifth asked to slow down.
    import http.client
    import urllib.parse
    u = urllib.parse.urlparse(server.endpoint)
    stalled = []
    for _ in range(4):
        conn = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
        conn.putrequest("POST", "/bkt")
        conn.putheader("Content-Type", "multipart/form-data; boundary=xyz")
        conn.putheader("Content-Length", "100000")
        conn.endheaders()
        conn.send(b"--xyz\r\nContent-Disposition: form-data; name=\"key\"\r\n\r\nk")
        stalled.append(conn)
    import time
    time.sleep(0.5)
    form = s3.generate_presigned_post("bkt", "k", ExpiresIn=300)
    busy = post(form, b"x")
    assert busy.status_code == 503 and code_of(busy) == "SlowDown", busy.text
    for conn in stalled:
        conn.close()
    time.sleep(0.5)
    assert post(form, b"x").status_code == 204
