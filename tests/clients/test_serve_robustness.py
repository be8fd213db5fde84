"""Bad input and crashes: the server answers clients' mistakes with 4xx, never loses or tears
data, and a kill -9 in the middle of an upload leaves the key absent (or whole), never partial."""

import http.client
import os
import signal
import subprocess
import socket
import time
import urllib.parse

import botocore
import pytest
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from test_serve_s3 import Server, error_code


def keys_of(server):
    return dict(
        line.split(" = ", 1) for line in server.credentials.read_text().splitlines() if " = " in line
    )


def signed_headers(server, method, path, headers, unsigned=True, body=b""):
    """Headers for `method path`, signed by botocore's own SigV4 signer."""
    keys = keys_of(server)
    creds = Credentials(keys["aws_access_key_id"], keys["aws_secret_access_key"])
    req = AWSRequest(method=method, url=server.endpoint + path, headers=dict(headers), data=None if unsigned else body)
    req.context["payload_signing_enabled"] = not unsigned
    S3SigV4Auth(creds, "s3", "us-east-1").add_auth(req)
    return dict(req.headers.items())


def connection(server):
    u = urllib.parse.urlparse(server.endpoint)
    return http.client.HTTPConnection(u.hostname, u.port, timeout=30)


@pytest.fixture
def server(keyless_bin, tmp_path):
    s = Server(keyless_bin, tmp_path / "data")
    yield s
    s.stop()


def test_kill_9_during_a_large_put_leaves_the_key_absent(keyless_bin, tmp_path):
    server = Server(keyless_bin, tmp_path / "data")
    s3 = server.client()
    s3.create_bucket(Bucket="crash")
    s3.put_object(Bucket="crash", Key="kept", Body=b"committed before the crash")
    size = 512 * 1024 * 1024
    headers = signed_headers(server, "PUT", "/crash/big", {"Content-Length": str(size)})
    conn = connection(server)
    conn.putrequest("PUT", "/crash/big", skip_accept_encoding=True)
    for k, v in headers.items():
        conn.putheader(k, v)
    conn.endheaders()
    chunk = os.urandom(1024 * 1024)
    for _ in range(64):
        conn.send(chunk)
    # 64 MiB of 512 are on their way: the server dies without warning.
    os.kill(server.proc.pid, signal.SIGKILL)
    server.proc.wait()
    conn.close()
    leftovers = list((tmp_path / "data" / "objects" / "tmp").iterdir())
    assert leftovers, "the upload was in flight, so a temporary file should be left by the crash"

    restarted = Server(keyless_bin, tmp_path / "data")
    try:
        s3 = restarted.client()
        with pytest.raises(botocore.exceptions.ClientError) as e:
            s3.head_object(Bucket="crash", Key="big")
        assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404
        assert s3.get_object(Bucket="crash", Key="kept")["Body"].read() == b"committed before the crash"
        assert [o["Key"] for o in s3.list_objects_v2(Bucket="crash")["Contents"]] == ["kept"]
        # The crash's temporary file is gone, and no blob is left unreferenced.
        assert list((tmp_path / "data" / "objects" / "tmp").iterdir()) == []
        blobs = [p for p in (tmp_path / "data" / "objects" / "blobs").rglob("*") if p.is_file()]
        assert len(blobs) == 0  # "kept" is small: it lives in its record
    finally:
        restarted.stop()


def test_a_truncated_body_stores_nothing(server):
    s3 = server.client()
    s3.create_bucket(Bucket="trunc")
    s3.put_object(Bucket="trunc", Key="k", Body=b"original")
    headers = signed_headers(server, "PUT", "/trunc/k", {"Content-Length": "1000"})
    conn = connection(server)
    conn.putrequest("PUT", "/trunc/k", skip_accept_encoding=True)
    for k, v in headers.items():
        conn.putheader(k, v)
    conn.endheaders()
    conn.send(b"x" * 500)
    conn.sock.shutdown(socket.SHUT_WR)
    try:
        conn.getresponse().read()
    except (http.client.HTTPException, ConnectionError):
        pass
    conn.close()
    time.sleep(0.2)
    assert s3.get_object(Bucket="trunc", Key="k")["Body"].read() == b"original"
    assert list((server.data_dir / "objects" / "tmp").iterdir()) == []


def test_a_wrong_payload_hash_stores_nothing(server):
    s3 = server.client()
    s3.create_bucket(Bucket="hash")
    body = b"the real body"
    headers = signed_headers(server, "PUT", "/hash/k", {"Content-Length": str(len(body))}, unsigned=False, body=b"another body!")
    conn = connection(server)
    conn.request("PUT", "/hash/k", body=body, headers=headers)
    resp = conn.getresponse()
    resp.read()
    assert 400 <= resp.status < 500
    with pytest.raises(botocore.exceptions.ClientError):
        s3.head_object(Bucket="hash", Key="k")


@pytest.mark.parametrize("path, body, code", [
    ("/xml?delete", b"<Delete><Object><Key>a</Key></Object", "MalformedXML"),
    ("/xml?delete", b"not xml at all", "MalformedXML"),
    ("/xml/k?uploadId=nope", b"<CompleteMultipartUpload><Part>", "MalformedXML"),
])
def test_malformed_xml_is_a_client_error(server, path, body, code):
    server.client().create_bucket(Bucket="xml")
    method = "POST"
    headers = signed_headers(server, method, path, {"Content-Length": str(len(body)), "Content-Type": "application/xml"},
                             unsigned=False, body=body)
    conn = connection(server)
    conn.request(method, path, body=body, headers=headers)
    resp = conn.getresponse()
    text = resp.read().decode()
    assert resp.status == 400, text
    assert f"<Code>{code}</Code>" in text


def test_oversized_headers_are_refused_and_the_server_lives_on(server):
    conn = connection(server)
    conn.request("GET", "/", headers={"X-Padding": "p" * 200_000})
    resp = conn.getresponse()
    resp.read()
    assert resp.status in (400, 431)
    assert server.client().list_buckets()["Buckets"] == []


@pytest.mark.parametrize("name", ["ab", "UPPER", "under_score", "-leading", "a" * 64, "ends-"])
def test_invalid_bucket_names(server, name):
    with pytest.raises(botocore.exceptions.ClientError) as e:
        server.client(parameter_validation=False).create_bucket(Bucket=name)
    assert error_code(e) == "InvalidBucketName"


def test_virtual_hosted_style_with_a_domain(keyless_bin, tmp_path):
    server = Server(keyless_bin, tmp_path / "data", extra=["--domain", "s3.keyless.test"])
    try:
        server.client().create_bucket(Bucket="vhost")
        port = urllib.parse.urlparse(server.endpoint).port
        host = f"vhost.s3.keyless.test:{port}"
        keys = keys_of(server)
        creds = Credentials(keys["aws_access_key_id"], keys["aws_secret_access_key"])

        def send(method, path, body=b""):
            req = AWSRequest(method=method, url=f"http://{host}{path}", data=body)
            S3SigV4Auth(creds, "s3", "us-east-1").add_auth(req)
            conn = connection(server)
            conn.request(method, path, body=body, headers={"Host": host, **dict(req.headers.items())})
            resp = conn.getresponse()
            return resp.status, resp.read()

        assert send("PUT", "/docker/manifest", b"virtual")[0] == 200
        assert send("GET", "/docker/manifest") == (200, b"virtual")
        # The same object, path style.
        assert server.client().get_object(Bucket="vhost", Key="docker/manifest")["Body"].read() == b"virtual"
        status, body = send("GET", "/?list-type=2")
        assert status == 200 and b"<Key>docker/manifest</Key>" in body
    finally:
        server.stop()


def test_debug_logs_do_not_carry_presigned_urls(keyless_bin, tmp_path):
    """A presigned URL is a credential until it expires; even at RUST_LOG=debug it stays out of
    the log (s3s logs request URIs at debug)."""
    env = dict(os.environ, RUST_LOG="debug")
    proc = subprocess.Popen([keyless_bin, "serve", "--listen", "127.0.0.1:0", "--data-dir", str(tmp_path / "d")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        endpoint = proc.stdout.readline().split()[-1]
        server = type("S", (), {})()
        server.endpoint, server.credentials = endpoint, tmp_path / "d" / "root-credentials"
        keys = keys_of(server)
        import boto3
        from botocore.config import Config
        s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", config=Config(signature_version="s3v4"),
                          aws_access_key_id=keys["aws_access_key_id"], aws_secret_access_key=keys["aws_secret_access_key"])
        s3.create_bucket(Bucket="logs")
        s3.put_object(Bucket="logs", Key="k", Body=b"x")
        import urllib.request
        url = s3.generate_presigned_url("get_object", Params={"Bucket": "logs", "Key": "k"})
        assert urllib.request.urlopen(url).read() == b"x"
    finally:
        proc.terminate()
        _, stderr = proc.communicate(timeout=10)
    assert "X-Amz-Signature" not in stderr
    assert keys["aws_secret_access_key"] not in stderr
