"""`sagekit lab`: JupyterLab on a working copy, and a student's session in it, in a real
browser (Debian's Chromium driven by Playwright; no browser download)."""

import os
import signal
import socket
import subprocess
import sys

import nbformat
import pytest

from sagekit.cli import main
from sagekit.lab import LabError, port_problem, start, working_copy
from sagekit.studies import NOTEBOOKS, STUDIES

from chromium import CHROMIUM, require_chromium


def test_the_working_copy_keeps_what_a_person_changed(tmp_path):
    folder = tmp_path / "lab"
    copied, kept = working_copy(folder)
    assert sorted(copied) == sorted(p.name for p in NOTEBOOKS.glob("*.ipynb")) and kept == []
    edited = folder / "05_seed_shifts.ipynb"
    edited.write_text(edited.read_text().replace("Seed shifts", "My seed shifts"))
    (folder / "00_toy_world.ipynb").unlink()
    copied, kept = working_copy(folder)
    assert copied == ["00_toy_world.ipynb"] and "05_seed_shifts.ipynb" in kept
    assert "My seed shifts" in edited.read_text()


def test_bad_lab_input_is_one_line_and_exit_2(tmp_path, capsys):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["lab", "--no-browser", "--port", str(port), "--dir", str(tmp_path / "a")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"port {port} is in use" in err[0]
    assert not (tmp_path / "a").exists()  # nothing written
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert main(["lab", "--no-browser", "--dir", str(blocker / "lab")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--dir" in err[0]
    assert main(["lab", "--no-browser", "--port", "70000"]) == 2
    assert "--port must be from 0 to 65535" in capsys.readouterr().err


@pytest.mark.parametrize("sig, rc", [(signal.SIGINT, 0), (signal.SIGTERM, 128 + signal.SIGTERM)])
def test_stopping_sagekit_lab_stops_its_server(tmp_path, sig, rc):
    """The server runs in a session of its own (so Ctrl-C asks no question): Ctrl-C or a kill
    of `sagekit lab` must stop it, leaving its port free."""
    proc = subprocess.Popen([sys.executable, "-m", "sagekit", "lab", "--no-browser", "--dir", str(tmp_path)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    url = proc.stdout.readline().strip()
    port = int(url.split(":")[2].split("/")[0])
    assert url.startswith("http://127.0.0.1:") and port_problem(port) is not None  # it serves
    proc.send_signal(sig)
    assert proc.wait(60) == rc
    assert port_problem(port) is None  # the server is gone with it


def small_copy(study: str, folder, store):
    """The study's notebook as a teacher would set it for a short class: its declared
    small values written into the parameters cell of the working copy."""
    from papermill.iorw import load_notebook_node
    from papermill.parameterize import parameterize_notebook

    from sagekit.studies.parameters import Folder

    schema = STUDIES[study].schema
    values = {**schema.small(), **{n: str(store) for n, p in schema.params.items() if isinstance(p.rule, Folder)}}
    nb = parameterize_notebook(load_notebook_node(str(STUDIES[study].path)), values)
    folder.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, folder / STUDIES[study].notebook)


def browser(playwright):
    return playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])


def run_all(page, notebook: str, url: str) -> None:
    """Open ``notebook`` in JupyterLab and run every cell from the Run menu, as a person would."""
    page.goto(url.replace("/lab?", f"/lab/tree/{notebook}?"))
    page.locator(".jp-Notebook .jp-Cell").first.wait_for(timeout=120_000)
    idle(page, 120_000)  # the kernel is connected and idle, as the status bar says (cells run before are dropped)
    news = page.get_by_role("button", name="No", exact=True)  # "notified about official Jupyter news?"
    if news.count():
        news.first.click()
    page.get_by_role("menuitem", name="Run", exact=True).click()
    page.get_by_role("menuitem", name="Run All Cells", exact=True).click()


def idle(page, timeout: int = 300_000) -> None:
    page.locator(".jp-StatusBar-TextItem", has_text="| Idle").first.wait_for(timeout=timeout)


def test_a_student_moves_the_shift_level_in_jupyterlab(tmp_path):
    require_chromium()
    if os.environ.get("SAGEKIT_REQUIRE_BROWSER") == "1":
        import playwright  # noqa: F401  (installed by make install: a missing one fails here)
    sync_api = pytest.importorskip("playwright.sync_api")
    folder = tmp_path / "lab"
    small_copy("seed-shifts", folder, tmp_path / "store")
    lab = start(folder)
    try:
        with sync_api.sync_playwright() as p:
            b = browser(p)
            page = b.new_page(viewport={"width": 1400, "height": 1000})
            run_all(page, "05_seed_shifts.ipynb", lab.url)
            explorer = page.locator(".sagekit-explorer")
            explorer.wait_for(timeout=900_000)
            # the explorer is the last cell; a widget's change reaches the kernel once no cell runs
            idle(page)
            explorer.scroll_into_view_if_needed()
            status = explorer.locator("text=redrawn in")
            assert status.count() == 1
            shifted = explorer.locator(".sagekit-explorer-image").nth(3)  # the first shifted image (3 labels)
            unshifted = explorer.locator(".sagekit-explorer-image").nth(0)
            before, base = shifted.screenshot(), unshifted.screenshot()
            page.screenshot(path=str(tmp_path / "seed-shift-explorer.png"), full_page=False)
            readout = explorer.locator(".widget-hslider .widget-readout")
            assert readout.inner_text().strip() == "0.20"  # the small grid's last UMS level
            readout.click()
            page.keyboard.press("Control+A")
            page.keyboard.type("-0.30")
            page.keyboard.press("Enter")
            explorer.locator("b", has_text="UMS -0.30").wait_for(timeout=120_000)
            page.wait_for_function("document.querySelector('.sagekit-explorer').innerText.includes('redrawn')")
            after = shifted.screenshot()
            page.screenshot(path=str(tmp_path / "seed-shift-explorer-moved.png"), full_page=False)
            assert after != before and unshifted.screenshot() == base
            b.close()
    finally:
        lab.stop()
    with pytest.raises(LabError, match="is in use"):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            s.listen()
            start(folder, port=s.getsockname()[1])
