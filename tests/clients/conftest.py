"""Shared fixtures: the keyless binary built by `cargo build`; and, in CI (`CI=true`), a skipped
test fails the run, so that a test cannot vanish because a machine lacks root or a package.

Every `keyless` process the suite starts runs through a wrapper that keeps a copy of its output
(secret_scan.py), and at the end of the session those logs and every audit trail written under
the session's temporary folder are scanned for secrets: a secret key, session token, web
identity token or signature found fails the session, with the file, line and a redacted
excerpt; so does a session whose processes left no log to scan."""

import os
import pathlib
import shutil
import subprocess

import pytest

import secret_scan

REPO = pathlib.Path(__file__).resolve().parents[2]
IN_CI = os.environ.get("CI") == "true"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """In CI, a skip (a `skipif` mark, a fixture's or the test's own `pytest.skip`) is a failure
    that says why (an error when the skip came at setup, as pytest counts failed setups);
    expected failures (`xfail`) stay as they are."""
    outcome = yield
    report = outcome.get_result()
    if IN_CI and report.skipped and not hasattr(report, "wasxfail"):
        longrepr = report.longrepr
        reason = longrepr[2] if isinstance(longrepr, tuple) and len(longrepr) == 3 else str(longrepr)
        reason = reason.removeprefix("Skipped: ")
        report.outcome = "failed"
        report.longrepr = f"skipped in CI (CI=true), which must run every test: {reason}"

# Servers started by the tests share this host: each picks a free admin port rather than the
# default 127.0.0.1:9090 (tests that probe /healthz ask for it explicitly).
os.environ.setdefault("KEYLESS_ADMIN_LISTEN", "127.0.0.1:0")


class LogScan:
    """The session's log folder, the wrapper that fills it, and the scan's outcome."""

    def __init__(self):
        self.log_dir = None
        self.secrets = set()  # secrets known by value that the suite hands to Keyless
        self.result = None

    def wrap(self, real: str, basetemp: pathlib.Path) -> str:
        """A wrapper script named `keyless` that runs `real` with its output kept in the
        session's log folder; checked once by running `--version` through it."""
        self.log_dir = basetemp / "keyless-logs"
        self.log_dir.mkdir(exist_ok=True)
        os.environ["KEYLESS_TEST_LOG_DIR"] = str(self.log_dir)  # for kubelet.py's containers
        tools = {name: shutil.which(name) for name in ("bash", "tee", "ln", "readlink")}
        if None in tools.values():
            pytest.fail(f"the log wrapper needs {', '.join(n for n, p in tools.items() if p is None)}")
        wrapper = basetemp / "keyless-bin" / "keyless"
        wrapper.parent.mkdir(exist_ok=True)
        wrapper.write_text(secret_scan.wrapper_script(os.path.abspath(real), self.log_dir, **tools))
        wrapper.chmod(0o755)
        version = subprocess.run([str(wrapper), "--version"], capture_output=True, text=True)
        kept = sorted(self.log_dir.glob("*.out"))
        if version.returncode != 0 or not version.stdout or [p.read_text() for p in kept] != [version.stdout]:
            pytest.fail(f"the log wrapper {wrapper} does not work: {version!r}, kept {kept}")
        for path in self.log_dir.iterdir():
            path.unlink()
        return str(wrapper)

    def finish(self, basetemp: pathlib.Path):
        """Scans the session's logs and audit trails; raises on a secret or on nothing to scan."""
        if self.log_dir is None:
            return
        self.result = secret_scan.scan_session(self.log_dir, basetemp, self.secrets)
        if self.result.hits:
            shown = "\n".join(self.result.hits[:50])
            more = f"\n... and {len(self.result.hits) - 50} more" if len(self.result.hits) > 50 else ""
            raise AssertionError(f"secrets in Keyless's logs or audit trails:\n{shown}{more}\n{self.result.summary()}")
        if self.result.logs == 0:
            raise AssertionError(f"keyless ran through {self.log_dir}'s wrapper, yet no log was kept there: "
                                 f"the secret scan would have scanned nothing\n{self.result.summary()}")


LOG_SCAN = LogScan()


@pytest.fixture(scope="session")
def keyless_bin(tmp_path_factory) -> str:
    """The binary under test, as a wrapper that keeps its output for the secret scan."""
    path = os.environ.get("KEYLESS_BIN", str(REPO / "target" / "debug" / "keyless"))
    if not os.access(path, os.X_OK):
        pytest.fail(f"{path} is missing: run `cargo build` first (scripts/test does)")
    return LOG_SCAN.wrap(path, tmp_path_factory.getbasetemp())


@pytest.fixture(scope="session", autouse=True)
def no_secret_in_keyless_output(tmp_path_factory):
    """Set up first and so torn down last, once every server of the session has stopped: the
    scan of everything Keyless wrote (an error of the last test's teardown when it finds any)."""
    yield
    LOG_SCAN.finish(tmp_path_factory.getbasetemp())


def pytest_terminal_summary(terminalreporter):
    """The scan's one line, so that a CI log shows it ran and what it covered."""
    if LOG_SCAN.result is not None:
        terminalreporter.write_line(LOG_SCAN.result.summary())


@pytest.fixture(scope="session")
def repo() -> pathlib.Path:
    return REPO


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class MotoUpstream:
    """moto's S3 server (PyPI `moto[server]`) on loopback: an upstream store for gateway mode
    (`keyless serve --upstream`). Each Keyless server gets a bucket prefix of its own, so tests
    share one moto without seeing each other's buckets."""

    ACCESS_KEY, SECRET_KEY = "AKIAUPSTREAMKEYLESS1", "upstream-secret-upstream-secret-upstream"
    REGION = "us-east-1"
    # Whether it keeps object tags.
    TAGS = True

    def __init__(self, log_dir: pathlib.Path):
        import shutil
        import subprocess
        import time
        import urllib.request

        exe = shutil.which("moto_server")
        if exe is None:
            pytest.skip("moto_server is missing: pip install 'moto[server]'")
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.log = open(log_dir / "moto.log", "w")
        self.proc = subprocess.Popen(
            [exe, "-H", "127.0.0.1", "-p", str(self.port)], stdout=self.log, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(f"{self.endpoint}/moto-api/", timeout=1).read()
                break
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"moto_server did not start: {(log_dir / 'moto.log').read_text()}")
                time.sleep(0.2)
        self.tenants = 0

    def serve_args(self, prefix=None):
        """The arguments and environment of a `keyless serve` in front of this moto."""
        if prefix is None:
            self.tenants += 1
            prefix = f"t{self.tenants}-"
        env = dict(
            os.environ,
            KEYLESS_UPSTREAM_ACCESS_KEY_ID=self.ACCESS_KEY,
            KEYLESS_UPSTREAM_SECRET_ACCESS_KEY=self.SECRET_KEY,
        )
        return ["--upstream", self.endpoint, "--upstream-bucket-prefix", prefix], env, prefix

    def client(self):
        """A boto3 client of moto itself, with the upstream's own keys."""
        import boto3

        return boto3.session.Session().client(
            "s3", endpoint_url=self.endpoint, region_name="us-east-1",
            aws_access_key_id=self.ACCESS_KEY, aws_secret_access_key=self.SECRET_KEY,
        )

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except Exception:
            self.proc.kill()
        self.log.close()


class CephUpstream(MotoUpstream):
    """A single-host Ceph RGW 16.2 (Debian's ceph-mon, ceph-osd, radosgw; started by
    scripts/upstreams/ceph-rgw: one monitor, one memstore OSD, about 15 s): the upstream store of
    the `gateway-ceph` runs."""

    def __init__(self, work: pathlib.Path):
        import shutil
        import subprocess

        if shutil.which("radosgw") is None:
            pytest.skip("radosgw is missing: apt-get install ceph-mon ceph-osd radosgw ceph-common")
        self.dir = work / "ceph"
        self.script = REPO / "scripts" / "upstreams" / "ceph-rgw"
        port = free_port()
        with open(work / "ceph-start.log", "w") as log:
            proc = subprocess.run([str(self.script), "start", str(self.dir), str(port)],
                                  stdout=subprocess.PIPE, stderr=log, text=True, timeout=180)
        if proc.returncode != 0:
            raise RuntimeError(f"ceph did not start: {(work / 'ceph-start.log').read_text()[-3000:]}")
        self.endpoint, self.ACCESS_KEY, self.SECRET_KEY = proc.stdout.split()[-3:]
        self.tenants = 0

    def stop(self):
        import subprocess

        subprocess.run([str(self.script), "stop", str(self.dir)], check=False)


class GarageUpstream(MotoUpstream):
    """A single-node Garage 2.5 (`cargo install garage --version 2.5.0 --locked`, built once per
    machine by scripts/test; started by scripts/upstreams/garage: sqlite metadata, region
    `garage`): the upstream store of the `gateway-garage` runs."""

    REGION = "garage"
    TAGS = False

    def __init__(self, work: pathlib.Path):
        import subprocess

        self.dir = work / "garage"
        self.script = REPO / "scripts" / "upstreams" / "garage"
        port = free_port()
        with open(work / "garage-start.log", "w") as log:
            proc = subprocess.run([str(self.script), "start", str(self.dir), str(port)],
                                  stdout=subprocess.PIPE, stderr=log, text=True, timeout=120)
        if proc.returncode == 3:
            pytest.skip("garage is missing: cargo install garage --version 2.5.0 --locked")
        if proc.returncode != 0:
            raise RuntimeError(f"garage did not start: {(work / 'garage-start.log').read_text()[-3000:]}")
        self.endpoint, self.ACCESS_KEY, self.SECRET_KEY = proc.stdout.split()[-3:]
        self.tenants = 0

    def serve_args(self, prefix=None):
        extra, env, prefix = super().serve_args(prefix)
        return [*extra, "--upstream-region", self.REGION], env, prefix

    def client(self):
        import boto3

        return boto3.session.Session().client(
            "s3", endpoint_url=self.endpoint, region_name=self.REGION,
            aws_access_key_id=self.ACCESS_KEY, aws_secret_access_key=self.SECRET_KEY,
        )

    def stop(self):
        import subprocess

        subprocess.run([str(self.script), "stop", str(self.dir)], check=False)


@pytest.fixture(scope="session")
def garage_upstream(tmp_path_factory):
    upstream = GarageUpstream(tmp_path_factory.mktemp("garage"))
    LOG_SCAN.secrets.add(upstream.SECRET_KEY)
    yield upstream
    upstream.stop()


@pytest.fixture(scope="session")
def ceph_upstream(tmp_path_factory):
    upstream = CephUpstream(tmp_path_factory.mktemp("ceph"))
    LOG_SCAN.secrets.add(upstream.SECRET_KEY)
    yield upstream
    upstream.stop()


@pytest.fixture(scope="session")
def moto_upstream(tmp_path_factory):
    upstream = MotoUpstream(tmp_path_factory.mktemp("moto"))
    LOG_SCAN.secrets.add(upstream.SECRET_KEY)
    yield upstream
    upstream.stop()


def pytest_configure(config):
    config.addinivalue_line(
        "markers",
        "embedded_only(reason): a test of what only the embedded store does; not run in gateway "
        "mode (the `server` fixture's `gateway` parameters), for the reason given",
    )
    config.addinivalue_line(
        "markers",
        "not_on(*upstreams, reason): a test that these upstream stores (`moto`, `ceph`, `garage`) fail on "
        "their own, as S3 clients talking to them directly would; not run through the gateway in "
        "front of them, for the reason given",
    )


def pytest_collection_modifyitems(config, items):
    """Gateway-mode runs of `embedded_only` tests are deselected, not skipped: they are not
    tests that could run here and did not, but tests of another mode."""
    kept, dropped = [], []
    for item in items:
        callspec = getattr(item, "callspec", None)
        mode = callspec.params.get("server", "embedded") if callspec is not None else "embedded"
        upstream = {"gateway": "moto", "gateway-ceph": "ceph", "gateway-garage": "garage"}.get(mode)
        drop = (upstream and item.get_closest_marker("embedded_only")) or any(
            upstream in marker.args for marker in item.iter_markers("not_on"))
        (dropped if drop else kept).append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept
