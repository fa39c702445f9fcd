"""Bars where people wait: sweeps, searches, fine-tunes. ``tqdm.auto`` draws a widget in
JupyterLab and a line in a terminal; while ``sagekit run`` writes a static report there is
none (a bar in a page without scripts is dead output: the CLI says each phase instead)."""

from __future__ import annotations

import os

from tqdm.auto import tqdm

#: set by ``sagekit run`` in the kernel it starts (where the study's findings go)
REPORT_ENV = "SAGEKIT_FINDINGS"


def in_report() -> bool:
    """True inside ``sagekit run``'s kernel (a static report is being written)."""
    return REPORT_ENV in os.environ


def bar(iterable=None, *, progress: bool = True, **kwargs) -> tqdm:
    """``tqdm.auto``'s bar, gone when it ends; none when ``progress`` is false or inside a
    static report."""
    return tqdm(iterable, disable=not progress or in_report(), leave=False, **kwargs)
