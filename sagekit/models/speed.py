"""How fast a loaded Generator runs: precision, attention kernel, ``torch.compile`` and a
batch size chosen from free GPU memory.

These are the GPU path's levers; on a CPU they are accepted and mostly do nothing
(float32, eager, the batch size the caller gave).
"""

from __future__ import annotations

import time
from typing import Callable

import torch

# names a study parameter or a command-line flag may give; "auto": float16 on CUDA, float32 on CPU
DTYPES = {"auto": None, "float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16,
          "fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def parse_dtype(name: str | torch.dtype | None) -> torch.dtype | None:
    """``"bf16"`` / ``"bfloat16"`` / ``torch.bfloat16`` -> ``torch.bfloat16``; ``"auto"`` or None -> None."""
    if name is None or isinstance(name, torch.dtype):
        return name
    if name not in DTYPES:
        raise ValueError(f"unknown precision {name!r}; choose one of {', '.join(DTYPES)}")
    return DTYPES[name]


def attention_kernels(module: torch.nn.Module) -> dict[str, int]:
    """Processor class name -> how many attention layers of ``module`` use it. diffusers'
    ``*2_0`` processors and the dispatching ones of newer families call PyTorch's
    ``scaled_dot_product_attention`` (flash / memory-efficient kernels on CUDA)."""
    procs = getattr(module, "attn_processors", {})
    counts: dict[str, int] = {}
    for proc in procs.values():
        name = type(proc).__name__
        counts[name] = counts.get(name, 0) + 1
    return counts


def compile_denoiser(gen, mode: str | None = None):
    """Compile ``gen``'s denoiser and VAE decoder in place with ``torch.compile`` (the first
    calls at a new shape pay the compile time; every call after runs the compiled graph).
    Before compiling, the denoiser's attention projections are fused where diffusers can
    (one matmul for q, k, v instead of three) and, on CUDA, its convolutions take
    channels-last tensors (what cuDNN's fastest kernels read). Returns ``gen``. Meant for
    sampling sweeps, whose shapes repeat batch after batch."""
    den = gen.denoiser
    try:
        den.fuse_qkv_projections()
    except (AttributeError, ValueError, NotImplementedError):  # a family whose attention diffusers cannot fuse
        pass
    if gen.device.type == "cuda" and any(isinstance(m, torch.nn.Conv2d) for m in den.modules()):
        den.to(memory_format=torch.channels_last)
    den.compile(mode=mode, dynamic=False)
    if gen.vae is not None:
        gen.vae.decoder.compile(mode=mode, dynamic=False)
    gen.compiled = True
    return gen


def synced_seconds(fn: Callable[[], object], device: torch.device | str) -> float:
    """Seconds of one call of ``fn`` with the device synchronised before and after, so
    that queued GPU work is counted where it was launched."""
    dev = torch.device(device)
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    t0 = time.perf_counter()
    fn()
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    return time.perf_counter() - t0


def _peak_growth(probe: Callable[[int], object], b: int, dev: torch.device) -> int:
    """Bytes that ``probe(b)`` adds at its peak to what was allocated before it."""
    torch.cuda.synchronize(dev)
    torch.cuda.empty_cache()
    start = torch.cuda.memory_allocated(dev)
    torch.cuda.reset_peak_memory_stats(dev)
    probe(b)
    torch.cuda.synchronize(dev)
    return torch.cuda.max_memory_allocated(dev) - start


def auto_batch_size(probe: Callable[[int], object], device: torch.device | str, limit: int = 256,
                    headroom: float = 0.8, default: int = 32, tries: int = 6) -> int:
    """A batch size that fits in free GPU memory: ``probe(b)`` runs one batch of the real
    work (e.g. one sampling step, decoding, judging). The growth of peak memory from
    ``probe(1)`` to ``probe(2)`` estimates the cost of one more item; the batch that
    fills ``headroom`` of the free memory is then run, and shrunk while its measured peak
    is over budget or it runs out of memory (one phase, e.g. the decoder, may dominate only
    at large batches, so the first estimate can be far too high). At most ``limit``;
    ``default`` on a CPU (no such memory to measure)."""
    dev = torch.device(device)
    if dev.type != "cuda":
        return max(1, min(default, limit))
    torch.cuda.synchronize(dev)
    torch.cuda.empty_cache()
    budget = torch.cuda.mem_get_info(dev)[0] * headroom
    one, two = (_peak_growth(probe, b, dev) for b in (1, 2))
    per_item = max(two - one, 1)
    b = max(1, min(limit, int((budget - max(one - per_item, 0)) // per_item)))
    for _ in range(tries):
        try:
            peak = _peak_growth(probe, b, dev)
        except torch.cuda.OutOfMemoryError:
            peak = None
        if peak is not None and peak <= budget:
            return b
        if b == 1:
            break
        b = max(1, b // 2 if peak is None else int(b * budget / peak * 0.95))
    torch.cuda.empty_cache()
    return b
