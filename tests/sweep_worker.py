"""Run a small seed-shift sweep into a store (used by test_sweep.py, also as a subprocess
that the test kills). Usage: python sweep_worker.py STORE_DIR [SLEEP_PER_BATCH]"""

import sys
import time

from sagekit.models.registry import load_clip_scorer, load_generator, load_judge
from sagekit.spread import Models
from sagekit.store import ResultStore
from sagekit.studies import seed_shifts as ss


def cells():
    return ss.build_cells(["toy"], {"UMS": [0.1], "PAS": [16]}, ["red star", "blue circle"], range(2),
                          [3.0], 3, "toy-resnet", "toy-clip")


def main(store_dir, sleep=0.0):
    models = Models({"toy": load_generator("toy")}, judge=load_judge("toy-resnet"), clip=load_clip_scorer("toy-clip"))

    def slow(models, batch):
        out = ss.judge_batch(models, batch)
        time.sleep(sleep)
        return out

    from sagekit.sweep import run_sweep

    return run_sweep(ss.STUDY, cells(), ResultStore(store_dir), slow, batch_size=3, progress=False, models=models)


if __name__ == "__main__":
    main(sys.argv[1], float(sys.argv[2]) if len(sys.argv) > 2 else 0.0)
