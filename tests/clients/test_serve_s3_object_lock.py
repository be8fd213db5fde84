"""Object Lock as S3 has it, driven with boto3 and awscli: buckets created with Object Lock
(versioning on, for good), Put/GetObjectLockConfiguration with a default retention, retention
and legal holds on PUT, multipart and by their own calls, what governance and compliance
retention and legal holds forbid (deleting a version, shortening or removing retention) and
what they allow (a delete marker on top, longer retention), `x-amz-bypass-governance-retention`
with its IAM action, the `s3:object-lock-*` condition keys, and S3's errors and texts.
"""
import datetime
import json

import botocore
import pytest

from test_serve_s3 import Server, error_code, server  # noqa: F401

pytestmark = pytest.mark.embedded_only("Object Lock is not available in gateway mode (test_gateway.py: NotImplemented)")

LOCKED = "Access Denied because object protected by object lock."


def later(days=1):
    return datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(days=days)


def refused(call):
    with pytest.raises(botocore.exceptions.ClientError) as e:
        call()
    return e


@pytest.fixture
def s3(server):
    client = server.client(retries={"max_attempts": 1})
    client.create_bucket(Bucket="vault", ObjectLockEnabledForBucket=True)
    return client


def test_a_bucket_created_with_object_lock(s3):
    assert s3.get_bucket_versioning(Bucket="vault")["Status"] == "Enabled"
    config = s3.get_object_lock_configuration(Bucket="vault")["ObjectLockConfiguration"]
    assert config == {"ObjectLockEnabled": "Enabled"}
    e = refused(lambda: s3.put_bucket_versioning(
        Bucket="vault", VersioningConfiguration={"Status": "Suspended"}))
    assert error_code(e) == "InvalidBucketState"
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 409
    assert "Object Lock configuration is present" in e.value.response["Error"]["Message"]
    # A version never given a retention or hold has none to answer.
    s3.put_object(Bucket="vault", Key="plain", Body=b"x")
    for call in (s3.get_object_retention, s3.get_object_legal_hold):
        e = refused(lambda: call(Bucket="vault", Key="plain"))
        assert error_code(e) == "NoSuchObjectLockConfiguration"
        assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404


def test_governance_gives_way_to_a_bypass_only(s3):
    until = later()
    put = s3.put_object(Bucket="vault", Key="backup.tar", Body=b"monday",
                        ObjectLockMode="GOVERNANCE", ObjectLockRetainUntilDate=until)
    version = put["VersionId"]
    head = s3.head_object(Bucket="vault", Key="backup.tar")
    assert head["ObjectLockMode"] == "GOVERNANCE"
    assert abs((head["ObjectLockRetainUntilDate"] - until).total_seconds()) < 1
    got = s3.get_object_retention(Bucket="vault", Key="backup.tar", VersionId=version)["Retention"]
    assert got["Mode"] == "GOVERNANCE"

    e = refused(lambda: s3.delete_object(Bucket="vault", Key="backup.tar", VersionId=version))
    assert error_code(e) == "AccessDenied" and e.value.response["Error"]["Message"] == LOCKED
    # Shortening needs the bypass too; lengthening does not.
    e = refused(lambda: s3.put_object_retention(
        Bucket="vault", Key="backup.tar", VersionId=version,
        Retention={"Mode": "GOVERNANCE", "RetainUntilDate": later(0.5)}))
    assert error_code(e) == "AccessDenied"
    s3.put_object_retention(Bucket="vault", Key="backup.tar", VersionId=version,
                            Retention={"Mode": "GOVERNANCE", "RetainUntilDate": later(2)})
    # A delete without a version only puts a marker on top.
    assert s3.delete_object(Bucket="vault", Key="backup.tar")["DeleteMarker"] is True
    assert s3.get_object(Bucket="vault", Key="backup.tar", VersionId=version)["Body"].read() == b"monday"
    s3.delete_object(Bucket="vault", Key="backup.tar", VersionId=version, BypassGovernanceRetention=True)
    e = refused(lambda: s3.head_object(Bucket="vault", Key="backup.tar", VersionId=version))
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404


def test_compliance_and_legal_holds_bind_everyone(s3):
    version = s3.put_object(Bucket="vault", Key="ledger", Body=b"q3",
                            ObjectLockMode="COMPLIANCE", ObjectLockRetainUntilDate=later())["VersionId"]
    for call in (
        lambda: s3.delete_object(Bucket="vault", Key="ledger", VersionId=version,
                                 BypassGovernanceRetention=True),
        lambda: s3.put_object_retention(Bucket="vault", Key="ledger", VersionId=version,
                                        BypassGovernanceRetention=True,
                                        Retention={"Mode": "GOVERNANCE", "RetainUntilDate": later(3)}),
        lambda: s3.put_object_retention(Bucket="vault", Key="ledger", VersionId=version,
                                        BypassGovernanceRetention=True, Retention={}),
    ):
        e = refused(call)
        assert error_code(e) == "AccessDenied" and e.value.response["Error"]["Message"] == LOCKED
    gone = s3.delete_objects(Bucket="vault", BypassGovernanceRetention=True,
                             Delete={"Objects": [{"Key": "ledger", "VersionId": version}]})
    assert [(x["Code"], x["Message"]) for x in gone["Errors"]] == [("AccessDenied", LOCKED)]

    held = s3.put_object(Bucket="vault", Key="evidence", Body=b"e",
                         ObjectLockLegalHoldStatus="ON")["VersionId"]
    assert s3.get_object_legal_hold(Bucket="vault", Key="evidence")["LegalHold"]["Status"] == "ON"
    assert s3.get_object(Bucket="vault", Key="evidence")["ObjectLockLegalHoldStatus"] == "ON"
    e = refused(lambda: s3.delete_object(Bucket="vault", Key="evidence", VersionId=held,
                                         BypassGovernanceRetention=True))
    assert error_code(e) == "AccessDenied"
    s3.put_object_legal_hold(Bucket="vault", Key="evidence", VersionId=held, LegalHold={"Status": "OFF"})
    assert s3.get_object_legal_hold(Bucket="vault", Key="evidence")["LegalHold"]["Status"] == "OFF"
    s3.delete_object(Bucket="vault", Key="evidence", VersionId=held)


def test_default_retention_applies_to_puts_and_multipart(s3):
    s3.put_object_lock_configuration(Bucket="vault", ObjectLockConfiguration={
        "ObjectLockEnabled": "Enabled",
        "Rule": {"DefaultRetention": {"Mode": "GOVERNANCE", "Days": 30}}})
    rule = s3.get_object_lock_configuration(Bucket="vault")["ObjectLockConfiguration"]["Rule"]
    assert rule == {"DefaultRetention": {"Mode": "GOVERNANCE", "Days": 30}}
    head = s3.put_object(Bucket="vault", Key="k", Body=b"x") and s3.head_object(Bucket="vault", Key="k")
    assert head["ObjectLockMode"] == "GOVERNANCE"
    left = head["ObjectLockRetainUntilDate"] - datetime.datetime.now(datetime.timezone.utc)
    assert datetime.timedelta(days=29) < left <= datetime.timedelta(days=30)

    up = s3.create_multipart_upload(Bucket="vault", Key="big", ObjectLockLegalHoldStatus="ON")
    part = s3.upload_part(Bucket="vault", Key="big", UploadId=up["UploadId"], PartNumber=1, Body=b"p")
    s3.complete_multipart_upload(Bucket="vault", Key="big", UploadId=up["UploadId"],
                                 MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": part["ETag"]}]})
    head = s3.head_object(Bucket="vault", Key="big")
    assert head["ObjectLockLegalHoldStatus"] == "ON" and head["ObjectLockMode"] == "GOVERNANCE"

    # Without a rule, new versions get none.
    s3.put_object_lock_configuration(Bucket="vault", ObjectLockConfiguration={"ObjectLockEnabled": "Enabled"})
    s3.put_object(Bucket="vault", Key="free", Body=b"x")
    assert "ObjectLockMode" not in s3.head_object(Bucket="vault", Key="free")


def test_what_s3_refuses(s3):
    bad_rules = [
        ({"DefaultRetention": {"Mode": "GOVERNANCE", "Days": 0}}, "InvalidArgument"),
        ({"DefaultRetention": {"Mode": "GOVERNANCE", "Days": 1, "Years": 1}}, "MalformedXML"),
        ({"DefaultRetention": {"Mode": "GOVERNANCE"}}, "MalformedXML"),
    ]
    for rule, code in bad_rules:
        e = refused(lambda: s3.put_object_lock_configuration(Bucket="vault", ObjectLockConfiguration={
            "ObjectLockEnabled": "Enabled", "Rule": rule}))
        assert error_code(e) == code, rule
    e = refused(lambda: s3.put_object(Bucket="vault", Key="k", Body=b"x", ObjectLockMode="GOVERNANCE",
                                      ObjectLockRetainUntilDate=later(-1)))
    assert error_code(e) == "InvalidArgument"
    assert e.value.response["Error"]["Message"] == "The retain until date must be in the future!"
    e = refused(lambda: s3.put_object(Bucket="vault", Key="k", Body=b"x", ObjectLockMode="GOVERNANCE"))
    assert error_code(e) == "InvalidArgument"

    s3.create_bucket(Bucket="plain")
    s3.put_object(Bucket="plain", Key="k", Body=b"x")
    e = refused(lambda: s3.get_object_lock_configuration(Bucket="plain"))
    assert error_code(e) == "ObjectLockConfigurationNotFoundError"
    for call in (
        lambda: s3.put_object(Bucket="plain", Key="k2", Body=b"x", ObjectLockLegalHoldStatus="ON"),
        lambda: s3.put_object_retention(Bucket="plain", Key="k",
                                        Retention={"Mode": "GOVERNANCE", "RetainUntilDate": later()}),
        lambda: s3.get_object_legal_hold(Bucket="plain", Key="k"),
    ):
        e = refused(call)
        assert error_code(e) == "InvalidRequest"
        assert e.value.response["Error"]["Message"] == "Bucket is missing Object Lock Configuration"
    # Object Lock needs versioning first; then an existing bucket can have it.
    e = refused(lambda: s3.put_object_lock_configuration(
        Bucket="plain", ObjectLockConfiguration={"ObjectLockEnabled": "Enabled"}))
    assert error_code(e) == "InvalidBucketState"
    s3.put_bucket_versioning(Bucket="plain", VersioningConfiguration={"Status": "Enabled"})
    s3.put_object_lock_configuration(Bucket="plain", ObjectLockConfiguration={"ObjectLockEnabled": "Enabled"})
    s3.put_object(Bucket="plain", Key="k3", Body=b"x", ObjectLockLegalHoldStatus="ON")


def user_with(server, name, actions, bucket="vault"):
    server.aws("iam", "create-user", "--user-name", name)
    key = json.loads(server.aws("iam", "create-access-key", "--user-name", name).stdout)["AccessKey"]
    policy = {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": actions, "Resource": f"arn:aws:s3:::{bucket}/*"},
        {"Effect": "Allow", "Action": "s3:ListBucket", "Resource": f"arn:aws:s3:::{bucket}"},
    ]}
    server.aws("iam", "put-user-policy", "--user-name", name, "--policy-name", "p",
               "--policy-document", json.dumps(policy))
    return server.user(key["AccessKeyId"], key["SecretAccessKey"])


def test_bypass_and_lock_headers_need_their_own_permissions(s3, server):
    writer = user_with(server, "writer", ["s3:PutObject", "s3:GetObject"])
    e = refused(lambda: writer.put_object(Bucket="vault", Key="k", Body=b"x", ObjectLockMode="GOVERNANCE",
                                          ObjectLockRetainUntilDate=later()))
    assert error_code(e) == "AccessDenied"
    e = refused(lambda: writer.put_object(Bucket="vault", Key="k", Body=b"x", ObjectLockLegalHoldStatus="ON"))
    assert error_code(e) == "AccessDenied"
    writer.put_object(Bucket="vault", Key="k", Body=b"x")

    version = s3.put_object(Bucket="vault", Key="g", Body=b"g", ObjectLockMode="GOVERNANCE",
                            ObjectLockRetainUntilDate=later())["VersionId"]
    cleaner = user_with(server, "cleaner", ["s3:DeleteObject", "s3:DeleteObjectVersion"])
    e = refused(lambda: cleaner.delete_object(Bucket="vault", Key="g", VersionId=version,
                                              BypassGovernanceRetention=True))
    assert error_code(e) == "AccessDenied" and e.value.response["Error"]["Message"] == LOCKED
    admin = user_with(server, "admin", ["s3:DeleteObjectVersion", "s3:BypassGovernanceRetention"])
    out = admin.delete_objects(Bucket="vault", BypassGovernanceRetention=True,
                               Delete={"Objects": [{"Key": "g", "VersionId": version}]})
    assert [d["VersionId"] for d in out["Deleted"]] == [version] and "Errors" not in out


def test_condition_keys_cap_retention(s3, server):
    # AWS's example: nobody sets a retention of more than ten days on this bucket.
    policy = {"Version": "2012-10-17", "Statement": [{
        "Effect": "Deny", "Principal": "*", "Action": "s3:PutObjectRetention",
        "Resource": "arn:aws:s3:::vault/*",
        "Condition": {"NumericGreaterThan": {"s3:object-lock-remaining-retention-days": "10"}}}]}
    s3.put_bucket_policy(Bucket="vault", Policy=json.dumps(policy))
    user = user_with(server, "keeper", ["s3:PutObject", "s3:PutObjectRetention"])
    user.put_object(Bucket="vault", Key="k", Body=b"x")
    user.put_object_retention(Bucket="vault", Key="k",
                              Retention={"Mode": "GOVERNANCE", "RetainUntilDate": later(5)})
    e = refused(lambda: user.put_object_retention(
        Bucket="vault", Key="k", Retention={"Mode": "GOVERNANCE", "RetainUntilDate": later(20)}))
    assert error_code(e) == "AccessDenied"


def test_awscli_object_lock(server, tmp_path):
    server.aws("s3api", "create-bucket", "--bucket", "backups", "--object-lock-enabled-for-bucket")
    server.aws("s3api", "put-object-lock-configuration", "--bucket", "backups",
               "--object-lock-configuration",
               json.dumps({"ObjectLockEnabled": "Enabled",
                           "Rule": {"DefaultRetention": {"Mode": "COMPLIANCE", "Days": 7}}}))
    src = tmp_path / "gitlab_backup.tar"
    src.write_bytes(b"backup")
    server.aws("s3", "cp", str(src), "s3://backups/gitlab_backup.tar")
    listed = json.loads(server.aws("s3api", "list-object-versions", "--bucket", "backups").stdout)
    version = listed["Versions"][0]["VersionId"]
    retention = json.loads(server.aws("s3api", "get-object-retention", "--bucket", "backups",
                                      "--key", "gitlab_backup.tar").stdout)["Retention"]
    assert retention["Mode"] == "COMPLIANCE"
    proc = server.aws("s3api", "delete-object", "--bucket", "backups", "--key", "gitlab_backup.tar",
                      f"--version-id={version}", "--bypass-governance-retention", check=False)
    assert proc.returncode != 0
    assert ("An error occurred (AccessDenied) when calling the DeleteObject operation: "
            "Access Denied because object protected by object lock.") in proc.stderr
    # `aws s3 rm` adds a delete marker; the backup stays.
    server.aws("s3", "rm", "s3://backups/gitlab_backup.tar")
    out = tmp_path / "restored.tar"
    server.aws("s3api", "get-object", "--bucket", "backups", "--key", "gitlab_backup.tar",
               f"--version-id={version}", str(out))
    assert out.read_bytes() == b"backup"


def test_a_browser_form_sets_a_lock_only_with_its_permission(s3, server):
    import requests

    def form_post(client, key):
        form = client.generate_presigned_post(
            "vault", key, Fields={"x-amz-object-lock-legal-hold": "ON"},
            Conditions=[{"x-amz-object-lock-legal-hold": "ON"}], ExpiresIn=300)
        return requests.post(form["url"], data=form["fields"], files={"file": ("f", b"held")}, timeout=30)

    writer = user_with(server, "formwriter", ["s3:PutObject"])
    denied = form_post(writer, "by-writer")
    assert denied.status_code == 403 and "<Code>AccessDenied</Code>" in denied.text, denied.text
    keeper = user_with(server, "formkeeper", ["s3:PutObject", "s3:PutObjectLegalHold", "s3:GetObject"])
    done = form_post(keeper, "by-keeper")
    assert done.status_code == 204, done.text
    assert s3.head_object(Bucket="vault", Key="by-keeper")["ObjectLockLegalHoldStatus"] == "ON"
