"""Results store and sweeps: atomic batches, resume after SIGKILL, DataFrames back."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch

from sagekit.store import ResultStore, cell_key
from sagekit.sweep import grid, plan_batches, run_sweep

HERE = Path(__file__).parent


def test_cell_keys_are_stable_and_order_free():
    assert cell_key({"a": 1, "b": [1, 2]}) == cell_key({"b": [1, 2], "a": 1})
    assert cell_key({"a": 1}) != cell_key({"a": 2}) and len(cell_key({})) == 20


def test_store_round_trip_and_tags(tmp_path):
    store = ResultStore(tmp_path)
    img = torch.rand(2, 3, 8, 8)
    keys = store.put_batch("s", [{"seed": 0}, {"seed": 1}], [{"acc": 1.0}, {"acc": 0.0}], img)
    df = store.frame("s")
    assert list(df["seed"]) == [0, 1] and list(df["acc"]) == [1.0, 0.0]
    assert torch.allclose(store.image(keys[1]), img[1], atol=1 / 255)
    store.put_batch("s", [{"seed": 0}], [{"acc": 0.5}])  # already stored: ignored
    assert len(store) == 2 and store.frame()["acc"].tolist() == [1.0, 0.0]
    store.tag(keys[0], ["word overrides object", "attribute leakage"])
    assert ResultStore(tmp_path).frame().loc[0, "tags"] == ["attribute leakage", "word overrides object"]
    with pytest.raises(KeyError):
        store.tag("nope", ["x"])
    with sqlite_mode(tmp_path) as mode:
        assert mode == "wal"


class sqlite_mode:
    def __init__(self, root):
        import sqlite3

        self.con = sqlite3.connect(Path(root) / "results.sqlite")

    def __enter__(self):
        return self.con.execute("PRAGMA journal_mode").fetchone()[0]

    def __exit__(self, *exc):
        self.con.close()


def test_grid_and_batches_respect_groups():
    cells = grid(model=["a", "b"], guidance=[1.0], steps=[5], seed=range(5))
    assert len(cells) == 10
    batches = plan_batches(cells, 4, ("model", "guidance", "steps"))
    assert [len(b) for b in batches] == [4, 1, 4, 1]
    assert all(len({c["model"] for c in b}) == 1 for b in batches)


def test_run_sweep_skips_finished_cells(tmp_path):
    calls = []

    def process(models, batch):
        calls.append(len(batch))
        return [{"double": 2 * c["seed"]} for c in batch], None

    cells = grid(model=["m"], guidance=[1.0], steps=[1], seed=range(6))
    store = ResultStore(tmp_path)  # a process that draws no images: a cell is done when its row is stored
    df = run_sweep("t", cells[:4], store, process, batch_size=3, progress=False, keep_images=False)
    assert calls == [3, 1] and list(df["double"]) == [0, 2, 4, 6]
    df = run_sweep("t", cells + cells[:2], store, process, batch_size=3, progress=False, keep_images=False)
    assert calls == [3, 1, 2] and sorted(df["double"]) == [0, 2, 4, 6, 8, 10]


def test_a_cell_whose_image_was_deleted_is_drawn_again(tmp_path):
    calls = []

    def process(models, batch):
        calls.append([c["seed"] for c in batch])
        seeds = torch.tensor([c["seed"] for c in batch], dtype=torch.float32)
        return [{"seed2": 2 * c["seed"]} for c in batch], (seeds / 10).view(-1, 1, 1, 1).expand(-1, 3, 4, 4)

    cells = grid(model=["m"], guidance=[1.0], steps=[1], seed=range(3))
    store = ResultStore(tmp_path)
    keys = list(run_sweep("t", cells, store, process, batch_size=3, progress=False)["key"])
    store.image_path(keys[1]).unlink()
    df = run_sweep("t", cells, store, process, batch_size=3, progress=False)
    assert calls == [[0, 1, 2], [1]] and df["image"].notna().all() and len(store) == 3
    assert torch.allclose(store.image(keys[1]), torch.full((3, 4, 4), 0.1), atol=1 / 255)


def test_a_sweep_killed_with_sigkill_resumes_to_the_same_results(tmp_path):
    # the worker must import the sagekit under test (this checkout), not whichever one the venv installed
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE), str(HERE.parent)])}
    killed = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, str(HERE / "sweep_worker.py"), str(killed), "1.0"], env=env)
    deadline = time.time() + 240
    while time.time() < deadline:
        if (killed / "results.sqlite").exists() and 0 < len(ResultStore(killed)) < 12:
            break
        time.sleep(0.2)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    n_at_kill = len(ResultStore(killed))
    assert 0 < n_at_kill < 12, n_at_kill  # killed in the middle

    sys.path.insert(0, str(HERE))
    import sweep_worker

    resumed = sweep_worker.main(killed)
    clean = sweep_worker.main(tmp_path / "clean")
    assert len(resumed) == len(clean) == 12 and resumed["key"].is_unique
    cols = ["key", "top1", "top5", "p_target", "clip", "cx", "cy"]
    a, b = resumed[cols].sort_values("key").reset_index(drop=True), clean[cols].sort_values("key").reset_index(drop=True)
    pd.testing.assert_frame_equal(a, b)
    assert not list(killed.rglob("*.tmp"))


class _SlowStore(ResultStore):
    """A store that notes the order of events (``log``); a commit waits up to ``wait`` s for
    the next batch's computation to start (it starts at once when the two overlap); one
    seed's batch fails."""

    def __init__(self, root, log, fail_seed=None, wait=0.0):
        super().__init__(root)
        self.log, self.fail_seed, self.wait = log, fail_seed, wait

    def put_batch(self, study, cells, metrics, images=None):
        if any(c["seed"] == self.fail_seed for c in cells):
            raise OSError("disk full")
        n = sum(1 for e in self.log if e[0] == "store")
        self.log.append(("store", n))
        deadline = time.monotonic() + self.wait  # a bound on a wait that ends early, not a measured time
        while ("compute", n + 1) not in self.log and time.monotonic() < deadline and n < 3:
            time.sleep(0.01)
        self.log.append(("stored", n))
        return super().put_batch(study, cells, metrics, images)


def _process(log):
    def process(models, batch):
        log.append(("compute", sum(1 for e in log if e[0] == "compute")))
        return [{"double": 2 * c["seed"]} for c in batch], torch.full((len(batch), 3, 4, 4), 0.5)

    return process


def test_storing_overlaps_the_next_batch_and_keeps_every_result(tmp_path):
    cells = grid(model=["m"], guidance=[1.0], steps=[1], seed=range(7))
    log: list = []
    df = run_sweep("t", cells, _SlowStore(tmp_path / "overlap", log, wait=60), _process(log), batch_size=2,
                   progress=False)
    # batch i + 1 started computing before batch i's commit ended (the commit waited for it; stored
    # inline, it would have waited in vain)
    assert all(log.index(("compute", i + 1)) < log.index(("stored", i)) for i in range(3))
    log = []
    same = run_sweep("t", cells, _SlowStore(tmp_path / "inline", log, wait=0.5), _process(log), batch_size=2,
                     progress=False, queue=0)
    # queue=0: one after another (a commit ends before the next batch computes)
    assert all(log.index(("stored", i)) < log.index(("compute", i + 1)) for i in range(3))
    cols = ["key", "seed", "double"]
    pd.testing.assert_frame_equal(df[cols], same[cols])
    assert df["image"].notna().all() and len(df) == 7


def test_a_failed_commit_stops_the_sweep_and_keeps_what_was_stored(tmp_path):
    log: list = []
    cells = grid(model=["m"], guidance=[1.0], steps=[1], seed=range(20))
    with pytest.raises(OSError, match="disk full"):
        run_sweep("t", cells, _SlowStore(tmp_path, log, fail_seed=4), _process(log), batch_size=2, progress=False,
                  queue=1)
    assert sorted(ResultStore(tmp_path).frame("t")["seed"]) == [0, 1, 2, 3]
    assert sum(1 for e in log if e[0] == "compute") < 10  # it stopped soon after, not at the end
