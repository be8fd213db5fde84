"""`keyless serve` on a node's address (issue 13), driven by awscli from other network
namespaces (`pods.py`): the server listens on its namespace's own address, its OIDC issuer is
plain http there (with a warning), a wildcard listen asks for `--issuer`, the own issuer's
tokens are checked with the keys in memory whatever `--issuer` says (container credentials of
`https://keyless.example.com` in a namespace from which no packet can leave), and the own
issuer stays one OIDC provider across restarts with a changed `--issuer`.

Needs root (namespaces), iproute2, nftables and awscli.
"""

from __future__ import annotations

import json
import os
import re
import subprocess

import pytest

from pods import pod_net_fixture, pod_network_fixture  # noqa: F401 (fixtures)
from test_agent import CLIENT_TIMEOUT, need, read_log, stop, wait_for_line, write
from test_serve_sts import bucket_rw, trust

ACCOUNT = "000000000000"
PORT = 9000
WARNING = "the OIDC issuer is plain HTTP off this host"


class NsServer:
    """`keyless serve ARGS` in the namespace `pod`, logs in files of the pod's home."""

    def __init__(self, keyless_bin, pod, data_dir, *args, config=None):
        self.pod, self.data_dir = pod, str(data_dir)
        self.out = os.path.join(pod.home, "serve.out")
        self.log = os.path.join(pod.home, "serve.log")
        argv = [keyless_bin, "serve", "--data-dir", self.data_dir, "--admin-listen", "off", *args]
        if config:
            argv += ["--config", config]
        with open(self.out, "w") as out, open(self.log, "w") as err:
            self.proc = pod.popen(argv, env={"RUST_LOG": "info"}, stdout=out, stderr=err,
                                  stdin=subprocess.DEVNULL)
        try:
            self.endpoint = wait_for_line(self.out, r"keyless: S3 endpoint (\S+)\n", self.proc,
                                          "keyless serve").group(1)
            self.issuer = wait_for_line(self.out, r"OIDC issuer (\S+)\n", self.proc,
                                        "keyless serve").group(1)
        except AssertionError as e:
            self.stop()
            raise AssertionError(f"{e}\n{self.logs()}") from None
        self.credentials = os.path.join(self.data_dir, "root-credentials")

    def logs(self) -> str:
        return f"--- keyless serve log ---\n{read_log(self.log)}"

    def stop(self):
        stop(self.proc)


def aws(pod, endpoint, credentials, *args):
    """awscli in `pod` as the root user of the server whose credentials file is given."""
    env = {"AWS_DEFAULT_REGION": "us-east-1", "AWS_SHARED_CREDENTIALS_FILE": credentials}
    return pod.run(["aws", "--endpoint-url", endpoint, *args], env=env, timeout=CLIENT_TIMEOUT)


def ok(proc, server) -> str:
    assert proc.returncode == 0, f"{proc.args}\n{proc.stderr}\n{server.logs()}"
    return proc.stdout


def token(keyless_bin, data_dir, namespace, account, *extra) -> str:
    out = subprocess.run([keyless_bin, "token", "--namespace", namespace, "--service-account",
                          account, "--data-dir", str(data_dir), *extra],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def provider_key(url: str) -> str:
    return url.split("://", 1)[1].rstrip("/")


def assume_with_web_identity(client, server, keyless_bin, name="web"):
    """A role trusting the server's own issuer for gitlab/registry; its token (from
    `keyless token`) assumes it from `client`; returns the assumed role's ARN."""
    key = provider_key(server.issuer)
    provider = f"arn:aws:iam::{ACCOUNT}:oidc-provider/{key}"
    ok(aws(client, server.endpoint, server.credentials, "iam", "create-role", "--role-name", name,
           "--assume-role-policy-document",
           trust(provider, key, "system:serviceaccount:gitlab:registry")), server)
    jwt = token(keyless_bin, server.data_dir, "gitlab", "registry")
    out = ok(aws(client, server.endpoint, server.credentials, "sts",
                 "assume-role-with-web-identity", "--role-arn",
                 f"arn:aws:iam::{ACCOUNT}:role/{name}", "--role-session-name", "ci",
                 "--web-identity-token", jwt, "--output", "json"), server)
    return json.loads(out)["AssumedRoleUser"]["Arn"]


def test_listen_on_a_node_address_warns_and_serves_clients_elsewhere(pod_net, keyless_bin, tmp_path):
    need("aws")
    node, client = pod_net.pod("node"), pod_net.pod("client")
    server = NsServer(keyless_bin, node, tmp_path / "data", "--listen", f"{node.ip}:{PORT}")
    try:
        assert server.endpoint == f"http://{node.ip}:{PORT}"
        assert server.issuer == f"http://{node.ip}:{PORT}"
        log = read_log(server.log, tail=0)
        assert WARNING in log and "--tls-cert" in log and "https://" in log, server.logs()
        # The S3 endpoint, from another namespace.
        src = write(client, "report.txt", "from elsewhere\n" * 100)
        ok(aws(client, server.endpoint, server.credentials, "s3", "mb", "s3://node"), server)
        ok(aws(client, server.endpoint, server.credentials, "s3", "cp", src, "s3://node/r.txt"), server)
        listing = ok(aws(client, server.endpoint, server.credentials, "s3", "ls", "s3://node"), server)
        assert "r.txt" in listing
        # The issuer's documents name the node address, and its tokens assume roles.
        discovery = client.run(["curl", "-sS", f"{server.issuer}/.well-known/openid-configuration"])
        assert json.loads(discovery.stdout)["issuer"] == server.issuer, discovery.stderr
        providers = ok(aws(client, server.endpoint, server.credentials, "iam",
                           "list-open-id-connect-providers", "--output", "json"), server)
        assert [p["Arn"] for p in json.loads(providers)["OpenIDConnectProviderList"]] == \
            [f"arn:aws:iam::{ACCOUNT}:oidc-provider/{node.ip}:{PORT}"]
        arn = assume_with_web_identity(client, server, keyless_bin)
        assert arn == f"arn:aws:sts::{ACCOUNT}:assumed-role/web/ci"
    finally:
        server.stop()


def test_a_wildcard_listen_asks_for_the_issuer(pod_net, keyless_bin, tmp_path):
    need("aws")
    node, client = pod_net.pod("node"), pod_net.pod("client")
    refused = node.run([keyless_bin, "serve", "--listen", f"0.0.0.0:{PORT}", "--data-dir",
                        str(tmp_path / "data"), "--admin-listen", "off"], timeout=30)
    assert refused.returncode != 0
    assert "--issuer" in refused.stderr and f"0.0.0.0:{PORT}" in refused.stderr, refused.stderr
    assert "127.0.0.1" not in refused.stderr, refused.stderr

    # With --issuer, the wildcard listener serves the address the issuer names.
    issuer = f"http://{node.ip}:{PORT}"
    server = NsServer(keyless_bin, node, tmp_path / "data", "--listen", f"0.0.0.0:{PORT}",
                      "--issuer", issuer)
    try:
        assert server.issuer == issuer
        assert WARNING in read_log(server.log, tail=0), server.logs()
        server.endpoint = issuer
        ok(aws(client, server.endpoint, server.credentials, "s3", "mb", "s3://wild"), server)
        arn = assume_with_web_identity(client, server, keyless_bin)
        assert arn == f"arn:aws:sts::{ACCOUNT}:assumed-role/web/ci"
    finally:
        server.stop()


def pod_identity_config(bucket: str) -> str:
    imds_trust = json.dumps({"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:user/keyless-imds"},
        "Action": ["sts:AssumeRole", "sts:TagSession"]}]})
    return (f'[[roles]]\nname = "toolbox"\nassume_role_policy = {{ document = {json.dumps(imds_trust)} }}\n'
            f'[[roles.policies]]\nname = "rw"\ndocument = {json.dumps(bucket_rw(bucket))}\n'
            f'[[buckets]]\nname = "{bucket}"\n')


def test_container_credentials_of_an_https_issuer_use_the_keys_in_memory(pod_net, keyless_bin, tmp_path):
    """`--issuer https://keyless.example.com`, a name that resolves nowhere, in a namespace from
    which no packet can leave: container credentials (and STS) check the issuer's tokens with
    the keys in memory, and a network fetch would fail at once."""
    need("aws")
    alone = pod_net.isolated("alone")
    config = tmp_path / "keyless.toml"
    config.write_text(pod_identity_config("toolbox"))
    issuer = "https://keyless.example.com"
    server = NsServer(keyless_bin, alone, tmp_path / "data", "--listen", f"127.0.0.1:{PORT}",
                      "--issuer", issuer, "--imds-listen", "127.0.0.1:9181",
                      "--association", "gitlab/toolbox=toolbox", config=str(config))
    try:
        assert server.issuer == issuer
        assert WARNING not in read_log(server.log, tail=0)
        jwt = token(keyless_bin, server.data_dir, "gitlab", "toolbox", "--audience",
                    "pods.eks.amazonaws.com", "--pod-name", "toolbox-0", "--pod-uid", "7a1e-toolbox-0")
        token_file = write(alone, "token", jwt)
        env = {"AWS_DEFAULT_REGION": "us-east-1",
               "AWS_CONTAINER_CREDENTIALS_FULL_URI": "http://127.0.0.1:9181/v1/credentials",
               "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE": token_file}
        cli = ["aws", "--endpoint-url", server.endpoint]
        who = alone.run([*cli, "sts", "get-caller-identity", "--output", "json"], env=env,
                        timeout=CLIENT_TIMEOUT)
        assert who.returncode == 0, f"{who.stderr}\n{server.logs()}"
        assert json.loads(who.stdout)["Arn"] == \
            f"arn:aws:sts::{ACCOUNT}:assumed-role/toolbox/gitlab.toolbox-0"
        src = write(alone, "blob", b"in memory" * 100)
        put = alone.run([*cli, "s3", "cp", src, "s3://toolbox/blob"], env=env, timeout=CLIENT_TIMEOUT)
        assert put.returncode == 0, f"{put.stderr}\n{server.logs()}"
        # A token of another issuer's keys is still refused (the keys are checked, not skipped).
        forged = jwt.rsplit(".", 1)[0] + "." + "A" * 86
        refused = alone.run(["curl", "-sS", "-w", "\n%{http_code}", "-H", f"Authorization: {forged}",
                             "http://127.0.0.1:9181/v1/credentials"])
        assert refused.stdout.rsplit("\n", 1)[1] == "401", refused.stdout
        # STS too: the provider is the server's own, checked in memory.
        key = provider_key(issuer)
        provider = f"arn:aws:iam::{ACCOUNT}:oidc-provider/{key}"
        root = {"AWS_DEFAULT_REGION": "us-east-1", "AWS_SHARED_CREDENTIALS_FILE": server.credentials}
        made = alone.run([*cli, "iam", "create-role", "--role-name", "web", "--assume-role-policy-document",
                          trust(provider, key, "system:serviceaccount:gitlab:registry")], env=root)
        assert made.returncode == 0, made.stderr
        web = alone.run([*cli, "sts", "assume-role-with-web-identity", "--role-arn",
                         f"arn:aws:iam::{ACCOUNT}:role/web", "--role-session-name", "ci",
                         "--web-identity-token", token(keyless_bin, server.data_dir, "gitlab", "registry"),
                         "--output", "json"], env=root, timeout=CLIENT_TIMEOUT)
        assert web.returncode == 0, f"{web.stderr}\n{server.logs()}"
        log = read_log(server.log, tail=0)
        assert "keyless.example.com/.well-known" not in log and "IDPCommunication" not in log, log
        assert "cannot connect" not in log, log
    finally:
        server.stop()


def test_the_own_issuer_is_one_provider_across_restarts(pod_net, keyless_bin, tmp_path):
    """Port 0 makes a new default issuer URL at each start, and `--issuer` changes it: each
    time the one provider moves, audiences kept, and roles may trust it under its new name."""
    need("aws")
    alone = pod_net.isolated("alone")
    data = tmp_path / "data"
    seen = []
    for args in (["--listen", "127.0.0.1:0"], ["--listen", "127.0.0.1:0"],
                 ["--listen", "127.0.0.1:0", "--issuer", "https://keyless.example.com"],
                 ["--listen", "127.0.0.1:0", "--issuer", "https://keyless.example.com/"],
                 ["--listen", "127.0.0.1:0", "--issuer", "https://keyless.example.com/cluster-2"]):
        server = NsServer(keyless_bin, alone, data, *args)
        try:
            cli = ["aws", "--endpoint-url", server.endpoint]
            root = {"AWS_DEFAULT_REGION": "us-east-1", "AWS_SHARED_CREDENTIALS_FILE": server.credentials}
            out = alone.run([*cli, "iam", "list-open-id-connect-providers", "--output", "json"], env=root)
            assert out.returncode == 0, out.stderr
            listed = [p["Arn"] for p in json.loads(out.stdout)["OpenIDConnectProviderList"]]
            assert listed == [f"arn:aws:iam::{ACCOUNT}:oidc-provider/{provider_key(server.issuer)}"], \
                f"{args}: {listed}\n{server.logs()}"
            if not seen:
                # An audience the operator added stays with the provider when it moves.
                added = alone.run([*cli, "iam", "add-client-id-to-open-id-connect-provider",
                                   "--open-id-connect-provider-arn", listed[0], "--client-id",
                                   "pods.eks.amazonaws.com"], env=root)
                assert added.returncode == 0, added.stderr
            got = alone.run([*cli, "iam", "get-open-id-connect-provider", "--open-id-connect-provider-arn",
                             listed[0], "--output", "json"], env=root)
            assert got.returncode == 0, got.stderr
            assert sorted(json.loads(got.stdout)["ClientIDList"]) == ["pods.eks.amazonaws.com", "sts.amazonaws.com"]
            log = read_log(server.log, tail=0)
            if seen and provider_key(seen[-1]) != provider_key(server.issuer):
                assert "the OIDC issuer's URL changed" in log and provider_key(seen[-1]) in log, log
            seen.append(server.issuer)
            if len(seen) == 5:
                # The moved provider is the server's own: its tokens assume a role trusting it.
                key = provider_key(server.issuer)
                made = alone.run([*cli, "iam", "create-role", "--role-name", "web",
                                  "--assume-role-policy-document",
                                  trust(f"arn:aws:iam::{ACCOUNT}:oidc-provider/{key}", key,
                                        "system:serviceaccount:gitlab:registry")], env=root)
                assert made.returncode == 0, made.stderr
                web = alone.run([*cli, "sts", "assume-role-with-web-identity", "--role-arn",
                                 f"arn:aws:iam::{ACCOUNT}:role/web", "--role-session-name", "ci",
                                 "--web-identity-token",
                                 token(keyless_bin, data, "gitlab", "registry"), "--output", "json"],
                                env=root, timeout=CLIENT_TIMEOUT)
                assert web.returncode == 0, f"{web.stderr}\n{server.logs()}"
        finally:
            server.stop()
    assert seen[0] != seen[1], "port 0 gives each start its own default issuer"
    assert seen[2] == seen[3] == "https://keyless.example.com"
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+", seen[0])
