"""A report opened in headless Chromium: its images load and its tables are there."""

import re

import pytest
from chromium import dump_dom, require_chromium, screenshot

from sagekit.report import run_study

CSP = re.compile(r'<meta[^>]*http-equiv="Content-Security-Policy"[^>]*>')
# Appended to a copy of the report (without its script-forbidding CSP): after load, count
# images that decoded and tables.
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
    require_chromium()
    page = report.read_text()
    assert len(CSP.findall(page)) == 1 and "<script" not in page  # static: the page loads no script
    probe = tmp_path / "probe.html"
    probe.write_text(CSP.sub("", page).replace("</body>", PROBE + "</body>"))
    dom = dump_dom(probe)
    screenshot(report, tmp_path / "shot.png")
    m = re.search(r"images=(\d+) loaded=(\d+) tables=(\d+)", dom)
    assert m, dom[-2000:]
    images, loaded, tables = map(int, m.groups())
    assert images >= 5 and loaded == images  # dataset, judges, bars and per-model grids
    assert tables >= 2  # training stages and the eval table
    assert (tmp_path / "shot.png").stat().st_size > 10_000
