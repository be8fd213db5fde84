"""The IAM query API on the S3 port, driven by unmodified awscli and boto3: users, access
keys, inline and managed policies, the simulator, and what the changes do to S3 at once."""

import json
import os
import subprocess
import urllib.error
import urllib.request

import boto3
import botocore
import pytest

from conftest import REPO
from test_serve_s3 import Server, error_code, server  # noqa: F401 (the fixture)

READ_WRITE = json.dumps({
    "Version": "2012-10-17",
    "Statement": [
        {"Sid": "List", "Effect": "Allow", "Action": "s3:ListBucket", "Resource": "arn:aws:s3:::registry"},
        {"Sid": "RW", "Effect": "Allow", "Action": ["s3:GetObject", "s3:PutObject"], "Resource": "arn:aws:s3:::registry/*"},
    ],
})


def iam(server, key_id=None, secret=None):
    if key_id is None:
        keys = server.keys()
        key_id, secret = keys["aws_access_key_id"], keys["aws_secret_access_key"]
    return boto3.session.Session().client(
        "iam", endpoint_url=server.endpoint, region_name="us-east-1",
        aws_access_key_id=key_id, aws_secret_access_key=secret,
    )


def cli_error(proc):
    assert proc.returncode != 0, proc.stdout
    return proc.stderr.strip()


def test_awscli_manages_users_and_their_keys_work_on_s3_at_once(server):
    user = json.loads(server.aws("iam", "create-user", "--user-name", "gitlab-registry").stdout)["User"]
    assert user["Arn"] == "arn:aws:iam::000000000000:user/gitlab-registry"
    assert user["UserId"].startswith("AIDA")
    key = json.loads(server.aws("iam", "create-access-key", "--user-name", "gitlab-registry").stdout)["AccessKey"]
    assert key["AccessKeyId"].startswith("AKIA") and key["Status"] == "Active"
    server.client().create_bucket(Bucket="registry")
    server.client().create_bucket(Bucket="other")
    s3 = server.user(key["AccessKeyId"], key["SecretAccessKey"])
    # A user with no policy may do nothing.
    with pytest.raises(botocore.exceptions.ClientError) as e:
        s3.put_object(Bucket="registry", Key="a", Body=b"x")
    assert error_code(e) == "AccessDenied"
    server.aws("iam", "put-user-policy", "--user-name", "gitlab-registry", "--policy-name", "rw",
               "--policy-document", READ_WRITE)
    s3.put_object(Bucket="registry", Key="a", Body=b"x")
    assert s3.get_object(Bucket="registry", Key="a")["Body"].read() == b"x"
    assert [o["Key"] for o in s3.list_objects_v2(Bucket="registry")["Contents"]] == ["a"]
    with pytest.raises(botocore.exceptions.ClientError) as e:
        s3.put_object(Bucket="other", Key="a", Body=b"x")
    assert error_code(e) == "AccessDenied"
    with pytest.raises(botocore.exceptions.ClientError) as e:
        s3.delete_object(Bucket="registry", Key="a")
    assert error_code(e) == "AccessDenied"

    doc = json.loads(server.aws("iam", "get-user-policy", "--user-name", "gitlab-registry",
                                "--policy-name", "rw").stdout)
    assert doc["PolicyDocument"] == json.loads(READ_WRITE)
    keys = json.loads(server.aws("iam", "list-access-keys", "--user-name", "gitlab-registry").stdout)
    assert [k["AccessKeyId"] for k in keys["AccessKeyMetadata"]] == [key["AccessKeyId"]]
    assert "SecretAccessKey" not in keys["AccessKeyMetadata"][0]

    # A deactivated key signs nothing, on S3 or IAM.
    server.aws("iam", "update-access-key", "--user-name", "gitlab-registry",
               "--access-key-id", key["AccessKeyId"], "--status", "Inactive")
    with pytest.raises(botocore.exceptions.ClientError) as e:
        s3.get_object(Bucket="registry", Key="a")
    assert error_code(e) == "InvalidAccessKeyId"
    with pytest.raises(botocore.exceptions.ClientError) as e:
        iam(server, key["AccessKeyId"], key["SecretAccessKey"]).get_user()
    assert error_code(e) == "InvalidClientTokenId"

    # IAM's rules on deletion, in IAM's words.
    assert cli_error(server.aws("iam", "delete-user", "--user-name", "gitlab-registry", check=False)) == (
        "An error occurred (DeleteConflict) when calling the DeleteUser operation: "
        "Cannot delete entity, must delete access keys first."
    )
    server.aws("iam", "delete-access-key", "--user-name", "gitlab-registry", "--access-key-id", key["AccessKeyId"])
    server.aws("iam", "delete-user-policy", "--user-name", "gitlab-registry", "--policy-name", "rw")
    server.aws("iam", "delete-user", "--user-name", "gitlab-registry")
    assert cli_error(server.aws("iam", "get-user", "--user-name", "gitlab-registry", check=False)) == (
        "An error occurred (NoSuchEntity) when calling the GetUser operation: "
        "The user with name gitlab-registry cannot be found."
    )


def test_errors_read_as_on_aws(server):
    server.aws("iam", "create-user", "--user-name", "bob")
    assert cli_error(server.aws("iam", "create-user", "--user-name", "bob", check=False)) == (
        "An error occurred (EntityAlreadyExists) when calling the CreateUser operation: "
        "User with name bob already exists."
    )
    server.aws("iam", "create-access-key", "--user-name", "bob")
    server.aws("iam", "create-access-key", "--user-name", "bob")
    assert cli_error(server.aws("iam", "create-access-key", "--user-name", "bob", check=False)) == (
        "An error occurred (LimitExceeded) when calling the CreateAccessKey operation: "
        "Cannot exceed quota for AccessKeysPerUser: 2"
    )
    assert cli_error(server.aws("iam", "attach-user-policy", "--user-name", "bob", "--policy-arn",
                                "arn:aws:iam::aws:policy/NoSuchPolicy", check=False)) == (
        "An error occurred (NoSuchEntity) when calling the AttachUserPolicy operation: "
        "Policy arn:aws:iam::aws:policy/NoSuchPolicy does not exist or is not attachable."
    )
    bad = cli_error(server.aws("iam", "put-user-policy", "--user-name", "bob", "--policy-name", "p",
                               "--policy-document", '{"Statement": {"Effect": "Allow"}}', check=False))
    assert bad.startswith("An error occurred (MalformedPolicyDocument) when calling the PutUserPolicy operation: ")
    bad = cli_error(server.aws("iam", "create-user", "--user-name", "bad name!", check=False))
    assert "(ValidationError)" in bad and "userName" in bad


DUPLICATE = "duplicate key: a key may appear only once in an object"


def test_duplicate_keys_are_refused_naming_where(server):
    """A JSON library keeps the last of two equal keys: `"Effect":"Deny","Effect":"Allow"` would
    allow while a reviewer reads the deny. IAM refuses two `Statement` elements; Keyless refuses
    every repeated key, and stores nothing."""
    server.aws("iam", "create-user", "--user-name", "dup")
    rw = '"Action":"s3:*","Resource":"*"'
    for doc, path in [
        ('{"Version":"2012-10-17","Statement":[{"Effect":"Deny","Effect":"Allow",%s}]}' % rw,
         "Statement[0].Effect"),
        ('{"Version":"2012-10-17","Statement":[{"Effect":"Deny",%s}],"Statement":[{"Effect":"Allow",%s}]}' % (rw, rw),
         "Statement"),
        ('{"Version":"2012-10-17","Statement":[{"Effect":"Allow",%s,"Condition":'
         '{"StringEquals":{"aws:username":"alice"},"StringEquals":{"aws:PrincipalTag/team":"ops"}}}]}' % rw,
         "Statement[0].Condition.StringEquals"),
        ('{"Version":"2012-10-17","Statement":[{"Effect":"Allow",%s,"Condition":'
         '{"StringEquals":{"aws:username":"alice","aws:username":"dup"}}}]}' % rw,
         "Statement[0].Condition.StringEquals.aws:username"),
    ]:
        assert cli_error(server.aws("iam", "put-user-policy", "--user-name", "dup", "--policy-name", "p",
                                    "--policy-document", doc, check=False)) == (
            "An error occurred (MalformedPolicyDocument) when calling the PutUserPolicy operation: "
            f"Syntax errors in policy: {path}: {DUPLICATE}"
        )
        assert cli_error(server.aws("iam", "create-policy", "--policy-name", "p",
                                    "--policy-document", doc, check=False)) == (
            "An error occurred (MalformedPolicyDocument) when calling the CreatePolicy operation: "
            f"Syntax errors in policy: {path}: {DUPLICATE}"
        )
    assert json.loads(server.aws("iam", "list-user-policies", "--user-name", "dup").stdout)["PolicyNames"] == []
    assert json.loads(server.aws("iam", "list-policies", "--scope", "Local").stdout)["Policies"] == []


def test_managed_policies_attach_and_managed_by_arn(server):
    created = json.loads(server.aws("iam", "create-policy", "--policy-name", "registry-rw",
                                    "--policy-document", READ_WRITE, "--description", "GitLab registry").stdout)["Policy"]
    arn = created["Arn"]
    assert arn == "arn:aws:iam::000000000000:policy/registry-rw"
    assert created["DefaultVersionId"] == "v1" and created["AttachmentCount"] == 0
    server.aws("iam", "create-user", "--user-name", "registry")
    server.aws("iam", "attach-user-policy", "--user-name", "registry", "--policy-arn", arn)
    server.aws("iam", "attach-user-policy", "--user-name", "registry", "--policy-arn",
               "arn:aws:iam::aws:policy/AmazonS3ReadOnlyAccess")
    attached = json.loads(server.aws("iam", "list-attached-user-policies", "--user-name", "registry").stdout)
    assert sorted(p["PolicyName"] for p in attached["AttachedPolicies"]) == ["AmazonS3ReadOnlyAccess", "registry-rw"]
    got = json.loads(server.aws("iam", "get-policy", "--policy-arn", arn).stdout)["Policy"]
    assert got["AttachmentCount"] == 1 and got["Description"] == "GitLab registry"
    version = json.loads(server.aws("iam", "get-policy-version", "--policy-arn", arn, "--version-id", "v1").stdout)
    assert version["PolicyVersion"]["Document"] == json.loads(READ_WRITE)
    aws_managed = json.loads(server.aws("iam", "get-policy-version", "--policy-arn",
                                        "arn:aws:iam::aws:policy/AmazonS3FullAccess", "--version-id", "v2").stdout)
    assert aws_managed["PolicyVersion"]["Document"]["Statement"][0]["Action"] == ["s3:*", "s3-object-lambda:*"]
    local = json.loads(server.aws("iam", "list-policies", "--scope", "Local").stdout)["Policies"]
    assert [p["PolicyName"] for p in local] == ["registry-rw"]
    assert cli_error(server.aws("iam", "delete-policy", "--policy-arn", arn, check=False)) == (
        "An error occurred (DeleteConflict) when calling the DeletePolicy operation: "
        "Cannot delete a policy attached to entities."
    )
    key = iam(server).create_access_key(UserName="registry")["AccessKey"]
    s3 = server.user(key["AccessKeyId"], key["SecretAccessKey"])
    server.client().create_bucket(Bucket="registry")
    s3.put_object(Bucket="registry", Key="blob", Body=b"layer")
    server.aws("iam", "detach-user-policy", "--user-name", "registry", "--policy-arn", arn)
    with pytest.raises(botocore.exceptions.ClientError) as e:
        s3.put_object(Bucket="registry", Key="blob2", Body=b"layer")
    assert error_code(e) == "AccessDenied"
    # AmazonS3ReadOnlyAccess still reads.
    assert s3.get_object(Bucket="registry", Key="blob")["Body"].read() == b"layer"
    server.aws("iam", "delete-policy", "--policy-arn", arn)


def test_users_call_iam_as_their_policies_allow(server):
    root = iam(server)
    root.create_user(UserName="auditor")
    root.attach_user_policy(UserName="auditor", PolicyArn="arn:aws:iam::aws:policy/IAMReadOnlyAccess")
    key = root.create_access_key(UserName="auditor")["AccessKey"]
    auditor = iam(server, key["AccessKeyId"], key["SecretAccessKey"])
    assert [u["UserName"] for u in auditor.list_users()["Users"]] == ["auditor"]
    assert auditor.get_user()["User"]["UserName"] == "auditor"
    with pytest.raises(botocore.exceptions.ClientError) as e:
        auditor.create_user(UserName="eve")
    assert error_code(e) == "AccessDenied"
    assert e.value.response["Error"]["Message"] == (
        "User: arn:aws:iam::000000000000:user/auditor is not authorized to perform: "
        "iam:CreateUser on resource: arn:aws:iam::000000000000:user/eve "
        "because no identity-based policy allows the iam:CreateUser action"
    )
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403


def test_pagination_and_state_survive_a_restart(server, keyless_bin, tmp_path):
    root = iam(server)
    for i in range(7):
        root.create_user(UserName=f"user-{i}", Path="/ci/")
    pages = list(root.get_paginator("list_users").paginate(PaginationConfig={"PageSize": 3}))
    assert [len(p["Users"]) for p in pages] == [3, 3, 1]
    assert [u["UserName"] for p in pages for u in p["Users"]] == [f"user-{i}" for i in range(7)]
    assert root.list_users(PathPrefix="/nope/")["Users"] == []
    key = root.create_access_key(UserName="user-3")["AccessKey"]
    server.stop()
    again = Server(keyless_bin, server.data_dir)
    try:
        root = iam(again)
        assert len(root.list_users()["Users"]) == 7
        user = iam(again, key["AccessKeyId"], key["SecretAccessKey"])
        with pytest.raises(botocore.exceptions.ClientError) as e:
            user.list_users()
        assert error_code(e) == "AccessDenied"  # signed and known, but without policy
    finally:
        again.stop()


def test_simulators_answer_as_awscli_expects(server, keyless_bin, tmp_path):
    server.aws("iam", "create-user", "--user-name", "registry")
    server.aws("iam", "put-user-policy", "--user-name", "registry", "--policy-name", "rw",
               "--policy-document", READ_WRITE)
    server.aws("iam", "attach-user-policy", "--user-name", "registry", "--policy-arn",
               "arn:aws:iam::aws:policy/AmazonS3ReadOnlyAccess")
    out = json.loads(server.aws(
        "iam", "simulate-principal-policy",
        "--policy-source-arn", "arn:aws:iam::000000000000:user/registry",
        "--action-names", "s3:PutObject", "s3:DeleteObject",
        "--resource-arns", "arn:aws:s3:::registry/blob",
    ).stdout)
    results = {r["EvalActionName"]: r for r in out["EvaluationResults"]}
    assert results["s3:PutObject"]["EvalDecision"] == "allowed"
    assert results["s3:PutObject"]["MatchedStatements"][0]["SourcePolicyId"] == "rw"
    assert results["s3:PutObject"]["MatchedStatements"][0]["SourcePolicyType"] == "user"
    assert results["s3:DeleteObject"]["EvalDecision"] == "implicitDeny"

    # The server's simulate-custom-policy prints what `keyless policy simulate` prints.
    for example in sorted((REPO / "examples" / "simulate").glob("*.json")):
        offline = subprocess.run([keyless_bin, "policy", "simulate", "--cli-input-json", f"file://{example}"],
                                 capture_output=True, text=True, cwd=REPO)
        assert offline.returncode == 0, offline.stderr
        online = server.aws("iam", "simulate-custom-policy", "--cli-input-json", f"file://{example}")
        assert json.loads(online.stdout) == json.loads(offline.stdout), example.name


def test_transport_errors(server):
    keys = server.keys()
    with pytest.raises(botocore.exceptions.ClientError) as e:
        iam(server, keys["aws_access_key_id"], "wrong-secret").list_users()
    assert error_code(e) == "SignatureDoesNotMatch"
    with pytest.raises(botocore.exceptions.ClientError) as e:
        iam(server, "AKIANOTAKEY000000000", "x").list_users()
    assert error_code(e) == "InvalidClientTokenId"
    req = urllib.request.Request(server.endpoint + "/", data=b"Action=ListUsers&Version=2010-05-08",
                                 headers={"Content-Type": "application/x-www-form-urlencoded"})
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(req)
    assert e.value.code == 403
    assert b"<Code>MissingAuthenticationToken</Code>" in e.value.read()
    with pytest.raises(botocore.exceptions.ClientError) as e:
        iam(server).list_users(MaxItems=5000)
    assert error_code(e) == "ValidationError"
