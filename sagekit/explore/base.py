"""What every explorer shares: a :class:`Frame` (the images one state of the controls
draws, each with its caption) and an :class:`Explorer`, which redraws the frame whenever
a control moves.

In JupyterLab an explorer shows as ipywidgets; in a static report (``sagekit run``) it
shows as a still image of its first frame, since a page without scripts cannot move a
slider. Each redraw is timed: ``explorer.times`` holds its seconds.
"""

from __future__ import annotations

import html
import io
import time
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import torch

from ..models.judges import Ensemble
from ..progress import in_report


@dataclass
class Frame:
    """One view: ``images`` ``(N, 3, H, W)`` in [0, 1] laid out ``ncol`` to a row, a
    plain-text caption per image (lines split on ``\\n``), a label per row, ``marks``
    (True: green border, False: red, None: none) and a line of notes under the grid."""

    images: torch.Tensor
    captions: Sequence[str]
    ncol: int
    row_labels: Sequence[str] = ()
    marks: Sequence[bool | None] = ()
    note: str = ""


def judge_lines(judge, images: torch.Tensor, labels: Sequence[str | None]
                ) -> tuple[list[list[str]], list[bool | None], torch.Tensor]:
    """Per image ``(N, 3, H, W)``, a line per judge (``name: top-1 (p)``; an ensemble's
    members each, then the ensemble), whether the (ensemble) judge's top-1 is the image's
    label (None where the label is None), and the (ensemble) judge's probabilities
    ``(N, K)`` on the CPU."""
    images = images.to(judge.device)
    if isinstance(judge, Ensemble):  # each member once; the ensemble's mean from theirs
        per = judge.per_judge(images)
        probs = judge.combine(per).cpu()
        named = [(j.name, p) for j, p in zip(judge.judges, per.cpu())]
        named += [(judge.name, probs)] if len(named) > 1 else []  # an ensemble of one: its member's line
    else:
        probs = judge(images).cpu()
        named = [(judge.name, probs)]
    lines, right = [], []
    for i, label in enumerate(labels):
        lines.append([f"{name}: {judge.labels[int(p[i].argmax())]} ({float(p[i].max()):.2f})" for name, p in named])
        right.append(None if label is None else judge.labels[int(probs[i].argmax())] == label)
    return lines, right, probs


BORDER = {True: "#2ca02c", False: "#d62728", None: "transparent"}


class Explorer:
    """Controls (ipywidgets, by name) and ``draw(**values) -> Frame``; any change of a
    control redraws. ``title`` heads the view. In a static report it displays as a PNG of
    the first frame; elsewhere as the widgets."""

    def __init__(self, title: str, controls: dict[str, Any], draw: Callable[..., Frame], size: int = 128,
                 adjust: Callable[[str, dict], None] | None = None):
        """``adjust(name, controls)``, when given, runs after control ``name`` moved and
        before the redraw, to set other controls (e.g. a slider's range) without each
        setting redrawing."""
        self.title, self.controls, self._draw, self.size, self._adjust = title, controls, draw, size, adjust
        self._quiet = False
        self.times: list[float] = []
        self.frame = self.redraw_frame()
        self._widget = None

    def values(self) -> dict[str, Any]:
        return {name: c.value for name, c in self.controls.items()}

    def redraw_frame(self) -> Frame:
        t0 = time.perf_counter()
        self.frame = self._draw(**self.values())
        self.times.append(time.perf_counter() - t0)
        return self.frame

    # ------------------------------------------------------------------ widgets
    @property
    def widget(self):
        """The ipywidgets view (built on first use)."""
        if self._widget is None:
            import ipywidgets as w

            self._grid = w.VBox()
            self._status = w.HTML()
            self._fill(self.frame)
            for c in self.controls.values():
                c.observe(self._on_change, names="value")
            header = w.HTML(f"<b>{html.escape(self.title)}</b>")
            self._widget = w.VBox([header, w.HBox(list(self.controls.values()), layout=w.Layout(flex_flow="row wrap")),
                                   self._grid, self._status])
            self._widget.add_class("sagekit-explorer")
        return self._widget

    def _on_change(self, change) -> None:
        if self._quiet:
            return
        if self._adjust is not None:
            name = next(n for n, c in self.controls.items() if c is change["owner"])
            self._quiet = True
            try:
                self._adjust(name, self.controls)
            finally:
                self._quiet = False
        self._status.value = "<i>drawing…</i>"
        self._fill(self.redraw_frame())

    def _fill(self, frame: Frame) -> None:
        import ipywidgets as w

        from ..viz import png_bytes

        cells = []
        for i, image in enumerate(frame.images):
            mark = frame.marks[i] if i < len(frame.marks) else None
            caption = "<br>".join(html.escape(line) for line in str(frame.captions[i]).split("\n"))
            picture = w.Image(value=png_bytes(image, self.size), format="png",
                              layout=w.Layout(border=f"3px solid {BORDER[mark]}", width=f"{self.size + 6}px"))
            picture.add_class("sagekit-explorer-image")
            text = w.HTML(f'<div style="font-size:11px;line-height:1.3">{caption}</div>',
                          layout=w.Layout(width=f"{max(self.size + 48, 220)}px"))  # a judge line unbroken
            cells.append(w.VBox([picture, text]))
        rows = []
        for r in range(0, len(cells), frame.ncol):
            label = frame.row_labels[r // frame.ncol] if r // frame.ncol < len(frame.row_labels) else ""
            rows.append(w.HBox([w.HTML(f"<b>{html.escape(label)}</b>", layout=w.Layout(width="120px")),
                                *cells[r:r + frame.ncol]]))
        self._grid.children = rows
        self._status.value = (f"<small>{html.escape(frame.note)}{' · ' if frame.note else ''}"
                              f"redrawn in {self.times[-1]:.2f} s</small>")

    # ------------------------------------------------------------------ still image
    def still(self):
        """A matplotlib figure of the current frame (what a static report shows)."""
        from ..viz import captioned_grid

        f = self.frame
        return captioned_grid(f.images, f.captions, f.ncol, f.row_labels, f.marks, title=self.title, note=f.note)

    def _repr_mimebundle_(self, include=None, exclude=None):
        if not in_report():
            return self.widget._repr_mimebundle_(include=include, exclude=exclude)
        import matplotlib.pyplot as plt

        fig = self.still()
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
        plt.close(fig)
        return {"image/png": buf.getvalue(), "text/plain": f"<{self.title}: a still of its first view>"}
