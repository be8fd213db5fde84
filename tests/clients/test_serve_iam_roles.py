"""IAM roles and OpenID Connect providers on the S3 port, driven by unmodified awscli and boto3:
trust policies, role policies, IAM's rules and texts, providers by URL, what survives a
restart, and roles and providers declared in `keyless serve --config`."""

import json
import subprocess

import boto3
import botocore
import pytest

from test_serve_s3 import Server, error_code, server  # noqa: F401 (the fixture)

ACCOUNT = "000000000000"
EKS = "https://oidc.eks.us-east-1.amazonaws.com/id/EXAMPLED539D4633E53DE1B71EXAMPLE"
EKS_KEY = EKS.removeprefix("https://")
EKS_ARN = f"arn:aws:iam::{ACCOUNT}:oidc-provider/{EKS_KEY}"
THUMBPRINT = "9e99a48a9960b14926bb7f3b02e22da2b0ab7280"

TRUST = {
    "Version": "2012-10-17",
    "Statement": [{
        "Effect": "Allow",
        "Principal": {"Federated": EKS_ARN},
        "Action": "sts:AssumeRoleWithWebIdentity",
        "Condition": {"StringEquals": {f"{EKS_KEY}:sub": "system:serviceaccount:gitlab:registry"}},
    }],
}

READ = json.dumps({
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::registry/*"}],
})


def iam(server):
    keys = server.keys()
    return boto3.session.Session().client(
        "iam", endpoint_url=server.endpoint, region_name="us-east-1",
        aws_access_key_id=keys["aws_access_key_id"], aws_secret_access_key=keys["aws_secret_access_key"],
    )


def cli_error(proc):
    assert proc.returncode != 0, proc.stdout
    return proc.stderr.strip()


def aws_json(server, *args):
    return json.loads(server.aws(*args).stdout)


def test_awscli_manages_a_role_and_its_policies(server, tmp_path):
    trust = tmp_path / "trust.json"
    trust.write_text(json.dumps(TRUST, indent=2))
    role = aws_json(server, "iam", "create-role", "--role-name", "gitlab-registry", "--path", "/gitlab/",
                    "--assume-role-policy-document", f"file://{trust}",
                    "--description", "GitLab registry pods", "--max-session-duration", "7200",
                    "--tags", "Key=team,Value=gitlab")["Role"]
    assert role["Arn"] == f"arn:aws:iam::{ACCOUNT}:role/gitlab/gitlab-registry"
    assert role["RoleId"].startswith("AROA") and len(role["RoleId"]) == 21
    assert role["Path"] == "/gitlab/" and role["RoleName"] == "gitlab-registry"
    # awscli decodes the URL-encoded document back to JSON, as it does on AWS.
    assert role["AssumeRolePolicyDocument"] == TRUST
    assert role["Tags"] == [{"Key": "team", "Value": "gitlab"}]

    got = aws_json(server, "iam", "get-role", "--role-name", "GITLAB-REGISTRY")["Role"]
    assert got["RoleId"] == role["RoleId"] and got["CreateDate"] == role["CreateDate"]
    assert got["MaxSessionDuration"] == 7200 and got["Description"] == "GitLab registry pods"
    assert got["RoleLastUsed"] == {}
    listed = aws_json(server, "iam", "list-roles", "--path-prefix", "/gitlab/")["Roles"]
    assert [r["RoleName"] for r in listed] == ["gitlab-registry"]
    assert "Tags" not in listed[0] and listed[0]["AssumeRolePolicyDocument"] == TRUST

    server.aws("iam", "put-role-policy", "--role-name", "gitlab-registry", "--policy-name", "read",
               "--policy-document", READ)
    doc = aws_json(server, "iam", "get-role-policy", "--role-name", "gitlab-registry", "--policy-name", "read")
    assert doc["RoleName"] == "gitlab-registry" and doc["PolicyDocument"] == json.loads(READ)
    assert aws_json(server, "iam", "list-role-policies", "--role-name", "gitlab-registry")["PolicyNames"] == ["read"]
    server.aws("iam", "attach-role-policy", "--role-name", "gitlab-registry",
               "--policy-arn", "arn:aws:iam::aws:policy/AmazonS3ReadOnlyAccess")
    attached = aws_json(server, "iam", "list-attached-role-policies", "--role-name", "gitlab-registry")
    assert attached["AttachedPolicies"] == [{
        "PolicyName": "AmazonS3ReadOnlyAccess", "PolicyArn": "arn:aws:iam::aws:policy/AmazonS3ReadOnlyAccess",
    }]

    # IAM's rules on deletion, in IAM's words.
    assert cli_error(server.aws("iam", "delete-role", "--role-name", "gitlab-registry", check=False)) == (
        "An error occurred (DeleteConflict) when calling the DeleteRole operation: "
        "Cannot delete entity, must delete policies first."
    )
    server.aws("iam", "delete-role-policy", "--role-name", "gitlab-registry", "--policy-name", "read")
    assert cli_error(server.aws("iam", "delete-role", "--role-name", "gitlab-registry", check=False)) == (
        "An error occurred (DeleteConflict) when calling the DeleteRole operation: "
        "Cannot delete entity, must detach all policies first."
    )
    server.aws("iam", "detach-role-policy", "--role-name", "gitlab-registry",
               "--policy-arn", "arn:aws:iam::aws:policy/AmazonS3ReadOnlyAccess")
    server.aws("iam", "delete-role", "--role-name", "gitlab-registry")
    assert cli_error(server.aws("iam", "get-role", "--role-name", "gitlab-registry", check=False)) == (
        "An error occurred (NoSuchEntity) when calling the GetRole operation: "
        "The role with name gitlab-registry cannot be found."
    )


def test_role_errors_read_as_on_aws(server):
    trust = json.dumps(TRUST)
    server.aws("iam", "create-role", "--role-name", "ci", "--assume-role-policy-document", trust)
    assert cli_error(server.aws("iam", "create-role", "--role-name", "CI",
                                "--assume-role-policy-document", trust, check=False)) == (
        "An error occurred (EntityAlreadyExists) when calling the CreateRole operation: "
        "Role with name CI already exists."
    )
    with_resource = json.dumps({"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"},
        "Action": "sts:AssumeRole", "Resource": "*"}]})
    assert cli_error(server.aws("iam", "create-role", "--role-name", "bad",
                                "--assume-role-policy-document", with_resource, check=False)) == (
        "An error occurred (MalformedPolicyDocument) when calling the CreateRole operation: "
        "Has prohibited field Resource"
    )
    not_sts = json.dumps({"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "s3:GetObject"}]})
    assert cli_error(server.aws("iam", "update-assume-role-policy", "--role-name", "ci",
                                "--policy-document", not_sts, check=False)) == (
        "An error occurred (MalformedPolicyDocument) when calling the UpdateAssumeRolePolicy operation: "
        "AssumeRole policy may only specify STS AssumeRole actions."
    )
    too_long = cli_error(server.aws("iam", "update-role", "--role-name", "ci",
                                    "--max-session-duration", "43201", check=False))
    assert "(ValidationError)" in too_long and "less than or equal to 43200" in too_long
    assert cli_error(server.aws("iam", "create-role", "--role-name", "bounded", "--assume-role-policy-document",
                                trust, "--permissions-boundary", f"arn:aws:iam::{ACCOUNT}:policy/none",
                                check=False)) == (
        "An error occurred (NoSuchEntity) when calling the CreateRole operation: "
        f"Scope ARN: arn:aws:iam::{ACCOUNT}:policy/none does not exist or is not attachable."
    )
    bounded = aws_json(server, "iam", "create-role", "--role-name", "bounded", "--assume-role-policy-document",
                       trust, "--permissions-boundary", "arn:aws:iam::aws:policy/AmazonS3ReadOnlyAccess")
    assert bounded["Role"]["PermissionsBoundary"] == {
        "PermissionsBoundaryType": "PermissionsBoundaryPolicy",
        "PermissionsBoundaryArn": "arn:aws:iam::aws:policy/AmazonS3ReadOnlyAccess",
    }
    server.aws("iam", "update-role", "--role-name", "ci", "--max-session-duration", "43200",
               "--description", "CI jobs")
    got = aws_json(server, "iam", "get-role", "--role-name", "ci")["Role"]
    assert got["MaxSessionDuration"] == 43200 and got["Description"] == "CI jobs"


DUPLICATE = "duplicate key: a key may appear only once in an object"


def test_duplicate_keys_in_trust_and_role_policies_are_refused(server):
    """`{"AWS": "...:user/alice", "AWS": "*"}` reads as alice and, to a JSON library, is anyone."""
    dup_trust = ('{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":'
                 '{"AWS":"arn:aws:iam::%s:user/alice","AWS":"*"},"Action":"sts:AssumeRole"}]}' % ACCOUNT)
    assert cli_error(server.aws("iam", "create-role", "--role-name", "dup",
                                "--assume-role-policy-document", dup_trust, check=False)) == (
        "An error occurred (MalformedPolicyDocument) when calling the CreateRole operation: "
        f"Syntax errors in policy: Statement[0].Principal.AWS: {DUPLICATE}"
    )
    assert "(NoSuchEntity)" in cli_error(server.aws("iam", "get-role", "--role-name", "dup", check=False))
    # IAM's trust checks read the document as the compiler does: the duplicate is what is refused.
    hides_an_action = ('{"Version":"2012-10-17","Statement":{"Effect":"Allow","Principal":{"Service":"ec2.amazonaws.com"},'
                      '"Action":"sts:AssumeRole","Action":"s3:*"}}')
    server.aws("iam", "create-role", "--role-name", "ci", "--assume-role-policy-document", json.dumps(TRUST))
    assert cli_error(server.aws("iam", "update-assume-role-policy", "--role-name", "ci",
                                "--policy-document", hides_an_action, check=False)) == (
        "An error occurred (MalformedPolicyDocument) when calling the UpdateAssumeRolePolicy operation: "
        f"Syntax errors in policy: Statement.Action: {DUPLICATE}"
    )
    assert aws_json(server, "iam", "get-role", "--role-name", "ci")["Role"]["AssumeRolePolicyDocument"] == TRUST
    two_statements = ('{"Version":"2012-10-17","Statement":{"Effect":"Deny","Action":"s3:*","Resource":"*"},'
                      '"Statement":{"Effect":"Allow","Action":"s3:*","Resource":"*"}}')
    assert cli_error(server.aws("iam", "put-role-policy", "--role-name", "ci", "--policy-name", "p",
                                "--policy-document", two_statements, check=False)) == (
        "An error occurred (MalformedPolicyDocument) when calling the PutRolePolicy operation: "
        f"Syntax errors in policy: Statement: {DUPLICATE}"
    )
    assert aws_json(server, "iam", "list-role-policies", "--role-name", "ci")["PolicyNames"] == []


def test_boto3_pages_through_roles(server):
    client = iam(server)
    names = [f"role-{i:02}" for i in range(7)]
    for name in names:
        client.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(TRUST))
    pages = list(client.get_paginator("list_roles").paginate(PaginationConfig={"PageSize": 3}))
    assert len(pages) == 3
    assert [r["RoleName"] for page in pages for r in page["Roles"]] == names
    with pytest.raises(botocore.exceptions.ClientError) as e:
        client.get_role_policy(RoleName="role-00", PolicyName="none")
    assert error_code(e) == "NoSuchEntity"


def test_awscli_manages_oidc_providers(server):
    arn = aws_json(server, "iam", "create-open-id-connect-provider", "--url", EKS,
                   "--client-id-list", "sts.amazonaws.com", "--thumbprint-list", THUMBPRINT)["OpenIDConnectProviderArn"]
    assert arn == EKS_ARN
    got = aws_json(server, "iam", "get-open-id-connect-provider", "--open-id-connect-provider-arn", arn)
    # As on AWS: the URL without its scheme.
    assert got["Url"] == EKS_KEY
    assert got["ClientIDList"] == ["sts.amazonaws.com"] and got["ThumbprintList"] == [THUMBPRINT]
    assert "CreateDate" in got
    listed = aws_json(server, "iam", "list-open-id-connect-providers")["OpenIDConnectProviderList"]
    assert {"Arn": arn} in listed

    server.aws("iam", "add-client-id-to-open-id-connect-provider", "--open-id-connect-provider-arn", arn,
               "--client-id", "gitlab")
    server.aws("iam", "add-client-id-to-open-id-connect-provider", "--open-id-connect-provider-arn", arn,
               "--client-id", "gitlab")
    server.aws("iam", "remove-client-id-from-open-id-connect-provider", "--open-id-connect-provider-arn", arn,
               "--client-id", "sts.amazonaws.com")
    got = aws_json(server, "iam", "get-open-id-connect-provider", "--open-id-connect-provider-arn", arn)
    assert got["ClientIDList"] == ["gitlab"]

    assert cli_error(server.aws("iam", "create-open-id-connect-provider", "--url", EKS, check=False)) == (
        "An error occurred (EntityAlreadyExists) when calling the CreateOpenIDConnectProvider operation: "
        f"Provider with url {EKS} already exists."
    )
    assert cli_error(server.aws("iam", "create-open-id-connect-provider", "--url", "http://issuer.example.com",
                                check=False)) == (
        "An error occurred (InvalidInput) when calling the CreateOpenIDConnectProvider operation: "
        "Invalid Open ID Connect Provider URL. The URL must begin with https://."
    )
    # Thumbprints are optional, and a loopback issuer may speak plain HTTP.
    local = aws_json(server, "iam", "create-open-id-connect-provider", "--url", "http://127.0.0.1:1/issuer")
    assert local["OpenIDConnectProviderArn"] == f"arn:aws:iam::{ACCOUNT}:oidc-provider/127.0.0.1:1/issuer"

    server.aws("iam", "delete-open-id-connect-provider", "--open-id-connect-provider-arn", arn)
    assert cli_error(server.aws("iam", "get-open-id-connect-provider", "--open-id-connect-provider-arn", arn,
                                check=False)) == (
        "An error occurred (NoSuchEntity) when calling the GetOpenIDConnectProvider operation: "
        f"OpenIDConnect Provider not found for arn {arn}"
    )


def test_roles_and_providers_survive_a_restart(keyless_bin, tmp_path):
    first = Server(keyless_bin, tmp_path / "data")
    try:
        client = iam(first)
        role = client.create_role(RoleName="kept", AssumeRolePolicyDocument=json.dumps(TRUST),
                                  MaxSessionDuration=10800)["Role"]
        client.put_role_policy(RoleName="kept", PolicyName="read", PolicyDocument=READ)
        client.create_open_id_connect_provider(Url=EKS, ClientIDList=["sts.amazonaws.com"])
    finally:
        first.stop()
    second = Server(keyless_bin, tmp_path / "data")
    try:
        client = iam(second)
        got = client.get_role(RoleName="kept")["Role"]
        assert got["RoleId"] == role["RoleId"] and got["MaxSessionDuration"] == 10800
        assert client.list_role_policies(RoleName="kept")["PolicyNames"] == ["read"]
        assert client.get_open_id_connect_provider(OpenIDConnectProviderArn=EKS_ARN)["Url"] == EKS_KEY
    finally:
        second.stop()


CONFIG = f"""
[[policies]]
name = "registry-rw"
document = '''{READ}'''

[[oidc_providers]]
url = "{EKS}"

[[oidc_providers]]
url = "https://gitlab.example.com"
client_ids = ["gitlab", "sts.amazonaws.com"]
thumbprints = ["{THUMBPRINT}"]

[[roles]]
name = "gitlab-registry"
path = "/gitlab/"
assume_role_policy = {{ file = "registry-trust.json" }}
policy_arns = ["arn:aws:iam::{ACCOUNT}:policy/registry-rw"]
max_session_duration = 7200
description = "GitLab registry pods"

[[roles.policies]]
name = "list"
document = '''{{"Version": "2012-10-17", "Statement": {{"Effect": "Allow", "Action": "s3:ListBucket", "Resource": "arn:aws:s3:::registry"}}}}'''
"""


def configured(keyless_bin, tmp_path, extra=""):
    conf = tmp_path / "conf"
    conf.mkdir(exist_ok=True)
    (conf / "registry-trust.json").write_text(json.dumps(TRUST))
    (conf / "keyless.toml").write_text(CONFIG + extra)
    return ["--config", str(conf / "keyless.toml")]


def test_roles_and_providers_from_the_config_file(keyless_bin, tmp_path):
    s = Server(keyless_bin, tmp_path / "data", extra=configured(keyless_bin, tmp_path))
    try:
        role = aws_json(s, "iam", "get-role", "--role-name", "gitlab-registry")["Role"]
        assert role["Arn"] == f"arn:aws:iam::{ACCOUNT}:role/gitlab/gitlab-registry"
        assert role["AssumeRolePolicyDocument"] == TRUST and role["MaxSessionDuration"] == 7200
        assert role["Description"] == "GitLab registry pods"
        attached = aws_json(s, "iam", "list-attached-role-policies", "--role-name", "gitlab-registry")
        assert [p["PolicyName"] for p in attached["AttachedPolicies"]] == ["registry-rw"]
        assert aws_json(s, "iam", "list-role-policies", "--role-name", "gitlab-registry")["PolicyNames"] == ["list"]
        eks = aws_json(s, "iam", "get-open-id-connect-provider", "--open-id-connect-provider-arn", EKS_ARN)
        assert eks["ClientIDList"] == ["sts.amazonaws.com"] and eks["ThumbprintList"] == []
        gitlab = aws_json(s, "iam", "get-open-id-connect-provider", "--open-id-connect-provider-arn",
                          f"arn:aws:iam::{ACCOUNT}:oidc-provider/gitlab.example.com")
        assert gitlab["ClientIDList"] == ["gitlab", "sts.amazonaws.com"] and gitlab["ThumbprintList"] == [THUMBPRINT]
        # A change through the API lasts until the next start, which puts back what the file says.
        s.aws("iam", "update-assume-role-policy", "--role-name", "gitlab-registry", "--policy-document",
              json.dumps({"Version": "2012-10-17", "Statement": [{
                  "Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:root"},
                  "Action": "sts:AssumeRole"}]}))
    finally:
        s.stop()
    s = Server(keyless_bin, tmp_path / "data", extra=configured(keyless_bin, tmp_path))
    try:
        role = aws_json(s, "iam", "get-role", "--role-name", "gitlab-registry")["Role"]
        assert role["AssumeRolePolicyDocument"] == TRUST
    finally:
        s.stop()


@pytest.mark.parametrize("mistake, message", [
    ("[[roles]]\nname = \"r\"\nassume_role_policy = { document = '''{\"Version\": \"2012-10-17\", "
     "\"Statement\": {\"Effect\": \"Allow\", \"Principal\": \"*\", \"Action\": \"sts:AssumeRole\", "
     "\"Resource\": \"*\"}}''' }\n",
     "roles[1].assume_role_policy: Has prohibited field Resource"),
    ("[[roles]]\nname = \"r\"\nassume_role_policy = { file = \"missing.json\" }\n",
     "roles[1].assume_role_policy.file: cannot read"),
    ("[[oidc_providers]]\nurl = \"http://issuer.example.com\"\n",
     "oidc_providers[2].url: `http://issuer.example.com`: Invalid Open ID Connect Provider URL. "
     "The URL must begin with https://."),
    ("[[oidc_providers]]\nurl = \"https://x.example\"\nthumbprints = [\"abc\"]\n",
     "oidc_providers[2].thumbprints: Thumbprint must be exactly 40 characters."),
])
def test_a_bad_role_or_provider_refuses_to_start(keyless_bin, tmp_path, mistake, message):
    proc = subprocess.run([keyless_bin, "serve", "--listen", "127.0.0.1:0", "--data-dir", str(tmp_path / "d"),
                           *configured(keyless_bin, tmp_path, mistake)], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2
    assert message in proc.stderr, proc.stderr
