"""Shared fixtures: the keyless binary built by `cargo build`; and, in CI (`CI=true`), a skipped
test fails the run, so that a test cannot vanish because a machine lacks root or a package."""

import os
import pathlib

import pytest

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


@pytest.fixture(scope="session")
def keyless_bin() -> str:
    path = os.environ.get("KEYLESS_BIN", str(REPO / "target" / "debug" / "keyless"))
    if not os.access(path, os.X_OK):
        pytest.fail(f"{path} is missing: run `cargo build` first (scripts/test does)")
    return path


@pytest.fixture(scope="session")
def repo() -> pathlib.Path:
    return REPO
