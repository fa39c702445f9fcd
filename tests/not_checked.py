"""What a test run did not check: a run that skipped tests ends with one ``NOT CHECKED:``
line giving how many were skipped and why (pytest's own skip list scrolls away with the
failures above it). conftest.py takes these hooks; a test loads the module alone (-p)."""

from __future__ import annotations

import pytest

_LINE = pytest.StashKey[str]()


def not_checked_line(skipped) -> str | None:
    """The line for pytest's skipped reports, or None when nothing was skipped."""
    if not skipped:
        return None
    reasons: dict[str, int] = {}
    for report in skipped:
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        reason = " ".join(reason.removeprefix("Skipped: ").split())  # one line, whatever the reason held
        reasons[reason] = reasons.get(reason, 0) + 1
    what = "; ".join(f"{n} test{'s' * (n > 1)}: {r}" for r, n in sorted(reasons.items(), key=lambda x: -x[1]))
    if any("chromium" in r.lower() or "playwright" in r.lower() for r in reasons):
        what += " (SAGEKIT_REQUIRE_BROWSER=1 makes a missing browser fail)"
    return f"NOT CHECKED: {what}"


def pytest_terminal_summary(terminalreporter, config):
    line = not_checked_line(terminalreporter.stats.get("skipped", []))
    if line:
        config.stash[_LINE] = line


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config):
    # after pytest's "N passed, M skipped" line, so that it is the run's last line
    line = config.stash.get(_LINE, None)
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    if line and reporter is not None:
        reporter.write_line(line, yellow=True, bold=True)
