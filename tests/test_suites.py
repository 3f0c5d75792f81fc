"""The CI rule of the two suites (tests/suites.py), in a small pytest run of its own: under
SAFEGUARD_AUDIT_REQUIRE_INTEGRATION=1 an integration test that skips fails with the reason, a module skipped
while collecting fails, and the fast suite's skips stay skips; without the variable all of them skip."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CASES = """
import pytest

needs_tool = pytest.mark.skipif(True, reason="the tool is not installed here (make tool)")


@pytest.fixture()
def server():
    pytest.skip("the server did not start: port taken")


@pytest.mark.integration
@needs_tool
def test_needs_the_tool():
    pass


@pytest.mark.integration
def test_needs_the_server(server):
    pass


@pytest.mark.integration
def test_skips_itself():
    pytest.skip("no GPU here")


@pytest.mark.integration
@pytest.mark.xfail(reason="a known bug", strict=True)
def test_expected_to_fail():
    raise AssertionError


@pytest.mark.integration
def test_runs():
    pass


def test_fast_skip():
    pytest.skip("root ignores file modes")
"""


def run_pytest(folder: Path, required: str | None, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "SAFEGUARD_AUDIT_REQUIRE_INTEGRATION"}
    if required is not None:
        env["SAFEGUARD_AUDIT_REQUIRE_INTEGRATION"] = required
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-rfEs", "-q", "-o", "addopts=", *args],
                          cwd=folder, env=env, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def cases(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("suites")
    (folder / "conftest.py").write_text("from tests.suites import pytest_make_collect_report, pytest_runtest_makereport  # noqa: F401\n")
    (folder / "pytest.ini").write_text("[pytest]\nmarkers =\n    integration: needs a tool\n")
    (folder / "test_cases.py").write_text(CASES)
    (folder / "test_absent.py").write_text("import pytest\n\npytest.importorskip('no_such_module_here', reason='the extra is not installed')\n")
    return folder


@pytest.mark.parametrize("required", [None, "0"])
def test_outside_ci_integration_tests_skip_with_the_reason(cases, required):
    done = run_pytest(cases, required, ".")
    assert done.returncode == 0, done.stdout[-3000:]
    assert "1 passed, 5 skipped, 1 xfailed" in done.stdout, done.stdout[-3000:]
    for reason in ("the tool is not installed here (make tool)", "the server did not start: port taken", "no GPU here",
                   "root ignores file modes", "the extra is not installed"):
        assert reason in done.stdout


def test_under_ci_a_skipped_integration_test_fails_with_the_reason(cases):
    done = run_pytest(cases, "1", "test_cases.py")
    assert done.returncode == 1, done.stdout[-3000:]
    # a skip in setup (a skipif, a fixture) fails as an error, one in the test as a failure; the fast suite's skip stays one
    assert "1 failed, 1 passed, 1 skipped, 1 xfailed, 2 errors" in done.stdout, done.stdout[-3000:]
    for reason in ("the tool is not installed here (make tool)", "the server did not start: port taken", "no GPU here"):
        assert f"SAFEGUARD_AUDIT_REQUIRE_INTEGRATION=1, which makes a skip a failure: {reason}" in done.stdout, done.stdout[-3000:]


def test_under_ci_a_module_skipped_while_collecting_fails(cases):
    done = run_pytest(cases, "1", "test_absent.py")
    assert done.returncode == 2, done.stdout[-3000:]  # a collection error: pytest stops there
    assert "test_absent.py skipped while collecting under SAFEGUARD_AUDIT_REQUIRE_INTEGRATION=1" in done.stdout
    assert "the extra is not installed" in done.stdout
