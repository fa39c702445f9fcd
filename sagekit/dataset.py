"""A failure dataset: a run's found failures as files anyone can load, inspect and check.

``export(run, to)`` writes every failure case a run kept (``sagekit.failures``) as::

    DIR/README.md                 data card: the run's study, parameters, versions, columns
    DIR/metadata.parquet          one row per case (columns: ``COLUMNS``)
    DIR/images/<key>.png          the case's image, as the run drew it
    DIR/tensors/<key>.safetensors its initial latent or token embedding, where it has one

It loads with ``datasets.load_dataset("imagefolder", data_dir=DIR)`` (images decoded, the
metadata as columns) or ``load_dataset("parquet", data_files=f"{DIR}/metadata.parquet")``.
``verify(DIR, model)`` draws every case again and judges it: how many still fail.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import torch

from .failures import CASE, draw
from .store import ResultStore, new_folder, occupied

# (column, what it holds): the table's schema, in order; the data card lists it
COLUMNS = [
    ("file_name", "the case's image (PNG), relative to the dataset folder"),
    ("key", "the case's id in the run's results store"),
    ("study", "the sagekit study that found it"),
    ("model", "generator name, folder or hub id, as the run loaded it"),
    ("revision", "fingerprint of the generator's weights (hub commit, or a hash of its safetensors files)"),
    ("prompt", "the prompt drawn (an adversarial token appears as `token`)"),
    ("label", "the label the goal is about: the object the prompt asks for; for a TargetGoal the one that should appear"),
    ("seeds", "seeds of the initial noise and of the sampler's own noise"),
    ("sampler", "diffusers scheduler class"),
    ("steps", "sampling steps"),
    ("guidance", "classifier-free guidance scale"),
    ("goal", "what counts as failure (JSON): RobustGoal, UnrelatedGoal, DistortedGoal or TargetGoal and its thresholds"),
    ("judge", "the judges the search used (a sagekit judge spec)"),
    ("verifier", "held-out judges the search never consulted"),
    ("fail_fraction", "the case fails when the goal is met on at least this share of its seeds"),
    ("judge_failure_rate", "share of the seeds on which the judges saw the failure"),
    ("verifier_failure_rate", "share of the seeds on which the verifier saw it"),
    ("verified", "verifier_failure_rate >= fail_fraction"),
    ("token", "the adversarial token's placeholder in the prompt, or null"),
    ("tensor_file", "safetensors file with `latent` (C, h, w) or `embedding` (E,), or null"),
    ("extra", "the study's own fields (JSON): perplexity, certificate, iterations, ..."),
]
_IDENTITY = ("model", "revision", "prompt", "label", "seeds", "sampler", "steps", "guidance", "goal", "judge",
             "verifier", "fail_fraction", "token")
_OUTCOME = ("judge_failure_rate", "verifier_failure_rate", "verified", "case")


class DatasetError(ValueError):
    """A run, folder or dataset that cannot be exported or verified (bad input)."""


def locate(run: str | Path) -> tuple[ResultStore, list[str] | None, dict]:
    """The results store of ``run``, the keys of the cases it kept (None: every case in
    the store) and its summary ({} for a bare store). ``run``: a summary ``.json`` or
    ``.html`` as ``sagekit run`` writes them, or a results-store folder."""
    from .studies import STUDIES

    path = Path(run).expanduser()
    if path.is_dir():
        if not (path / "results.sqlite").is_file():
            raise DatasetError(f"{path} is not a results store (no results.sqlite)")
        return ResultStore(path), None, {}
    if path.suffix == ".html":
        path = path.with_suffix(".json")
    if path.suffix != ".json" or not path.is_file():
        raise DatasetError(f"{run}: not a run's summary (.json or .html written by `sagekit run`) "
                           "nor a results-store folder")
    try:
        summary = json.loads(path.read_text())
        study, params = summary["study"], summary["parameters"]
    except (ValueError, KeyError, TypeError):
        raise DatasetError(f"{path} is not a summary written by `sagekit run`") from None
    cases = summary.get("findings", {}).get("cases")
    if cases is None or "store_dir" not in params:
        raise DatasetError(f"{path}: this {study} run kept no failure cases (only the SAGE studies do: "
                           "prompt-failures, distorted-latents, unrelated-latents, adversarial-tokens)")
    store_dir = Path(params["store_dir"]).expanduser()
    if not store_dir.is_absolute() and study in STUDIES:  # notebooks run in their own folder
        store_dir = STUDIES[study].path.parent / store_dir
    if not (store_dir / "results.sqlite").is_file():
        raise DatasetError(f"{path}: its results store {store_dir} is missing")
    return ResultStore(store_dir), list(cases), summary


def cases_frame(store: ResultStore, keys: list[str] | None = None) -> pd.DataFrame:
    """The failure cases of ``store`` (those of ``keys`` only, in their order, if given)."""
    frame = store.frame()
    if len(frame) and "case" in frame:
        frame = frame[frame["case"] == CASE]
    else:
        frame = frame.iloc[0:0]
    if keys is not None:
        missing = set(keys) - set(frame["key"]) if len(frame) else set(keys)
        if missing:
            raise DatasetError(f"{len(missing)} of the run's cases are not in {store.root}")
        frame = frame.set_index("key").loc[list(keys)].reset_index()
    return frame.reset_index(drop=True)


def _row(store: ResultStore, r: pd.Series) -> dict:
    known = {"key", "study", "tags", "image", "tensors", *_IDENTITY, *_OUTCOME}
    extra = {k: v for k, v in r.items() if k not in known and not (isinstance(v, float) and pd.isna(v))}
    tensors = isinstance(r.get("tensors"), str)  # the case kept tensors (a latent, a token): they must be there
    for what, path in (("image", store.image_path(r["key"])), ("tensors", store.tensor_path(r["key"]))):
        if (what == "image" or tensors) and not path.is_file():
            raise DatasetError(f"case {r['key']}: its {what} {path} is missing from the store; nothing was exported "
                               "(run the study again with the same store to draw it again)")
    return {"file_name": f"images/{r['key']}.png", "key": r["key"], "study": r["study"],
            **{k: r[k] for k in _IDENTITY if k not in ("goal", "token")},
            "goal": json.dumps(r["goal"], sort_keys=True), "judge_failure_rate": float(r["judge_failure_rate"]),
            "verifier_failure_rate": float(r["verifier_failure_rate"]), "verified": bool(r["verified"]),
            "token": r["token"] if isinstance(r["token"], str) else None,
            "tensor_file": f"tensors/{r['key']}.safetensors" if tensors else None,
            "extra": json.dumps(extra, sort_keys=True, default=str)}


def export(run: str | Path, to: str | Path) -> dict:
    """Write the failure dataset of ``run`` into the new folder ``to`` (see the module
    docstring); returns ``{"cases", "verified", "folder"}``. Raises :class:`DatasetError`
    (nothing written) for a bad run, an existing non-empty ``to`` or a run without cases."""
    from datasets import Dataset

    to = Path(to).expanduser()
    if occupied(to):
        raise DatasetError(f"--to {str(to)!r} exists and is not an empty folder")
    store, keys, summary = locate(run)
    frame = cases_frame(store, keys)
    if not len(frame):
        raise DatasetError(f"{run}: no failure cases to export (the run found none)")
    rows = [_row(store, r) for _, r in frame.iterrows()]
    with new_folder(to) as tmp:
        (tmp / "images").mkdir()
        for r in rows:
            shutil.copyfile(store.image_path(r["key"]), tmp / r["file_name"])
            if r["tensor_file"]:
                (tmp / "tensors").mkdir(exist_ok=True)
                shutil.copyfile(store.tensor_path(r["key"]), tmp / r["tensor_file"])
        from datasets.utils.logging import disable_progress_bar, enable_progress_bar

        disable_progress_bar()  # one table: a bar would only clutter the command's output
        try:
            Dataset.from_list(rows).to_parquet(str(tmp / "metadata.parquet"))
        finally:
            enable_progress_bar()
        (tmp / "README.md").write_text(data_card(rows, summary, store.root))
    return {"cases": len(rows), "verified": sum(r["verified"] for r in rows), "folder": str(to)}


def data_card(rows: list[dict], summary: dict, store_root: Path) -> str:
    """The dataset's README.md: a Hugging Face dataset card (YAML header) with what the
    cases are, how they were found (the run's parameters and versions) and how to load
    and verify them."""
    studies = sorted({r["study"] for r in rows})
    models = sorted({f"{r['model']} (revision {r['revision']})" for r in rows})
    n = len(rows)
    size = "n<1K" if n < 1000 else "1K<n<10K" if n < 10_000 else "10K<n<100K"
    head = ["---", "pretty_name: sagekit failure cases (" + ", ".join(studies) + ")",
            "tags: [sagekit, text-to-image, diffusion, robustness, failure-cases]",
            "task_categories: [text-to-image]", f"size_categories: [{size}]", "---", ""]
    body = [f"# Failure cases: {', '.join(studies)}", "",
            f"{n} failure cases of {', '.join(models)}, found by sagekit; {sum(r['verified'] for r in rows)} of them "
            "confirmed by a held-out verifier. Each row is everything it takes to draw the failure again: prompt, "
            "seeds, sampler, steps, guidance, and where the search changed them, the initial latent or the token "
            "embedding (safetensors). The images inherit the license of the model that drew them.", ""]
    if summary:
        body += [f"Run: `sagekit run {summary['study']}` started {summary.get('started', '?')}, "
                 f"{summary.get('wall_seconds', '?')} s. Question: {summary.get('question', '')}", "",
                 "| parameter | value |", "|---|---|"]
        body += [f"| {k} | `{json.dumps(v, default=str)}` |" for k, v in summary["parameters"].items()]
        body += ["", "Versions: " + ", ".join(f"{k} {v}" for k, v in summary.get("versions", {}).items()), ""]
    else:
        body += [f"Exported from the results store {store_root}.", ""]
    body += ["## Columns", "", "| column | meaning |", "|---|---|"]
    body += [f"| `{c}` | {what} |" for c, what in COLUMNS]
    body += ["", "## Load", "", "```python", "from datasets import load_dataset", "",
             'cases = load_dataset("imagefolder", data_dir="THIS_FOLDER", split="train")   # with images',
             'table = load_dataset("parquet", data_files="THIS_FOLDER/metadata.parquet", split="train")',
             "from safetensors.torch import load_file  # latents and token embeddings: never pickle",
             "```", "", "## Check", "",
             "Draw every case again with the same model and judge it (the judges named in `judge`):", "",
             "```", "sagekit verify THIS_FOLDER --model MODEL", "```", ""]
    return "\n".join(head + body)


def read(folder: str | Path) -> pd.DataFrame:
    """The cases of a dataset folder ``export`` wrote (its ``metadata.parquet``)."""
    folder = Path(folder).expanduser()
    table = folder / "metadata.parquet"
    if not table.is_file():
        raise DatasetError(f"{folder} is not a sagekit failure dataset (no metadata.parquet)")
    frame = pd.read_parquet(table)
    missing = [c for c, _ in COLUMNS if c not in frame]
    if missing:
        raise DatasetError(f"{table} lacks the columns {', '.join(missing)}")
    return frame


def verify(folder: str | Path, model: str, judge: str | None = None, device: str = "cpu",
           progress: bool = True) -> pd.DataFrame:
    """Draw every case of a dataset again with generator ``model`` and judge it under its
    goal with its own judges (or ``judge``) and its verifier. One row per case: the
    recorded and the new failure rates and whether it ``still_fails`` (new judge rate >=
    ``fail_fraction``), ``verifier_still`` likewise, and ``same_revision`` (the weights
    are the ones it was found on)."""
    from safetensors.torch import load_file
    from tqdm.auto import tqdm

    from .models.registry import load_ensemble, load_generator, load_judge
    from .search import goal_from_spec

    folder = Path(folder).expanduser()
    cases = read(folder)
    gen = load_generator(model, device=device)
    ensembles: dict[str, object] = {}

    def judged(spec: str):
        if spec not in ensembles:
            ensembles[spec] = load_ensemble(spec, device)
        return ensembles[spec]

    out = []
    for _, c in tqdm(cases.iterrows(), total=len(cases), desc="verify", disable=not progress, leave=False):
        # a case without tensors has a null tensor_file, which pandas reads as NaN (truthy)
        tensors = load_file(str(folder / c["tensor_file"])) if isinstance(c["tensor_file"], str) else {}
        seeds = [int(s) for s in c["seeds"]]
        token = c["token"] if isinstance(c["token"], str) else None
        images = draw(gen, c["prompt"], seeds, c["sampler"], int(c["steps"]), float(c["guidance"]), token,
                      tensors)
        rates = {}
        for role, spec in (("judge", judge or c["judge"]), ("verifier", c["verifier"])):
            goal = goal_from_spec(json.loads(c["goal"]), judged(spec), lambda name: load_judge(name, device))
            target = torch.full((len(seeds),), goal.ensemble.label_index(c["label"]))
            rates[role] = float(goal.found(images.to(goal.ensemble.weights.device), target).float().mean())
        out.append({"key": c["key"], "study": c["study"], "prompt": c["prompt"], "label": c["label"],
                    "recorded": float(c["judge_failure_rate"]), "now": rates["judge"],
                    "still_fails": rates["judge"] >= c["fail_fraction"],
                    "verifier_recorded": float(c["verifier_failure_rate"]), "verifier_now": rates["verifier"],
                    "verifier_still": rates["verifier"] >= c["fail_fraction"],
                    "same_revision": c["revision"] == getattr(gen, "revision", "")})
    return pd.DataFrame(out)
