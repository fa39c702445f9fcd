"""Headless Chromium for report tests: the DOM after load, and screenshots."""

import os
import shutil
import subprocess
import tempfile

import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def require_chromium():
    if CHROMIUM is None:
        if os.environ.get("SAGEKIT_REQUIRE_BROWSER") == "1":
            pytest.fail("chromium is required here (tools/install_chromium.sh installs it)")
        pytest.skip("chromium not installed (tools/install_chromium.sh)")


def dump_dom(page, budget_ms: int = 20000) -> str:
    """The page's DOM, serialised after load and ``budget_ms`` of virtual time."""
    with tempfile.TemporaryDirectory() as profile:
        return subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={profile}", f"--virtual-time-budget={budget_ms}",
                               "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120).stdout


def screenshot(page, png, size: str = "1200,1600") -> None:
    with tempfile.TemporaryDirectory() as profile:
        subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={profile}", f"--screenshot={png}", f"--window-size={size}",
                        page.as_uri()], capture_output=True, timeout=120)
