"""Headless Chromium for report tests: the DOM after load, and screenshots."""

import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

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


CSP = re.compile(r'<meta[^>]*http-equiv="Content-Security-Policy"[^>]*>')
# Appended to a copy of a report (without its script-forbidding CSP): after load, count
# images that decoded and tables.
PROBE = """<script>window.addEventListener("load", () => {
  const imgs = [...document.images];
  const ok = imgs.filter(i => i.complete && i.naturalWidth > 0).length;
  const d = document.createElement("div"); d.id = "sagekit-probe";
  d.textContent = `images=${imgs.length} loaded=${ok} tables=${document.querySelectorAll("table").length}`;
  document.body.appendChild(d);
});</script>"""


def rendered(report: Path, tmp_path: Path) -> tuple[int, int, int]:
    """Open a report in headless Chromium: (images, images that decoded, tables). The
    report itself must be static (one CSP, no script)."""
    require_chromium()
    page = report.read_text()
    assert len(CSP.findall(page)) == 1 and "<script" not in page  # static: the page loads no script
    probe = tmp_path / "probe.html"
    probe.write_text(CSP.sub("", page).replace("</body>", PROBE + "</body>"))
    dom = dump_dom(probe)
    m = re.search(r"images=(\d+) loaded=(\d+) tables=(\d+)", dom)
    assert m, dom[-2000:]
    return tuple(map(int, m.groups()))
