"""Weight files on disk: the safetensors-only check, the local Hugging Face cache, a
fingerprint of a folder's weights, and the errors every loader raises."""

from __future__ import annotations

import hashlib
import json
import os
from contextlib import contextmanager
from pathlib import Path

from ..markup import short


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


def local(name: str, kind: str = "dir") -> Path | None:
    """``name`` as a local folder (``kind="dir"``) or file (``"file"``) that exists, else
    None; a name no file system takes (too long, a NUL byte) is simply not local."""
    try:
        path = Path(name).expanduser()
        return path if (path.is_dir() if kind == "dir" else path.is_file()) else None
    except (OSError, ValueError, RuntimeError):  # ENAMETOOLONG; embedded NUL; ~user unknown
        return None


def hub_path(repo_id: str, what: str, download: bool) -> Path:
    """Local folder of a hub repo: the folder itself, or the local HF cache (no network
    unless ``download``)."""
    if (folder := local(repo_id)) is not None:
        return folder
    if repo_id.count("/") != 1 or repo_id.startswith((".", "/", "~")):
        raise ModelNotFoundError(f"{what} {short(repo_id)}: no such folder, and not a hub id of the form 'org/name'")
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        return Path(snapshot_download(repo_id, local_files_only=not download))
    except LocalEntryNotFoundError:
        raise ModelNotFoundError(
            f"{what} {short(repo_id)} is not in the local Hugging Face cache. Download it once on a machine "
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


def _digest_cache() -> Path:
    """Where whole-file hashes are kept between runs (``$SAGEKIT_CACHE``, else the user's
    cache folder): hashing SDXL's 7 GB takes a while, so each file is hashed once per
    (size, modification time)."""
    root = os.environ.get("SAGEKIT_CACHE") or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "sagekit"
    return Path(root) / "file-digests.json"


def sha256_file(path: Path) -> str:
    """sha256 (hex) of a whole file, read in 16 MiB pieces."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(2**24):
            h.update(chunk)
    return h.hexdigest()


def file_digest(path: Path) -> str:
    """sha256 of a whole file, cached by its resolved path, size and modification time
    (any write changes the time, so a garbled file is hashed again)."""
    path = Path(path).resolve()
    st = path.stat()
    stamp = [st.st_size, st.st_mtime_ns]
    cache_file = _digest_cache()
    try:
        cache = json.loads(cache_file.read_text())
    except (OSError, ValueError):
        cache = {}
    hit = cache.get(str(path))
    if isinstance(hit, dict) and hit.get("stamp") == stamp:
        return hit["sha256"]
    digest = sha256_file(path)
    cache[str(path)] = {"stamp": stamp, "sha256": digest}
    try:  # a cache that cannot be written only costs time
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache_file.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(cache))
        os.replace(tmp, cache_file)
    except OSError:
        pass
    return digest


def weights_fingerprint(path: Path) -> str:
    """A short id (12 hex digits) of the weights a folder (or one file) holds: a hash of
    every safetensors file's name and whole content (:func:`file_digest`), so retrained or
    garbled weights never pass for the old ones."""
    path = Path(path).resolve()
    files = [path] if path.is_file() else sorted(path.rglob("*.safetensors"))
    h = hashlib.sha256()
    for f in files:
        h.update(f"{f.relative_to(path) if f != path else f.name}:{file_digest(f)}\n".encode())
    return h.hexdigest()[:12]


def fingerprint_of(paths) -> str:
    """:func:`weights_fingerprint` of several folders or files at once (a judge ensemble's)."""
    return hashlib.sha256("+".join(weights_fingerprint(p) for p in paths).encode()).hexdigest()[:12]
