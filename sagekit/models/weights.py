"""Weight files on disk: the safetensors-only check, the local Hugging Face cache, a
fingerprint of a folder's weights, and the errors every loader raises."""

from __future__ import annotations

import hashlib
import os
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def quiet_loading():
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


def hub_path(repo_id: str, what: str, download: bool) -> Path:
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
