"""The pod harness itself: pods reach a loopback server at 169.254.169.254 with their own IP."""

import sys

import pytest

from imds_stub import ROLE, FakeS3, IMDSStub
from pods import Network, pod_net_fixture, pod_network_fixture, unavailable  # noqa: F401 (fixtures)

CREDS_URL = "http://169.254.169.254/latest/meta-data/iam/security-credentials/"


@pytest.fixture
def imds(pod_net):
    stub = IMDSStub()
    pod_net.route_imds(stub.port)
    yield stub
    stub.close()


def python_get(url):
    return [sys.executable, "-c",
            f"import urllib.request; print(urllib.request.urlopen({url!r}, timeout=5).read().decode())"]


def test_each_pod_is_seen_with_its_own_ip(pod_net, imds):
    a, b = pod_net.pod("a"), pod_net.pod("b")
    assert a.ip != b.ip
    curl = a.run(["curl", "-sS", "--max-time", "5", CREDS_URL])
    assert curl.returncode == 0 and curl.stdout == ROLE, curl.stderr
    py = b.run(python_get(CREDS_URL))
    assert py.returncode == 0 and py.stdout.strip() == ROLE, py.stderr
    assert [(r["client"], r["path"]) for r in imds.requests] == [
        (a.ip, "/latest/meta-data/iam/security-credentials/"),
        (b.ip, "/latest/meta-data/iam/security-credentials/"),
    ]


def test_exposed_port_reaches_the_host_server_with_the_pod_ip(pod_net):
    s3 = FakeS3()
    try:
        endpoint = pod_net.expose(s3.port)
        pod = pod_net.pod()
        proc = pod.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", f"http://{endpoint}/bucket"])
        assert proc.stdout == "403"
        assert [(r["client"], r["path"]) for r in s3.requests] == [(pod.ip, "/bucket")]
    finally:
        s3.close()


def test_a_deleted_pods_ip_is_reusable(pod_net, imds):
    first = pod_net.pod("first")
    ip = first.ip
    first.delete()
    second = pod_net.pod("second", ip=ip)
    assert second.run(["curl", "-sS", "--max-time", "5", CREDS_URL]).stdout == ROLE
    assert imds.requests[-1]["client"] == ip
    with pytest.raises(ValueError):
        pod_net.pod("third", ip=ip)


def test_pods_without_a_route_get_no_answer(pod_net):
    pod = pod_net.pod()
    proc = pod.run(["curl", "-sS", "--max-time", "2", CREDS_URL])
    assert proc.returncode != 0


def test_an_isolated_namespace_reaches_only_itself(pod_net):
    alone = pod_net.isolated("alone")
    assert alone.ip is None
    assert alone.run(["ip", "route"]).stdout.strip() == ""
    # No route: refused at once by the kernel, no packet sent.
    probe = ("import errno, socket\n"
             "try:\n"
             f"    socket.create_connection(('{pod_net.gateway}', 80), timeout=5)\n"
             "except OSError as e:\n"
             "    print(errno.errorcode.get(e.errno))\n")
    proc = alone.run(["python3", "-c", probe])
    assert proc.stdout.strip() == "ENETUNREACH", (proc.stdout, proc.stderr)
    assert alone.run(["python3", "-c", "import socket; s = socket.socket(); s.bind(('127.0.0.1', 0)); s.listen()"]).returncode == 0
    other = pod_net.pod()  # addresses are still handed out as before
    assert other.ip == str(next(pod_net.subnet.hosts()) + 1)
    alone.delete()
    assert f"kl{pod_net.tag}-alone" not in pod_net.leftovers()


def test_close_leaves_nothing_behind():
    reason = unavailable()
    if reason:
        pytest.skip(reason)
    net = Network()
    stub = IMDSStub()
    try:
        net.route_imds(stub.port)
        net.expose(stub.port, 8080)
        pods = [net.pod() for _ in range(3)]
        pods[0].popen(["sleep", "600"])
        assert len(net.leftovers()) == 1 + 3 + 3 + 1  # bridge, 3 veths, 3 namespaces, table
    finally:
        net.close()
        stub.close()
    assert net.leftovers() == []
