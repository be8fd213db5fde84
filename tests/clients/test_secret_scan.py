"""The secret scan of the session's logs (secret_scan.py, run by conftest.py at the end of every
session): it finds each kind of secret it looks for, in the forms logs hold it (as written, in
JSON, URL-encoded), including real keys, tokens and session credentials from a running server;
it finds nothing in what Keyless legitimately logs; and the wrapper that keeps the logs is
transparent to the tests (the process is the binary's own, with its exit status, its first line
at once, the end of its output when it exits, its standard input, inside `ip netns exec`).
"""

import base64
import hashlib
import hmac
import json
import os
import re
import secrets
import subprocess
import time
import urllib.parse
import uuid

import boto3
import jwt
import pytest

from secret_scan import SECRET_KEY, find_secrets, looks_random, redact
from test_serve_s3 import Server
from test_serve_sts import keyless_token, make_role, trust, issuer_of, provider_arn

B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"


def kinds(line, literals=(), allow=()):
    return {h.kind for h in find_secrets(line, literals, allow)[1]}


def fake_secret_key():
    """A secret access key as crates/keyless-iam/src/ids.rs makes one."""
    return "".join(B64[b % 64] for b in os.urandom(40))


def fake_session_token():
    """A session token as crates/keyless-sts/src/seal.rs lays one out: version 1, a 12-byte
    nonce, sealed JSON claims and a 16-byte tag, in standard base64."""
    return base64.b64encode(b"\x01" + os.urandom(12) + os.urandom(180) + os.urandom(16)).decode()


def test_the_scan_finds_each_kind_of_secret_in_the_forms_logs_hold():
    """Fake but correctly shaped secrets of every kind, in the lines a log or a record would
    hold them in: each line is a hit of the expected kind, and the excerpt shown does not
    contain the secret."""
    key, token, sig = fake_secret_key(), fake_session_token(), secrets.token_hex(32)
    sigv2 = base64.b64encode(hmac.new(b"k", b"m", hashlib.sha1).digest()).decode()
    web_token = jwt.encode({"iss": "https://kubernetes.default.svc", "sub": "system:serviceaccount:a:b",
                            "aud": "sts.amazonaws.com", "exp": 2000000000}, "not-a-real-key-not-a-real-key-0123", algorithm="HS256")
    cases = [
        (f"aws_secret_access_key = {key}", key, "secret access key"),
        (json.dumps({"SecretAccessKey": key, "AccessKeyId": "AKIAIOSFODNN7EXAMPLE"}), key, "secret access key"),
        (f"GET /?Action=X&SecretAccessKey={urllib.parse.quote(key, safe='')}&Version=1", key, "secret access key"),
        ("AWS_SECRET_ACCESS_KEY=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
         "secret access key"),
        (f"authorization: AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20240101/us-east-1/s3/aws4_request, "
         f"SignedHeaders=host;x-amz-date, Signature={sig}", sig, "SigV4 signature"),
        (f"GET /b/k?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Expires=60&X-Amz-Signature={sig} HTTP/1.1", sig,
         "SigV4 signature"),
        (f"uri=%2Fb%2Fk%3FX-Amz-Signature%3D{sig}", sig, "SigV4 signature"),
        (f"10000;chunk-signature={sig}", sig, "SigV4 signature"),
        (json.dumps({"x-amz-signature": sig}), sig, "SigV4 signature"),
        (f"GET /b/k?AWSAccessKeyId=AKIAIOSFODNN7EXAMPLE&Expires=1&Signature={urllib.parse.quote(sigv2, safe='')}",
         sigv2, "SigV2 signature"),
        (f"Authorization: AWS AKIAIOSFODNN7EXAMPLE:{sigv2}", sigv2, "SigV2 signature"),
        (f"WebIdentityToken={web_token}", web_token, "JWT"),
        (json.dumps({"token": web_token}), web_token, "JWT"),
        (f"x-amz-security-token: {token}", token, "session token"),
        (json.dumps({"SessionToken": token}), token, "session token"),
        (f"GET /b/k?X-Amz-Security-Token={urllib.parse.quote(token, safe='')}", token, "session token"),
        (f"GET /b/k?X-Amz-Security-Token=FwoGZXIvYXdzEJr{'x' * 20}", "FwoGZXIvYXdzEJr", "session token"),
    ]
    for line, secret, kind in cases:
        text, hits = find_secrets(line)
        assert kind in {h.kind for h in hits}, (kind, line)
        excerpt = redact(text, hits)
        assert secret not in excerpt and secret[:4] in excerpt, excerpt
    # A secret known by value, whatever its shape.
    assert kinds("upstream key upstream-secret-upstream-secret-upstream refused",
                 literals=["upstream-secret-upstream-secret-upstream"]) == {"known secret"}
    # What a command prints as its answer is allowed for that command alone.
    assert kinds(web_token, allow={"JWT"}) == set() and kinds(web_token) == {"JWT"}


def test_the_scan_finds_nothing_in_what_keyless_legitimately_logs():
    """Ids, digests, checksums, paths and names Keyless's logs and records are full of are not
    secrets; if one of these were a hit, every session would fail for nothing."""
    request_id = str(uuid.uuid4())
    legit = [
        json.dumps({"requestID": request_id, "eventID": str(uuid.uuid4()),
                    "x-amz-id-2": base64.b64encode(request_id.encode()).decode(),
                    "ETag": hashlib.md5(b"x").hexdigest(), "x-amz-version-id": "0000000000000001721c7418bb03d20a"}),
        f"x-amz-content-sha256: {hashlib.sha256(b'x').hexdigest()}",
        f"x-amz-checksum-sha256: {base64.b64encode(hashlib.sha256(b'x').digest()).decode()}",
        f"x-amz-checksum-sha1: {base64.b64encode(hashlib.sha1(b'x').digest()).decode()}",
        f"commit {hashlib.sha1(b'x').hexdigest()}",
        '"additionalEventData": {"AuthenticationMethod": "QueryString", "SignatureVersion": "SigV2"}',
        "error: the request signature we calculated does not match the signature you provided",
        "/tmp/pytest-of-root/pytest-12/test_every_request_leaves_a_cl0/data/objects/meta.redb",
        "/usr/lib/python3/dist-packages/botocore/data/s3/2006-03-01/service-2.json",
        "ListObjectVersionsWithPrefixAndDelimiter and GetBucketLifecycleConfiguration",
        "kid spOm2FguQG6qvgtTNrGVZ9pKKw--4IUMX_6tQNFzf80 x 4oQx0NsLh7sxWtsUjKh0Z6l3s_tXUXf0y3qqG9_Ku9M",
        "arn:aws:iam::000000000000:oidc-provider/127.0.0.1:35157:sts.amazonaws.com:system:serviceaccount:gitlab:registry",
        "credentials: accessKeyId ASIATAEEKZFTOQYGQEMD, expiration Dec 7, 2026 4:49:27 PM",
        "AROAXK5PARYDQV75FSCFY:pod-1 AIDA3A45C2PRGQXZPWJNP AKIA6E6OXAJ5TORNMDQ4",
    ]
    for line in legit:
        assert kinds(line) == set(), line


def test_random_keys_pass_the_filter_that_keeps_words_out():
    """Of the runs of 40 base64 characters, those that cannot be random are not taken for keys
    (secret_scan.looks_random). A random key is refused with a probability of about 2e-6:
    letters alone, (52/64)^40 = 2.5e-4, times at most 12 capitals of 40, 8.3e-3 (no upper or no
    lower case letter, 2e-9, and fewer than 16 distinct characters, 3e-12, add little). 100,000
    keys made as Keyless makes them all pass, those of ids.rs (40 random base64 symbols) and of
    seal.rs (an HMAC-SHA256's base64, cut to 40); words written together do not."""
    for _ in range(50_000):
        key = fake_secret_key()
        assert SECRET_KEY.fullmatch(key) and looks_random(key), key
        derived = base64.b64encode(hmac.new(os.urandom(32), os.urandom(20), hashlib.sha256).digest()).decode()[:40]
        assert SECRET_KEY.fullmatch(derived) and looks_random(derived), derived
    assert not looks_random("ListObjectVersionsWithPrefixAndDelimiter")
    assert not looks_random("da39a3ee5e6b4b0d3255bfef95601890afd80709")


def test_the_scan_finds_a_real_server_s_keys_and_tokens(keyless_bin, tmp_path):
    """The secrets a running `keyless serve` hands out: its root key, an IAM user's key, a web
    identity token it minted, and a session's secret key and token; each is found by its shape
    alone (no literal), in the lines a log would hold it in."""
    server = Server(keyless_bin, tmp_path / "data")
    try:
        root = server.keys()["aws_secret_access_key"]
        server.aws("iam", "create-user", "--user-name", "someone")
        user = json.loads(server.aws("iam", "create-access-key", "--user-name", "someone").stdout)["AccessKey"]
        issuer = issuer_of(server)
        role = make_role(server, "app", trust(provider_arn(issuer), issuer.split("://", 1)[1],
                                              "system:serviceaccount:ns:app"), "b")
        token = keyless_token(keyless_bin, server, "ns", "app")
        sts = boto3.client("sts", endpoint_url=server.endpoint, region_name="us-east-1",
                           aws_access_key_id="x", aws_secret_access_key="x")
        creds = sts.assume_role_with_web_identity(RoleArn=role, RoleSessionName="scan", WebIdentityToken=token)["Credentials"]
    finally:
        server.stop()
    for secret, kind in ((root, "secret access key"), (user["SecretAccessKey"], "secret access key"),
                         (creds["SecretAccessKey"], "secret access key"), (creds["SessionToken"], "session token"),
                         (token, "JWT")):
        for line in (f"value {secret} end", json.dumps({"v": secret}), f"GET /?v={urllib.parse.quote(secret, safe='')}"):
            assert kinds(line) == {kind}, (kind, line)
    assert re.fullmatch(r"A[Q-Za-f][A-Za-z0-9+/]{146,}={0,2}", creds["SessionToken"]), creds["SessionToken"][:8]


# ---------------------------------------------------------------------------------------------
# The wrapper


def log_dir():
    return os.environ["KEYLESS_TEST_LOG_DIR"]


def kept_copies(before):
    """The log files the wrapper made since `before` (a set of names)."""
    return {name for name in os.listdir(log_dir()) if name not in before}


def test_the_wrapper_is_transparent_and_keeps_the_output(keyless_bin, tmp_path):
    """The wrapper execs the binary (the pid the test holds is Keyless's own, /proc/PID/exe is
    the binary), passes the exit status, standard input and arguments, lets a server's first
    line through while it runs, ends the output when the process exits, writes a file the test
    gave as it would be written, and keeps a copy of each stream."""
    real = os.environ.get("KEYLESS_BIN") or os.path.realpath(
        os.path.join(os.path.dirname(__file__), "..", "..", "target", "debug", "keyless"))
    # Exit status and output, as the binary's own.
    for argv in (["--version"], ["no-such-command"]):
        direct = subprocess.run([real, *argv], capture_output=True, text=True)
        wrapped = subprocess.run([keyless_bin, *argv], capture_output=True, text=True)
        assert (wrapped.returncode, wrapped.stdout, wrapped.stderr) == (direct.returncode, direct.stdout, direct.stderr)
    assert subprocess.run([keyless_bin, "no-such-command"], capture_output=True).returncode == 2
    # Standard input, and an argument holding spaces and a newline.
    record = {"eventVersion": "1.11", "eventName": "Get Object\nx", "eventTime": "2024-01-01T00:00:00Z",
              "userIdentity": {"type": "Root"}}
    read = subprocess.run([keyless_bin, "audit", "/dev/stdin", "--json", "--event", "Get Object\nx"],
                          input=json.dumps(record) + "\n", capture_output=True, text=True)
    assert read.returncode == 0 and json.loads(read.stdout)["eventName"] == "Get Object\nx", read

    before = set(os.listdir(log_dir()))
    proc = subprocess.Popen([keyless_bin, "serve", "--listen", "127.0.0.1:0", "--data-dir", str(tmp_path / "data")],
                            stdout=subprocess.PIPE, stderr=open(tmp_path / "serve.log", "w"), text=True)
    try:
        started = time.monotonic()
        first = proc.stdout.readline()
        assert first.startswith("keyless: S3 endpoint http://127.0.0.1:"), first
        assert time.monotonic() - started < 30 and proc.poll() is None
        assert os.path.realpath(f"/proc/{proc.pid}/exe") == os.path.realpath(real)
        proc.terminate()
        assert proc.wait(timeout=30) == 0
        # The rest of the output, then its end, once the process is gone.
        rest = proc.stdout.read()
    finally:
        if proc.poll() is None:
            proc.kill()
    made = kept_copies(before)
    stem = next(name for name in made if name.endswith(".cmd"))[:-len(".cmd")]
    kept = open(os.path.join(log_dir(), f"{stem}.out")).read()
    assert kept == first + rest
    # The log file the test gave is linked, not copied: one file, written as the test sees it.
    assert os.path.samefile(os.path.join(log_dir(), f"{stem}.err"), tmp_path / "serve.log")
    assert open(os.path.join(log_dir(), f"{stem}.cmd"), "rb").read().split(b"\0")[0] == b"serve"


def test_the_wrapper_runs_inside_a_network_namespace(keyless_bin):
    """As pods.py runs Keyless in a pod: `ip netns exec NS keyless ...`, with the pod's bare
    environment."""
    if os.geteuid() != 0:
        pytest.skip("network namespaces need root")
    name = f"klscan{os.getpid()}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        before = set(os.listdir(log_dir()))
        out = subprocess.run(["ip", "netns", "exec", name, keyless_bin, "--version"], capture_output=True, text=True,
                             env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"})
        assert out.returncode == 0 and out.stdout.startswith("keyless "), out
        copies = [n for n in kept_copies(before) if n.endswith(".out")]
        assert [open(os.path.join(log_dir(), n)).read() for n in copies] == [out.stdout]
    finally:
        subprocess.run(["ip", "netns", "delete", name], check=False)
