"""Shared fixtures: the keyless binary built by `cargo build`."""

import os
import pathlib

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]

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
