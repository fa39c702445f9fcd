"""Names -> models. The one place that knows where weights live.

Generators: ``"toy"``, ``"toy-pixel"``, a local diffusers folder, or a hub id already in
the local Hugging Face cache (``org/name``). Judges: ``"toy-resnet"``, ``"toy-mobilenet"``,
``"toy-edge"``, ``"toy-clip"`` (zero-shot), ``"toy-ensemble"``, ``"timm:<model>"``,
``"hf:<hub id or folder>"``, ``"open_clip:<arch>:<pretrained tag or file>"``.

Weights are only ever read from disk (safetensors, no remote code). A model that is not
on this machine fails at once with a message saying how to get it, instead of hanging
in network retries; ``download=True`` allows a hub download for users who are online.
"""

from __future__ import annotations

import hashlib
import json
from contextlib import contextmanager
from pathlib import Path

import torch

from .clip import ClipEmbedder, ClipScorer
from .generator import Generator
from .judges import ClipZeroShotJudge, EdgeJudge, Ensemble, HFJudge, Judge, TimmJudge

TOY_DIR = Path(__file__).resolve().parent.parent / "toy" / "weights"
TOY_GENERATORS = {"toy": "toy", "toy-pixel": "toy-pixel"}
TOY_JUDGES = ("toy-resnet", "toy-mobilenet", "toy-edge", "toy-clip", "toy-ensemble")
TOY_CLIPS = ("toy-clip",)
# Sampling defaults per toy model (steps, guidance), measured to be good in `sagekit toy eval`.
TOY_SAMPLING = {"toy": (25, 5.0), "toy-pixel": (50, 7.0)}


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
    """A name that no loader knows."""

    def __str__(self) -> str:  # KeyError quotes its message; show it plainly
        return str(self.args[0])


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
            f"with internet: `hf download {repo_id}` (or pass a local folder), then run again offline."
        ) from None


def _no_torch_pickles(path: Path) -> None:
    if not any(path.rglob("*.safetensors")):
        raise ModelNotFoundError(f"{path} holds no .safetensors weights; sagekit loads safetensors only")


# ---------------------------------------------------------------------------- generators
def known_generators() -> list[str]:
    return sorted(TOY_GENERATORS)


def load_generator(name: str, device: str | torch.device = "cpu", dtype: torch.dtype | None = None,
                   download: bool = False) -> Generator:
    """A :class:`Generator` by name (see module docstring). fp16 weights are upcast to
    ``dtype`` (default float32 on CPU, float16 on CUDA)."""
    from diffusers import DiffusionPipeline

    if dtype is None:
        dtype = torch.float16 if torch.device(device).type == "cuda" else torch.float32
    if name in TOY_GENERATORS:
        path = _toy_path(TOY_GENERATORS[name])
        steps, guidance = TOY_SAMPLING[name]
    elif Path(name).expanduser().is_dir() or "/" in name:
        path = _hub_path(name, "generator", download)
        steps, guidance = 50, 7.5
    else:
        raise UnknownModelError(f"unknown generator {name!r}; known: {', '.join(known_generators())}, "
                                "a local diffusers folder, or a hub id 'org/name'")
    _no_torch_pickles(path)
    with _quiet_loading():
        pipe = DiffusionPipeline.from_pretrained(path, dtype=dtype, use_safetensors=True,
                                                 local_files_only=True, safety_checker=None)
    gen = Generator(name, unet=pipe.unet, scheduler=pipe.scheduler, text_encoder=pipe.text_encoder,
                    tokenizer=pipe.tokenizer, vae=getattr(pipe, "vae", None),
                    default_steps=steps, default_guidance=guidance)
    gen.revision = weights_fingerprint(path)
    return gen.to(device)


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
    """The fingerprint of a loaded generator's weights (see :func:`weights_fingerprint`)."""
    return getattr(gen, "revision", "")


# ---------------------------------------------------------------------------- judges
def load_toy_judge_dir(path: Path) -> Judge:
    """A timm judge saved by ``timm.models.save_for_hf`` (config.json + model.safetensors)."""
    import timm

    _no_torch_pickles(path)
    config = json.loads((path / "config.json").read_text())
    model = timm.create_model(f"local-dir:{path}", pretrained=True)
    labels = config["label_names"]
    kind = path.name
    inner = TimmJudge(f"toy-{kind}", model, labels)
    return (EdgeJudge(f"toy-{kind}", inner) if config.get("sagekit_edge") else inner).eval()


def known_judges() -> list[str]:
    return list(TOY_JUDGES) + ["timm:<model>", "hf:<hub id or folder>", "open_clip:<arch>:<pretrained>"]


def load_judge(name: str, device: str | torch.device = "cpu", download: bool = False) -> Judge:
    """A :class:`Judge` by name (see module docstring), in eval mode, without gradients
    to its weights (gradients still flow to its input)."""
    judge = _load_judge(name, download)
    return judge.to(device).eval().requires_grad_(False)


def _load_judge(name: str, download: bool) -> Judge:
    if name in ("toy-resnet", "toy-mobilenet", "toy-edge"):
        return load_toy_judge_dir(_toy_path(f"judges/{name[4:]}"))
    if name == "toy-clip":
        from ..toy.shapes import LABELS

        return ClipZeroShotJudge("toy-clip", load_clip_embedder("toy-clip"), LABELS)
    if name == "toy-ensemble":
        return Ensemble("toy-ensemble", [_load_judge(n, download) for n in ("toy-resnet", "toy-mobilenet", "toy-edge")])
    if name.startswith("timm:"):
        return _load_timm(name[5:], download)
    if name.startswith("hf:"):
        return _load_hf_classifier(name[3:], download)
    if name.startswith("open_clip:"):
        from ..labels import imagenet_labels

        return ClipZeroShotJudge(name, load_clip_embedder(name, download), imagenet_labels())
    raise UnknownModelError(f"unknown judge {name!r}; known: {', '.join(known_judges())}")


def _load_timm(model_name: str, download: bool) -> Judge:
    import timm

    from ..labels import imagenet_labels

    if Path(model_name).expanduser().is_dir():
        path = Path(model_name).expanduser()
    else:
        cfg = timm.models.get_pretrained_cfg(model_name)
        if cfg is None or not cfg.hf_hub_id:
            raise UnknownModelError(f"timm has no pretrained weights named {model_name!r}")
        path = _hub_path(cfg.hf_hub_id, f"timm model {model_name}", download)
    _no_torch_pickles(path)
    model = timm.create_model(f"local-dir:{path}", pretrained=True)
    labels = model.pretrained_cfg.get("label_names") or imagenet_labels()[: model.num_classes]
    return TimmJudge(f"timm:{model_name}", model, labels)


def _load_hf_classifier(repo: str, download: bool) -> Judge:
    from transformers import AutoImageProcessor, AutoModelForImageClassification

    path = _hub_path(repo, "image classifier", download)
    with _quiet_loading():
        model = AutoModelForImageClassification.from_pretrained(path, use_safetensors=True, local_files_only=True)
    proc = AutoImageProcessor.from_pretrained(path, local_files_only=True)
    size = proc.size.get("shortest_edge") or proc.size.get("height")
    return HFJudge(f"hf:{repo}", model, (size, size), proc.image_mean, proc.image_std)


# ---------------------------------------------------------------------------- CLIP
def load_clip_embedder(name: str = "toy-clip", device: str | torch.device = "cpu", download: bool = False) -> ClipEmbedder:
    """``"toy-clip"``, ``"hf:<CLIP id or folder>"`` or ``"open_clip:<arch>:<pretrained tag or file>"``."""
    if name == "toy-clip":
        return _load_hf_clip(_toy_path("clip"), "toy-clip").to(device)
    if name.startswith("hf:"):
        return _load_hf_clip(_hub_path(name[3:], "CLIP model", download), name).to(device)
    if name.startswith("open_clip:"):
        return _load_open_clip(name, download).to(device)
    raise UnknownModelError(f"unknown CLIP model {name!r}; known: toy-clip, hf:<id>, open_clip:<arch>:<pretrained>")


def load_clip_scorer(name: str = "toy-clip", device: str | torch.device = "cpu", download: bool = False) -> ClipScorer:
    return ClipScorer(load_clip_embedder(name, device, download)).eval().requires_grad_(False)


def _load_hf_clip(path: Path, name: str) -> ClipEmbedder:
    from transformers import AutoTokenizer, CLIPImageProcessor, CLIPModel

    _no_torch_pickles(path)
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


def _load_open_clip(name: str, download: bool) -> ClipEmbedder:
    import open_clip

    parts = name.split(":", 2)
    if len(parts) != 3:
        raise UnknownModelError(f"open_clip models are named 'open_clip:<arch>:<pretrained>', got {name!r}")
    _, arch, pretrained = parts
    if arch not in open_clip.list_models():
        raise UnknownModelError(f"open_clip has no architecture {arch!r}")
    if Path(pretrained).expanduser().is_file():
        if not pretrained.endswith(".safetensors"):
            raise ModelNotFoundError(f"{pretrained}: sagekit loads safetensors only")
        weights = str(Path(pretrained).expanduser())
    else:
        cfg = open_clip.get_pretrained_cfg(arch, pretrained)
        hub = cfg.get("hf_hub", "").rstrip("/") if cfg else ""
        if not hub:
            raise UnknownModelError(f"open_clip has no pretrained tag {pretrained!r} for {arch}")
        repo = "/".join(hub.split("/")[:2])
        folder = _hub_path(repo, f"open_clip {arch}:{pretrained}", download)
        files = sorted(folder.rglob("*.safetensors"))
        if not files:
            raise ModelNotFoundError(f"{folder} holds no .safetensors weights; sagekit loads safetensors only")
        weights = str(files[0])
    model = open_clip.create_model(arch, pretrained=weights)
    tok = open_clip.get_tokenizer(arch)
    size = model.visual.image_size
    size = (size, size) if isinstance(size, int) else tuple(size)
    mean = getattr(model.visual, "image_mean", None) or open_clip.OPENAI_DATASET_MEAN
    std = getattr(model.visual, "image_std", None) or open_clip.OPENAI_DATASET_STD
    return ClipEmbedder(name, model.eval().requires_grad_(False), tok, "open_clip", size, mean, std)


# ---------------------------------------------------------------------------- language models
def load_caption_lm(name: str = "toy", device: str | torch.device = "cpu", download: bool = False):
    """A causal language model and its tokenizer, for word proposals: ``"toy"`` (the toy
    caption GPT-2) or a local folder / cached hub id of any causal LM (safetensors)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = _toy_path("caption-lm") if name == "toy" else _hub_path(name, "language model", download)
    _no_torch_pickles(path)
    with _quiet_loading():
        model = AutoModelForCausalLM.from_pretrained(path, use_safetensors=True, local_files_only=True)
    tok = AutoTokenizer.from_pretrained(path, local_files_only=True)
    return model.to(device).eval().requires_grad_(False), tok
