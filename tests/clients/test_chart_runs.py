"""What the chart renders runs: the server, the node agent and the webhook of `helm template -f
ci/everything-values.yaml` started with exactly the command, args, env and files the rendered
manifests give them (tests/clients/kubelet.py plays the kubelet and the API server), in
network-namespace pods, and real clients that reach S3 through them:

- the server's StatefulSet pod, its config file from the rendered ConfigMap, its session key and
  root key from the chart's generated Secret (mounted and made group-readable as a kubelet does
  for the fsGroup), its data folder on an fsGroup-owned volume, a read-only root file system;
- the agent's DaemonSet pod on the node's network, with NET_ADMIN alone: it watches pods through
  the API, installs the DNAT rules for 169.254.169.254 and 169.254.170.23 itself, assumes roles
  at the server's STS by the Service's name with the key pair the chart generated and the
  server declared, and removes its rules on SIGTERM;
- the webhook's Deployment pod: its own CA in a Secret through the API, the caBundle patched
  into the rendered MutatingWebhookConfiguration, an AdmissionReview answered over HTTPS to the
  Service's name; the mutated pod, given its projected token, reaches S3 by IRSA.

A flag renamed in the binary but not in the chart, a path the chart mounts elsewhere than its
args name, or a secret the binary refuses to read fails here.
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import re
import socket
import ssl
import subprocess
import tempfile
import time
import urllib.request

import jsonpatch
import kubernetes_validate
import pytest
import yaml

from chart import NAMESPACE, VALUE_SETS, find, notes, render
from kubelet import FakeApi, Kubelet, pod_of
from pods import pod_network_fixture  # noqa: F401 (fixture)
from test_agent import REGISTRY_CLIENT
from test_audit import check_shape

ROLE = "arn:aws:iam::000000000000:role/gitlab"


def rsa_issuer():
    """The cluster's service-account signing key and its JWKS, as `kubectl get --raw
    /openid/v1/jwks` prints it."""
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    numbers = key.public_key().public_numbers()

    def b64(n: int) -> str:
        return base64.urlsafe_b64encode(n.to_bytes((n.bit_length() + 7) // 8, "big")).rstrip(b"=").decode()

    jwks = {"keys": [{"kty": "RSA", "kid": "cluster", "use": "sig", "alg": "RS256", "n": b64(numbers.n),
                      "e": b64(numbers.e)}]}
    return key, json.dumps(jwks)


def iptables_rules() -> str:
    return subprocess.run(["iptables", "-w", "-t", "nat", "-S", "PREROUTING"], capture_output=True, text=True).stdout


class Cluster:
    def __init__(self, net, workdir: str):
        self.net, self.workdir = net, workdir
        self.key, jwks = rsa_issuer()
        overrides = os.path.join(workdir, "overrides.yaml")
        with open(overrides, "w") as f:
            yaml.safe_dump({
                # The test node's pod bridge; GitHub's issuer is not reachable from here.
                "agent": {"hostInterface": net.bridge, "associations": ["gitlab/gitlab-toolbox=gitlab"],
                          "clusterName": "node-test"},
                # No JWKS in values: the server and the agent read the cluster issuer's keys
                # from the API server, with their service-account tokens and the cluster's CA.
                "iam": {"clusterIssuer": {"jwks": ""}, "oidcProviders": [],
                        "buckets": [{"name": b} for b in ("gitlab-registry", "gitlab-backups", "gitlab-uploads",
                                                           "gitlab-tmp")]},
            }, f)
        self.overrides = overrides
        self.docs = render("everything", extra_files=(overrides,))
        self.api = FakeApi(net.gateway)
        self.api.serve_issuer("https://kubernetes.default.svc.cluster.local", jwks, self.key.public_key())
        self.kubelet = Kubelet(net, self.api, self.docs, workdir)
        self.kubelet.issuer = "https://kubernetes.default.svc.cluster.local"
        self.kubelet.issuer_key = self.key
        self.kubelet.service("kubernetes", "default", self.api.host)
        for ns in ("keyless", "gitlab", "kube-system"):
            self.api.put("namespaces", {"apiVersion": "v1", "kind": "Namespace",
                                        "metadata": {"name": ns, "labels": {"kubernetes.io/metadata.name": ns}}})
        # What `helm install` applies and the webhook patches.
        self.api.put("mutatingwebhookconfigurations", find(self.docs, "MutatingWebhookConfiguration", "keyless-webhook"))
        self.api.put("serviceaccounts", {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {
            "name": "gitlab", "namespace": "gitlab", "annotations": {"eks.amazonaws.com/role-arn": ROLE}}})

        server = find(self.docs, "StatefulSet", "keyless")
        self.server = self.kubelet.start(pod_of(server, "keyless-0"), "keyless", "keyless-0", NAMESPACE,
                                         ready=("$(POD_IP)", 9090, "/readyz"))
        self.kubelet.service("keyless", NAMESPACE, self.server.ip)
        assert f"{net.gateway}:8181" not in iptables_rules(), "a DNAT rule is there before the agent"
        agent = find(self.docs, "DaemonSet", "keyless-agent")
        self.agent = self.kubelet.start(pod_of(agent, "keyless-agent-node1"), "agent", "keyless-agent-node1", NAMESPACE,
                                        ready=("127.0.0.1", 8182, "/readyz"))
        webhook = find(self.docs, "Deployment", "keyless-webhook")
        self.webhook = self.kubelet.start(pod_of(webhook, "keyless-webhook-a"), "webhook", "keyless-webhook-a", NAMESPACE,
                                          ready=("$(POD_IP)", 9090, "/readyz"))
        self.kubelet.service("keyless-webhook", NAMESPACE, self.webhook.ip)

    def logs(self) -> str:
        return "\n".join(c.logs() for c in self.kubelet.running)

    def close(self):
        self.kubelet.close()
        self.api.close()

    def pod(self, name: str, namespace: str, service_account: str = "default", annotations=None,
            containers=None, volumes=None):
        """A pod object on this node, published through the API, and its network namespace."""
        netpod = self.net.pod(name)
        obj = {"apiVersion": "v1", "kind": "Pod",
               "metadata": {"name": name, "namespace": namespace, "uid": f"uid-{name}",
                            "annotations": annotations or {}},
               "spec": {"nodeName": self.kubelet.node_name, "serviceAccountName": service_account,
                        "containers": containers or [{"name": "main", "image": "toolbox", "env": [
                            {"name": "AWS_DEFAULT_REGION", "value": "us-east-1"}]}],
                        "volumes": volumes or []},
               "status": {"phase": "Running", "podIP": netpod.ip, "podIPs": [{"ip": netpod.ip}]}}
        self.api.put("pods", obj)
        return netpod, obj

    def aws(self, netpod, pod_obj, *args, timeout=120):
        out = self.kubelet.exec(pod_obj, pod_obj["spec"]["containers"][0]["name"], netpod,
                                pod_obj["metadata"]["namespace"], ["aws", *args], timeout=timeout)
        return out

    def mutate(self, pod: dict) -> dict:
        """The webhook's AdmissionResponse for creating `pod`, asked as the API server asks: over
        HTTPS to the Service's name (here, the pod behind it), the certificate checked for that
        name against the caBundle the webhook put in its configuration."""
        config = self.api.get("mutatingwebhookconfigurations", "/keyless-webhook")
        bundle = base64.b64decode(config["webhooks"][0]["clientConfig"]["caBundle"]).decode()
        context = ssl.create_default_context(cadata=bundle)
        tls = context.wrap_socket(socket.create_connection((self.webhook.ip, 8443), timeout=10),
                                  server_hostname="keyless-webhook.keyless.svc")
        conn = http.client.HTTPSConnection("keyless-webhook.keyless.svc", 443, context=context, timeout=10)
        conn.sock = tls
        conn.request("POST", "/mutate?timeout=10s", body=json.dumps(admission_review(pod)),
                     headers={"Content-Type": "application/json"})
        answer = json.loads(conn.getresponse().read())
        response = answer["response"]
        assert response["allowed"] is True and response["uid"] == "0f0e-review", answer
        return response

    def explain(self, out) -> str:
        return f"exit {out.returncode}\n--- stdout ---\n{out.stdout[-3000:]}\n--- stderr ---\n{out.stderr[-3000:]}\n{self.logs()}"


@pytest.fixture(scope="module")
def cluster(pod_network, keyless_bin):
    workdir = tempfile.mkdtemp(prefix="keyless-chart-runs-")
    c = Cluster(pod_network, workdir)
    try:
        yield c
    finally:
        c.close()
        pod_network.reset()


def test_the_server_serves_from_the_rendered_config(cluster):
    """The config's buckets exist, the root key is the Secret's, the issuer is the Service's."""
    secret = find(cluster.docs, "Secret", "keyless-secrets")["data"]
    root_id = base64.b64decode(secret["root-access-key-id"]).decode()
    root_secret = base64.b64decode(secret["root-secret-access-key"]).decode()
    netpod, obj = cluster.pod("admin", "keyless")
    env_pod = {**obj, "spec": {**obj["spec"], "containers": [{"name": "main", "image": "x", "env": [
        {"name": "AWS_ACCESS_KEY_ID", "value": root_id}, {"name": "AWS_SECRET_ACCESS_KEY", "value": root_secret},
        {"name": "AWS_DEFAULT_REGION", "value": "us-east-1"}]}]}}
    out = cluster.aws(netpod, env_pod, "--endpoint-url", "http://keyless.keyless.svc:9000", "s3api", "list-buckets",
                      "--query", "Buckets[].Name", "--output", "text")
    assert out.returncode == 0, cluster.explain(out)
    assert out.stdout.split() == ["gitlab-backups", "gitlab-registry", "gitlab-tmp", "gitlab-uploads"], out.stdout
    with urllib.request.urlopen(f"http://{cluster.server.ip}:9000/.well-known/openid-configuration", timeout=5) as r:
        assert json.load(r)["issuer"] == "http://keyless.keyless.svc:9000"
    # The session key and root key came from the Secret volume, group-readable for the fsGroup.
    logs = cluster.server.logs()
    assert "is readable by other users" not in logs, logs
    # The chart's audit trail: CloudTrail records on the container's standard output.
    deadline = time.monotonic() + 10
    while True:
        records = [json.loads(line) for line in cluster.server.logs().splitlines()
                   if line.startswith('{"eventVersion"')]
        listed = [r for r in records if r["eventName"] == "ListBuckets"]
        if listed or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert listed, cluster.server.logs()[-3000:]
    for record in records:
        check_shape(record)
    assert listed[0]["userIdentity"]["type"] == "Root"
    assert listed[0]["userIdentity"]["accessKeyId"] == root_id
    assert root_secret not in cluster.server.logs()


def test_the_server_reads_the_cluster_issuer_from_the_api_server(cluster):
    """IRSA out of the box: no JWKS in values, so the server fetched the cluster issuer's
    discovery document and keys from the API server, with its projected token and the
    cluster's CA (the fake refuses anonymous callers, as RBAC does by default)."""
    netpod, obj = cluster.pod("irsa-probe", "gitlab", service_account="gitlab")
    token_file = os.path.join(netpod.home, "token")
    with open(token_file, "w") as f:
        f.write(cluster.kubelet.token("gitlab", "gitlab", "sts.amazonaws.com", 3600))
    obj["spec"]["containers"][0]["env"] += [{"name": "AWS_ROLE_ARN", "value": ROLE},
                                            {"name": "AWS_WEB_IDENTITY_TOKEN_FILE", "value": token_file},
                                            {"name": "AWS_ENDPOINT_URL_STS", "value": "http://keyless.keyless.svc:9000"}]
    out = cluster.aws(netpod, obj, "sts", "get-caller-identity")
    assert out.returncode == 0 and ":assumed-role/gitlab/" in out.stdout, cluster.explain(out)
    # Both with the token (the fake refuses anonymous callers, and records which it refused).
    fetched = [r for r in cluster.api.requests if "openid" in r]
    assert "GET /.well-known/openid-configuration" in fetched and "GET /openid/v1/jwks" in fetched, fetched
    assert not [r for r in fetched if "refused" in r], fetched


def test_the_agent_gives_annotated_pods_their_role(cluster):
    """kube2iam style: the pod's iam.amazonaws.com/role, the agent's own DNAT rule, AssumeRole
    at the server's STS by its Service name, and an upload with those credentials."""
    rules = iptables_rules()
    assert f"-d 169.254.169.254/32 -i {cluster.net.bridge} -p tcp -m tcp --dport 80 -j DNAT --to-destination {cluster.net.gateway}:8181" in rules, rules
    assert f"-d 169.254.170.23/32 -i {cluster.net.bridge}" in rules, rules
    netpod, obj = cluster.pod("registry-0", "gitlab", annotations={"iam.amazonaws.com/role": "gitlab"})
    deadline = time.monotonic() + 20
    while True:
        out = cluster.kubelet.exec(obj, "main", netpod, "gitlab",
                                   ["curl", "-s", "http://169.254.169.254/latest/meta-data/iam/security-credentials/"])
        if out.stdout.strip() == "gitlab":
            break
        assert time.monotonic() < deadline, cluster.explain(out)
        time.sleep(0.3)
    blob = os.path.join(netpod.home, "blob")
    with open(blob, "wb") as f:
        f.write(b"layer" * 10000)
    out = cluster.aws(netpod, obj, "--endpoint-url", "http://keyless.keyless.svc:9000", "s3", "cp", blob,
                      "s3://gitlab-registry/docker/registry/v2/blobs/x")
    assert out.returncode == 0, cluster.explain(out)
    out = cluster.aws(netpod, obj, "sts", "get-caller-identity", "--endpoint-url", "http://keyless.keyless.svc:9000")
    assert out.returncode == 0 and ":assumed-role/gitlab/" in out.stdout, cluster.explain(out)


def test_the_agent_serves_container_credentials(cluster):
    """EKS Pod Identity style: the association the chart passed, the pod's service-account
    token checked against the cluster issuer's JWKS the chart mounted, 169.254.170.23 DNATed."""
    netpod, obj = cluster.pod("toolbox-0", "gitlab", service_account="gitlab-toolbox")
    token = cluster.kubelet.token("gitlab", "gitlab-toolbox", "pods.eks.amazonaws.com", 3600)
    token_file = os.path.join(netpod.home, "eks-pod-identity-token")
    with open(token_file, "w") as f:
        f.write(token)
    obj["spec"]["containers"][0]["env"] = [
        {"name": "AWS_CONTAINER_CREDENTIALS_FULL_URI", "value": "http://169.254.170.23/v1/credentials"},
        {"name": "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE", "value": token_file},
        {"name": "AWS_DEFAULT_REGION", "value": "us-east-1"}]
    out = cluster.aws(netpod, obj, "sts", "get-caller-identity", "--endpoint-url", "http://keyless.keyless.svc:9000")
    assert out.returncode == 0 and ":assumed-role/gitlab/" in out.stdout, cluster.explain(out)


def admission_review(pod: dict) -> dict:
    return {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {
        "uid": "0f0e-review", "kind": {"group": "", "version": "v1", "kind": "Pod"},
        "resource": {"group": "", "version": "v1", "resource": "pods"},
        "requestKind": {"group": "", "version": "v1", "kind": "Pod"},
        "requestResource": {"group": "", "version": "v1", "resource": "pods"},
        "namespace": pod["metadata"]["namespace"], "operation": "CREATE",
        "userInfo": {"username": "system:serviceaccount:kube-system:replicaset-controller"},
        "object": pod, "oldObject": None, "dryRun": False,
        "options": {"apiVersion": "meta.k8s.io/v1", "kind": "CreateOptions"}}}


def test_the_webhook_mutates_and_the_pod_reaches_s3_by_irsa(cluster):
    """The webhook made its CA (a Secret through the API) and put it in the chart's
    configuration; the API server's call, over HTTPS to the Service's name and checked against
    that caBundle, gets the IRSA mutation; the mutated pod, with the token the kubelet projects,
    uploads a backup."""
    secret = cluster.api.get("secrets", "keyless/keyless-webhook-self-signed-tls")
    assert secret and "tls.crt" in secret["data"], cluster.api.requests[-20:]
    pod = {"apiVersion": "v1", "kind": "Pod",
           "metadata": {"generateName": "gitlab-toolbox-", "namespace": "gitlab"},
           "spec": {"serviceAccountName": "gitlab",
                    "containers": [{"name": "toolbox", "image": "registry.gitlab.com/gitlab-org/build/cng/gitlab-toolbox-ee:v17.5.0"}]}}
    response = cluster.mutate(pod)
    mutated = jsonpatch.JsonPatch(json.loads(base64.b64decode(response["patch"]))).apply(pod)
    kubernetes_validate.validate(mutated, "1.37.0", strict=True)
    env = {e["name"]: e.get("value") for e in mutated["spec"]["containers"][0]["env"]}
    assert env["AWS_ROLE_ARN"] == ROLE
    assert env["AWS_ENDPOINT_URL_STS"] == env["AWS_ENDPOINT_URL_S3"] == "http://keyless.keyless.svc:9000"
    mutated["metadata"]["name"] = "gitlab-toolbox-abc12"
    netpod = cluster.net.pod("gitlab-toolbox-abc12")
    backup = os.path.join(netpod.home, "1700000000_2026_12_07_17.5.0_gitlab_backup.tar")
    with open(backup, "wb") as f:
        f.write(os.urandom(3 * 1024 * 1024))
    out = cluster.kubelet.exec(mutated, "toolbox", netpod, "gitlab", ["aws", "sts", "get-caller-identity"])
    assert out.returncode == 0 and ":assumed-role/gitlab/" in out.stdout, cluster.explain(out)
    out = cluster.kubelet.exec(mutated, "toolbox", netpod, "gitlab",
                               ["aws", "s3", "cp", backup, "s3://gitlab-backups/" + os.path.basename(backup)])
    assert out.returncode == 0, cluster.explain(out)


# ---------------------------------------------------------------------------------------------
# GitLab on top: its values rendered by the server's own binary as NOTES.txt says, checked, and
# GitLab's clients in pods shaped like GitLab's.


def gitlab_setup(cluster, mode: str, tmp_path, keyless_bin: str) -> dict[str, str]:
    """NOTES.txt's `kubectl exec ... -- keyless gitlab render` for `mode`, run in the server's
    pod; its files, which `keyless gitlab check` (in the same pod) finds clean."""
    text = notes("everything", sets=(f"gitlab.mode={mode}",), tmp=tmp_path, extra_files=(cluster.overrides,))
    line = next(ln.strip() for ln in text.splitlines() if ln.strip().startswith("kubectl") and "gitlab render" in ln)
    assert line.startswith("kubectl -n keyless exec statefulset/keyless -- "), line
    server_pod = pod_of(find(cluster.docs, "StatefulSet", "keyless"), "keyless-0")
    netpod = cluster.net.pods["keyless-0"]
    out = cluster.kubelet.exec(server_pod, "keyless", netpod, NAMESPACE, line.split(" -- ", 1)[1].split())
    assert out.returncode == 0, cluster.explain(out)
    files = dict(re.findall(r"# ---- file: (\S+) ----\n(.*?)(?=\n# ---- file: |\Z)", out.stdout, flags=re.S))
    assert sorted(files) == ["object-storage.yaml", "registry-storage.yaml", "s3cmd.config", "values.yaml"]
    for name, body in files.items():
        with open(os.path.join(netpod.home, f"{mode}-{name}"), "w") as f:
            f.write(body)
    # `kubectl exec` printed them on the operator's machine, where `keyless gitlab check` runs.
    check = subprocess.run([keyless_bin, "gitlab", "check", "--values", os.path.join(netpod.home, f"{mode}-values.yaml"),
                            *(a for n in ("registry-storage.yaml", "object-storage.yaml", "s3cmd.config")
                              for a in ("--secret", os.path.join(netpod.home, f"{mode}-{n}")))],
                           capture_output=True, text=True)
    assert check.returncode == 0, cluster.explain(check)
    return files


def gitlab_pod(cluster, name: str, values: dict, component: list[str], service_account: str = "default"):
    """A pod of GitLab's `component` (a values path) with the annotations its values give it."""
    block = values
    for key in component:
        block = block.get(key) or {}
    return cluster.pod(name, "gitlab", service_account=service_account, annotations=block.get("annotations") or {})


FOG_CONNECTION_SCRIPT = """\
require 'fog/aws'
require 'json'
require 'yaml'
# GitLab Rails' object storage: the connection secret, as is, to Fog::Storage.new.
connection = YAML.load_file(ARGV[0]).transform_keys(&:to_sym)
storage = Fog::Storage.new(connection)
body = Random.new(7).bytes(80_000)
key = 'uploads/-/system/user/avatar/1/avatar.png'
storage.directories.new(key: 'gitlab-uploads').files.create(key: key, body: body, content_type: 'image/png')
back = storage.directories.new(key: 'gitlab-uploads').files.get(key)
puts JSON.generate(same: back.body == body, key: storage.instance_variable_get(:@aws_access_key_id))
"""


def test_gitlab_annotation_mode_registry_and_rails_through_the_agent(cluster, tmp_path, keyless_bin):
    """kube2iam style: the registry (docker-registry, its storage from registry-storage.yaml)
    and Rails (fog-aws, its connection from object-storage.yaml) in pods annotated as the
    rendered values annotate them, with the agent's credentials."""
    files = gitlab_setup(cluster, "annotation", tmp_path, keyless_bin)
    values = yaml.safe_load(files["values.yaml"])
    assert values["registry"]["annotations"] == {"iam.amazonaws.com/role": "gitlab"}
    netpod, obj = gitlab_pod(cluster, "gitlab-registry-0", values, ["registry"])
    storage = yaml.safe_load(files["registry-storage.yaml"])
    # The chart's registry config.yml with the storage secret in it.
    config = {"version": 0.1, "log": {"level": "info"}, "http": {"addr": "127.0.0.1:5000"},
              "storage": {**storage, "delete": {"enabled": True}, "maintenance": {"uploadpurging": {"enabled": False}}}}
    cfg = os.path.join(netpod.home, "config.yml")
    with open(cfg, "w") as f:
        yaml.safe_dump(config, f)
    client = os.path.join(netpod.home, "client.py")
    with open(client, "w") as f:
        f.write(REGISTRY_CLIENT)
    wait_for_role(cluster, netpod, obj)
    out = cluster.kubelet.exec(obj, "main", netpod, "gitlab", ["sh", "-c",
        f"docker-registry serve {cfg} > {netpod.home}/registry.log 2>&1 & pid=$!; "
        f"python3 {client} gitlab-org/gitlab; rc=$?; kill $pid; exit $rc"], timeout=180)
    registry_log = open(os.path.join(netpod.home, "registry.log")).read()[-4000:]
    assert out.returncode == 0, f"{cluster.explain(out)}\n--- registry ---\n{registry_log}"
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report["manifest_status"] == 200 and report["manifest_same"], report
    assert all(status == 200 and same for status, same in report["blobs"].values()), report

    netpod, obj = gitlab_pod(cluster, "gitlab-webservice-0", values, ["gitlab", "webservice"])
    connection = os.path.join(netpod.home, "connection.yaml")
    with open(connection, "w") as f:
        f.write(files["object-storage.yaml"])
    wait_for_role(cluster, netpod, obj)
    out = cluster.kubelet.exec(obj, "main", netpod, "gitlab", ["ruby", "-e", FOG_CONNECTION_SCRIPT, connection])
    assert out.returncode == 0, cluster.explain(out)
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report["same"] and report["key"].startswith("ASIA"), report


def wait_for_role(cluster, netpod, obj, timeout: float = 20) -> None:
    """Until the agent has seen the pod (its watch) and answers its role."""
    deadline = time.monotonic() + timeout
    while True:
        out = cluster.kubelet.exec(obj, "main", netpod, obj["metadata"]["namespace"],
                                   ["curl", "-s", "http://169.254.169.254/latest/meta-data/iam/security-credentials/"])
        if out.stdout.strip():
            return
        assert time.monotonic() < deadline, cluster.explain(out)
        time.sleep(0.2)


def test_gitlab_irsa_mode_toolbox_backups_through_the_webhook(cluster, tmp_path, keyless_bin):
    """IRSA: the toolbox pod of the rendered values' service account, mutated by the webhook,
    backs up with `keyless backup` (reading the rendered s3cmd.config) and with the awscli
    commands GitLab's backup-utility runs given the rendered `--s3tool awscli
    --aws-s3-endpoint-url` (a tarball with `aws s3 cp`, object storage with `aws s3 sync`)."""
    files = gitlab_setup(cluster, "irsa", tmp_path, keyless_bin)
    values = yaml.safe_load(files["values.yaml"])
    account = values["global"]["serviceAccount"]["name"]
    assert values["global"]["platform"]["eksRoleArn"] == ROLE
    extra = values["gitlab"]["toolbox"]["backups"]["cron"]["extraArgs"].split()
    assert extra[:2] == ["--s3tool", "awscli"] and extra[2] == "--aws-s3-endpoint-url", extra
    endpoint = extra[3]
    pod = {"apiVersion": "v1", "kind": "Pod",
           "metadata": {"generateName": "gitlab-toolbox-", "namespace": "gitlab"},
           "spec": {"serviceAccountName": account,
                    "containers": [{"name": "toolbox", "image": "registry.gitlab.com/gitlab-org/build/cng/gitlab-toolbox-ee:v17.5.0",
                                    "env": [{"name": "AWS_DEFAULT_REGION", "value": "us-east-1"}]}]}}
    response = cluster.mutate(pod)
    mutated = jsonpatch.JsonPatch(json.loads(base64.b64decode(response["patch"]))).apply(pod)
    mutated["metadata"]["name"] = "gitlab-toolbox-irsa"
    netpod = cluster.net.pod("gitlab-toolbox-irsa")
    home = netpod.home
    s3cmd = os.path.join(home, "s3cmd.config")
    with open(s3cmd, "w") as f:
        f.write(files["s3cmd.config"])
    tarball = os.path.join(home, "1733540000_2026_12_07_17.5.0_gitlab_backup.tar")
    with open(tarball, "wb") as f:
        f.write(os.urandom(20 << 20))
    run = lambda *argv: cluster.kubelet.exec(mutated, "toolbox", netpod, "gitlab", list(argv), timeout=180)
    # `keyless backup`, multipart, with the role from the web identity token.
    out = run("/usr/local/bin/keyless", "backup", "upload", "--s3cmd-config", s3cmd, tarball, "s3://gitlab-backups/keyless/")
    assert out.returncode == 0, cluster.explain(out)
    back = os.path.join(home, "restored.tar")
    out = run("/usr/local/bin/keyless", "backup", "download", "--s3cmd-config", s3cmd,
              f"s3://gitlab-backups/keyless/{os.path.basename(tarball)}", back)
    assert out.returncode == 0, cluster.explain(out)
    assert open(back, "rb").read() == open(tarball, "rb").read()
    # backup-utility --s3tool awscli --aws-s3-endpoint-url URL: the object storage buckets
    # synced down and into the tarball, the tarball copied up; a restore syncs them back.
    objects = os.path.join(home, "uploads")
    os.makedirs(os.path.join(objects, "-/system/user/avatar/2"))
    with open(os.path.join(objects, "-/system/user/avatar/2/avatar.png"), "wb") as f:
        f.write(os.urandom(70_000))
    s3 = ["aws", "s3", "--endpoint-url", endpoint, "--region", "us-east-1"]
    for argv in ([*s3, "sync", objects, "s3://gitlab-uploads/"],             # a restore's object storage
                 [*s3, "sync", "s3://gitlab-uploads/", os.path.join(home, "synced")],  # a backup's
                 [*s3, "cp", tarball, f"s3://gitlab-backups/{os.path.basename(tarball)}"],
                 [*s3, "cp", f"s3://gitlab-backups/{os.path.basename(tarball)}", os.path.join(home, "fetched.tar")]):
        out = run(*argv)
        assert out.returncode == 0, f"{argv}\n{cluster.explain(out)}"
    assert open(os.path.join(home, "fetched.tar"), "rb").read() == open(tarball, "rb").read()
    assert os.path.exists(os.path.join(home, "synced", "-/system/user/avatar/2/avatar.png"))
    out = run("aws", "sts", "get-caller-identity")
    assert ":assumed-role/gitlab/" in out.stdout, cluster.explain(out)


def test_gateway_replicas_from_the_rendered_deployment(cluster, moto_upstream, tmp_path):
    """The gateway value set's Deployment, pointed at this test's moto and PostgreSQL: two
    replicas started from it (the chart's one Secret, each with its emptyDir) share IAM state,
    so that a user made through one signs on the other, and the objects are moto's."""
    import boto3
    from test_replicas import Postgres

    pg = Postgres(tmp_path)
    try:
        # The socket's folder, for the replicas' user 65532 (as a Service would be reachable).
        os.chmod(open(tmp_path / "pg" / "cluster").read().strip(), 0o755)
        upstream = cluster.net.expose(moto_upstream.port)
        prefix = "chart-gw-"
        docs = render("gateway-postgres", sets=(
            f"server.upstream.url=http://{upstream}", f"server.upstream.bucketPrefix={prefix}",
            f"server.iamStore.url={pg.url}", "server.iamStore.passwordSecret=", "server.iamStore.caBundleConfigMap=",
            "server.tls.enabled=false", "server.replicas=2"))
        deployment = find(docs, "Deployment", "keyless")
        assert deployment["spec"]["replicas"] == 2
        # What the operator creates beside the chart: Keyless's key pair at the upstream.
        upstream_secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "keyless-upstream", "namespace": NAMESPACE},
                           "stringData": {"access-key-id": moto_upstream.ACCESS_KEY,
                                          "secret-access-key": moto_upstream.SECRET_KEY}}
        kubelet = Kubelet(cluster.net, cluster.api, [*docs, upstream_secret], str(tmp_path))
        try:
            replicas = [kubelet.start(pod_of(deployment, name), "keyless", name, NAMESPACE,
                                      ready=("$(POD_IP)", 9090, "/readyz"))
                        for name in ("keyless-7d4f9-a", "keyless-7d4f9-b")]
            secret = find(docs, "Secret", "keyless-secrets")["data"]
            root = {"aws_access_key_id": base64.b64decode(secret["root-access-key-id"]).decode(),
                    "aws_secret_access_key": base64.b64decode(secret["root-secret-access-key"]).decode()}

            def client(service, replica, **keys):
                return boto3.session.Session().client(service, endpoint_url=f"http://{replica.ip}:9000",
                                                      region_name="us-east-1", **(keys or root))

            iam = client("iam", replicas[0])
            iam.create_user(UserName="ci")
            iam.put_user_policy(UserName="ci", PolicyName="s3", PolicyDocument=json.dumps(
                {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}))
            key = iam.create_access_key(UserName="ci")["AccessKey"]
            client("s3", replicas[0]).create_bucket(Bucket="artifacts")
            user = {"aws_access_key_id": key["AccessKeyId"], "aws_secret_access_key": key["SecretAccessKey"]}
            deadline = time.monotonic() + 10
            while True:
                try:
                    client("s3", replicas[1], **user).put_object(Bucket="artifacts", Key="job/1.log", Body=b"log")
                    break
                except Exception:
                    assert time.monotonic() < deadline, "\n".join(r.logs() for r in replicas)
                    time.sleep(0.2)
            direct = moto_upstream.client().get_object(Bucket=f"{prefix}artifacts", Key="job/1.log")
            assert direct["Body"].read() == b"log"
        finally:
            kubelet.close()
    finally:
        pg.destroy()


def test_the_agent_removes_its_rules_when_stopped(cluster):
    """Last: SIGTERM to the agent, as the kubelet stops it, takes its DNAT rules out."""
    assert cluster.agent.stop() == 0, cluster.agent.logs()
    rules = iptables_rules()
    assert f"{cluster.net.gateway}:8181" not in rules, rules


# ---------------------------------------------------------------------------------------------
# Every value set: each rendered container starts and answers /healthz, then stops cleanly on
# SIGTERM. This is what catches a flag renamed in the binary but not in the chart, on every
# path the value sets take (TLS files, CA bundles, password files, cert-manager's Secrets).


def tls_secret(name: str, names: list[str]) -> dict:
    """A `kubernetes.io/tls` Secret as cert-manager writes it (with `ca.crt`)."""
    from kubelet import make_ca_and_cert

    ca, cert, key = make_ca_and_cert(names, [])
    return {"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
            "metadata": {"name": name, "namespace": NAMESPACE},
            "stringData": {"tls.crt": cert, "tls.key": key, "ca.crt": ca}}


def operator_objects(moto) -> list[dict]:
    """What an operator creates beside the chart for the value sets of charts/keyless/ci."""
    from kubelet import make_ca_and_cert

    def secret(name, **data):
        return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": NAMESPACE},
                "stringData": data}

    def config_map(name, **data):
        return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": NAMESPACE},
                "data": data}

    service = ["keyless", "keyless.keyless", "keyless.keyless.svc", "keyless.keyless.svc.cluster.local"]
    return [
        secret("ci-user", **{"secret-access-key": "ci-user-secret-ci-user-secret-ci-user-s"}),
        secret("keyless-upstream", **{"access-key-id": moto.ACCESS_KEY, "secret-access-key": moto.SECRET_KEY}),
        secret("keyless-postgres", password="not-needed-over-the-socket"),
        config_map("postgres-ca", **{"ca.crt": make_ca_and_cert(["postgres.db.svc"], [])[0]}),
        config_map("keyless-ca", **{"ca.crt": make_ca_and_cert(["keyless"], [])[0]}),
        secret("keyless-agent", credentials="[default]\naws_access_key_id = AKIAAGENT00000000001\n"
                                            "aws_secret_access_key = agent-secret-agent-secret-agent-secret1\n"),
        tls_secret("keyless-tls", service),
        tls_secret("keyless-webhook-tls", [f"keyless-webhook{s}" for s in ("", ".keyless", ".keyless.svc")]),
    ]


@pytest.mark.parametrize("name", VALUE_SETS)
def test_every_value_set_starts_every_container(cluster, moto_upstream, tmp_path, name):
    from test_replicas import Postgres

    sets: tuple[str, ...] = ()
    pg = None
    if name == "gateway-postgres":
        # This machine's moto and PostgreSQL (a Unix socket) for the cluster's own.
        pg = Postgres(tmp_path)
        os.chmod(open(tmp_path / "pg" / "cluster").read().strip(), 0o755)
        sets = (f"server.upstream.url=http://{cluster.net.expose(moto_upstream.port)}",
                f"server.iamStore.url={pg.url}")
    docs = render(name, sets=sets)
    # One agent per node: the module's is done by now (and its ports free).
    cluster.agent.stop()
    kubelet = Kubelet(cluster.net, cluster.api, [*docs, *operator_objects(moto_upstream)], str(tmp_path))
    started = []
    try:
        for kind in ("StatefulSet", "Deployment", "DaemonSet"):
            for workload in (d for d in docs if d["kind"] == kind):
                for c in workload["spec"]["template"]["spec"]["containers"]:
                    admin = next(a for a in c["args"] if a.startswith("--admin-listen=")).split("=", 1)[1]
                    host, port = admin.rsplit(":", 1)
                    pod = f"{name}-{c['name']}"[:40]
                    started.append(kubelet.start(pod_of(workload, pod), c["name"], pod, NAMESPACE,
                                                 ready=("$(POD_IP)" if host == "0.0.0.0" else host, int(port), "/healthz")))
        assert started, f"{name} renders no container"
        for running in started:
            assert running.stop() == 0, running.logs()
    finally:
        kubelet.close()
        if pg:
            pg.destroy()
