"""Names -> models. The one place that knows where weights live.

Generators: a name a world registered (``sagekit.models.catalog``; the toy world's
``"toy"``, ``"toy-ddpm"``, ``"toy-latent-learned"``, ``"toy-pixel"``), a local diffusers
folder, or a hub id already in the local Hugging Face cache (``org/name``). Judges: a
registered name (``"toy-resnet"``, ``"toy-ensemble"``, ...), ``"timm:<model>"``,
``"hf:<hub id or folder>"``, ``"open_clip:<arch>:<pretrained tag or file>"``, and two ways
to combine them: ``"edge[(sobel)]:<judge>"`` (the judge sees only a Canny, or Sobel, edge
map) and ``"ensemble[(rule)]:<judge>[*weight]+<judge>[*weight]+..."``; a spec is parsed
once (:mod:`sagekit.models.judge_spec`).

Weights are only ever read from disk (safetensors, no remote code). Before anything is
loaded, every folder that will be read is walked (``weights.check_weights_folder``): a
pickle-format weight file (``.bin``, ``.pt``, ``.pth``, ``.ckpt``, ``.pkl``) anywhere in it
is refused by name, and the libraries are called with their safetensors-only options as
well. A model that is not on this machine fails at once with a message saying how to get
it, instead of hanging in network retries; ``download=True`` allows a hub download for
users who are online.

Each ``resolve_*`` function finds and checks a model's files without loading anything (what
``sagekit run`` validates before a kernel starts); the matching ``load_*`` calls it first.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from ..markup import short
from . import catalog
from .clip import ClipEmbedder, ClipScorer
from .families import UnsupportedFamilyError, family_of, generator_class
from .generator import Generator
from .judge_spec import known_judges, parse_judge
from .judges import ClipZeroShotJudge, EdgeJudge, Ensemble, HFJudge, Judge, TimmJudge
from .weights import (HF_EXCLUDES, PICKLE_SUFFIXES, ModelNotFoundError, UnknownModelError, UnsafeWeightsError,
                      check_weights_folder, hub_path, local, quiet_loading, weights_fingerprint)

__all__ = ["HF_EXCLUDES", "PICKLE_SUFFIXES", "ModelNotFoundError", "UnknownModelError", "UnsafeWeightsError",
           "check_weights_folder", "known_judges", "weights_fingerprint"]


def _registered(entry, name: str) -> Path:
    """A registered model's folder, or ModelNotFoundError saying how to get it."""
    if not entry.folder.exists():
        raise ModelNotFoundError(f"the weights of {short(name)} are missing from {entry.folder}"
                                 + (f"; {entry.hint}" if entry.hint else ""))
    return entry.folder


# ---------------------------------------------------------------------------- generators
def known_generators() -> list[str]:
    return sorted(catalog.GENERATORS)


def world_of(name: str) -> str:
    """The world of a registered generator (``"toy"``), ``"real"`` for anything else (a
    diffusers folder or hub id): what a study's "auto" defaults follow
    (``sagekit.studies.defaults``)."""
    entry = catalog.GENERATORS.get(name)
    return entry.world if entry else "real"


def resolve_generator(name: str, download: bool = False) -> Path:
    """The checked folder of generator ``name`` (nothing is loaded)."""
    if name in catalog.GENERATORS:
        path = _registered(catalog.GENERATORS[name], name)
    elif local(name) or "/" in name:
        path = hub_path(name, "generator", download)
    else:
        raise UnknownModelError(f"unknown generator {short(name)}; known: {', '.join(known_generators())}, "
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
    entry = catalog.GENERATORS.get(name)
    steps, guidance = (entry.steps, entry.guidance) if entry else (None, None)
    # a component saved as absent (e.g. SD3 without T5: [null, null]) must be passed as None to load
    index = json.loads((path / "model_index.json").read_text())
    absent = {k: None for k, v in index.items() if isinstance(v, list) and v == [None, None]}
    with quiet_loading():
        pipe = DiffusionPipeline.from_pretrained(path, dtype=dtype, use_safetensors=True,
                                                 local_files_only=True, **{"safety_checker": None, **absent})
    extra = {"resolution": resolution} if resolution is not None else {}
    gen = family.from_pipeline(name, pipe, default_steps=steps, default_guidance=guidance, **extra)
    if entry and entry.sampler:
        sampler, config = entry.sampler
        gen.scheduler = gen.named_scheduler(sampler, **config)
    gen.revision = weights_fingerprint(path)
    gen = gen.to(device)
    return compile_denoiser(gen) if compile else gen


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
def resolve_judge(name: str, download: bool = False) -> list[Path]:
    """The checked weight folders (or files) judge ``name`` reads; nothing is loaded."""
    return parse_judge(name).resolve(download)


def load_judge(name: str, device: str | torch.device = "cpu", download: bool = False) -> Judge:
    """A :class:`Judge` by name (see module docstring), in eval mode, without gradients
    to its weights (gradients still flow to its input)."""
    return parse_judge(name).load(download).to(device).eval().requires_grad_(False)


def load_optional_judge(name: str, device: str | torch.device = "cpu") -> Judge | None:
    """:func:`load_judge`, or None for ``""`` (a study parameter that may name no judge)."""
    return load_judge(name, device) if name else None


def judge_leaves(name: str) -> set[str]:
    """The plain judges (weights on disk) that judge ``name`` consults."""
    return parse_judge(name).leaves()


def judge_label_names(name: str) -> tuple[str, ...] | None:
    """The labels judge ``name`` predicts, read from config files without loading weights;
    None where only loading the model would tell."""
    return parse_judge(name).labels()


def load_ensemble(name: str, device: str | torch.device = "cpu", download: bool = False) -> Ensemble:
    """Judge ``name`` as an :class:`Ensemble`, which the SAGE studies need (per-judge
    probabilities, the agreement rule): an ensemble as it is, any other judge as an
    ensemble of one."""
    judge = load_judge(name, device, download)
    if isinstance(judge, Ensemble):
        return judge
    return Ensemble(name, [judge]).to(device).eval().requires_grad_(False)


def load_judge_folder(path: Path, name: str) -> Judge:
    """Judge ``name``, saved by ``timm.models.save_for_hf`` (config.json +
    model.safetensors; ``sagekit_edge`` in the config: it sees an edge map)."""
    path = check_weights_folder(path)
    config = json.loads((path / "config.json").read_text())
    inner = TimmJudge(name, _create_timm(path), config["label_names"])
    return (EdgeJudge(name, inner) if config.get("sagekit_edge") else inner).eval()


# the judge kinds: a registered name, and the spec prefixes
def _named_resolve(name: str, download: bool) -> list[Path]:
    entry = catalog.JUDGES[name]
    if entry.members:
        return [p for m in entry.members for p in resolve_judge(m, download)]
    if entry.clip:
        return [resolve_clip(entry.clip, download)]
    return [check_weights_folder(_registered(entry, name))]


def _named_load(name: str, argument: str, paths: list[Path], download: bool) -> Judge:
    entry = catalog.JUDGES[name]
    if entry.members:
        return Ensemble(name, [parse_judge(m).load(download) for m in entry.members])
    if entry.clip:
        return ClipZeroShotJudge(name, load_clip_embedder(entry.clip), entry.labels())
    return load_judge_folder(paths[0], name)


def _timm_load(name: str, argument: str, paths: list[Path], download: bool) -> Judge:
    from ..labels import imagenet_labels

    model = _create_timm(paths[0])
    labels = model.pretrained_cfg.get("label_names") or imagenet_labels()[: model.num_classes]
    return TimmJudge(name, model, labels)


def _timm_labels(argument: str) -> tuple[str, ...] | None:
    from ..labels import imagenet_labels

    config = _timm_path(argument, False) / "config.json"
    if not config.is_file():
        return None
    cfg = json.loads(config.read_text())
    if cfg.get("label_names"):
        return tuple(cfg["label_names"])
    return imagenet_labels()[: cfg.get("num_classes", 1000)]


def _hf_labels(argument: str) -> tuple[str, ...] | None:
    config = check_weights_folder(hub_path(argument, "image classifier", False)) / "config.json"
    cfg = json.loads(config.read_text()) if config.is_file() else {}
    if "id2label" not in cfg:
        return None
    return tuple(cfg["id2label"][k] for k in sorted(cfg["id2label"], key=int))


def _open_clip_judge(name: str, argument: str, paths: list[Path], download: bool) -> Judge:
    from ..labels import imagenet_labels

    return ClipZeroShotJudge(name, load_clip_embedder(name, download=download), imagenet_labels())


def _vqa_judge(name: str, argument: str, paths: list[Path], download: bool) -> Judge:
    from ..labels import imagenet_labels
    from .vqa import VQAJudge, load_vqa_model

    return VQAJudge(name, load_vqa_model(paths[0]), imagenet_labels())


def _imagenet(argument: str) -> tuple[str, ...]:
    from ..labels import imagenet_labels

    return imagenet_labels()


catalog.register_judge_kind("named", catalog.JudgeKind(_named_resolve, _named_load,
                                                       lambda name: catalog.JUDGES[name].labels(), ""))
catalog.register_judge_kind("timm", catalog.JudgeKind(lambda arg, dl: [_timm_path(arg, dl)], _timm_load, _timm_labels,
                                                      "timm:<model or folder>"))
catalog.register_judge_kind("hf", catalog.JudgeKind(
    lambda arg, dl: [check_weights_folder(hub_path(arg, "image classifier", dl))],
    lambda name, arg, paths, dl: _load_hf_classifier(name, paths[0]), _hf_labels, "hf:<hub id or folder>"))
catalog.register_judge_kind("open_clip", catalog.JudgeKind(
    lambda arg, dl: [resolve_clip(f"open_clip:{arg}", dl)], _open_clip_judge, _imagenet,
    "open_clip:<arch>:<pretrained>"))

catalog.register_judge_kind("vqa", catalog.JudgeKind(
    lambda arg, dl: [check_weights_folder(hub_path(arg, "vision-language model", dl))], _vqa_judge, _imagenet,
    "vqa:<hub id or folder of a BLIP VQA or chat vision-language model>"))


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


def _timm_path(model_name: str, download: bool) -> Path:
    import timm

    if local(model_name):
        return check_weights_folder(Path(model_name).expanduser())
    cfg = timm.models.get_pretrained_cfg(model_name)
    if cfg is None or not cfg.hf_hub_id:
        raise UnknownModelError(f"timm has no pretrained weights named {model_name!r}")
    return check_weights_folder(hub_path(cfg.hf_hub_id, f"timm model {model_name}", download))


def _load_hf_classifier(name: str, path: Path) -> Judge:
    from transformers import AutoImageProcessor, AutoModelForImageClassification

    with quiet_loading():
        model = AutoModelForImageClassification.from_pretrained(path, use_safetensors=True, local_files_only=True)
    proc = AutoImageProcessor.from_pretrained(path, local_files_only=True)
    size = proc.size.get("shortest_edge") or proc.size.get("height")
    return HFJudge(name, model, (size, size), proc.image_mean, proc.image_std)


# ---------------------------------------------------------------------------- realism
def _realism_is_clip(name: str) -> bool:
    """Whether realism spec ``name`` names a CLIP model (else a realism judge)."""
    if name in catalog.CLIPS or name.startswith("open_clip:"):
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
        raise UnknownModelError(f"{short(name)} is neither a realism judge (labels {', '.join(REALISM_LABELS)}) "
                                f"nor a CLIP model ({', '.join(catalog.CLIPS)}, hf:<CLIP>, "
                                "open_clip:<arch>:<pretrained>)")
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
    if name in catalog.CLIPS:
        return check_weights_folder(_registered(catalog.CLIPS[name], name))
    if name.startswith("hf:"):
        return check_weights_folder(hub_path(name[3:], "CLIP model", download))
    if name.startswith("open_clip:"):
        return _open_clip_weights(name, download)
    raise UnknownModelError(f"unknown CLIP model {short(name)}; known: {', '.join(catalog.CLIPS)}, hf:<id>, "
                            "open_clip:<arch>:<pretrained>")


def load_clip_embedder(name: str, device: str | torch.device = "cpu", download: bool = False) -> ClipEmbedder:
    """A registered CLIP (``"toy-clip"``), ``"hf:<CLIP id or folder>"`` or ``"open_clip:<arch>:<pretrained tag or file>"``."""
    path = resolve_clip(name, download)
    embedder = _load_open_clip(name, path) if name.startswith("open_clip:") else _load_hf_clip(path, name)
    embedder.revision = weights_fingerprint(path)
    return embedder.to(device)


def load_clip_scorer(name: str, device: str | torch.device = "cpu", download: bool = False) -> ClipScorer:
    return ClipScorer(load_clip_embedder(name, device, download)).eval().requires_grad_(False)


def _load_hf_clip(path: Path, name: str) -> ClipEmbedder:
    from transformers import AutoTokenizer, CLIPImageProcessor, CLIPModel

    with quiet_loading():
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
        raise UnknownModelError(f"open_clip models are named 'open_clip:<arch>:<pretrained>', got {short(name)}")
    _, arch, pretrained = parts
    if arch not in open_clip.list_models():
        raise UnknownModelError(f"open_clip has no architecture {arch!r}")
    if local(pretrained, "file"):
        weights = Path(pretrained).expanduser()
        check_weights_folder(weights)  # the file is safetensors and no pickle lies beside it
        return weights
    cfg = open_clip.get_pretrained_cfg(arch, pretrained)
    hub = cfg.get("hf_hub", "").rstrip("/") if cfg else ""
    if not hub:
        raise UnknownModelError(f"open_clip has no pretrained tag {pretrained!r} for {arch}")
    repo = "/".join(hub.split("/")[:2])
    folder = check_weights_folder(hub_path(repo, f"open_clip {arch}:{pretrained}", download))
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
def resolve_caption_lm(name: str, download: bool = False) -> Path:
    """The checked folder of causal LM ``name`` (a registered one such as ``"toy"``, a
    folder or a cached hub id)."""
    path = _registered(catalog.LMS[name], name) if name in catalog.LMS else hub_path(name, "language model", download)
    return check_weights_folder(path)


def load_caption_lm(name: str, device: str | torch.device = "cpu", download: bool = False):
    """A causal language model and its tokenizer, for word proposals: ``"toy"`` (the toy
    caption GPT-2) or a local folder / cached hub id of any causal LM (safetensors)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = resolve_caption_lm(name, download)
    with quiet_loading():
        model = AutoModelForCausalLM.from_pretrained(path, use_safetensors=True, local_files_only=True)
    tok = AutoTokenizer.from_pretrained(path, local_files_only=True)
    model.revision = weights_fingerprint(path)  # its proposals decide a prompt search: part of its key
    return model.to(device).eval().requires_grad_(False), tok
