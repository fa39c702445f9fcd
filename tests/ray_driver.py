"""A sweep driver in its own process, connected to a running Ray cluster, that the test kills."""

import sys
from pathlib import Path

from sagekit.executors import RayExecutor
from sagekit.store import ResultStore
from sagekit.sweep import grid, run_sweep


def main(address: str, store: str, log: str):
    cells = grid(model=["m"], guidance=[1.0], steps=[1], seed=range(16))
    executor = RayExecutor(address, workers=2, threads=1)
    return run_sweep("t", cells, ResultStore(store), "ray_helpers:slow", batch_size=2, progress=False,
                     executor=executor, settings={"log": log})


if __name__ == "__main__":
    main(*sys.argv[1:4])
    Path(sys.argv[2], "finished").write_text("yes")
