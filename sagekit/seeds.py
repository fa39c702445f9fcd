"""Named seed streams: every seed a study draws noise (or data) from comes from here.

A seed is ``stream(seed, index)``: the study's ``seed`` parameter (0 .. 2^32 - 1) and the
draw's index within its stream (0 .. 2^24 - 1). Two streams never share a seed, whatever
the parameters (a study cannot optimise on the seeds it then tests on):

- ``images`` (id 0) is ``seed + index``, below 2^33: the study's own images (the seed-shift
  grid, the latents a latent search starts from, the implosion evaluation, the toy-world
  generation table), as sagekit drew them before the streams existed;
- every other stream ``s`` is ``id(s) * 2^56 + seed * 2^24 + index``, at or above 2^56 and
  below 2^63 (it fits SQLite's and pandas' signed 64-bit integers and torch's seeds).

The stream of each kind of draw, and who draws from it:
"""

from __future__ import annotations

BASE_BITS, INDEX_BITS, STREAM_SHIFT = 32, 24, 56

#: name -> (id, what draws from it)
STREAMS: dict[str, tuple[int, str]] = {
    "images": (0, "a study's own images: seed-shift cells, searched latents, implosion and toy-world evaluation"),
    "train": (1, "seeds a search optimises on (prompt search: per word, a block of train_seeds)"),
    "eval": (2, "fresh seeds of a failure test, never optimised on (prompt failures)"),
    "heldout": (3, "seeds of held-out prompts (adversarial tokens' evaluation)"),
    "iterations": (4, "one fresh batch of seeds per learning step (adversarial tokens)"),
    "examples": (5, "images a model draws of a target to learn from (adversarial tokens, denoise objective)"),
    "reference": (6, "ordinary images a found image's realism is ranked against (latent searches)"),
    "bias-probe": (7, "the toy-world report's bias probes"),
    "word-probe": (8, "the toy-world report's word probe"),
    "explore": (9, "fresh images an explorer draws in JupyterLab (a person's look; never counted in a report)"),
}
__doc__ += "\n".join(f"- ``{name}`` ({i}): {what}" for name, (i, what) in STREAMS.items()) + "\n"


def seed_of(stream: str, seed: int, index: int) -> int:
    """The seed of draw ``index`` of ``stream`` for a study run with ``seed``."""
    if stream not in STREAMS:
        raise KeyError(f"unknown seed stream {stream!r}; known: {', '.join(STREAMS)}")
    if not 0 <= seed < 2**BASE_BITS or not 0 <= index < 2**INDEX_BITS:
        raise ValueError(f"seed must be in [0, 2^{BASE_BITS}) and index in [0, 2^{INDEX_BITS}), got {seed}, {index}")
    sid = STREAMS[stream][0]
    return seed + index if sid == 0 else (sid << STREAM_SHIFT) | (seed << INDEX_BITS) | index


def seeds(stream: str, seed: int, n: int, start: int = 0) -> list[int]:
    """Draws ``start .. start + n - 1`` of ``stream`` (see :func:`seed_of`)."""
    return [seed_of(stream, seed, start + i) for i in range(n)]


def stream_of(value: int) -> str:
    """Which stream a seed belongs to (the inverse of :func:`seed_of`'s stream)."""
    sid = value >> STREAM_SHIFT
    return next(name for name, (i, _) in STREAMS.items() if i == sid)
