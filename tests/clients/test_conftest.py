"""The conftest's CI rule, run on a throwaway suite: with `CI=true` a skipped test fails the run
and says why; without it, a skip is a skip."""

import os
import subprocess
import sys

from conftest import REPO

SUITE = '''
import pytest

def test_passes():
    pass

@pytest.mark.skipif(True, reason="the frobnicator is not installed")
def test_marked():
    pass

def test_skips_itself():
    pytest.skip("no root here")

@pytest.mark.xfail(reason="known bug", strict=True)
def test_expected_failure():
    assert False
'''


def run(tmp_path, ci):
    for name in ("conftest.py", "secret_scan.py"):  # the conftest imports secret_scan
        (tmp_path / name).write_text((REPO / "tests" / "clients" / name).read_text())
    (tmp_path / "test_suite.py").write_text(SUITE)
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    if ci is not None:
        env["CI"] = ci
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-rfEs", "-p", "no:cacheprovider", str(tmp_path)],
                          capture_output=True, text=True, env=env, cwd=tmp_path)


def test_in_ci_a_skip_fails_the_run_with_its_reason(tmp_path):
    out = run(tmp_path, "true")
    assert out.returncode == 1, out.stdout
    assert "1 failed, 1 passed, 1 xfailed, 1 error" in out.stdout, out.stdout
    assert "skipped in CI (CI=true), which must run every test: the frobnicator is not installed" in out.stdout
    assert "skipped in CI (CI=true), which must run every test: no root here" in out.stdout
    # The summary lists them, as scripts/test asks (`-rfEs`).
    assert "ERROR test_suite.py::test_marked" in out.stdout and "FAILED test_suite.py::test_skips_itself" in out.stdout


def test_elsewhere_a_skip_is_reported_with_its_reason(tmp_path):
    for ci in (None, "false"):
        out = run(tmp_path, ci)
        assert out.returncode == 0, out.stdout
        assert "1 passed, 2 skipped, 1 xfailed" in out.stdout, out.stdout
        assert "SKIPPED [1] test_suite.py:7: the frobnicator is not installed" in out.stdout, out.stdout
        assert "SKIPPED [1] test_suite.py:12: no root here" in out.stdout, out.stdout
