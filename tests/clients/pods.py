"""Pods for the `keyless agent` tests: Linux network namespaces wired like a Kubernetes node.

Each pod is a network namespace with its own IP on a private bridge. Its traffic to the EC2
instance metadata address 169.254.169.254:80 is DNATed to a server on the host's loopback, the
way kube2iam's iptables rule sends it to the agent, so the server sees the pod's own source IP
and can answer each pod for its own role. Real clients run unmodified inside the pods.

    net = Network()                          # bridge kl<tag> with 10.203.X.1/24
    net.route_imds(8181)                     # pods' 169.254.169.254:80 -> host 127.0.0.1:8181
    endpoint = net.expose(9000)              # pods' 10.203.X.1:9000 -> host 127.0.0.1:9000
    a = net.pod("a")                         # netns, veth on the bridge, 10.203.X.2/24
    a.run(["curl", "-s", "http://169.254.169.254/latest/meta-data/"])
    a.delete(); net.pod("a2", ip=a.ip)       # an IP is reusable once its pod is gone
    alone = net.isolated("alone")            # netns with lo alone: no packet leaves it
    net.close()                              # pods, links, rules, bridge: all gone

Wiring (all of it needed, none of it more):
- bridge kl<tag> holds the gateway address; each pod gets a veth pair, the host end enslaved to
  the bridge, the pod end named eth0 with the pod's /24 address, lo up, default route via the
  gateway;
- one nftables table `ip keyless_pods_<tag>` with a nat prerouting chain that DNATs, only for
  packets arriving on the bridge, 169.254.169.254:80 and each exposed gateway port to 127.0.0.1;
- `net.ipv4.conf.<bridge>.route_localnet=1`, else the kernel drops packets routed to 127.0.0.1
  from a non-loopback interface (and replies sourced from it). The packets are delivered
  locally, not forwarded, so neither ip_forward nor FORWARD rules matter, and rp_filter passes
  in any mode since a pod's address is routed back through the bridge it came in on.
Pods reach nothing else: no NAT to the outside, and the host's resolver (shared
/etc/resolv.conf) is unreachable, so a DNS lookup in a pod hangs until it times out. Give
clients IP addresses (path-style S3 URLs: a virtual-host bucket name is a DNS lookup).

Why nft and not iptables: on Debian bookworm `iptables` (1.8.9, nf_tables backend by default),
`iptables-legacy` and `nft` (1.0.6) all work here. A private nft table is created and replaced
atomically, is removed with one command whatever rules it holds, never touches anyone else's
chains (Docker's, kube-proxy's), and carries the run's tag in its name, which is how leftovers
of a crashed run are found. Needs the Debian packages iproute2 and nftables, and root.

Names carry the tag <pid in hex>x<n> of the process that made the network: bridge kl<tag>,
host veths kv<tag>.<last octet> (at most 15 characters, the kernel's limit), namespaces
kl<tag>-<pod name>, table keyless_pods_<tag>. A new Network first removes everything whose
owning process is gone; networks of live processes (parallel runs) are left alone, and each run
takes a /24 of 10.203.0.0/16 no interface uses yet, under a lock file.
"""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import itertools
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile

import pytest

IMDS_IP = "169.254.169.254"
SUPERNET = ipaddress.ip_network("10.203.0.0/16")
LOCK_FILE = "/run/keyless-pods.lock"
# Names of the things a network makes: its tag is group 1.
NAME_RE = re.compile(r"^(?:kl|kv|keyless_pods_)([0-9a-f]+x[0-9]+)(?:$|[.-])")
_serial = itertools.count()


def sh(*argv: str, input: str | None = None, check: bool = True) -> subprocess.CompletedProcess:
    """Run a host command, raising with its stderr when it fails and `check` is set."""
    proc = subprocess.run(argv, input=input, capture_output=True, text=True, timeout=30)
    if check and proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: exit {proc.returncode}: {proc.stderr.strip()}")
    return proc


def unavailable() -> str | None:
    """Why pods cannot be made on this machine, or None when they can."""
    if os.geteuid() != 0:
        return "pods need root (network namespaces, bridge, nftables)"
    for tool in ("ip", "nft"):
        if not shutil.which(tool):
            return f"`{tool}` is missing: apt-get install -y iproute2 nftables"
    probe = f"klprobe{os.getpid():x}"
    if sh("ip", "netns", "add", probe, check=False).returncode != 0:
        return "network namespaces are unavailable (`ip netns add` fails)"
    sh("ip", "netns", "del", probe, check=False)
    if sh("nft", "list", "tables", check=False).returncode != 0:
        return "nftables is unavailable (`nft list tables` fails)"
    return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _netns_names() -> list[str]:
    out = sh("ip", "-j", "netns", "list", check=False).stdout.strip()
    return [ns["name"] for ns in json.loads(out)] if out else []


def _link_names() -> list[str]:
    return [link["ifname"] for link in json.loads(sh("ip", "-j", "link", "show").stdout)]


def _nft_tables() -> list[str]:
    names = []
    for line in sh("nft", "list", "tables").stdout.splitlines():
        family, name = line.split()[1:3]
        if family == "ip" and name.startswith("keyless_pods_"):
            names.append(name)
    return names


def _remove(tag: str) -> None:
    """Remove every namespace, link and table of the network tagged `tag`."""
    for ns in _netns_names():
        if ns.startswith(f"kl{tag}-"):
            _delete_netns(ns)
    for link in _link_names():
        if link == f"kl{tag}" or link.startswith(f"kv{tag}."):
            sh("ip", "link", "del", link, check=False)
    sh("nft", "delete", "table", "ip", f"keyless_pods_{tag}", check=False)


def _delete_netns(ns: str) -> None:
    """Kill whatever still runs in the namespace, then delete it (its veth goes with it)."""
    for pid in sh("ip", "netns", "pids", ns, check=False).stdout.split():
        with contextlib.suppress(ProcessLookupError):
            os.kill(int(pid), signal.SIGKILL)
    sh("ip", "netns", "del", ns, check=False)


def remove_leftovers() -> None:
    """Remove the networks of processes that are gone (crashed or killed runs)."""
    tags = {m.group(1) for name in _netns_names() + _link_names() + _nft_tables()
            if (m := NAME_RE.match(name))}
    for tag in tags:
        if not _alive(int(tag.split("x")[0], 16)):
            _remove(tag)


def _free_subnet() -> ipaddress.IPv4Network:
    used = [ipaddress.ip_interface(f"{a['local']}/{a['prefixlen']}").network
            for link in json.loads(sh("ip", "-j", "-4", "addr", "show").stdout)
            for a in link.get("addr_info", [])]
    for subnet in SUPERNET.subnets(new_prefix=24):
        if not any(subnet.overlaps(u) for u in used):
            return subnet
    raise RuntimeError(f"no free /24 left in {SUPERNET}")


class Pod:
    """One pod: a network namespace with eth0 on the bridge at `ip`, default route via it; with
    no `ip`, a namespace with its loopback alone (no route anywhere)."""

    def __init__(self, network: Network, name: str, ip: ipaddress.IPv4Address | None):
        self.network, self.name, self.ip = network, name, str(ip) if ip else None
        self.netns = f"kl{network.tag}-{name}"
        self.veth = f"kv{network.tag}.{ip.packed[3]}" if ip else None
        self.home = os.path.join(network.workdir, name)
        self._procs: list[subprocess.Popen] = []
        os.makedirs(self.home, exist_ok=True)
        sh("ip", "netns", "add", self.netns)
        if ip is None:
            try:
                sh("ip", "-n", self.netns, "link", "set", "lo", "up")
            except BaseException:
                self.delete()
                raise
            return
        try:
            sh("ip", "link", "add", self.veth, "type", "veth", "peer", "name", "eth0", "netns", self.netns)
            sh("ip", "link", "set", self.veth, "master", network.bridge, "up")
            inside = ("ip", "-n", self.netns)
            sh(*inside, "link", "set", "lo", "up")
            sh(*inside, "addr", "add", f"{ip}/{network.subnet.prefixlen}", "dev", "eth0")
            sh(*inside, "link", "set", "eth0", "up")
            sh(*inside, "route", "add", "default", "via", network.gateway)
        except BaseException:
            self.delete()
            raise

    def __repr__(self) -> str:
        return f"Pod({self.name!r}, ip={self.ip!r})"

    def env(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        """A clean environment: PATH, C.UTF-8 locale and the pod's own empty HOME, plus `extra`.

        Nothing is inherited from the host (no AWS_* variables, no ~/.aws), so clients find no
        credentials but the metadata service's."""
        env = {"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
               "LANG": "C.UTF-8", "HOME": self.home}
        env.update(extra or {})
        return env

    def _argv(self, argv: list[str]) -> list[str]:
        return ["ip", "netns", "exec", self.netns, *argv]

    def run(self, argv: list[str], env: dict[str, str] | None = None, timeout: float = 60,
            input: str | None = None, cwd: str | None = None) -> subprocess.CompletedProcess:
        """Run `argv` in the pod with `self.env(env)`; stdout and stderr captured as text.

        Raises subprocess.TimeoutExpired after `timeout` seconds (the command is killed)."""
        return subprocess.run(self._argv(argv), env=self.env(env), timeout=timeout, input=input,
                              cwd=cwd or self.home, capture_output=True, text=True)

    def popen(self, argv: list[str], env: dict[str, str] | None = None, **kwargs) -> subprocess.Popen:
        """Start a long-running command (a server) in the pod; it is killed by `delete`."""
        kwargs.setdefault("cwd", self.home)
        proc = subprocess.Popen(self._argv(argv), env=self.env(env), **kwargs)
        self._procs.append(proc)
        return proc

    def delete(self) -> None:
        """Kill the pod's processes, delete its namespace and veth; its IP becomes free."""
        for proc in self._procs:
            proc.kill()
            proc.wait()
        _delete_netns(self.netns)
        if self.veth:
            sh("ip", "link", "del", self.veth, check=False)
        self.network.pods.pop(self.name, None)


class Network:
    """A bridge with pods on it, and the DNAT rules from the bridge to host loopback servers."""

    def __init__(self):
        self.tag = f"{os.getpid():x}x{next(_serial)}"
        self.bridge = f"kl{self.tag}"
        self.table = f"keyless_pods_{self.tag}"
        self.pods: dict[str, Pod] = {}
        self.imds_port: int | None = None
        self.exposed: dict[int, int] = {}
        self.workdir = tempfile.mkdtemp(prefix=f"keyless-pods-{self.tag}-")
        with open(LOCK_FILE, "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            remove_leftovers()
            self.subnet = _free_subnet()
            self.gateway = str(self.subnet.network_address + 1)
            try:
                sh("ip", "link", "add", self.bridge, "type", "bridge")
                sh("ip", "addr", "add", f"{self.gateway}/{self.subnet.prefixlen}", "dev", self.bridge)
            except BaseException:
                self.close()
                raise
        try:
            with open(f"/proc/sys/net/ipv4/conf/{self.bridge}/route_localnet", "w") as knob:
                knob.write("1")
            sh("ip", "link", "set", self.bridge, "up")
            self._write_rules()
        except BaseException:
            self.close()
            raise

    def pod(self, name: str | None = None, ip: str | None = None) -> Pod:
        """A new pod named `name` (default pod<N>) at `ip` (default: the lowest free address)."""
        name = name or f"pod{len(self.pods) + 1}"
        if name in self.pods:
            raise ValueError(f"pod {name!r} exists")
        taken = {self.gateway, *(p.ip for p in self.pods.values() if p.ip)}
        if ip is None:
            ip = next(str(h) for h in self.subnet.hosts() if str(h) not in taken)
        elif ip in taken or ipaddress.ip_address(ip) not in self.subnet:
            raise ValueError(f"{ip} is taken or not in {self.subnet}")
        pod = Pod(self, name, ipaddress.ip_address(ip))
        self.pods[name] = pod
        return pod

    def isolated(self, name: str) -> Pod:
        """A namespace with its loopback alone: what runs there reaches only itself, and can
        send no packet off this machine (a DNS lookup fails at once)."""
        if name in self.pods:
            raise ValueError(f"pod {name!r} exists")
        pod = Pod(self, name, None)
        self.pods[name] = pod
        return pod

    def route_imds(self, port: int | None) -> None:
        """Send the pods' 169.254.169.254:80 to host 127.0.0.1:`port` (None: to nothing)."""
        self.imds_port = port
        self._write_rules()

    def expose(self, port: int, gateway_port: int | None = None) -> str:
        """Let pods reach host 127.0.0.1:`port` at gateway:`gateway_port` (default the same);
        returns "gateway:port" for URLs."""
        gateway_port = gateway_port or port
        self.exposed[gateway_port] = port
        self._write_rules()
        return f"{self.gateway}:{gateway_port}"

    def _write_rules(self) -> None:
        dnat = [(IMDS_IP, 80, self.imds_port)] if self.imds_port else []
        dnat += [(self.gateway, gp, hp) for gp, hp in sorted(self.exposed.items())]
        rules = "".join(
            f'    iifname "{self.bridge}" ip daddr {ip} tcp dport {dport} dnat to 127.0.0.1:{port}\n'
            for ip, dport, port in dnat)
        # Declaring then deleting the table makes the replacement atomic and first-time safe.
        sh("nft", "-f", "-", input=(
            f"table ip {self.table}\n"
            f"delete table ip {self.table}\n"
            f"table ip {self.table} {{\n"
            "  chain prerouting {\n"
            "    type nat hook prerouting priority dstnat; policy accept;\n"
            f"{rules}"
            "  }\n"
            "}\n"))

    def reset(self) -> None:
        """Delete every pod and route; the bridge stays for the next test."""
        for pod in list(self.pods.values()):
            pod.delete()
        self.imds_port, self.exposed = None, {}
        self._write_rules()

    def close(self) -> None:
        """Remove everything this network made; safe to call on a half-made network."""
        for pod in list(self.pods.values()):
            pod.delete()
        _remove(self.tag)
        shutil.rmtree(self.workdir, ignore_errors=True)

    def leftovers(self) -> list[str]:
        """Namespaces, links and nft tables of this network still present (for tests)."""
        return ([ns for ns in _netns_names() if ns.startswith(f"kl{self.tag}-")]
                + [ln for ln in _link_names() if ln == self.bridge or ln.startswith(f"kv{self.tag}.")]
                + [t for t in _nft_tables() if t == self.table])


# Test modules import these to get the fixtures `pod_network` and `pod_net`:
#     from pods import pod_net_fixture, pod_network_fixture  # noqa: F401 (fixtures)


@pytest.fixture(name="pod_network", scope="session")
def pod_network_fixture():
    """The session's Network (skips the test when pods cannot be made here)."""
    reason = unavailable()
    if reason:
        pytest.skip(reason)
    net = Network()
    try:
        yield net
    finally:
        net.close()


@pytest.fixture(name="pod_net")
def pod_net_fixture(pod_network):
    """The session's Network, emptied of pods and routes after the test."""
    try:
        yield pod_network
    finally:
        pod_network.reset()
