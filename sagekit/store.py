"""Results store: one SQLite database (WAL) plus PNG files, written one batch at a time.

A cell's key is a hash of everything that determines its output (``cell_key``). A batch
is committed atomically: its PNGs are written first (to temporary names, then renamed),
then its rows in one transaction. A run killed at any point therefore loses at most the
batch in flight, and a rerun finds every committed cell complete, image included.

Layout under ``root``::

    results.sqlite            tables: results(key, study, cell, metrics, created), tags(key, tag)
    images/ab/abcdef....png   one image per cell that stored one
    tensors/ab/abcdef....safetensors   tensors of a cell that stored some (a found latent, a token)
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import shutil
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Iterable

import numpy as np
import pandas as pd
import torch
from PIL import Image

SCHEMA = """
CREATE TABLE IF NOT EXISTS results (
    key TEXT PRIMARY KEY,
    study TEXT NOT NULL,
    cell TEXT NOT NULL,
    metrics TEXT NOT NULL,
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS tags (
    key TEXT NOT NULL,
    tag TEXT NOT NULL,
    PRIMARY KEY (key, tag)
);
"""


def occupied(path: Path) -> bool:
    """Whether ``path`` is a file or a folder with something in it (not a place to write a new folder)."""
    return path.exists() and (not path.is_dir() or any(path.iterdir()))


def unreadable_store(folder: Path) -> str | None:
    """Why the results store in ``folder`` cannot be used (a garbled ``results.sqlite``),
    or None (also when there is none yet). Reads only; writes nothing."""
    db = Path(folder) / "results.sqlite"
    if not db.is_file():
        return None
    try:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
        try:
            ok = con.execute("PRAGMA quick_check").fetchone()[0] == "ok"
        finally:
            con.close()
    except sqlite3.DatabaseError as e:
        return f"{db} is not a readable results store ({e}): move it aside, or choose another folder"
    return None if ok else f"{db} fails SQLite's integrity check: move it aside, or choose another folder"


def _umask() -> int:
    """The process's umask (read without changing it where Linux tells it)."""
    try:
        line = next(l for l in Path("/proc/self/status").read_text().splitlines() if l.startswith("Umask:"))
        return int(line.split()[1], 8)
    except (OSError, StopIteration, ValueError):
        mask = os.umask(0o022)
        os.umask(mask)
        return mask


@contextmanager
def new_folder(out: Path):
    """Yield a temporary folder beside ``out`` (absent or empty) to fill; once the block
    ends it is renamed to ``out``, and on any error removed: nobody sees half a folder."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp's 0700 would make an export or a poisoned folder private
    try:
        yield tmp
        if out.exists():
            out.rmdir()
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def canonical_json(obj) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=_jsonable)


def _jsonable(v):
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, (np.floating,)):
        return float(v)
    if isinstance(v, tuple):
        return list(v)
    raise TypeError(f"not JSON-serialisable: {type(v).__name__}")


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """Images ``(N, 3, H, W)`` in [0, 1] -> uint8 ``(N, 3, H, W)``, rounded half to even (as
    stored); uint8 images are returned as they are. Runs where the images are: on a GPU,
    a quarter of the bytes then cross to the CPU."""
    if images.dtype == torch.uint8:
        return images
    return (images.detach().float().clamp(0, 1) * 255).round().to(torch.uint8)


def cell_key(cell: dict) -> str:
    """Stable 20-hex-digit key of a cell description (order of keys does not matter)."""
    return hashlib.sha256(canonical_json(cell).encode()).hexdigest()[:20]


class ResultStore:
    """Append-only store of cell results; see the module docstring."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        (self.root / "images").mkdir(parents=True, exist_ok=True)
        self.db_path = self.root / "results.sqlite"
        with self._connect() as con:
            con.executescript(SCHEMA)

    def _connect(self) -> sqlite3.Connection:
        con = sqlite3.connect(self.db_path, timeout=60)
        con.execute("PRAGMA journal_mode=WAL")
        con.execute("PRAGMA synchronous=NORMAL")
        return con

    # ------------------------------------------------------------------ writing
    def image_path(self, key: str) -> Path:
        return self.root / "images" / key[:2] / f"{key}.png"

    def put_batch(self, study: str, cells: list[dict], metrics: list[dict],
                  images: torch.Tensor | None = None) -> list[str]:
        """Commit one batch: N cells, N metric dicts, optional images ``(N, 3, H, W)`` in
        [0, 1] (or uint8, see :func:`to_uint8`). Returns the keys. Cells already stored are left as they are."""
        if len(cells) != len(metrics) or (images is not None and len(images) != len(cells)):
            raise ValueError("cells, metrics and images must have the same length")
        keys = [cell_key(c) for c in cells]
        if images is not None:
            arr = to_uint8(images).permute(0, 2, 3, 1).cpu().numpy()
            # PNG encoding releases the GIL: a few threads encode a batch in a fraction of the time
            with ThreadPoolExecutor(min(8, len(keys), os.cpu_count() or 1)) as pool:
                list(pool.map(self._write_png, keys, arr))
        now = time.time()
        with self._connect() as con:  # one transaction
            con.executemany(
                "INSERT OR IGNORE INTO results (key, study, cell, metrics, created) VALUES (?, ?, ?, ?, ?)",
                [(k, study, canonical_json(c), canonical_json(m), now) for k, c, m in zip(keys, cells, metrics)],
            )
        return keys

    def _write_png(self, key: str, pixels: np.ndarray) -> None:
        path = self.image_path(key)
        path.parent.mkdir(exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.{threading.get_ident()}.tmp")
        Image.fromarray(pixels).save(tmp, format="PNG")
        os.replace(tmp, path)

    def tensor_path(self, key: str) -> Path:
        return self.root / "tensors" / key[:2] / f"{key}.safetensors"

    def put_tensors(self, key: str, tensors: dict[str, torch.Tensor]) -> Path:
        """Keep named tensors of a cell (before its row: a row never points at a missing
        file) as safetensors, written to a temporary name and renamed."""
        from safetensors.torch import save_file

        path = self.tensor_path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, str(tmp))
        os.replace(tmp, path)
        return path

    def tensors(self, key: str) -> dict[str, torch.Tensor]:
        """The tensors :meth:`put_tensors` kept for a cell (empty when none)."""
        from safetensors.torch import load_file

        path = self.tensor_path(key)
        return load_file(str(path)) if path.exists() else {}

    def tag(self, key: str, tags: Iterable[str], replace: bool = True) -> None:
        """Set (or add to) the taxonomy tags of a stored cell."""
        with self._connect() as con:
            if con.execute("SELECT 1 FROM results WHERE key = ?", (key,)).fetchone() is None:
                raise KeyError(f"no stored cell {key!r}")
            if replace:
                con.execute("DELETE FROM tags WHERE key = ?", (key,))
            con.executemany("INSERT OR IGNORE INTO tags (key, tag) VALUES (?, ?)", [(key, t) for t in tags])

    # ------------------------------------------------------------------ reading
    def tags(self, key: str) -> list[str]:
        """The tags of one stored cell (sorted); ``KeyError`` when there is no such cell."""
        with self._connect() as con:
            if con.execute("SELECT 1 FROM results WHERE key = ?", (key,)).fetchone() is None:
                raise KeyError(f"no stored cell {key!r}")
            return [t for (t,) in con.execute("SELECT tag FROM tags WHERE key = ? ORDER BY tag", (key,))]

    def done(self, keys: Iterable[str] | None = None, with_images: bool = False) -> set[str]:
        """The stored keys (of ``keys``, if given); ``with_images``: only those whose PNG is
        still there (a cell whose image was deleted is drawn again, not reused without it)."""
        with self._connect() as con:
            stored = {r[0] for r in con.execute("SELECT key FROM results")}
        stored = stored if keys is None else stored & set(keys)
        return {k for k in stored if self.image_path(k).is_file()} if with_images else stored

    def frame(self, study: str | None = None) -> pd.DataFrame:
        """One row per stored cell: ``key``, ``study``, the cell's fields, the metrics,
        ``tags`` (a list) and ``image`` (path, or None)."""
        query, args = "SELECT key, study, cell, metrics FROM results", ()
        if study is not None:
            query, args = query + " WHERE study = ?", (study,)
        with self._connect() as con:
            rows = con.execute(query + " ORDER BY rowid", args).fetchall()
            tags: dict[str, list[str]] = {}
            for k, t in con.execute("SELECT key, tag FROM tags ORDER BY tag"):
                tags.setdefault(k, []).append(t)
        records = []
        for key, st, cell, metrics in rows:
            path = self.image_path(key)
            records.append({"key": key, "study": st, **json.loads(cell), **json.loads(metrics),
                            "tags": tags.get(key, []), "image": str(path) if path.exists() else None})
        return pd.DataFrame.from_records(records)

    def image(self, key: str) -> torch.Tensor:
        """The stored image of a cell, ``(3, H, W)`` float in [0, 1]."""
        arr = np.asarray(Image.open(self.image_path(key)).convert("RGB"))
        return torch.from_numpy(arr.copy()).permute(2, 0, 1).float() / 255

    def __len__(self) -> int:
        with self._connect() as con:
            return con.execute("SELECT COUNT(*) FROM results").fetchone()[0]
