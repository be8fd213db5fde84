"""`keyless agent` (and `keyless serve --imds-listen`) end to end, GitLab style: unmodified real
clients run inside network-namespace pods (`pods.py`) with no keys and no configuration holding
keys, and get their role's credentials from the metadata service at 169.254.169.254, as on a
Kubernetes node with kube2iam or kiam.

One `keyless serve` per module holds the IAM side (`CONFIG`): the agent's user, roles for
GitLab's registry and Rails (each read, write and list on its own bucket, GitLab's documented
registry policy) and an `admin` role outside `gitlab-*`; every role trusts the agent's user and
`keyless-imds`. Each test starts its own agent on 127.0.0.1:0 with its own pods file (what
`kubectl get pods,namespaces -o json` prints) and its own pods.

Clients, each in a pod: awscli, boto3, s3cmd (GitLab's backup `s3cmd.config` minus keys),
fog-aws (GitLab Rails' object storage connection with `use_iam_profile`), rclone (`env_auth`)
and Debian's docker-registry (GitLab's registry storage settings: s3 driver, no keys), pushed to
and pulled from over the registry v2 HTTP API.

Needs root (pods), iproute2, nftables, curl, and for each client its package (see
IMDS-CLIENTS.md); a test whose client is missing is skipped. `--iptables` needs `iptables`.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import textwrap
import threading
import time
import uuid

import boto3
import botocore
import pytest

from pods import IMDS_IP, pod_net_fixture, pod_network_fixture  # noqa: F401 (fixtures)
from test_audit import check_shape

ACCOUNT = "000000000000"
AGENT_USER = "keyless-agent"
AGENT_KEY_ID = "AKIAKEYLESSAGENT0001"
AGENT_SECRET = "agent-secret-0123456789abcdefghijklmnopqrstuv"
IMDS = f"http://{IMDS_IP}/latest"
CREDS_PATH = "/meta-data/iam/security-credentials/"
STARTUP = 20  # seconds a server or agent may take to print its banner
CLIENT_TIMEOUT = 90  # seconds a client command may take in a pod
LOAD_TIMEOUT = 10  # seconds the agent may take to load a changed pods file

# The roles, their buckets, and GitLab's documented policy for its registry bucket.
ROLES = {"gitlab-registry": "registry", "gitlab-rails": "uploads", "admin": None}
BUCKETS = ("registry", "uploads", "admin-only")


def gitlab_bucket_policy(bucket: str) -> str:
    return json.dumps({
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow",
             "Action": ["s3:ListBucket", "s3:GetBucketLocation", "s3:ListBucketMultipartUploads"],
             "Resource": f"arn:aws:s3:::{bucket}"},
            {"Effect": "Allow",
             "Action": ["s3:PutObject", "s3:GetObject", "s3:DeleteObject", "s3:AbortMultipartUpload",
                        "s3:ListMultipartUploadParts"],
             "Resource": f"arn:aws:s3:::{bucket}/*"},
        ],
    })


TRUST = json.dumps({
    "Version": "2012-10-17",
    "Statement": [{
        "Effect": "Allow",
        "Principal": {"AWS": [f"arn:aws:iam::{ACCOUNT}:user/{AGENT_USER}",
                              f"arn:aws:iam::{ACCOUNT}:user/keyless-imds"]},
        # The agent tags each pod's session (kubernetes-namespace, ...), as EKS Pod Identity.
        "Action": ["sts:AssumeRole", "sts:TagSession"],
    }],
})


# One role for many namespaces, by the session tags naming each pod (ABAC, as with EKS Pod
# Identity): each namespace writes and lists under `uploads/CLUSTER/NAMESPACE/` only, and the
# trust policy lets only `team-*` namespaces have it.
ABAC_ROLE = "shared-uploads"
ABAC_TRUST = json.dumps({
    "Version": "2012-10-17",
    "Statement": [{
        "Effect": "Allow",
        "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:user/{AGENT_USER}"},
        "Action": ["sts:AssumeRole", "sts:TagSession"],
        "Condition": {"StringLike": {"aws:RequestTag/kubernetes-namespace": "team-*"}},
    }],
})
ABAC_POLICY = json.dumps({
    "Version": "2012-10-17",
    "Statement": [
        {"Effect": "Allow", "Action": ["s3:PutObject", "s3:GetObject"],
         "Resource": "arn:aws:s3:::uploads/${aws:PrincipalTag/eks-cluster-name}/"
                     "${aws:PrincipalTag/kubernetes-namespace}/*"},
        {"Effect": "Allow", "Action": "s3:ListBucket", "Resource": "arn:aws:s3:::uploads",
         "Condition": {"StringLike": {
             "s3:prefix": "${aws:PrincipalTag/eks-cluster-name}/${aws:PrincipalTag/kubernetes-namespace}/*"}}},
    ],
})


def config_toml() -> str:
    """The server's configuration: the agent's user, the roles, the buckets."""
    out = [f'[[users]]\nname = "{AGENT_USER}"\naccess_key_id = "{AGENT_KEY_ID}"\n'
           'secret_access_key_file = "agent.secret"\n']
    for role, bucket in ROLES.items():
        out.append(f'[[roles]]\nname = "{role}"\nassume_role_policy = {{ document = {json.dumps(TRUST)} }}\n')
        if bucket:
            out.append(f'[[roles.policies]]\nname = "bucket-rw"\ndocument = {json.dumps(gitlab_bucket_policy(bucket))}\n')
        else:
            out.append('policy_arns = ["arn:aws:iam::aws:policy/AmazonS3FullAccess"]\n')
    # A role whose trust predates session tags: sts:AssumeRole alone.
    legacy = json.dumps({"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:user/{AGENT_USER}"},
        "Action": "sts:AssumeRole"}]})
    out.append(f'[[roles]]\nname = "legacy"\nassume_role_policy = {{ document = {json.dumps(legacy)} }}\n')
    out.append(f'[[roles.policies]]\nname = "bucket-rw"\ndocument = {json.dumps(gitlab_bucket_policy("uploads"))}\n')
    out.append(f'[[roles]]\nname = "{ABAC_ROLE}"\nassume_role_policy = {{ document = {json.dumps(ABAC_TRUST)} }}\n')
    out.append(f'[[roles.policies]]\nname = "by-namespace"\ndocument = {json.dumps(ABAC_POLICY)}\n')
    for bucket in BUCKETS:
        out.append(f'[[buckets]]\nname = "{bucket}"\n')
    return "\n".join(out)


# ---------------------------------------------------------------------------------------------
# Helpers: processes, logs, tools


ANSI = re.compile(r"\x1b\[[0-9;]*m")


def read_log(path, tail: int = 6000) -> str:
    try:
        with open(path, errors="replace") as f:
            text = ANSI.sub("", f.read())
    except FileNotFoundError:
        return ""
    return text[-tail:] if tail else text


def wait_for_line(path, pattern: str, proc: subprocess.Popen, what: str, timeout: float = STARTUP):
    """The first match of `pattern` in the file at `path`, written by `proc`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        match = re.search(pattern, read_log(path, tail=0))
        if match:
            return match
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    raise AssertionError(f"{what} printed no `{pattern}` (exit {proc.poll()})")


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def need(*tools: str) -> None:
    """Skip the test when a client it drives is not installed."""
    for tool in tools:
        if not shutil.which(tool):
            pytest.skip(f"`{tool}` is missing (see tests/clients/IMDS-CLIENTS.md for the packages)")


def need_fog() -> None:
    need("ruby")
    probe = subprocess.run(["ruby", "-e", "require 'fog/aws'"], capture_output=True, text=True)
    if probe.returncode != 0:
        pytest.skip("ruby's fog-aws is missing: apt-get install -y ruby-fog-aws")


# ---------------------------------------------------------------------------------------------
# keyless serve, keyless agent, the pods file, an STS proxy


class KeylessServer:
    """`keyless serve --config CONFIG` on 127.0.0.1:0, logs in a file."""

    def __init__(self, keyless_bin, workdir, extra=(), env=None):
        self.dir = workdir
        os.makedirs(workdir, exist_ok=True)
        secret = os.path.join(workdir, "agent.secret")
        with open(os.open(secret, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as f:
            f.write(AGENT_SECRET)
        self.config = os.path.join(workdir, "keyless.toml")
        with open(self.config, "w") as f:
            f.write(config_toml())
        self.data_dir = os.path.join(workdir, "data")
        self.audit_log = os.path.join(workdir, "audit.jsonl")
        self.out, self.log = os.path.join(workdir, "serve.out"), os.path.join(workdir, "serve.log")
        with open(self.out, "w") as out, open(self.log, "w") as err:
            self.proc = subprocess.Popen(
                [keyless_bin, "serve", "--listen", "127.0.0.1:0", "--data-dir", self.data_dir,
                 "--config", self.config, "--audit-log", self.audit_log, *extra],
                stdout=out, stderr=err, stdin=subprocess.DEVNULL,
                env=dict(env or os.environ, RUST_LOG="info,keyless_imds=debug"))
        try:
            match = wait_for_line(self.out, r"keyless: S3 endpoint (https?://127\.0\.0\.1:(\d+))\n",
                                  self.proc, "keyless serve")
        except AssertionError as e:
            self.stop()
            raise AssertionError(f"{e}\n{self.logs()}") from None
        self.endpoint, self.port = match.group(1), int(match.group(2))

    def imds_address(self) -> str:
        return wait_for_line(self.out, r"keyless: metadata service http://(\S+);", self.proc,
                             "keyless serve --imds-listen").group(1)

    def logs(self) -> str:
        return f"--- keyless serve log (tail) ---\n{read_log(self.log)}"

    def data_contains(self, needle: bytes) -> bool:
        """Whether any file in the data folder holds `needle` (sealed objects do not)."""
        for root, _, files in os.walk(self.data_dir):
            for name in files:
                with open(os.path.join(root, name), "rb") as f:
                    if needle in f.read():
                        return True
        return False

    def root_s3(self):
        keys = dict(line.split(" = ", 1) for line in
                    open(os.path.join(self.data_dir, "root-credentials")).read().splitlines()
                    if " = " in line)
        return boto3.session.Session().client(
            "s3", endpoint_url=self.endpoint, region_name="us-east-1",
            aws_access_key_id=keys["aws_access_key_id"],
            aws_secret_access_key=keys["aws_secret_access_key"])

    def audit_records(self, until, timeout: float = 10.0) -> list[dict]:
        """The trail's records, once one satisfies `until` (the trail is written behind); each
        is checked against CloudTrail's record (test_audit.check_shape)."""
        deadline = time.monotonic() + timeout
        while True:
            records = []
            if os.path.exists(self.audit_log):
                with open(self.audit_log) as f:
                    records = [json.loads(line) for line in f if line.strip()]
            if any(until(r) for r in records) or time.monotonic() > deadline:
                for record in records:
                    check_shape(record)
                return records
            time.sleep(0.05)

    def stop(self):
        stop(self.proc)


class PodsFile:
    """The node's pods, as `kubectl get pods,namespaces -o json` prints them; each write is
    atomic (written aside, then renamed), as tools write it."""

    def __init__(self, path):
        self.path = path
        self.namespaces: dict[str, dict] = {}
        self.pods: dict[str, dict] = {}
        self.write()

    def namespace(self, name: str, annotations: dict | None = None) -> None:
        self.namespaces[name] = {
            "apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": name, "uid": str(uuid.uuid4()), "annotations": annotations or {}},
            "status": {"phase": "Active"},
        }

    def add(self, pod, namespace: str, role: str | None, service_account: str = "default") -> str:
        """Adds the pod (by its harness name) with its IP; returns its new UID."""
        if namespace not in self.namespaces:
            self.namespace(namespace)
        uid = str(uuid.uuid4())
        self.pods[pod.name] = {
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": pod.name, "namespace": namespace, "uid": uid,
                         "annotations": {"iam.amazonaws.com/role": role} if role else {}},
            "spec": {"serviceAccountName": service_account,
                     "containers": [{"name": "main", "image": "registry.example/app:1"}]},
            "status": {"phase": "Running", "podIP": pod.ip, "podIPs": [{"ip": pod.ip}]},
        }
        return uid

    def remove(self, pod) -> None:
        self.pods.pop(pod.name)

    def write(self) -> None:
        doc = {"apiVersion": "v1", "kind": "List", "metadata": {"resourceVersion": ""},
               "items": [*self.pods.values(), *self.namespaces.values()]}
        aside = f"{self.path}.tmp"
        with open(aside, "w") as f:
            json.dump(doc, f, indent=1)
        os.replace(aside, self.path)


class Agent:
    """`keyless agent` on 127.0.0.1:0, with the agent user's credentials file."""

    def __init__(self, keyless_bin, workdir, sts_endpoint, pods_file, extra=(), env=None):
        os.makedirs(workdir, exist_ok=True)
        creds = os.path.join(workdir, "agent-credentials")
        with open(os.open(creds, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as f:
            f.write(f"[default]\naws_access_key_id = {AGENT_KEY_ID}\n"
                    f"aws_secret_access_key = {AGENT_SECRET}\n")
        self.out, self.log = os.path.join(workdir, "agent.out"), os.path.join(workdir, "agent.log")
        env = {**{k: v for k, v in os.environ.items() if not k.startswith("AWS_")}, **(env or {})}
        env["RUST_LOG"] = "info,keyless_imds=debug"
        self.argv = [keyless_bin, "agent", "--listen", "127.0.0.1:0", "--pods-file", pods_file,
                     "--sts-endpoint", sts_endpoint, "--credentials-file", creds, *extra]
        with open(self.out, "w") as out, open(self.log, "w") as err:
            self.proc = subprocess.Popen(self.argv, stdout=out, stderr=err,
                                         stdin=subprocess.DEVNULL, env=env)
        try:
            match = wait_for_line(self.out, r"keyless: metadata service http://(127\.0\.0\.1):(\d+)\n",
                                  self.proc, "keyless agent")
        except AssertionError as e:
            self.stop()
            raise AssertionError(f"{e}\n{self.logs()}") from None
        self.port = int(match.group(2))

    def loads(self) -> int:
        """How many times the agent loaded the pods file."""
        return read_log(self.log, tail=0).count("imds: pods file loaded")

    def logs(self) -> str:
        return f"--- keyless agent log (tail) ---\n{read_log(self.log)}"

    def stop(self):
        stop(self.proc)


class StsProxy:
    """A TCP forwarder from 127.0.0.1:port to `target`, that can be switched off (connections
    refused, open ones cut) and on again on the same port: STS going down and coming back."""

    def __init__(self, target_port: int):
        self.target = ("127.0.0.1", target_port)
        self.listener: socket.socket | None = None
        self.conns: list[socket.socket] = []
        self.lock = threading.Lock()
        self.port = 0
        self.start()

    def start(self):
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self.port = listener.getsockname()[1]
        self.listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def _accept(self, listener):
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            with self.lock:
                self.conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(src, dst):
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def down(self):
        """Refuse new connections and cut the open ones."""
        if self.listener:
            # shutdown wakes the accepting thread and stops listening; close alone does neither.
            with contextlib.suppress(OSError):
                self.listener.shutdown(socket.SHUT_RDWR)
            self.listener.close()
            self.listener = None
        with self.lock:
            conns, self.conns = self.conns, []
        for s in conns:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()

    def up(self):
        self.start()


# ---------------------------------------------------------------------------------------------
# Fixtures


@pytest.fixture(scope="module")
def server(keyless_bin, tmp_path_factory):
    s = KeylessServer(keyless_bin, str(tmp_path_factory.mktemp("agent-serve")))
    yield s
    s.stop()


class Node:
    """One test's node: the server exposed on the pods' bridge, a pods file, an agent (started
    with `start_agent`), pods, and client helpers that run inside the pods."""

    def __init__(self, net, server, keyless_bin, workdir):
        self.net, self.server, self.keyless_bin, self.workdir = net, server, keyless_bin, workdir
        self.endpoint = net.expose(server.port)  # gateway:port, what clients in pods use
        self.pods = PodsFile(os.path.join(workdir, "pods.json"))
        self.agent: Agent | None = None
        self.agents: list[Agent] = []

    def start_agent(self, sts_endpoint: str | None = None, extra=(), route=True) -> Agent:
        agent = Agent(self.keyless_bin, self.workdir, sts_endpoint or self.server.endpoint,
                      self.pods.path, extra)
        self.agents.append(agent)
        self.agent = agent
        if route:
            self.net.route_imds(agent.port)
        return agent

    def publish(self, wait: bool = True) -> None:
        """Writes the pods file; with `wait`, until the agent has loaded it."""
        before = self.agent.loads() if self.agent else 0
        self.pods.write()
        if not (wait and self.agent):
            return
        deadline = time.monotonic() + LOAD_TIMEOUT
        while self.agent.loads() <= before:
            assert time.monotonic() < deadline, f"the agent did not reload the pods file\n{self.logs()}"
            time.sleep(0.05)

    def pod(self, name, namespace="gitlab", role=None, publish=True, ip=None):
        pod = self.net.pod(name, ip=ip)
        pod.uid = self.pods.add(pod, namespace, role)
        if publish:
            self.publish()
        return pod

    def logs(self) -> str:
        return "\n".join([*(a.logs() for a in self.agents), self.server.logs()])

    def explain(self, proc) -> str:
        """An assertion message: the client's output and the logs."""
        args = proc.args[4:] if isinstance(proc.args, list) else proc.args
        return (f"command {args} exited {proc.returncode}\n--- stdout ---\n{proc.stdout[-3000:]}\n"
                f"--- stderr ---\n{proc.stderr[-3000:]}\n{self.logs()}")

    # -- clients ------------------------------------------------------------------------------

    def aws(self, pod, *args, timeout=CLIENT_TIMEOUT):
        need("aws")
        return pod.run(["aws", "--endpoint-url", f"http://{self.endpoint}", *args],
                       env={"AWS_DEFAULT_REGION": "us-east-1"}, timeout=timeout)

    def caller_arn(self, pod) -> str:
        who = self.aws(pod, "sts", "get-caller-identity", "--output", "json")
        assert who.returncode == 0, self.explain(who)
        return json.loads(who.stdout)["Arn"]

    def curl(self, pod, *args, timeout=30):
        """curl in the pod, printing the status after the body on its own last line."""
        proc = pod.run(["curl", "-sS", "--max-time", "10", "-w", "\n%{http_code}", *args],
                       timeout=timeout)
        body, _, code = proc.stdout.rpartition("\n")
        return (int(code) if code.isdigit() else 0), body

    def imds_credentials(self, pod, token=None) -> tuple[int, dict | str]:
        """IMDSv1 (or v2 with `token`) as curl asks: the role listing, then its credentials."""
        headers = ["-H", f"X-aws-ec2-metadata-token: {token}"] if token else []
        status, role = self.curl(pod, *headers, f"{IMDS}{CREDS_PATH}")
        if status != 200:
            return status, role
        status, body = self.curl(pod, *headers, f"{IMDS}{CREDS_PATH}{role}")
        return status, (json.loads(body) if status == 200 else body)

    def imds_token(self, pod, ttl=21600) -> str:
        status, token = self.curl(pod, "-X", "PUT", "-H", f"X-aws-ec2-metadata-token-ttl-seconds: {ttl}",
                                  f"{IMDS}/api/token")
        assert status == 200 and token, f"token PUT answered {status}: {token}\n{self.logs()}"
        return token


@pytest.fixture
def node(pod_net, server, keyless_bin, tmp_path):
    need("curl")
    n = Node(pod_net, server, keyless_bin, str(tmp_path))
    try:
        yield n
    finally:
        for agent in n.agents:
            agent.stop()


@pytest.fixture(scope="module")
def gateway_server(keyless_bin, tmp_path_factory, moto_upstream):
    """`keyless serve` in gateway mode, in front of moto."""
    extra, env, prefix = moto_upstream.serve_args()
    s = KeylessServer(keyless_bin, str(tmp_path_factory.mktemp("gateway-serve")), extra=extra, env=env)
    s.prefix = prefix
    yield s
    s.stop()


@pytest.fixture
def gitlab(node):
    """GitLab's registry and Rails pods, in their own namespaces, each with its role."""
    return gitlab_pods(node)


@pytest.fixture
def gateway_gitlab(pod_net, gateway_server, keyless_bin, tmp_path):
    """The same pods, their server a gateway in front of moto."""
    need("curl")
    n = Node(pod_net, gateway_server, keyless_bin, str(tmp_path))
    try:
        yield gitlab_pods(n)
    finally:
        for agent in n.agents:
            agent.stop()


def gitlab_pods(node):
    node.start_agent()
    node.pods.namespace("gitlab-registry")
    node.pods.namespace("gitlab")
    registry = node.pod("registry-0", "gitlab-registry", "gitlab-registry", publish=False)
    rails = node.pod("webservice-0", "gitlab", "gitlab-rails", publish=False)
    node.publish()
    registry.bucket, registry.other, registry.role = "registry", "uploads", "gitlab-registry"
    rails.bucket, rails.other, rails.role = "uploads", "registry", "gitlab-rails"
    return node, (registry, rails)


def assumed(role: str) -> str:
    return f"arn:aws:sts::{ACCOUNT}:assumed-role/{role}/"


def write(pod, name: str, data: bytes | str) -> str:
    path = os.path.join(pod.home, name)
    with open(path, "wb" if isinstance(data, bytes) else "w") as f:
        f.write(data)
    return path


# ---------------------------------------------------------------------------------------------
# 1. Each pod its own role, with every client


def test_awscli_each_pod_gets_its_own_role(gitlab):
    node, pods = gitlab
    for pod in pods:
        arn = node.caller_arn(pod)
        assert arn.startswith(assumed(pod.role)), f"{pod.name} is {arn}\n{node.logs()}"
        namespace = node.pods.pods[pod.name]["metadata"]["namespace"]
        assert arn == f"{assumed(pod.role)}{namespace}.{pod.name}", arn
        src = write(pod, "artifact.bin", os.urandom(200_000))
        key = f"s3://{pod.bucket}/awscli/{pod.name}/artifact.bin"
        put = node.aws(pod, "s3", "cp", src, key)
        assert put.returncode == 0, node.explain(put)
        ls = node.aws(pod, "s3", "ls", f"s3://{pod.bucket}/awscli/{pod.name}/")
        assert ls.returncode == 0 and "artifact.bin" in ls.stdout, node.explain(ls)
        back = os.path.join(pod.home, "back.bin")
        get = node.aws(pod, "s3", "cp", key, back)
        assert get.returncode == 0, node.explain(get)
        assert open(back, "rb").read() == open(src, "rb").read()
        # The other pod's bucket: refused, for writing and for listing.
        refused = node.aws(pod, "s3", "cp", src, f"s3://{pod.other}/awscli/{pod.name}")
        assert refused.returncode != 0 and "AccessDenied" in refused.stderr, node.explain(refused)
        refused = node.aws(pod, "s3", "ls", f"s3://{pod.other}/")
        assert refused.returncode != 0 and "AccessDenied" in refused.stderr, node.explain(refused)


def test_agent_metrics_count_the_cache_and_the_pods(node):
    """`keyless agent --admin-listen`'s /metrics, read by Prometheus's own parser: the agent
    fetches a pod's credentials when the pod appears (an STS call each, not counted as a request),
    and every client's read is a hit, or a miss that waits for that fetch; the pods are indexed."""
    from test_metrics import scrape, value

    node.start_agent(extra=["--admin-listen", "127.0.0.1:0"])
    admin = wait_for_line(node.agent.out, r"keyless: admin (http://\S+) ", node.agent.proc,
                          "keyless agent").group(1)
    node.pods.namespace("gitlab-registry")
    registry = node.pod("registry-0", "gitlab-registry", "gitlab-registry")
    node.pod("idle-0", "gitlab-registry", "gitlab-registry")
    for _ in range(3):
        assert node.caller_arn(registry).startswith(assumed("gitlab-registry"))
    _, samples = scrape(admin)
    assert value(samples, "keyless_agent_pods_indexed") == 2, samples
    assert value(samples, "keyless_agent_cache_refreshes_total") == 2, samples
    # awscli reads the credentials once per run; the idle pod asked for nothing.
    hits = value(samples, "keyless_agent_cache_hits_total")
    misses = value(samples, "keyless_agent_cache_misses_total")
    assert hits + misses == 3 and hits >= 2, samples
    assert value(samples, "keyless_agent_cache_stale_serves_total") == 0, samples
    assert value(samples, "keyless_agent_sts_failures_total") == 0, samples
    assert value(samples, "keyless_agent_cache_entries") == 2, samples
    # Each awscli run: an IMDSv2 token, then the role's name and its credentials; every answer
    # timed. Each STS call (the two fetches) timed too.
    assert value(samples, "keyless_agent_requests_total", handler="token", status="2xx") == 3
    assert value(samples, "keyless_agent_requests_total", handler="credentials",
                 status="2xx") == 6, samples
    assert value(samples, "keyless_agent_request_duration_seconds_count",
                 handler="credentials") == 6, samples
    assert value(samples, "keyless_agent_sts_request_duration_seconds_count") == 2, samples


def test_one_role_serves_many_namespaces_by_the_session_tags_naming_each_pod(node):
    """The agent tags each pod's session as EKS Pod Identity does (`eks-cluster-name` from
    `--cluster-name`, `kubernetes-namespace`, `-service-account`, `-pod-name`, `-pod-uid`), so one
    role with `${aws:PrincipalTag/...}` in its policy gives each namespace its own prefix; the
    trust policy's `aws:RequestTag/kubernetes-namespace` condition keeps other namespaces out;
    and the audit trail says which pod made each request."""
    node.start_agent(extra=["--cluster-name", "main"])
    for ns in ("team-a", "team-b", "other"):
        node.pods.namespace(ns)
    a = node.pod("app-a", "team-a", ABAC_ROLE, publish=False)
    b = node.pod("app-b", "team-b", ABAC_ROLE, publish=False)
    outsider = node.pod("app-c", "other", ABAC_ROLE, publish=False)
    node.publish()

    for pod, ns in ((a, "team-a"), (b, "team-b")):
        path = write(pod, "note.txt", f"from {ns}")
        put = node.aws(pod, "s3", "cp", path, f"s3://uploads/main/{ns}/note.txt")
        assert put.returncode == 0, node.explain(put)
        listed = node.aws(pod, "s3api", "list-objects-v2", "--bucket", "uploads", "--prefix", f"main/{ns}/",
                          "--output", "json")
        assert listed.returncode == 0, node.explain(listed)
        assert [o["Key"] for o in json.loads(listed.stdout)["Contents"]] == [f"main/{ns}/note.txt"]
    # Not under the other namespace's prefix: neither write, read nor list.
    path = write(a, "intrusion.txt", "no")
    for args in (["s3", "cp", path, "s3://uploads/main/team-b/intrusion.txt"],
                 ["s3", "cp", "s3://uploads/main/team-b/note.txt", "-"],
                 ["s3api", "list-objects-v2", "--bucket", "uploads", "--prefix", "main/team-b/"]):
        refused = node.aws(a, *args)
        assert refused.returncode != 0 and ("AccessDenied" in refused.stderr or "403" in refused.stderr), \
            node.explain(refused)
    # A namespace the trust policy does not name gets no credentials at all.
    status, body = node.imds_credentials(outsider)
    assert status != 200, body
    refusals = [r for r in node.server.audit_records(lambda r: r["eventName"] == "AssumeRole" and r.get("errorCode"))
                if r["eventName"] == "AssumeRole" and r.get("errorCode") == "AccessDenied"
                and {"key": "kubernetes-pod-uid", "value": outsider.uid} in r["requestParameters"].get("tags", [])]
    assert refusals, "no refused AssumeRole for the outsider's pod in the trail"

    # The trail: team-a's upload names its pod, from the session's tags.
    def upload_of(ns):
        return lambda r: (r["eventName"] == "PutObject" and not r.get("errorCode")
                          and r["requestParameters"].get("key") == f"main/{ns}/note.txt")
    records = node.server.audit_records(upload_of("team-a"))
    uploads = [r for r in records if upload_of("team-a")(r)]
    assert len(uploads) == 1, records[-5:]
    tags = uploads[0]["userIdentity"]["sessionContext"]["sessionTags"]
    assert tags == {"eks-cluster-name": "main", "kubernetes-namespace": "team-a",
                    "kubernetes-service-account": "default", "kubernetes-pod-name": "app-a",
                    "kubernetes-pod-uid": a.uid}, tags
    # And the AssumeRole that issued the session passed them, as CloudTrail records request tags.
    assumes = [r for r in records if r["eventName"] == "AssumeRole" and not r.get("errorCode")
               and {"key": "kubernetes-pod-uid", "value": a.uid} in r["requestParameters"].get("tags", [])]
    assert len(assumes) == 1, [r["requestParameters"] for r in records if r["eventName"] == "AssumeRole"]


def test_a_trust_without_tag_session_needs_no_session_tags(node):
    """The agent's pods' session tags need `sts:TagSession` from the role's trust, as on AWS;
    `--no-session-tags` (EKS Pod Identity's disableSessionTags) serves roles whose trust policy
    predates them."""
    node.start_agent()
    node.pods.namespace("old")
    pod = node.pod("legacy-0", "old", "legacy")
    status, body = node.imds_credentials(pod)
    assert status != 200, body
    refused = node.server.audit_records(lambda r: r["eventName"] == "AssumeRole" and r.get("errorCode")
                                        and "role/legacy" in json.dumps(r.get("resources", [])))
    assert [r for r in refused if r["eventName"] == "AssumeRole" and "role/legacy" in json.dumps(r.get("resources", []))
            and "sts:TagSession" in r.get("errorMessage", "")], refused[-3:]
    node.agent.stop()
    node.start_agent(extra=["--no-session-tags"])
    assert node.caller_arn(pod).startswith(assumed("legacy"))


def test_revoking_a_pods_sessions_stops_its_credentials_at_once_and_the_agent_fetches_fresh_ones(node, keyless_bin):
    """`keyless iam revoke-sessions --role R --pod-uid U` writes AWS's `AWSRevokeOlderSessions`
    deny, scoped by the session tags to one pod: that pod's credentials already handed out are
    refused at once, another pod's of the same role keep working, and once the pod is annotated
    `keyless.dev/sessions-revoked-at` the agent fetches it fresh credentials that work."""
    node.start_agent(extra=["--cluster-name", "main"])
    node.pods.namespace("team-a")
    a = node.pod("rev-a", "team-a", ABAC_ROLE, publish=False)
    b = node.pod("rev-b", "team-a", ABAC_ROLE, publish=False)
    node.publish()

    def s3_with(creds):
        return boto3.session.Session().client(
            "s3", endpoint_url=node.server.endpoint, region_name="us-east-1",
            aws_access_key_id=creds["AccessKeyId"], aws_secret_access_key=creds["SecretAccessKey"],
            aws_session_token=creds["Token"])

    held = {}
    for pod in (a, b):
        status, creds = node.imds_credentials(pod)
        assert status == 200, creds
        held[pod.name] = creds
        s3_with(creds).put_object(Bucket="uploads", Key=f"main/team-a/{pod.name}", Body=b"1")
    time.sleep(1.1)  # revocation works on whole seconds of issue time
    revoke = subprocess.run(
        [keyless_bin, "iam", "revoke-sessions", "--role", ABAC_ROLE, "--pod-uid", a.uid,
         "--endpoint-url", node.server.endpoint, "--data-dir", node.server.data_dir],
        capture_output=True, text=True, timeout=60,
        env={k: v for k, v in os.environ.items() if not k.startswith("AWS_")})
    assert revoke.returncode == 0, revoke.stderr
    assert f"revoked the sessions tagged kubernetes-pod-uid={a.uid} of role {ABAC_ROLE}" in revoke.stderr
    with pytest.raises(botocore.exceptions.ClientError) as refused:
        s3_with(held["rev-a"]).get_object(Bucket="uploads", Key="main/team-a/rev-a")
    assert refused.value.response["Error"]["Code"] == "AccessDenied"
    assert s3_with(held["rev-b"]).get_object(Bucket="uploads", Key="main/team-a/rev-b")["Body"].read() == b"1"
    # Until the pod is annotated, the agent still hands out what it holds.
    status, same = node.imds_credentials(a)
    assert status == 200 and same["AccessKeyId"] == held["rev-a"]["AccessKeyId"], same
    node.pods.pods[a.name]["metadata"]["annotations"]["keyless.dev/sessions-revoked-at"] = \
        time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    node.publish()
    # The agent forgets them as it takes in the changed pod, just after loading the file.
    deadline = time.monotonic() + LOAD_TIMEOUT
    while True:
        status, fresh = node.imds_credentials(a)
        if status == 200 and fresh["AccessKeyId"] != held["rev-a"]["AccessKeyId"]:
            break
        assert time.monotonic() < deadline, f"the agent kept the revoked credentials\n{node.logs()}"
        time.sleep(0.1)
    assert s3_with(fresh).get_object(Bucket="uploads", Key="main/team-a/rev-a")["Body"].read() == b"1"
    # The other pod was not disturbed.
    status, kept = node.imds_credentials(b)
    assert status == 200 and kept["AccessKeyId"] == held["rev-b"]["AccessKeyId"], kept


BOTO3_SCRIPT = """\
import json, sys, boto3, botocore
bucket, other, endpoint, name = sys.argv[1:5]
session = boto3.session.Session(region_name="us-east-1")
creds = session.get_credentials()
s3 = session.client("s3", endpoint_url=endpoint)
arn = session.client("sts", endpoint_url=endpoint).get_caller_identity()["Arn"]
body = b"uploads from boto3 " * 5000
s3.put_object(Bucket=bucket, Key=f"boto3/{name}", Body=body)
back = s3.get_object(Bucket=bucket, Key=f"boto3/{name}")["Body"].read()
keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix="boto3/").get("Contents", [])]
refused = {}
for op, call in (("put", lambda: s3.put_object(Bucket=other, Key=f"boto3/{name}", Body=b"x")),
                 ("list", lambda: s3.list_objects_v2(Bucket=other))):
    try:
        call()
        refused[op] = "allowed"
    except botocore.exceptions.ClientError as e:
        refused[op] = e.response["Error"]["Code"]
print(json.dumps({"method": creds.method, "key": creds.access_key, "token": bool(creds.token),
                  "arn": arn, "same": back == body, "keys": keys, "refused": refused}))
"""


def test_boto3_each_pod_gets_its_own_role(gitlab):
    node, pods = gitlab
    for pod in pods:
        proc = pod.run([sys.executable, "-c", BOTO3_SCRIPT, pod.bucket, pod.other,
                        f"http://{node.endpoint}", pod.name], timeout=CLIENT_TIMEOUT)
        assert proc.returncode == 0, node.explain(proc)
        out = json.loads(proc.stdout)
        assert out["method"] == "iam-role", out
        assert out["key"].startswith("ASIA") and out["token"], out
        assert out["arn"].startswith(assumed(pod.role)), out
        assert out["same"] and f"boto3/{pod.name}" in out["keys"], out
        assert out["refused"] == {"put": "AccessDenied", "list": "AccessDenied"}, f"{out}\n{node.logs()}"


def s3cmd_config(pod, endpoint) -> str:
    # GitLab's backup s3cmd.config (gitlab-toolbox), minus access_key and secret_key.
    return write(pod, "s3cmd.config", textwrap.dedent(f"""\
        [default]
        bucket_location = us-east-1
        multipart_chunk_size_mb = 128
        host_base = {endpoint}
        host_bucket = {endpoint}
        use_https = False
        signature_v2 = False
        """))


def test_s3cmd_each_pod_gets_its_own_role(gitlab):
    need("s3cmd")
    node, pods = gitlab
    for pod in pods:
        cfg = s3cmd_config(pod, node.endpoint)
        src = write(pod, "1700000000_2026_01_01_17.0.0_gitlab_backup.tar", os.urandom(300_000))
        s3cmd = ["s3cmd", "-c", cfg]
        # As GitLab's backup docs suggest: `--server-side-encryption` (AES256) on the upload.
        put = pod.run([*s3cmd, "put", "--server-side-encryption", src, f"s3://{pod.bucket}/backups/"],
                      timeout=CLIENT_TIMEOUT)
        assert put.returncode == 0, node.explain(put)
        head = node.server.root_s3().head_object(Bucket=pod.bucket, Key=f"backups/{os.path.basename(src)}")
        assert head["ServerSideEncryption"] == "AES256", head
        ls = pod.run([*s3cmd, "ls", f"s3://{pod.bucket}/backups/"], timeout=CLIENT_TIMEOUT)
        assert ls.returncode == 0 and os.path.basename(src) in ls.stdout, node.explain(ls)
        back = os.path.join(pod.home, "restored.tar")
        get = pod.run([*s3cmd, "get", "--force", f"s3://{pod.bucket}/backups/{os.path.basename(src)}", back],
                      timeout=CLIENT_TIMEOUT)
        assert get.returncode == 0, node.explain(get)
        assert open(back, "rb").read() == open(src, "rb").read()
        refused = pod.run([*s3cmd, "put", src, f"s3://{pod.other}/backups/"], timeout=CLIENT_TIMEOUT)
        assert refused.returncode != 0 and "AccessDenied" in refused.stderr, node.explain(refused)
        refused = pod.run([*s3cmd, "ls", f"s3://{pod.other}/"], timeout=CLIENT_TIMEOUT)
        assert refused.returncode != 0 and "AccessDenied" in refused.stderr, node.explain(refused)


def test_keyless_tools_in_each_pod_use_its_role_from_the_agent(gitlab):
    """`keyless whoami`, `doctor` and `backup` with GitLab's s3cmd.config (no keys): the role
    comes from the agent, as for s3cmd above, and the backup stands in for s3cmd's."""
    node, pods = gitlab
    keyless = node.keyless_bin
    endpoint = f"http://{node.endpoint}"
    for pod in pods:
        who = pod.run([keyless, "whoami", "--json", "--endpoint", endpoint], timeout=CLIENT_TIMEOUT)
        assert who.returncode == 0, node.explain(who)
        identity = json.loads(who.stdout)
        assert identity["Arn"].startswith(assumed(pod.role)), identity
        assert identity["Source"]["kind"] == "instance metadata (IMDS)", identity

        doctor = pod.run([keyless, "doctor", "--endpoint", endpoint, "--bucket", pod.bucket],
                         timeout=CLIENT_TIMEOUT)
        assert doctor.returncode == 0, node.explain(doctor)
        assert "FAIL" not in doctor.stdout and "delete s3://" in doctor.stdout, doctor.stdout
        denied = pod.run([keyless, "doctor", "--endpoint", endpoint, "--bucket", pod.other],
                         timeout=CLIENT_TIMEOUT)
        assert denied.returncode == 2 and "s3:ListBucket" in denied.stdout, node.explain(denied)

        cfg = s3cmd_config(pod, node.endpoint)
        src = write(pod, "1700000000_2026_01_01_17.0.0_gitlab_backup.tar", os.urandom(21 << 20))
        up = pod.run([keyless, "backup", "upload", "--s3cmd-config", cfg, src,
                      f"s3://{pod.bucket}/backups/"], timeout=CLIENT_TIMEOUT)
        assert up.returncode == 0, node.explain(up)
        back = os.path.join(pod.home, "restored.tar")
        down = pod.run([keyless, "backup", "download", "--s3cmd-config", cfg,
                        f"s3://{pod.bucket}/backups/{os.path.basename(src)}", back],
                       timeout=CLIENT_TIMEOUT)
        assert down.returncode == 0, node.explain(down)
        assert open(back, "rb").read() == open(src, "rb").read()
        refused = pod.run([keyless, "backup", "upload", "--s3cmd-config", cfg, src,
                           f"s3://{pod.other}/backups/"], timeout=CLIENT_TIMEOUT)
        assert refused.returncode != 0 and "AccessDenied" in refused.stderr, node.explain(refused)


FOG_SCRIPT = """\
require 'fog/aws'
require 'json'
bucket, other, endpoint, name = ARGV
# GitLab Rails' object storage connection (config/gitlab.yml, object_store.connection).
storage = Fog::Storage.new(provider: 'AWS', region: 'us-east-1', use_iam_profile: true,
                           endpoint: endpoint, path_style: true, aws_signature_version: 4)
body = File.binread(File.join(ENV['HOME'], 'avatar.png'))
key = "uploads/-/system/user/avatar/#{name}/avatar.png"
storage.directories.new(key: bucket).files.create(key: key, body: body, content_type: 'image/png')
back = storage.directories.new(key: bucket).files.get(key)
listed = storage.directories.get(bucket, prefix: 'uploads/').files.map(&:key)
refused = begin
  storage.directories.new(key: other).files.create(key: key, body: body)
  'allowed'
rescue Excon::Error::Forbidden => e
  e.response.body[%r{<Code>(\\w+)</Code>}, 1] || e.class.name
end
puts JSON.generate(same: !back.nil? && back.body == body, type: back && back.content_type,
                   listed: listed.include?(key), refused: refused,
                   key: storage.instance_variable_get(:@aws_access_key_id))
"""


def test_fog_each_pod_gets_its_own_role(gitlab):
    need_fog()
    node, pods = gitlab
    for pod in pods:
        write(pod, "avatar.png", b"\x89PNG\r\n\x1a\n" + os.urandom(50_000))
        proc = pod.run(["ruby", "-e", FOG_SCRIPT, pod.bucket, pod.other, f"http://{node.endpoint}", pod.name],
                       timeout=CLIENT_TIMEOUT)
        assert proc.returncode == 0, node.explain(proc)
        out = json.loads(proc.stdout.strip().splitlines()[-1])
        assert out["same"] and out["type"] == "image/png" and out["listed"], f"{out}\n{node.logs()}"
        assert out["key"].startswith("ASIA"), out
        assert out["refused"] == "AccessDenied", f"{out}\n{node.logs()}"


def test_rclone_each_pod_gets_its_own_role(gitlab):
    need("rclone")
    node, pods = gitlab
    for pod in pods:
        cfg = write(pod, "rclone.conf", textwrap.dedent(f"""\
            [s3]
            type = s3
            provider = Other
            env_auth = true
            region = us-east-1
            endpoint = http://{node.endpoint}
            no_check_bucket = true
            """))
        rclone = ["rclone", "--config", cfg, "--low-level-retries", "1", "--retries", "1"]
        src = write(pod, "lfs-object.bin", os.urandom(150_000))
        put = pod.run([*rclone, "copyto", src, f"s3:{pod.bucket}/rclone/{pod.name}.bin"], timeout=CLIENT_TIMEOUT)
        assert put.returncode == 0, node.explain(put)
        ls = pod.run([*rclone, "ls", f"s3:{pod.bucket}/rclone"], timeout=CLIENT_TIMEOUT)
        assert ls.returncode == 0 and f"{pod.name}.bin" in ls.stdout, node.explain(ls)
        cat = subprocess.run(["ip", "netns", "exec", pod.netns, *rclone, "cat", f"s3:{pod.bucket}/rclone/{pod.name}.bin"],
                             env=pod.env(), capture_output=True, timeout=CLIENT_TIMEOUT)
        assert cat.returncode == 0 and cat.stdout == open(src, "rb").read(), cat.stderr.decode()[-2000:]
        # rclone first HEADs the object: S3 answers a HEAD 403 without a body, so "Forbidden".
        refused = pod.run([*rclone, "copyto", src, f"s3:{pod.other}/rclone/{pod.name}.bin"], timeout=CLIENT_TIMEOUT)
        assert refused.returncode != 0 and "status code: 403" in refused.stderr, node.explain(refused)
        refused = pod.run([*rclone, "ls", f"s3:{pod.other}"], timeout=CLIENT_TIMEOUT)
        assert refused.returncode != 0 and "AccessDenied" in refused.stderr, node.explain(refused)


REGISTRY_CONFIG = """\
version: 0.1
log:
  level: info
  formatter: text
storage:
  # GitLab's registry-storage.yaml for IAM roles: no accesskey/secretkey.
  s3:
    bucket: {bucket}
    region: us-east-1
    regionendpoint: http://{endpoint}
    v4auth: true
    secure: false
    # GitLab documents `encrypt: true` for the registry's bucket: every PUT carries
    # x-amz-server-side-encryption: AES256.
    encrypt: true
  delete:
    enabled: true
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: 127.0.0.1:5000
"""

# The registry v2 push and pull, as `docker push`/`docker pull` speak it, in plain HTTP.
REGISTRY_CLIENT = r"""
import hashlib, json, os, sys, time, urllib.error, urllib.parse, urllib.request
base, repo = "http://127.0.0.1:5000", sys.argv[1]
MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"

def call(method, url, body=None, headers=None):
    req = urllib.request.Request(url if url.startswith("http") else base + url, data=body,
                                 method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()

for _ in range(100):
    try:
        if call("GET", "/v2/")[0] == 200:
            break
    except OSError:
        pass
    time.sleep(0.1)
else:
    sys.exit("the registry never answered /v2/")

def digest(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()

def push_blob(data):
    status, headers, body = call("POST", f"/v2/{repo}/blobs/uploads/")
    if status != 202:
        sys.exit(f"upload start: {status} {body[:500]!r}")
    location = headers["Location"]
    sep = "&" if "?" in location else "?"
    status, headers, body = call("PUT", f"{location}{sep}digest={urllib.parse.quote(digest(data))}", data,
                                 {"Content-Type": "application/octet-stream"})
    if status != 201:
        sys.exit(f"upload: {status} {body[:500]!r}")
    return digest(data)

layer = os.urandom(300_000)
config = json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers",
                     "diff_ids": [digest(layer)]}, "config": {}}).encode()
layer_digest, config_digest = push_blob(layer), push_blob(config)
manifest = json.dumps({
    "schemaVersion": 2, "mediaType": MANIFEST,
    "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "size": len(config),
               "digest": config_digest},
    "layers": [{"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip", "size": len(layer),
                "digest": layer_digest}],
}, indent=3).encode()
status, headers, body = call("PUT", f"/v2/{repo}/manifests/v1", manifest, {"Content-Type": MANIFEST})
if status != 201:
    sys.exit(f"manifest: {status} {body[:500]!r}")
# Pull: the manifest by tag, then the blobs it names (the registry redirects blob GETs to a
# presigned S3 URL signed with the pod's credentials; urllib follows it, as docker does).
status, headers, pulled = call("GET", f"/v2/{repo}/manifests/v1", headers={"Accept": MANIFEST})
blobs = {}
for d in (layer_digest, config_digest):
    s, h, data = call("GET", f"/v2/{repo}/blobs/{d}")
    blobs[d] = (s, data == (layer if d == layer_digest else config))
print(json.dumps({"manifest_status": status, "manifest_same": pulled == manifest,
                  "manifest_digest": headers.get("Docker-Content-Digest"), "expected_digest": digest(manifest),
                  "blobs": blobs, "layer": layer_digest, "config": config_digest}))
"""


def run_registry(node, pod, bucket):
    """docker-registry in `pod` on its loopback :5000, storing in `bucket`; returns the process
    and its log file."""
    cfg = write(pod, f"registry-{bucket}.yml", REGISTRY_CONFIG.format(bucket=bucket, endpoint=node.endpoint))
    log_path = os.path.join(pod.home, f"registry-{bucket}.log")
    with open(log_path, "w") as log:
        proc = pod.popen(["docker-registry", "serve", cfg], stdout=log, stderr=log)
    return proc, log_path


def push_with_registry(node, pod):
    """Pushes an image and pulls it back through docker-registry in `pod`, storing in the
    registry bucket with the pod's role: the client's report, checked."""
    need("docker-registry")
    proc, log = run_registry(node, pod, "registry")
    try:
        push = pod.run([sys.executable, "-c", REGISTRY_CLIENT, "gitlab-org/gitlab"], timeout=CLIENT_TIMEOUT)
    finally:
        stop(proc)
    registry_log = f"--- docker-registry log ---\n{read_log(log)}"
    assert push.returncode == 0, f"{node.explain(push)}\n{registry_log}\n{node.server.logs()}"
    out = json.loads(push.stdout.strip().splitlines()[-1])
    assert out["manifest_status"] == 200 and out["manifest_same"], out
    assert out["manifest_digest"] == out["expected_digest"], out
    assert all(status == 200 and same for status, same in out["blobs"].values()), f"{out}\n{registry_log}"
    return out


def test_docker_registry_pushes_and_pulls_through_the_gateway(gateway_gitlab, moto_upstream):
    """docker-registry with its pod's role from the agent, through `keyless serve --upstream`:
    the blobs land in moto, read back there with moto's own keys."""
    node, (registry_pod, _) = gateway_gitlab
    out = push_with_registry(node, registry_pod)
    direct = moto_upstream.client()
    bucket = node.server.prefix + "registry"
    layer_key = f"docker/registry/v2/blobs/sha256/{out['layer'][7:9]}/{out['layer'][7:]}/data"
    layer = direct.get_object(Bucket=bucket, Key=layer_key)["Body"].read()
    assert "sha256:" + hashlib.sha256(layer).hexdigest() == out["layer"]


def test_docker_registry_pushes_and_pulls_with_its_pod_role(gitlab):
    node, (registry_pod, rails_pod) = gitlab
    out = push_with_registry(node, registry_pod)
    # The blobs are in the bucket where the registry's S3 driver puts them.
    s3 = node.server.root_s3()
    keys = {o["Key"] for o in s3.list_objects_v2(Bucket="registry", Prefix="docker/registry/v2/blobs/")["Contents"]}
    for d in (out["layer"], out["config"]):
        hexd = d.split(":", 1)[1]
        assert f"docker/registry/v2/blobs/sha256/{hexd[:2]}/{hexd}/data" in keys, sorted(keys)
    layer_key = f"docker/registry/v2/blobs/sha256/{out['layer'][7:9]}/{out['layer'][7:]}/data"
    got = s3.get_object(Bucket="registry", Key=layer_key)
    layer = got["Body"].read()
    assert "sha256:" + hashlib.sha256(layer).hexdigest() == out["layer"]
    assert got["ServerSideEncryption"] == "AES256", got["ResponseMetadata"]["HTTPHeaders"]
    # Sealed on disk: the layer's bytes are nowhere in the data folder.
    assert not node.server.data_contains(layer[:64]), "the layer is stored in plaintext"
    assert any(k.startswith("docker/registry/v2/repositories/gitlab-org/gitlab/_manifests/tags/v1/")
               for k in (o["Key"] for o in s3.list_objects_v2(
                   Bucket="registry", Prefix="docker/registry/v2/repositories/")["Contents"]))
    # The Rails pod's role may not write the registry's bucket: its registry cannot store.
    proc, log = run_registry(node, rails_pod, "registry")
    try:
        refused = rails_pod.run([sys.executable, "-c", REGISTRY_CLIENT, "gitlab-org/intruder"],
                                timeout=CLIENT_TIMEOUT)
    finally:
        stop(proc)
    assert refused.returncode != 0 and "upload start: 500" in refused.stderr, node.explain(refused)
    assert "AccessDenied" in read_log(log, tail=0), read_log(log)


# ---------------------------------------------------------------------------------------------
# 2. Namespace restrictions (kube2iam's allowed-roles, kiam's permitted)


@pytest.mark.parametrize("annotation", [
    {"iam.amazonaws.com/allowed-roles": json.dumps(["gitlab-*"])},
    {"iam.amazonaws.com/permitted": "gitlab-.*"},
], ids=["kube2iam-allowed-roles", "kiam-permitted"])
def test_namespace_annotation_refuses_a_role_outside_it(node, annotation):
    node.start_agent()
    node.pods.namespace("restricted", annotation)
    allowed = node.pod("allowed", "restricted", "gitlab-rails", publish=False)
    intruder = node.pod("intruder", "restricted", "admin", publish=False)
    by_arn = node.pod("by-arn", "restricted", f"arn:aws:iam::{ACCOUNT}:role/admin", publish=False)
    # The same role in a namespace without restrictions: granted (the refusal is the namespace's).
    ops = node.pod("ops", "ops", "admin", publish=False)
    node.publish()
    assert node.caller_arn(allowed).startswith(assumed("gitlab-rails"))
    assert node.caller_arn(ops).startswith(assumed("admin"))
    for pod in (intruder, by_arn):
        who = node.aws(pod, "sts", "get-caller-identity")
        assert who.returncode != 0, node.explain(who)
        assert "Unable to locate credentials" in who.stderr, node.explain(who)
        status, _ = node.curl(pod, f"{IMDS}{CREDS_PATH}")
        assert status == 403, f"{pod.name}: {status}\n{node.logs()}"
        status, _ = node.curl(pod, f"{IMDS}{CREDS_PATH}admin")
        assert status == 403, f"{pod.name}: {status}\n{node.logs()}"
    log = node.agent.logs()
    key = next(iter(annotation))
    refusals = [line for line in log.splitlines() if "imds: role refused" in line]
    assert any("restricted/intruder" in line and key in line for line in refusals), log
    assert any("restricted/by-arn" in line and key in line for line in refusals), log
    assert not any("restricted/allowed" in line for line in refusals), log


# ---------------------------------------------------------------------------------------------
# 3. An address reused by a new pod


@pytest.mark.parametrize("gone", ["deleted", "completed"])
def test_a_reused_ip_gets_the_new_pods_role_and_not_the_old_tokens(node, gone):
    """Pod A leaves, pod C gets its address. `deleted`: A is no longer listed; `completed`: A
    stays listed with phase Succeeded and its old podIP, as kubectl lists a finished Job's pod."""
    node.start_agent()
    a = node.pod("a", "gitlab-registry", "gitlab-registry")
    token_a = node.imds_token(a)
    status, creds_a = node.imds_credentials(a, token_a)
    assert status == 200, f"{creds_a}\n{node.logs()}"
    assert node.caller_arn(a).startswith(assumed("gitlab-registry"))
    ip = a.ip
    a.delete()
    if gone == "deleted":
        node.pods.remove(a)
    else:
        node.pods.pods[a.name]["status"]["phase"] = "Succeeded"
    node.publish()
    c = node.pod("c", "gitlab", "gitlab-rails", ip=ip)
    assert c.ip == ip
    # A's token, presented from C: refused, on the listing and on every role name.
    for path in (CREDS_PATH, f"{CREDS_PATH}gitlab-registry", f"{CREDS_PATH}gitlab-rails"):
        status, body = node.curl(c, "-H", f"X-aws-ec2-metadata-token: {token_a}", f"{IMDS}{path}")
        assert status == 401, f"{path}: {status} {body}\n{node.logs()}"
    # C's own: its role, fresh credentials never A's.
    status, role = node.curl(c, f"{IMDS}{CREDS_PATH}")
    assert (status, role) == (200, "gitlab-rails"), f"{status} {role}\n{node.logs()}"
    status, _ = node.curl(c, f"{IMDS}{CREDS_PATH}gitlab-registry")
    assert status == 404
    token_c = node.imds_token(c)
    assert token_c != token_a
    status, creds_c = node.imds_credentials(c, token_c)
    assert status == 200, f"{creds_c}\n{node.logs()}"
    assert creds_c["AccessKeyId"] != creds_a["AccessKeyId"], (creds_a, creds_c)
    assert node.caller_arn(c).startswith(assumed("gitlab-rails"))
    refused = node.aws(c, "s3", "ls", "s3://registry/")
    assert refused.returncode != 0 and "AccessDenied" in refused.stderr, node.explain(refused)


def test_a_terminating_pod_still_listed_never_lends_its_role_to_the_pod_on_its_ip(node):
    """Pod A is being deleted (`metadata.deletionTimestamp` set, still `Running` with its
    podIP, as the API shows it until the kubelet reports it gone); the CNI has already handed its
    address to pod C. kubectl lists pods by namespace and name, here C first. kube2iam indexes
    only active pods (no deletionTimestamp; `isPodActive` in k8s/pod.go) and refuses an address
    that two pods claim (`PodByIP`); C must get its own role, never A's."""
    node.start_agent()
    c_ns, a_ns = "gitlab", "gitlab-registry"  # sorted as kubectl sorts them: C, then A
    a = node.pod("registry-0", a_ns, "gitlab-registry")
    assert node.caller_arn(a).startswith(assumed("gitlab-registry"))
    ip = a.ip
    a_entry = node.pods.pods.pop(a.name)
    a.delete()
    a_entry["metadata"]["deletionTimestamp"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    a_entry["metadata"]["deletionGracePeriodSeconds"] = 30
    c = node.pod("webservice-0", c_ns, "gitlab-rails", ip=ip, publish=False)
    node.pods.pods["registry-0"] = a_entry  # listed after C
    node.publish()
    status, role = node.curl(c, f"{IMDS}{CREDS_PATH}")
    assert role != "gitlab-registry", (
        f"pod {c_ns}/webservice-0 on {ip} is offered the role of the terminating pod "
        f"{a_ns}/registry-0 (listing answered {status} {role!r})\n{node.logs()}")
    arn = node.caller_arn(c)
    assert arn.startswith(assumed("gitlab-rails")), f"{arn}\n{node.logs()}"


def test_a_changed_role_annotation_takes_effect(node):
    node.start_agent()
    pod = node.pod("sidekiq-0", "gitlab", "gitlab-registry")
    assert node.caller_arn(pod).startswith(assumed("gitlab-registry"))
    node.pods.pods[pod.name]["metadata"]["annotations"]["iam.amazonaws.com/role"] = "gitlab-rails"
    node.publish()
    assert node.caller_arn(pod).startswith(assumed("gitlab-rails"))
    del node.pods.pods[pod.name]["metadata"]["annotations"]["iam.amazonaws.com/role"]
    node.publish()
    who = node.aws(pod, "sts", "get-caller-identity")
    assert who.returncode != 0 and "Unable to locate credentials" in who.stderr, node.explain(who)


def test_namespace_restrictions_and_imdsv2_only(node):
    """--namespace-restrictions: a namespace without annotations allows no role;
    --require-imdsv2: requests without a token get 401, and the clients (all IMDSv2 first) work."""
    node.start_agent(extra=["--namespace-restrictions", "--require-imdsv2"])
    node.pods.namespace("gitlab", {"iam.amazonaws.com/allowed-roles": json.dumps(["gitlab-rails"])})
    rails = node.pod("webservice-0", "gitlab", "gitlab-rails", publish=False)
    bare = node.pod("ops-0", "ops", "gitlab-rails", publish=False)
    node.publish()
    assert node.caller_arn(rails).startswith(assumed("gitlab-rails"))
    status, _ = node.curl(rails, f"{IMDS}{CREDS_PATH}")
    assert status == 401
    status, creds = node.imds_credentials(rails, node.imds_token(rails))
    assert status == 200 and creds["Code"] == "Success", creds
    who = node.aws(bare, "sts", "get-caller-identity")
    assert who.returncode != 0 and "Unable to locate credentials" in who.stderr, node.explain(who)
    assert "namespace `ops` allows no role" in node.agent.logs(), node.agent.logs()


# ---------------------------------------------------------------------------------------------
# 4. STS down


def test_cached_credentials_are_served_while_sts_is_down(node):
    proxy = StsProxy(node.server.port)
    try:
        node.start_agent(sts_endpoint=f"http://127.0.0.1:{proxy.port}")
        cached = node.pod("registry-0", "gitlab-registry", "gitlab-registry")
        status, before = node.imds_credentials(cached)
        assert status == 200, f"{before}\n{node.logs()}"
        proxy.down()
        probe = socket.socket()
        assert probe.connect_ex(("127.0.0.1", proxy.port)) != 0, "the STS proxy still accepts"
        probe.close()
        for _ in range(3):
            status, during = node.imds_credentials(cached)
            assert status == 200, f"{during}\n{node.logs()}"
            assert during["AccessKeyId"] == before["AccessKeyId"], (before, during)
            assert during["Expiration"] == before["Expiration"]
        token = node.imds_token(cached)
        status, during = node.imds_credentials(cached, token)
        assert status == 200 and during["AccessKeyId"] == before["AccessKeyId"], during
        # The cached credentials work on S3 (which is up) through a real client.
        src = write(cached, "layer", b"cached" * 1000)
        put = node.aws(cached, "s3", "cp", src, "s3://registry/sts-down/layer")
        assert put.returncode == 0, node.explain(put)
        # A pod that has nothing cached gets no credentials while STS is down, and does once it
        # is back.
        fresh = node.pod("webservice-0", "gitlab", "gitlab-rails")
        who = node.aws(fresh, "sts", "get-caller-identity")
        assert who.returncode != 0 and "Unable to locate credentials" in who.stderr, node.explain(who)
        assert "imds: assume role failed" in read_log(node.agent.log, tail=0), node.logs()
        proxy.up()
        deadline = time.monotonic() + 20
        while True:
            status, after = node.imds_credentials(fresh)
            if status == 200 or time.monotonic() > deadline:
                break
            time.sleep(1)
        assert status == 200, f"STS is back, yet {status} {after}\n{node.logs()}"
        assert node.caller_arn(fresh).startswith(assumed("gitlab-rails"))
    finally:
        proxy.down()


# ---------------------------------------------------------------------------------------------
# 5. A pod that asks before the agent knows it


def test_a_pod_asking_before_it_is_in_the_pods_file_gets_credentials(node):
    need("aws")
    node.start_agent()
    late = node.net.pod("late")
    # awscli with its defaults (1 s timeout, 1 attempt), started before the pod is published.
    client = late.popen(["aws", "--endpoint-url", f"http://{node.endpoint}", "sts", "get-caller-identity",
                         "--output", "json"], env={"AWS_DEFAULT_REGION": "us-east-1"},
                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    late.uid = node.pods.add(late, "gitlab", "gitlab-rails")
    node.publish(wait=False)
    out, err = client.communicate(timeout=CLIENT_TIMEOUT)
    assert client.returncode == 0, f"{out}\n{err}\n{node.logs()}"
    assert json.loads(out)["Arn"].startswith(assumed("gitlab-rails"))
    # A raw IMDSv2 client whose token PUT is in flight before the pod is published: the agent
    # holds the request until the pods file tells of the pod, and binds the token to it.
    later = node.net.pod("later")
    curl = later.popen(["curl", "-sS", "--max-time", "10", "-X", "PUT", "-H",
                        "X-aws-ec2-metadata-token-ttl-seconds: 60", f"{IMDS}/api/token"],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(0.5)
    assert curl.poll() is None, "the token PUT of an unknown pod was answered at once"
    node.pods.add(later, "gitlab-registry", "gitlab-registry")
    node.publish(wait=False)
    token, err = curl.communicate(timeout=30)
    assert curl.returncode == 0 and token, f"{err}\n{node.logs()}"
    status, creds = node.imds_credentials(later, token)
    assert status == 200 and creds["AccessKeyId"].startswith("ASIA"), f"{status} {creds}\n{node.logs()}"
    # A pod that never appears is waited for briefly, then has no role.
    stranger = node.net.pod("stranger")
    started = time.monotonic()
    status, _ = node.curl(stranger, f"{IMDS}{CREDS_PATH}")
    waited = time.monotonic() - started
    assert status == 404, f"{status}\n{node.logs()}"
    assert 1.5 <= waited < 8, f"an unknown pod was answered after {waited:.2f}s"


# ---------------------------------------------------------------------------------------------
# 6. The metadata service inside keyless serve


def test_serve_imds_listen_gives_a_pod_its_role(pod_net, keyless_bin, tmp_path):
    need("aws")
    pods = PodsFile(str(tmp_path / "pods.json"))
    server = KeylessServer(keyless_bin, str(tmp_path / "serve"),
                           extra=["--imds-listen", "127.0.0.1:0", "--pods-file", pods.path])
    try:
        imds_host, imds_port = server.imds_address().rsplit(":", 1)
        assert imds_host == "127.0.0.1"
        pod_net.route_imds(int(imds_port))
        endpoint = pod_net.expose(server.port)
        pod = pod_net.pod("registry-0")
        pods.add(pod, "gitlab-registry", "gitlab-registry")
        pods.write()
        env = {"AWS_DEFAULT_REGION": "us-east-1"}
        aws = ["aws", "--endpoint-url", f"http://{endpoint}"]
        who = pod.run([*aws, "sts", "get-caller-identity", "--output", "json"], env=env, timeout=CLIENT_TIMEOUT)
        assert who.returncode == 0, f"{who.stderr}\n{server.logs()}"
        assert json.loads(who.stdout)["Arn"].startswith(assumed("gitlab-registry"))
        src = write(pod, "blob", b"embedded" * 1000)
        put = pod.run([*aws, "s3", "cp", src, "s3://registry/embedded/blob"], env=env, timeout=CLIENT_TIMEOUT)
        assert put.returncode == 0, f"{put.stderr}\n{server.logs()}"
        refused = pod.run([*aws, "s3", "cp", src, "s3://uploads/embedded/blob"], env=env, timeout=CLIENT_TIMEOUT)
        assert refused.returncode != 0 and "AccessDenied" in refused.stderr, refused.stderr
    finally:
        server.stop()


# ---------------------------------------------------------------------------------------------
# 7. The agent's own DNAT rule (--iptables)


def iptables_unavailable() -> str | None:
    if not shutil.which("iptables"):
        return "`iptables` is missing: apt-get install -y iptables"
    probe = subprocess.run(["iptables", "-w", "-t", "nat", "-S", "PREROUTING"], capture_output=True, text=True)
    if probe.returncode != 0:
        return f"iptables cannot read the nat table: {probe.stderr.strip()}"
    return None


def test_agent_iptables_installs_the_metadata_dnat_rule(node):
    reason = iptables_unavailable()
    if reason:
        pytest.skip(reason)
    bridge = node.net.bridge
    agent = node.start_agent(extra=["--iptables", "--host-interface", bridge], route=False)
    rule = ["PREROUTING", "-d", "169.254.169.254/32", "-i", bridge, "-p", "tcp", "--dport", "80",
            "-j", "DNAT", "--to-destination", f"127.0.0.1:{agent.port}"]
    # With route_localnet on, only DNATed traffic may reach the node's loopback (CVE-2020-8558).
    guard = ["INPUT", "-i", bridge, "-d", "127.0.0.0/8", "-m", "conntrack", "!", "--ctstate", "DNAT",
             "-j", "DROP"]
    try:
        inputs = subprocess.run(["iptables", "-w", "-S", "INPUT"], capture_output=True, text=True)
        assert f"-A INPUT -d 127.0.0.0/8 -i {bridge}" in inputs.stdout and "DROP" in inputs.stdout, \
            f"{inputs.stdout}\n{agent.logs()}"
        listed = subprocess.run(["iptables", "-w", "-t", "nat", "-S", "PREROUTING"], capture_output=True, text=True)
        assert f"-i {bridge}" in listed.stdout and f"127.0.0.1:{agent.port}" in listed.stdout, \
            f"{listed.stdout}\n{agent.logs()}"
        assert "the metadata DNAT rules are in place" in read_log(agent.log), agent.logs()
        # The harness's nft table (with the S3 port, and no metadata rule) and iptables' rule
        # coexist.
        assert node.net.imds_port is None
        tables = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True).stdout
        assert node.net.table in tables, tables
        pod = node.pod("registry-0", "gitlab-registry", "gitlab-registry")
        assert node.caller_arn(pod).startswith(assumed("gitlab-registry"))
        src = write(pod, "blob", b"dnat" * 1000)
        put = node.aws(pod, "s3", "cp", src, "s3://registry/iptables/blob")
        assert put.returncode == 0, node.explain(put)
        assert listed.stdout.count(f"127.0.0.1:{agent.port}") == 1, listed.stdout
        # Stopped (SIGTERM), the agent takes its rules out again: the DNAT and the guard.
        agent.stop()
        leftover = subprocess.run(["iptables", "-w", "-t", "nat", "-S", "PREROUTING"], capture_output=True, text=True)
        assert f"127.0.0.1:{agent.port}" not in leftover.stdout, f"{leftover.stdout}\n{agent.logs()}"
        inputs = subprocess.run(["iptables", "-w", "-S", "INPUT"], capture_output=True, text=True)
        assert f"-A INPUT -d 127.0.0.0/8 -i {bridge}" not in inputs.stdout, inputs.stdout
        assert "the metadata DNAT rules are removed" in read_log(agent.log), agent.logs()
    finally:
        agent.stop()
        subprocess.run(["iptables", "-w", "-t", "nat", "-D", *rule], capture_output=True)
        subprocess.run(["iptables", "-w", "-D", *guard], capture_output=True)
