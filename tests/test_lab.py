"""`sagekit lab`: JupyterLab on a working copy, and a student's session in it, in a real
browser (Debian's Chromium driven by Playwright; no browser download)."""

import os
import signal
import socket
import subprocess
import sys
from contextlib import contextmanager

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
    try:
        proc.send_signal(sig)
        assert proc.wait(60) == rc
    finally:
        proc.kill()  # a server that did not stop is no reason to leave it running
    assert port_problem(port) is None  # the server is gone with it


def small_copy(study: str, folder, store, **overrides):
    """The study's notebook as a teacher would set it for a short class: its declared
    small values (and ``overrides``) written into the parameters cell of the working copy."""
    from papermill.iorw import load_notebook_node
    from papermill.parameterize import parameterize_notebook

    from sagekit.studies.parameters import Folder

    schema = STUDIES[study].schema
    values = {**schema.small(), **{n: str(store) for n, p in schema.params.items() if isinstance(p.rule, Folder)},
              **overrides}
    nb = parameterize_notebook(load_notebook_node(str(STUDIES[study].path)), values)
    folder.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, folder / STUDIES[study].notebook)


def browser(playwright):
    return playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])


def run_all(page, notebook: str, url: str) -> None:
    """Open ``notebook`` in JupyterLab and run every cell from the Run menu, as a person would."""
    page.goto(url.replace("/lab?", f"/lab/tree/{notebook}?"))
    # JupyterLab may bring another tab (its launcher) to the front after the notebook opened:
    # a person clicks the notebook's tab
    tab = page.locator(".lm-DockPanel-tabBar .lm-TabBar-tab", has_text=notebook)
    tab.wait_for(timeout=120_000)
    tab.click()
    try:
        page.locator(".jp-Notebook .jp-Cell").first.wait_for(timeout=120_000)
    except Exception as e:  # say what the page showed instead: its tabs, which is current, a spinner
        tabs = page.locator(".lm-DockPanel-tabBar .lm-TabBar-tab")
        shown = [(t.inner_text(), "current" if "lm-mod-current" in (t.get_attribute("class") or "") else "")
                 for t in tabs.all()]
        spinner = page.locator(".jp-Spinner").count()
        raise AssertionError(f"{notebook} opened but its cells stay hidden: tabs {shown}, {spinner} spinner(s)") from e
    idle(page, 120_000)  # the kernel is connected and idle, as the status bar says (cells run before are dropped)
    news = page.get_by_role("button", name="No", exact=True)  # "notified about official Jupyter news?"
    if news.count():
        news.first.click()
    page.get_by_role("menuitem", name="Run", exact=True).click()
    page.get_by_role("menuitem", name="Run All Cells", exact=True).click()


def idle(page, timeout: int = 300_000) -> None:
    page.locator(".jp-StatusBar-TextItem", has_text="| Idle").first.wait_for(timeout=timeout)


@contextmanager
def explorer_in_lab(tmp_path, study: str, **overrides):
    """A working copy of ``study``'s notebook with its small values (and ``overrides``) in
    ``sagekit lab``, opened in Chromium and run whole, as a person would: yields the page and
    its explorer (the last cell) once the kernel is idle, for a widget's change reaches the
    kernel only when no cell runs."""
    require_chromium()
    if os.environ.get("SAGEKIT_REQUIRE_BROWSER") == "1":
        import playwright  # noqa: F401  (installed by make install: a missing one fails here)
    sync_api = pytest.importorskip("playwright.sync_api")
    folder = tmp_path / "lab"
    small_copy(study, folder, tmp_path / "store", **overrides)
    lab = start(folder)
    try:
        with sync_api.sync_playwright() as p:
            b = browser(p)
            page = b.new_page(viewport={"width": 1400, "height": 1000})
            run_all(page, STUDIES[study].notebook, lab.url)
            explorer = page.locator(".sagekit-explorer")
            explorer.wait_for(timeout=900_000)
            idle(page)
            yield page, explorer
            b.close()
    finally:
        lab.stop()


def test_a_student_moves_the_shift_level_in_jupyterlab(tmp_path):
    with explorer_in_lab(tmp_path, "seed-shifts") as (page, explorer):
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
    with pytest.raises(LabError, match="is in use"):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            s.listen()
            start(tmp_path / "lab", port=s.getsockname()[1])


def test_a_verdict_clicked_in_jupyterlab_reaches_the_store_and_the_explorer(tmp_path):
    """The prompt-failure notebook in JupyterLab: a click on "judges erred" in the verdict
    panel writes that verdict on the failure's row of the results store, and the
    prompt explorer (which opens on the same first failure) shows it after a redraw."""
    from sagekit.store import ResultStore

    # the settings of test_dataset's run that finds failures (unguided, 12 labels, half the seeds must fail)
    with explorer_in_lab(tmp_path, "prompt-failures", n_labels=12, max_words=1, top_k=3, iterations=2, eval_seeds=4,
                         fail_fraction=0.5, train_seeds=1, search_steps=3, baseline_prompts=1, steps=10,
                         guidance=1.0) as (page, explorer):
        panel = page.locator(".widget-vbox", has_text="Does each image show its prompt?").last
        first = panel.locator(".widget-toggle-buttons").first
        first.scroll_into_view_if_needed()
        first.locator("button", has_text="judges erred").click()
        page.screenshot(path=str(tmp_path / "verdict-panel.png"), full_page=False)
        store = ResultStore(tmp_path / "store")
        for _ in range(60):  # the kernel writes it as soon as it hears the click
            frame = store.frame("prompt-failures")
            said = frame[frame["tags"].map(lambda t: "verdict:judges erred" in t)]
            if len(said):
                break
            page.wait_for_timeout(500)
        assert len(said) == 1 and said.iloc[0]["tags"] == ["verdict:judges erred"]
        assert said.iloc[0]["key"] == frame.iloc[0]["key"]  # the panel's first row is the store's first failure
        explorer.scroll_into_view_if_needed()
        draw = explorer.locator("input[type=number]")
        draw.fill("1")
        draw.press("Enter")
        page.wait_for_function("document.querySelector('.sagekit-explorer').innerText"
                               ".includes(\"people's verdict: judges erred\")", timeout=120_000)
        page.screenshot(path=str(tmp_path / "prompt-explorer.png"), full_page=False)


def type_into_slider(page, explorer, name: str, value: str) -> None:
    """Type ``value`` into the readout of the slider described ``name``, as a person edits it."""
    readout = explorer.locator(".widget-hslider", has_text=name).locator(".widget-readout")
    readout.click()
    page.keyboard.press("Control+A")
    page.keyboard.type(value)
    page.keyboard.press("Enter")


def pick_toggle(page, explorer, name: str, value: str) -> None:
    explorer.locator(".widget-toggle-buttons button", has_text=value).click()


def type_number(page, explorer, name: str, value: str) -> None:
    box = explorer.locator(".widget-text", has_text=name).locator("input")
    box.fill(value)
    box.press("Enter")


# Per explorer: the first control a student moves, how, to what, the image that must redraw
# and the one that must not (None: every image may change).
MOVES = {
    "toy-world": (type_number, "number", "1", 1, None),  # another scene: its drawing
    "distorted-latents": (type_into_slider, "t", "0.50", 2, 0),  # the point at t; z stays
    "unrelated-latents": (type_into_slider, "t", "0.50", 2, 0),
    "adversarial-tokens": (type_into_slider, "strength", "0.00", -1, 0),  # the token row's last; the plain row stays
    "implosion": (pick_toggle, "run", "clean control", -3, None),  # the last k's image (k = 0 stays poisoned)
    "prompt-audit": (type_number, "fresh draw", "1", 0, None),  # other fresh seeds: every image is new
}


@pytest.mark.slow
@pytest.mark.parametrize("study", list(MOVES))
def test_every_explorer_answers_a_student_in_jupyterlab(tmp_path, study):
    """Each study's notebook with its small values, run whole in JupyterLab in Chromium: the
    student moves the explorer's first control and the image it governs is redrawn while
    the others stay. Screenshots of the explorer before and after lie in ``tmp_path``."""
    move, name, value, changed, kept = MOVES[study]
    with explorer_in_lab(tmp_path, study) as (page, explorer):
        explorer.scroll_into_view_if_needed()
        images = explorer.locator(".sagekit-explorer-image")
        changed = changed if changed >= 0 else images.count() + changed  # counted from the end: the last row's
        before = [images.nth(i).screenshot() for i in (changed, kept) if i is not None]
        explorer.screenshot(path=str(tmp_path / f"{study}-explorer.png"))
        move(page, explorer, name, value)
        for _ in range(240):  # a redraw on the toy world takes about a second; leave room for a slow day
            page.wait_for_timeout(500)
            if images.nth(changed).screenshot() != before[0]:
                break
        idle(page)
        explorer.screenshot(path=str(tmp_path / f"{study}-explorer-moved.png"))
        assert images.nth(changed).screenshot() != before[0], f"{study}: moving {name} redrew nothing"
        if kept is not None:
            assert images.nth(kept).screenshot() == before[1], f"{study}: moving {name} redrew image {kept}"
        assert "redrawn in" in explorer.inner_text()
