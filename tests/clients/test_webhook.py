"""`keyless webhook`, the pod-identity admission webhook, driven as a Kubernetes API server drives
it: `admission.k8s.io/v1` AdmissionReviews POSTed over HTTPS (a private CA made here with
`cryptography`, HTTP/1.1 keep-alive, `requests` verifying against that CA) for GitLab-shaped
pods as they reach a mutating webhook (defaults filled in, the `kube-api-access-*` volume of
the ServiceAccount admission plugin already added), with a service-accounts file as
`kubectl get serviceaccounts,namespaces -A -o json` prints it.

Each returned JSON Patch is applied with the PyPI `jsonpatch` library to the pod as posted;
the result must be the pod plus exactly what the webhook is meant to add (fields unknown to
older Kubernetes releases kept: a native sidecar's `restartPolicy: Always`, `resizePolicy`,
1.34's `restartPolicyRules`, and a field no release has), and must pass `kubernetes-validate
--strict` for 1.30 and 1.34. Then the mutated spec runs: a real `keyless serve` as STS and S3,
its own issuer's token (`keyless token`) written where the projected volume would put it, and
awscli and boto3 in a network-namespace pod (`pods.py`) with exactly the environment the patch
gave the container (plus PATH and HOME), as root for GitLab's webservice and as uid 1000 for
a registry pod that runs as 1000 without an fsGroup (the token owned as a kubelet since 1.19
owns it).

The HTTP-level tests need only the binary; the pod runs need root, iproute2, nftables,
util-linux (`unshare`, `setpriv`) and awscli.
"""

from __future__ import annotations

import base64
import copy
import datetime
import http.client
import importlib.metadata
import ipaddress
import json
import os
import re
import shutil
import signal
import ssl
import subprocess
import sys
import time
import uuid

import boto3
import jsonpatch
import kubernetes_validate
import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from pods import pod_net_fixture, pod_network_fixture  # noqa: F401 (fixtures)
from test_agent import CLIENT_TIMEOUT, STARTUP, KeylessServer, need, read_log, stop, wait_for_line, write
from test_serve_network import token as keyless_token
from test_serve_sts import bucket_rw, trust

ACCOUNT = "000000000000"
NAMESPACE = "gitlab"
ROLE_ARNS = {  # service account -> the role its `eks.amazonaws.com/role-arn` names
    "gitlab-webservice": f"arn:aws:iam::{ACCOUNT}:role/gitlab-webservice",
    "gitlab-sidekiq": f"arn:aws:iam::{ACCOUNT}:role/gitlab-webservice",
    "gitlab-registry": f"arn:aws:iam::{ACCOUNT}:role/gitlab-registry-irsa",
}
BUCKETS = {"gitlab-webservice": "uploads", "gitlab-registry-irsa": "registry"}  # role -> its bucket
TOKEN_DIR = "/var/run/secrets/eks.amazonaws.com/serviceaccount"
TOKEN_FILE = f"{TOKEN_DIR}/token"
POD_IDENTITY_DIR = "/var/run/secrets/pods.eks.amazonaws.com/serviceaccount"
CA_DIR = "/var/run/secrets/keyless.dev/ca"
REGION = "us-east-1"
LOAD_DEADLINE = 3.0  # seconds: the file is re-read "within about 1 s"; slack for a busy machine
# Schemas: 1.30 (oldest supported here) and 1.34 (the first that knows `restartPolicyRules`).
OLD_K8S, NEW_K8S = "1.30.0", "1.34.0"
FUTURE_FIELD = "keylessTestFutureField"  # a container field no Kubernetes release has


# ---------------------------------------------------------------------------------------------
# TLS: a private CA and a serving certificate for 127.0.0.1, as cert-manager would issue


class Tls:
    def __init__(self, directory):
        now = datetime.datetime.now(datetime.timezone.utc)
        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "keyless webhook test CA")])
        ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
              .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
              .not_valid_before(now - datetime.timedelta(hours=1))
              .not_valid_after(now + datetime.timedelta(days=2))
              .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
              .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                           content_commitment=False, key_encipherment=False,
                                           data_encipherment=False, key_agreement=False,
                                           encipher_only=False, decipher_only=False), critical=True)
              .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
              .sign(ca_key, hashes.SHA256()))
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (x509.CertificateBuilder()
                .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "keyless-webhook.keyless.svc")]))
                .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(now - datetime.timedelta(hours=1))
                .not_valid_after(now + datetime.timedelta(days=1))
                .add_extension(x509.SubjectAlternativeName([
                    x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                    x509.DNSName("keyless-webhook.keyless.svc")]), critical=False)
                .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
                .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                               critical=False)
                .sign(ca_key, hashes.SHA256()))
        os.makedirs(directory, exist_ok=True)
        self.ca = os.path.join(directory, "ca.crt")
        self.cert = os.path.join(directory, "tls.crt")
        self.key = os.path.join(directory, "tls.key")
        self.ca_pem = ca.public_bytes(serialization.Encoding.PEM)
        with open(self.ca, "wb") as f:
            f.write(self.ca_pem)
        with open(self.cert, "wb") as f:
            f.write(cert.public_bytes(serialization.Encoding.PEM))
        with open(os.open(self.key, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb") as f:
            f.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption()))


@pytest.fixture(scope="module")
def tls(tmp_path_factory):
    return Tls(str(tmp_path_factory.mktemp("webhook-tls")))


# ---------------------------------------------------------------------------------------------
# The service-accounts file, the webhook, AdmissionReviews


class ServiceAccountsFile:
    """`kubectl get serviceaccounts,namespaces -A -o json`: a List of ServiceAccounts and
    Namespaces. `write` replaces it atomically (written aside, renamed), `write_in_place`
    truncates and rewrites it, as a shell redirection does."""

    def __init__(self, path):
        self.path = path
        self.items: dict[tuple[str, str, str], dict] = {}

    def namespace(self, name, annotations=None):
        self.items[("Namespace", "", name)] = {
            "apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": name, "uid": str(uuid.uuid4()), "resourceVersion": "1",
                         "labels": {"kubernetes.io/metadata.name": name},
                         "annotations": annotations or {}},
            "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active"},
        }

    def account(self, namespace, name, role_arn=None, annotations=None):
        if ("Namespace", "", namespace) not in self.items:
            self.namespace(namespace)
        annotations = dict(annotations or {})
        if role_arn:
            annotations["eks.amazonaws.com/role-arn"] = role_arn
        meta = {"name": name, "namespace": namespace, "uid": str(uuid.uuid4()), "resourceVersion": "1",
                "labels": {"app.kubernetes.io/managed-by": "Helm"}}
        if annotations:
            meta["annotations"] = annotations
        self.items[("ServiceAccount", namespace, name)] = {"apiVersion": "v1", "kind": "ServiceAccount",
                                                           "metadata": meta}

    def annotations(self, namespace, name) -> dict:
        return self.items[("ServiceAccount", namespace, name)]["metadata"].setdefault("annotations", {})

    def _text(self) -> str:
        return json.dumps({"apiVersion": "v1", "kind": "List", "metadata": {"resourceVersion": ""},
                           "items": list(self.items.values())}, indent=4)

    def write(self):
        aside = f"{self.path}.tmp"
        with open(aside, "w") as f:
            f.write(self._text())
        os.replace(aside, self.path)

    def write_in_place(self):
        with open(self.path, "w") as f:
            f.write(self._text())


def gitlab_accounts(path) -> ServiceAccountsFile:
    """GitLab's namespace: webservice, sidekiq and registry with roles, gitaly and default without."""
    sa = ServiceAccountsFile(path)
    sa.namespace("default")
    sa.namespace("kube-system")
    sa.namespace(NAMESPACE, {"meta.helm.sh/release-name": "gitlab"})
    for name, arn in ROLE_ARNS.items():
        sa.account(NAMESPACE, name, arn)
    sa.account(NAMESPACE, "gitlab-gitaly")
    sa.account(NAMESPACE, "default")
    sa.account(NAMESPACE, "gitlab-toolbox", annotations={"eks.amazonaws.com/role-arn": ROLE_ARNS["gitlab-webservice"]})
    sa.account("default", "default")
    # The same name in another namespace, without a role: a pod there must not get gitlab's.
    sa.account("ci", "gitlab-webservice")
    sa.write()
    return sa


def admission_review(pod, namespace=NAMESPACE, uid=None) -> dict:
    """An AdmissionReview as kube-apiserver sends it for a pod a ReplicaSet creates."""
    return {
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {
            "uid": uid or str(uuid.uuid4()),
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "requestKind": {"group": "", "version": "v1", "kind": "Pod"},
            "requestResource": {"group": "", "version": "v1", "resource": "pods"},
            "name": pod["metadata"].get("name", ""),
            "namespace": namespace,
            "operation": "CREATE",
            "userInfo": {"username": "system:serviceaccount:kube-system:replicaset-controller",
                         "uid": str(uuid.uuid4()),
                         "groups": ["system:serviceaccounts", "system:serviceaccounts:kube-system",
                                    "system:authenticated"]},
            "object": pod,
            "oldObject": None,
            "dryRun": False,
            "options": {"apiVersion": "meta.k8s.io/v1", "kind": "CreateOptions"},
        },
    }


def patch_of(response: dict) -> list:
    """The JSON Patch of an AdmissionResponse ([] when it has none)."""
    if "patch" not in response or response["patch"] in (None, ""):
        return []
    assert response.get("patchType") == "JSONPatch", response
    ops = json.loads(base64.b64decode(response["patch"]))
    assert isinstance(ops, list), ops
    return ops


class Webhook:
    """`keyless webhook` on 127.0.0.1:0 with the given TLS files and service-accounts file;
    logs in files; one keep-alive `requests` session that verifies against the test CA."""

    def __init__(self, keyless_bin, workdir, tls, accounts_file, *extra, env=None):
        os.makedirs(workdir, exist_ok=True)
        self.tls = tls
        self.out, self.log = os.path.join(workdir, "webhook.out"), os.path.join(workdir, "webhook.log")
        self.argv = [keyless_bin, "webhook", "--listen", "127.0.0.1:0", "--tls-cert", tls.cert,
                     "--tls-key", tls.key, "--service-accounts-file", accounts_file,
                     "--admin-listen", "127.0.0.1:0", *extra]
        run_env = {**{k: v for k, v in os.environ.items() if not k.startswith("AWS_")}, "RUST_LOG": "info"}
        run_env.update(env or {})
        with open(self.out, "w") as out, open(self.log, "w") as err:
            self.proc = subprocess.Popen(self.argv, stdout=out, stderr=err, stdin=subprocess.DEVNULL,
                                         env=run_env)
        try:
            m = wait_for_line(self.out, r"keyless: webhook (https://(127\.0\.0\.1):(\d+)/mutate)\n",
                              self.proc, "keyless webhook")
            self.url, self.port = m.group(1), int(m.group(3))
            m = wait_for_line(self.out, r"keyless: admin (http://127\.0\.0\.1:\d+) \(/healthz, /readyz, /metrics\)\n",
                              self.proc, "keyless webhook")
            self.admin = m.group(1)
        except AssertionError as e:
            self.stop()
            raise AssertionError(f"{e}\n{self.logs()}") from None
        self.session = requests.Session()

    def logs(self) -> str:
        return (f"--- keyless webhook stdout ---\n{read_log(self.out)}\n"
                f"--- keyless webhook log (tail) ---\n{read_log(self.log)}")

    def loads(self) -> int:
        """How many times the webhook has loaded the service-accounts file."""
        return read_log(self.log, tail=0).count("service accounts file loaded")

    def wait_loads(self, more_than: int, what: str) -> float:
        """Waits until the file was loaded more than `more_than` times; returns the seconds it took."""
        started = time.monotonic()
        while self.loads() <= more_than:
            waited = time.monotonic() - started
            assert waited < LOAD_DEADLINE, \
                f"the webhook did not re-read the service-accounts file within {LOAD_DEADLINE} s ({what})\n{self.logs()}"
            time.sleep(0.05)
        return time.monotonic() - started

    def post(self, body, content_type="application/json", **kwargs) -> requests.Response:
        headers = {"Content-Type": content_type} if content_type else {}
        data = body if isinstance(body, (bytes, str)) else json.dumps(body)
        # verify= on each request: a session's own is overridden by REQUESTS_CA_BUNDLE (requests#3829).
        return self.session.post(self.url, data=data, headers=headers, timeout=10, verify=self.tls.ca, **kwargs)

    def review(self, pod, namespace=NAMESPACE, uid=None) -> tuple[dict, list]:
        """POSTs the pod's AdmissionReview; returns the response (checked) and its patch."""
        review = admission_review(pod, namespace, uid)
        r = self.post(review)
        assert r.status_code == 200, f"{r.status_code} {r.text}\n{self.logs()}"
        assert r.headers.get("Content-Type", "").startswith("application/json"), r.headers
        answer = r.json()
        assert answer.get("apiVersion") == "admission.k8s.io/v1", answer
        assert answer.get("kind") == "AdmissionReview", answer
        response = answer["response"]
        assert response["uid"] == review["request"]["uid"], (response, review["request"]["uid"])
        assert response["allowed"] is True, response
        return response, patch_of(response)

    def mutate(self, pod, namespace=NAMESPACE) -> tuple[dict, list, dict]:
        """The pod as the API server stores it after this webhook: the patch applied with jsonpatch."""
        response, ops = self.review(pod, namespace)
        mutated = jsonpatch.apply_patch(copy.deepcopy(pod), ops) if ops else copy.deepcopy(pod)
        return mutated, ops, response

    def stop(self):
        if getattr(self, "session", None):
            self.session.close()
        stop(self.proc)


@pytest.fixture
def accounts(tmp_path):
    return gitlab_accounts(str(tmp_path / "serviceaccounts.json"))


@pytest.fixture
def start_webhook(keyless_bin, tls, accounts, tmp_path):
    started = []

    def start(*extra, accounts_file=None, env=None):
        hook = Webhook(keyless_bin, str(tmp_path / f"webhook{len(started)}"), tls,
                       accounts_file or accounts.path, *extra, env=env)
        started.append(hook)
        return hook

    yield start
    for hook in started:
        hook.stop()


ENDPOINT = "http://10.96.12.34:9000"  # a Service's address, for the HTTP-level tests
IRSA_FLAGS = ("--sts-endpoint", ENDPOINT, "--s3-endpoint", ENDPOINT, "--region", REGION)


# ---------------------------------------------------------------------------------------------
# GitLab-shaped pods, as they reach a mutating webhook


def kube_api_access():
    """The volume and mount the ServiceAccount admission plugin adds before webhooks run."""
    name = "kube-api-access-" + uuid.uuid4().hex[:5]
    volume = {"name": name, "projected": {"defaultMode": 420, "sources": [
        {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
        {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
        {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"apiVersion": "v1",
                                                                     "fieldPath": "metadata.namespace"}}]}}]}}
    mount = {"name": name, "readOnly": True, "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount"}
    return volume, mount


DEFAULTS = {"terminationMessagePath": "/dev/termination-log", "terminationMessagePolicy": "File",
            "imagePullPolicy": "IfNotPresent"}
POD_DEFAULTS = {
    "restartPolicy": "Always", "dnsPolicy": "ClusterFirst", "schedulerName": "default-scheduler",
    "terminationGracePeriodSeconds": 30, "enableServiceLinks": True,
    "preemptionPolicy": "PreemptLowerPriority", "priority": 0,
    "tolerations": [
        {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
        {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}],
}
CNG = "registry.gitlab.com/gitlab-org/build/cng"


def certificates_init(api_mount):
    return {"name": "certificates", "image": f"{CNG}/certificates:v18.6.1",
            "env": [{"name": "MALLOC_CONF", "value": "dirty_decay_ms:0,muzzy_decay_ms:0"}],
            "resources": {"requests": {"cpu": "50m"}},
            "volumeMounts": [{"name": "etc-ssl-certs", "mountPath": "/etc/ssl/certs"},
                             {"name": "custom-ca-certificates", "mountPath": "/usr/local/share/ca-certificates",
                              "readOnly": True}, api_mount],
            **DEFAULTS}


def webservice_pod() -> dict:
    """GitLab's webservice Deployment's pod (chart 9.x), trimmed: init containers `certificates`
    and `configure`, a native sidecar `log-shipper` (`restartPolicy: Always`), containers
    `webservice` (with `resizePolicy`) and `gitlab-workhorse` (with 1.34's `restartPolicyRules`
    and a field no release has). Runs as the image's user (root here) with fsGroup 1000."""
    api_volume, api_mount = kube_api_access()
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {
            "generateName": "gitlab-webservice-default-6b8f9c7d5-", "namespace": NAMESPACE,
            "labels": {"app": "webservice", "release": "gitlab", "gitlab.com/webservice-name": "default",
                       "pod-template-hash": "6b8f9c7d5"},
            "annotations": {"checksum/config": "3f9a" * 16, "gitlab.com/prometheus_scrape": "true",
                            "gitlab.com/prometheus_port": "8083"},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "controller": True,
                                 "blockOwnerDeletion": True, "name": "gitlab-webservice-default-6b8f9c7d5",
                                 "uid": str(uuid.uuid4())}],
        },
        "spec": {
            "serviceAccountName": "gitlab-webservice", "serviceAccount": "gitlab-webservice",
            "securityContext": {"fsGroup": 1000, "fsGroupChangePolicy": "OnRootMismatch",
                                "seccompProfile": {"type": "RuntimeDefault"}},
            "initContainers": [
                certificates_init(api_mount),
                {"name": "configure", "image": "registry.gitlab.com/gitlab-org/cloud-native/mirror/images/busybox:latest",
                 "command": ["sh"],
                 "args": ["-c", "sh -x /config-webservice/configure ; sh -x /config-workhorse/configure ; "
                                "mkdir -p -m 3770 /tmp/gitlab"],
                 "resources": {"requests": {"cpu": "50m"}},
                 "volumeMounts": [{"name": "webservice-config", "mountPath": "/config-webservice", "readOnly": True},
                                  {"name": "workhorse-config", "mountPath": "/config-workhorse", "readOnly": True},
                                  {"name": "shared-tmp", "mountPath": "/tmp"}, api_mount],
                 **DEFAULTS},
                {"name": "log-shipper", "image": "cr.fluentbit.io/fluent/fluent-bit:3.2.4", "restartPolicy": "Always",
                 "args": ["--config=/fluent-bit/etc/fluent-bit.yaml"],
                 "startupProbe": {"httpGet": {"path": "/api/v1/health", "port": 2020, "scheme": "HTTP"},
                                  "periodSeconds": 2, "failureThreshold": 30, "timeoutSeconds": 1,
                                  "successThreshold": 1},
                 "volumeMounts": [{"name": "shared-tmp", "mountPath": "/var/log/gitlab", "readOnly": True}, api_mount],
                 **DEFAULTS},
            ],
            "containers": [
                {"name": "webservice", "image": f"{CNG}/gitlab-webservice-ee:v18.6.1",
                 "ports": [{"containerPort": 8080, "name": "http-webservice", "protocol": "TCP"},
                           {"containerPort": 8083, "name": "http-metrics-ws", "protocol": "TCP"}],
                 "env": [{"name": "GITLAB_WEBSERVER", "value": "puma"},
                         {"name": "TMPDIR", "value": "/tmp/gitlab"},
                         {"name": "GITLAB_SHELL_SECRET_FILE", "value": "/etc/gitlab/shell/.gitlab_shell_secret"},
                         {"name": "CONFIG_TEMPLATE_DIRECTORY", "value": "/var/opt/gitlab/templates"},
                         {"name": "CONFIG_DIRECTORY", "value": "/srv/gitlab/config"},
                         {"name": "prometheus_multiproc_dir", "value": "/metrics"},
                         {"name": "WORKER_PROCESSES", "value": "2"},
                         {"name": "INTERNAL_PORT", "value": "8080"}],
                 "resources": {"requests": {"cpu": "300m", "memory": "2.5G"}},
                 "resizePolicy": [{"resourceName": "cpu", "restartPolicy": "NotRequired"},
                                  {"resourceName": "memory", "restartPolicy": "RestartContainer"}],
                 "livenessProbe": {"httpGet": {"path": "/-/liveness", "port": 8080, "scheme": "HTTP"},
                                   "initialDelaySeconds": 20, "periodSeconds": 60, "timeoutSeconds": 30,
                                   "successThreshold": 1, "failureThreshold": 3},
                 "readinessProbe": {"httpGet": {"path": "/-/readiness", "port": 8080, "scheme": "HTTP"},
                                    "periodSeconds": 10, "timeoutSeconds": 2, "successThreshold": 1,
                                    "failureThreshold": 3},
                 "lifecycle": {"preStop": {"exec": {"command": ["/bin/bash", "-c", "pkill -SIGINT -o ruby"]}}},
                 "volumeMounts": [{"name": "webservice-metrics", "mountPath": "/metrics"},
                                  {"name": "webservice-config", "mountPath": "/var/opt/gitlab/templates"},
                                  {"name": "webservice-secrets", "mountPath": "/etc/gitlab", "readOnly": True},
                                  {"name": "etc-ssl-certs", "mountPath": "/etc/ssl/certs/", "readOnly": True},
                                  {"name": "shared-tmp", "mountPath": "/tmp"}, api_mount],
                 **DEFAULTS},
                {"name": "gitlab-workhorse", "image": f"{CNG}/gitlab-workhorse-ee:v18.6.1",
                 "ports": [{"containerPort": 8181, "name": "http-workhorse", "protocol": "TCP"}],
                 "env": [{"name": "TMPDIR", "value": "/tmp/gitlab"},
                         {"name": "GITLAB_WORKHORSE_AUTH_BACKEND", "value": "http://localhost:8080"},
                         {"name": "GITLAB_WORKHORSE_EXTRA_ARGS", "value": ""},
                         {"name": "GITLAB_WORKHORSE_LISTEN_PORT", "value": "8181"},
                         {"name": "CONFIG_TEMPLATE_DIRECTORY", "value": "/var/opt/gitlab/templates"},
                         {"name": "CONFIG_DIRECTORY", "value": "/srv/gitlab/config"}],
                 "restartPolicy": "Never",
                 "restartPolicyRules": [{"action": "Restart", "exitCodes": {"operator": "In", "values": [42]}}],
                 FUTURE_FIELD: {"reason": "a field of a Kubernetes release after this webhook was built"},
                 "resources": {"requests": {"cpu": "100m", "memory": "100M"}},
                 "livenessProbe": {"exec": {"command": ["/scripts/healthcheck"]}, "initialDelaySeconds": 20,
                                   "periodSeconds": 60, "timeoutSeconds": 30, "successThreshold": 1,
                                   "failureThreshold": 3},
                 "volumeMounts": [{"name": "workhorse-config", "mountPath": "/var/opt/gitlab/templates"},
                                  {"name": "workhorse-secrets", "mountPath": "/etc/gitlab", "readOnly": True},
                                  {"name": "shared-tmp", "mountPath": "/tmp"}, api_mount],
                 **DEFAULTS},
            ],
            "volumes": [
                {"name": "shared-tmp", "emptyDir": {}},
                {"name": "webservice-metrics", "emptyDir": {"medium": "Memory"}},
                {"name": "webservice-config", "configMap": {"name": "gitlab-webservice", "defaultMode": 420}},
                {"name": "workhorse-config", "configMap": {"name": "gitlab-workhorse-default", "defaultMode": 420}},
                {"name": "webservice-secrets", "projected": {"defaultMode": 256, "sources": [
                    {"secret": {"name": "gitlab-rails-secret", "items": [{"key": "secrets.yml", "path": "rails-secrets/secrets.yml"}]}},
                    {"secret": {"name": "gitlab-gitlab-shell-secret", "items": [{"key": "secret", "path": "shell/.gitlab_shell_secret"}]}}]}},
                {"name": "workhorse-secrets", "projected": {"defaultMode": 256, "sources": [
                    {"secret": {"name": "gitlab-gitlab-workhorse-secret", "items": [{"key": "shared_secret", "path": "gitlab-workhorse/secret"}]}}]}},
                {"name": "etc-ssl-certs", "emptyDir": {"medium": "Memory"}},
                {"name": "custom-ca-certificates", "projected": {"defaultMode": 288, "sources": [
                    {"secret": {"name": "gitlab-wildcard-tls-ca"}}]}},
                api_volume,
            ],
            **POD_DEFAULTS,
        },
    }


def registry_pod() -> dict:
    """GitLab's registry pod, running as user 1000 (the chart's `securityContext.runAsUser`)
    but with the chart's `fsGroup: 1000` dropped, as values overriding `securityContext` do."""
    api_volume, api_mount = kube_api_access()
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"generateName": "gitlab-registry-5f7c9d8b4-", "namespace": NAMESPACE,
                     "labels": {"app": "registry", "release": "gitlab", "pod-template-hash": "5f7c9d8b4"}},
        "spec": {
            "serviceAccountName": "gitlab-registry", "serviceAccount": "gitlab-registry",
            "securityContext": {"runAsUser": 1000},
            "initContainers": [
                certificates_init(api_mount),
                {"name": "configure", "image": "registry.gitlab.com/gitlab-org/cloud-native/mirror/images/busybox:latest",
                 "command": ["sh", "/config/configure"],
                 "volumeMounts": [{"name": "registry-secrets", "mountPath": "/config"},
                                  {"name": "registry-server-config", "mountPath": "/registry"}, api_mount],
                 **DEFAULTS},
            ],
            "containers": [
                {"name": "registry", "image": f"{CNG}/gitlab-container-registry:v4.14.0-gitlab",
                 "ports": [{"containerPort": 5000, "name": "http", "protocol": "TCP"},
                           {"containerPort": 5001, "name": "http-metrics", "protocol": "TCP"}],
                 "env": [{"name": "REGISTRY_CONFIGURATION_PATH", "value": "/etc/docker/registry/config.yml"}],
                 "readinessProbe": {"httpGet": {"path": "/debug/health", "port": 5001, "scheme": "HTTP"},
                                    "periodSeconds": 5, "timeoutSeconds": 1, "successThreshold": 1,
                                    "failureThreshold": 3},
                 "volumeMounts": [{"name": "registry-server-config", "mountPath": "/etc/docker/registry/",
                                   "readOnly": True},
                                  {"name": "etc-ssl-certs", "mountPath": "/etc/ssl/certs/", "readOnly": True},
                                  api_mount],
                 **DEFAULTS},
            ],
            "volumes": [
                {"name": "registry-server-config", "emptyDir": {"medium": "Memory"}},
                {"name": "registry-secrets", "projected": {"sources": [{"configMap": {"name": "gitlab-registry"}}]}},
                {"name": "etc-ssl-certs", "emptyDir": {"medium": "Memory"}},
                {"name": "custom-ca-certificates", "projected": {"defaultMode": 288, "sources": [
                    {"secret": {"name": "gitlab-wildcard-tls-ca"}}]}},
                api_volume,
            ],
            **POD_DEFAULTS,
        },
    }


def containers(pod):
    spec = pod["spec"]
    return [*spec.get("initContainers", []), *spec.get("containers", [])]


def container(pod, name):
    return next(c for c in containers(pod) if c["name"] == name)


def irsa_env(role_arn, endpoint=ENDPOINT, region=REGION) -> dict:
    env = {"AWS_ROLE_ARN": role_arn, "AWS_WEB_IDENTITY_TOKEN_FILE": TOKEN_FILE}
    if endpoint:
        env.update(AWS_ENDPOINT_URL_STS=endpoint, AWS_ENDPOINT_URL_S3=endpoint)
    if region:
        env.update(AWS_REGION=region, AWS_DEFAULT_REGION=region)
    return env


IRSA_MOUNT = {"name": "aws-iam-token", "readOnly": True, "mountPath": TOKEN_DIR}
IRSA_VOLUME = {"name": "aws-iam-token", "projected": {"sources": [
    {"serviceAccountToken": {"audience": "sts.amazonaws.com", "expirationSeconds": 86400, "path": "token"}}]}}


def assert_mutated(original, mutated, env, mounts, volumes, security_context=None):
    """`mutated` is `original` plus, in every container (init containers and native sidecars
    too), `env` appended after its own env and `mounts` after its own mounts; `volumes` after
    the pod's own; `security_context` merged into the pod's; and nothing else."""
    expected, got = copy.deepcopy(original), copy.deepcopy(mutated)
    for kind in ("initContainers", "containers"):
        mine, theirs = expected["spec"].get(kind, []), got["spec"].get(kind, [])
        assert [c["name"] for c in theirs] == [c["name"] for c in mine], f"{kind} changed: {theirs}"
        for want, have in zip(mine, theirs):
            where = f"{kind} {want['name']}"
            for field, extra in (("env", [{"name": k, "value": v} for k, v in env.items()]),
                                 ("volumeMounts", mounts)):
                own, now = want.get(field, []), have.get(field, [])
                assert now[:len(own)] == own, f"{where}: its own {field} changed or moved:\n{now}"
                added = now[len(own):]
                key = (lambda e: e["name"]) if field == "env" else (lambda m: m["mountPath"])
                assert sorted(added, key=key) == sorted(extra, key=key), \
                    f"{where}: {field} added {added}, expected {extra}"
                want[field] = now
    own = expected["spec"].get("volumes", [])
    now = got["spec"].get("volumes", [])
    assert now[:len(own)] == own, f"the pod's own volumes changed or moved:\n{now}"
    assert sorted(now[len(own):], key=lambda v: v["name"]) == sorted(volumes, key=lambda v: v["name"]), \
        f"volumes added {now[len(own):]}, expected {volumes}"
    expected["spec"]["volumes"] = now
    if security_context:
        expected["spec"].setdefault("securityContext", {}).update(security_context)
    assert got == expected, "the patch changed more than it should:\n" + "\n".join(
        f"{op}" for op in jsonpatch.make_patch(expected, got))


def assert_granular(ops):
    """Additions only, never a whole container array rewritten (which loses fields the
    webhook's types do not know: aws/amazon-eks-pod-identity-webhook#84, #208)."""
    for op in ops:
        assert op["op"] == "add", f"the patch {op['op']}s: {op}"
        assert op["path"] not in ("/spec/containers", "/spec/initContainers"), \
            f"the patch rewrites a whole container array: {op['path']}"


def validate(pod, version, strip=()):
    """kubernetes-validate --strict for `version`, on a copy without the container fields in
    `strip` (fields the schema of that version does not know)."""
    pod = copy.deepcopy(pod)
    for c in containers(pod):
        for field in strip:
            c.pop(field, None)
    try:
        kubernetes_validate.validate(pod, version, strict=True)
    except kubernetes_validate.ValidationError as e:
        raise AssertionError(f"kubernetes-validate --strict -k {version}: {e}") from None


def validate_both(pod):
    """Strict for 1.34 (without the field no release has) and for 1.30 (also without the
    fields 1.34 brought: a regular container's restartPolicy and restartPolicyRules)."""
    validate(pod, NEW_K8S, strip=(FUTURE_FIELD,))
    stripped = copy.deepcopy(pod)
    for c in stripped["spec"]["containers"]:
        if "restartPolicyRules" in c:
            c.pop("restartPolicy", None)
    validate(stripped, OLD_K8S, strip=(FUTURE_FIELD, "restartPolicyRules"))


# ---------------------------------------------------------------------------------------------
# 1. Over HTTPS, as the API server calls it


def test_banner_health_and_keep_alive_over_tls(start_webhook, tls):
    hook = start_webhook(*IRSA_FLAGS)
    assert hook.url.startswith("https://127.0.0.1:") and hook.port > 0
    for path in ("/healthz", "/readyz"):
        r = requests.get(hook.admin + path, timeout=5)
        assert r.status_code == 200, f"{path}: {r.status_code} {r.text}\n{hook.logs()}"
    # The certificate is checked against the CA, as the API server checks it with caBundle.
    with pytest.raises(requests.exceptions.SSLError):
        requests.post(hook.url, json={}, timeout=5, verify=True)
    # HTTP/1.1 keep-alive: several reviews on one TLS connection.
    context = ssl.create_default_context(cafile=tls.ca)
    conn = http.client.HTTPSConnection("127.0.0.1", hook.port, context=context, timeout=10)
    try:
        conn.connect()
        sock = conn.sock
        for _ in range(5):
            review = admission_review(webservice_pod())
            conn.request("POST", "/mutate", body=json.dumps(review),
                         headers={"Content-Type": "application/json"})
            r = conn.getresponse()
            body = r.read()
            assert r.status == 200, body
            assert r.version == 11, r.version
            assert (r.getheader("Connection") or "").lower() != "close", r.getheaders()
            assert json.loads(body)["response"]["uid"] == review["request"]["uid"]
            assert conn.sock is sock, "the webhook closed the keep-alive connection"
    finally:
        conn.close()


def test_gitlab_webservice_pod_gets_web_identity_and_keeps_every_field(start_webhook):
    hook = start_webhook(*IRSA_FLAGS)
    pod = webservice_pod()
    mutated, ops, response = hook.mutate(pod)
    assert ops, f"the webservice pod got no patch\n{hook.logs()}"
    assert_granular(ops)
    assert_mutated(pod, mutated, irsa_env(ROLE_ARNS["gitlab-webservice"]), [IRSA_MOUNT], [IRSA_VOLUME])
    # Fields older typed clients drop: all still there.
    assert container(mutated, "log-shipper")["restartPolicy"] == "Always"
    assert container(mutated, "webservice")["resizePolicy"] == container(pod, "webservice")["resizePolicy"]
    workhorse = container(mutated, "gitlab-workhorse")
    assert workhorse["restartPolicyRules"] == [{"action": "Restart", "exitCodes": {"operator": "In", "values": [42]}}]
    assert workhorse[FUTURE_FIELD] == container(pod, "gitlab-workhorse")[FUTURE_FIELD]
    # The pod's fsGroup was set: left alone.
    assert mutated["spec"]["securityContext"] == pod["spec"]["securityContext"]
    assert not any(op["path"].startswith("/spec/securityContext") for op in ops), ops
    validate_both(mutated)
    # What the API server stores is mutated already: posting it again changes nothing.
    again, more = hook.review(mutated)
    assert more == [], f"an already-mutated pod got a patch: {more}"
    # Both reviews counted on /metrics, by outcome.
    from test_metrics import scrape, value
    _, samples = scrape(hook.admin)
    assert value(samples, "keyless_webhook_reviews_total", outcome="mutated_web_identity") == 1, samples
    assert value(samples, "keyless_webhook_reviews_total", outcome="already_mutated") == 1, samples
    assert value(samples, "keyless_webhook_review_duration_seconds_count") == 2, samples


def test_registry_pod_running_as_1000_gets_an_fs_group_only_for_old_kubelets(start_webhook):
    pod = registry_pod()
    # By default no fsGroup: a kubelet since 1.19 gives the token to the pod's one runAsUser,
    # and an fsGroup would make it chown every volume of the pod.
    hook = start_webhook(*IRSA_FLAGS)
    mutated, ops, _ = hook.mutate(pod)
    assert_granular(ops)
    assert not any(op["path"].startswith("/spec/securityContext") for op in ops), ops
    assert_mutated(pod, mutated, irsa_env(ROLE_ARNS["gitlab-registry"]), [IRSA_MOUNT], [IRSA_VOLUME])
    validate(mutated, OLD_K8S)
    validate(mutated, NEW_K8S)
    assert hook.review(mutated)[1] == []
    # --token-fs-group, for kubelets before 1.19 (the token 0600 for root): its runAsUser.
    hook = start_webhook(*IRSA_FLAGS, "--token-fs-group")
    mutated, ops, _ = hook.mutate(pod)
    assert {"op": "add", "path": "/spec/securityContext/fsGroup", "value": 1000} in ops, ops
    assert_mutated(pod, mutated, irsa_env(ROLE_ARNS["gitlab-registry"]), [IRSA_MOUNT], [IRSA_VOLUME],
                   security_context={"fsGroup": 1000})
    validate(mutated, NEW_K8S)
    assert hook.review(mutated)[1] == []


def test_pods_without_a_role_are_not_mutated(start_webhook):
    hook = start_webhook(*IRSA_FLAGS)
    gitaly = webservice_pod()
    gitaly["spec"]["serviceAccountName"] = gitaly["spec"]["serviceAccount"] = "gitlab-gitaly"
    assert hook.review(gitaly)[1] == []
    default = webservice_pod()
    del default["spec"]["serviceAccountName"], default["spec"]["serviceAccount"]
    assert hook.review(default)[1] == []  # no serviceAccountName: `default`, which has no role
    # The same service-account name in another namespace, without a role.
    elsewhere = webservice_pod()
    elsewhere["metadata"]["namespace"] = "ci"
    assert hook.review(elsewhere, namespace="ci")[1] == []
    # A service account the file does not list.
    unknown = webservice_pod()
    unknown["spec"]["serviceAccountName"] = unknown["spec"]["serviceAccount"] = "nobody"
    assert hook.review(unknown)[1] == []
    from test_metrics import scrape, value
    _, samples = scrape(hook.admin)
    assert value(samples, "keyless_webhook_reviews_total", outcome="no_role") == 4, samples


def test_bad_requests_are_refused_clearly_and_the_connection_goes_on(start_webhook):
    hook = start_webhook(*IRSA_FLAGS)
    for body in (b"not json at all", b"{}", b'{"apiVersion": "v1", "kind": "Pod"}',
                 b'{"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview"}', b"[1, 2]"):
        r = hook.post(body)
        assert r.status_code == 400, f"{body!r}: {r.status_code} {r.text}"
        assert "AdmissionReview" in r.text, f"{body!r}: unclear answer {r.text!r}"
    for content_type in ("text/plain", "application/x-www-form-urlencoded", None):
        r = hook.post(admission_review(webservice_pod()), content_type=content_type)
        assert r.status_code == 415, f"{content_type}: {r.status_code} {r.text}"
    # The webhook still answers on the same session, with the uid of each review echoed.
    uids = [str(uuid.uuid4()) for _ in range(3)]
    for uid in uids:
        response, ops = hook.review(webservice_pod(), uid=uid)
        assert response["uid"] == uid and ops
    # Still healthy.
    assert requests.get(hook.admin + "/healthz", timeout=5).status_code == 200


def test_a_changed_service_accounts_file_is_read_again(start_webhook, accounts):
    hook = start_webhook(*IRSA_FLAGS)
    assert hook.review(webservice_pod())[1], hook.logs()
    loads = hook.loads()
    assert loads >= 1, hook.logs()
    # The annotation removed (the file replaced, as a sync tool writes it): no more mutation.
    del accounts.annotations(NAMESPACE, "gitlab-webservice")["eks.amazonaws.com/role-arn"]
    accounts.write()
    took = hook.wait_loads(loads, "annotation removed, file replaced")
    assert hook.review(webservice_pod())[1] == [], f"mutated after the role was removed\n{hook.logs()}"
    # Back, with another role, the file rewritten in place (`kubectl get ... > file`).
    loads = hook.loads()
    other = f"arn:aws:iam::{ACCOUNT}:role/gitlab-webservice-v2"
    accounts.annotations(NAMESPACE, "gitlab-webservice")["eks.amazonaws.com/role-arn"] = other
    accounts.write_in_place()
    hook.wait_loads(loads, "annotation back, file rewritten in place")
    deadline = time.monotonic() + LOAD_DEADLINE
    while True:  # an in-place write may be read half-written once; the next read has it all
        pod = webservice_pod()
        mutated, ops, _ = hook.mutate(pod)
        env = {e["name"]: e.get("value") for e in container(mutated, "webservice").get("env", [])}
        if env.get("AWS_ROLE_ARN") == other or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert env.get("AWS_ROLE_ARN") == other, f"{env}\n{hook.logs()}"
    assert took < LOAD_DEADLINE


def test_ca_bundle_config_map_and_association(start_webhook):
    hook = start_webhook(*IRSA_FLAGS, "--ca-bundle-config-map", "keyless-ca:bundle.pem",
                         "--association", f"{NAMESPACE}/gitlab-toolbox=gitlab-toolbox")
    ca_env = {"AWS_CA_BUNDLE": f"{CA_DIR}/bundle.pem"}
    ca_mount = {"name": "keyless-ca-bundle", "readOnly": True, "mountPath": CA_DIR}
    # Web identity, with the CA bundle.
    pod = webservice_pod()
    mutated, ops, _ = hook.mutate(pod)
    assert_granular(ops)
    volumes = {v["name"]: v for v in mutated["spec"]["volumes"]}
    ca_volumes = [v for v in volumes.values() if v.get("configMap", {}).get("name") == "keyless-ca"]
    assert len(ca_volumes) == 1, f"no configMap volume for keyless-ca: {list(volumes)}"
    ca_volume = ca_volumes[0]
    assert ca_volume["configMap"]["items"] == [{"key": "bundle.pem", "path": "bundle.pem"}], ca_volume
    ca_mount["name"] = ca_volume["name"]
    assert_mutated(pod, mutated, {**irsa_env(ROLE_ARNS["gitlab-webservice"]), **ca_env},
                   [IRSA_MOUNT, ca_mount], [IRSA_VOLUME, ca_volume])
    validate_both(mutated)
    # Container credentials for the associated service account: no AWS_ROLE_ARN, a pod-identity token.
    toolbox = webservice_pod()
    toolbox["spec"]["serviceAccountName"] = toolbox["spec"]["serviceAccount"] = "gitlab-toolbox"
    mutated, ops, _ = hook.mutate(toolbox)
    assert_granular(ops)
    env = {e["name"]: e.get("value") for e in container(mutated, "webservice")["env"]}
    assert env["AWS_CONTAINER_CREDENTIALS_FULL_URI"].startswith("http://"), env
    assert env["AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE"] == f"{POD_IDENTITY_DIR}/eks-pod-identity-token", env
    assert env["AWS_CA_BUNDLE"] == f"{CA_DIR}/bundle.pem", env
    assert "AWS_ROLE_ARN" not in env and "AWS_WEB_IDENTITY_TOKEN_FILE" not in env, env
    token_volumes = [v for v in mutated["spec"]["volumes"] if v["name"] == "eks-pod-identity-token"]
    assert len(token_volumes) == 1, mutated["spec"]["volumes"]
    source = token_volumes[0]["projected"]["sources"][0]["serviceAccountToken"]
    assert source["audience"] == "pods.eks.amazonaws.com" and source["path"] == "eks-pod-identity-token", source
    for c in containers(mutated):
        assert {"name": "eks-pod-identity-token", "readOnly": True, "mountPath": POD_IDENTITY_DIR} \
            in c["volumeMounts"], c["name"]
    assert mutated["metadata"]["labels"].get("eks.amazonaws.com/pod-identity") == "enabled"
    assert container(mutated, "gitlab-workhorse")[FUTURE_FIELD] == container(toolbox, "gitlab-workhorse")[FUTURE_FIELD]
    validate_both(mutated)
    assert hook.review(mutated)[1] == []


def test_sigterm_drains_and_exits_0(start_webhook, tls):
    hook = start_webhook(*IRSA_FLAGS)
    assert hook.review(webservice_pod())[1]
    # An idle keep-alive connection (the API server keeps them) must not hold the exit.
    context = ssl.create_default_context(cafile=tls.ca)
    conn = http.client.HTTPSConnection("127.0.0.1", hook.port, context=context, timeout=10)
    conn.request("POST", "/mutate", body=json.dumps(admission_review(webservice_pod())),
                 headers={"Content-Type": "application/json"})
    assert conn.getresponse().read()
    started = time.monotonic()
    hook.proc.send_signal(signal.SIGTERM)
    try:
        code = hook.proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"still running 20 s after SIGTERM\n{hook.logs()}") from None
    finally:
        conn.close()
    assert code == 0, f"exit {code} after SIGTERM\n{hook.logs()}"
    took = time.monotonic() - started
    assert took < 10, f"took {took:.1f} s to stop with one idle connection\n{hook.logs()}"


def test_webhook_config_prints_a_valid_configuration(keyless_bin, tls):
    out = subprocess.run([keyless_bin, "webhook", "config", "--namespace", "keyless", "--service-name",
                          "keyless-webhook", "--ca-bundle", tls.ca], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    try:
        config = json.loads(out.stdout)
    except json.JSONDecodeError:
        import yaml  # PyYAML, an awscli dependency
        config = yaml.safe_load(out.stdout)
    assert config["kind"] == "MutatingWebhookConfiguration", config
    for version in (OLD_K8S, NEW_K8S):
        try:
            kubernetes_validate.validate(config, version, strict=True)
        except kubernetes_validate.ValidationError as e:
            raise AssertionError(f"kubernetes-validate --strict -k {version}: {e}\n{out.stdout}") from None
    [webhook] = config["webhooks"]
    client = webhook["clientConfig"]
    assert base64.b64decode(client["caBundle"]) == tls.ca_pem
    assert client["service"]["name"] == "keyless-webhook" and client["service"]["namespace"] == "keyless"
    assert client["service"].get("path") == "/mutate", client
    assert "v1" in webhook["admissionReviewVersions"]
    assert webhook["sideEffects"] == "None"
    assert [(r["operations"], r["resources"]) for r in webhook["rules"]] == [(["CREATE"], ["pods"])], webhook["rules"]
    # Its own namespace is left out, else its own pods wait on it (kOps PR #13176).
    selector = json.dumps(webhook.get("namespaceSelector", {}))
    assert "keyless" in selector, selector


def test_installed_clients_honour_service_endpoint_variables():
    """AWS_ENDPOINT_URL_STS / _S3 are read by awscli from 1.29 (v1) or 2.13 (v2), botocore 1.31."""
    need("aws")
    version = subprocess.run(["aws", "--version"], capture_output=True, text=True, timeout=60)
    text = version.stdout + version.stderr
    m = re.search(r"aws-cli/(\d+)\.(\d+)\.(\d+)", text)
    assert m, text
    major, minor = int(m.group(1)), int(m.group(2))
    floor = (1, 29) if major == 1 else (2, 13)
    assert (major, minor) >= floor, f"{text.strip()}: AWS_ENDPOINT_URL_* needs awscli >= {floor[0]}.{floor[1]}"
    botocore_version = tuple(int(x) for x in importlib.metadata.version("botocore").split(".")[:2])
    assert botocore_version >= (1, 31), f"botocore {botocore_version}: AWS_ENDPOINT_URL_* needs >= 1.31"


# ---------------------------------------------------------------------------------------------
# 2. The mutated spec runs: awscli and boto3 in a pod, with the patch's env and nothing else


@pytest.fixture(scope="module")
def iam_server(keyless_bin, tmp_path_factory):
    """`keyless serve` with GitLab's buckets, and roles for gitlab-webservice and gitlab-registry
    trusting its own OIDC issuer, each with read and write on its bucket."""
    server = KeylessServer(keyless_bin, str(tmp_path_factory.mktemp("webhook-serve")))
    try:
        issuer = open(os.path.join(server.data_dir, "oidc-issuer")).read().strip()
        key = issuer.split("://", 1)[1]
        provider = f"arn:aws:iam::{ACCOUNT}:oidc-provider/{key}"
        keys = dict(line.split(" = ", 1) for line in
                    open(os.path.join(server.data_dir, "root-credentials")).read().splitlines() if " = " in line)
        iam = boto3.session.Session().client(
            "iam", endpoint_url=server.endpoint, region_name=REGION,
            aws_access_key_id=keys["aws_access_key_id"], aws_secret_access_key=keys["aws_secret_access_key"])
        for account, arn in ROLE_ARNS.items():
            role = arn.rsplit("/", 1)[1]
            if account == "gitlab-sidekiq":
                continue
            iam.create_role(RoleName=role, AssumeRolePolicyDocument=trust(
                provider, key, f"system:serviceaccount:{NAMESPACE}:{account}"))
            iam.put_role_policy(RoleName=role, PolicyName="bucket-rw", PolicyDocument=bucket_rw(BUCKETS[role]))
    except BaseException:
        server.stop()
        raise
    yield server
    server.stop()


# Inside the pod's own mount namespace (`unshare --mount`, propagation private, inside `ip netns
# exec`'s own): a tmpfs over /run (/var/run points there) holds the token where the projected
# volume puts it, owned and moded as the kubelet makes it, on a read-only bind mount, and the
# container's HOME. The host's /var/run/secrets is never touched: every directory made here is
# made inside that tmpfs. For a non-root user, a directory it cannot search that holds the
# clients (/root, with pyenv's Python) is replaced, in this namespace only, by a tmpfs holding
# just the clients' directory bound back. Arguments: RUN TOKEN_SRC TOKEN_PATH MODE GROUP UID GID
# [TOP CHILD]... -- COMMAND...
POD_SETUP = r"""
run=$1 src=$2 token=$3 mode=$4 owner=$5 group=$6 uid=$7 gid=$8
shift 8
mount -t tmpfs -o mode=0755 keyless-pod "$run"
dir=${token%/*}
mkdir -p "$dir"
cp "$src" "$token"
chown "$owner:$group" "$token"
chmod "$mode" "$token"
mount --bind "$dir" "$dir"
mount -o remount,bind,ro "$dir"
if [ "$mode" = 0640 ] && [ "$uid" != 0 ] && setpriv --reuid "$uid" --regid 4242 --clear-groups cat "$token" >/dev/null 2>&1; then
  echo "the token is readable by uid $uid without group $group: the test proves nothing" >&2
  exit 97
fi
home=$run/keyless-home
mkdir -m 0700 "$home"
chown "$uid:$gid" "$home"
n=0
while [ "$1" != -- ]; do
  top=$1 child=$2
  shift 2
  n=$((n + 1))
  mkdir "$run/keyless-hidden-$n"
  mount --bind "$top" "$run/keyless-hidden-$n"
  mount -t tmpfs -o mode=0755 keyless-tools "$top"
  mkdir -p "$top/$child"
  mount --bind "$run/keyless-hidden-$n/$child" "$top/$child"
done
shift
cd "$home"
exec "$@"
"""

# The container's process: its environment set to exactly ENV (argv[1]), then awscli
# (subprocesses) and boto3 (in process) with no endpoint argument, no configuration file, no key.
CLIENT = r"""
import json, os, subprocess, sys
env, bucket, key = json.loads(sys.argv[1]), sys.argv[2], sys.argv[3]
os.environ.clear()
os.environ.update(env)
out = {"uid": os.getuid(), "gid": os.getgid(), "groups": sorted(os.getgroups())}
token = env.get("AWS_WEB_IDENTITY_TOKEN_FILE", "")
try:
    st = os.stat(token)
    out["token"] = {"mode": oct(st.st_mode & 0o777), "uid": st.st_uid, "gid": st.st_gid,
                    "readable": os.access(token, os.R_OK)}
except OSError as e:
    out["token"] = {"error": str(e)}

def aws(*args):
    p = subprocess.run(["aws", *args], capture_output=True, text=True, env=env, timeout=60)
    return {"args": list(args), "rc": p.returncode, "stdout": p.stdout[-2000:], "stderr": p.stderr[-2000:]}

out["identity"] = aws("sts", "get-caller-identity", "--output", "json")
body = os.urandom(300_000)
with open("up.bin", "wb") as f:
    f.write(body)
out["put"] = aws("s3", "cp", "up.bin", f"s3://{bucket}/{key}/awscli.bin")
out["get"] = aws("s3", "cp", f"s3://{bucket}/{key}/awscli.bin", "back.bin")
out["same"] = os.path.exists("back.bin") and open("back.bin", "rb").read() == body
out["ls"] = aws("s3", "ls", f"s3://{bucket}/{key}/")
try:
    import boto3
    session = boto3.session.Session()
    creds = session.get_credentials()
    s3 = session.client("s3")
    s3.put_object(Bucket=bucket, Key=f"{key}/boto3.bin", Body=body)
    back = s3.get_object(Bucket=bucket, Key=f"{key}/boto3.bin")["Body"].read()
    out["boto3"] = {"method": creds.method, "key": creds.access_key,
                    "arn": session.client("sts").get_caller_identity()["Arn"],
                    "s3": s3.meta.endpoint_url, "same": back == body}
except Exception as e:
    out["boto3"] = {"error": f"{type(e).__name__}: {e}"}
print(json.dumps(out))
"""


def client_paths() -> tuple[str, str]:
    """The Python with boto3 and awscli's `aws` beside it (not pyenv's shim, which runs pyenv)."""
    aws = os.path.join(os.path.dirname(sys.executable), "aws")
    if not os.access(aws, os.X_OK):
        aws = shutil.which("aws")
    return sys.executable, os.path.realpath(aws)


def hidden_directories(paths, uid) -> list[str]:
    """For each path, the first ancestor that `uid` (not its owner) cannot search, with the
    child to bind back under it: [TOP, CHILD, ...] for POD_SETUP."""
    if uid == 0:
        return []
    found = {}
    for path in paths:
        parts = os.path.realpath(path).split("/")[1:]
        for i in range(len(parts)):
            top = "/" + "/".join(parts[:i])
            st = os.stat(top)
            if not st.st_mode & 0o001 and st.st_uid != uid:
                found.setdefault(top, set()).add(parts[i])
                break
    out = []
    for top, children in found.items():
        for child in sorted(children):
            inner = os.path.join(top, child)
            assert os.stat(inner).st_mode & 0o001, \
                f"{inner} is not searchable by others either: cannot run the clients as uid {uid}"
            out += [top, child]
    return out


def host_secrets_state():
    """What the host has at /var/run/secrets (to show the pod runs left it as it was)."""
    root = "/var/run/secrets"
    if not os.path.lexists(root):
        return None
    return sorted((d, tuple(sorted(f))) for d, _, f in os.walk(root))


def run_mutated_container(pod_net, iam_server, keyless_bin, start_webhook, pod, name, account):
    """Mutate `pod` with the webhook pointed at the server as pods reach it; run the clients in
    a network-namespace pod with the env of container `name` and its token; returns
    (mutated pod, the container, the clients' report, what they ran as)."""
    need("aws", "unshare", "setpriv")
    endpoint = f"http://{pod_net.expose(iam_server.port)}"
    hook = start_webhook("--sts-endpoint", endpoint, "--s3-endpoint", endpoint, "--region", REGION)
    mutated, ops, _ = hook.mutate(pod)
    assert ops, f"{name}: no patch\n{hook.logs()}"
    spec = mutated["spec"]
    c = container(mutated, name)
    assert all("value" in e and "valueFrom" not in e for e in c.get("env", [])), c["env"]
    env = {e["name"]: e["value"] for e in c.get("env", [])}
    assert env.get("AWS_ROLE_ARN") == ROLE_ARNS[account], env
    assert env.get("AWS_ENDPOINT_URL_STS") == endpoint and env.get("AWS_ENDPOINT_URL_S3") == endpoint, env
    # Where the kubelet would put the token: the projected volume's path under the container's mount.
    volume = next(v for v in spec["volumes"] if v["name"] == "aws-iam-token")
    sat = volume["projected"]["sources"][0]["serviceAccountToken"]
    mount = next(m for m in c["volumeMounts"] if m["name"] == "aws-iam-token")
    assert mount.get("readOnly") is True, mount
    token_path = f"{mount['mountPath'].rstrip('/')}/{sat['path']}"
    assert env["AWS_WEB_IDENTITY_TOKEN_FILE"] == token_path == TOKEN_FILE, (env, token_path)
    # Who the container runs as, and the token's owner and mode as a kubelet since 1.19 sets
    # them (kubernetes/kubernetes#89193): owned by the pod's runAsUser when every container
    # runs as that one user, else root; with an fsGroup, 0600 plus group read for fsGroup;
    # without one, 0600 when owned by that user, else the projection's default 0644.
    pod_sc, sc = spec.get("securityContext", {}), c.get("securityContext", {})
    uid = sc.get("runAsUser", pod_sc.get("runAsUser", 0))
    gid = sc.get("runAsGroup", pod_sc.get("runAsGroup", 0))
    fs_group = pod_sc.get("fsGroup")
    users = {x.get("securityContext", {}).get("runAsUser", pod_sc.get("runAsUser"))
             for x in spec.get("initContainers", []) + spec["containers"]}
    fs_user = users.pop() if len(users) == 1 and None not in users else None
    groups = sorted({*([fs_group] if fs_group is not None else []), *pod_sc.get("supplementalGroups", [])})
    owner = fs_user if fs_user is not None else 0
    if fs_group is not None:
        mode, token_group = "0640", fs_group
    else:
        mode, token_group = ("0600", 0) if fs_user is not None else ("0644", 0)
    # The token: from the server's own issuer, for the volume's audience and lifetime.
    jwt = keyless_token(keyless_bin, iam_server.data_dir, NAMESPACE, account,
                        "--audience", sat["audience"], "--duration", str(sat["expirationSeconds"]))
    run = os.path.realpath("/var/run")
    home = f"{run}/keyless-home"
    python, aws = client_paths()
    path = ":".join(dict.fromkeys([os.path.dirname(aws), os.path.dirname(python),
                                   "/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"]))
    client_env = {**env, "PATH": path, "HOME": home}
    role = ROLE_ARNS[account].rsplit("/", 1)[1]
    client = [python, "-c", CLIENT, json.dumps(client_env), BUCKETS[role], f"webhook/{name}"]
    if uid != 0:
        client = ["setpriv", "--reuid", str(uid), "--regid", str(gid),
                  *(["--groups", ",".join(map(str, groups))] if groups else ["--clear-groups"]), "--", *client]
    hide = hidden_directories([python, aws], uid)
    p = pod_net.pod(name)
    token_src = write(p, "token", jwt)
    before = host_secrets_state()
    proc = p.run(["unshare", "--mount", "--propagation", "private", "sh", "-euc", POD_SETUP, "pod-setup",
                  run, token_src, token_path, mode, str(owner), str(token_group), str(uid), str(gid), *hide, "--",
                  *client],
                 timeout=CLIENT_TIMEOUT * 4)
    assert host_secrets_state() == before, f"the host's /var/run/secrets changed: {before} -> {host_secrets_state()}"
    assert "keyless-pod" not in open("/proc/self/mountinfo").read(), "the pod's tmpfs is mounted on the host"
    explain = (f"pod run exited {proc.returncode}\n--- stdout ---\n{proc.stdout[-4000:]}\n"
               f"--- stderr ---\n{proc.stderr[-4000:]}\n{iam_server.logs()}")
    assert proc.returncode == 0 and proc.stdout.strip(), explain
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    report["explain"] = explain
    return mutated, c, report, {"uid": uid, "gid": gid, "groups": groups, "mode": mode, "group": token_group}


def assert_clients_ran_as_the_role(report, account):
    role = ROLE_ARNS[account].rsplit("/", 1)[1]
    assumed = f"arn:aws:sts::{ACCOUNT}:assumed-role/{role}/"
    explain = json.dumps({k: v for k, v in report.items() if k != "explain"}, indent=1) + "\n" + report["explain"]
    who = report["identity"]
    assert who["rc"] == 0, f"aws sts get-caller-identity failed\n{explain}"
    assert json.loads(who["stdout"])["Arn"].startswith(assumed), explain
    for step in ("put", "get", "ls"):
        assert report[step]["rc"] == 0, f"aws {' '.join(report[step]['args'])} failed\n{explain}"
    assert report["same"], f"the object did not round-trip through awscli\n{explain}"
    assert "awscli.bin" in report["ls"]["stdout"], explain
    b = report["boto3"]
    assert "error" not in b, f"boto3: {b.get('error')}\n{explain}"
    assert b["method"] == "assume-role-with-web-identity", explain
    assert b["key"].startswith("ASIA") and b["arn"].startswith(assumed) and b["same"], explain


def test_the_mutated_webservice_pod_runs_awscli_and_boto3(pod_net, iam_server, keyless_bin, start_webhook):
    mutated, c, report, who = run_mutated_container(pod_net, iam_server, keyless_bin, start_webhook,
                                                    webservice_pod(), "webservice", "gitlab-webservice")
    assert report["uid"] == 0, report
    assert report["token"].get("mode") == "0o640" and report["token"].get("gid") == 1000, report["token"]
    assert_clients_ran_as_the_role(report, "gitlab-webservice")


def test_the_mutated_registry_pod_runs_as_1000(pod_net, iam_server, keyless_bin, start_webhook):
    mutated, c, report, who = run_mutated_container(pod_net, iam_server, keyless_bin, start_webhook,
                                                    registry_pod(), "registry", "gitlab-registry")
    assert "fsGroup" not in mutated["spec"].get("securityContext", {}), mutated["spec"]["securityContext"]
    assert (report["uid"], report["gid"]) == (1000, 0), report
    token = report["token"]
    assert token.get("mode") == "0o600" and (token.get("uid"), token.get("gid")) == (1000, 0), token
    assert token.get("readable") is True, f"uid 1000 cannot read its token: {token}"
    assert_clients_ran_as_the_role(report, "gitlab-registry")
