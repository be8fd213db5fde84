"""Prometheus metrics (`GET /metrics` on the admin listener), read by the Prometheus project's own
parser (`prometheus_client.openmetrics.parser`): after real boto3 and awscli traffic (S3 writes and
reads, a user refused by policy, IRSA credentials issued and a token refused), the counters say
exactly what happened, by API, operation, status class and result; the trail's figures are there
with `--audit-log`; names follow Prometheus's conventions and no label holds a secret.
"""
import json
import re
import urllib.error
import urllib.request

import boto3
import botocore
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from prometheus_client.openmetrics.parser import text_string_to_metric_families

from test_audit import aws_env
from test_serve_s3 import Server
from test_serve_sts import issuer_of, keyless_token, make_role, provider_arn, trust


def admin_of(server):
    """The admin listener's address, from the banner (read after the S3 endpoint line)."""
    for _ in range(30):
        line = server.proc.stdout.readline()
        match = re.match(r"keyless: admin (http://\S+)", line)
        if match:
            return match.group(1)
    raise AssertionError("no admin line in the banner")


def scrape(admin):
    with urllib.request.urlopen(f"{admin}/metrics") as response:
        assert response.headers["Content-Type"].startswith("application/openmetrics-text")
        text = response.read().decode()
    assert text.endswith("# EOF\n")
    samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return text, samples


_REQUIRED = object()


def value(samples, name, missing=_REQUIRED, **labels):
    """The sample `name{labels}`; one that is not in the scrape fails, unless `missing` says
    what it stands for (a counter never incremented is not exposed)."""
    key = (name, tuple(sorted(labels.items())))
    if key not in samples:
        names = sorted({n for n, _ in samples})
        assert missing is not _REQUIRED, f"no sample {name}{labels}; the scrape has {names}"
        return missing
    return samples[key]


def query_status(endpoint, service, body, access_key, secret_key):
    """POSTs a query-protocol `body` signed by botocore's own SigV4 signer for `service`, and
    returns the HTTP status (for actions no SDK sends)."""
    req = AWSRequest(method="POST", url=endpoint + "/", data=body,
                     headers={"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"})
    SigV4Auth(Credentials(access_key, secret_key), service, "us-east-1").add_auth(req)
    sent = urllib.request.Request(req.url, data=body.encode(), headers=dict(req.headers.items()),
                                  method="POST")
    try:
        with urllib.request.urlopen(sent) as response:
            return response.status
    except urllib.error.HTTPError as e:
        return e.code


def test_metrics_count_what_clients_did(keyless_bin, tmp_path):
    server = Server(keyless_bin, tmp_path / "data",
                    extra=["--admin-listen", "127.0.0.1:0", "--audit-log", str(tmp_path / "audit.jsonl")])
    try:
        admin = admin_of(server)
        _, before = scrape(admin)
        assert value(before, "keyless_requests_total", api="s3", operation="PutObject", status="2xx",
                     missing=0) == 0

        s3 = server.client()
        s3.create_bucket(Bucket="uploads")
        for i in range(3):
            s3.put_object(Bucket="uploads", Key=f"k{i}", Body=b"x" * 1000)
        assert s3.get_object(Bucket="uploads", Key="k0")["Body"].read() == b"x" * 1000
        with pytest.raises(botocore.exceptions.ClientError):
            s3.get_object(Bucket="uploads", Key="missing")

        # A user who may list and not write, refused by policy.
        server.aws("iam", "create-user", "--user-name", "reader")
        key = json.loads(server.aws("iam", "create-access-key", "--user-name", "reader").stdout)["AccessKey"]
        server.aws("iam", "put-user-policy", "--user-name", "reader", "--policy-name", "list",
                   "--policy-document", json.dumps({"Version": "2012-10-17", "Statement": [
                       {"Effect": "Allow", "Action": "s3:ListBucket", "Resource": "arn:aws:s3:::uploads"}]}))
        reader = server.user(key["AccessKeyId"], key["SecretAccessKey"])
        reader.list_objects_v2(Bucket="uploads")
        with pytest.raises(botocore.exceptions.ClientError):
            reader.put_object(Bucket="uploads", Key="no", Body=b"no")
        # A user who may get and not list asks for a missing key: one decision (allowed), and
        # the question behind S3's 403-not-404 ("may they list?") is not another.
        server.aws("iam", "create-user", "--user-name", "getter")
        gkey = json.loads(server.aws("iam", "create-access-key", "--user-name", "getter").stdout)["AccessKey"]
        server.aws("iam", "put-user-policy", "--user-name", "getter", "--policy-name", "get",
                   "--policy-document", json.dumps({"Version": "2012-10-17", "Statement": [
                       {"Effect": "Allow", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::uploads/*"}]}))
        getter = server.user(gkey["AccessKeyId"], gkey["SecretAccessKey"])
        with pytest.raises(botocore.exceptions.ClientError) as missing:
            getter.get_object(Bucket="uploads", Key="missing")
        assert missing.value.response["Error"]["Code"] == "AccessDenied"
        # The root user's copies and batch deletes are decided per key elsewhere: none counted.
        s3.copy_object(Bucket="uploads", Key="k9", CopySource={"Bucket": "uploads", "Key": "k0"})
        s3.delete_objects(Bucket="uploads", Delete={"Objects": [{"Key": "k9"}]})

        # IRSA: credentials issued for a role, and a token the trust policy refuses.
        issuer = issuer_of(server)
        role = make_role(server, "registry",
                         trust(provider_arn(issuer), issuer.split("://", 1)[1], "system:serviceaccount:gitlab:registry"),
                         "uploads")
        sts = boto3.client("sts", endpoint_url=server.endpoint, region_name="us-east-1",
                           aws_access_key_id="x", aws_secret_access_key="x")
        token = keyless_token(keyless_bin, server, "gitlab", "registry")
        creds = sts.assume_role_with_web_identity(RoleArn=role, RoleSessionName="pod-1",
                                                  WebIdentityToken=token)["Credentials"]
        other = keyless_token(keyless_bin, server, "default", "intruder")
        with pytest.raises(botocore.exceptions.ClientError):
            sts.assume_role_with_web_identity(RoleArn=role, RoleSessionName="intruder", WebIdentityToken=other)

        # What a client puts in Action= never becomes a label: IAM actions the server does not
        # implement read `unknown`, and so does a call refused before its signature was checked
        # (counted under the API it was signed for).
        root = server.keys()
        for i in range(3):
            assert query_status(server.endpoint, "iam", f"Action=Bogus{i}&Version=2010-05-08",
                                root["aws_access_key_id"], root["aws_secret_access_key"]) == 400
        assert query_status(server.endpoint, "iam", "Action=ListUsers&Version=2010-05-08",
                            root["aws_access_key_id"], "not-the-secret") == 403

        text, after = scrape(admin)
    finally:
        server.stop()
    assert server.proc.returncode == 0

    assert value(after, "keyless_requests_total", api="s3", operation="PutObject", status="2xx") == 3
    assert value(after, "keyless_requests_total", api="s3", operation="PutObject", status="4xx") == 1
    assert value(after, "keyless_requests_total", api="s3", operation="GetObject", status="2xx") == 1
    assert value(after, "keyless_requests_total", api="s3", operation="GetObject", status="4xx") == 2
    assert value(after, "keyless_requests_total", api="iam", operation="CreateUser", status="2xx") == 2
    assert value(after, "keyless_requests_total", api="iam", operation="unknown", status="4xx") == 4
    assert not [k for k in after if any(v.startswith("Bogus") for _, v in k[1])]
    assert value(after, "keyless_requests_total", api="sts", operation="AssumeRoleWithWebIdentity",
                 status="2xx") == 1
    # Bodies: three uploads of 1000 bytes and one download of 1000, at least.
    assert value(after, "keyless_received_bytes_total", api="s3") >= 3000
    assert value(after, "keyless_sent_bytes_total", api="s3") >= 1000
    # The reader's list allowed and write refused, the getter's get allowed; the root user's
    # requests (every IAM call, the bucket, uploads, the copy and the batch delete) take none.
    assert value(after, "keyless_policy_decisions_total", api="s3", result="implicit_deny") == 1
    assert value(after, "keyless_policy_decisions_total", api="s3", result="allowed") == 2
    assert not [k for k in after if k[0] == "keyless_policy_decisions_total" and ("api", "iam") in k[1]]
    assert value(after, "keyless_policy_decisions_total", api="sts", result="allowed") == 1
    assert value(after, "keyless_policy_decisions_total", api="sts", result="implicit_deny") == 1
    assert value(after, "keyless_sts_credentials_issued_total", kind="web_identity", role=role) == 1
    assert value(after, "keyless_sts_refusals_total", operation="AssumeRoleWithWebIdentity",
                 reason="AccessDenied") == 1
    # Latency: one histogram per operation, every request in its +Inf bucket.
    assert value(after, "keyless_request_duration_seconds_count", api="s3", operation="PutObject") == 4
    assert value(after, "keyless_request_duration_seconds_bucket", api="s3", operation="PutObject",
                 le="+Inf") == 4
    # The trail's own figures.
    assert value(after, "keyless_audit_records_dropped_total") == 0
    assert ("keyless_audit_records_queued", ()) in after
    # Records go in batches: never more writes than records (the scrape may come before the
    # writer's first, 20 ms after the first record).
    assert value(after, "keyless_audit_batches_written_total") <= value(
        after, "keyless_audit_records_written_total")

    # Conventions: the prefix, counters end in _total, durations in seconds; no secret anywhere.
    for (name, _labels) in after:
        assert name.startswith("keyless_"), name
    for secret in (key["SecretAccessKey"], creds["SecretAccessKey"], creds["SessionToken"], token,
                   server.keys()["aws_secret_access_key"]):
        assert secret not in text

