"""The Helm chart, statically: `helm lint --strict`, golden files of `helm template` for every
value set in charts/keyless/ci, the rendered manifests against Kubernetes' own schemas
(`kubernetes-validate --strict`, oldest and newest supported version), values the schema or the
templates must refuse, the MutatingWebhookConfiguration against `keyless webhook config`, the
security contexts, and NOTES.txt's GitLab command run for real.

What the chart renders is started for real in test_chart_runs.py.

    KEYLESS_BLESS=1 python3 -m pytest tests/clients/test_chart.py -k golden   # rewrite goldens
"""

from __future__ import annotations

import json
import os
import re
import subprocess

import kubernetes_validate
import pytest
import yaml

from chart import (CHART, NAMESPACE, REPO, VALUE_SETS, container, find, generated_secret_masked,
                   helm, notes, render, template, values_file)

GOLDEN = REPO / "testdata" / "chart"
# The chart's kubeVersion (>=1.27) and the newest release kubernetes-validate knows.
K8S_VERSIONS = ("1.27.0", "1.37.0")


@pytest.mark.parametrize("name", [None, *VALUE_SETS], ids=["defaults", *VALUE_SETS])
def test_lint_strict(name):
    args = ["lint", "--strict", str(CHART)] + (["-f", values_file(name)] if name else [])
    out = helm(*args)
    assert "0 chart(s) failed" in out.stdout, out.stdout


@pytest.mark.parametrize("name", VALUE_SETS)
def test_golden(name):
    """`helm template` of each value set is the checked-in file, but for the values the chart
    draws at random (the generated Secret's)."""
    text = generated_secret_masked(template(name).stdout)
    path = GOLDEN / f"{name}.yaml"
    if os.environ.get("KEYLESS_BLESS") == "1":
        GOLDEN.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    assert path.exists(), f"{path} is missing: KEYLESS_BLESS=1 pytest {__file__} -k golden, then read the diff"
    assert text == path.read_text(), (
        f"helm template -f ci/{name}-values.yaml differs from {path.relative_to(REPO)}; if the change is "
        f"meant, bless it (KEYLESS_BLESS=1) and read the diff")


def test_generated_secrets_are_random_and_well_formed():
    """Two renders draw different keys; each is what the binary reads: a session key of 48
    random bytes in base64, AKIA key ids, an agent credentials file with a [default] profile."""
    import base64

    def data(docs):
        return {k: base64.b64decode(v).decode() for k, v in find(docs, "Secret", "keyless-secrets")["data"].items()}

    a, b = data(render("everything")), data(render("everything"))
    assert a.keys() == {"session-key", "root-access-key-id", "root-secret-access-key", "agent-credentials"}
    assert all(a[k] != b[k] for k in a), "two renders gave the same secret"
    assert len(base64.b64decode(a["session-key"])) == 48
    assert re.fullmatch(r"AKIA[A-Z0-9]{16}", a["root-access-key-id"]), a["root-access-key-id"]
    assert re.fullmatch(r"[A-Za-z0-9]{40}", a["root-secret-access-key"])
    assert re.fullmatch(r"\[default\]\naws_access_key_id = AKIA[A-Z0-9]{16}\naws_secret_access_key = [A-Za-z0-9]{40}\n",
                        a["agent-credentials"]), a["agent-credentials"]
    secret = find(render(), "Secret", "keyless-secrets")
    assert secret["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    # With a Secret of the user's, the chart makes none and mounts that one, with the keys
    # values.yaml documents.
    docs = render(sets=("existingSecret=mine", "agent.enabled=true"))
    assert not [d for d in docs if d["kind"] == "Secret"]
    documented = (CHART / "values.yaml").read_text().split("existingSecret:")[0].rsplit("\n\n", 1)[1]
    used = set()
    for kind, name, container_name in [("StatefulSet", "keyless", "keyless"), ("DaemonSet", "keyless-agent", "agent")]:
        workload = find(docs, kind, name)
        volume = {v["name"]: v for v in workload["spec"]["template"]["spec"]["volumes"]}["secrets"]["secret"]
        assert volume["secretName"] == "mine"
        used |= {item["key"] for item in volume.get("items", [])}
        used |= {e["valueFrom"]["secretKeyRef"]["key"] for e in container(workload, container_name).get("env", [])
                 if e.get("valueFrom", {}).get("secretKeyRef", {}).get("name") == "mine"}
    assert used == {"session-key", "root-access-key-id", "root-secret-access-key", "agent-credentials"}, used
    for key in used:
        assert f"`{key}`" in documented, (key, documented)


@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize("name", VALUE_SETS)
def test_manifests_pass_kubernetes_validate_strict(name, version):
    """Each rendered object against the OpenAPI schema of `version`, unknown fields refused.
    cert-manager's Certificate and Prometheus Operator's ServiceMonitor are custom resources:
    checked by hand below."""
    checked = 0
    for doc in render(name):
        if doc["apiVersion"] in ("cert-manager.io/v1", "monitoring.coreos.com/v1"):
            continue
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as e:
            raise AssertionError(f"{doc['kind']} {doc['metadata']['name']} (-k {version}): {e}") from None
        checked += 1
    assert checked >= 3


def test_service_monitors_scrape_the_admin_ports():
    """Prometheus Operator's monitoring.coreos.com/v1 ServiceMonitor (its CRD is not in
    kubernetes-validate): each selects only its component's headless `-metrics` Service, whose
    port `admin` is the container's admin port, at /metrics; none by default."""
    assert not [d for d in render("embedded") if d["kind"] == "ServiceMonitor"]
    docs = render("everything")
    monitors = [d for d in docs if d["kind"] == "ServiceMonitor"]
    assert sorted(m["metadata"]["name"] for m in monitors) == ["keyless-server-metrics", "keyless-webhook-metrics"]
    for monitor in monitors:
        assert monitor["metadata"]["labels"]["release"] == "prometheus"
        spec = monitor["spec"]
        assert set(spec) == {"selector", "namespaceSelector", "endpoints"}, spec
        assert spec["namespaceSelector"] == {"matchNames": [NAMESPACE]}
        assert spec["endpoints"] == [{"port": "admin", "path": "/metrics", "scheme": "http",
                                      "interval": "15s", "scrapeTimeout": "10s"}]
        selected = [d for d in docs if d["kind"] == "Service" and all(
            d["metadata"]["labels"].get(k) == v for k, v in spec["selector"]["matchLabels"].items())]
        assert [s["metadata"]["name"] for s in selected] == [monitor["metadata"]["name"]], selected
        service = selected[0]
        assert service["spec"]["clusterIP"] == "None"
        # A replica failing its readiness is still scraped: it is the one to look at.
        assert service["spec"]["publishNotReadyAddresses"] is True
        component = service["spec"]["selector"]["app.kubernetes.io/component"]
        workloads = [d for d in docs if d["kind"] in ("Deployment", "StatefulSet") and
                     d["spec"]["selector"]["matchLabels"] == service["spec"]["selector"]]
        assert len(workloads) == 1, (component, workloads)
        container = workloads[0]["spec"]["template"]["spec"]["containers"][0]
        admin = next(p for p in container["ports"] if p["name"] == "admin")
        assert service["spec"]["ports"] == [{"name": "admin", "port": admin["containerPort"],
                                             "targetPort": "admin", "protocol": "TCP", "appProtocol": "http"}]
        assert any(a.endswith(f":{admin['containerPort']}") and a.startswith("--admin-listen=")
                   for a in container["args"]), container["args"]


def test_certificates_are_cert_managers():
    """The fields of cert-manager.io/v1 Certificate the chart uses (its CRD is not in
    kubernetes-validate), with the Service's names."""
    docs = render("webhook-cert-manager")
    for name, service in [("keyless-tls", "keyless"), ("keyless-webhook", "keyless-webhook")]:
        spec = find(docs, "Certificate", name)["spec"]
        assert set(spec) == {"secretName", "dnsNames", "issuerRef", "privateKey"}, spec
        assert spec["dnsNames"][:4] == [service, f"{service}.{NAMESPACE}", f"{service}.{NAMESPACE}.svc",
                                        f"{service}.{NAMESPACE}.svc.cluster.local"]
        assert spec["issuerRef"] == {"name": "cluster-ca", "kind": "ClusterIssuer", "group": "cert-manager.io"}
        assert spec["privateKey"] == {"algorithm": "ECDSA", "size": 256, "rotationPolicy": "Always"}
    webhook = find(docs, "MutatingWebhookConfiguration", "keyless-webhook")
    assert webhook["metadata"]["annotations"] == {"cert-manager.io/inject-ca-from": "keyless/keyless-webhook"}
    assert "caBundle" not in webhook["webhooks"][0]["clientConfig"]


# Values the schema refuses, with helm's message.
SCHEMA_REFUSES = [
    (("server.mod=gateway",), "at '/server': additional properties 'mod' not allowed"),
    (("server.mode=cluster",), "at '/server/mode': value must be one of 'embedded', 'gateway'"),
    (("accountId=12345",), "at '/accountId'"),
    (("server.replicas=0",), "at '/server/replicas': minimum: got 0, want 1"),
    (("server.port=70000",), "at '/server/port'"),
    (("server.upstream.url=ftp://x",), "at '/server/upstream/url'"),
    (("server.iamStore.url=mysql://db/keyless",), "at '/server/iamStore/url'"),
    (("server.upstream.timeout=30",), "at '/server/upstream/timeout'"),
    (("webhook.failurePolicy=ignore",), "at '/webhook/failurePolicy': value must be one of 'Ignore', 'Fail'"),
    (("webhook.certificate=manual",), "at '/webhook/certificate'"),
    (("webhook.timeoutSeconds=31",), "at '/webhook/timeoutSeconds'"),
    (("webhook.tokenExpiration=60",), "at '/webhook/tokenExpiration'"),
    (("agent.hostInterface=eth0 eth1",), "at '/agent/hostInterface'"),
    (("agent.associations[0]=gitlab-toolbox",), "at '/agent/associations/0'"),
    (("agent.enabeld=true",), "additional properties 'enabeld' not allowed"),
    (("gitlab.mode=kiam",), "at '/gitlab/mode'"),
    (("serviceMonitor.interval=soon",), "at '/serviceMonitor/interval'"),
    (("serviceMonitor.enabeld=true",), "additional properties 'enabeld' not allowed"),
    (("iam.roles[0].name=r", "iam.roles[0].trust.sa=x"), "additional properties 'sa' not allowed"),
    (("iam.roles[0].name=r", "iam.roles[0].trust.serviceAccounts[0]=gitlab"), "at '/iam/roles/0/trust/serviceAccounts/0'"),
    (("iam.roles[0].name=r", "iam.roles[0].maxSessionDuration=60"), "at '/iam/roles/0/maxSessionDuration'"),
    (("iam.users[0].name=u", "iam.users[0].accessKeyId=AKIAUSER000000000001"), "at '/iam/users/0'"),
    (("iam.buckets[0].name=Bad_Bucket",), "at '/iam/buckets/0/name'"),
    (("iam.policies[0].name=p", "iam.policies[0].document.Statment=x"), "additional properties 'Statment' not allowed"),
    (("image.digest=latest",), "at '/image/digest'"),
    # The root file system is read-only: the trail goes to stdout or an endpoint.
    (("server.auditLog=/var/log/audit.jsonl",), "at '/server/auditLog'"),
    # The binary's ranges: sessions of 15 minutes to 12 hours, checks at most a minute apart,
    # upstream timeouts of a second or more.
    (("agent.sessionDuration=10m",), "at '/agent/sessionDuration'"),
    (("agent.sessionDuration=13h",), "at '/agent/sessionDuration'"),
    (("server.iamStore.checkInterval=90s",), "at '/server/iamStore/checkInterval'"),
    (("server.upstream.timeout=500ms",), "at '/server/upstream/timeout'"),
]


@pytest.mark.parametrize("sets,message", SCHEMA_REFUSES, ids=[s[0][-1] for s in SCHEMA_REFUSES])
def test_schema_refuses(sets, message):
    out = template(sets=sets, check=False)
    assert out.returncode == 1, out.stdout[:2000]
    assert "values don't meet the specifications of the schema" in out.stderr, out.stderr
    assert message in out.stderr, out.stderr


# Values the schema cannot relate, refused by the templates with a message that says what to do.
TEMPLATES_REFUSE = [
    (("server.mode=gateway",), "server.upstream.url: gateway mode needs the upstream store's URL"),
    (("server.mode=gateway", "server.upstream.url=http://rgw:7480"), "server.upstream.credentialsSecret"),
    (("server.iamStore.url=postgres://keyless@db/keyless",), "IAM state in PostgreSQL is for gateway mode"),
    (("server.tls.enabled=true", "server.tls.certManager.enabled=true"), "cert-manager needs an Issuer"),
    (("webhook.enabled=true", "webhook.certificate=secret"), "`certificate: secret` needs secretName and caBundle"),
    (("server.enabled=false", "agent.enabled=true"), "give agent.stsEndpoint and agent.credentialsSecret"),
    (("iam.roles[0].name=r",), "iam.roles[r]: give assumeRolePolicy or trust"),
    (("iam.roles[0].name=r", "iam.roles[0].trust.serviceAccounts[0]=a/b", "iam.clusterIssuer.enabled=false"),
     "needs iam.clusterIssuer.enabled"),
    (("gitlab.mode=annotation",), "set agent.enabled"),
    (("gitlab.mode=irsa",), "set webhook.enabled"),
    # GitLab's role, when declared here, must trust GitLab's pods the way the mode gives them it.
    (("gitlab.mode=irsa", "webhook.enabled=true", "iam.roles[0].name=gitlab",
      "iam.roles[0].trust.serviceAccounts[0]=gitlab/other"), "GitLab's pods (gitlab.namespace/gitlab.serviceAccount) are gitlab/gitlab"),
    (("gitlab.mode=annotation", "agent.enabled=true", "iam.roles[0].name=gitlab",
      "iam.roles[0].trust.serviceAccounts[0]=gitlab/gitlab"), "iam.roles[gitlab].trust.agent"),
    (("gitlab.mode=irsa", "webhook.enabled=true", "gitlab.role=arn:aws:iam::000000000000:role/gitlab",
      "iam.roles[0].name=gitlab", "iam.roles[0].trust.agent=true"), "are gitlab/gitlab; add it"),
]


@pytest.mark.parametrize("sets,message", TEMPLATES_REFUSE, ids=[s[1][:40] for s in TEMPLATES_REFUSE])
def test_templates_refuse(sets, message):
    out = template(sets=sets, check=False)
    assert out.returncode == 1, out.stdout[:2000]
    assert message in out.stderr, out.stderr


def test_webhook_configuration_is_what_the_binary_prints(keyless_bin):
    """The chart's MutatingWebhookConfiguration and `keyless webhook config` agree on every
    field (the chart adds its labels, and the caBundle is the webhook's or cert-manager's)."""
    for sets in [(), ("webhook.failurePolicy=Fail", "webhook.timeoutSeconds=5")]:
        docs = render(sets=("webhook.enabled=true", *sets))
        chart = find(docs, "MutatingWebhookConfiguration", "keyless-webhook")
        values = dict(s.split("=", 1) for s in sets)
        out = subprocess.run([keyless_bin, "webhook", "config", "--namespace", NAMESPACE, "--service-name",
                              "keyless-webhook", "--name", "keyless-webhook",
                              "--failure-policy", values.get("webhook.failurePolicy", "Ignore").lower(),
                              "--timeout-seconds", values.get("webhook.timeoutSeconds", "10")],
                             capture_output=True, text=True, check=True)
        binary = json.loads(out.stdout)
        assert chart["webhooks"] == binary["webhooks"], (chart["webhooks"], binary["webhooks"])
        assert chart["apiVersion"] == binary["apiVersion"] and chart["kind"] == binary["kind"]


def pods(docs):
    for d in docs:
        if d["kind"] in ("StatefulSet", "Deployment", "DaemonSet"):
            yield d, d["spec"]["template"]["spec"]


def test_security_contexts_are_restricted():
    """Pod Security's `restricted` profile for the server and the webhook; the agent is root
    with NET_ADMIN alone (iptables), nothing else, read-only root file system."""
    seen = set()
    for d, spec in pods(render("everything")):
        for c in spec["containers"]:
            sc = c["securityContext"]
            seen.add(d["kind"])
            assert sc["allowPrivilegeEscalation"] is False and sc["readOnlyRootFilesystem"] is True
            assert sc["capabilities"]["drop"] == ["ALL"]
            assert "privileged" not in sc
            if d["kind"] == "DaemonSet":
                assert sc["capabilities"]["add"] == ["NET_ADMIN"] and sc["runAsUser"] == 0
                assert spec["hostNetwork"] is True and spec["priorityClassName"] == "system-node-critical"
                assert spec["tolerations"] == [{"operator": "Exists"}]
                assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
            else:
                assert sc["runAsNonRoot"] is True and sc["seccompProfile"] == {"type": "RuntimeDefault"}
                assert "add" not in sc["capabilities"]
                assert spec["securityContext"]["runAsUser"] == 65532 and spec["securityContext"]["runAsNonRoot"]
            assert c["resources"]["requests"], c["name"]
    assert seen == {"StatefulSet", "DaemonSet", "Deployment"}


def test_probes_and_graceful_termination_match_the_binary():
    """Probes on the admin listener's /healthz and /readyz; the kubelet waits 5 s longer than
    --shutdown-grace before it kills."""
    for sets in [(), ("server.shutdownGraceSeconds=40",)]:
        docs = render("everything", sets=sets)
        server = find(docs, "StatefulSet", "keyless")
        spec = server["spec"]["template"]["spec"]
        c = container(server, "keyless")
        grace = next(int(a.split("=")[1].removesuffix("s")) for a in c["args"] if a.startswith("--shutdown-grace="))
        assert spec["terminationGracePeriodSeconds"] == grace + 5
        admin = next(a for a in c["args"] if a.startswith("--admin-listen="))
        assert admin == "--admin-listen=0.0.0.0:9090"
        assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "admin"}
        assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "admin"}
    agent = find(docs, "DaemonSet", "keyless-agent")
    c = container(agent, "agent")
    assert "--admin-listen=127.0.0.1:8182" in c["args"]
    assert c["readinessProbe"]["httpGet"] == {"host": "127.0.0.1", "path": "/readyz", "port": 8182}


def test_gateway_replicas_spread_and_budget():
    docs = render("gateway-postgres")
    server = find(docs, "Deployment", "keyless")
    assert server["spec"]["replicas"] == 3
    anti = server["spec"]["template"]["spec"]["affinity"]["podAntiAffinity"]
    assert anti["requiredDuringSchedulingIgnoredDuringExecution"][0]["topologyKey"] == "kubernetes.io/hostname"
    assert find(docs, "PodDisruptionBudget", "keyless")["spec"]["maxUnavailable"] == 1
    # One replica per node: a rollout replaces one at a time rather than surge onto no node.
    assert server["spec"]["strategy"]["rollingUpdate"] == {"maxUnavailable": 1, "maxSurge": 0}
    # The ingress's host is a domain: its subdomains (buckets) route too.
    ingress = find(docs, "Ingress", "keyless")["spec"]
    assert [r["host"] for r in ingress["rules"]] == ["s3.example.internal", "*.s3.example.internal"]
    assert ingress["tls"][0]["hosts"] == ["s3.example.internal", "*.s3.example.internal"]
    assert not [d for d in docs if d["kind"] == "StatefulSet"]
    volumes = {v["name"]: v for v in server["spec"]["template"]["spec"]["volumes"]}
    assert volumes["data"] == {"name": "data", "emptyDir": {}}
    # One replica without PostgreSQL keeps its IAM state on a volume.
    docs = render(sets=("server.mode=gateway", "server.upstream.url=http://rgw:7480",
                        "server.upstream.credentialsSecret=up"))
    assert find(docs, "StatefulSet", "keyless")["spec"]["replicas"] == 1


@pytest.mark.parametrize("mode", ["annotation", "irsa"])
def test_notes_print_gitlab_values_that_pass_gitlab_check(mode, keyless_bin, tmp_path):
    """NOTES.txt's `keyless gitlab render` command, run with the real binary, prints values
    that `keyless gitlab check` finds clean, for the role and endpoint of this release."""
    text = notes(f"gitlab-{mode}", tmp=tmp_path)
    assert "S3, IAM and STS: http://keyless.keyless.svc:9000" in text, text
    line = next(ln.strip() for ln in text.splitlines() if ln.strip().startswith("kubectl") and "gitlab render" in ln)
    command = line.split(" -- ", 1)[1].split()
    assert command[0] == "/usr/local/bin/keyless", command
    out = subprocess.run([keyless_bin, *command[1:]], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    rendered = out.stdout
    assert "http://keyless.keyless.svc:9000" in rendered
    files = dict(re.findall(r"# ---- file: (\S+) ----\n(.*?)(?=\n# ---- file: |\Z)", rendered, flags=re.S))
    for name, body in files.items():
        (tmp_path / name).write_text(body)
    check = subprocess.run([keyless_bin, "gitlab", "check", "--values", str(tmp_path / "values.yaml"),
                            *(a for f in ("registry-storage.yaml", "object-storage.yaml", "s3cmd.config")
                              for a in ("--secret", str(tmp_path / f)))],
                           capture_output=True, text=True)
    assert check.returncode == 0, f"{check.stdout}\n{check.stderr}"
    if mode == "irsa":
        assert "--role=arn:aws:iam::000000000000:role/gitlab" in command
    else:
        assert "--role=gitlab" in command


def test_config_file_is_what_the_values_declare():
    """IAM as code: the rendered --config file holds the declared policies, users, roles (with
    the trust `trust` asks for), providers and buckets, and the agent's user."""
    import tomllib

    docs = render("everything")
    config = tomllib.loads(find(docs, "ConfigMap", "keyless-config")["data"]["keyless.toml"])
    role = config["roles"][0]
    trust = json.loads(role["assume_role_policy"]["document"])
    host = "kubernetes.default.svc.cluster.local"
    assert trust["Statement"] == [
        {"Effect": "Allow", "Action": "sts:AssumeRoleWithWebIdentity",
         "Principal": {"Federated": f"arn:aws:iam::000000000000:oidc-provider/{host}"},
         "Condition": {"StringEquals": {f"{host}:sub": ["system:serviceaccount:gitlab:gitlab"],
                                        f"{host}:aud": "sts.amazonaws.com"}}},
        {"Effect": "Allow", "Action": ["sts:AssumeRole", "sts:TagSession"],
         "Principal": {"AWS": "arn:aws:iam::000000000000:user/keyless-agent"}}]
    assert role["policy_arns"] == ["arn:aws:iam::aws:policy/AmazonS3FullAccess"]
    assert config["users"] == [{"name": "keyless-agent", "credentials_file": "/etc/keyless/secrets/agent-credentials"}]
    assert [p["url"] for p in config["oidc_providers"]] == [f"https://{host}", "https://token.actions.githubusercontent.com"]
    assert config["oidc_providers"][0]["jwks_file"] == "cluster-issuer.jwks.json"
    docs = render("embedded")
    config = tomllib.loads(find(docs, "ConfigMap", "keyless-config")["data"]["keyless.toml"])
    assert json.loads(config["policies"][0]["document"])["Statement"][0]["Resource"] == "arn:aws:s3:::registry"
    assert config["users"][0]["secret_access_key_file"] == "/etc/keyless/users/ci-user/secret-access-key"
    assert json.loads(config["buckets"][0]["policy"]["document"])["Statement"][0]["Sid"] == "DenyPlainHttp"
    # The token and the cluster's CA go with the API server's in-cluster issuer alone: another
    # issuer (EKS's) is fetched as any provider, and never given the pod's token.
    docs = render(sets=("agent.enabled=true", "agent.associations[0]=a/b=r",
                        "iam.clusterIssuer.url=https://oidc.eks.eu-west-1.amazonaws.com/id/ABC"))
    config = find(docs, "ConfigMap", "keyless-config")["data"]["keyless.toml"]
    assert "token_file" not in config and "ca_bundle_file" not in config, config
    server = find(docs, "StatefulSet", "keyless")["spec"]["template"]["spec"]
    assert "cluster-issuer-access" not in [v["name"] for v in server["volumes"]]
    assert not [a for a in container(find(docs, "DaemonSet", "keyless-agent"), "agent")["args"]
                if a.startswith("--pod-identity-token-file")]
    docs = render(sets=("agent.enabled=true", "agent.associations[0]=a/b=r"))
    config = find(docs, "ConfigMap", "keyless-config")["data"]["keyless.toml"]
    assert 'token_file = "/var/run/secrets/keyless/cluster-issuer/token"' in config, config
    agent_args = container(find(docs, "DaemonSet", "keyless-agent"), "agent")["args"]
    assert "--pod-identity-token-file=/var/run/secrets/kubernetes.io/serviceaccount/token" in agent_args
    # STS's issuance limits are on by default; 0 turns one off.
    server_args = container(find(render("embedded"), "StatefulSet", "keyless"), "keyless")["args"]
    assert {"--sts-principal-rate=20", "--sts-role-rate=200"} <= set(server_args), server_args
    assert not [a for a in server_args if a.startswith("--sts-max-session-duration")]
    docs = render(sets=("server.stsLimits.principalRate=0", "server.stsLimits.maxSessionDuration=1h"))
    server_args = container(find(docs, "StatefulSet", "keyless"), "keyless")["args"]
    assert not [a for a in server_args if a.startswith("--sts-principal-rate")]
    assert "--sts-max-session-duration=1h" in server_args
    # The cluster's name is tagged on pods' sessions only when given.
    assert not [a for a in agent_args if a.startswith("--cluster-name")]
    docs = render(sets=("agent.enabled=true", "agent.clusterName=main"))
    assert "--cluster-name=main" in container(find(docs, "DaemonSet", "keyless-agent"), "agent")["args"]
    docs = render(sets=("agent.enabled=true", "agent.sessionTags=false"))
    assert "--no-session-tags" in container(find(docs, "DaemonSet", "keyless-agent"), "agent")["args"]
    # A string that TOML and JSON would both need escaped survives both.
    docs = render(sets=("iam.roles[0].name=r", "iam.roles[0].trust.agent=true",
                        'iam.roles[0].description=say "hi"\\, <then> \\\\ go'))
    config = tomllib.loads(find(docs, "ConfigMap", "keyless-config")["data"]["keyless.toml"])
    assert config["roles"][0]["description"] == 'say "hi", <then> \\ go'


def test_containerfile_puts_the_binary_where_the_chart_runs_it():
    text = (REPO / "Containerfile").read_text()
    assert "/usr/local/bin/keyless" in text
    assert re.search(r"^USER 65532:65532$", text, flags=re.M), text
    for d, spec in pods(render("everything")):
        for c in spec["containers"]:
            assert c["command"] == ["/usr/local/bin/keyless"], c["command"]
