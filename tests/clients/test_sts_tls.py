"""TLS between the metadata service and STS (issue 13): `keyless serve --tls-cert --tls-key
--imds-listen` (the embedded metadata service calls its own STS over TLS) and `keyless agent
--sts-endpoint https://...` with a private CA given by `--sts-ca-bundle` or the AWS SDKs'
`AWS_CA_BUNDLE`; a certificate of an unknown CA or for another name is refused with a clear log,
and a certificate the server rotates is met on the next connection. Pods (`pods.py`) get their
role's credentials over IMDS and use them with unmodified awscli and boto3, over https too.

Certificates come from a private CA made here with `cryptography`. Needs root (pods), iproute2,
nftables, curl and awscli.
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import os
import ssl
import subprocess
import textwrap
import time

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from pods import pod_net_fixture, pod_network_fixture  # noqa: F401 (fixtures)
from test_agent import (CLIENT_TIMEOUT, Agent, KeylessServer, Node, PodsFile, assumed, need,
                        read_log, write)


class CA:
    """A private certificate authority; `issue` writes a server certificate and key it signed."""

    def __init__(self, directory, name="keyless test CA"):
        self.key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        now = datetime.datetime.now(datetime.timezone.utc)
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(subject).issuer_name(subject)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False,
                                         key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, key_cert_sign=True, crl_sign=True,
                                         encipher_only=False, decipher_only=False), critical=True)
            .sign(self.key, hashes.SHA256())
        )
        self.path = os.path.join(directory, "ca.pem")
        with open(self.path, "wb") as f:
            f.write(self.cert.public_bytes(serialization.Encoding.PEM))

    def issue(self, cert_path, key_path, common_name: str, names: list[str]) -> None:
        key = ec.generate_private_key(ec.SECP256R1())
        sans = []
        for name in names:
            try:
                sans.append(x509.IPAddress(ipaddress.ip_address(name)))
            except ValueError:
                sans.append(x509.DNSName(name))
        now = datetime.datetime.now(datetime.timezone.utc)
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .sign(self.key, hashes.SHA256())
        )
        # The key first, then the certificate: the server reloads when both have changed.
        with open(os.open(str(key_path), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb") as f:
            f.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption()))
        with open(cert_path, "wb") as f:
            f.write(cert.public_bytes(serialization.Encoding.PEM))


def served_common_name(port: int) -> str:
    pem = ssl.get_server_certificate(("127.0.0.1", port))
    cert = x509.load_pem_x509_certificate(pem.encode())
    return cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value


def rotate(ca, server, common_name, names):
    """Writes a new certificate over the server's files and waits until it is served."""
    time.sleep(1.1)  # a new modification time, whatever the file system's resolution
    ca.issue(server.cert, server.key, common_name, names)
    deadline = time.monotonic() + 15
    while served_common_name(server.port) != common_name:
        assert time.monotonic() < deadline, f"`{common_name}` was not picked up\n{server.logs()}"
        time.sleep(0.3)


@pytest.fixture
def ca(tmp_path):
    return CA(str(tmp_path))


def tls_server(keyless_bin, workdir, ca, gateway, extra=()):
    """`keyless serve` over TLS with a certificate of `ca` for localhost, 127.0.0.1 and the pods'
    gateway (what pods dial)."""
    os.makedirs(workdir, exist_ok=True)
    cert, key = os.path.join(workdir, "cert.pem"), os.path.join(workdir, "key.pem")
    names = ["localhost", "127.0.0.1", gateway]
    ca.issue(cert, key, "keyless-first", names)
    server = KeylessServer(keyless_bin, workdir, extra=["--tls-cert", cert, "--tls-key", key, *extra])
    server.cert, server.key, server.names = cert, key, names
    assert server.endpoint == f"https://127.0.0.1:{server.port}", server.endpoint
    return server


BOTO3_IN_POD = textwrap.dedent("""
    import json, sys
    import boto3, botocore
    endpoint, bucket, other = sys.argv[1:4]
    session = boto3.session.Session(region_name="us-east-1")
    arn = session.client("sts", endpoint_url=endpoint).get_caller_identity()["Arn"]
    s3 = session.client("s3", endpoint_url=endpoint)
    s3.put_object(Bucket=bucket, Key="tls/blob", Body=b"over tls, keys from imds")
    body = s3.get_object(Bucket=bucket, Key="tls/blob")["Body"].read().decode()
    try:
        s3.put_object(Bucket=other, Key="tls/blob", Body=b"x")
        refused = None
    except botocore.exceptions.ClientError as e:
        refused = e.response["Error"]["Code"]
    print(json.dumps({"arn": arn, "body": body, "refused": refused}))
""")


def boto3_in_pod(pod, endpoint, ca, bucket="registry", other="uploads"):
    """boto3's default chain in the pod (IMDS), S3 and STS at `endpoint` over https, the
    private CA given as AWS_CA_BUNDLE as the SDKs read it."""
    script = write(pod, "client.py", BOTO3_IN_POD)
    proc = pod.run(["python3", script, endpoint, bucket, other], env={"AWS_CA_BUNDLE": ca.path},
                   timeout=CLIENT_TIMEOUT)
    return proc


def test_serve_over_tls_gives_pods_credentials_over_imds(pod_net, keyless_bin, tmp_path, ca):
    """The embedded metadata service calls its own STS over TLS, and keeps doing so after the
    server's certificate is rotated."""
    pods = PodsFile(str(tmp_path / "pods.json"))
    server = tls_server(keyless_bin, str(tmp_path / "serve"), ca, pod_net.gateway,
                        extra=["--imds-listen", "127.0.0.1:0", "--pods-file", pods.path])
    try:
        pod_net.route_imds(int(server.imds_address().rsplit(":", 1)[1]))
        endpoint = f"https://{pod_net.expose(server.port)}"
        for n, common_name in enumerate(["keyless-first", "keyless-rotated"]):
            if n:
                rotate(ca, server, common_name, server.names)
            pod = pod_net.pod(f"registry-{n}")
            pods.add(pod, "gitlab-registry", "gitlab-registry")
            pods.write()
            proc = boto3_in_pod(pod, endpoint, ca)
            assert proc.returncode == 0, f"{proc.stderr}\n{server.logs()}"
            got = json.loads(proc.stdout)
            assert got["arn"].startswith(assumed("gitlab-registry")), got
            assert got["body"] == "over tls, keys from imds"
            assert got["refused"] == "AccessDenied", got
        assert "reloaded the TLS certificate" in read_log(server.log, tail=0), server.logs()
    finally:
        server.stop()


@pytest.fixture
def tls_node(pod_net, keyless_bin, tmp_path, ca):
    """A node whose server speaks TLS with a certificate of the private CA."""
    need("curl", "aws")
    server = tls_server(keyless_bin, str(tmp_path / "serve"), ca, pod_net.gateway)
    os.makedirs(tmp_path / "node")
    node = Node(pod_net, server, keyless_bin, str(tmp_path / "node"))
    try:
        yield node
    finally:
        for agent in node.agents:
            agent.stop()
        server.stop()


def start_agent(node, name, extra=(), env=None, sts_endpoint=None):
    agent = Agent(node.keyless_bin, os.path.join(node.workdir, name),
                  sts_endpoint or node.server.endpoint, node.pods.path, extra, env)
    node.agents.append(agent)
    node.agent = agent
    node.net.route_imds(agent.port)
    return agent


def caller_over_https(node, pod, ca) -> str:
    """awscli in the pod: keys from the metadata service, STS over https checked with the CA."""
    proc = pod.run(["aws", "--endpoint-url", f"https://{node.endpoint}", "--ca-bundle", ca.path,
                    "sts", "get-caller-identity", "--output", "json"],
                   env={"AWS_DEFAULT_REGION": "us-east-1"}, timeout=CLIENT_TIMEOUT)
    assert proc.returncode == 0, node.explain(proc)
    return json.loads(proc.stdout)["Arn"]


@pytest.mark.parametrize("how", ["--sts-ca-bundle", "AWS_CA_BUNDLE"])
def test_the_agent_reaches_sts_over_https_with_a_private_ca(tls_node, ca, how):
    node = tls_node
    if how == "--sts-ca-bundle":
        agent = start_agent(node, "agent", extra=["--sts-ca-bundle", ca.path])
    else:
        agent = start_agent(node, "agent", env={"AWS_CA_BUNDLE": ca.path})
    pod = node.pod("registry-0", "gitlab-registry", "gitlab-registry")
    status, creds = node.imds_credentials(pod)
    assert status == 200, f"{creds}\n{node.logs()}"
    assert creds["AccessKeyId"].startswith("ASIA")
    assert caller_over_https(node, pod, ca).startswith(assumed("gitlab-registry"))
    proc = boto3_in_pod(pod, f"https://{node.endpoint}", ca)
    assert proc.returncode == 0, node.explain(proc)
    assert json.loads(proc.stdout)["refused"] == "AccessDenied"
    assert "tls handshake" not in read_log(agent.log, tail=0)


def test_a_server_of_an_unknown_ca_is_refused_with_a_clear_log(tls_node):
    node = tls_node
    agent = start_agent(node, "agent")  # the platform's authorities: the private CA is unknown
    pod = node.pod("registry-0", "gitlab-registry", "gitlab-registry")
    status, body = node.imds_credentials(pod)
    assert status != 200, body
    log = read_log(agent.log, tail=0)
    assert "tls handshake with `https://127.0.0.1:" in log and "invalid peer certificate" in log, log
    assert "the platform's certificate authorities" in log, log


def test_the_agent_follows_a_rotated_certificate_and_refuses_another_name(tls_node, ca):
    node = tls_node
    agent = start_agent(node, "agent", extra=["--sts-ca-bundle", ca.path])
    first = node.pod("registry-0", "gitlab-registry", "gitlab-registry")
    assert node.imds_credentials(first)[0] == 200, node.logs()

    # Rotated by the same CA: the agent's next connection meets the new certificate.
    rotate(ca, node.server, "keyless-rotated", node.server.names)
    second = node.pod("registry-1", "gitlab-registry", "gitlab-registry")
    status, creds = node.imds_credentials(second)
    assert status == 200, f"{creds}\n{node.logs()}"
    assert caller_over_https(node, second, ca).startswith(assumed("gitlab-registry"))

    # A certificate of the same CA for another name is not the server's.
    rotate(ca, node.server, "keyless-elsewhere", ["other.example"])
    third = node.pod("registry-2", "gitlab-registry", "gitlab-registry")
    status, body = node.imds_credentials(third)
    assert status != 200, body
    log = read_log(agent.log, tail=0)
    assert "not valid for name" in log and "127.0.0.1" in log and "other.example" in log, log


def test_plain_http_off_the_node_needs_the_flag_and_https_does_not(tls_node, ca):
    node = tls_node
    elsewhere = f"{node.net.gateway}:{node.server.port}"
    argv = [node.keyless_bin, "agent", "--listen", "127.0.0.1:0", "--pods-file", node.pods.path,
            "--sts-endpoint", f"http://{elsewhere}", "--admin-listen", "off"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(AWS_ACCESS_KEY_ID="AKIAKEYLESSAGENT0001", AWS_SECRET_ACCESS_KEY="x" * 40)
    proc = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=30)
    assert proc.returncode != 0
    assert "plain HTTP" in proc.stderr and "--sts-ca-bundle" in proc.stderr \
        and "--sts-insecure-http" in proc.stderr, proc.stderr
    # https to an address off loopback starts without the flag (the name is checked instead).
    agent = start_agent(node, "agent", extra=["--sts-ca-bundle", ca.path],
                        sts_endpoint=f"https://{elsewhere}")
    assert agent.proc.poll() is None, agent.logs()
