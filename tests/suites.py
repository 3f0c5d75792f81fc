"""The CI rule of the two suites: under SAFEGUARD_AUDIT_REQUIRE_INTEGRATION=1 an integration test that skips
has failed, so CI cannot go green having run none of them; outside CI it skips with the reason.

The hooks live here, apart from tests/conftest.py (which imports them), so that tests/test_suites.py can run
them in a small pytest of its own without loading torch.
"""
from __future__ import annotations

import os

import pytest

REQUIRE_INTEGRATION = "SAFEGUARD_AUDIT_REQUIRE_INTEGRATION"


def required() -> bool:
    return os.environ.get(REQUIRE_INTEGRATION, "") not in ("", "0")


def _reason(longrepr) -> str:
    """The skip's reason (a skip report's longrepr is (path, line, "Skipped: reason"))."""
    text = longrepr[2] if isinstance(longrepr, tuple) and len(longrepr) == 3 else str(longrepr)
    return text.removeprefix("Skipped: ")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """An integration test's skip (a skipif, a fixture's or the test's own pytest.skip) becomes a failure that
    keeps the reason; an expected failure (xfail) is left alone, and so are the fast suite's skips."""
    outcome = yield
    report = outcome.get_result()
    if report.skipped and required() and item.get_closest_marker("integration") and not hasattr(report, "wasxfail"):
        report.outcome = "failed"
        report.longrepr = f"integration test skipped under {REQUIRE_INTEGRATION}=1, which makes a skip a failure: {_reason(report.longrepr)}"


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector):
    """A module skipped while collecting (a module-level importorskip) holds tests no one will run: a failure too."""
    outcome = yield
    report = outcome.get_result()
    if report.skipped and required():
        report.outcome = "failed"
        report.longrepr = f"{collector.nodeid} skipped while collecting under {REQUIRE_INTEGRATION}=1: {_reason(report.longrepr)}"
