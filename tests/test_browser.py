"""A report opened in headless Chromium: its images load and its tables are there."""

import os
import re
import shutil
import subprocess
import tempfile

import pytest

from sagekit.report import run_study

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]
# Appended to a copy of the report: after load, count images that decoded and tables.
PROBE = """<script>window.addEventListener("load", () => {
  const imgs = [...document.images];
  const ok = imgs.filter(i => i.complete && i.naturalWidth > 0).length;
  const d = document.createElement("div"); d.id = "sagekit-probe";
  d.textContent = `images=${imgs.length} loaded=${ok} tables=${document.querySelectorAll("table").length}`;
  document.body.appendChild(d);
});</script>"""


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    out = tmp_path_factory.mktemp("browser")
    summary = run_study("toy-world", ["per_label=1", "n_judge=100", "grid_labels=2"], out, timeout=900)
    return out / summary["html"]


def test_report_renders_in_chromium(report, tmp_path):
    if CHROMIUM is None:
        if os.environ.get("SAGEKIT_REQUIRE_BROWSER") == "1":
            pytest.fail("chromium is required here (tools/install_chromium.sh installs it)")
        pytest.skip("chromium not installed (tools/install_chromium.sh)")
    probe = tmp_path / "probe.html"
    probe.write_text(report.read_text().replace("</body>", PROBE + "</body>"))
    with tempfile.TemporaryDirectory() as profile:
        dom = subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={profile}", "--virtual-time-budget=20000",
                              "--dump-dom", probe.as_uri()], capture_output=True, text=True, timeout=120).stdout
        subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={profile}", f"--screenshot={tmp_path / 'shot.png'}",
                        "--window-size=1200,1600", report.as_uri()], capture_output=True, timeout=120)
    m = re.search(r"images=(\d+) loaded=(\d+) tables=(\d+)", dom)
    assert m, dom[-2000:]
    images, loaded, tables = map(int, m.groups())
    assert images >= 5 and loaded == images  # dataset, judges, bars and per-model grids
    assert tables >= 2  # training stages and the eval table
    assert (tmp_path / "shot.png").stat().st_size > 10_000
