"""A kubelet and an API server, as far as the chart's containers can tell, for starting what
`helm template` renders exactly as rendered (test_chart_runs.py).

`Kubelet.start(docs, kind, name, container)` takes the pod template of a rendered workload and
runs its container's command, args and env in a pod of the `pods.py` harness (a network
namespace with its own address; the host's network for `hostNetwork: true`), as a kubelet
would:

- env: `value`, `valueFrom` (`fieldRef` from the downward API: spec.nodeName, status.hostIP,
  status.podIP, metadata.name, metadata.namespace; `secretKeyRef`, `configMapKeyRef`), then
  `$(VAR)` expanded in command and args, plus KUBERNETES_SERVICE_HOST/PORT and HOSTNAME;
- volumes at their mountPaths, each in a private mount namespace of that one process: configMap,
  secret and projected volumes written as the kubelet's atomic writer lays them out (`NAME ->
  ..data/NAME`, `..data -> ..TIMESTAMP`), with `defaultMode`/`mode`, and with an `fsGroup` the
  group and the kubelet's group-read bits (`0440` on read-only volumes); emptyDir and the
  StatefulSet's PersistentVolumeClaim as folders owned by the fsGroup (setgid); hostPath as the
  host's path (`FileOrCreate`); `readOnly` mounts read-only; the service account's token, CA
  and namespace at /var/run/secrets/kubernetes.io/serviceaccount unless
  automountServiceAccountToken is false;
- the root file system read-only when `readOnlyRootFilesystem`; the user, group and fsGroup of
  the security contexts (setpriv), no new privileges, and only the capabilities added (a root
  process keeps no others);
- cluster DNS as /etc/hosts (`SERVICE.NAMESPACE.svc` -> the pod behind it), bound over the
  host's for that process alone.

The image is the one the Containerfile builds: its `/usr/local/bin/keyless` is the binary under
test (the one substitution). What a real kubelet and API server do beyond this (admission order,
token projection by the TokenRequest API, image pulls, probes by the kubelet) is not here.

`FakeApi` is the API server those containers reach in-cluster: HTTPS with its own CA, a bearer
token required, `GET` lists and `watch=true` streams of pods (fieldSelector spec.nodeName),
namespaces and service accounts, single service accounts, Secrets (get, create, merge-patch),
mutating webhook configurations (get, JSON patch), and events (create); and, like a real API
server, its service-account issuer's discovery document and keys, to authenticated callers.
"""

from __future__ import annotations

import atexit
import base64
import datetime
import http.server
import ipaddress
import json
import os
import queue
import shlex
import shutil
import socketserver
import ssl
import subprocess
import tempfile
import threading
import time
import urllib.parse

import jsonpatch

import secret_scan

BINARY_IN_IMAGE = "/usr/local/bin/keyless"

# Empty folders this process made on the host as mount points for a container's tmpfs (the
# highest missing folder of a mountPath, such as /etc/keyless), shared by every Kubelet and
# removed at exit.
_ANCHORS: list[str] = []


@atexit.register
def _remove_anchors() -> None:
    for anchor in reversed(_ANCHORS):
        try:
            os.rmdir(anchor)
        except OSError:
            pass
SA_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"


# ---------------------------------------------------------------------------------------------
# The API server


def make_ca_and_cert(names: list[str], ips: list[str]) -> tuple[str, str, str]:
    """A CA and a serving certificate for `names` and `ips`: (ca_pem, cert_pem, key_pem)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "fake kubernetes CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                       content_commitment=False, key_encipherment=False, data_encipherment=False,
                                       key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    sans = [x509.DNSName(n) for n in names] + [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, (names or ips)[0])]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
            .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    pem = serialization.Encoding.PEM
    return (ca.public_bytes(pem).decode(), cert.public_bytes(pem).decode(),
            key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()).decode())


class FakeApi:
    """The Kubernetes API as the chart's containers use it, on https://HOST:PORT."""

    TOKEN = "fake-service-account-token"
    LISTS = {"pods": "PodList", "namespaces": "NamespaceList", "serviceaccounts": "ServiceAccountList"}

    def __init__(self, host: str, port: int = 443):
        self.host, self.port = host, port
        self.ca_pem, cert, key = make_ca_and_cert(
            ["kubernetes.default.svc", "kubernetes.default.svc.cluster.local"], [host])
        # The service-account issuer it serves (`serve_issuer`): URL, JWKS text, public key.
        self.issuer: tuple[str, str, object] | None = None
        self._dir = tempfile.mkdtemp(prefix="keyless-fake-api-")
        cert_file, key_file = os.path.join(self._dir, "tls.crt"), os.path.join(self._dir, "tls.key")
        open(cert_file, "w").write(cert)
        open(key_file, "w").write(key)
        self.lock = threading.Lock()
        self.version = 1
        self.objects: dict[str, dict[str, dict]] = {}
        self.watches: list[tuple[str, queue.Queue]] = []
        self.requests: list[str] = []
        self.events: list[dict] = []
        api = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_GET(self):
                api._answer(self, "GET")

            def do_POST(self):
                api._answer(self, "POST")

            def do_PATCH(self):
                api._answer(self, "PATCH")

            def do_PUT(self):
                api._answer(self, "PUT")

        class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
            daemon_threads = True
            allow_reuse_address = True

        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert_file, key_file)
        context.set_alpn_protocols(["http/1.1"])
        self.server = Server((host, port), Handler)
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        with self.lock:
            for _, q in self.watches:
                q.put(None)
        self.server.shutdown()
        self.server.server_close()
        shutil.rmtree(self._dir, ignore_errors=True)

    def serve_issuer(self, url: str, jwks: str, public_key) -> None:
        """Serves `url`'s discovery document and JWKS (at `/openid/v1/jwks` on its own address,
        as the API server's `jwks_uri` names it) to authenticated callers, and accepts the
        service-account tokens that key signs for its audience `url`, besides TOKEN."""
        self.issuer = (url, jwks, public_key)

    def _authenticated(self, header: str | None) -> bool:
        if header == f"Bearer {self.TOKEN}":
            return True
        if not (header or "").startswith("Bearer ") or self.issuer is None:
            return False
        import jwt

        url, _, public_key = self.issuer
        try:
            jwt.decode(header[7:], public_key, algorithms=["RS256"], audience=url, issuer=url)
        except jwt.PyJWTError:
            return False
        return True

    # -- state ----------------------------------------------------------------------------------

    @staticmethod
    def key(obj: dict) -> str:
        return f"{obj['metadata'].get('namespace', '')}/{obj['metadata']['name']}"

    def put(self, resource: str, obj: dict, kind: str = "ADDED") -> None:
        """Stores `obj` in `resource` and tells the watches."""
        with self.lock:
            self.version += 1
            obj = json.loads(json.dumps(obj))
            obj["metadata"]["resourceVersion"] = str(self.version)
            existed = self.key(obj) in self.objects.setdefault(resource, {})
            self.objects[resource][self.key(obj)] = obj
            event = {"type": "MODIFIED" if existed and kind == "ADDED" else kind, "object": obj}
            for watched, q in self.watches:
                if watched == resource:
                    q.put(event)

    def get(self, resource: str, key: str) -> dict | None:
        with self.lock:
            return json.loads(json.dumps(self.objects.get(resource, {}).get(key))) if key in self.objects.get(resource, {}) else None

    # -- HTTP -----------------------------------------------------------------------------------

    def _send(self, handler, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)

    def _status(self, handler, code: int, reason: str) -> None:
        self._send(handler, code, {"apiVersion": "v1", "kind": "Status", "status": "Failure",
                                   "reason": reason, "code": code, "message": reason})

    def _answer(self, handler, method: str) -> None:
        url = urllib.parse.urlsplit(handler.path)
        query = urllib.parse.parse_qs(url.query)
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length) if length else b""
        authenticated = self._authenticated(handler.headers.get("Authorization"))
        with self.lock:
            self.requests.append(f"{method} {handler.path}" + ("" if authenticated else " (refused: 401)"))
        if not authenticated:
            return self._status(handler, 401, "Unauthorized")
        parts = url.path.strip("/").split("/")
        if method == "GET" and self.issuer and url.path == "/.well-known/openid-configuration":
            return self._send(handler, 200, {
                "issuer": self.issuer[0], "jwks_uri": f"https://{self.host}:{self.port}/openid/v1/jwks",
                "response_types_supported": ["id_token"], "subject_types_supported": ["public"],
                "id_token_signing_alg_values_supported": ["RS256"]})
        if method == "GET" and self.issuer and url.path == "/openid/v1/jwks":
            return self._send(handler, 200, json.loads(self.issuer[1]))
        if method == "GET" and len(parts) == 3 and parts[:2] == ["api", "v1"] and parts[2] in self.LISTS:
            resource = parts[2]
            node = next((s.split("=", 1)[1] for s in query.get("fieldSelector", [""])[0].split(",")
                         if s.startswith("spec.nodeName=")), None)

            def wanted(obj):
                return node is None or obj.get("spec", {}).get("nodeName") == node

            if query.get("watch") == ["true"] or query.get("watch") == ["1"]:
                return self._watch(handler, resource, wanted)
            with self.lock:
                items = [o for o in self.objects.get(resource, {}).values() if wanted(o)]
                version = str(self.version)
            return self._send(handler, 200, {"apiVersion": "v1", "kind": self.LISTS[resource],
                                             "metadata": {"resourceVersion": version}, "items": items})
        if method == "GET" and len(parts) == 6 and parts[:3] == ["api", "v1", "namespaces"] and parts[4] == "serviceaccounts":
            found = self.get("serviceaccounts", f"{parts[3]}/{parts[5]}")
            return self._send(handler, 200, found) if found else self._status(handler, 404, "NotFound")
        if method == "POST" and len(parts) == 5 and parts[:3] == ["api", "v1", "namespaces"] and parts[4] == "events":
            event = json.loads(body)
            with self.lock:
                self.events.append(event)
            return self._send(handler, 201, event)
        if len(parts) >= 5 and parts[:3] == ["api", "v1", "namespaces"] and parts[4] == "secrets":
            namespace = parts[3]
            if method == "POST" and len(parts) == 5:
                secret = json.loads(body)
                secret["metadata"]["namespace"] = namespace
                if self.get("secrets", self.key(secret)):
                    return self._status(handler, 409, "AlreadyExists")
                self.put("secrets", secret)
                return self._send(handler, 201, self.get("secrets", self.key(secret)))
            if len(parts) == 6:
                key = f"{namespace}/{parts[5]}"
                secret = self.get("secrets", key)
                if secret is None:
                    return self._status(handler, 404, "NotFound")
                if method == "PATCH":
                    secret = jsonpatch.JsonPatch([]).apply(secret)  # a copy
                    merge(secret, json.loads(body))
                    self.put("secrets", secret)
                    secret = self.get("secrets", key)
                return self._send(handler, 200, secret)
        if parts[:4] == ["apis", "admissionregistration.k8s.io", "v1", "mutatingwebhookconfigurations"] and len(parts) == 5:
            key = f"/{parts[4]}"
            config = self.get("mutatingwebhookconfigurations", key)
            if config is None:
                return self._status(handler, 404, "NotFound")
            if method == "PATCH":
                try:
                    config = jsonpatch.JsonPatch(json.loads(body)).apply(config)
                except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException):
                    return self._status(handler, 422, "Invalid")
                self.put("mutatingwebhookconfigurations", config)
                config = self.get("mutatingwebhookconfigurations", key)
            return self._send(handler, 200, config)
        return self._status(handler, 404, "NotFound")

    def _watch(self, handler, resource: str, wanted) -> None:
        """A chunked stream of watch events, one JSON object per line, until the server closes."""
        q: queue.Queue = queue.Queue()
        with self.lock:
            self.watches.append((resource, q))
        handler.send_response(200)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Transfer-Encoding", "chunked")
        handler.end_headers()
        try:
            while True:
                try:
                    event = q.get(timeout=1)
                except queue.Empty:
                    continue
                if event is None:
                    break
                if not wanted(event["object"]):
                    continue
                line = json.dumps(event).encode() + b"\n"
                handler.wfile.write(f"{len(line):x}\r\n".encode() + line + b"\r\n")
                handler.wfile.flush()
            handler.wfile.write(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError, OSError):
            pass
        finally:
            with self.lock:
                self.watches.remove((resource, q))

    def watched(self, resource: str, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while not any(r == resource for r, _ in list(self.watches)):
            assert time.monotonic() < deadline, f"nobody watches {resource}; requests: {self.requests[-20:]}"
            time.sleep(0.05)


def pod_of(workload: dict, pod_name: str) -> dict:
    """The pod a controller makes of `workload`'s template: a StatefulSet's also gets a volume
    per claim template, bound to the claim `TEMPLATE-POD`."""
    pod = json.loads(json.dumps(workload["spec"]["template"]))
    for claim in workload["spec"].get("volumeClaimTemplates", []):
        name = claim["metadata"]["name"]
        pod["spec"].setdefault("volumes", []).append(
            {"name": name, "persistentVolumeClaim": {"claimName": f"{name}-{pod_name}"}})
    return pod


def folder_for(path: str, fs_group: int | None, mode: int, group_writes: bool = False) -> None:
    """A volume's folder as the kubelet leaves it: with an fsGroup, the group's and setgid (and
    group-writable for a writable volume); else `mode`."""
    if fs_group is None:
        os.chmod(path, mode)
        return
    os.chown(path, 0, fs_group)
    os.chmod(path, 0o2775 if group_writes else 0o2755)


def merge(target: dict, patch: dict) -> None:
    """A JSON merge patch (RFC 7386), in place."""
    for k, v in patch.items():
        if v is None:
            target.pop(k, None)
        elif isinstance(v, dict) and isinstance(target.get(k), dict):
            merge(target[k], v)
        else:
            target[k] = v


# ---------------------------------------------------------------------------------------------
# The kubelet


class RunningContainer:
    def __init__(self, name: str, proc: subprocess.Popen, log: str, ip: str):
        self.name, self.proc, self.log_path, self.ip = name, proc, log, ip

    def logs(self) -> str:
        with open(self.log_path, errors="replace") as f:
            return f"--- {self.name} ---\n{f.read()[-6000:]}"

    def stop(self, timeout: float = 30) -> int:
        """SIGTERM, as the kubelet stops a container, then SIGKILL after `timeout`."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


class Kubelet:
    """Starts rendered containers on one node: the host (its network is the node's, at
    `node_ip`) with pods in `net`."""

    def __init__(self, net, api: FakeApi, objects: list[dict], workdir: str, node_name: str = "node-1"):
        self.net, self.api, self.workdir, self.node_name = net, api, workdir, node_name
        self.node_ip = net.gateway
        self.objects = objects  # the rendered Secrets and ConfigMaps, and those the test adds
        self.hosts: dict[str, str] = {}
        self.hosts_file = os.path.join(workdir, "hosts")
        self._write_hosts()
        self.running: list[RunningContainer] = []
        self._serial = 0

    def close(self):
        for c in self.running:
            c.stop(timeout=10)

    # -- cluster DNS ------------------------------------------------------------------------------

    def service(self, name: str, namespace: str, ip: str) -> None:
        """`NAME.NAMESPACE.svc` (and `.svc.cluster.local`) resolve to `ip` in every container."""
        for host in (f"{name}.{namespace}.svc", f"{name}.{namespace}.svc.cluster.local", f"{name}.{namespace}"):
            self.hosts[host] = ip
        self._write_hosts()

    def _write_hosts(self) -> None:
        lines = ["127.0.0.1 localhost", "::1 localhost"] + [f"{ip} {h}" for h, ip in sorted(self.hosts.items())]
        # In place: the file bound over /etc/hosts is this inode.
        with open(self.hosts_file, "a+") as f:
            f.seek(0)
            f.truncate()
            f.write("\n".join(lines) + "\n")

    # -- objects ----------------------------------------------------------------------------------

    def _object(self, kind: str, name: str, namespace: str) -> dict:
        for o in self.objects:
            if o["kind"] == kind and o["metadata"]["name"] == name and o["metadata"].get("namespace", namespace) == namespace:
                return o
        if (kind, name) == ("ConfigMap", "kube-root-ca.crt"):
            # What the API server's root-ca publisher puts in every namespace.
            return {"kind": kind, "metadata": {"name": name, "namespace": namespace},
                    "data": {"ca.crt": self.api.ca_pem}}
        raise AssertionError(f"the pod needs {kind} {namespace}/{name}, which nothing provides")

    def _data(self, kind: str, name: str, namespace: str) -> dict[str, bytes]:
        o = self._object(kind, name, namespace)
        if kind == "Secret":
            data = {k: base64.b64decode(v) for k, v in (o.get("data") or {}).items()}
            data.update({k: v.encode() for k, v in (o.get("stringData") or {}).items()})
            return data
        return {k: v.encode() for k, v in (o.get("data") or {}).items()}

    # -- volumes ----------------------------------------------------------------------------------

    def _atomic_volume(self, files: dict[str, tuple[bytes, int]], fs_group: int | None) -> str:
        """A folder laid out as the kubelet's atomic writer does, with the kubelet's ownership
        for `fs_group` (read-only volume: group read added)."""
        self._serial += 1
        root = os.path.join(self.workdir, f"vol{self._serial}")
        stamp = f"..{time.strftime('%Y_%m_%d_%H_%M_%S')}.{self._serial}"
        os.makedirs(os.path.join(root, stamp))
        for path, (content, mode) in files.items():
            full = os.path.join(root, stamp, path)
            os.makedirs(os.path.dirname(full), exist_ok=True)
            with open(full, "wb") as f:
                f.write(content)
            os.chmod(full, mode | (0o440 if fs_group is not None else 0))
            if fs_group is not None:
                os.chown(full, 0, fs_group)
        os.symlink(stamp, os.path.join(root, "..data"))
        for top in {p.split("/")[0] for p in files}:
            os.symlink(f"..data/{top}", os.path.join(root, top))
        for d in (root, os.path.join(root, stamp)):
            folder_for(d, fs_group, 0o755)
        return root

    def _items(self, data: dict[str, bytes], items: list[dict] | None, default_mode: int) -> dict[str, tuple[bytes, int]]:
        if not items:
            return {k: (v, default_mode) for k, v in data.items()}
        out = {}
        for item in items:
            assert item["key"] in data, f"the volume names key {item['key']}, which its object lacks"
            out[item["path"]] = (data[item["key"]], item.get("mode", default_mode))
        return out

    def _volume(self, volume: dict, namespace: str, fs_group: int | None, service_account: str) -> str:
        if "configMap" in volume:
            cm = volume["configMap"]
            return self._atomic_volume(self._items(self._data("ConfigMap", cm["name"], namespace), cm.get("items"),
                                                   cm.get("defaultMode", 0o644)), fs_group)
        if "secret" in volume:
            s = volume["secret"]
            return self._atomic_volume(self._items(self._data("Secret", s["secretName"], namespace), s.get("items"),
                                                   s.get("defaultMode", 0o644)), fs_group)
        if "projected" in volume:
            files = {}
            mode = volume["projected"].get("defaultMode", 0o644)
            for source in volume["projected"]["sources"]:
                if "serviceAccountToken" in source:
                    t = source["serviceAccountToken"]
                    token = self.token(namespace, service_account, t.get("audience"), t.get("expirationSeconds", 3600))
                    files[t["path"]] = (token.encode(), mode)
                elif "configMap" in source:
                    files.update(self._items(self._data("ConfigMap", source["configMap"]["name"], namespace),
                                             source["configMap"].get("items"), mode))
                elif "secret" in source:
                    files.update(self._items(self._data("Secret", source["secret"]["name"], namespace),
                                             source["secret"].get("items"), mode))
                elif "downwardAPI" in source:
                    raise AssertionError("downwardAPI volumes are not emulated")
            return self._atomic_volume(files, fs_group)
        if "emptyDir" in volume or "persistentVolumeClaim" in volume:
            self._serial += 1
            d = os.path.join(self.workdir, f"vol{self._serial}")
            os.makedirs(d)
            folder_for(d, fs_group, 0o777, group_writes=True)
            return d
        if "hostPath" in volume:
            hp = volume["hostPath"]
            if hp.get("type") == "FileOrCreate" and not os.path.exists(hp["path"]):
                open(hp["path"], "a").close()
            return hp["path"]
        raise AssertionError(f"volume {volume['name']}: kind not emulated")

    # -- tokens -----------------------------------------------------------------------------------

    # Signs service-account tokens as the cluster's issuer: set by the test (issuer URL, RSA key).
    issuer: str | None = None
    issuer_key = None
    issuer_kid = "cluster"

    def token(self, namespace: str, service_account: str, audience: str | None, lifetime: int) -> str:
        """A projected service-account token, as the TokenRequest API signs it."""
        import jwt

        if self.issuer_key is None:
            return FakeApi.TOKEN
        now = int(time.time())
        claims = {"iss": self.issuer, "sub": f"system:serviceaccount:{namespace}:{service_account}",
                  "aud": [audience] if audience else ["https://kubernetes.default.svc.cluster.local"],
                  "iat": now, "nbf": now, "exp": now + lifetime,
                  "kubernetes.io": {"namespace": namespace, "serviceaccount": {"name": service_account, "uid": "sa-uid"},
                                    "pod": {"name": "pod", "uid": "pod-uid"}}}
        return jwt.encode(claims, self.issuer_key, algorithm="RS256", headers={"kid": self.issuer_kid})

    # -- starting ---------------------------------------------------------------------------------

    def _prepare(self, pod: dict, container: str, name: str, namespace: str, netpod=None,
                 pod_obj_name: str | None = None) -> dict:
        """Everything a kubelet gives `container` of the pod spec `pod`: its pod (a new network
        namespace unless `hostNetwork` or `netpod`), mounts, env, argv and privileges."""
        spec = pod["spec"]
        c = next(x for x in spec["containers"] if x["name"] == container)
        psc = spec.get("securityContext") or {}
        csc = c.get("securityContext") or {}
        if spec.get("hostNetwork", False):
            netpod, pod_ip = None, self.node_ip
        else:
            netpod = netpod or self.net.pod(name)
            pod_ip = netpod.ip
        service_account = spec.get("serviceAccountName", "default")
        fs_group = psc.get("fsGroup")
        run_as = csc.get("runAsUser", psc.get("runAsUser", 0))
        run_group = csc.get("runAsGroup", psc.get("runAsGroup", 0 if run_as == 0 else run_as))

        mounts: list[tuple[str, str, bool]] = []
        volumes = {v["name"]: v for v in spec.get("volumes", [])}
        for m in c.get("volumeMounts", []):
            source = self._volume(volumes[m["name"]], namespace, fs_group, service_account)
            mounts.append((source, m["mountPath"], bool(m.get("readOnly"))))
        if spec.get("automountServiceAccountToken", True) and not any(p == SA_DIR for _, p, _ in mounts):
            # The API server's own credential for this pod (the fake checks the bearer, not a
            # signature), its CA and the namespace, as kube-root-ca.crt and the token projection give them.
            files = {"token": (FakeApi.TOKEN.encode(), 0o644), "ca.crt": (self.api.ca_pem.encode(), 0o644),
                     "namespace": (namespace.encode(), 0o644)}
            mounts.append((self._atomic_volume(files, fs_group), SA_DIR, True))
        mounts.append((self.hosts_file, "/etc/hosts", True))

        env = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
               "HOSTNAME": name, "HOME": "/",
               "KUBERNETES_SERVICE_HOST": self.api.host, "KUBERNETES_SERVICE_PORT": str(self.api.port)}
        fields = {"spec.nodeName": self.node_name, "status.hostIP": self.node_ip, "status.podIP": pod_ip,
                  "metadata.name": pod_obj_name or name, "metadata.namespace": namespace,
                  "spec.serviceAccountName": service_account}
        for e in c.get("env", []):
            source = e.get("valueFrom", {})
            if "value" in e:
                env[e["name"]] = expand(e["value"], env)
            elif "fieldRef" in source:
                env[e["name"]] = fields[source["fieldRef"]["fieldPath"]]
            elif "secretKeyRef" in source:
                ref = source["secretKeyRef"]
                env[e["name"]] = self._data("Secret", ref["name"], namespace)[ref["key"]].decode()
            elif "configMapKeyRef" in source:
                ref = source["configMapKeyRef"]
                env[e["name"]] = self._data("ConfigMap", ref["name"], namespace)[ref["key"]].decode()
            else:
                raise AssertionError(f"env {e['name']}: source not emulated")
        argv = [expand(a, env) for a in c.get("command", []) + c.get("args", [])]
        caps = (csc.get("capabilities") or {}).get("add", [])
        groups = [g for g in [fs_group, *psc.get("supplementalGroups", [])] if g is not None] or [run_group]
        priv = ["setpriv", f"--reuid={run_as}", f"--regid={run_group}", f"--groups={','.join(map(str, groups))}",
                "--bounding-set=-all" + "".join(f",+{cap.lower()}" for cap in caps), "--inh-caps=-all"]
        if csc.get("allowPrivilegeEscalation") is False:
            priv.append("--no-new-privs")
        return {"netpod": netpod, "ip": pod_ip, "mounts": mounts, "env": env, "argv": argv, "priv": priv,
                "read_only_root": bool(csc.get("readOnlyRootFilesystem"))}

    def _command(self, prepared: dict, argv: list[str], env: dict[str, str]) -> list[str]:
        script = self._mount_script(prepared["mounts"], prepared["read_only_root"])
        inner = [*prepared["priv"], "env", "-i", *(f"{k}={v}" for k, v in env.items()), *argv]
        if prepared["netpod"] is not None:
            inner = ["ip", "netns", "exec", prepared["netpod"].netns, *inner]
        return ["unshare", "--mount", "--propagation", "private", "--", "sh", "-ec", script + "exec " + shlex.join(inner)]

    def start(self, pod: dict, container: str, name: str, namespace: str, pod_obj_name: str | None = None,
              ready: tuple[str, int, str] | None = None) -> RunningContainer:
        """Runs `container` of the pod spec `pod` (a rendered workload's `spec.template`) as
        pod `name`, the image's binary being the one under test; `ready` is (host, port, path)
        polled until 200 (host `$(POD_IP)`: the pod's address)."""
        prepared = self._prepare(pod, container, name, namespace, pod_obj_name=pod_obj_name)
        argv = prepared["argv"]
        assert argv and argv[0] == BINARY_IN_IMAGE, f"the image runs {BINARY_IN_IMAGE}, not {argv[:1]}"
        argv[0] = os.environ.get("KEYLESS_BIN", str(REPO_BINARY))
        log = os.path.join(self.workdir, f"{name}.log")
        proc = subprocess.Popen(self._command(prepared, argv, prepared["env"]), stdout=open(log, "w"),
                                stderr=subprocess.STDOUT, cwd="/")
        # The container's output is Keyless's log: the session's secret scan reads it too.
        secret_scan.keep_log(log, f"pod-{name}-{os.getpid()}-{time.monotonic_ns()}.log")
        running = RunningContainer(name, proc, log, prepared["ip"])
        self.running.append(running)
        if prepared["netpod"] is not None:
            prepared["netpod"]._procs.append(proc)
        if ready:
            wait_http(prepared["ip"] if ready[0] == "$(POD_IP)" else ready[0], ready[1], ready[2], running)
        return running

    def exec(self, pod: dict, container: str, netpod, namespace: str, argv: list[str],
             timeout: float = 120) -> subprocess.CompletedProcess:
        """`kubectl exec POD -c CONTAINER -- ARGV`: `argv` with the container's env, mounts and
        user, in `netpod`; the host's PATH (the clients under test live there) and a HOME of
        the pod's. The image's binary is the one under test, as in `start`."""
        prepared = self._prepare(pod, container, netpod.name, namespace, netpod=netpod)
        env = {**prepared["env"], "PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": netpod.home}
        if argv[0] == BINARY_IN_IMAGE:
            argv = [os.environ.get("KEYLESS_BIN", str(REPO_BINARY)), *argv[1:]]
        return subprocess.run(self._command(prepared, argv, env), capture_output=True, text=True,
                              timeout=timeout, cwd="/")

    def _anchor(self, path: str, is_dir: bool) -> str | None:
        """The highest folder of `path` (a folder itself when `is_dir`) missing on the host, made
        empty on the host as a mount point for a tmpfs in the container's namespace; None when
        all of them exist."""
        parts = path.strip("/").split("/")
        for i in range(1, len(parts) + (1 if is_dir else 0)):
            prefix = "/" + "/".join(parts[:i])
            if prefix in _ANCHORS:
                return prefix
            if not os.path.exists(prefix):
                os.makedirs(prefix)
                _ANCHORS.append(prefix)
                return prefix
        return None

    def _mount_script(self, mounts: list[tuple[str, str, bool]], read_only_root: bool) -> str:
        lines, tmpfs = [], set()
        for source, target, _ in mounts:
            if os.path.exists(target) and target not in _ANCHORS:
                continue
            anchor = self._anchor(target, os.path.isdir(source))
            # A made-up folder that is the target itself takes the bind mount as it is.
            if anchor and anchor != target and anchor not in tmpfs:
                tmpfs.add(anchor)
                lines.append(f"mount -t tmpfs -o mode=755 tmpfs {shlex.quote(anchor)}")
        for source, target, _ in mounts:
            if os.path.isdir(source):
                lines.append(f"mkdir -p {shlex.quote(target)}")
            elif not os.path.exists(target):
                lines.append(f"mkdir -p {shlex.quote(os.path.dirname(target))}; : > {shlex.quote(target)}")
            lines.append(f"mount --bind {shlex.quote(source)} {shlex.quote(target)}")
        for _, target, ro in mounts:
            if ro:
                lines.append(f"mount -o remount,bind,ro {shlex.quote(target)}")
        for anchor in sorted(tmpfs):
            lines.append(f"mount -o remount,ro {shlex.quote(anchor)}")
        if read_only_root:
            lines.append("mount -o remount,bind,ro /")
        return "".join(f"{ln}\n" for ln in lines)


REPO_BINARY = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "target", "debug", "keyless")


def expand(value: str, env: dict[str, str]) -> str:
    """Kubernetes' `$(VAR)` expansion: a defined variable is replaced, `$$` escapes, an
    undefined reference stays as written."""
    out, i = [], 0
    while i < len(value):
        if value.startswith("$$", i):
            out.append("$")
            i += 2
        elif value.startswith("$(", i) and ")" in value[i:]:
            end = value.index(")", i)
            name = value[i + 2:end]
            out.append(env[name] if name in env else value[i:end + 1])
            i = end + 1
        else:
            out.append(value[i])
            i += 1
    return "".join(out)


def wait_http(host: str, port: int, path: str, running: RunningContainer, timeout: float = 60) -> None:
    import urllib.error
    import urllib.request

    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        if running.proc.poll() is not None:
            raise AssertionError(f"{running.name} exited {running.proc.returncode}\n{running.logs()}")
        try:
            with urllib.request.urlopen(f"http://{host}:{port}{path}", timeout=2) as r:
                if r.status == 200:
                    return
        except (urllib.error.URLError, OSError) as e:
            last = e
        time.sleep(0.2)
    raise AssertionError(f"{running.name}: http://{host}:{port}{path} not ready: {last}\n{running.logs()}")
