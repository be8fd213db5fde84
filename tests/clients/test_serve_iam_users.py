"""IAM users declared in `keyless serve --config`, their policies enforced on every request,
driven by unmodified boto3 and awscli."""

import os
import subprocess

import boto3
import botocore
import pytest

from test_serve_s3 import Server, error_code

REGISTRY_RW = """{
  "Version": "2012-10-17",
  "Statement": [
    {"Sid": "List", "Effect": "Allow", "Action": ["s3:ListBucket", "s3:GetBucketLocation"], "Resource": "arn:aws:s3:::gitlab-registry"},
    {"Sid": "ReadWrite", "Effect": "Allow", "Action": ["s3:GetObject", "s3:PutObject", "s3:DeleteObject"], "Resource": "arn:aws:s3:::gitlab-registry/*"}
  ]
}"""

CONFIG = """
[[policies]]
name = "registry-rw"
file = "registry-rw.json"

[[users]]
name = "gitlab-registry"
access_key_id = "AKIAREGISTRY00000001"
secret_access_key_file = "registry.secret"
policy_arns = ["arn:aws:iam::000000000000:policy/registry-rw"]

[[users.policies]]
name = "keep-protected"
document = '''{"Version": "2012-10-17", "Statement": {"Effect": "Deny", "Action": "s3:DeleteObject", "Resource": "arn:aws:s3:::gitlab-registry/protected/*"}}'''

[[users]]
name = "auditor"
access_key_id = "AKIAAUDITOR000000001"
secret_access_key = "auditor-secret-auditor-secret-auditor-00"
policy_arns = ["arn:aws:iam::aws:policy/AmazonS3ReadOnlyAccess"]

[[users]]
name = "reader"
access_key_id = "AKIAREADER0000000001"
secret_access_key = "reader-secret-reader-secret-reader-secr"
[[users.policies]]
name = "read-only-objects"
document = '''{"Version": "2012-10-17", "Statement": {"Effect": "Allow", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::gitlab-registry/*"}}'''

[[users]]
name = "nobody"
access_key_id = "AKIANOBODY0000000001"
secret_access_key = "nobody-secret-nobody-secret-nobody-secr"

[[buckets]]
name = "gitlab-registry"

[[buckets]]
name = "gitlab-backups"
policy = { document = '''{"Version": "2012-10-17", "Statement": {"Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::000000000000:user/nobody"}, "Action": "s3:PutObject", "Resource": "arn:aws:s3:::gitlab-backups/drop/*"}}''' }
"""

REGISTRY_SECRET = "registry-secret-registry-secret-registry"


class ConfiguredServer(Server):
    def __init__(self, keyless_bin, tmp_path):
        conf = tmp_path / "conf"
        conf.mkdir()
        (conf / "registry-rw.json").write_text(REGISTRY_RW)
        secret = conf / "registry.secret"
        secret.write_text(REGISTRY_SECRET + "\n")
        secret.chmod(0o600)
        (conf / "keyless.toml").write_text(CONFIG)
        self.config = conf / "keyless.toml"
        super().__init__(keyless_bin, tmp_path / "data", extra=["--config", str(self.config)])


@pytest.fixture
def server(keyless_bin, tmp_path):
    s = ConfiguredServer(keyless_bin, tmp_path)
    yield s
    s.stop()


def denied(call, *args, **kwargs):
    with pytest.raises(botocore.exceptions.ClientError) as e:
        call(*args, **kwargs)
    assert error_code(e) == "AccessDenied", e.value.response
    return e


def test_a_role_with_read_write_list_on_its_bucket_only(server):
    s3 = server.user("AKIAREGISTRY00000001", REGISTRY_SECRET)
    s3.put_object(Bucket="gitlab-registry", Key="docker/registry/v2/blobs/x", Body=b"layer")
    assert s3.get_object(Bucket="gitlab-registry", Key="docker/registry/v2/blobs/x")["Body"].read() == b"layer"
    assert [o["Key"] for o in s3.list_objects_v2(Bucket="gitlab-registry")["Contents"]] == ["docker/registry/v2/blobs/x"]
    s3.delete_object(Bucket="gitlab-registry", Key="docker/registry/v2/blobs/x")
    # Elsewhere: refused.
    denied(s3.put_object, Bucket="gitlab-backups", Key="x", Body=b"x")
    denied(s3.list_objects_v2, Bucket="gitlab-backups")
    denied(s3.get_object, Bucket="gitlab-backups", Key="x")
    denied(s3.list_buckets)
    denied(s3.create_bucket, Bucket="new-bucket")
    denied(s3.delete_bucket, Bucket="gitlab-registry")
    # The inline deny wins over the managed allow.
    s3.put_object(Bucket="gitlab-registry", Key="protected/manifest", Body=b"m")
    denied(s3.delete_object, Bucket="gitlab-registry", Key="protected/manifest")


def test_delete_objects_reports_denied_keys_one_by_one(server):
    s3 = server.user("AKIAREGISTRY00000001", REGISTRY_SECRET)
    for key in ["protected/a", "tmp/b"]:
        s3.put_object(Bucket="gitlab-registry", Key=key, Body=b"x")
    out = s3.delete_objects(Bucket="gitlab-registry", Delete={"Objects": [{"Key": "protected/a"}, {"Key": "tmp/b"}]})
    assert [d["Key"] for d in out["Deleted"]] == ["tmp/b"]
    assert [(e["Key"], e["Code"]) for e in out["Errors"]] == [("protected/a", "AccessDenied")]
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket="gitlab-registry")["Contents"]]
    assert keys == ["protected/a"]


def test_aws_managed_policies_resolve_by_arn(server):
    root = server.client()
    root.put_object(Bucket="gitlab-backups", Key="b.tar", Body=b"backup")
    auditor = server.user("AKIAAUDITOR000000001", "auditor-secret-auditor-secret-auditor-00")
    assert auditor.get_object(Bucket="gitlab-backups", Key="b.tar")["Body"].read() == b"backup"
    assert sorted(b["Name"] for b in auditor.list_buckets()["Buckets"]) == ["gitlab-backups", "gitlab-registry"]
    denied(auditor.put_object, Bucket="gitlab-backups", Key="b.tar", Body=b"overwritten")
    denied(auditor.delete_object, Bucket="gitlab-backups", Key="b.tar")


def test_a_user_without_policies_gets_only_what_a_bucket_policy_grants(server):
    nobody = server.user("AKIANOBODY0000000001", "nobody-secret-nobody-secret-nobody-secr")
    denied(nobody.list_buckets)
    denied(nobody.put_object, Bucket="gitlab-backups", Key="elsewhere", Body=b"x")
    nobody.put_object(Bucket="gitlab-backups", Key="drop/report", Body=b"x")
    denied(nobody.get_object, Bucket="gitlab-backups", Key="drop/report")


def test_awscli_as_a_user(server, tmp_path):
    src = tmp_path / "layer"
    src.write_bytes(b"layer data")
    env = dict(os.environ, AWS_ACCESS_KEY_ID="AKIAREGISTRY00000001", AWS_SECRET_ACCESS_KEY=REGISTRY_SECRET,
               AWS_DEFAULT_REGION="us-east-1")
    env.pop("AWS_SHARED_CREDENTIALS_FILE", None)
    run = lambda *a: subprocess.run(["aws", "--endpoint-url", server.endpoint, *a], capture_output=True, text=True, env=env)
    ok = run("s3", "cp", str(src), "s3://gitlab-registry/layer")
    assert ok.returncode == 0, ok.stderr
    refused = run("s3", "cp", str(src), "s3://gitlab-backups/layer")
    assert refused.returncode != 0
    # AWS's detailed AccessDenied, for a caller of the bucket's own account.
    assert (
        "An error occurred (AccessDenied) when calling the PutObject operation: "
        "User: arn:aws:iam::000000000000:user/gitlab-registry is not authorized to perform: "
        's3:PutObject on resource: "arn:aws:s3:::gitlab-backups/layer" '
        "because no identity-based policy allows the s3:PutObject action"
    ) in refused.stderr, refused.stderr


@pytest.mark.parametrize("mistake, message", [
    ("name = \"gitlab-registry\"\n", None),
    ("[[users]]\nname = \"bad name\"\n", "users[4].name: `bad name` is not a valid user name"),
    ("[[buckets]]\nname = \"Bad_Bucket\"\n", "buckets[2].name: `Bad_Bucket` is not a valid bucket name"),
    ("[[users]]\nname = \"x\"\npolicy_arns = [\"arn:aws:iam::aws:policy/NoSuchPolicy\"]\n",
     "policy `arn:aws:iam::aws:policy/NoSuchPolicy` does not exist"),
    ("[[policies]]\nname = \"broken\"\ndocument = '{\"Statement\": {\"Effect\": \"Allow\"}}'\n",
     "policies[1] (`broken`): Statement: missing `Action` or `NotAction`"),
    ("[[users]]\nname = \"y\"\nsurname = \"z\"\n", "unknown field `surname`"),
])
def test_a_bad_config_refuses_to_start_naming_the_field(keyless_bin, tmp_path, mistake, message):
    conf = tmp_path / "conf"
    conf.mkdir()
    (conf / "registry-rw.json").write_text(REGISTRY_RW)
    secret = conf / "registry.secret"
    secret.write_text(REGISTRY_SECRET)
    secret.chmod(0o600)
    (conf / "keyless.toml").write_text(CONFIG + mistake)
    proc = subprocess.run([keyless_bin, "serve", "--listen", "127.0.0.1:0", "--data-dir", str(tmp_path / "d"),
                           "--config", str(conf / "keyless.toml")], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2
    if message:
        assert message in proc.stderr, proc.stderr


def test_a_world_readable_secret_file_is_refused(keyless_bin, tmp_path):
    conf = tmp_path / "conf"
    conf.mkdir()
    (conf / "registry-rw.json").write_text(REGISTRY_RW)
    secret = conf / "registry.secret"
    secret.write_text(REGISTRY_SECRET)
    secret.chmod(0o644)
    (conf / "keyless.toml").write_text(CONFIG)
    proc = subprocess.run([keyless_bin, "serve", "--listen", "127.0.0.1:0", "--data-dir", str(tmp_path / "d"),
                           "--config", str(conf / "keyless.toml")], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2
    assert "is readable by other users (mode 644); run `chmod 600` on it" in proc.stderr


HOME_POLICY = """{"Version": "2012-10-17", "Statement": [
  {"Effect": "Allow", "Action": "s3:ListBucket", "Resource": "arn:aws:s3:::homes",
   "Condition": {"StringLike": {"s3:prefix": ["", "home/", "home/${aws:username}/*"]}}},
  {"Effect": "Allow", "Action": ["s3:GetObject", "s3:PutObject"], "Resource": "arn:aws:s3:::homes/home/${aws:username}/*"},
  {"Effect": "Deny", "Action": "s3:GetObject", "Resource": "*", "Condition": {"StringEquals": {"s3:authType": "REST-QUERY-STRING"}}}
]}"""


@pytest.fixture
def homes(keyless_bin, tmp_path):
    conf = tmp_path / "conf"
    conf.mkdir()
    (conf / "keyless.toml").write_text(f"""
[[users]]
name = "alice"
access_key_id = "AKIAALICE00000000001"
secret_access_key = "alice-secret-alice-secret-alice-secret-0"
[[users.policies]]
name = "home"
document = '''{HOME_POLICY}'''

[[buckets]]
name = "homes"
""")
    s = Server(keyless_bin, tmp_path / "data", extra=["--config", str(conf / "keyless.toml")])
    root = s.client()
    root.put_object(Bucket="homes", Key="home/bob/secret.txt", Body=b"bob's")
    root.put_object(Bucket="homes", Key="home/alice/notes.txt", Body=b"alice's")
    yield s
    s.stop()


def signed_raw(server, key_id, secret, method, path_and_query, body=b""):
    """Sends a request signed by botocore's SigV4 signer exactly as given (no re-encoding)."""
    import http.client
    import urllib.parse
    from botocore.auth import S3SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials
    req = AWSRequest(method=method, url=server.endpoint + path_and_query, data=body)
    S3SigV4Auth(Credentials(key_id, secret), "s3", "us-east-1").add_auth(req)
    u = urllib.parse.urlparse(server.endpoint)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
    conn.request(method, path_and_query, body=body, headers=dict(req.headers.items()))
    resp = conn.getresponse()
    return resp.status, resp.read()


def test_list_conditions_see_the_prefix_the_handler_uses(homes):
    alice = homes.user("AKIAALICE00000000001", "alice-secret-alice-secret-alice-secret-0")
    assert [o["Key"] for o in alice.list_objects_v2(Bucket="homes", Prefix="home/alice/")["Contents"]] == ["home/alice/notes.txt"]
    denied(alice.list_objects_v2, Bucket="homes", Prefix="home/bob/")
    # Regression: a percent-encoded parameter name hid the prefix from the policy check.
    for query in ["/homes?list-type=2&%70refix=home%2Fbob%2F", "/homes?%70refix=home%2Fbob%2F", "/homes?list-type=2&pre%66ix=home%2Fbob%2F"]:
        status, body = signed_raw(homes, "AKIAALICE00000000001", "alice-secret-alice-secret-alice-secret-0", "GET", query)
        assert status == 403, (query, body)
        # An error, not a listing: none of bob's keys (a SignatureDoesNotMatch body echoes the
        # request's own canonical request, prefix and all, as S3's does).
        assert body.startswith(b'<?xml version="1.0" encoding="UTF-8"?>\n<Error>'), body
        assert b"secret.txt" not in body and b"<Contents>" not in body


def test_auth_type_reaches_the_policy(homes):
    alice = homes.user("AKIAALICE00000000001", "alice-secret-alice-secret-alice-secret-0")
    assert alice.get_object(Bucket="homes", Key="home/alice/notes.txt")["Body"].read() == b"alice's"
    url = alice.generate_presigned_url("get_object", Params={"Bucket": "homes", "Key": "home/alice/notes.txt"})
    import urllib.error
    import urllib.request
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(url)
    assert e.value.code == 403


def test_a_form_whose_fields_never_end_is_cut_off_without_being_read(server):
    # 1.5 GiB declared, unsigned, and no file part in its first 256 KiB: refused at once,
    # without the server waiting for (or holding) the rest.
    import http.client
    import time
    import urllib.parse
    u = urllib.parse.urlparse(server.endpoint)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
    started = time.time()
    conn.putrequest("POST", "/gitlab-registry")
    conn.putheader("Content-Type", "multipart/form-data; boundary=xyz")
    conn.putheader("Content-Length", str(1536 * 1024 * 1024))
    conn.endheaders()
    conn.send(b"--xyz\r\n" + b"x" * (300 * 1024))
    resp = conn.getresponse()
    assert resp.status == 400
    assert b"MalformedPOSTRequest" in resp.read()
    assert time.time() - started < 5


def test_delete_objects_limits_and_secrecy(server):
    root = server.client()
    with pytest.raises(botocore.exceptions.ClientError) as e:
        root.delete_objects(Bucket="gitlab-registry", Delete={"Objects": [{"Key": f"k{i}"} for i in range(1001)]})
    assert error_code(e) == "MalformedXML"
    # An anonymous caller learns nothing of which buckets exist.
    anon = server.anonymous()
    for bucket in ["gitlab-registry", "no-such-bucket"]:
        try:
            out = anon.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": "x"}]})
            assert [e["Code"] for e in out["Errors"]] == ["AccessDenied"]
        except botocore.exceptions.ClientError as err:
            assert err.response["Error"]["Code"] == "AccessDenied"


def test_missing_keys_are_403_without_list_permission(server):
    """As on S3: a caller without s3:ListBucket cannot tell a missing key from a forbidden one."""
    nobody = server.user("AKIANOBODY0000000001", "nobody-secret-nobody-secret-nobody-secr")
    auditor = server.user("AKIAAUDITOR000000001", "auditor-secret-auditor-secret-auditor-00")
    registry = server.user("AKIAREGISTRY00000001", REGISTRY_SECRET)
    # registry may read and list gitlab-registry: the truth, 404.
    with pytest.raises(botocore.exceptions.ClientError) as e:
        registry.get_object(Bucket="gitlab-registry", Key="missing")
    assert error_code(e) == "NoSuchKey"
    # nobody may put in gitlab-backups/drop/ but neither read nor list: 403 either way.
    denied(nobody.get_object, Bucket="gitlab-backups", Key="drop/missing")
    # reader may read gitlab-registry's objects but not list them: a missing key is a 403.
    reader = server.user("AKIAREADER0000000001", "reader-secret-reader-secret-reader-secr")
    server.client().put_object(Bucket="gitlab-registry", Key="present", Body=b"here")
    assert reader.get_object(Bucket="gitlab-registry", Key="present")["Body"].read() == b"here"
    denied(reader.get_object, Bucket="gitlab-registry", Key="missing")
    with pytest.raises(botocore.exceptions.ClientError) as e:
        reader.head_object(Bucket="gitlab-registry", Key="missing")
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    # The auditor reads everything (AmazonS3ReadOnlyAccess includes s3:List*): 404.
    with pytest.raises(botocore.exceptions.ClientError) as e:
        auditor.head_object(Bucket="gitlab-backups", Key="missing")
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404


def test_a_refusal_without_100_continue_closes_the_connection(server):
    """A PUT that asks for `100 Continue` and is refused before its body is read gets
    `Connection: close`: whether the body follows is unknown, and botocore reads the connection's
    next answer with the refused status (a denied upload made the next, allowed one fail)."""
    import http.client
    import urllib.parse
    url = urllib.parse.urlparse(server.endpoint)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=10)
    conn.putrequest("PUT", "/gitlab-backups/elsewhere")
    conn.putheader("Content-Length", "1")
    conn.putheader("Expect", "100-continue")
    conn.endheaders()
    response = conn.getresponse()
    assert response.status == 403
    assert response.getheader("Connection", "").lower() == "close"
    assert b"<Code>AccessDenied</Code>" in response.read()
    # The server closed its side: nothing more comes on this connection.
    assert conn.sock is None or conn.sock.recv(1) == b""
    conn.close()
    # And the flow that broke: a denied upload, then an allowed one, on one botocore client.
    nobody = server.user("AKIANOBODY0000000001", "nobody-secret-nobody-secret-nobody-secr")
    for i in range(20):
        denied(nobody.put_object, Bucket="gitlab-backups", Key="elsewhere", Body=b"x")
        nobody.put_object(Bucket="gitlab-backups", Key=f"drop/report-{i}", Body=b"x")
