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

    def user(self, key_id, secret):
        return boto3.session.Session().client(
            "s3", endpoint_url=self.endpoint, region_name="us-east-1",
            aws_access_key_id=key_id, aws_secret_access_key=secret,
        )


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
    assert "An error occurred (AccessDenied) when calling the PutObject operation: Access Denied" in refused.stderr


@pytest.mark.parametrize("mistake, message", [
    ("name = \"gitlab-registry\"\n", None),
    ("[[users]]\nname = \"bad name\"\n", "users[3].name: `bad name` is not a valid user name"),
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
