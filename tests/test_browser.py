"""A report opened in headless Chromium: its images load and its tables are there."""

import pytest
from chromium import rendered, screenshot

from sagekit.report import run_study

@pytest.fixture(scope="module")
def report(tmp_path_factory):
    out = tmp_path_factory.mktemp("browser")
    summary = run_study("toy-world", ["per_label=1", "n_judge=100", "grid_labels=2"], out, timeout=900)
    return out / summary["html"]


def test_report_renders_in_chromium(report, tmp_path):
    images, loaded, tables = rendered(report, tmp_path)
    screenshot(report, tmp_path / "shot.png")
    assert images >= 5 and loaded == images  # dataset, judges, bars and per-model grids
    assert tables >= 2  # training stages and the eval table
    assert (tmp_path / "shot.png").stat().st_size > 10_000
