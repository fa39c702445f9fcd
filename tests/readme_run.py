"""What tests/test_readme.py puts on PATH in place of ``sagekit`` and ``hf`` while it runs the
README's commands as written.

``sagekit``: the real command line, with only sizes and the device replaced (:data:`SIZES`,
appended after the README's own values, so they win), and the paths a test must keep to
itself (results stores, retrained toy weights) sent to a temporary folder. Every call and
its exit status is logged as a JSON line to ``$README_LOG``.

``hf``: stands in for the hub's download client. The models are already in the offline cache
(``sagekit.testing.HUB_STAND_INS``); it checks that the README downloads only models that
have a stand-in, and that every ``--exclude`` pattern reached it as a pattern (the shell did
not expand it against the current folder) and that together they leave out every pickle.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

# Per study, sizes small enough for the fast test set (the README's grids, models and judges stay).
SIZES = {
    "toy-world": ["per_label=1", "n_judge=100", "grid_labels=4", "per_probe=1", "probe_pairs=2", "probe_seeds=2"],
    "prompt-failures": ["n_labels=1", "max_words=1", "top_k=2", "rescore=1", "iterations=1", "train_seeds=1",
                        "eval_seeds=1", "search_steps=2", "steps=2", "k=1", "baseline_prompts=1"],
    "distorted-latents": ["n_labels=1", "heldout=1", "latents=1", "iterations=1", "compare_iterations=1",
                          "reference_images=2", "steps=2", "k=1"],
    "unrelated-latents": ["n_labels=1", "seeds_per_label=1", "iterations=1", "compare_iterations=1",
                          "reference_images=2", "steps=2", "k=1"],
    "adversarial-tokens": ["n_train_labels=1", "n_heldout_labels=1", "iterations=1", "batch=1", "examples=1",
                           "eval_seeds=1", "search_steps=2", "steps=2", "k=1"],
    "seed-shifts": ["n_labels=1", "seeds_per_cell=1", "baseline_seeds_per_cell=1", "trajectory_seeds=1", "steps=2",
                    "batch_size=32"],
    "prompt-audit": ["n_prompts=2", "seeds_per_prompt=1", "steps=2", "n_judge=50", "search=1", "search_words=1",
                     "search_iterations=1"],
    "implosion": ["n_train=24", "budget=8", "per_concept=2", "finetune_steps=1", "batch_size=2", "eval_seeds=1",
                  "attention_seeds=1", "steps=2"],
}
STORES = ("prompt-failures", "distorted-latents", "unrelated-latents", "adversarial-tokens", "seed-shifts")


def _tmp() -> Path:
    return Path(os.environ["README_TMP"])


def _option(argv: list[str], name: str, value: str) -> list[str]:
    """``argv`` with option ``name`` set to ``value`` (replaced where given, else appended)."""
    if name in argv:
        i = argv.index(name)
        return argv[:i + 1] + [value] + argv[i + 2:]
    return argv + [name, value]


def rewrite(argv: list[str]) -> list[str]:
    """A README command with its sizes and device replaced."""
    argv = list(argv)
    if argv[:1] == ["run"] and len(argv) > 1:
        study = argv[1]
        keep, i = [], 0
        while i < len(argv):  # drop the README's device: this machine has no GPU
            if argv[i] in ("-p", "--param") and i + 1 < len(argv) and argv[i + 1].startswith("device="):
                i += 2
                continue
            keep.append(argv[i])
            i += 1
        from sagekit.studies import STUDIES

        takes = STUDIES[study].schema.params if study in STUDIES else {}
        extra = SIZES.get(study, []) + (["device='cpu'"] if "device" in takes else [])
        if study in STORES:
            extra.append(f"store_dir={str(_tmp() / 'stores' / study)!r}")
        return keep + [a for x in extra for a in ("-p", x)]
    if argv[:2] == ["toy", "train"]:
        return _option(_option(argv, "--out", str(_tmp() / "toy-weights")), "--scale", "0.001")
    if argv[:2] == ["toy", "eval"]:
        return _option(_option(argv, "--per-label", "1"), "--n-judge", "50")
    if argv[:2] == ["bench", "sweep"]:
        return _option(_option(argv, "--steps", "2"), "--batch-size", "4")
    if argv[:1] == ["poison"]:
        return _option(argv, "--budget", "4")
    if argv[:1] in (["verify"], ["ad"]):
        return _option(argv, "--device", "cpu")
    if argv[:1] == ["lab"]:
        return _option(argv, "--dir", str(_tmp() / "lab")) + ([] if "--no-browser" in argv else ["--no-browser"])
    return argv


def _lab(argv: list[str]) -> int:
    """`sagekit lab` serves until Ctrl-C: run it, open the URL it prints, then press Ctrl-C
    (SIGINT); its exit status is the command's."""
    import signal
    import subprocess
    import urllib.request

    proc = subprocess.Popen([sys.executable, "-m", "sagekit", *argv], stdout=subprocess.PIPE, text=True)
    url = proc.stdout.readline().strip()
    if not url:
        return proc.wait(60)
    try:
        direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with direct.open(url, timeout=30) as page:
            answered = page.status == 200
    finally:
        proc.send_signal(signal.SIGINT)
    try:
        rc = proc.wait(60)
    except subprocess.TimeoutExpired:  # Ctrl-C did not stop it: a failure, and no server left holding our pipes
        proc.kill()
        proc.wait()
        return 1
    return rc if answered else 1


def _log(entry: dict) -> None:
    with open(os.environ["README_LOG"], "a") as fh:
        fh.write(json.dumps(entry) + "\n")


def sagekit(argv: list[str]) -> int:
    from sagekit.cli import main

    import time

    ran, t0 = rewrite(argv), time.perf_counter()
    try:
        rc = _lab(ran) if ran[:1] == ["lab"] else main(ran)
    except SystemExit as e:  # argparse
        rc = e.code if isinstance(e.code, int) else 1
    _log({"tool": "sagekit", "readme": argv, "ran": ran, "rc": rc, "seconds": round(time.perf_counter() - t0, 1)})
    return rc


def hf(argv: list[str]) -> int:
    # what the test passed down: importing sagekit here would cost seconds per download line
    HUB_STAND_INS, PICKLE_SUFFIXES = json.loads(os.environ["README_STAND_INS"]), json.loads(os.environ["README_PICKLES"])
    problem = None
    if argv[:1] != ["download"] or len(argv) < 2:
        problem = f"the README calls hf with {argv}; only `hf download REPO --exclude ...` is stood in for"
    else:
        patterns = [argv[i + 1] for i, a in enumerate(argv) if a == "--exclude" and i + 1 < len(argv)]
        expanded = [p for p in patterns if "*" not in p]
        missing = [s for s in PICKLE_SUFFIXES if f"*{s}" not in patterns]
        if argv[1] not in HUB_STAND_INS:
            problem = f"the README downloads {argv[1]}, which has no stand-in in sagekit.testing.HUB_STAND_INS"
        elif expanded:
            problem = f"--exclude got {expanded}: the shell expanded the README's pattern against this folder"
        elif missing:
            problem = f"the download of {argv[1]} does not leave out {missing}"
    _log({"tool": "hf", "readme": argv, "rc": 1 if problem else 0, "problem": problem})
    if problem:
        print(f"hf (README test): {problem}", file=sys.stderr)
    return 1 if problem else 0
