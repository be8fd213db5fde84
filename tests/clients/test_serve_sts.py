"""STS and OIDC against a real `keyless serve`, driven by unmodified awscli and boto3: the
IRSA flow exactly as GitLab's troubleshooting docs run it, tokens from Keyless's own issuer and
from an external issuer (pyjwt with keys served over loopback), trust policies, session tokens
on S3, and a corpus of hostile tokens.
"""
import base64
import http.server
import json
import os
import socket
import subprocess
import threading
import time

import boto3
import botocore
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from test_serve_s3 import Server, server  # noqa: F401

ACCOUNT = "000000000000"


def issuer_of(server):
    return (server.data_dir / "oidc-issuer").read_text().strip()


def provider_arn(url):
    return f"arn:aws:iam::{ACCOUNT}:oidc-provider/{url.split('://', 1)[1]}"


def trust(provider, key, sub, aud="sts.amazonaws.com"):
    return json.dumps({
        "Version": "2012-10-17",
        "Statement": [{
            "Effect": "Allow",
            "Principal": {"Federated": provider},
            "Action": "sts:AssumeRoleWithWebIdentity",
            "Condition": {"StringEquals": {f"{key}:sub": sub, f"{key}:aud": aud}},
        }],
    })


def bucket_rw(bucket):
    return json.dumps({
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Action": ["s3:ListBucket"], "Resource": f"arn:aws:s3:::{bucket}"},
            {"Effect": "Allow", "Action": ["s3:GetObject", "s3:PutObject", "s3:DeleteObject"],
             "Resource": f"arn:aws:s3:::{bucket}/*"},
        ],
    })


def make_role(server, name, trust_doc, bucket):
    server.aws("iam", "create-role", "--role-name", name, "--assume-role-policy-document", trust_doc)
    server.aws("iam", "put-role-policy", "--role-name", name, "--policy-name", "rw", "--policy-document", bucket_rw(bucket))
    return f"arn:aws:iam::{ACCOUNT}:role/{name}"


def keyless_token(keyless_bin, server, namespace, sa, *extra):
    out = subprocess.run(
        [keyless_bin, "token", "--namespace", namespace, "--service-account", sa, "--data-dir", str(server.data_dir), *extra],
        capture_output=True, text=True,
    )
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def web_identity_env(server, role_arn, token_file):
    """What the EKS pod identity webhook injects, plus the endpoints that point at Keyless."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(
        AWS_ROLE_ARN=role_arn,
        AWS_WEB_IDENTITY_TOKEN_FILE=str(token_file),
        AWS_ENDPOINT_URL_STS=server.endpoint,
        AWS_ENDPOINT_URL_S3=server.endpoint,
        AWS_DEFAULT_REGION="us-east-1",
        AWS_CONFIG_FILE="/nonexistent",
        AWS_SHARED_CREDENTIALS_FILE="/nonexistent",
        # awscli caches assumed-role credentials under ~/.aws/cli/cache by role ARN; each test's
        # server has its own session key, so each test gets its own cache.
        HOME=str(token_file.parent),
    )
    return env


def aws_as(env, *args):
    return subprocess.run(["aws", *args], capture_output=True, text=True, env=env)


@pytest.fixture
def gitlab(server, keyless_bin, tmp_path):
    """A bucket, a role for gitlab/registry on the server's own issuer, and its token file."""
    server.aws("s3", "mb", "s3://registry")
    server.aws("s3", "mb", "s3://other")
    url = issuer_of(server)
    key = url.split("://", 1)[1]
    role = make_role(server, "gitlab-registry", trust(provider_arn(url), key, "system:serviceaccount:gitlab:registry"), "registry")
    token_file = tmp_path / "token"
    # As `keyless token > token` writes it: with a final newline.
    token_file.write_text(keyless_token(keyless_bin, server, "gitlab", "registry") + "\n")
    return role, token_file


def test_gitlab_troubleshooting_commands_work_as_on_aws(server, gitlab, tmp_path):
    role, token_file = gitlab
    env = web_identity_env(server, role, token_file)
    # GitLab's docs: `aws sts get-caller-identity` in the pod.
    who = aws_as(env, "sts", "get-caller-identity")
    assert who.returncode == 0, who.stderr
    identity = json.loads(who.stdout)
    assert identity["Account"] == ACCOUNT
    assert identity["Arn"].startswith(f"arn:aws:sts::{ACCOUNT}:assumed-role/gitlab-registry/")
    assert identity["UserId"].startswith("AROA")
    # `aws sts assume-role-with-web-identity --role-arn $AWS_ROLE_ARN --role-session-name gitlab
    #  --web-identity-token file://$AWS_WEB_IDENTITY_TOKEN_FILE`
    out = aws_as(env, "sts", "assume-role-with-web-identity", "--role-arn", role,
                 "--role-session-name", "gitlab", "--web-identity-token", f"file://{token_file}")
    assert out.returncode == 0, out.stderr
    answer = json.loads(out.stdout)
    creds = answer["Credentials"]
    assert creds["AccessKeyId"].startswith("ASIA") and len(creds["AccessKeyId"]) == 20
    assert creds["Expiration"].endswith("Z") or "+00:00" in creds["Expiration"]
    assert answer["SubjectFromWebIdentityToken"] == "system:serviceaccount:gitlab:registry"
    assert answer["AssumedRoleUser"]["Arn"] == f"arn:aws:sts::{ACCOUNT}:assumed-role/gitlab-registry/gitlab"
    assert answer["AssumedRoleUser"]["AssumedRoleId"].endswith(":gitlab")
    assert answer["Audience"] == "sts.amazonaws.com"
    assert answer["Provider"] == provider_arn(issuer_of(server))
    # Then S3 with the role: read, write and list on its bucket, nothing elsewhere.
    src = tmp_path / "blob"
    src.write_bytes(b"layer" * 1000)
    assert aws_as(env, "s3", "cp", str(src), "s3://registry/docker/blob").returncode == 0
    assert "docker/blob" in aws_as(env, "s3", "ls", "--recursive", "s3://registry").stdout
    back = tmp_path / "back"
    assert aws_as(env, "s3", "cp", "s3://registry/docker/blob", str(back)).returncode == 0
    assert back.read_bytes() == src.read_bytes()
    refused = aws_as(env, "s3", "cp", str(src), "s3://other/blob")
    assert refused.returncode != 0 and "AccessDenied" in refused.stderr
    assert aws_as(env, "s3", "ls", "s3://other").returncode != 0


def test_denied_web_identity_reads_exactly_as_on_aws(server, gitlab, keyless_bin, tmp_path):
    role, _ = gitlab
    wrong = tmp_path / "wrong"
    wrong.write_text(keyless_token(keyless_bin, server, "gitlab", "sidekiq"))
    env = web_identity_env(server, role, wrong)
    out = aws_as(env, "sts", "assume-role-with-web-identity", "--role-arn", role,
                 "--role-session-name", "gitlab", "--web-identity-token", f"file://{wrong}")
    assert out.returncode != 0
    assert out.stderr.strip() == (
        "An error occurred (AccessDenied) when calling the AssumeRoleWithWebIdentity operation: "
        "Not authorized to perform sts:AssumeRoleWithWebIdentity"
    )
    # A role that does not exist answers the same, so roles cannot be probed.
    out = aws_as(env, "sts", "assume-role-with-web-identity", "--role-arn", f"arn:aws:iam::{ACCOUNT}:role/nope",
                 "--role-session-name", "gitlab", "--web-identity-token", f"file://{wrong}")
    assert "Not authorized to perform sts:AssumeRoleWithWebIdentity" in out.stderr


def sts_unsigned(server):
    return boto3.session.Session().client(
        "sts", endpoint_url=server.endpoint, region_name="us-east-1",
        config=botocore.config.Config(signature_version=botocore.UNSIGNED),
    )


def test_boto3_default_chain_and_durations(server, gitlab):
    role, token_file = gitlab
    env_backup = dict(os.environ)
    try:
        os.environ.update(web_identity_env(server, role, token_file))
        session = boto3.session.Session()
        assert session.get_credentials().method == "assume-role-with-web-identity"
        s3 = session.client("s3")
        s3.put_object(Bucket="registry", Key="k", Body=b"v")
        assert s3.get_object(Bucket="registry", Key="k")["Body"].read() == b"v"
        with pytest.raises(botocore.exceptions.ClientError) as e:
            s3.put_object(Bucket="other", Key="k", Body=b"v")
        assert e.value.response["Error"]["Code"] == "AccessDenied"
    finally:
        os.environ.clear()
        os.environ.update(env_backup)
    sts = sts_unsigned(server)
    token = token_file.read_text()
    with pytest.raises(botocore.exceptions.ClientError) as e:
        sts.assume_role_with_web_identity(RoleArn=role, RoleSessionName="ss", WebIdentityToken=token, DurationSeconds=3601)
    assert e.value.response["Error"]["Code"] == "ValidationError"
    assert "MaxSessionDuration" in e.value.response["Error"]["Message"]
    # botocore checks the minimum itself; a raw call gets STS's own answer.
    import urllib.error
    import urllib.parse
    import urllib.request
    query = urllib.parse.urlencode({"Action": "AssumeRoleWithWebIdentity", "RoleArn": role, "RoleSessionName": "ss",
                                    "WebIdentityToken": token, "DurationSeconds": "899"})
    with pytest.raises(urllib.error.HTTPError) as raw:
        urllib.request.urlopen(f"{server.endpoint}/?{query}")
    body = raw.value.read().decode()
    assert raw.value.code == 400 and "<Code>ValidationError</Code>" in body and "greater than or equal to 900" in body
    with pytest.raises(botocore.exceptions.ClientError) as e:
        sts.assume_role_with_web_identity(RoleArn=role, RoleSessionName="bad name!", WebIdentityToken=token)
    assert e.value.response["Error"]["Code"] == "ValidationError"
    ok = sts.assume_role_with_web_identity(RoleArn=role, RoleSessionName="ss", WebIdentityToken=token, DurationSeconds=900)
    expiry = ok["Credentials"]["Expiration"].timestamp()
    assert 880 <= expiry - time.time() <= 905


def test_fog_style_get_and_s3cmd_style_post_query(server, gitlab):
    """fog sends GET /?Action=...; s3cmd POSTs /?Action=... with no body."""
    import urllib.parse
    import urllib.request
    role, token_file = gitlab
    query = urllib.parse.urlencode({
        "Action": "AssumeRoleWithWebIdentity", "Version": "2011-06-15", "RoleArn": role,
        "RoleSessionName": "fog", "WebIdentityToken": token_file.read_text(),
    })
    for method in ["GET", "POST"]:
        req = urllib.request.Request(f"{server.endpoint}/?{query}", method=method, data=b"" if method == "POST" else None)
        body = urllib.request.urlopen(req).read().decode()
        assert '<AssumeRoleWithWebIdentityResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">' in body
        assert "<AccessKeyId>ASIA" in body and "<SessionToken>" in body


def role_session(server, gitlab, **kwargs):
    role, token_file = gitlab
    creds = sts_unsigned(server).assume_role_with_web_identity(
        RoleArn=role, RoleSessionName="tt", WebIdentityToken=token_file.read_text().strip(), **kwargs
    )["Credentials"]
    return creds


def s3_with(server, creds, **override):
    values = dict(aws_access_key_id=creds["AccessKeyId"], aws_secret_access_key=creds["SecretAccessKey"],
                  aws_session_token=creds["SessionToken"])
    values.update(override)
    return boto3.session.Session().client("s3", endpoint_url=server.endpoint, region_name="us-east-1", **values)


def test_session_tokens_are_checked_on_every_request(server, gitlab):
    creds = role_session(server, gitlab)
    s3_with(server, creds).put_object(Bucket="registry", Key="a", Body=b"1")
    token = base64.b64decode(creds["SessionToken"])
    tampered = base64.b64encode(token[:-1] + bytes([token[-1] ^ 1])).decode()
    other = role_session(server, gitlab)
    cases = {
        "tampered": dict(aws_session_token=tampered),
        "another key's token": dict(aws_session_token=other["SessionToken"]),
        "garbage": dict(aws_session_token="not-a-token"),
    }
    for name, override in cases.items():
        with pytest.raises(botocore.exceptions.ClientError) as e:
            s3_with(server, creds, **override).get_object(Bucket="registry", Key="a")
        assert e.value.response["Error"]["Code"] == "InvalidToken", name
    # Without its token, a temporary key is unknown.
    with pytest.raises(botocore.exceptions.ClientError) as e:
        s3_with(server, creds, aws_session_token=None).get_object(Bucket="registry", Key="a")
    assert e.value.response["Error"]["Code"] in ("InvalidAccessKeyId", "InvalidToken")
    # STS and IAM check the token too.
    sts = boto3.session.Session().client("sts", endpoint_url=server.endpoint, region_name="us-east-1",
                                         aws_access_key_id=creds["AccessKeyId"], aws_secret_access_key=creds["SecretAccessKey"],
                                         aws_session_token=tampered)
    with pytest.raises(botocore.exceptions.ClientError) as e:
        sts.get_caller_identity()
    assert e.value.response["Error"]["Code"] == "InvalidClientTokenId"


def test_get_caller_identity_for_root_user_and_session(server, gitlab):
    keys = server.keys()
    sts = boto3.session.Session().client("sts", endpoint_url=server.endpoint, region_name="us-east-1",
                                         aws_access_key_id=keys["aws_access_key_id"], aws_secret_access_key=keys["aws_secret_access_key"])
    root = sts.get_caller_identity()
    assert root["Arn"] == f"arn:aws:iam::{ACCOUNT}:root" and root["UserId"] == ACCOUNT
    server.aws("iam", "create-user", "--user-name", "alice")
    key = json.loads(server.aws("iam", "create-access-key", "--user-name", "alice").stdout)["AccessKey"]
    alice = boto3.session.Session().client("sts", endpoint_url=server.endpoint, region_name="us-east-1",
                                           aws_access_key_id=key["AccessKeyId"], aws_secret_access_key=key["SecretAccessKey"])
    me = alice.get_caller_identity()
    assert me["Arn"] == f"arn:aws:iam::{ACCOUNT}:user/alice" and me["UserId"].startswith("AIDA")
    creds = role_session(server, gitlab)
    session = boto3.session.Session().client("sts", endpoint_url=server.endpoint, region_name="us-east-1",
                                             aws_access_key_id=creds["AccessKeyId"], aws_secret_access_key=creds["SecretAccessKey"],
                                             aws_session_token=creds["SessionToken"])
    assert session.get_caller_identity()["Arn"] == f"arn:aws:sts::{ACCOUNT}:assumed-role/gitlab-registry/tt"
    # GetSessionToken: a user's own temporary credentials.
    temp = alice.get_session_token(DurationSeconds=900)["Credentials"]
    again = boto3.session.Session().client("sts", endpoint_url=server.endpoint, region_name="us-east-1",
                                           aws_access_key_id=temp["AccessKeyId"], aws_secret_access_key=temp["SecretAccessKey"],
                                           aws_session_token=temp["SessionToken"])
    assert again.get_caller_identity()["Arn"] == f"arn:aws:iam::{ACCOUNT}:user/alice"


def test_assume_role_session_policies_and_revocation(server):
    server.aws("s3", "mb", "s3://data")
    server.aws("iam", "create-user", "--user-name", "agent")
    key = json.loads(server.aws("iam", "create-access-key", "--user-name", "agent").stdout)["AccessKey"]
    trust_doc = json.dumps({"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:user/agent"}, "Action": "sts:AssumeRole"}]})
    role = make_role(server, "worker", trust_doc, "data")
    sts = boto3.session.Session().client("sts", endpoint_url=server.endpoint, region_name="us-east-1",
                                         aws_access_key_id=key["AccessKeyId"], aws_secret_access_key=key["SecretAccessKey"])
    full = sts.assume_role(RoleArn=role, RoleSessionName="full")["Credentials"]
    s3_with(server, full).put_object(Bucket="data", Key="x", Body=b"1")
    read_only = json.dumps({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*"}]})
    narrowed = sts.assume_role(RoleArn=role, RoleSessionName="ro", Policy=read_only)
    assert 0 < narrowed["PackedPolicySize"] <= 100
    ro = s3_with(server, narrowed["Credentials"])
    assert ro.get_object(Bucket="data", Key="x")["Body"].read() == b"1"
    with pytest.raises(botocore.exceptions.ClientError) as e:
        ro.put_object(Bucket="data", Key="y", Body=b"2")
    assert e.value.response["Error"]["Code"] == "AccessDenied"
    with pytest.raises(botocore.exceptions.ClientError) as e:
        sts.assume_role(RoleArn=role, RoleSessionName="bad", Policy="{not json")
    assert e.value.response["Error"]["Code"] == "MalformedPolicyDocument"
    # Revoke every session issued so far, the way AWS's console does it.
    time.sleep(1.1)
    cutoff = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    revoke = json.dumps({"Version": "2012-10-17", "Statement": [{"Effect": "Deny", "Action": "*", "Resource": "*",
                         "Condition": {"DateLessThan": {"aws:TokenIssueTime": cutoff}}}]})
    server.aws("iam", "put-role-policy", "--role-name", "worker", "--policy-name", "revoke", "--policy-document", revoke)
    with pytest.raises(botocore.exceptions.ClientError) as e:
        s3_with(server, full).get_object(Bucket="data", Key="x")
    assert e.value.response["Error"]["Code"] == "AccessDenied"
    time.sleep(1.1)
    fresh = sts.assume_role(RoleArn=role, RoleSessionName="fresh")["Credentials"]
    assert s3_with(server, fresh).get_object(Bucket="data", Key="x")["Body"].read() == b"1"
    # Session tags need sts:TagSession in the trust policy, as on AWS: without it a caller the
    # role trusts could tag itself as another namespace's pod.
    pod_tag = [{"Key": "kubernetes-namespace", "Value": "team-b"}]
    with pytest.raises(botocore.exceptions.ClientError) as e:
        sts.assume_role(RoleArn=role, RoleSessionName="tagged", Tags=pod_tag)
    assert e.value.response["Error"]["Code"] == "AccessDenied"
    assert e.value.response["Error"]["Message"].startswith(
        f"User: arn:aws:iam::{ACCOUNT}:user/agent is not authorized to perform: sts:TagSession on resource: {role}")
    tagging = json.dumps({"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:user/agent"},
        "Action": ["sts:AssumeRole", "sts:TagSession"]}]})
    server.aws("iam", "update-assume-role-policy", "--role-name", "worker", "--policy-document", tagging)
    assert sts.assume_role(RoleArn=role, RoleSessionName="tagged", Tags=pod_tag)["Credentials"]
    # A caller the trust policy does not name is refused.
    server.aws("iam", "create-user", "--user-name", "mallory")
    mk = json.loads(server.aws("iam", "create-access-key", "--user-name", "mallory").stdout)["AccessKey"]
    mallory = boto3.session.Session().client("sts", endpoint_url=server.endpoint, region_name="us-east-1",
                                             aws_access_key_id=mk["AccessKeyId"], aws_secret_access_key=mk["SecretAccessKey"])
    with pytest.raises(botocore.exceptions.ClientError) as e:
        mallory.assume_role(RoleArn=role, RoleSessionName="mm")
    assert e.value.response["Error"]["Code"] == "AccessDenied"


def test_a_session_policy_with_a_duplicate_key_is_refused(server, tmp_path):
    server.aws("s3", "mb", "s3://data")
    server.aws("iam", "create-user", "--user-name", "agent")
    key = json.loads(server.aws("iam", "create-access-key", "--user-name", "agent").stdout)["AccessKey"]
    trust_doc = json.dumps({"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:user/agent"}, "Action": "sts:AssumeRole"}]})
    role = make_role(server, "worker", trust_doc, "data")
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(AWS_ACCESS_KEY_ID=key["AccessKeyId"], AWS_SECRET_ACCESS_KEY=key["SecretAccessKey"],
               AWS_DEFAULT_REGION="us-east-1", AWS_CONFIG_FILE="/nonexistent",
               AWS_SHARED_CREDENTIALS_FILE="/nonexistent", HOME=str(tmp_path))
    # Read as written, the session may only read; to a JSON library, it may also write.
    policy = ('{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:GetObject",'
              '"Action":"s3:*","Resource":"*"}]}')
    out = aws_as(env, "--endpoint-url", server.endpoint, "sts", "assume-role", "--role-arn", role,
                 "--role-session-name", "dup", "--policy", policy)
    assert out.returncode != 0, out.stdout
    assert out.stderr.strip() == (
        "An error occurred (MalformedPolicyDocument) when calling the AssumeRole operation: "
        "Statement[0].Action: duplicate key: a key may appear only once in an object"
    )
    # Without the duplicate, the same call works.
    ok = aws_as(env, "--endpoint-url", server.endpoint, "sts", "assume-role", "--role-arn", role,
                "--role-session-name", "dup", "--policy", policy.replace('"Action":"s3:*",', ""))
    assert ok.returncode == 0, ok.stderr


class _Issuer(http.server.BaseHTTPRequestHandler):
    documents = {}

    def do_GET(self):
        body = self.documents.get(self.path)
        if body is None:
            self.send_response(404)
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(body.encode())

    def log_message(self, *args):
        pass


@pytest.fixture
def external_issuer():
    """An OIDC issuer on loopback made by another implementation: pyjwt signs, a plain HTTP
    server publishes discovery and keys (RSA and P-256)."""
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ec_key = ec.generate_private_key(ec.SECP256R1())
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Issuer)
    url = f"http://127.0.0.1:{httpd.server_address[1]}"
    jwks = {"keys": []}
    for kid, key in [("rsa1", rsa_key), ("ec1", ec_key)]:
        jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()) if kid == "rsa1" else jwt.algorithms.ECAlgorithm.to_jwk(key.public_key()))
        jwk.update(kid=kid, use="sig")
        jwks["keys"].append(jwk)
    _Issuer.documents = {
        "/.well-known/openid-configuration": json.dumps({"issuer": url, "jwks_uri": f"{url}/keys"}),
        "/keys": json.dumps(jwks),
    }
    threading.Thread(target=httpd.serve_forever, daemon=True).start()

    def sign(claims=None, alg="RS256", kid=None, key=None, headers=None):
        now = int(time.time())
        body = {"iss": url, "sub": "system:serviceaccount:ci:runner", "aud": "sts.amazonaws.com",
                "iat": now, "nbf": now, "exp": now + 600}
        body.update(claims or {})
        body = {k: v for k, v in body.items() if v is not None}
        signer = key or (rsa_key if alg.startswith(("RS", "PS")) else ec_key)
        hdr = {"kid": kid or ("rsa1" if alg.startswith(("RS", "PS")) else "ec1")}
        hdr.update(headers or {})
        return jwt.encode(body, signer, algorithm=alg, headers=hdr)

    yield url, sign, rsa_key
    httpd.shutdown()


def test_external_issuer_tokens_and_hostile_corpus(server, external_issuer):
    url, sign, rsa_key = external_issuer
    server.aws("iam", "create-open-id-connect-provider", "--url", url, "--client-id-list", "sts.amazonaws.com")
    server.aws("s3", "mb", "s3://ci-artifacts")
    key = url.split("://", 1)[1]
    role = make_role(server, "ci-runner", trust(provider_arn(url), key, "system:serviceaccount:ci:runner"), "ci-artifacts")
    sts = sts_unsigned(server)

    def assume(token):
        return sts.assume_role_with_web_identity(RoleArn=role, RoleSessionName="ci", WebIdentityToken=token)

    for alg in ["RS256", "ES256", "PS256"]:
        creds = assume(sign(alg=alg))["Credentials"]
        s3_with(server, creds).put_object(Bucket="ci-artifacts", Key=alg, Body=b"ok")

    now = int(time.time())
    other_rsa = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    header, payload, signature = sign().split(".")
    forged_claims = base64.urlsafe_b64encode(json.dumps({
        "iss": url, "sub": "system:serviceaccount:ci:runner", "aud": "sts.amazonaws.com", "exp": now + 600,
    }).encode()).rstrip(b"=").decode()
    public_pem = rsa_key.public_key().public_bytes(
        encoding=__import__("cryptography.hazmat.primitives.serialization", fromlist=["x"]).Encoding.PEM,
        format=__import__("cryptography.hazmat.primitives.serialization", fromlist=["x"]).PublicFormat.SubjectPublicKeyInfo)

    def unsigned(alg):
        h = base64.urlsafe_b64encode(json.dumps({"alg": alg, "kid": "rsa1"}).encode()).rstrip(b"=").decode()
        return f"{h}.{payload}."

    def hmac_with_public_key():
        import hashlib
        import hmac as _hmac
        h = base64.urlsafe_b64encode(json.dumps({"alg": "HS256", "kid": "rsa1"}).encode()).rstrip(b"=").decode()
        mac = _hmac.new(public_pem, f"{h}.{payload}".encode(), hashlib.sha256).digest()
        return f"{h}.{payload}.{base64.urlsafe_b64encode(mac).rstrip(b'=').decode()}"

    hostile = {
        "alg none": (unsigned("none"), "InvalidIdentityToken"),
        "alg None": (unsigned("None"), "InvalidIdentityToken"),
        "HS256 keyed with the public key": (hmac_with_public_key(), "InvalidIdentityToken"),
        "claims swapped under a valid signature": (f"{header}.{forged_claims}.{signature}", "InvalidIdentityToken"),
        "signed by a stranger's key": (sign(key=other_rsa), "InvalidIdentityToken"),
        "unknown kid": (sign(kid="nope"), "InvalidIdentityToken"),
        "expired": (sign({"exp": now - 3600, "iat": now - 7200, "nbf": now - 7200}), "ExpiredTokenException"),
        "not yet valid": (sign({"nbf": now + 3600}), "InvalidIdentityToken"),
        "wrong audience": (sign({"aud": "someone-else"}), "InvalidIdentityToken"),
        "issuer not registered": (sign({"iss": "https://evil.example"}), "InvalidIdentityToken"),
        "issuer with a trailing slash": (sign({"iss": url + "/"}), "InvalidIdentityToken"),
        "no signature": (f"{header}.{payload}.", "InvalidIdentityToken"),
        "two parts": (f"{header}.{payload}", "InvalidIdentityToken"),
        "oversized": (sign({"pad": "x" * 17000}), None),
        "not a JWT": ("hello-world", "InvalidIdentityToken"),
        "ES256 signature checked with the RSA key": (sign(alg="ES256", kid="rsa1"), "InvalidIdentityToken"),
        "wrong subject": (sign({"sub": "system:serviceaccount:ci:other"}), "AccessDenied"),
    }
    for name, (token, code) in hostile.items():
        with pytest.raises(botocore.exceptions.ClientError) as e:
            assume(token)
        got = e.value.response["Error"]["Code"]
        if code is None:
            assert got in ("InvalidIdentityToken", "ValidationError"), name
        else:
            assert got == code, f"{name}: {got} {e.value}"


def test_token_discovery_rotation_and_create_service_account(server, keyless_bin, tmp_path):
    import urllib.request
    url = issuer_of(server)
    discovery = json.loads(urllib.request.urlopen(f"{url}/.well-known/openid-configuration").read())
    assert discovery["issuer"] == url and discovery["jwks_uri"] == f"{url}/.well-known/jwks.json"
    jwks = json.loads(urllib.request.urlopen(discovery["jwks_uri"]).read())
    assert [k["kty"] for k in jwks["keys"]] == ["EC"] and all("kid" in k and "x5c" not in k for k in jwks["keys"])
    token = keyless_token(keyless_bin, server, "gitlab", "webservice", "--duration", "10m")
    header = jwt.get_unverified_header(token)
    claims = jwt.decode(token, jwt.PyJWK(jwks["keys"][0]).key, algorithms=["ES256"], audience="sts.amazonaws.com", issuer=url)
    assert header["kid"] == jwks["keys"][0]["kid"]
    assert claims["sub"] == "system:serviceaccount:gitlab:webservice"
    assert claims["kubernetes.io"]["namespace"] == "gitlab"
    assert claims["kubernetes.io"]["serviceaccount"]["name"] == "webservice"
    assert claims["exp"] - claims["iat"] == 600 and claims["nbf"] <= claims["iat"]
    # create-service-account, as eksctl does it.
    server.aws("s3", "mb", "s3://uploads")
    env = dict(os.environ, AWS_ACCESS_KEY_ID="", AWS_SECRET_ACCESS_KEY="")
    out = subprocess.run(
        [keyless_bin, "iam", "create-service-account", "--namespace", "gitlab", "--name", "webservice",
         "--attach-policy-arn", "arn:aws:iam::aws:policy/AmazonS3FullAccess",
         "--endpoint-url", server.endpoint, "--data-dir", str(server.data_dir)],
        capture_output=True, text=True, env=env,
    )
    assert out.returncode == 0, out.stderr
    role = f"arn:aws:iam::{ACCOUNT}:role/keyless-gitlab-webservice"
    assert f'eks.amazonaws.com/role-arn: "{role}"' in out.stdout
    assert "kind: ServiceAccount" in out.stdout and "namespace: gitlab" in out.stdout
    token_file = tmp_path / "wtoken"
    token_file.write_text(token)
    env = web_identity_env(server, role, token_file)
    assert aws_as(env, "s3", "ls", "s3://uploads").returncode == 0
    # Rotation: the new key signs, the old one stays published so earlier tokens still verify.
    rotated = subprocess.run([keyless_bin, "oidc", "rotate", "--data-dir", str(server.data_dir)], capture_output=True, text=True)
    assert rotated.returncode == 0, rotated.stderr
    jwks = json.loads(urllib.request.urlopen(discovery["jwks_uri"]).read())
    assert len(jwks["keys"]) == 2
    fresh = keyless_token(keyless_bin, server, "gitlab", "webservice")
    assert jwt.get_unverified_header(fresh)["kid"] != header["kid"]
    sts = sts_unsigned(server)
    for t in [token, fresh]:
        sts.assume_role_with_web_identity(RoleArn=role, RoleSessionName="rot", WebIdentityToken=t)


@pytest.mark.skipif(not __import__("shutil").which("rclone"), reason="rclone is not installed")
def test_rclone_env_auth_with_web_identity(server, gitlab, tmp_path):
    role, token_file = gitlab
    env = web_identity_env(server, role, token_file)
    env["RCLONE_CONFIG"] = str(tmp_path / "rclone.conf")
    remote = ["--s3-provider=Other", "--s3-env-auth", f"--s3-endpoint={server.endpoint}", "--s3-region=us-east-1",
              "--retries=1", "--low-level-retries=1",
              # A role without s3:CreateBucket, as on AWS: rclone must not try to create the bucket.
              "--s3-no-check-bucket"]
    src = tmp_path / "up.txt"
    src.write_text("from rclone with a role\n")
    up = subprocess.run(["rclone", "copyto", str(src), ":s3:registry/rclone/up.txt", *remote], capture_output=True, text=True, env=env)
    assert up.returncode == 0, up.stderr
    listed = subprocess.run(["rclone", "lsf", ":s3:registry/rclone", *remote], capture_output=True, text=True, env=env)
    assert listed.stdout.split() == ["up.txt"], listed.stderr
    denied = subprocess.run(["rclone", "lsf", ":s3:other", *remote], capture_output=True, text=True, env=env)
    assert denied.returncode != 0


def test_jwks_file_of_a_provider_with_an_upper_case_scheme_is_used(keyless_bin, tmp_path):
    """Regression: IAM filed `HTTPS://Issuer.example/ci` under one key and the binary its
    `jwks_file` under another (the scheme was stripped only in lower case), so the file was
    never used and STS tried, and failed, to fetch keys from the unreachable issuer. Scheme and
    host are case-insensitive (the provider's ARN names the host in lower case); `iss` is the
    URL exactly as declared."""
    url = "HTTPS://Issuer.example/ci"
    key = "issuer.example/ci"
    signer = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(signer.public_key()))
    jwk.update(kid="file1", use="sig")
    conf = tmp_path / "conf"
    conf.mkdir()
    (conf / "issuer-jwks.json").write_text(json.dumps({"keys": [jwk]}))
    (conf / "keyless.toml").write_text(
        f'[[oidc_providers]]\nurl = "{url}"\njwks_file = "issuer-jwks.json"\n\n[[buckets]]\nname = "ci-artifacts"\n')
    server = Server(keyless_bin, tmp_path / "data", ["--config", str(conf / "keyless.toml")])
    try:
        listed = json.loads(server.aws("iam", "list-open-id-connect-providers").stdout)
        assert f"arn:aws:iam::{ACCOUNT}:oidc-provider/{key}" in [p["Arn"] for p in listed["OpenIDConnectProviderList"]]
        role = make_role(server, "ci-upper", trust(f"arn:aws:iam::{ACCOUNT}:oidc-provider/{key}", key,
                                                   "system:serviceaccount:ci:runner"), "ci-artifacts")
        now = int(time.time())
        token = jwt.encode({"iss": url, "sub": "system:serviceaccount:ci:runner", "aud": "sts.amazonaws.com",
                            "iat": now, "exp": now + 600}, signer, algorithm="RS256", headers={"kid": "file1"})
        creds = sts_unsigned(server).assume_role_with_web_identity(
            RoleArn=role, RoleSessionName="upper", WebIdentityToken=token)["Credentials"]
        s3_with(server, creds).put_object(Bucket="ci-artifacts", Key="upper", Body=b"ok")
    finally:
        server.stop()


def test_web_identity_sessions_are_tagged_with_the_pod_for_abac(keyless_bin, tmp_path):
    """A service-account token's `kubernetes.io` claims tag the session as EKS Pod Identity
    names them (`kubernetes-namespace`, `-service-account`, `-pod-name`, `-pod-uid`), so one role
    whose policy reads `${aws:PrincipalTag/kubernetes-namespace}` keeps each namespace in its
    own prefix; CloudTrail's record of the exchange lists them as `principalTags`."""
    audit = tmp_path / "audit.jsonl"
    server = Server(keyless_bin, tmp_path / "data", extra=["--audit-log", str(audit)])
    try:
        issuer = issuer_of(server)
        key = issuer.split("://", 1)[1]
        server.client().create_bucket(Bucket="uploads")
        doc = json.dumps({"Version": "2012-10-17", "Statement": [{
            "Effect": "Allow", "Principal": {"Federated": provider_arn(issuer)},
            "Action": "sts:AssumeRoleWithWebIdentity",
            "Condition": {"StringEquals": {f"{key}:aud": "sts.amazonaws.com"},
                          "StringLike": {f"{key}:sub": "system:serviceaccount:*:app"}}}]})
        server.aws("iam", "create-role", "--role-name", "shared", "--assume-role-policy-document", doc)
        server.aws("iam", "put-role-policy", "--role-name", "shared", "--policy-name", "by-namespace",
                   "--policy-document", json.dumps({"Version": "2012-10-17", "Statement": [{
                       "Effect": "Allow", "Action": ["s3:PutObject", "s3:GetObject"],
                       "Resource": "arn:aws:s3:::uploads/${aws:PrincipalTag/kubernetes-namespace}/*"}]}))
        role = f"arn:aws:iam::{ACCOUNT}:role/shared"
        sts = boto3.client("sts", endpoint_url=server.endpoint, region_name="us-east-1",
                           aws_access_key_id="x", aws_secret_access_key="x")

        def s3_of(namespace, pod, uid):
            token = keyless_token(keyless_bin, server, namespace, "app", "--pod-name", pod, "--pod-uid", uid)
            creds = sts.assume_role_with_web_identity(RoleArn=role, RoleSessionName=pod,
                                                      WebIdentityToken=token)["Credentials"]
            return boto3.client("s3", endpoint_url=server.endpoint, region_name="us-east-1",
                                aws_access_key_id=creds["AccessKeyId"],
                                aws_secret_access_key=creds["SecretAccessKey"],
                                aws_session_token=creds["SessionToken"])

        team_a = s3_of("team-a", "app-0", "uid-a")
        team_b = s3_of("team-b", "app-0", "uid-b")
        team_a.put_object(Bucket="uploads", Key="team-a/x", Body=b"a")
        team_b.put_object(Bucket="uploads", Key="team-b/x", Body=b"b")
        for client, key_name in ((team_a, "team-b/x"), (team_b, "team-a/x")):
            with pytest.raises(botocore.exceptions.ClientError) as refused:
                client.put_object(Bucket="uploads", Key=key_name, Body=b"no")
            assert refused.value.response["Error"]["Code"] == "AccessDenied"
    finally:
        server.stop()
    records = [json.loads(line) for line in audit.read_text().splitlines() if line.strip()]
    from test_audit import check_shape  # here: test_audit imports this module

    for record in records:
        check_shape(record)
    issued = [r["requestParameters"].get("principalTags") for r in records
              if r["eventName"] == "AssumeRoleWithWebIdentity" and not r.get("errorCode")]
    assert {"kubernetes-namespace": "team-a", "kubernetes-service-account": "app",
            "kubernetes-pod-name": "app-0", "kubernetes-pod-uid": "uid-a"} in issued, issued
    put = [r for r in records if r["eventName"] == "PutObject" and not r.get("errorCode")
           and r["requestParameters"].get("key") == "team-b/x"]
    assert put[0]["userIdentity"]["sessionContext"]["sessionTags"]["kubernetes-pod-uid"] == "uid-b"


def test_issuance_limits_throttle_a_flood_and_cap_the_session(keyless_bin, tmp_path):
    """`--sts-principal-rate 1` (bursts of 2): one service account's flood of
    AssumeRoleWithWebIdentity calls is answered `Throttling`, which botocore retries until the
    bucket refills, while another service account is served at once; `--sts-max-session-duration
    30m` caps sessions. The refusals are counted in the metrics by their code."""
    from test_metrics import admin_of, scrape, value

    server = Server(keyless_bin, tmp_path / "data",
                    extra=["--admin-listen", "127.0.0.1:0", "--sts-principal-rate", "1",
                           "--sts-role-rate", "100", "--sts-max-session-duration", "30m"])
    try:
        admin = admin_of(server)
        issuer = issuer_of(server)
        key = issuer.split("://", 1)[1]
        server.client().create_bucket(Bucket="data")
        doc = json.dumps({"Version": "2012-10-17", "Statement": [{
            "Effect": "Allow", "Principal": {"Federated": provider_arn(issuer)},
            "Action": "sts:AssumeRoleWithWebIdentity",
            "Condition": {"StringLike": {f"{key}:sub": "system:serviceaccount:ci:*"}}}]})
        role = make_role(server, "ci", doc, "data")
        no_retries = botocore.config.Config(retries={"max_attempts": 1, "mode": "standard"})
        sts = boto3.client("sts", endpoint_url=server.endpoint, region_name="us-east-1",
                           aws_access_key_id="x", aws_secret_access_key="x", config=no_retries)
        flood = keyless_token(keyless_bin, server, "ci", "flood")
        calm = keyless_token(keyless_bin, server, "ci", "calm")

        def assume(token, client=sts, **kw):
            return client.assume_role_with_web_identity(RoleArn=role, RoleSessionName="ci-session",
                                                        WebIdentityToken=token, **kw)

        # The burst of two goes through; the flood is throttled within the second.
        assume(flood)
        throttled = 0
        for _ in range(20):
            try:
                assume(flood)
            except botocore.exceptions.ClientError as e:
                assert e.response["Error"]["Code"] == "Throttling", e.response
                assert e.response["Error"]["Message"] == "Rate exceeded"
                assert e.response["ResponseMetadata"]["HTTPStatusCode"] == 400
                throttled += 1
                break
        assert throttled == 1
        # Another service account of the same role is not starved.
        creds = assume(calm)["Credentials"]
        # The session is capped: 30 minutes when none is asked for, and when an hour is (the
        # role allows it: the cap is the operator's, a shorter session and not a refusal).
        left = creds["Expiration"].timestamp() - time.time()
        assert 1700 < left <= 1800, left
        longer = assume(calm, DurationSeconds=3600)["Credentials"]
        assert 1700 < longer["Expiration"].timestamp() - time.time() <= 1800
        # Past the role's own maximum is refused as ever.
        with pytest.raises(botocore.exceptions.ClientError) as e:
            assume(calm, DurationSeconds=43200)
        assert e.value.response["Error"]["Code"] == "ValidationError"
        # botocore retries Throttling with backoff: the flood's next call gets through.
        patient = boto3.client("sts", endpoint_url=server.endpoint, region_name="us-east-1",
                               aws_access_key_id="x", aws_secret_access_key="x",
                               config=botocore.config.Config(retries={"max_attempts": 8, "mode": "standard"}))
        assert assume(flood, client=patient)["Credentials"]["AccessKeyId"].startswith("ASIA")
        _, samples = scrape(admin)
    finally:
        server.stop()
    assert value(samples, "keyless_sts_refusals_total", operation="AssumeRoleWithWebIdentity",
                 reason="Throttling") >= throttled


def test_fetches_from_trusted_issuers_are_counted(keyless_bin, tmp_path, external_issuer):
    """`keyless_oidc_fetches_total` counts what the server fetched from the OIDC issuers it
    trusts, by document and result: the external issuer's discovery document and key set once
    for its first token (and not again for the next), and a failed fetch from an issuer that is
    down; each fetch timed."""
    from test_metrics import admin_of, scrape, value

    url, sign, _ = external_issuer
    server = Server(keyless_bin, tmp_path / "data", extra=["--admin-listen", "127.0.0.1:0"])
    try:
        admin = admin_of(server)
        server.aws("iam", "create-open-id-connect-provider", "--url", url, "--client-id-list",
                   "sts.amazonaws.com")
        server.aws("s3", "mb", "s3://ci-artifacts")
        key = url.split("://", 1)[1]
        role = make_role(server, "ci-runner",
                         trust(provider_arn(url), key, "system:serviceaccount:ci:runner"),
                         "ci-artifacts")
        sts = sts_unsigned(server)
        for _ in range(2):
            sts.assume_role_with_web_identity(RoleArn=role, RoleSessionName="ci",
                                              WebIdentityToken=sign())
        _, samples = scrape(admin)
        assert value(samples, "keyless_oidc_fetches_total", document="discovery", result="ok") == 1
        assert value(samples, "keyless_oidc_fetches_total", document="keys", result="ok") == 1
        assert value(samples, "keyless_oidc_fetch_duration_seconds_count") == 2

        # An issuer nobody serves: its provider exists, its documents cannot be had.
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            down = f"http://127.0.0.1:{s.getsockname()[1]}"
        server.aws("iam", "create-open-id-connect-provider", "--url", down, "--client-id-list",
                   "sts.amazonaws.com")
        down_key = down.split("://", 1)[1]
        down_role = make_role(server, "down-runner",
                              trust(provider_arn(down), down_key, "system:serviceaccount:ci:runner"),
                              "ci-artifacts")
        token = sign(claims={"iss": down})
        with pytest.raises(botocore.exceptions.ClientError):
            sts.assume_role_with_web_identity(RoleArn=down_role, RoleSessionName="ci",
                                              WebIdentityToken=token)
        _, samples = scrape(admin)
        assert value(samples, "keyless_oidc_fetches_total", document="discovery",
                     result="error") >= 1, samples
        assert value(samples, "keyless_oidc_fetches_total", document="keys", result="ok") == 1
    finally:
        server.stop()
