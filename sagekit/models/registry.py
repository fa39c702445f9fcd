"""Names -> models. The one place that knows where weights live.

Generators: ``"toy"``, ``"toy-ddpm"``, ``"toy-latent-learned"``, ``"toy-pixel"``, a local diffusers folder, or a hub id already in
the local Hugging Face cache (``org/name``). Judges: ``"toy-resnet"``, ``"toy-mobilenet"``,
``"toy-edge"``, ``"toy-clip"`` (zero-shot), ``"toy-ensemble"``, ``"timm:<model>"``,
``"hf:<hub id or folder>"``, ``"open_clip:<arch>:<pretrained tag or file>"``, and two ways to
combine them: ``"edge[(sobel)]:<judge>"`` (the judge sees only a Canny, or Sobel, edge map)
and ``"ensemble[(rule)]:<judge>[*weight]+<judge>[*weight]+..."`` (see :func:`parse_ensemble`).

Weights are only ever read from disk (safetensors, no remote code). Before anything is
loaded, every folder that will be read is walked (:func:`check_weights_folder`): a
pickle-format weight file (``.bin``, ``.pt``, ``.pth``, ``.ckpt``, ``.pkl``) anywhere in it
is refused by name, and the libraries are called with their safetensors-only options as
well. A model that is not on this machine fails at once with a message saying how to get
it, instead of hanging in network retries; ``download=True`` allows a hub download for
users who are online.

Each ``resolve_*`` function finds and checks a model's files without loading anything (what
``sagekit run`` validates before a kernel starts); the matching ``load_*`` calls it first.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
from contextlib import contextmanager
from pathlib import Path

import torch

from .clip import ClipEmbedder, ClipScorer
from .families import UnsupportedFamilyError, family_of, generator_class
from .generator import Generator
from .judges import ClipZeroShotJudge, EdgeJudge, Ensemble, HFJudge, Judge, TimmJudge

TOY_DIR = Path(__file__).resolve().parent.parent / "toy" / "weights"
TOY_GENERATORS = {"toy": "toy", "toy-ddpm": "toy", "toy-latent-learned": "toy-latent-learned", "toy-pixel": "toy-pixel"}
# A toy model drawn with another sampler than it ships with: name -> (scheduler name, config changes).
# `toy-ddpm` is `toy` with the sampler, steps and guidance of `toy-latent-learned` (DDPM ancestral,
# 15 steps, guidance 5) and a fixed variance: the two differ only in the variance (paper 001's claim).
TOY_SAMPLERS = {"toy-ddpm": ("ddpm", {"variance_type": "fixed_small"})}
# Object judges ("{colour} {shape}"), the CLIP verifier and their ensemble, then the
# attribute judges of toy world 2 and its realism judge (labels "real", "corrupted").
TOY_ATTRIBUTE_JUDGES = ("toy-count", "toy-background", "toy-position", "toy-relation", "toy-realism")
TOY_JUDGES = ("toy-resnet", "toy-mobilenet", "toy-edge", "toy-clip", "toy-ensemble") + TOY_ATTRIBUTE_JUDGES
TOY_CLIPS = ("toy-clip",)
# Sampling defaults per toy model (steps, guidance), measured to be good in `sagekit toy eval`.
# `toy` reads the words (world 3) and needs DPM-Solver++ 20 steps and guidance 7.5 to draw them
# right (shipped weights: 0.945 of 384; a first run of the recipe: 0.91, against 0.80 at world 2's
# 10 steps and guidance 5; architectures.sample_scheduler).
TOY_SAMPLING = {"toy": (20, 7.5), "toy-ddpm": (15, 5.0), "toy-latent-learned": (15, 5.0), "toy-pixel": (15, 7.0)}


@contextmanager
def _quiet_loading():
    """No progress bars or type warnings while loading: reports and CLIs stay readable."""
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    level = diffusers_logging.get_verbosity()
    diffusers_logging.set_verbosity_error()  # e.g. IF's "expected T5" for the toy's CLIP text encoder
    diffusers_logging.disable_progress_bar()
    transformers_logging.disable_progress_bar()
    try:
        yield
    finally:
        diffusers_logging.set_verbosity(level)
        diffusers_logging.enable_progress_bar()
        transformers_logging.enable_progress_bar()


class ModelNotFoundError(FileNotFoundError):
    """Weights are not on this machine."""


class UnknownModelError(KeyError):
    """A name that no loader knows, or a pipeline of an unsupported family."""

    def __str__(self) -> str:  # KeyError quotes its message; show it plainly
        return str(self.args[0])


class UnsafeWeightsError(ValueError):
    """A folder holds weights in a pickle format, which can run code when loaded."""


# Suffixes of torch / pickle checkpoints: unpickling one can execute arbitrary code.
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")
# What `hf download` should leave out, so that a downloaded folder passes the check.
HF_EXCLUDES = " ".join(f"--exclude '*{s}'" for s in PICKLE_SUFFIXES)
# A folder with one of these configs holds a model, so it must hold safetensors weights.
MODEL_CONFIGS = ("config.json", "open_clip_config.json")


def _toy_path(sub: str) -> Path:
    path = TOY_DIR / sub
    if not path.exists():
        raise ModelNotFoundError(
            f"toy weights {sub!r} are missing from {TOY_DIR}; run `sagekit toy train` to rebuild them")
    return path


def _hub_path(repo_id: str, what: str, download: bool) -> Path:
    """Local folder of a hub repo: the folder itself, or the local HF cache (no network
    unless ``download``)."""
    if Path(repo_id).expanduser().is_dir():
        return Path(repo_id).expanduser()
    if repo_id.count("/") != 1 or repo_id.startswith((".", "/", "~")):
        raise ModelNotFoundError(f"{what} {repo_id!r}: no such folder, and not a hub id of the form 'org/name'")
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        return Path(snapshot_download(repo_id, local_files_only=not download))
    except LocalEntryNotFoundError:
        raise ModelNotFoundError(
            f"{what} {repo_id!r} is not in the local Hugging Face cache. Download it once on a machine "
            f"with internet: `hf download {repo_id} {HF_EXCLUDES}` (or pass a local folder), then run again offline."
        ) from None


def check_weights_folder(path: Path) -> Path:
    """Refuse ``path`` unless every weight file below it is safetensors.

    Walks the whole tree (hub snapshots hold symlinks to blobs: their names count). Any
    pickle-format file is refused by name, even beside safetensors ones, so no library can
    fall back to it; and every component folder holding a model config must hold a
    ``.safetensors`` file. Returns ``path``."""
    path = Path(path)
    if path.is_file():
        if path.suffix != ".safetensors":
            raise UnsafeWeightsError(f"{path}: sagekit loads safetensors weights only")
        path = path.parent
    found_weights = False
    for root, dirs, files in os.walk(path):
        dirs.sort()
        for name in sorted(files):
            if name.lower().endswith(PICKLE_SUFFIXES):
                raise UnsafeWeightsError(
                    f"{Path(root) / name}: a pickle-format weight file; sagekit loads safetensors only and refuses "
                    f"folders that hold pickles (delete it, or download with `hf download REPO {HF_EXCLUDES}`)")
        has_safetensors = any(n.endswith(".safetensors") for n in files)
        found_weights |= has_safetensors
        if any(c in files for c in MODEL_CONFIGS) and not has_safetensors:
            raise ModelNotFoundError(f"{root} holds no .safetensors weights; sagekit loads safetensors only")
    if not found_weights:
        raise ModelNotFoundError(f"{path} holds no .safetensors weights; sagekit loads safetensors only")
    return path


# ---------------------------------------------------------------------------- generators
def known_generators() -> list[str]:
    return sorted(TOY_GENERATORS)


def world_of(name: str) -> str:
    """``"toy"`` for a toy world generator, ``"real"`` for anything else (a diffusers folder
    or hub id): what a study's "auto" defaults follow (``sagekit.studies.defaults``)."""
    return "toy" if name in TOY_GENERATORS else "real"


def resolve_generator(name: str, download: bool = False) -> Path:
    """The checked folder of generator ``name`` (nothing is loaded)."""
    if name in TOY_GENERATORS:
        path = _toy_path(TOY_GENERATORS[name])
    elif Path(name).expanduser().is_dir() or "/" in name:
        path = _hub_path(name, "generator", download)
    else:
        raise UnknownModelError(f"unknown generator {name!r}; known: {', '.join(known_generators())}, "
                                "a local diffusers folder, or a hub id 'org/name'")
    check_weights_folder(path)
    try:
        family_of(path)
    except FileNotFoundError as e:
        raise ModelNotFoundError(str(e)) from None
    except UnsupportedFamilyError as e:
        raise UnknownModelError(str(e)) from None
    return path


def load_generators(names, device: str | torch.device = "cpu", dtype: torch.dtype | str | None = None,
                    compile: bool = False) -> dict:
    """:func:`load_generator` for each name: name -> Generator, in order."""
    return {name: load_generator(name, device=device, dtype=dtype, compile=compile) for name in names}


def load_generator(name: str, device: str | torch.device = "cpu", dtype: torch.dtype | str | None = None,
                   download: bool = False, resolution: int | None = None, compile: bool = False) -> Generator:
    """A :class:`Generator` of the folder's family, by name (see module docstring), its
    weights cast to ``dtype`` (a torch dtype or ``"float16"`` / ``"bf16"`` ...; default and
    ``"auto"``: float32 on CPU, float16 on CUDA). ``compile``: ``torch.compile`` the
    denoiser for sampling (:func:`sagekit.models.speed.compile_denoiser`).
    ``resolution`` sets the image side of families whose denoiser does not fix one (Flux)."""
    from diffusers import DiffusionPipeline

    from .speed import compile_denoiser, parse_dtype

    dtype = parse_dtype(dtype)
    if dtype is None:
        dtype = torch.float16 if torch.device(device).type == "cuda" else torch.float32
    path = resolve_generator(name, download)
    family = generator_class(family_of(path))
    if resolution is not None and not family.SETS_RESOLUTION:
        raise ValueError(f"{name}: its denoiser fixes the image size; resolution applies to Flux only")
    steps, guidance = TOY_SAMPLING.get(name, (None, None))
    # a component saved as absent (e.g. SD3 without T5: [null, null]) must be passed as None to load
    index = json.loads((path / "model_index.json").read_text())
    absent = {k: None for k, v in index.items() if isinstance(v, list) and v == [None, None]}
    with _quiet_loading():
        pipe = DiffusionPipeline.from_pretrained(path, dtype=dtype, use_safetensors=True,
                                                 local_files_only=True, **{"safety_checker": None, **absent})
    extra = {"resolution": resolution} if resolution is not None else {}
    gen = family.from_pipeline(name, pipe, default_steps=steps, default_guidance=guidance, **extra)
    if name in TOY_SAMPLERS:
        sampler, config = TOY_SAMPLERS[name]
        gen.scheduler = gen.named_scheduler(sampler, **config)
    gen.revision = weights_fingerprint(path)
    gen = gen.to(device)
    return compile_denoiser(gen) if compile else gen


def training_recipe(name: str) -> dict | None:
    """How a toy model's UNet was trained: its ``TrainConfig.unets`` entry in the shipped
    ``training.json`` (``toy-ddpm`` shares ``toy``'s); None for any other model (a real
    checkpoint's recipe is not known here) or a log without recipes."""
    part = TOY_GENERATORS.get(name)
    log = TOY_DIR / "training.json"
    if part is None or not log.exists():
        return None
    return json.loads(log.read_text()).get("config", {}).get("unets", {}).get(part)


def weights_fingerprint(path: Path) -> str:
    """A short id of the weights in a folder: the commit of a hub snapshot, else a hash of
    every safetensors file's name, size and first and last MiB (cheap even for SD)."""
    path = Path(path).resolve()
    if path.parent.name == "snapshots":
        return path.name[:12]
    h = hashlib.sha256()
    for f in sorted(path.rglob("*.safetensors")):
        size = f.stat().st_size
        h.update(f"{f.relative_to(path)}:{size}".encode())
        with open(f, "rb") as fh:
            h.update(fh.read(2**20))
            fh.seek(max(0, size - 2**20))
            h.update(fh.read(2**20))
    return h.hexdigest()[:12]


def model_revision(gen: Generator) -> str:
    """The fingerprint of a loaded generator's weights (see :func:`weights_fingerprint`),
    with ``@float16`` / ``@bfloat16`` appended when they run in that precision: results of
    another precision differ a little and must not be mistaken for each other's."""
    dtype = str(gen.dtype).removeprefix("torch.")
    return getattr(gen, "revision", "") + ("" if dtype == "float32" else f"@{dtype}")


def model_revisions(generators: dict) -> dict[str, str]:
    """:func:`model_revision` of each generator: name -> fingerprint."""
    return {name: model_revision(gen) for name, gen in generators.items()}


# ---------------------------------------------------------------------------- judges
TOY_JUDGE_DIRS = {name: f"judges/{name[4:]}" for name in ("toy-resnet", "toy-mobilenet", "toy-edge")
                  + TOY_ATTRIBUTE_JUDGES}
ENSEMBLES = {"toy-ensemble": ("toy-resnet", "toy-mobilenet", "toy-edge")}
ENSEMBLE_SPEC = re.compile(r"^ensemble(?:\((?P<rule>[a-z]+)\))?:(?P<members>.+)$")
EDGE_SPEC = re.compile(r"^edge(?:\((?P<method>[a-z]+)\))?:(?P<inner>.+)$")


def known_judges() -> list[str]:
    return list(TOY_JUDGES) + ["timm:<model or folder>", "hf:<hub id or folder>", "open_clip:<arch>:<pretrained>",
                               "edge[(sobel)]:<judge>", "ensemble[(all|majority|mean)]:<judge>[*weight]+..."]


def parse_ensemble(name: str) -> tuple[str, list[tuple[str, float]]]:
    """``"ensemble(rule):A*2+B+edge:C"`` -> ``(rule, [(A, 2.0), (B, 1.0), ("edge:C", 1.0)])``.

    The rule (default ``all``: a label counts as absent only when every judge's top-1 is
    another label) is one of ``Ensemble.RULES``; a member's weight follows its name after
    ``*`` (default 1). Members may be any judge but another ensemble."""
    m = ENSEMBLE_SPEC.match(name)
    if m is None:
        raise UnknownModelError(f"{name!r} is not an ensemble spec 'ensemble[(rule)]:<judge>[*weight]+...'")
    rule = m["rule"] or "all"
    if rule not in Ensemble.RULES:
        raise UnknownModelError(f"{name!r}: unknown agreement rule {rule!r}; choose one of {', '.join(Ensemble.RULES)}")
    members = []
    for part in m["members"].split("+"):
        member, weight = part, "1"
        if "*" in part:
            member, weight = part.rsplit("*", 1)
        try:
            w = float(weight)
        except ValueError:
            w = -1.0
        if not member or not math.isfinite(w) or w < 0:
            raise UnknownModelError(f"{name!r}: {part!r} is not '<judge>' or '<judge>*<non-negative weight>'")
        if member.startswith("ensemble") or member in ENSEMBLES:
            raise UnknownModelError(f"{name!r}: an ensemble cannot hold another ensemble ({member!r})")
        members.append((member, w))
    if not any(w > 0 for _, w in members):
        raise UnknownModelError(f"{name!r}: every weight is zero")
    return rule, members


def resolve_judge(name: str, download: bool = False) -> list[Path]:
    """The checked weight folders (or files) judge ``name`` reads; nothing is loaded."""
    if ENSEMBLE_SPEC.match(name):
        members = [member for member, _ in parse_ensemble(name)[1]]
        paths = [p for member in members for p in resolve_judge(member, download)]
        known = {m: judge_label_names(m) for m in members}
        if len({labels for labels in known.values() if labels is not None}) > 1:
            raise UnknownModelError(f"{name!r}: its judges see different label sets "
                                    f"({', '.join(f'{m}: {len(l)} labels' for m, l in known.items() if l)})")
        return paths
    if (m := EDGE_SPEC.match(name)) is not None:
        _edge_method(name, m)
        return resolve_judge(m["inner"], download)
    if name in TOY_JUDGE_DIRS:
        return [check_weights_folder(_toy_path(TOY_JUDGE_DIRS[name]))]
    if name in ENSEMBLES:
        return [p for member in ENSEMBLES[name] for p in resolve_judge(member, download)]
    if name == "toy-clip" or name.startswith("open_clip:"):
        return [resolve_clip(name, download)]
    if name.startswith("timm:"):
        return [_timm_path(name[5:], download)]
    if name.startswith("hf:"):
        return [check_weights_folder(_hub_path(name[3:], "image classifier", download))]
    raise UnknownModelError(f"unknown judge {name!r}; known: {', '.join(known_judges())}")


def load_judge(name: str, device: str | torch.device = "cpu", download: bool = False) -> Judge:
    """A :class:`Judge` by name (see module docstring), in eval mode, without gradients
    to its weights (gradients still flow to its input)."""
    judge = _load_judge(name, download)
    return judge.to(device).eval().requires_grad_(False)


def load_optional_judge(name: str, device: str | torch.device = "cpu") -> Judge | None:
    """:func:`load_judge`, or None for ``""`` (a study parameter that may name no judge)."""
    return load_judge(name, device) if name else None


def judge_leaves(name: str) -> set[str]:
    """The plain judges (weights on disk) that judge ``name`` consults, through ensembles
    and edge maps: two judges that share a leaf are not independent."""
    if ENSEMBLE_SPEC.match(name):
        return set().union(*(judge_leaves(member) for member, _ in parse_ensemble(name)[1]))
    if (m := EDGE_SPEC.match(name)) is not None:
        return judge_leaves(m["inner"])
    if name in ENSEMBLES:
        return set().union(*(judge_leaves(member) for member in ENSEMBLES[name]))
    return {name}


def load_ensemble(name: str, device: str | torch.device = "cpu", download: bool = False) -> Ensemble:
    """Judge ``name`` as an :class:`Ensemble`, which the SAGE studies need (per-judge
    probabilities, the agreement rule): an ensemble as it is, any other judge as an
    ensemble of one."""
    judge = load_judge(name, device, download)
    if isinstance(judge, Ensemble):
        return judge
    return Ensemble(name, [judge]).to(device).eval().requires_grad_(False)


def _edge_method(name: str, m) -> str:
    method = m["method"] or "canny"
    if method not in EdgeJudge.METHODS:
        raise UnknownModelError(f"{name!r}: unknown edge method {method!r}; choose one of {', '.join(EdgeJudge.METHODS)}")
    return method


def _load_judge(name: str, download: bool) -> Judge:
    paths = resolve_judge(name, download)  # checks every file before anything loads
    if ENSEMBLE_SPEC.match(name):
        rule, members = parse_ensemble(name)
        judges = [_load_judge(member, download) for member, _ in members]
        try:
            return Ensemble(name, judges, [w for _, w in members], rule)
        except ValueError as e:  # e.g. members with different label sets
            raise UnknownModelError(f"{name!r}: {e}") from None
    if (m := EDGE_SPEC.match(name)) is not None:
        return EdgeJudge(name, _load_judge(m["inner"], download), _edge_method(name, m))
    if name in TOY_JUDGE_DIRS:
        return load_toy_judge_dir(paths[0])
    if name in ENSEMBLES:
        return Ensemble(name, [_load_judge(n, download) for n in ENSEMBLES[name]])
    if name == "toy-clip":
        from ..toy.scenes import LABELS

        return ClipZeroShotJudge(name, load_clip_embedder(name), LABELS)
    if name.startswith("open_clip:"):
        from ..labels import imagenet_labels

        return ClipZeroShotJudge(name, load_clip_embedder(name, download=download), imagenet_labels())
    if name.startswith("timm:"):
        from ..labels import imagenet_labels

        model = _create_timm(paths[0])
        labels = model.pretrained_cfg.get("label_names") or imagenet_labels()[: model.num_classes]
        return TimmJudge(name, model, labels)
    return _load_hf_classifier(name, paths[0])


def judge_label_names(name: str) -> tuple[str, ...] | None:
    """The labels judge ``name`` predicts, read from config files without loading weights;
    None where only loading the model would tell."""
    from ..labels import imagenet_labels

    if ENSEMBLE_SPEC.match(name):
        return judge_label_names(parse_ensemble(name)[1][0][0])
    if (m := EDGE_SPEC.match(name)) is not None:
        return judge_label_names(m["inner"])
    if name in TOY_JUDGE_DIRS or name in ENSEMBLES or name == "toy-clip":
        from ..toy.attributes import JUDGE_LABELS

        return tuple(JUDGE_LABELS.get(name[4:], JUDGE_LABELS["resnet"]))
    if name.startswith("open_clip:"):
        return imagenet_labels()
    config = resolve_judge(name)[0] / "config.json"
    if not config.is_file():
        return None
    cfg = json.loads(config.read_text())
    if name.startswith("hf:") and "id2label" in cfg:
        return tuple(cfg["id2label"][k] for k in sorted(cfg["id2label"], key=int))
    if name.startswith("timm:"):
        if cfg.get("label_names"):
            return tuple(cfg["label_names"])
        return imagenet_labels()[: cfg.get("num_classes", 1000)]
    return None


def _create_timm(path: Path):
    """A timm model from a ``save_for_hf`` folder (config.json + model.safetensors), with
    the weights file named explicitly so that timm reads it through safetensors and never
    looks for a pickle beside it."""
    import timm

    weights = path / "model.safetensors"
    if not weights.is_file():
        raise ModelNotFoundError(f"{path} has no model.safetensors (the file timm's save_for_hf writes)")
    return timm.create_model(f"local-dir:{path}", pretrained=True,
                             pretrained_cfg_overlay={"source": "file", "file": str(weights)})


def load_toy_judge_dir(path: Path) -> Judge:
    """A timm judge saved by ``timm.models.save_for_hf`` (config.json + model.safetensors)."""
    path = check_weights_folder(path)
    config = json.loads((path / "config.json").read_text())
    inner = TimmJudge(f"toy-{path.name}", _create_timm(path), config["label_names"])
    return (EdgeJudge(f"toy-{path.name}", inner) if config.get("sagekit_edge") else inner).eval()


def _timm_path(model_name: str, download: bool) -> Path:
    import timm

    if Path(model_name).expanduser().is_dir():
        return check_weights_folder(Path(model_name).expanduser())
    cfg = timm.models.get_pretrained_cfg(model_name)
    if cfg is None or not cfg.hf_hub_id:
        raise UnknownModelError(f"timm has no pretrained weights named {model_name!r}")
    return check_weights_folder(_hub_path(cfg.hf_hub_id, f"timm model {model_name}", download))


def _load_hf_classifier(name: str, path: Path) -> Judge:
    from transformers import AutoImageProcessor, AutoModelForImageClassification

    with _quiet_loading():
        model = AutoModelForImageClassification.from_pretrained(path, use_safetensors=True, local_files_only=True)
    proc = AutoImageProcessor.from_pretrained(path, local_files_only=True)
    size = proc.size.get("shortest_edge") or proc.size.get("height")
    return HFJudge(name, model, (size, size), proc.image_mean, proc.image_std)


# ---------------------------------------------------------------------------- realism
def _realism_is_clip(name: str) -> bool:
    """Whether realism spec ``name`` names a CLIP model (else a realism judge)."""
    if name == "toy-clip" or name.startswith("open_clip:"):
        return True
    if name.startswith("hf:"):
        config = resolve_clip(name) / "config.json"
        return config.is_file() and "clip" in json.loads(config.read_text()).get("model_type", "")
    return False


def resolve_realism(name: str, download: bool = False) -> list[Path]:
    """Checked weights of a realism scorer: a judge whose labels are ("real", "corrupted")
    (e.g. ``"toy-realism"``) or a CLIP model, whose embedding distance is the score."""
    from ..realism import REALISM_LABELS

    if _realism_is_clip(name):
        return [resolve_clip(name, download)]
    paths = resolve_judge(name, download)
    labels = judge_label_names(name)
    if labels is not None and tuple(labels) != REALISM_LABELS:
        raise UnknownModelError(f"{name!r} is neither a realism judge (labels {', '.join(REALISM_LABELS)}) "
                                f"nor a CLIP model (toy-clip, hf:<CLIP>, open_clip:<arch>:<pretrained>)")
    return paths


def load_realism(name: str, device: str | torch.device = "cpu", download: bool = False):
    """A realism judge, or a CLIP embedder, for :class:`sagekit.realism.RealismReference`."""
    resolve_realism(name, download)
    if _realism_is_clip(name):
        return load_clip_embedder(name, device, download).eval().requires_grad_(False)
    return load_judge(name, device, download).requires_grad_(False)


# ---------------------------------------------------------------------------- CLIP
def resolve_clip(name: str, download: bool = False) -> Path:
    """The checked folder (transformers) or weights file (open_clip) of CLIP model ``name``."""
    if name == "toy-clip":
        return check_weights_folder(_toy_path("clip"))
    if name.startswith("hf:"):
        return check_weights_folder(_hub_path(name[3:], "CLIP model", download))
    if name.startswith("open_clip:"):
        return _open_clip_weights(name, download)
    raise UnknownModelError(f"unknown CLIP model {name!r}; known: toy-clip, hf:<id>, open_clip:<arch>:<pretrained>")


def load_clip_embedder(name: str = "toy-clip", device: str | torch.device = "cpu", download: bool = False) -> ClipEmbedder:
    """``"toy-clip"``, ``"hf:<CLIP id or folder>"`` or ``"open_clip:<arch>:<pretrained tag or file>"``."""
    path = resolve_clip(name, download)
    if name.startswith("open_clip:"):
        return _load_open_clip(name, path).to(device)
    return _load_hf_clip(path, name).to(device)


def load_clip_scorer(name: str = "toy-clip", device: str | torch.device = "cpu", download: bool = False) -> ClipScorer:
    return ClipScorer(load_clip_embedder(name, device, download)).eval().requires_grad_(False)


def _load_hf_clip(path: Path, name: str) -> ClipEmbedder:
    from transformers import AutoTokenizer, CLIPImageProcessor, CLIPModel

    with _quiet_loading():
        model = CLIPModel.from_pretrained(path, use_safetensors=True, local_files_only=True)
    tok = AutoTokenizer.from_pretrained(path, local_files_only=True)
    try:
        proc = CLIPImageProcessor.from_pretrained(path, local_files_only=True)
        mean, std = proc.image_mean, proc.image_std
    except OSError:  # the toy CLIP has no processor file: it was trained on [-1, 1] inputs
        mean, std = (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)
    size = model.config.vision_config.image_size
    return ClipEmbedder(name, model.eval().requires_grad_(False), tok, "transformers", (size, size), mean, std,
                        max_length=tok.model_max_length)


def _open_clip_weights(name: str, download: bool) -> Path:
    """The checked safetensors file of ``open_clip:<arch>:<pretrained tag or file>``."""
    import open_clip

    parts = name.split(":", 2)
    if len(parts) != 3:
        raise UnknownModelError(f"open_clip models are named 'open_clip:<arch>:<pretrained>', got {name!r}")
    _, arch, pretrained = parts
    if arch not in open_clip.list_models():
        raise UnknownModelError(f"open_clip has no architecture {arch!r}")
    if Path(pretrained).expanduser().is_file():
        weights = Path(pretrained).expanduser()
        check_weights_folder(weights)  # the file is safetensors and no pickle lies beside it
        return weights
    cfg = open_clip.get_pretrained_cfg(arch, pretrained)
    hub = cfg.get("hf_hub", "").rstrip("/") if cfg else ""
    if not hub:
        raise UnknownModelError(f"open_clip has no pretrained tag {pretrained!r} for {arch}")
    repo = "/".join(hub.split("/")[:2])
    folder = check_weights_folder(_hub_path(repo, f"open_clip {arch}:{pretrained}", download))
    files = sorted(folder.rglob("open_clip_*.safetensors")) or sorted(folder.rglob("*.safetensors"))
    return files[0]


def _load_open_clip(name: str, weights: Path) -> ClipEmbedder:
    """An open_clip model from its checked weights file. A hub folder that carries its own
    ``open_clip_config.json`` (model and preprocessing config, as every open_clip repo on
    the hub does) is read through open_clip's ``local-dir:`` loading, which builds the model
    that config describes and reads the folder's safetensors; a lone file is read into the
    named architecture."""
    import open_clip

    arch = name.split(":", 2)[1]
    folder = weights.parent
    if (folder / "open_clip_config.json").is_file():
        model = open_clip.create_model(f"local-dir:{folder}")
        tok = open_clip.get_tokenizer(f"local-dir:{folder}")
    else:
        model = open_clip.create_model(arch, pretrained=str(weights))
        tok = open_clip.get_tokenizer(arch)
    size = model.visual.image_size
    size = (size, size) if isinstance(size, int) else tuple(size)
    mean = getattr(model.visual, "image_mean", None) or open_clip.OPENAI_DATASET_MEAN
    std = getattr(model.visual, "image_std", None) or open_clip.OPENAI_DATASET_STD
    return ClipEmbedder(name, model.eval().requires_grad_(False), tok, "open_clip", size, mean, std)


# ---------------------------------------------------------------------------- language models
def resolve_caption_lm(name: str = "toy", download: bool = False) -> Path:
    """The checked folder of causal LM ``name`` (``"toy"``, a folder or a cached hub id)."""
    path = _toy_path("caption-lm") if name == "toy" else _hub_path(name, "language model", download)
    return check_weights_folder(path)


def load_caption_lm(name: str = "toy", device: str | torch.device = "cpu", download: bool = False):
    """A causal language model and its tokenizer, for word proposals: ``"toy"`` (the toy
    caption GPT-2) or a local folder / cached hub id of any causal LM (safetensors)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = resolve_caption_lm(name, download)
    with _quiet_loading():
        model = AutoModelForCausalLM.from_pretrained(path, use_safetensors=True, local_files_only=True)
    tok = AutoTokenizer.from_pretrained(path, local_files_only=True)
    return model.to(device).eval().requires_grad_(False), tok
