import os
import subprocess
import sys
from pathlib import Path

TESTS = Path(__file__).parent
SKIPPING = '''
import pytest

def test_browser():
    pytest.skip("chromium not installed (sudo apt-get install chromium)")

def test_gpu():
    pytest.skip("needs a GPU")

def test_other_browser():
    pytest.skip("chromium not installed (sudo apt-get install chromium)")

def test_runs():
    assert True
'''


def _run(tmp_path, body):
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    (tmp_path / "test_some.py").write_text(body)
    env = {**os.environ, "PYTHONPATH": str(TESTS)}
    out = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "not_checked", "-p", "no:cacheprovider",
                          "-c", str(tmp_path / "pytest.ini"), str(tmp_path / "test_some.py")],
                         capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)
    return out.returncode, [line for line in out.stdout.splitlines() if line.strip()]


def test_a_run_that_skipped_tests_ends_with_what_was_not_checked(tmp_path):
    rc, lines = _run(tmp_path, SKIPPING)
    assert rc == 0
    # the last line, after pytest's own "1 passed, 3 skipped", in one line, most frequent reason first
    assert "1 passed, 3 skipped" in lines[-2]
    assert lines[-1] == ("NOT CHECKED: 2 tests: chromium not installed (sudo apt-get install chromium); "
                         "1 test: needs a GPU (SAGEKIT_REQUIRE_BROWSER=1 makes a missing browser fail)")
    assert sum(line.startswith("NOT CHECKED") for line in lines) == 1


def test_a_run_that_skipped_nothing_says_nothing_more(tmp_path):
    rc, lines = _run(tmp_path, "def test_runs():\n    assert True\n")
    assert rc == 0 and "1 passed" in lines[-1]
    assert not any("NOT CHECKED" in line for line in lines)
