"""Recording HTTP servers on host loopback: an EC2 instance metadata service stub and a fake S3.

`IMDSStub` implements the IMDS contract clients rely on, as observed on EC2:
- PUT /latest/api/token with X-aws-ec2-metadata-token-ttl-seconds in 1..21600 answers a token
  and echoes the TTL header (400 without it or out of range, 403 with X-Forwarded-For);
- GETs accept a token in X-aws-ec2-metadata-token (401 when it is unknown, or missing while
  `require_token` is set: IMDSv2 only);
- iam/security-credentials/ lists the role, iam/security-credentials/<role> answers the
  credentials JSON with whole-second UTC times, iam/info, placement/region and
  availability-zone, and the dynamic instance-identity document; anything else is a 404;
- every answer is text/plain with `Server: EC2ws`.
Knobs for research: `echo_ttl=False` drops the TTL header from token answers; `faults` maps a
path (or "PUT /latest/api/token") to a status answered instead; `listing` is the body of
iam/security-credentials/ (default exactly ROLE, no newline).

`FakeS3` answers every request 403 AccessDenied. Both record each request (client IP and port, method,
path, headers, body, time, answered status) in `requests`.
"""

from __future__ import annotations

import datetime
import http.server
import json
import secrets
import threading
import time

ROLE = "myrole"
ACCOUNT = "123456789012"
ACCESS_KEY_ID = "ASIAIMDSSTUBEXAMPLE1"
REGION = "us-east-1"


def _iso(t: datetime.datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


class Recorder:
    """A threaded HTTP/1.1 server on 127.0.0.1:0 that records requests; `answer` decides."""

    def __init__(self):
        recorder = self
        self.requests: list[dict] = []
        self._lock = threading.Lock()

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True

            def handle_one(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                received = time.monotonic()
                status, headers, payload = recorder.answer(self.command, self.path, self.headers)
                with recorder._lock:
                    recorder.requests.append({
                        "time": received, "client": self.client_address[0],
                        "port": self.client_address[1], "method": self.command,
                        "path": self.path, "headers": list(self.headers.items()), "body": body,
                        "status": status,
                    })
                self.send_response(status)
                for name, value in headers:
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(payload)

            do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = handle_one

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def answer(self, method: str, path: str, headers) -> tuple[int, list[tuple[str, str]], bytes]:
        raise NotImplementedError

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class IMDSStub(Recorder):
    """The EC2 metadata service for one instance whose profile role is ROLE."""

    def __init__(self, require_token: bool = False, echo_ttl: bool = True,
                 faults: dict[str, int] | None = None, listing: str = ROLE):
        self.require_token, self.echo_ttl, self.listing = require_token, echo_ttl, listing
        self.faults = faults or {}
        self.tokens: dict[str, float] = {}
        super().__init__()

    def _text(self, status: int, body: str | bytes, extra=()) -> tuple[int, list, bytes]:
        payload = body.encode() if isinstance(body, str) else body
        return status, [("Content-Type", "text/plain"), ("Server", "EC2ws"), *extra], payload

    def answer(self, method, path, headers):
        key = f"{method} {path}" if method != "GET" else path
        if key in self.faults:
            return self._text(self.faults[key], "")
        if path == "/latest/api/token":
            return self._token(method, headers)
        if method not in ("GET", "HEAD"):
            return self._text(405, "")
        token = headers.get("X-aws-ec2-metadata-token")
        if token is not None and self.tokens.get(token, 0) < time.time():
            return self._text(401, "")
        if token is None and self.require_token:
            return self._text(401, "")
        body = self._document(path)
        if body is None:
            return self._text(404, "<?xml version=\"1.0\" encoding=\"iso-8859-1\"?>\n"
                                   "<title>404 - Not Found</title>\n")
        return self._text(200, body)

    def _token(self, method, headers):
        if method != "PUT":
            return self._text(405, "")
        if headers.get("X-Forwarded-For"):
            return self._text(403, "")
        try:
            ttl = int(headers.get("X-aws-ec2-metadata-token-ttl-seconds", ""))
        except ValueError:
            return self._text(400, "")
        if not 1 <= ttl <= 21600:
            return self._text(400, "")
        token = secrets.token_urlsafe(42)
        self.tokens[token] = time.time() + ttl
        echo = [("X-aws-ec2-metadata-token-ttl-seconds", str(ttl))] if self.echo_ttl else []
        return self._text(200, token, echo)

    def _document(self, path: str) -> str | None:
        now = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
        creds = "/latest/meta-data/iam/security-credentials"
        docs = {
            "/latest/meta-data/": "ami-id\nhostname\niam/\ninstance-id\nplacement/\n",
            "/latest/meta-data/instance-id": "i-0123456789abcdef0",
            "/latest/meta-data/placement/region": REGION,
            "/latest/meta-data/placement/availability-zone": f"{REGION}a",
            # fog-aws asks with the slash, then drops the last character to make the region.
            "/latest/meta-data/placement/availability-zone/": f"{REGION}a",
            "/latest/meta-data/iam/": "info\nsecurity-credentials/\n",
            "/latest/meta-data/iam/info": json.dumps({
                "Code": "Success", "LastUpdated": _iso(now),
                "InstanceProfileArn": f"arn:aws:iam::{ACCOUNT}:instance-profile/{ROLE}",
                "InstanceProfileId": "AIPAIMDSSTUBEXAMPLE01"}, indent=2),
            f"{creds}/": self.listing,
            f"{creds}": self.listing,
            f"{creds}/{ROLE}": json.dumps({
                "Code": "Success", "LastUpdated": _iso(now), "Type": "AWS-HMAC",
                "AccessKeyId": ACCESS_KEY_ID, "SecretAccessKey": "imds/stub/secret/key/example",
                "Token": "IQoJb3JpZ2luX2VjEIMDSSTUBTOKEN",
                "Expiration": _iso(now + datetime.timedelta(hours=6))}, indent=2),
            "/latest/dynamic/instance-identity/document": json.dumps({
                "accountId": ACCOUNT, "architecture": "x86_64",
                "availabilityZone": f"{REGION}a", "imageId": "ami-0123456789abcdef0",
                "instanceId": "i-0123456789abcdef0", "instanceType": "m5.large",
                "pendingTime": _iso(now), "privateIp": "10.0.0.10", "region": REGION,
                "version": "2017-09-30"}, indent=2),
        }
        return docs.get(path)


class FakeS3(Recorder):
    """Answers every request 403 AccessDenied, as S3 does to a signature it cannot check."""

    def answer(self, method, path, headers):
        body = (b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>AccessDenied</Code>'
                b"<Message>Access Denied</Message><RequestId>0</RequestId></Error>")
        return 403, [("Content-Type", "application/xml"), ("x-amz-request-id", "0")], body
