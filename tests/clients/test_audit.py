"""The audit trail (`keyless serve --audit-log`) and `keyless audit`, driven by unmodified awscli
and boto3: S3, IAM and STS requests (an IRSA flow among them) each leave one CloudTrail-format
record, with the response's request id; a denial's record says which policy refused, and awscli
prints AWS's detailed AccessDenied; no record holds a secret key, session token, web identity
token or signature; an HTTP endpoint that fails at first still gets every record, in CloudTrail's
`{"Records": [...]}` batches.

Every record read here is checked against a JSON Schema of CloudTrail's record as AWS documents
it (cloudtrail_record.schema.json), which is itself checked: it accepts AWS's own example records
(cloudtrail_examples.json) and rejects misspelled fields, wrong types and missing fields. Keyless's
records of a web-identity session's PutObject and of the AssumeRoleWithWebIdentity call are
compared with AWS's examples of the same events key by key, at every depth; where they differ,
the difference is listed below with its reason, so that a new one fails.
"""
import base64
import copy
import datetime
import hashlib
import http.server
import json
import os
import pathlib
import subprocess
import threading
import urllib.parse
import urllib.request

import boto3
import botocore
import jsonschema
import pytest

from test_serve_s3 import Server
from test_serve_sts import keyless_token, make_role, trust, issuer_of, provider_arn

ACCOUNT = "000000000000"
HERE = pathlib.Path(__file__).resolve().parent

# CloudTrail's record as its User Guide documents it (JSON Schema draft 2020-12), and AWS's own
# example records, verbatim from the pages cited in the file.
SCHEMA = json.loads((HERE / "cloudtrail_record.schema.json").read_text())
RECORD = jsonschema.Draft202012Validator(SCHEMA)
AWS_EXAMPLES = {name: example["record"] for name, example in
                json.loads((HERE / "cloudtrail_examples.json").read_text())["examples"].items()}

# Fields Keyless writes that CloudTrail does not document, each with why. The schema does not
# allow them (it is CloudTrail's record, not Keyless's); check_shape takes them out before it
# validates, checks their own shape, and fails on any field not listed here.
KEYLESS_EXTENSIONS = {
    ("userIdentity", "sessionContext", "sessionTags"):
        "the session's tags (a pod's namespace, service account, name and uid) on every request "
        "made with the session, for `keyless audit --namespace/--pod`; CloudTrail writes session "
        "tags only in the STS call's requestParameters.principalTags",
}

# What every record Keyless writes has, beyond what CloudTrail requires of every record: the
# fields CloudTrail writes for an API call at eventVersion 1.11.
REQUIRED = {
    "eventVersion": str, "userIdentity": dict, "eventTime": str, "eventSource": str,
    "eventName": str, "awsRegion": str, "sourceIPAddress": str, "userAgent": str,
    "requestID": str, "eventID": str, "readOnly": bool, "eventType": str,
    "managementEvent": bool, "recipientAccountId": str, "eventCategory": str,
}


def schema_errors(record):
    """What the CloudTrail schema finds wrong with `record`: (path, message) pairs, none when it
    is valid."""
    return [("/".join(map(str, e.absolute_path)), e.message) for e in RECORD.iter_errors(record)]


def check_shape(record):
    """`record` is a CloudTrail record (the schema, once KEYLESS_EXTENSIONS are taken out and
    checked on their own) and one as Keyless writes it: eventVersion 1.11, an API call of S3,
    IAM or STS, a real UTC second, a hex GUID, managementEvent agreeing with eventCategory."""
    documented = copy.deepcopy(record)
    for path in KEYLESS_EXTENSIONS:
        *parents, name = path
        holder = documented
        for key in parents:
            holder = holder.get(key) if isinstance(holder, dict) else None
        if isinstance(holder, dict) and name in holder:
            value = holder.pop(name)
            assert isinstance(value, dict) and value and all(
                isinstance(k, str) and isinstance(v, str) for k, v in value.items()), (path, value)
    errors = schema_errors(documented)
    assert not errors, (errors, record)
    for name, kind in REQUIRED.items():
        assert isinstance(record.get(name), kind), (name, record)
    assert record["eventVersion"] == "1.11"
    assert record["eventType"] == "AwsApiCall"
    assert record["eventCategory"] in ("Data", "Management")
    assert record["managementEvent"] is (record["eventCategory"] == "Management"), record
    assert record["eventSource"] in ("s3.amazonaws.com", "iam.amazonaws.com", "sts.amazonaws.com")
    assert record["userIdentity"]["type"] in (
        "Root", "IAMUser", "AssumedRole", "WebIdentityUser", "AWSAccount", "Unknown")
    # The pattern admits 2024-02-31; a calendar does not.
    datetime.datetime.strptime(record["eventTime"], "%Y-%m-%dT%H:%M:%SZ")
    assert all(len(part) == n and all(c in "0123456789abcdef" for c in part)
               for part, n in zip(record["eventID"].split("-"), (8, 4, 4, 4, 12))), record["eventID"]
    assert record["eventID"].count("-") == 4
    for resource in record.get("resources", []):
        assert resource["ARN"].startswith("arn:aws:")


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


# ---------------------------------------------------------------------------------------------
# The schema itself, and Keyless's records against AWS's examples


def test_the_schema_accepts_aws_documented_examples():
    """AWS's example records (eventVersion 1.05 and 1.08, older than what Keyless writes) are
    CloudTrail records by the schema: a schema that refused them would not be CloudTrail's."""
    assert set(AWS_EXAMPLES) == {"web_identity_session_userIdentity", "s3_data_event_put_object",
                                 "sts_assume_role_with_web_identity"}
    jsonschema.Draft202012Validator.check_schema(SCHEMA)
    for name, record in AWS_EXAMPLES.items():
        assert schema_errors(record) == [], name


def a_valid_record():
    """A current (1.11) record of a web-identity session's PutObject over TLS: AWS's S3 data
    event with the IRSA session's userIdentity and tlsDetails; the base of the controls below."""
    record = copy.deepcopy(AWS_EXAMPLES["s3_data_event_put_object"])
    record["userIdentity"] = copy.deepcopy(AWS_EXAMPLES["web_identity_session_userIdentity"]["userIdentity"])
    record["eventVersion"] = "1.11"
    record["tlsDetails"] = {"tlsVersion": "TLSv1.3", "cipherSuite": "TLS_AES_128_GCM_SHA256",
                            "clientProvidedHostHeader": "s3.us-east-1.amazonaws.com"}
    return record


def test_the_schema_rejects_misspelled_mistyped_and_missing_fields():
    """Each control breaks one thing in an otherwise valid record, and the schema must report
    that thing, at its path: a schema that let any of them through would check nothing there."""
    assert schema_errors(a_valid_record()) == []

    def broken(change):
        record = a_valid_record()
        change(record)
        return schema_errors(record)

    def rename(holder, old, new):
        holder[new] = holder.pop(old)

    session = lambda r: r["userIdentity"]["sessionContext"]  # noqa: E731
    controls = {
        # Misspelled fields, at the top, in userIdentity, in sessionContext and below.
        "eventSorce": (lambda r: rename(r, "eventSource", "eventSorce"), ""),
        "principalID": (lambda r: rename(r["userIdentity"], "principalId", "principalID"), "userIdentity"),
        "sessionIsuer": (lambda r: rename(session(r), "sessionIssuer", "sessionIsuer"), "userIdentity/sessionContext"),
        "webIdentityFederationData": (lambda r: rename(session(r), "webIdFederationData", "webIdentityFederationData"),
                                      "userIdentity/sessionContext"),
        "mfaAuth": (lambda r: rename(session(r)["attributes"], "mfaAuthenticated", "mfaAuth"),
                    "userIdentity/sessionContext/attributes"),
        "resources Arn": (lambda r: rename(r["resources"][0], "ARN", "Arn"), "resources/0"),
        "tlsDetails tlsversion": (lambda r: rename(r["tlsDetails"], "tlsVersion", "tlsversion"), "tlsDetails"),
        # Wrong types and values.
        "readOnly as a string": (lambda r: r.update(readOnly="false"), "readOnly"),
        "managementEvent as a number": (lambda r: r.update(managementEvent=0), "managementEvent"),
        "mfaAuthenticated as a boolean": (lambda r: session(r)["attributes"].update(mfaAuthenticated=False),
                                          "userIdentity/sessionContext/attributes/mfaAuthenticated"),
        "creationDate not ISO 8601": (lambda r: session(r)["attributes"].update(creationDate="Jul 23, 2020 2:19:34 AM"),
                                      "userIdentity/sessionContext/attributes/creationDate"),
        "eventTime with milliseconds": (lambda r: r.update(eventTime="2020-11-30T15:44:33.123Z"), "eventTime"),
        "eventTime without the Z": (lambda r: r.update(eventTime="2020-11-30T15:44:33"), "eventTime"),
        "eventType misspelled": (lambda r: r.update(eventType="AwsApiCal"), "eventType"),
        "eventCategory unknown": (lambda r: r.update(eventCategory="Object"), "eventCategory"),
        "userIdentity.type unknown": (lambda r: r["userIdentity"].update(type="ServiceAccount"), "userIdentity/type"),
        "sessionIssuer.type unknown": (lambda r: session(r)["sessionIssuer"].update(type="AssumedRole"),
                                       "userIdentity/sessionContext/sessionIssuer/type"),
        "recipientAccountId of 11 digits": (lambda r: r.update(recipientAccountId="44445555666"), "recipientAccountId"),
        "eventVersion 2.0": (lambda r: r.update(eventVersion="2.0"), "eventVersion"),
        "requestParameters a string": (lambda r: r.update(requestParameters="bucketName=x"), "requestParameters"),
        "responseElements a list": (lambda r: r.update(responseElements=[]), "responseElements"),
        "resources an object": (lambda r: r.update(resources=r["resources"][0]), "resources"),
        "resource type not AWS::x::y": (lambda r: r["resources"][0].update(type="S3 object"), "resources/0/type"),
        "tlsDetails without cipherSuite": (lambda r: r["tlsDetails"].pop("cipherSuite"), "tlsDetails"),
        # Missing required fields, and fields required from the eventVersion that added them.
        "no eventID": (lambda r: r.pop("eventID"), ""),
        "no userIdentity.type": (lambda r: r["userIdentity"].pop("type"), "userIdentity"),
        "no sessionContext.attributes": (lambda r: session(r).pop("attributes"), "userIdentity/sessionContext"),
        "no responseElements": (lambda r: r.pop("responseElements"), ""),
        "no eventCategory at 1.11": (lambda r: r.pop("eventCategory"), ""),
        "no managementEvent at 1.11": (lambda r: r.pop("managementEvent"), ""),
        "errorMessage without errorCode": (lambda r: r.update(errorMessage="Access Denied"), ""),
    }
    for name, (change, path) in controls.items():
        errors = broken(change)
        assert errors, f"the schema accepts a record with {name}"
        assert path in [p for p, _ in errors], (name, errors)
    # At 1.05, before managementEvent and eventCategory existed, their absence is no error.
    old = a_valid_record()
    old.update(eventVersion="1.05")
    for name in ("eventCategory", "managementEvent", "tlsDetails"):
        old.pop(name)
    assert schema_errors(old) == []


def json_type(value):
    """The JSON type of a decoded value (an integer and a float are both numbers)."""
    if value is None:
        return "null"
    for kind, name in ((bool, "boolean"), ((int, float), "number"), (str, "string"), (list, "array"), (dict, "object")):
        if isinstance(value, kind):
            return name
    raise TypeError(value)


# Objects whose keys are data (tag names, a provider's attribute names), not field names: of
# these only the JSON types of the values are compared.
MAPS = {"requestParameters.principalTags", "userIdentity.sessionContext.webIdFederationData.attributes"}


def shape_differences(aws, keyless, path=""):
    """How `keyless` differs in shape from `aws`: each key that only one of them has, at any
    depth, and each value whose JSON type differs; of two lists of objects, the first objects
    are compared. {path: "only AWS" | "only Keyless" | "AWS <type>, Keyless <type>"}."""
    if json_type(aws) != json_type(keyless):
        return {path: f"AWS {json_type(aws)}, Keyless {json_type(keyless)}"}
    found = {}
    if isinstance(aws, dict) and path in MAPS:
        types = ({json_type(v) for v in aws.values()}, {json_type(v) for v in keyless.values()})
        if all(types) and types[0] != types[1]:
            found[path] = f"values: AWS {sorted(types[0])}, Keyless {sorted(types[1])}"
    elif isinstance(aws, dict):
        for key in sorted(aws.keys() | keyless.keys()):
            at = f"{path}.{key}" if path else key
            if key not in keyless:
                found[at] = "only AWS"
            elif key not in aws:
                found[at] = "only Keyless"
            else:
                found.update(shape_differences(aws[key], keyless[key], at))
    elif isinstance(aws, list) and aws and keyless and isinstance(aws[0], dict):
        found.update(shape_differences(aws[0], keyless[0], f"{path}[0]"))
    return found


# The fields whose value CloudTrail fixes for a kind of event (and eventVersion's major).
FIXED = ("eventType", "eventCategory", "eventSource", "userIdentity.type",
         "userIdentity.sessionContext.sessionIssuer.type", "readOnly", "managementEvent")


def fixed_differences(aws, keyless):
    """Where the values CloudTrail fixes differ between two records of the same kind of event
    (a field only one of them has is a shape difference, not one of these)."""
    def at(record, path):
        for key in path.split("."):
            if not isinstance(record, dict) or key not in record:
                return KeyError
            record = record[key]
        return record

    found = {}
    if aws["eventVersion"].split(".")[0] != keyless["eventVersion"].split(".")[0]:
        found["eventVersion"] = f"major: AWS {aws['eventVersion']}, Keyless {keyless['eventVersion']}"
    for path in FIXED:
        a, k = at(aws, path), at(keyless, path)
        if a is not KeyError and k is not KeyError and a != k:
            found[path] = f"AWS {a!r}, Keyless {k!r}"
    return found


# The headers the PutObject below sends that AWS's example PutObject records in
# requestParameters under these names (the example's other headers are not sent).
PUT_HEADERS = {"Cache-Control": "no-cache", "Content-Disposition": "attachment", "Content-Encoding": "gzip",
               "Content-Language": "english", "Content-Type": "text/html; charset=UTF-8",
               "x-amz-server-side-encryption": "AES256"}

# How Keyless's record of a web-identity session's PutObject (over TLS, in a versioned bucket)
# legitimately differs from AWS's example data event with the IRSA session's userIdentity
# (scale-anchors.md section 4 (a)): {path: (difference, reason)}.
DATA_EVENT_DIFFERENCES = {
    "edgeDeviceDetails": ("only AWS", "the example is S3 on Outposts', whose records name the Outpost"),
    "sharedEventID": ("only AWS", "written only when an event goes to two accounts; Keyless has one"),
    "resources[0].accountId": ("only AWS", "S3 leaves the account out of AWS::S3::Object resources; Outposts writes it"),
    "requestParameters.Key": ("only AWS", "Outposts spells it Key; S3 writes key (S3 User Guide)"),
    "requestParameters.key": ("only Keyless", "S3's name for the object key, as above"),
    "requestParameters.Host": ("only Keyless", "S3 records the Host header; the Outposts example has none"),
    "requestParameters.ObjectCannedACL": ("only AWS", "the example's request set an ACL; this one sends none"),
    "requestParameters.x-amz-storage-class": ("only AWS", "the example's request named a storage class; this one does not"),
    "requestParameters.x-amz-server-side-encryption-customer-algorithm":
        ("only AWS", "the example's request used SSE-C (a customer key); this one asks for SSE-S3"),
    "requestParameters.x-amz-server-side-encryption-customer-key-MD5": ("only AWS", "SSE-C, as above"),
    "responseElements.x-amz-server-side-encryption-customer-algorithm": ("only AWS", "SSE-C, as above"),
    "responseElements.x-amz-server-side-encryption-customer-key-MD5": ("only AWS", "SSE-C, as above"),
    "tlsDetails": ("only Keyless", "Keyless terminated TLS; the example (1.08) predates S3's tlsDetails"),
    **{f"requestParameters.{name}": ("only AWS", "the Outposts example records the request's headers; S3's own "
                                     "records keep bucketName, Host, key and the storage and encryption headers")
       for name in ("Cache-Control", "Content-Disposition", "Content-Encoding", "Content-Language", "Content-Length",
                    "Content-MD5", "Content-Type", "expires")},
    "userIdentity.sessionContext.sessionTags": ("only Keyless", KEYLESS_EXTENSIONS[
        ("userIdentity", "sessionContext", "sessionTags")]),
}
DATA_EVENT_VALUES = {
    "eventSource": ("AWS 's3-outposts.amazonaws.com', Keyless 's3.amazonaws.com'",
                    "the example is S3 on Outposts'; S3's own event source is s3.amazonaws.com"),
}
# How Keyless's record of AssumeRoleWithWebIdentity legitimately differs from AWS's example of
# it (scale-anchors.md section 4 (b)).
WEB_IDENTITY_DIFFERENCES = {
    "readOnly": ("only Keyless", "CloudTrail's current STS records carry it; the 1.05 example does not"),
    "managementEvent": ("only Keyless", "added in eventVersion 1.06; the example is 1.05"),
    "eventCategory": ("only Keyless", "added in eventVersion 1.07; the example is 1.05"),
    "tlsDetails": ("only Keyless", "Keyless terminated TLS; tlsDetails came with eventVersion 1.08"),
    "requestParameters.sourceIdentity": ("only AWS", "the service account's token sets no source identity"),
    "responseElements.sourceIdentity": ("only AWS", "as above"),
    "requestParameters.transitiveTagKeys": ("only AWS", "the token's tags (from its kubernetes.io claims) "
                                            "are not transitive: there are none to list"),
    "responseElements.credentials.sessionToken": ("only AWS", "Keyless never writes a session token down; AWS's "
                                                  "example shows only a placeholder for it"),
}
WEB_IDENTITY_VALUES = {}


@pytest.fixture(scope="module")
def irsa_records(keyless_bin, tmp_path_factory):
    """The records of the IRSA flow over HTTPS, as a pod runs it with boto3: a service
    account's token for AssumeRoleWithWebIdentity, then PutObject with the session, with some
    of the headers AWS's example PutObject sent. (PutObject record, AssumeRoleWithWebIdentity
    record)."""
    from test_serve_tls import write_cert

    tmp_path = tmp_path_factory.mktemp("irsa-over-tls")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    write_cert(cert, key, "keyless")
    trail = tmp_path / "audit.jsonl"
    server = Server(keyless_bin, tmp_path / "data",
                    extra=["--tls-cert", str(cert), "--tls-key", str(key), "--audit-log", str(trail)])
    server.verify = str(cert)
    env = pytest.MonkeyPatch()
    env.setenv("AWS_CA_BUNDLE", str(cert))  # for server.aws (awscli), which make_role uses
    try:
        s3 = server.client()
        s3.create_bucket(Bucket="uploads")
        s3.put_bucket_versioning(Bucket="uploads", VersioningConfiguration={"Status": "Enabled"})
        issuer = issuer_of(server)
        role = make_role(server, "registry", trust(provider_arn(issuer), issuer.split("://", 1)[1],
                                                   "system:serviceaccount:gitlab:registry"), "uploads")
        token = keyless_token(keyless_bin, server, "gitlab", "registry")
        sts = boto3.client("sts", endpoint_url=server.endpoint, region_name="us-east-1", verify=str(cert),
                           aws_access_key_id="x", aws_secret_access_key="x")
        creds = sts.assume_role_with_web_identity(RoleArn=role, RoleSessionName="pod-1", WebIdentityToken=token,
                                                  DurationSeconds=3600)["Credentials"]
        session = boto3.client("s3", endpoint_url=server.endpoint, region_name="us-east-1", verify=str(cert),
                               aws_access_key_id=creds["AccessKeyId"], aws_secret_access_key=creds["SecretAccessKey"],
                               aws_session_token=creds["SessionToken"])
        body = b"0123456789"
        session.put_object(
            Bucket="uploads", Key="path/upload.sh", Body=body, ContentMD5=base64.b64encode(hashlib.md5(body).digest()).decode(),
            CacheControl=PUT_HEADERS["Cache-Control"], ContentDisposition=PUT_HEADERS["Content-Disposition"],
            ContentEncoding=PUT_HEADERS["Content-Encoding"], ContentLanguage=PUT_HEADERS["Content-Language"],
            ContentType=PUT_HEADERS["Content-Type"], ServerSideEncryption=PUT_HEADERS["x-amz-server-side-encryption"],
            Expires=datetime.datetime(2020, 10, 21, 7, 28, tzinfo=datetime.timezone.utc))
    finally:
        env.undo()
        server.stop()
    assert server.proc.returncode == 0
    records = read_trail(trail)
    for record in records:
        check_shape(record)
    put = [r for r in records if r["eventName"] == "PutObject" and r["userIdentity"]["type"] == "AssumedRole"]
    web = [r for r in records if r["eventName"] == "AssumeRoleWithWebIdentity"]
    assert len(put) == 1 and len(web) == 1, [r["eventName"] for r in records]
    return put[0], web[0]


def data_event_example():
    """AWS's S3 PutObject data event with the userIdentity AWS shows for an IRSA session."""
    return {**AWS_EXAMPLES["s3_data_event_put_object"],
            "userIdentity": AWS_EXAMPLES["web_identity_session_userIdentity"]["userIdentity"]}


def expected(*differences):
    return {path: kind for listed in differences for path, (kind, _) in listed.items()}


def test_records_have_the_shape_of_aws_examples_of_the_same_events(irsa_records):
    """Each record has the keys AWS's example of the same event has, at every depth, with the
    same JSON types, and the values CloudTrail fixes for that kind of event; every exception is
    listed above with its reason, and a new one, or one that went away, fails."""
    put, web = irsa_records
    assert shape_differences(data_event_example(), put) == expected(DATA_EVENT_DIFFERENCES), json.dumps(put, indent=1)
    assert fixed_differences(data_event_example(), put) == expected(DATA_EVENT_VALUES)
    example = AWS_EXAMPLES["sts_assume_role_with_web_identity"]
    assert shape_differences(example, web) == expected(WEB_IDENTITY_DIFFERENCES), json.dumps(web, indent=1)
    assert fixed_differences(example, web) == expected(WEB_IDENTITY_VALUES)
    # What AWS shows for a web-identity session, with Keyless's values.
    assert web["userIdentity"]["type"] == "WebIdentityUser" and web["readOnly"] is True
    assert put["userIdentity"]["sessionContext"]["webIdFederationData"]["federatedProvider"] == \
        web["userIdentity"]["identityProvider"]
    assert put["responseElements"]["x-amz-version-id"] and put["additionalEventData"]["bytesTransferredIn"] == 10
    # As S3 writes them: the encryption asked for, and the cipher suite in both places.
    assert put["requestParameters"]["x-amz-server-side-encryption"] == "AES256"
    assert put["additionalEventData"]["CipherSuite"] == put["tlsDetails"]["cipherSuite"]
