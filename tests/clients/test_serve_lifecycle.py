"""A server's life, with real processes and real clients: `/healthz` and `/readyz` on the admin
listener; SIGTERM and SIGINT drain (the listener closes at once, readiness turns 503, requests in
flight finish, the process exits 0), a second signal stops at once, the grace period ends a
request that cannot finish; connection limits wait in the backlog, idle connections close, and a
flood of idle connections past the open-file limit neither fills the log nor spins a core.

`keyless agent` gets the same drain with a credentials request in flight: its pod is 127.0.0.1
in the pods file, so no network namespace (and no root) is needed, and its STS is a `keyless
serve` behind a proxy that holds the AssumeRole call until the test lets it through.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import random
import re
import resource
import signal
import socket
import subprocess
import threading
import time
import types
import urllib.parse

import boto3
import botocore
import pytest
from botocore.config import Config

from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from test_agent import Agent, KeylessServer, PodsFile, StsProxy, wait_for_line

STARTUP = 20  # seconds a server may take to print its banner
ANSI = re.compile(r"\x1b\[[0-9;]*m")


class Serve:
    """`keyless serve` on 127.0.0.1:0 with its own admin port, banner and log in files."""

    def __init__(self, keyless_bin, workdir, data_dir, extra=(), preexec_fn=None, env=None):
        os.makedirs(workdir, exist_ok=True)
        self.data_dir = data_dir
        self.credentials = data_dir / "root-credentials"
        n = len([p for p in os.listdir(workdir) if p.endswith(".out")])
        self.out, self.log = workdir / f"serve{n}.out", workdir / f"serve{n}.log"
        with open(self.out, "w") as out, open(self.log, "w") as err:
            self.proc = subprocess.Popen(
                [keyless_bin, "serve", "--listen", "127.0.0.1:0", "--data-dir", str(data_dir), *extra],
                stdout=out, stderr=err, stdin=subprocess.DEVNULL, preexec_fn=preexec_fn,
                env=dict(os.environ, **(env or {})))
        try:
            self.endpoint = wait_for_line(self.out, r"keyless: S3 endpoint (http://\S+)\n", self.proc,
                                          "keyless serve", STARTUP).group(1)
            self.admin = None
            if "--admin-listen" not in extra:
                self.admin = wait_for_line(self.out, r"keyless: admin http://(\S+) \(/healthz, /readyz, /metrics\)\n",
                                           self.proc, "keyless serve", STARTUP).group(1)
        except AssertionError as e:
            self.kill()
            raise AssertionError(f"{e}\n{self.logs()}") from None
        u = urllib.parse.urlparse(self.endpoint)
        self.host, self.port = u.hostname, u.port

    def logs(self) -> str:
        return ANSI.sub("", self.log.read_text(errors="replace"))[-6000:]

    def log_lines(self) -> int:
        with open(self.log, "rb") as f:
            return sum(1 for _ in f)

    def keys(self) -> dict:
        return dict(line.split(" = ", 1) for line in self.credentials.read_text().splitlines() if " = " in line)

    def client(self, **config):
        keys = self.keys()
        return boto3.session.Session().client(
            "s3", endpoint_url=self.endpoint, region_name="us-east-1",
            aws_access_key_id=keys["aws_access_key_id"], aws_secret_access_key=keys["aws_secret_access_key"],
            config=Config(**config))

    def connect(self, timeout=30) -> http.client.HTTPConnection:
        return http.client.HTTPConnection(self.host, self.port, timeout=timeout)

    def signal(self, sig) -> float:
        os.kill(self.proc.pid, sig)
        return time.monotonic()

    def wait(self, timeout) -> int:
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"still running {timeout} s after the signal\n{self.logs()}") from None

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def started(keyless_bin, tmp_path):
    """Starts servers; kills whatever a test left running."""
    servers = []

    def start(extra=(), data_dir=None, **kw):
        s = Serve(keyless_bin, tmp_path, data_dir or tmp_path / "data", extra=extra, **kw)
        servers.append(s)
        return s

    yield start
    for s in servers:
        s.kill()


def get(addr: str, path: str, method="GET", timeout=5) -> tuple[int, str]:
    host, port = addr.rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=timeout)
    try:
        conn.request(method, path)
        resp = conn.getresponse()
        return resp.status, resp.read().decode()
    finally:
        conn.close()


def wait_until(what: str, check, timeout=10.0, every=0.02):
    """The first truthy `check()` within `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s: {what}")
        time.sleep(every)


def readyz_503(addr: str):
    status, body = get(addr, "/readyz")
    return body if status == 503 else None


def refused(host: str, port: int) -> bool:
    """Whether a new connection to the port is refused by the kernel (nothing listens)."""
    try:
        socket.create_connection((host, port), timeout=2).close()
    except ConnectionRefusedError:
        return True
    return False


def closed_by_peer(sock: socket.socket, timeout: float) -> bool:
    """Whether the peer closes `sock` (EOF or reset) within `timeout` seconds, reading nothing."""
    sock.settimeout(timeout)
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


class UnsignedPayload(S3SigV4Auth):
    """botocore's SigV4 signer with `x-amz-content-sha256: UNSIGNED-PAYLOAD`, as boto3 signs
    uploads over HTTPS (over HTTP it hashes the body, which a streamed body cannot give)."""

    def _should_sha256_sign_payload(self, request):
        return False


def start_put(server: Serve, path: str, size: int) -> http.client.HTTPConnection:
    """A signed PUT of `size` bytes whose headers are sent; the body is the caller's to send."""
    keys = server.keys()
    req = AWSRequest(method="PUT", url=server.endpoint + path, headers={"Content-Length": str(size)})
    UnsignedPayload(Credentials(keys["aws_access_key_id"], keys["aws_secret_access_key"]), "s3",
                    "us-east-1").add_auth(req)
    headers = dict(req.headers.items())
    assert headers["X-Amz-Content-SHA256"] == "UNSIGNED-PAYLOAD"
    conn = server.connect(timeout=60)
    conn.putrequest("PUT", path, skip_accept_encoding=True)
    for k, v in headers.items():
        conn.putheader(k, v)
    conn.endheaders()
    return conn


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of the process so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    # Fields 14 and 15 of proc(5), counted from the state (field 3) here.
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def socket_fds(pid: int) -> int:
    """How many sockets the process holds open."""
    n = 0
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            n += os.readlink(f"/proc/{pid}/fd/{fd}").startswith("socket:")
        except FileNotFoundError:
            pass
    return n


def listening_ports(pid: int) -> set[int]:
    """The TCP ports the process listens on."""
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            link = os.readlink(f"/proc/{pid}/fd/{fd}")
        except FileNotFoundError:
            continue
        if link.startswith("socket:["):
            inodes.add(link[8:-1])
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as f:
            for row in f.read().splitlines()[1:]:
                fields = row.split()
                if fields[3] == "0A" and fields[9] in inodes:  # LISTEN
                    ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


# ---------------------------------------------------------------------------------------------
# The admin listener


def test_health_endpoints_answer_on_the_admin_listener(started):
    server = started()
    assert get(server.admin, "/healthz") == (200, "ok\n")
    assert get(server.admin, "/readyz") == (200, "ok\n")
    assert get(server.admin, "/livez") == (200, "ok\n")
    status, body = get(server.admin, "/metrics")
    assert status == 200 and body.endswith("# EOF\n")  # test_metrics.py reads it
    status, body = get(server.admin, "/")
    assert status == 404 and "/healthz" in body and "/metrics" in body
    assert get(server.admin, "/readyz", method="POST")[0] == 405
    # The probes are not on the S3 port: there /healthz is an (anonymous) S3 request.
    conn = server.connect()
    conn.request("GET", "/healthz")
    assert conn.getresponse().status == 403


def test_admin_listen_off_opens_no_admin_port(started):
    server = started(extra=["--admin-listen", "off"])
    assert "keyless: admin" not in server.out.read_text()
    assert listening_ports(server.proc.pid) == {server.port}
    assert server.client().list_buckets()["Buckets"] == []
    server.signal(signal.SIGTERM)
    assert server.wait(10) == 0


# ---------------------------------------------------------------------------------------------
# Draining


def test_sigterm_lets_a_large_upload_finish_and_it_survives_a_restart(started, tmp_path):
    server = started()
    s3 = server.client()
    s3.create_bucket(Bucket="drain")
    # A keep-alive connection that is idle when SIGTERM arrives: closed, never half-served.
    idle = server.connect()
    idle.request("GET", "/drain")
    idle.getresponse().read()

    size, chunk = 128 * 1024 * 1024, 1024 * 1024
    rng = random.Random(13)
    digest = hashlib.sha256()
    put = start_put(server, "/drain/big", size)
    sent = 0

    def send(n):
        nonlocal sent
        for _ in range(n):
            block = rng.randbytes(chunk)
            digest.update(block)
            put.send(block)
            sent += chunk

    send(32)
    assert get(server.admin, "/readyz") == (200, "ok\n")
    server.signal(signal.SIGTERM)
    # At once: not ready, with the reason, while the upload is still in flight.
    body = wait_until("readyz turns 503", lambda: readyz_503(server.admin), timeout=5)
    assert body == "not ready: shutting down\n"
    assert get(server.admin, "/healthz") == (200, "ok\n")
    # The S3 port is closed: a new connection is refused by the kernel.
    wait_until("the S3 port refuses connections", lambda: refused(server.host, server.port), timeout=5)
    assert closed_by_peer(idle.sock, timeout=5), "an idle keep-alive connection stayed open in the drain"
    assert server.proc.poll() is None, "the server exited with an upload in flight"

    send(size // chunk - 32)
    resp = put.getresponse()
    answer = resp.read()
    assert resp.status == 200, answer
    assert resp.getheader("Connection", "").lower() == "close"
    etag = resp.getheader("ETag")
    put.close()
    assert server.wait(20) == 0, server.logs()
    log = server.logs()
    assert "shutting down" in log and "stopped" in log, log

    restarted = started(data_dir=server.data_dir)
    s3 = restarted.client()
    head = s3.head_object(Bucket="drain", Key="big")
    assert head["ContentLength"] == size and head["ETag"] == etag
    got = hashlib.sha256()
    body = s3.get_object(Bucket="drain", Key="big")["Body"]
    for block in iter(lambda: body.read(chunk), b""):
        got.update(block)
    assert got.hexdigest() == digest.hexdigest()
    assert list((server.data_dir / "objects" / "tmp").iterdir()) == []


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_an_idle_server_exits_0_at_once(started, sig):
    server = started()
    server.client().list_buckets()
    started_at = server.signal(sig)
    assert server.wait(10) == 0, server.logs()
    assert time.monotonic() - started_at < 5
    assert refused(server.host, server.port)


def test_the_grace_period_ends_a_request_that_cannot_finish(started):
    server = started(extra=["--shutdown-grace", "1s"])
    server.client().create_bucket(Bucket="stuck")
    put = start_put(server, "/stuck/never", 64 * 1024 * 1024)
    put.send(os.urandom(1024 * 1024))
    # The client stops sending; the server waits for the rest of the body.
    time.sleep(0.2)
    asked = server.signal(signal.SIGTERM)
    assert server.wait(10) == 0, server.logs()
    took = time.monotonic() - asked
    assert 0.9 <= took < 4, f"exited {took:.2f} s after SIGTERM with a grace of 1 s"
    assert "grace period is over" in server.logs()
    put.close()

    restarted = started(data_dir=server.data_dir)
    with pytest.raises(botocore.exceptions.ClientError) as e:
        restarted.client().head_object(Bucket="stuck", Key="never")
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404


@pytest.mark.parametrize("sig, status", [(signal.SIGTERM, 143), (signal.SIGINT, 130)], ids=["SIGTERM", "SIGINT"])
def test_a_second_signal_stops_at_once(started, sig, status):
    server = started()  # the default grace: 25 s
    server.client().create_bucket(Bucket="stuck")
    put = start_put(server, "/stuck/never", 64 * 1024 * 1024)
    put.send(os.urandom(1024 * 1024))
    server.signal(sig)
    wait_until("readyz turns 503", lambda: readyz_503(server.admin), timeout=5)
    assert server.proc.poll() is None
    asked = server.signal(sig)
    assert server.wait(5) == status, server.logs()
    assert time.monotonic() - asked < 3
    assert "second signal" in server.logs()
    put.close()


# ---------------------------------------------------------------------------------------------
# Limits


def test_past_max_connections_a_connection_waits_in_the_backlog(started):
    server = started(extra=["--max-connections", "2"])
    base = socket_fds(server.proc.pid)
    held = [socket.create_connection((server.host, server.port)) for _ in range(2)]
    # Both slots are taken (by connections that have sent nothing yet).
    wait_until("the server accepted both", lambda: socket_fds(server.proc.pid) == base + 2)
    third = socket.create_connection((server.host, server.port), timeout=5)
    third.sendall(b"GET /waiting HTTP/1.1\r\nHost: x\r\n\r\n")
    third.settimeout(1)
    with pytest.raises(TimeoutError):
        third.recv(1)  # connected (the kernel's backlog), not served
    held[0].close()
    third.settimeout(10)
    answer = third.recv(65536)
    assert answer.startswith(b"HTTP/1.1 403 "), answer
    for s in [third, *held]:
        s.close()
    assert "accept failed" not in server.logs()


def test_the_listen_backlog_holds_a_burst(started):
    """The backlog is where connections past --max-connections wait: asked as 4096 (the
    kernel caps it at net.core.somaxconn), not the standard library's 128."""
    server = started()
    somaxconn = int(open("/proc/sys/net/core/somaxconn").read())
    out = subprocess.run(["ss", "-Hltn", f"sport = :{server.port}"], capture_output=True, text=True,
                         check=True).stdout.split()
    assert out[0] == "LISTEN" and int(out[2]) == min(4096, somaxconn), out


def test_idle_connections_close_after_the_idle_timeout(started):
    server = started(extra=["--idle-timeout", "1s"])
    silent = socket.create_connection((server.host, server.port))  # never sends a byte
    busy = server.connect()
    # Requests every 0.4 s for 2.4 s keep one connection open past the timeout...
    for _ in range(6):
        busy.request("GET", "/busy")
        assert busy.getresponse().read()
        time.sleep(0.4)
    assert closed_by_peer(silent, timeout=0.1)
    # ...which then closes once it is idle.
    assert closed_by_peer(busy.sock, timeout=4)
    silent.close()
    busy.close()


def nofile(soft: int, hard: int | None = None):
    return lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard or soft))


def open_file_limits(pid: int) -> tuple[int, int]:
    with open(f"/proc/{pid}/limits") as f:
        row = next(line for line in f if line.startswith("Max open files"))
    soft, hard = row.split()[3:5]
    return int(soft), int(hard)


def test_the_soft_open_file_limit_is_raised_to_the_hard_limit(started):
    server = started(preexec_fn=nofile(256, 4096), env={"RUST_LOG": "info,keyless_server=debug"})
    assert open_file_limits(server.proc.pid) == (4096, 4096)
    assert re.search(r"raised the open-file limit from=256 to=4096", server.logs()), server.logs()


@pytest.mark.parametrize("limit", ["default", "4096"], ids=["default-max-connections", "max-connections-4096"])
def test_a_flood_of_idle_connections_past_the_file_limit(started, limit):
    """600 idle connections against a limit of 256 open files: the server's log stays short, its
    CPU stays low, and a real client's requests are served once slots free. With the default
    --max-connections (derived from the file limit) the flood waits in the backlog; with 4096,
    accepting runs out of descriptors, pauses and says so once a second."""
    extra = ["--idle-timeout", "1s"] + ([] if limit == "default" else ["--max-connections", limit])
    server = started(extra=extra, preexec_fn=nofile(256))
    setup = server.client()
    setup.create_bucket(Bucket="flood")
    setup.put_object(Bucket="flood", Key="before", Body=os.urandom(1024 * 1024))
    time.sleep(1.5)  # the setup's keep-alive connection is closed by now
    lines, cpu, started_at = server.log_lines(), cpu_seconds(server.proc.pid), time.monotonic()

    flood = []
    try:
        for _ in range(600):
            flood.append(socket.create_connection((server.host, server.port), timeout=5))
        # A new client, behind the flood in the backlog, with no retries to hide a failure.
        s3 = server.client(retries={"total_max_attempts": 1}, connect_timeout=10, read_timeout=60)
        s3.list_buckets()
        served = time.monotonic() - started_at
        if limit == "default":
            # Requests that open files find descriptors: connections left them some.
            assert s3.get_object(Bucket="flood", Key="before")["ContentLength"] == 1024 * 1024
            s3.put_object(Bucket="flood", Key="during", Body=os.urandom(1024 * 1024))
    finally:
        for s in flood:
            s.close()
    wall = time.monotonic() - started_at
    cpu_share = (cpu_seconds(server.proc.pid) - cpu) / wall
    grown = server.log_lines() - lines
    print(f"flood ({limit}): served after {served:.1f} s; log +{grown} lines; CPU {cpu_share:.1%} of a core")
    assert served < 40
    assert grown < 100, server.logs()
    assert cpu_share < 0.3
    log = server.logs()
    if limit == "default":
        assert "accept failed" not in log, log
    else:
        assert re.search(r"accept failed.*errors=\d+", log), log
    # The server lives on.
    assert setup.list_objects_v2(Bucket="flood")["KeyCount"] >= 1
    server.signal(signal.SIGTERM)
    assert server.wait(10) == 0


# ---------------------------------------------------------------------------------------------
# keyless agent


class HeldProxy:
    """A TCP forwarder to `target` that holds every connection until `release()`."""

    def __init__(self, target_port: int):
        self.target = ("127.0.0.1", target_port)
        self.released = threading.Event()
        self.accepted = 0
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.socks: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            self.accepted += 1
            self.socks.append(client)
            threading.Thread(target=self._hold, args=(client,), daemon=True).start()

    def _hold(self, client):
        self.released.wait()
        try:
            upstream = socket.create_connection(self.target, timeout=5)
        except OSError:
            client.close()
            return
        self.socks.append(upstream)
        for a, b in ((client, upstream), (upstream, client)):
            threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    # Bytes are copied as test_agent's STS proxy copies them.
    _pipe = staticmethod(StsProxy._pipe)

    def release(self):
        self.released.set()

    def close(self):
        self.released.set()
        self.listener.close()
        for s in self.socks:
            s.close()


def test_agent_readiness_waits_for_the_pod_source_and_sigterm_drains(keyless_bin, tmp_path):
    iam = KeylessServer(keyless_bin, str(tmp_path / "serve"))
    sts = HeldProxy(iam.port)
    agent = None
    try:
        pods_path = str(tmp_path / "pods.json")
        agent = Agent(keyless_bin, str(tmp_path / "agent"), f"http://127.0.0.1:{sts.port}", pods_path)
        admin = wait_for_line(agent.out, r"keyless: admin http://(\S+) \(/healthz, /readyz, /metrics\)\n",
                              agent.proc, "keyless agent").group(1)
        assert get(admin, "/healthz") == (200, "ok\n")
        status, body = get(admin, "/readyz")
        assert status == 503 and "pod source has not synced" in body, body
        assert body.count("\n") == 1

        # The pods file appears: a pod at 127.0.0.1, so that this test's requests are its.
        pods = PodsFile(pods_path)
        pods.add(types.SimpleNamespace(name="lifecycle", ip="127.0.0.1"), "gitlab", "gitlab-registry")
        pods.write()
        wait_until("readyz turns 200", lambda: get(admin, "/readyz") == (200, "ok\n"), timeout=10)
        # The pod's credentials are being fetched (prefetch), held at the STS proxy.
        wait_until("the agent calls STS", lambda: sts.accepted >= 1, timeout=10)
        time.sleep(0.2)
        before = socket_fds(agent.proc.pid)

        answer = {}

        def fetch():
            conn = http.client.HTTPConnection("127.0.0.1", agent.port, timeout=30)
            try:
                conn.request("GET", "/latest/meta-data/iam/security-credentials/gitlab-registry")
                resp = conn.getresponse()
                answer["status"], answer["body"] = resp.status, resp.read().decode()
            except OSError as e:
                answer["error"] = e

        client = threading.Thread(target=fetch)
        client.start()
        wait_until("the agent accepts the request", lambda: socket_fds(agent.proc.pid) > before, timeout=5)
        time.sleep(0.2)  # the request's head is read
        assert not answer, answer

        os.kill(agent.proc.pid, signal.SIGTERM)
        body = wait_until("readyz turns 503", lambda: readyz_503(admin), timeout=5)
        assert "shutting down" in body
        wait_until("the metadata port refuses connections", lambda: refused("127.0.0.1", agent.port), timeout=5)
        assert agent.proc.poll() is None, "the agent exited with a request in flight"

        sts.release()
        client.join(timeout=20)
        assert answer.get("status") == 200, (answer, agent.logs())
        credentials = json.loads(answer["body"])
        assert credentials["Code"] == "Success" and credentials["AccessKeyId"].startswith("ASIA")
        assert agent.proc.wait(timeout=20) == 0, agent.logs()
    finally:
        sts.close()
        if agent:
            agent.stop()
        iam.stop()
