"""S3 semantics a store owes its clients (issue 14), driven with boto3 and awscli against
`keyless serve`: encryption Keyless does not implement is refused, never ignored; S3's limits
with S3's errors (user metadata, part numbers, DeleteObjects keys, bodies read whole); the data
folder readable by its owner alone; ACLs as AWS answers them with Object Ownership "bucket
owner enforced"; and the bucket configurations Keyless does not offer answered as S3 answers a
bucket without them, each decided by its own IAM action.
"""
import base64
import hashlib
import json
import os
import socket
import stat
import urllib.parse

import botocore
import pytest
from botocore.config import Config

from test_serve_s3 import Server, error_code, server  # noqa: F401 (the fixture)
from test_serve_s3_errors import aws_as, printed_error

SSE_C_KEY = b"k" * 32


def client_error(excinfo):
    """(code, HTTP status) as botocore parsed them."""
    response = excinfo.value.response
    return response["Error"]["Code"], response["ResponseMetadata"]["HTTPStatusCode"]


def assert_missing(s3, bucket, key):
    with pytest.raises(botocore.exceptions.ClientError) as e:
        s3.head_object(Bucket=bucket, Key=key)
    assert client_error(e)[1] == 404


def sse_c():
    return dict(
        SSECustomerAlgorithm="AES256",
        SSECustomerKey=SSE_C_KEY.decode(),
    )


# --- encryption -----------------------------------------------------------------------------


def test_encryption_keyless_does_not_implement_is_refused(server):
    s3 = server.client()
    s3.create_bucket(Bucket="bkt")
    s3.put_object(Bucket="bkt", Key="plain", Body=b"p")
    # SSE-S3 is accepted as before.
    s3.put_object(Bucket="bkt", Key="sse-s3", Body=b"x", ServerSideEncryption="AES256")
    assert s3.get_object(Bucket="bkt", Key="sse-s3")["Body"].read() == b"x"

    for key, extra in [
        ("sse-c", sse_c()),
        ("kms", dict(ServerSideEncryption="aws:kms")),
        ("kms-key", dict(ServerSideEncryption="aws:kms", SSEKMSKeyId="alias/mine")),
        ("dsse", dict(ServerSideEncryption="aws:kms:dsse")),
    ]:
        with pytest.raises(botocore.exceptions.ClientError) as e:
            s3.put_object(Bucket="bkt", Key=key, Body=b"secret", **extra)
        assert client_error(e) == ("NotImplemented", 501), key
        assert "Keyless does not implement" in e.value.response["Error"]["Message"]
        assert_missing(s3, "bkt", key)
        with pytest.raises(botocore.exceptions.ClientError) as e:
            s3.create_multipart_upload(Bucket="bkt", Key=key, **extra)
        assert client_error(e) == ("NotImplemented", 501), key
        with pytest.raises(botocore.exceptions.ClientError) as e:
            s3.copy_object(Bucket="bkt", Key=key, CopySource="bkt/plain", **extra)
        assert client_error(e) == ("NotImplemented", 501), key
        assert_missing(s3, "bkt", key)
    assert s3.list_multipart_uploads(Bucket="bkt").get("Uploads", []) == []

    # An SSE-C key on a read, on a copy's source and on a part is refused too.
    for call in [
        lambda: s3.get_object(Bucket="bkt", Key="plain", **sse_c()),
        lambda: s3.head_object(Bucket="bkt", Key="plain", **sse_c()),
        lambda: s3.copy_object(
            Bucket="bkt", Key="copy", CopySource="bkt/plain",
            CopySourceSSECustomerAlgorithm="AES256", CopySourceSSECustomerKey=SSE_C_KEY.decode(),
        ),
    ]:
        with pytest.raises(botocore.exceptions.ClientError) as e:
            call()
        # HEAD has no body: botocore reads the status alone.
        assert client_error(e)[1] == 501
    upload = s3.create_multipart_upload(Bucket="bkt", Key="mp")["UploadId"]
    with pytest.raises(botocore.exceptions.ClientError) as e:
        s3.upload_part(Bucket="bkt", Key="mp", UploadId=upload, PartNumber=1, Body=b"x", **sse_c())
    assert client_error(e) == ("NotImplemented", 501)
    assert s3.list_parts(Bucket="bkt", Key="mp", UploadId=upload).get("Parts", []) == []

    # A method S3 does not know is S3's InvalidArgument.
    with pytest.raises(botocore.exceptions.ClientError) as e:
        s3.put_object(Bucket="bkt", Key="bogus", Body=b"x", ServerSideEncryption="bogus")
    assert client_error(e) == ("InvalidArgument", 400)
    assert e.value.response["Error"]["Message"] == "The encryption method specified is not supported"
    assert_missing(s3, "bkt", "bogus")


def test_awscli_prints_the_encryption_refusals(server, tmp_path):
    server.aws("s3api", "create-bucket", "--bucket", "bkt")
    body = tmp_path / "f"
    body.write_bytes(b"secret")
    kms = server.aws("s3api", "put-object", "--bucket", "bkt", "--key", "k", "--body", str(body),
                     "--server-side-encryption", "aws:kms", check=False)
    assert printed_error(kms) == (
        "An error occurred (NotImplemented) when calling the PutObject operation: "
        "Keyless does not implement server-side encryption with KMS keys: "
        "`x-amz-server-side-encryption: aws:kms` was refused, and nothing was stored"
    )
    key = base64.b64encode(SSE_C_KEY).decode()
    md5 = base64.b64encode(hashlib.md5(SSE_C_KEY).digest()).decode()
    sse_c_cli = server.aws("s3api", "put-object", "--bucket", "bkt", "--key", "k", "--body", str(body),
                           "--sse-customer-algorithm", "AES256", "--sse-customer-key", key,
                           "--sse-customer-key-md5", md5, check=False)
    line = printed_error(sse_c_cli)
    assert line.startswith(
        "An error occurred (NotImplemented) when calling the PutObject operation: "
        "Keyless does not implement server-side encryption with customer-provided keys (SSE-C)"
    ), line
    bogus = server.aws("s3api", "put-object", "--bucket", "bkt", "--key", "k", "--body", str(body),
                       "--server-side-encryption", "bogus", check=False)
    assert printed_error(bogus) == (
        "An error occurred (InvalidArgument) when calling the PutObject operation: "
        "The encryption method specified is not supported"
    )
    listed = json.loads(server.aws("s3api", "list-objects-v2", "--bucket", "bkt").stdout or "{}")
    assert listed.get("Contents", []) == []


# --- limits ---------------------------------------------------------------------------------


def test_metadata_over_2_kb_is_too_large(server):
    s3 = server.client()
    s3.create_bucket(Bucket="bkt")
    # 2 KB exactly: names without `x-amz-meta-`, plus values.
    s3.put_object(Bucket="bkt", Key="fits", Body=b"x", Metadata={"a": "v" * 1023, "b": "v" * 1023})
    assert s3.head_object(Bucket="bkt", Key="fits")["Metadata"]["a"] == "v" * 1023
    with pytest.raises(botocore.exceptions.ClientError) as e:
        s3.put_object(Bucket="bkt", Key="big", Body=b"x", Metadata={"a": "v" * 1023, "b": "v" * 1024})
    assert client_error(e) == ("MetadataTooLarge", 400)
    assert e.value.response["Error"]["Message"] == (
        "Your metadata headers exceed the maximum allowed metadata size."
    )
    assert_missing(s3, "bkt", "big")
    with pytest.raises(botocore.exceptions.ClientError) as e:
        s3.create_multipart_upload(Bucket="bkt", Key="big", Metadata={"a": "v" * 3000})
    assert client_error(e) == ("MetadataTooLarge", 400)
    with pytest.raises(botocore.exceptions.ClientError) as e:
        s3.copy_object(Bucket="bkt", Key="big", CopySource="bkt/fits", MetadataDirective="REPLACE",
                       Metadata={"a": "v" * 3000})
    assert client_error(e) == ("MetadataTooLarge", 400)
    assert_missing(s3, "bkt", "big")


def test_part_numbers_and_delete_keys_have_s3s_limits(server):
    s3 = server.client(parameter_validation=False)
    s3.create_bucket(Bucket="bkt")
    upload = s3.create_multipart_upload(Bucket="bkt", Key="mp")["UploadId"]
    for number in (0, 10001):
        with pytest.raises(botocore.exceptions.ClientError) as e:
            s3.upload_part(Bucket="bkt", Key="mp", UploadId=upload, PartNumber=number, Body=b"x")
        assert client_error(e) == ("InvalidArgument", 400), number
        assert e.value.response["Error"]["Message"] == (
            "Part number must be an integer between 1 and 10000, inclusive"
        )
    s3.upload_part(Bucket="bkt", Key="mp", UploadId=upload, PartNumber=10000, Body=b"x")
    s3.put_object(Bucket="bkt", Key="k0", Body=b"x")
    too_many = {"Objects": [{"Key": f"k{i}"} for i in range(1001)]}
    with pytest.raises(botocore.exceptions.ClientError) as e:
        s3.delete_objects(Bucket="bkt", Delete=too_many)
    assert client_error(e) == ("MalformedXML", 400)
    assert s3.head_object(Bucket="bkt", Key="k0")["ContentLength"] == 1
    done = s3.delete_objects(Bucket="bkt", Delete={"Objects": [{"Key": f"k{i}"} for i in range(1000)]})
    assert len(done["Deleted"]) == 1000


def raw(server, request: bytes) -> tuple[int, bytes]:
    """Sends `request` (headers only) and reads the status line and what follows."""
    url = urllib.parse.urlparse(server.endpoint)
    with socket.create_connection((url.hostname, url.port), timeout=10) as sock:
        sock.sendall(request)
        data = b""
        while b"</Error>" not in data:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    status = int(data.split(b" ", 2)[1])
    return status, data


def test_an_oversized_xml_body_is_400_not_500(server):
    s3 = server.client()
    s3.create_bucket(Bucket="bkt")
    upload = s3.create_multipart_upload(Bucket="bkt", Key="mp")["UploadId"]
    # A 250 MB CompleteMultipartUpload, declared: refused before a byte of it is read.
    status, body = raw(server, (
        f"POST /bkt/mp?uploadId={upload} HTTP/1.1\r\nHost: {urllib.parse.urlparse(server.endpoint).netloc}\r\n"
        "Content-Type: application/xml\r\nContent-Length: 262144000\r\n\r\n"
    ).encode())
    assert status == 400, body
    assert b"<Code>MaxMessageLengthExceeded</Code><Message>Your request was too big.</Message>" in body
    # And through botocore: 10,000 parts with long ETags, about 21 MB of XML.
    parts = [{"PartNumber": n, "ETag": '"' + "e" * 2100 + '"'} for n in range(1, 10001)]
    with pytest.raises(botocore.exceptions.ClientError) as e:
        s3.complete_multipart_upload(Bucket="bkt", Key="mp", UploadId=upload,
                                     MultipartUpload={"Parts": parts})
    assert client_error(e) == ("MaxMessageLengthExceeded", 400)
    # The upload is untouched, and nothing was logged as an internal failure.
    assert s3.list_parts(Bucket="bkt", Key="mp", UploadId=upload).get("Parts", []) == []
    server.stop()
    log = server.proc.stderr.read()
    assert "ERROR" not in log and "InternalError" not in log, log


# --- file modes -----------------------------------------------------------------------------


def modes(root):
    """Every path under `root` with its permission bits."""
    found = {root: stat.S_IMODE(os.stat(root).st_mode)}
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            path = os.path.join(folder, name)
            found[path] = stat.S_IMODE(os.lstat(path).st_mode)
    return found


@pytest.mark.embedded_only("the disk store's own files")
def test_the_data_folder_is_private(server, keyless_bin, tmp_path):
    s3 = server.client()
    s3.create_bucket(Bucket="bkt")
    s3.put_object(Bucket="bkt", Key="k", Body=b"x" * 100_000)
    upload = s3.create_multipart_upload(Bucket="bkt", Key="mp")["UploadId"]
    s3.upload_part(Bucket="bkt", Key="mp", UploadId=upload, PartNumber=1, Body=b"p" * 100_000)
    data = str(server.data_dir)
    found = modes(data)
    assert os.path.join(data, "objects", "meta.redb") in found, sorted(found)
    blobs = [p for p in found if "/blobs/" in p and os.path.isfile(p)]
    assert len(blobs) >= 2, sorted(found)
    objects = os.path.join(data, "objects")
    # The data folder, and everything of the object store; the secrets beside it have their own
    # tests (the issuer's public files are readable, inside a folder that is not).
    ours = {p: m for p, m in found.items() if p == data or p.startswith(objects)}
    assert len(ours) >= 6, sorted(found)
    loose = {p: oct(m) for p, m in ours.items() if m & 0o077}
    assert loose == {}, loose
    assert found[data] == 0o700

    # A folder left open by an older version is tightened when it is opened.
    server.stop()
    for path in ours:
        os.chmod(path, 0o755 if os.path.isdir(path) else 0o644)
    again = Server(keyless_bin, server.data_dir)
    try:
        assert again.client().get_object(Bucket="bkt", Key="k")["Body"].read() == b"x" * 100_000
        tightened = modes(data)
        for path in [data, os.path.join(data, "objects"), os.path.join(data, "objects", "blobs"),
                     os.path.join(data, "objects", "meta.redb")]:
            assert tightened[path] & 0o077 == 0, (path, oct(tightened[path]))
        for blob in blobs:
            assert tightened[os.path.dirname(blob)] & 0o077 == 0, blob
    finally:
        again.stop()


# --- ACLs -----------------------------------------------------------------------------------


def account_id(server):
    return server.client().list_buckets()["Owner"]["ID"]


def test_acls_are_the_owners_full_control(server):
    s3 = server.client()
    owner = account_id(server)
    s3.create_bucket(Bucket="bkt", ACL="private")
    s3.put_object(Bucket="bkt", Key="k", Body=b"x", ACL="bucket-owner-full-control")
    s3.put_object(Bucket="bkt", Key="p", Body=b"x", ACL="private")
    for acl in (s3.get_bucket_acl(Bucket="bkt"), s3.get_object_acl(Bucket="bkt", Key="k")):
        assert acl["Owner"]["ID"] == owner
        assert [(g["Grantee"]["Type"], g["Grantee"]["ID"], g["Permission"]) for g in acl["Grants"]] == [
            ("CanonicalUser", owner, "FULL_CONTROL")
        ]
    s3.put_bucket_acl(Bucket="bkt", ACL="private")
    s3.put_object_acl(Bucket="bkt", Key="k", ACL="bucket-owner-full-control")
    s3.put_object_acl(Bucket="bkt", Key="k", ACL="private")
    s3.put_object_acl(Bucket="bkt", Key="k", AccessControlPolicy={
        "Owner": {"ID": owner},
        "Grants": [{"Grantee": {"Type": "CanonicalUser", "ID": owner}, "Permission": "FULL_CONTROL"}],
    })

    for call in [
        lambda: s3.put_bucket_acl(Bucket="bkt", ACL="public-read"),
        lambda: s3.put_object_acl(Bucket="bkt", Key="k", ACL="public-read"),
        lambda: s3.put_object_acl(Bucket="bkt", Key="k", GrantRead='uri="http://acs.amazonaws.com/groups/global/AllUsers"'),
        lambda: s3.put_object_acl(Bucket="bkt", Key="k", AccessControlPolicy={
            "Owner": {"ID": owner},
            "Grants": [{"Grantee": {"Type": "Group", "URI": "http://acs.amazonaws.com/groups/global/AllUsers"},
                        "Permission": "READ"}],
        }),
        lambda: s3.put_object(Bucket="bkt", Key="public", Body=b"x", ACL="public-read"),
        lambda: s3.create_multipart_upload(Bucket="bkt", Key="public", ACL="public-read-write"),
        lambda: s3.copy_object(Bucket="bkt", Key="public", CopySource="bkt/k", ACL="public-read"),
        lambda: s3.create_bucket(Bucket="public", ACL="public-read"),
    ]:
        with pytest.raises(botocore.exceptions.ClientError) as e:
            call()
        assert client_error(e) == ("AccessControlListNotSupported", 400)
        assert e.value.response["Error"]["Message"] == "The bucket does not allow ACLs"
    assert_missing(s3, "bkt", "public")
    assert "public" not in [b["Name"] for b in s3.list_buckets()["Buckets"]]

    with pytest.raises(botocore.exceptions.ClientError) as e:
        s3.get_object_acl(Bucket="bkt", Key="missing")
    assert client_error(e) == ("NoSuchKey", 404)
    with pytest.raises(botocore.exceptions.ClientError) as e:
        s3.get_bucket_acl(Bucket="nope")
    assert client_error(e) == ("NoSuchBucket", 404)

    cli = server.aws("s3api", "put-bucket-acl", "--bucket", "bkt", "--acl", "public-read", check=False)
    assert printed_error(cli) == (
        "An error occurred (AccessControlListNotSupported) when calling the PutBucketAcl operation: "
        "The bucket does not allow ACLs"
    )


# --- bucket configurations Keyless does not offer --------------------------------------------

NOT_CONFIGURED = [
    ("get_object_lock_configuration", "ObjectLockConfigurationNotFoundError",
     "Object Lock configuration does not exist for this bucket", "s3:GetBucketObjectLockConfiguration"),
    ("get_bucket_replication", "ReplicationConfigurationNotFoundError",
     "The replication configuration was not found", "s3:GetReplicationConfiguration"),
    ("get_bucket_website", "NoSuchWebsiteConfiguration",
     "The specified bucket does not have a website configuration", "s3:GetBucketWebsite"),
    ("get_bucket_cors", "NoSuchCORSConfiguration", "The CORS configuration does not exist", "s3:GetBucketCORS"),
    ("get_bucket_lifecycle_configuration", "NoSuchLifecycleConfiguration",
     "The lifecycle configuration does not exist", "s3:GetLifecycleConfiguration"),
    ("get_bucket_tagging", "NoSuchTagSet", "The TagSet does not exist", "s3:GetBucketTagging"),
    ("get_public_access_block", "NoSuchPublicAccessBlockConfiguration",
     "The public access block configuration was not found", "s3:GetBucketPublicAccessBlock"),
]

ANSWERED = [
    # Every bucket has SSE-S3, as on S3 since 2023 (test_serve_s3_encryption.py).
    ("get_bucket_encryption", "s3:GetEncryptionConfiguration"),
    ("get_bucket_versioning", "s3:GetBucketVersioning"),
    ("get_bucket_ownership_controls", "s3:GetBucketOwnershipControls"),
    ("get_bucket_logging", "s3:GetBucketLogging"),
    ("get_bucket_notification_configuration", "s3:GetBucketNotification"),
    ("get_bucket_acl", "s3:GetBucketAcl"),
]


def test_probes_are_answered_as_for_a_bucket_without_the_feature(server):
    NOT_CONFIGURED, ANSWERED = probes(server)
    s3 = server.client()
    s3.create_bucket(Bucket="bkt")
    for method, code, message, _ in NOT_CONFIGURED:
        with pytest.raises(botocore.exceptions.ClientError) as e:
            getattr(s3, method)(Bucket="bkt")
        assert client_error(e) == (code, 404), method
        assert e.value.response["Error"]["Message"] == message, method
        assert e.value.response["Error"]["BucketName"] == "bkt", method
    for method, *_ in NOT_CONFIGURED + ANSWERED:
        with pytest.raises(botocore.exceptions.ClientError) as e:
            getattr(s3, method)(Bucket="nope")
        assert client_error(e) == ("NoSuchBucket", 404), method

    versioning = s3.get_bucket_versioning(Bucket="bkt")
    assert "Status" not in versioning and "MFADelete" not in versioning, versioning
    rules = s3.get_bucket_ownership_controls(Bucket="bkt")["OwnershipControls"]["Rules"]
    assert rules == [{"ObjectOwnership": "BucketOwnerEnforced"}]
    assert "LoggingEnabled" not in s3.get_bucket_logging(Bucket="bkt")
    notifications = s3.get_bucket_notification_configuration(Bucket="bkt")
    assert not any(k.endswith("Configurations") for k in notifications), notifications

    for command, operation, message in [
        ("get-object-lock-configuration", "GetObjectLockConfiguration",
         "Object Lock configuration does not exist for this bucket"),
        ("get-bucket-tagging", "GetBucketTagging", "The TagSet does not exist"),
        ("get-bucket-cors", "GetBucketCors", "The CORS configuration does not exist"),
    ]:
        proc = server.aws("s3api", command, "--bucket", "bkt", check=False)
        code = next(c for m, c, *_ in NOT_CONFIGURED if m == command.replace("-", "_"))
        assert printed_error(proc) == f"An error occurred ({code}) when calling the {operation} operation: {message}"
    versioning = server.aws("s3api", "get-bucket-versioning", "--bucket", "bkt")
    assert "Status" not in versioning.stdout


def probes(server):
    """NOT_CONFIGURED and ANSWERED for this server: in gateway mode, Keyless does not seal
    objects (the upstream keeps them as it does), so a bucket has no default encryption."""
    if not server.gateway:
        return NOT_CONFIGURED, ANSWERED
    unsealed = ("get_bucket_encryption", "ServerSideEncryptionConfigurationNotFoundError",
                "The server side encryption configuration was not found", "s3:GetEncryptionConfiguration")
    return NOT_CONFIGURED + [unsealed], [a for a in ANSWERED if a[0] != "get_bucket_encryption"]


def test_probes_are_decided_by_their_iam_actions(server):
    server.client().create_bucket(Bucket="bkt")
    server.client().put_object(Bucket="bkt", Key="k", Body=b"x")
    server.aws("iam", "create-user", "--user-name", "probe")
    key = json.loads(server.aws("iam", "create-access-key", "--user-name", "probe").stdout)["AccessKey"]
    user = server.user(key["AccessKeyId"], key["SecretAccessKey"])
    NOT_CONFIGURED, ANSWERED = probes(server)
    everything = [(m, a) for m, _, _, a in NOT_CONFIGURED] + ANSWERED
    for method, _ in everything:
        with pytest.raises(botocore.exceptions.ClientError) as e:
            getattr(user, method)(Bucket="bkt")
        assert client_error(e) == ("AccessDenied", 403), method
    with pytest.raises(botocore.exceptions.ClientError) as e:
        user.get_object_acl(Bucket="bkt", Key="k")
    assert client_error(e) == ("AccessDenied", 403)
    policy = {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": [a for _, a in everything], "Resource": "arn:aws:s3:::bkt"},
        {"Effect": "Allow", "Action": ["s3:GetObjectAcl", "s3:PutObjectAcl"], "Resource": "arn:aws:s3:::bkt/*"},
    ]}
    server.aws("iam", "put-user-policy", "--user-name", "probe", "--policy-name", "probes",
               "--policy-document", json.dumps(policy))
    for method, code, _, _ in NOT_CONFIGURED:
        with pytest.raises(botocore.exceptions.ClientError) as e:
            getattr(user, method)(Bucket="bkt")
        assert error_code(e) == code, method
    for method, _ in ANSWERED:
        getattr(user, method)(Bucket="bkt")
    user.get_object_acl(Bucket="bkt", Key="k")
    user.put_object_acl(Bucket="bkt", Key="k", ACL="private")
    # PutBucketAcl was not granted.
    with pytest.raises(botocore.exceptions.ClientError) as e:
        user.put_bucket_acl(Bucket="bkt", ACL="private")
    assert client_error(e) == ("AccessDenied", 403)
    denied = aws_as(server, key["AccessKeyId"], key["SecretAccessKey"],
                    "s3api", "put-bucket-acl", "--bucket", "bkt", "--acl", "private")
    assert printed_error(denied) == (
        "An error occurred (AccessDenied) when calling the PutBucketAcl operation: "
        "User: arn:aws:iam::000000000000:user/probe is not authorized to perform: "
        's3:PutBucketAcl on resource: "arn:aws:s3:::bkt" '
        "because no identity-based policy allows the s3:PutBucketAcl action"
    )


def test_a_body_over_5_gib_is_refused_before_it_is_read(server):
    """PutObject and UploadPart take 5 GiB at most; a larger Content-Length is refused with
    EntityTooLarge at once, not after the client has sent gigabytes."""
    s3 = server.client(signature_version="s3v4")
    s3.create_bucket(Bucket="bkt")
    upload = s3.create_multipart_upload(Bucket="bkt", Key="big")["UploadId"]
    for method, params in (("put_object", {"Bucket": "bkt", "Key": "big"}),
                           ("upload_part", {"Bucket": "bkt", "Key": "big", "UploadId": upload, "PartNumber": 1})):
        url = urllib.parse.urlsplit(s3.generate_presigned_url(method, Params=params))
        with socket.create_connection((url.hostname, url.port), timeout=10) as sock:
            sock.sendall((f"PUT {url.path}?{url.query} HTTP/1.1\r\nHost: {url.netloc}\r\n"
                          f"Content-Length: {6 * 1024 ** 3}\r\n\r\n").encode())
            answer = sock.recv(65536).decode(errors="replace")
        assert answer.startswith("HTTP/1.1 400"), answer
        assert "<Code>EntityTooLarge</Code>" in answer, answer
        assert "Your proposed upload exceeds the maximum allowed size" in answer
