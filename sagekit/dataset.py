"""A failure dataset: a run's found failures as files anyone can load, inspect and check.

``export(run, to)`` writes every failure case a run kept (``sagekit.failures``) as::

    DIR/README.md                 data card: the run's study, parameters, versions, columns
    DIR/metadata.parquet          one row per case (columns: ``COLUMNS``)
    DIR/images/<key>.png          the case's image, as the run drew it
    DIR/tensors/<key>.safetensors its initial latent or token embedding, where it has one
    DIR/manifest.json             sha256 and size of every file above

It loads with ``datasets.load_dataset("imagefolder", data_dir=DIR)`` (images decoded, the
metadata as columns) or ``load_dataset("parquet", data_files=f"{DIR}/metadata.parquet")``.
``verify(DIR, model)`` draws every case again and judges it: how many still fail. A
dataset is read only after every file matches its manifest, lies inside the folder and
keeps to bounds on every size (a dataset is input from strangers).
"""

from __future__ import annotations

import json
import math
import numbers
import re
import shutil
from pathlib import Path

import pandas as pd
import torch

from .audit import PROMPT_FACTS
from .failures import CASE, draw
from .markup import short
from .models.weights import sha256_file
from .verdicts import VERDICTS, verdict_of
from .store import ResultStore, new_folder, occupied

# columns newer than the first datasets, and what a dataset without them reads as
ADDED = {"verdict": None, "tags": "[]"}
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
    ("verdict", "a person's verdict on the image (`sagekit.verdicts`): model failed, judges erred, unsure, or null"),
    ("tags", "the causes a person tagged it with (JSON list; the prompt-failure taxonomy)"),
    ("token", "the adversarial token's placeholder in the prompt, or null"),
    ("verifier_sampler", "the sampler of the images the verifier judged, where it is not `sampler` (a found latent "
                         "counts only when another sampler draws the failure too), or null"),
    ("tensor_file", "safetensors file with `latent` (C, h, w) or `embedding` (E,), or null"),
    ("extra", "the study's own fields (JSON): perplexity, certificate, iterations, ..."),
]
_IDENTITY = ("model", "revision", "prompt", "label", "seeds", "sampler", "steps", "guidance", "goal", "judge",
             "verifier", "fail_fraction", "token", "verifier_sampler")
MANIFEST = "manifest.json"
FORMAT = "sagekit-failures/1"
# bounds on what `read` accepts: a dataset is untrusted input (sizes a real study can reach)
LIMITS = {"seeds": 10_000, "steps": 1_000, "prompt": 4_000, "cases": 100_000, "file": 256 * 2**20,
          "table": 2**30, "manifest": 64 * 2**20}
_KEY = re.compile(r"^[0-9a-f]{20}$")
_OUTCOME = ("judge_failure_rate", "verifier_failure_rate", "verified", "case")


VERIFY_BATCH = 16  # seeds drawn at once by `verify`


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
    tags = list(r["tags"]) if isinstance(r.get("tags"), (list, tuple)) else []
    tensors = isinstance(r.get("tensors"), str)  # the case kept tensors (a latent, a token): they must be there
    for what, path in (("image", store.image_path(r["key"])), ("tensors", store.tensor_path(r["key"]))):
        if (what == "image" or tensors) and not path.is_file():
            raise DatasetError(f"case {r['key']}: its {what} {path} is missing from the store; nothing was exported "
                               "(run the study again with the same store to draw it again)")
    return {"file_name": f"images/{r['key']}.png", "key": r["key"], "study": r["study"],
            **{k: r[k] for k in _IDENTITY if k not in ("goal", "token", "verifier_sampler")},
            "goal": json.dumps(r["goal"], sort_keys=True), "judge_failure_rate": float(r["judge_failure_rate"]),
            "verifier_failure_rate": float(r["verifier_failure_rate"]), "verified": bool(r["verified"]),
            "verdict": verdict_of(tags), "tags": json.dumps([t for t in tags if verdict_of([t]) is None]),
            "token": r["token"] if isinstance(r["token"], str) else None,
            "verifier_sampler": r.get("verifier_sampler") if isinstance(r.get("verifier_sampler"), str) else None,
            "tensor_file": f"tensors/{r['key']}.safetensors" if tensors else None,
            "extra": json.dumps(extra, sort_keys=True, default=str)}


def export(run: str | Path, to: str | Path) -> dict:
    """Write the failure dataset of ``run`` into the new folder ``to`` (see the module
    docstring); returns ``{"cases", "verified", "folder"}``. Raises :class:`DatasetError`
    (nothing written) for a bad run, an existing non-empty ``to`` or a run without cases."""
    from datasets import Dataset

    to = Path(to).expanduser()
    if occupied(to):
        raise DatasetError(f"--to {short(str(to))} exists and is not an empty folder")
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
        write_manifest(tmp)
    return {"cases": len(rows), "verified": sum(r["verified"] for r in rows), "folder": str(to)}


def data_card(rows: list[dict], summary: dict, store_root: Path) -> str:
    """The dataset's README.md: a Hugging Face dataset card (YAML header) with what the
    cases are, how they were found (the run's parameters and versions) and how to load
    and verify them. Every value that came from a user (model names and paths, parameter
    values) is escaped (``sagekit.markup``): a path can hold Markdown or HTML."""
    from .markup import code, escape

    studies = sorted({r["study"] for r in rows})
    models = sorted({f"{escape(r['model'])} (revision {escape(r['revision'])})" for r in rows})
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
        body += [f"Run: {code('sagekit run ' + str(summary['study']))} started {escape(summary.get('started', '?'))}, "
                 f"{escape(summary.get('wall_seconds', '?'))} s. Question: {escape(summary.get('question', ''))}", "",
                 "| parameter | value |", "|---|---|"]
        body += [f"| {escape(k)} | {code(json.dumps(v, default=str))} |" for k, v in summary["parameters"].items()]
        body += ["", "Versions: " + ", ".join(f"{escape(k)} {escape(v)}" for k, v in summary.get("versions", {}).items()),
                 ""]
    else:
        body += [f"Exported from the results store {code(store_root)}.", ""]
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


def _inside(folder: Path, name: object, limit: int) -> Path:
    """``folder / name`` when ``name`` is a plain relative path to a regular file inside
    ``folder`` (no ``..``, no absolute path, no symlink anywhere below the folder) of at
    most ``limit`` bytes; else DatasetError."""
    if not isinstance(name, str) or not name or name.startswith(("/", "\\")) or ".." in Path(name).parts:
        raise DatasetError(f"{folder}: {str(name)[:80]!r} is not a file inside the dataset folder")
    path, here = folder, folder.resolve()
    for part in Path(name).parts:
        path = path / part
        if path.is_symlink():
            raise DatasetError(f"{folder}: {name!r} is a symbolic link; a dataset holds plain files only")
    if not path.is_file() or here not in path.resolve().parents:
        raise DatasetError(f"{folder}: {name!r} is missing or not a file inside the dataset folder")
    if path.stat().st_size > limit:
        raise DatasetError(f"{folder}: {name!r} is {path.stat().st_size} bytes, over the {limit} a dataset file may be")
    return path


def write_manifest(folder: Path) -> None:
    """``manifest.json``: the size and sha256 of every other file of the dataset."""
    files = sorted(f for f in folder.rglob("*") if f.is_file() and f.name != MANIFEST)
    manifest = {"format": FORMAT, "files": {f.relative_to(folder).as_posix(): {"size": f.stat().st_size,
                                                                               "sha256": sha256_file(f)} for f in files}}
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=1, sort_keys=True))


def check_manifest(folder: Path) -> dict:
    """Every file of the manifest, checked: inside the folder, within bounds, its size and
    sha256 as recorded. Returns ``{relative name: entry}``."""
    if not (folder / MANIFEST).exists():
        raise DatasetError(f"{folder} has no {MANIFEST} (every `sagekit export` writes one): its files cannot be "
                           "checked, so its cases are not drawn again")
    path = _inside(folder, MANIFEST, LIMITS["manifest"])
    try:
        manifest = json.loads(path.read_text())
        assert manifest["format"] == FORMAT and isinstance(manifest["files"], dict)
    except (ValueError, KeyError, TypeError, AssertionError, UnicodeDecodeError):
        raise DatasetError(f"{path} is not a {FORMAT} manifest") from None
    for name, entry in manifest["files"].items():
        f = _inside(folder, name, LIMITS["table"] if name == "metadata.parquet" else LIMITS["file"])
        if not isinstance(entry, dict) or f.stat().st_size != entry.get("size") or sha256_file(f) != entry.get("sha256"):
            raise DatasetError(f"{folder}: {name} differs from the file the export wrote (its manifest's sha256); "
                               "the dataset was edited or damaged")
    return manifest["files"]


def read(folder: str | Path) -> pd.DataFrame:
    """The cases of a dataset folder ``export`` wrote (its ``metadata.parquet``), after
    :func:`check_manifest` and a check of every row against :data:`LIMITS`: a row names
    only its own image and tensor file, both in the manifest."""
    folder = Path(folder).expanduser()
    if not (folder / "metadata.parquet").is_file():
        raise DatasetError(f"{folder} is not a sagekit failure dataset (no metadata.parquet)")
    listed = check_manifest(folder)
    if "metadata.parquet" not in listed:
        raise DatasetError(f"{folder}: its manifest does not list metadata.parquet")
    try:
        frame = pd.read_parquet(folder / "metadata.parquet")
    except Exception as e:  # pyarrow raises several kinds for a damaged table
        raise DatasetError(f"{folder}/metadata.parquet cannot be read ({type(e).__name__})") from None
    missing = [c for c, _ in COLUMNS if c not in frame and c not in ADDED]
    if missing:
        raise DatasetError(f"{folder}/metadata.parquet lacks the columns {', '.join(missing)}")
    if len(frame) > LIMITS["cases"]:
        raise DatasetError(f"{folder}: {len(frame)} cases, more than the {LIMITS['cases']} a dataset may hold")
    for _, r in frame.iterrows():
        _check_row(r, listed)
    return frame.assign(**{c: [v] * len(frame) for c, v in ADDED.items() if c not in frame})


def _check_row(r: pd.Series, listed: dict) -> None:
    key = r["key"]
    if not isinstance(key, str) or not _KEY.match(key):
        raise DatasetError(f"a case's key {str(key)[:40]!r} is not a sagekit case key")
    where = f"case {key}"
    tensor_file = r["tensor_file"] if isinstance(r["tensor_file"], str) else None
    if r["file_name"] != f"images/{key}.png" or tensor_file not in (None, f"tensors/{key}.safetensors"):
        raise DatasetError(f"{where}: its files must be images/{key}.png and tensors/{key}.safetensors")
    for name in filter(None, (r["file_name"], tensor_file)):
        if name not in listed:
            raise DatasetError(f"{where}: {name} is not in the manifest")
    seeds = r["seeds"]
    if not hasattr(seeds, "__len__") or isinstance(seeds, str) or not 1 <= len(seeds) <= LIMITS["seeds"] or \
            not all(isinstance(s, numbers.Integral) and 0 <= s < 2**63 for s in seeds):
        raise DatasetError(f"{where}: seeds must be 1 to {LIMITS['seeds']} non-negative integers")
    if not (isinstance(r["steps"], numbers.Integral) and 1 <= r["steps"] <= LIMITS["steps"]):
        raise DatasetError(f"{where}: steps {r['steps']!r} is not in [1, {LIMITS['steps']}]")
    if not (isinstance(r["guidance"], numbers.Real) and math.isfinite(r["guidance"]) and 0 <= r["guidance"] <= 100):
        raise DatasetError(f"{where}: guidance {r['guidance']!r} is not a scale in [0, 100]")
    if not (isinstance(r["prompt"], str) and len(r["prompt"]) <= LIMITS["prompt"]):
        raise DatasetError(f"{where}: the prompt is not a string of at most {LIMITS['prompt']} characters")
    verdict = r.get("verdict")
    null = verdict is None or isinstance(verdict, float) and math.isnan(verdict)  # null reads as None or NaN
    if not (null or isinstance(verdict, str) and verdict in VERDICTS):
        raise DatasetError(f"{where}: verdict {str(verdict)[:40]!r} is none of {', '.join(VERDICTS)} (or null)")


def _case_tensors(folder: Path, c: pd.Series, gen) -> dict:
    """The case's latent or token embedding, read as safetensors (never pickle) and of
    the shape ``gen`` takes (``latent_shape``, ``token_width``); DatasetError otherwise."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    if not isinstance(c["tensor_file"], str):  # a null tensor_file is NaN to pandas
        return {}
    try:
        tensors = load_file(str(folder / c["tensor_file"]))
    except (SafetensorError, OSError, ValueError) as e:
        raise DatasetError(f"case {c['key']}: {c['tensor_file']} is not a safetensors file "
                           f"({str(e).splitlines()[0][:80]})") from None
    want = {"latent": tuple(gen.latent_shape), "embedding": (gen.token_width,)}
    for name, t in tensors.items():
        if name not in want or tuple(t.shape) != want[name] or not t.is_floating_point():
            raise DatasetError(f"case {c['key']}: {c['tensor_file']} holds {name} {tuple(t.shape)}; "
                               f"{gen.name} takes latent {want['latent']} or embedding {want['embedding']}")
    if "embedding" in tensors and not isinstance(c["token"], str):
        raise DatasetError(f"case {c['key']}: an embedding but no token naming it in the prompt")
    return tensors


def verify(folder: str | Path, model: str, judge: str | None = None, device: str = "cpu",
           progress: bool = True) -> pd.DataFrame:
    """Draw every case of a dataset again with generator ``model`` and judge it under its
    goal with its own judges (or ``judge``) and its verifier. One row per case: the
    recorded and the new failure rates and whether it ``still_fails`` (new judge rate >=
    ``fail_fraction``), ``verifier_still`` likewise, and ``same_revision`` (the weights
    are the ones it was found on)."""
    from .progress import bar as progress_bar

    from .models.registry import load_ensemble, load_generator, load_judge
    from .search import goal_from_spec

    folder = Path(folder).expanduser()
    cases = read(folder)
    gen = load_generator(model, device=device)
    ensembles: dict[str, object] = {}
    loaded: dict[str, object] = {}

    def judged(spec: str):
        if spec not in ensembles:
            ensembles[spec] = load_ensemble(spec, device)
        return ensembles[spec]

    out = []
    for _, c in progress_bar(cases.iterrows(), total=len(cases), desc="verify", progress=progress):
        tensors = _case_tensors(folder, c, gen)
        seeds = [int(s) for s in c["seeds"]]
        token = c["token"] if isinstance(c["token"], str) else None
        samplers = {"judge": c["sampler"],
                    "verifier": c["verifier_sampler"] if isinstance(c["verifier_sampler"], str) else c["sampler"]}
        try:
            spec = json.loads(c["goal"])
        except ValueError as e:
            raise DatasetError(f"case {c['key']}: its goal is not JSON ({e})") from None
        if isinstance(spec, dict) and spec.get("goal") == PROMPT_FACTS:  # a prompt audit's case: its facts read again, per seed
            out.append(_verify_facts(c, spec, gen, seeds, tensors, loaded, judge))
            continue
        try:
            goals = {role: goal_from_spec(json.loads(c["goal"]), judged(spec), lambda name: load_judge(name, device))
                     for role, spec in (("judge", judge or c["judge"]), ("verifier", c["verifier"]))}
            targets = {role: goal.ensemble.label_index(c["label"]) for role, goal in goals.items()}
            found = dict.fromkeys(goals, 0)
            for i in range(0, len(seeds), VERIFY_BATCH):  # 10^4 seeds must not mean 10^4 images at once
                chunk, drawn = seeds[i:i + VERIFY_BATCH], {}
                for role, goal in goals.items():
                    if samplers[role] not in drawn:
                        drawn[samplers[role]] = draw(gen, c["prompt"], chunk, samplers[role], int(c["steps"]),
                                                     float(c["guidance"]), token, tensors)
                    images = drawn[samplers[role]].to(goal.ensemble.weights.device)
                    found[role] += int(goal.found(images, torch.full((len(chunk),), targets[role])).sum())
        except (ValueError, KeyError) as e:  # an unknown sampler, label or goal, named by the case
            raise DatasetError(f"case {c['key']}: {str(e).splitlines()[0][:200]}") from None
        rates = {role: n / len(seeds) for role, n in found.items()}
        out.append({"key": c["key"], "study": c["study"], "prompt": c["prompt"], "label": c["label"],
                    "recorded": float(c["judge_failure_rate"]), "now": rates["judge"],
                    "still_fails": rates["judge"] >= c["fail_fraction"],
                    "verifier_recorded": float(c["verifier_failure_rate"]), "verifier_now": rates["verifier"],
                    "verifier_still": rates["verifier"] >= c["fail_fraction"],
                    "same_revision": c["revision"] == getattr(gen, "revision", "")})
    return pd.DataFrame(out)


def _verify_facts(c: pd.Series, goal: dict, gen, seeds: list[int], tensors: dict, loaded: dict,
                  judge: str | None) -> dict:
    """:func:`verify`'s row for a case whose goal is its prompt's facts (``prompt-audit``)."""
    from .audit import reread
    from .models.registry import load_judge

    def load(spec: str):
        if spec not in loaded:
            loaded[spec] = load_judge(spec, gen.device)
        return loaded[spec]

    failed, seen = [], []
    try:
        for i in range(0, len(seeds), VERIFY_BATCH):
            images = draw(gen, c["prompt"], seeds[i:i + VERIFY_BATCH], c["sampler"], int(c["steps"]),
                          float(c["guidance"]), None, tensors)
            by_judge, by_verifier = reread(goal, images, load, c["verifier"] or "", judge)
            failed += by_judge
            seen += [v for v in by_verifier if v is not None]  # where the verifier can say
    except (ValueError, KeyError) as e:
        raise DatasetError(f"case {c['key']}: {str(e).splitlines()[0][:200]}") from None
    now = sum(failed) / len(seeds)
    verifier_now = sum(seen) / len(seen) if seen else math.nan
    return {"key": c["key"], "study": c["study"], "prompt": c["prompt"], "label": c["label"],
            "recorded": float(c["judge_failure_rate"]), "now": now, "still_fails": now >= c["fail_fraction"],
            "verifier_recorded": float(c["verifier_failure_rate"]), "verifier_now": verifier_now,
            "verifier_still": bool(verifier_now >= c["fail_fraction"]),
            "same_revision": c["revision"] == getattr(gen, "revision", "")}
