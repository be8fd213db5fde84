"""The audit trail (`keyless serve --audit-log`) and `keyless audit`, driven by unmodified awscli
and boto3: S3, IAM and STS requests (an IRSA flow among them) each leave one CloudTrail-format
record, with the response's request id; a denial's record says which policy refused, and awscli
prints AWS's detailed AccessDenied; no record holds a secret key, session token, web identity
token or signature; an HTTP endpoint that fails at first still gets every record, in CloudTrail's
`{"Records": [...]}` batches.
"""
import http.server
import json
import os
import subprocess
import threading
import urllib.parse
import urllib.request

import boto3
import botocore
import pytest

from test_serve_s3 import Server
from test_serve_sts import keyless_token, make_role, trust, issuer_of, provider_arn

ACCOUNT = "000000000000"

# CloudTrail's record, as its User Guide describes the fields every record has.
REQUIRED = {
    "eventVersion": str, "userIdentity": dict, "eventTime": str, "eventSource": str,
    "eventName": str, "awsRegion": str, "sourceIPAddress": str, "userAgent": str,
    "requestID": str, "eventID": str, "readOnly": bool, "eventType": str,
    "managementEvent": bool, "recipientAccountId": str, "eventCategory": str,
}


def check_shape(record):
    for name, kind in REQUIRED.items():
        assert isinstance(record.get(name), kind), (name, record)
    assert record["eventVersion"] == "1.11"
    assert record["eventType"] == "AwsApiCall"
    assert record["eventCategory"] in ("Data", "Management")
    assert record["eventSource"] in ("s3.amazonaws.com", "iam.amazonaws.com", "sts.amazonaws.com")
    assert "requestParameters" in record and "responseElements" in record
    assert record["userIdentity"]["type"] in (
        "Root", "IAMUser", "AssumedRole", "WebIdentityUser", "AWSAccount", "Unknown")
    assert record["eventTime"].endswith("Z") and len(record["eventTime"]) == 20
    for resource in record.get("resources", []):
        assert set(resource) <= {"ARN", "accountId", "type"} and resource["ARN"].startswith("arn:aws:")


def read_trail(path):
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def aws_env(**extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(AWS_DEFAULT_REGION="us-east-1", AWS_CONFIG_FILE="/nonexistent", **extra)
    return env


def test_every_request_leaves_a_cloudtrail_record(keyless_bin, tmp_path):
    trail = tmp_path / "audit.jsonl"
    server = Server(keyless_bin, tmp_path / "data", extra=["--audit-log", str(trail)])
    secrets = []
    try:
        s3 = server.client()
        s3.create_bucket(Bucket="uploads")
        s3.put_object(Bucket="uploads", Key="a/one.txt", Body=b"hello")
        got = s3.get_object(Bucket="uploads", Key="a/one.txt")
        assert got["Body"].read() == b"hello"
        get_id = got["ResponseMetadata"]["RequestId"]
        secrets.append(server.keys()["aws_secret_access_key"])

        # A user who may list, and not write: awscli prints AWS's detailed message.
        server.aws("iam", "create-user", "--user-name", "reader")
        key = json.loads(server.aws("iam", "create-access-key", "--user-name", "reader").stdout)["AccessKey"]
        secrets.append(key["SecretAccessKey"])
        server.aws("iam", "put-user-policy", "--user-name", "reader", "--policy-name", "list",
                   "--policy-document", json.dumps({"Version": "2012-10-17", "Statement": [
                       {"Effect": "Allow", "Action": "s3:ListBucket", "Resource": "arn:aws:s3:::uploads"}]}))
        env = aws_env(AWS_ACCESS_KEY_ID=key["AccessKeyId"], AWS_SECRET_ACCESS_KEY=key["SecretAccessKey"])
        src = tmp_path / "two.txt"
        src.write_text("two")
        refused = subprocess.run(["aws", "--endpoint-url", server.endpoint, "s3", "cp", str(src), "s3://uploads/a/two.txt"],
                                 capture_output=True, text=True, env=env)
        assert refused.returncode != 0
        assert (
            "An error occurred (AccessDenied) when calling the PutObject operation: "
            "User: arn:aws:iam::000000000000:user/reader is not authorized to perform: "
            's3:PutObject on resource: "arn:aws:s3:::uploads/a/two.txt" '
            "because no identity-based policy allows the s3:PutObject action"
        ) in refused.stderr, refused.stderr
        # Anonymous callers keep the bare message.
        anon = server.anonymous()
        with pytest.raises(botocore.exceptions.ClientError) as e:
            anon.get_object(Bucket="uploads", Key="a/one.txt")
        assert e.value.response["Error"]["Message"] == "Access Denied"

        # IRSA: a service account's token for a role, then S3 with the session.
        issuer = issuer_of(server)
        provider = provider_arn(issuer)
        role = make_role(server, "registry",
                         trust(provider, issuer.split("://", 1)[1], "system:serviceaccount:gitlab:registry"),
                         "uploads")
        token = keyless_token(keyless_bin, server, "gitlab", "registry")
        token_file = tmp_path / "token"
        token_file.write_text(token)
        secrets.append(token)
        sts = boto3.client("sts", endpoint_url=server.endpoint, region_name="us-east-1",
                           aws_access_key_id="x", aws_secret_access_key="x")
        creds = sts.assume_role_with_web_identity(RoleArn=role, RoleSessionName="pod-1", WebIdentityToken=token)["Credentials"]
        secrets += [creds["SecretAccessKey"], creds["SessionToken"]]
        session = boto3.client("s3", endpoint_url=server.endpoint, region_name="us-east-1",
                               aws_access_key_id=creds["AccessKeyId"], aws_secret_access_key=creds["SecretAccessKey"],
                               aws_session_token=creds["SessionToken"])
        session.put_object(Bucket="uploads", Key="irsa.txt", Body=b"by a pod")
        # A token for another service account is not trusted.
        other = keyless_token(keyless_bin, server, "default", "intruder")
        with pytest.raises(botocore.exceptions.ClientError):
            sts.assume_role_with_web_identity(RoleArn=role, RoleSessionName="intruder", WebIdentityToken=other)
        # A presigned URL's signature stays out of the trail.
        url = s3.generate_presigned_url("get_object", Params={"Bucket": "uploads", "Key": "a/one.txt"})
        query = urllib.parse.parse_qs(urllib.parse.urlsplit(url).query)
        secrets.append((query.get("X-Amz-Signature") or query["Signature"])[0])
        assert urllib.request.urlopen(url).read() == b"hello"
    finally:
        server.stop()
    assert server.proc.returncode == 0

    records = read_trail(trail)
    for record in records:
        check_shape(record)
    text = trail.read_text()
    for secret in secrets:
        assert secret not in text, "a secret reached the audit trail"

    by_name = {}
    for r in records:
        by_name.setdefault(r["eventName"], []).append(r)
    get = by_name["GetObject"][0]
    assert get["requestID"] == get_id
    assert get["userIdentity"]["type"] == "Root"
    assert get["readOnly"] is True and get["eventCategory"] == "Data" and get["managementEvent"] is False
    assert get["requestParameters"]["bucketName"] == "uploads" and get["requestParameters"]["key"] == "a/one.txt"
    assert {"ARN": "arn:aws:s3:::uploads/a/one.txt", "type": "AWS::S3::Object"} in get["resources"]
    assert get["additionalEventData"]["SignatureVersion"] == "SigV4"
    assert get["additionalEventData"]["AuthenticationMethod"] == "AuthHeader"
    assert get["additionalEventData"]["bytesTransferredOut"] == 5
    assert get["sourceIPAddress"] == "127.0.0.1" and "Boto3" in get["userAgent"]
    presigned = [r for r in by_name["GetObject"] if r.get("additionalEventData", {}).get("AuthenticationMethod") == "QueryString"]
    assert presigned, by_name["GetObject"]

    create = by_name["CreateBucket"][0]
    assert create["eventCategory"] == "Management" and create["readOnly"] is False

    denied = [r for r in by_name["PutObject"] if r.get("errorCode") == "AccessDenied"]
    assert len(denied) == 1, by_name["PutObject"]
    assert denied[0]["userIdentity"]["arn"] == f"arn:aws:iam::{ACCOUNT}:user/reader"
    assert denied[0]["userIdentity"]["type"] == "IAMUser"
    assert denied[0]["responseElements"] is None
    assert "because no identity-based policy allows" in denied[0]["errorMessage"]
    assert denied[0]["additionalEventData"]["policyDecision"] == (
        "s3:PutObject on arn:aws:s3:::uploads/a/two.txt: implicitDeny: no statement allows it")

    anonymous = [r for r in by_name["GetObject"] if r["userIdentity"]["type"] == "AWSAccount"]
    assert anonymous and anonymous[0]["userIdentity"]["accountId"] == "anonymous"

    web = by_name["AssumeRoleWithWebIdentity"]
    ok = [r for r in web if "errorCode" not in r][0]
    assert ok["eventSource"] == "sts.amazonaws.com" and ok["readOnly"] is True
    assert ok["userIdentity"] == {
        "type": "WebIdentityUser",
        "principalId": f"{provider}:sts.amazonaws.com:system:serviceaccount:gitlab:registry",
        "userName": "system:serviceaccount:gitlab:registry",
        "identityProvider": provider,
    }
    # The token's kubernetes.io claims tag the session, as CloudTrail records a web identity's tags.
    assert ok["requestParameters"] == {"roleArn": role, "roleSessionName": "pod-1", "principalTags": {
        "kubernetes-namespace": "gitlab", "kubernetes-service-account": "registry"}}
    assert ok["responseElements"]["credentials"]["accessKeyId"] == creds["AccessKeyId"]
    assert set(ok["responseElements"]["credentials"]) == {"accessKeyId", "expiration"}
    assert ok["responseElements"]["assumedRoleUser"]["arn"] == f"arn:aws:sts::{ACCOUNT}:assumed-role/registry/pod-1"
    assert ok["responseElements"]["subjectFromWebIdentityToken"] == "system:serviceaccount:gitlab:registry"
    assert ok["resources"] == [{"ARN": role, "accountId": ACCOUNT, "type": "AWS::IAM::Role"}]
    refused = [r for r in web if r.get("errorCode") == "AccessDenied"][0]
    assert refused["errorMessage"] == "Not authorized to perform sts:AssumeRoleWithWebIdentity"
    assert refused["responseElements"] is None
    assert refused["additionalEventData"]["policyDecision"].startswith("implicitDeny")

    irsa = [r for r in by_name["PutObject"] if r["userIdentity"]["type"] == "AssumedRole"][0]
    identity = irsa["userIdentity"]
    assert identity["arn"] == f"arn:aws:sts::{ACCOUNT}:assumed-role/registry/pod-1"
    assert identity["accessKeyId"] == creds["AccessKeyId"]
    assert identity["sessionContext"]["sessionIssuer"]["arn"] == role
    assert identity["sessionContext"]["sessionIssuer"]["userName"] == "registry"
    assert identity["sessionContext"]["webIdFederationData"] == {"federatedProvider": provider, "attributes": {}}
    assert identity["sessionContext"]["attributes"]["mfaAuthenticated"] == "false"
    assert irsa["responseElements"]["ETag"]

    iam = by_name["CreateUser"][0]
    assert iam["eventSource"] == "iam.amazonaws.com" and iam["requestParameters"] == {"userName": "reader"}
    access_key = by_name["CreateAccessKey"][0]
    assert "secretAccessKey" not in json.dumps(access_key)

    # `keyless audit` reads it back.
    def audit(*args):
        out = subprocess.run([keyless_bin, "audit", str(trail), *args], capture_output=True, text=True)
        assert out.returncode == 0, out.stderr
        return out.stdout.splitlines()

    denials = audit("--decision", "denied", "--why")
    assert any("s3:PutObject" in line and "user/reader" in line and "AccessDenied" in line for line in denials), denials
    assert "    why: s3:PutObject on arn:aws:s3:::uploads/a/two.txt: implicitDeny: no statement allows it" in denials
    by_role = [json.loads(line) for line in audit("--role", "registry", "--json")]
    assert {r["eventName"] for r in by_role} == {"AssumeRoleWithWebIdentity", "PutObject"}
    assert audit("--namespace", "gitlab", "--event", "AssumeRoleWithWebIdentity", "--decision", "allowed", "--json")
    assert not audit("--namespace", "kube-system")
    assert len(audit("--bucket", "uploads", "--principal", "reader")) == 1
    assert audit("--since", "1h") and not audit("--until", "2000-01-01T00:00:00Z")
    bad = subprocess.run([keyless_bin, "audit", str(trail), "--since", "yesterday"], capture_output=True, text=True)
    assert bad.returncode != 0 and "is neither an ISO 8601 time" in bad.stderr


class Collector(http.server.BaseHTTPRequestHandler):
    """An audit endpoint that is down (503) for its first answers, then takes every batch."""
    batches = []
    failures = 2
    lock = threading.Lock()

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        with self.lock:
            if Collector.failures > 0:
                Collector.failures -= 1
                self.send_response(503)
                self.end_headers()
                return
            assert self.headers["Content-Type"] == "application/json"
            Collector.batches.append((self.headers.get("Authorization"), json.loads(body)))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args):
        pass


def test_an_http_endpoint_that_fails_at_first_gets_every_record(keyless_bin, tmp_path):
    endpoint = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Collector)
    threading.Thread(target=endpoint.serve_forever, daemon=True).start()
    token = tmp_path / "token"
    token.write_text("s3cr3t-token\n")
    url = f"http://127.0.0.1:{endpoint.server_address[1]}/audit"
    server = Server(keyless_bin, tmp_path / "data",
                    extra=["--audit-log", url, "--audit-log-token-file", str(token)])
    try:
        s3 = server.client()
        s3.create_bucket(Bucket="bkt")
        for i in range(20):
            s3.put_object(Bucket="bkt", Key=f"k{i}", Body=b"x")
    finally:
        server.stop()
        endpoint.shutdown()
    assert server.proc.returncode == 0
    records = [r for auth, batch in Collector.batches for r in batch["Records"]]
    assert all(auth == "Bearer s3cr3t-token" for auth, _ in Collector.batches)
    names = [r["eventName"] for r in records]
    stderr = server.proc.stderr.read()
    assert names.count("PutObject") == 20 and names.count("CreateBucket") == 1, (names, stderr)
    for record in records:
        check_shape(record)
    assert "cannot write the audit trail" in stderr  # the 503s, logged and retried
