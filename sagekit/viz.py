"""Plots for reports: image grids with labels and right/wrong marks, curves, bars and maps.

Every function returns its figure (or a list of figures) and shows nothing: the notebook
decides when (``plt.show()``). No global matplotlib setting is changed: each function
draws under :func:`plain_text`.
"""

from __future__ import annotations

import functools
import textwrap
from typing import Sequence

import matplotlib
import matplotlib.ticker
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch

from .markup import display_name

RIGHT, WRONG = (0.1, 0.7, 0.2), (0.85, 0.1, 0.1)



def plain_text(fn):
    """Draw ``fn``'s figure with mathtext off: titles and tick labels show model names,
    labels and prompts, which may hold "$" (parsed as mathtext, a stray "$" would crash
    the plot). The setting holds only while ``fn`` runs (a text keeps what it was made with)."""

    @functools.wraps(fn)
    def draw(*args, **kwargs):
        with plt.rc_context({"text.parse_math": False}):
            return fn(*args, **kwargs)

    return draw


def grid_array(images: torch.Tensor, ncol: int, marks: Sequence[bool | None] | None = None, pad: int = 2,
               scale: int = 1) -> np.ndarray:
    """Tile ``(N, 3, H, W)`` images in [0, 1] into one ``(rows*(H+2p), ncol*(W+2p), 3)`` array.
    ``marks[i]`` colours the border of image i green (True) or red (False); white where
    ``marks`` or ``marks[i]`` is None."""
    imgs = images.detach().float().clamp(0, 1).cpu()
    if scale > 1:
        imgs = imgs.repeat_interleave(scale, -1).repeat_interleave(scale, -2)
    n, _, h, w = imgs.shape
    rows = (n + ncol - 1) // ncol
    out = np.ones((rows * (h + 2 * pad), ncol * (w + 2 * pad), 3), dtype=np.float32)
    for i in range(n):
        r, c = divmod(i, ncol)
        y, x = r * (h + 2 * pad), c * (w + 2 * pad)
        if marks is not None and marks[i] is not None:
            out[y:y + h + 2 * pad, x:x + w + 2 * pad] = RIGHT if marks[i] else WRONG
        out[y + pad:y + pad + h, x + pad:x + pad + w] = imgs[i].permute(1, 2, 0).numpy()
    return out


@plain_text
def image_grid(images: torch.Tensor, ncol: int, row_labels: Sequence[str] | None = None,
              col_labels: Sequence[str] | None = None, marks: Sequence[bool | None] | None = None,
              title: str | None = None, cell_inches: float = 0.55, scale: int = 2):
    """A matplotlib figure of an image grid; returns the figure."""
    n = images.shape[0]
    rows = (n + ncol - 1) // ncol
    fig, ax = plt.subplots(figsize=(max(3.0, ncol * cell_inches + 1.6), rows * cell_inches + 0.6))
    arr = grid_array(images, ncol, marks, scale=scale)
    ax.imshow(arr, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    cell_h, cell_w = arr.shape[0] / rows, arr.shape[1] / ncol
    if row_labels is not None:
        ax.set_yticks([cell_h * (i + 0.5) for i in range(len(row_labels))], list(row_labels), fontsize=8)
    if col_labels is not None:
        ax.set_xticks([cell_w * (i + 0.5) for i in range(len(col_labels))], list(col_labels), fontsize=8,
                      rotation=45, ha="right")
        ax.xaxis.tick_top()
    for s in ax.spines.values():
        s.set_visible(False)
    if title:
        ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return fig


def png_bytes(image: torch.Tensor, size: int = 96) -> bytes:
    """PNG of one ``(3, H, W)`` image in [0, 1], scaled to ``size`` pixels a side (nearest:
    a toy image's pixels stay sharp)."""
    import io

    from PIL import Image

    arr = (image.detach().float().clamp(0, 1).permute(1, 2, 0).cpu().numpy() * 255).round().astype("uint8")
    buf = io.BytesIO()
    Image.fromarray(arr).resize((size, size), Image.NEAREST).save(buf, format="PNG")
    return buf.getvalue()


@plain_text
def captioned_grid(images: torch.Tensor, captions: Sequence[str], ncol: int, row_labels: Sequence[str] = (),
                   marks: Sequence[bool | None] = (), title: str | None = None, note: str = ""):
    """Images ``(N, 3, H, W)`` in [0, 1], ``ncol`` to a row, each over its caption (lines
    split on ``\\n``), a label left of each row, borders by ``marks`` (as
    :func:`grid_array`); returns the figure."""
    n = images.shape[0]
    rows = (n + ncol - 1) // ncol
    texts = [str(c).split("\n") for c in captions] or [[""]]
    lines = max(len(t) for t in texts)
    width = max(1.9, 0.058 * max(len(line) for t in texts for line in t))  # 7-point text, about 0.058 inch a character
    fig, axes = plt.subplots(rows, ncol, figsize=(width * ncol + 0.6, rows * (1.9 + 0.16 * lines) + 0.7),
                             squeeze=False, layout="constrained")
    for i, ax in enumerate(axes.flat):
        ax.set_xticks([])
        ax.set_yticks([])
        if i >= n:
            ax.axis("off")
            continue
        ax.imshow(images[i].detach().float().clamp(0, 1).permute(1, 2, 0).cpu().numpy(), interpolation="nearest")
        mark = marks[i] if i < len(marks) else None
        for side in ax.spines.values():
            side.set_visible(mark is not None)
            side.set_color(RIGHT if mark else WRONG)
            side.set_linewidth(3)
        ax.set_xlabel(str(captions[i]) if i < len(captions) else "", fontsize=7)
        if i % ncol == 0 and i // ncol < len(row_labels):
            ax.set_ylabel(row_labels[i // ncol], fontsize=9)
    if title or note:  # the note under the title, wrapped to the grid's width (the layout keeps both clear)
        lines = [title] if title else []
        lines += [textwrap.fill(note, max(40, int((width * ncol + 0.6) / 0.075)))] if note else []
        fig.suptitle("\n".join(lines), fontsize=9)
    return fig


@plain_text
def bar_chart(values: dict[str, float], title: str, ylabel: str = "accuracy", bar: float | None = None,
              ylim: tuple[float, float] = (0, 1.05)):
    """Labelled bars with their values printed on top; optional dashed target line."""
    fig, ax = plt.subplots(figsize=(max(4, 0.9 * len(values) + 1.5), 3.2))
    names, vals = list(values), [values[k] for k in values]
    bars = ax.bar(names, vals, color="#4c72b0")
    for b, v in zip(bars, vals):
        ax.text(b.get_x() + b.get_width() / 2, v + 0.01, f"{v:.2f}", ha="center", va="bottom", fontsize=8)
    if bar is not None:
        ax.axhline(bar, ls="--", color="grey", lw=1)
    ax.set_ylim(*ylim)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    plt.setp(ax.get_xticklabels(), rotation=20, ha="right", fontsize=8)
    fig.tight_layout()
    return fig


@plain_text
def rate_bars(table: pd.DataFrame, name: str, title: str, ylabel: str = "failure rate"):
    """One bar per row of ``table`` (columns ``name``, ``k``, ``n``, ``rate``, ``lo``, ``hi``:
    :func:`sagekit.stats.rate` records) with its 95% interval and "k/n" beside it; many or
    long names (prompts) lie along the vertical axis, top to bottom in the table's order."""
    names = [str(v) for v in table[name]]
    rates = table["rate"].to_numpy(dtype=float)
    err = np.vstack([rates - table["lo"].to_numpy(dtype=float), table["hi"].to_numpy(dtype=float) - rates])
    counts = [f"{k}/{n}" for k, n in zip(table["k"], table["n"])]
    across = len(names) > 8 or max(map(len, names), default=0) > 14
    if across:
        fig, ax = plt.subplots(figsize=(7.5, 0.28 * len(names) + 1.0))
        y = np.arange(len(names))[::-1]
        ax.barh(y, rates, color="#4c72b0", xerr=err, error_kw={"ecolor": "black", "capsize": 2, "lw": 1})
        for yi, hi, c in zip(y, table["hi"], counts):
            ax.text(min(float(hi) + 0.02, 1.02), yi, c, va="center", fontsize=7)
        ax.set_yticks(y, names, fontsize=8)
        ax.set_xlim(0, 1.12)
        ax.set_xlabel(ylabel)
    else:
        fig, ax = plt.subplots(figsize=(max(4, 0.8 * len(names) + 1.5), 3.2))
        x = np.arange(len(names))
        ax.bar(x, rates, color="#4c72b0", yerr=err, error_kw={"ecolor": "black", "capsize": 3, "lw": 1})
        for xi, hi, c in zip(x, table["hi"], counts):
            ax.text(xi, min(float(hi) + 0.02, 1.0), c, ha="center", va="bottom", fontsize=7)
        ax.set_xticks(x, names)
        ax.set_ylim(0, 1.12)
        ax.set_ylabel(ylabel)
        plt.setp(ax.get_xticklabels(), rotation=20, ha="right", fontsize=8)
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return fig


@plain_text
def metric_vs_level(summary, metric: str = "top1", title: str | None = None):
    """One panel per shift type: ``metric`` against the shift level with its 95% interval,
    one line per (model, guidance); the unshifted value is a dotted line of the same colour."""
    shifts = [s for s in summary["shift"].unique() if s != "none"]
    fig, axes = plt.subplots(1, len(shifts), figsize=(3.2 * len(shifts), 3.2), sharey=True, squeeze=False)
    series = list(summary.groupby(["model", "guidance"], sort=False))
    colours = plt.cm.tab10.colors
    for ax, shift in zip(axes[0], shifts):
        for i, ((model, g), sub) in enumerate(series):
            # the unshifted point sits at level 0 (n=0 for the sort shift) of every line
            part = pd.concat([sub[sub["shift"] == "none"], sub[sub["shift"] == shift]]).sort_values("level_value")
            label = f"{display_name(model)}, {'guidance ' + format(g, 'g') if g > 1 else 'no guidance'}"
            ax.errorbar(part["level_value"], part[metric],
                        yerr=[part[metric] - part[f"{metric}_lo"], part[f"{metric}_hi"] - part[metric]],
                        marker="o", ms=3, capsize=2, lw=1.2, color=colours[i % 10], label=label)
            base = sub[sub["shift"] == "none"][metric]
            if len(base):
                ax.axhline(float(base.iloc[0]), ls=":", lw=1, color=colours[i % 10])
        ax.set_title(shift, fontsize=10)
        ax.set_xlabel("level" if shift != "MS" else "α_c (α_s varies)")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel(metric)
    axes[0][-1].legend(fontsize=7, loc="best")
    if title:
        fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    return fig


@plain_text
def label_grids(results: dict, labels: Sequence[str], shown: Sequence[int], per_label: int) -> list:
    """A figure per ``(model, mode)`` result of ``toy.evaluate.generation_results(return_images=True)``:
    the images of the ``shown`` label indices, one row per label (green: judged right)."""
    figs = []
    for (model, mode), r in results.items():
        idx = [li * per_label + k for li in shown for k in range(per_label)]
        right = (r["pred"] == r["targets"]).tolist()
        figs.append(image_grid(r["images"][idx], ncol=per_label, row_labels=[labels[i] for i in shown],
                               marks=[right[i] for i in idx],
                               title=f"{model}, {mode} (guidance {r['guidance']}, {r['steps']} steps)"))
    return figs


@plain_text
def prompt_failure_grids(result, judge, limit: int = 8, failing_only: bool = True) -> list:
    """A figure per failing prompt of a prompt search's result (every searched prompt with
    ``failing_only`` False; at most ``limit``): its images on the fresh seeds, each labelled
    with the judge's prediction (green: the prompt's label is seen). None failing: no figure."""
    figs = []
    for r, images in result.rows(failing_only)[:limit]:
        pred = judge(images).argmax(-1)
        figs.append(image_grid(
            images, ncol=len(images), marks=(pred == judge.label_index(r["label"])).tolist(),
            title=f'"{r["prompt"]}" — fails on {r["failure_rate"]:.0%} of seeds, perplexity {r["perplexity"]:.1f}'
                  + ("" if r["failure"] else " (not a failure)"),
            col_labels=[judge.labels[j] for j in pred.tolist()], cell_inches=0.8, scale=3))
    return figs


@plain_text
def iterations_histogram(table: pd.DataFrame):
    """Histogram of iterations to failure of the found rows of a search table; None when
    nothing was found."""
    found = table.loc[table["found"], "iterations"]
    if found.empty:
        return None
    fig, ax = plt.subplots(figsize=(5, 2.8))
    ax.hist(found, bins=20, color="#4c72b0")
    ax.set_xlabel("iterations to failure")
    ax.set_ylabel("latents")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


@plain_text
def before_after(result, labels: Sequence[str], limit: int = 12):
    """Images of the original latents (top) and the found ones (bottom; green border: a
    verified, certified failure) of a per-prompt latent search. Returns the figure."""
    n = min(limit, len(result.table))
    images = torch.cat([result.images_before[:n], result.images_after[:n]])
    marks = [True] * n + result.table["success"].tolist()[:n]
    return image_grid(images, ncol=n, row_labels=["original z", "found z'"], col_labels=list(labels)[:n],
                     marks=marks, cell_inches=0.8, scale=3)


@plain_text
def shared_latents_grid(result, labels: Sequence[str], limit: int = 4):
    """Per latent of a shared (many-prompt) search: a row of its original images over the
    search prompts and a row of the found latent's (green border: a verified, certified
    failure). Returns the figure."""
    n = min(limit, len(result.table))
    rows, marks, names = [], [], []
    for i in range(n):
        rows += [result.images_before[i], result.images_after[i]]
        marks += [None] * len(labels) + [bool(result.table["success"][i])] * len(labels)
        names += [f"seed {result.table['seed'][i]}: z", "found z'"]
    return image_grid(torch.cat(rows), ncol=len(labels), row_labels=names, col_labels=list(labels), marks=marks,
                     cell_inches=0.8, scale=3)


@plain_text
def perplexity_vs_failure(baseline: pd.DataFrame, searched: pd.DataFrame, bar: float):
    """Failure rate against LM perplexity: the LM's likeliest continuations and the
    searched prompts, with the failure bar. Returns the figure."""
    fig, ax = plt.subplots(figsize=(6, 3))
    ax.scatter(baseline["perplexity"], baseline["failure_rate"], label="LM's likeliest continuations", color="#58c")
    ax.scatter(searched["perplexity"], searched["failure_rate"], label="gradient-guided search", color="#c42",
               marker="x")
    ax.axhline(bar, color="grey", lw=0.8, ls="--")
    ax.set_xscale("log")
    # plain tick labels: mathtext is off (prompts may hold "$"), and log ticks default to it
    ax.xaxis.set_major_formatter(matplotlib.ticker.LogFormatter())
    ax.xaxis.set_minor_formatter(matplotlib.ticker.LogFormatter(labelOnlyBase=False))
    ax.set_xlabel("LM perplexity (lower = more natural)")
    ax.set_ylabel("failure rate over fresh seeds")
    ax.set_ylim(-0.05, 1.05)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


@plain_text
def token_success_bars(by_target: pd.DataFrame):
    """Per target: the share of held-out prompts × seeds where every judge sees it (and,
    for "{colour} {shape}" labels, its colour and its shape). Returns the figure."""
    cols = [c for c in ("success", "colour", "shape") if c in by_target]
    ax = by_target[cols].plot.bar(figsize=(7, 3), rot=0, ylim=(0, 1), color=["#2a7", "#c84", "#58c"][: len(cols)])
    ax.set_ylabel("share of held-out prompts × seeds")
    ax.set_title("does the token make the judges see the target?")
    ax.legend(["every judge sees the target", "target's colour", "target's shape"][: len(cols)], fontsize=8)
    ax.figure.tight_layout()
    return ax.figure


@plain_text
def token_grids(result, splits: dict, seed: int) -> list:
    """A figure per target of ``adversarial_tokens.learn_tokens``' result: its held-out
    labels' prompts (``splits[target][1]``) at ``seed`` without and with the token (green:
    every judge sees the target)."""
    figs = []
    for target in result.targets:
        rows = ((result.table["target"] == target) & (result.table["seed"] == seed)).to_numpy()
        shown = result.table[rows]
        held = splits[target][1]
        at = torch.from_numpy(rows)
        figs.append(image_grid(torch.cat([result.plain[at], result.token[at]]), ncol=len(held),
                               marks=[None] * len(held) + shown["success"].tolist(),
                               row_labels=["prompt", "prompt + token"], col_labels=held, title=f"target: {target}",
                               cell_inches=0.8, scale=3))
    return figs


@plain_text
def metric_panels(summary: pd.DataFrame, metrics: Sequence[tuple[str, str]]) -> list:
    """One :func:`metric_vs_level` figure per ``(metric, title)``."""
    return [metric_vs_level(summary, metric, f"{title} vs shift level") for metric, title in metrics]


@plain_text
def per_class_heatmap(heat: pd.DataFrame, title: str):
    """Top-1 per label (rows) and shift condition (columns, ``(shift, level)`` pairs).
    Returns the figure."""
    import seaborn as sns

    fig, ax = plt.subplots(figsize=(0.45 * heat.shape[1] + 3, 0.3 * heat.shape[0] + 1.5))
    sns.heatmap(heat, vmin=0, vmax=1, cmap="RdYlGn", annot=heat.shape[1] <= 16, fmt=".1f",
                cbar_kws={"label": "top-1"}, ax=ax, annot_kws={"fontsize": 7})
    ax.set_xticklabels([f"{s} {l}" for s, l in heat.columns], rotation=60, ha="right", fontsize=7)
    ax.set_xlabel("")
    ax.set_ylabel("")
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return fig


@plain_text
def levels_grid(images: torch.Tensor, marks, rows: Sequence[str], conds: Sequence[tuple[str, str]], label: str,
                seed: int):
    """The images of one label and seed across shift conditions (columns), one row per
    model and guidance (green: right under the judge). Returns the figure."""
    return image_grid(images, ncol=len(conds), row_labels=rows, col_labels=[f"{s} {l}" for s, l in conds],
                     marks=marks, title=f'"A photo of a {label}", seed {seed}', cell_inches=0.75, scale=3)


@plain_text
def unshifted_vs_shifted(summary: pd.DataFrame, metric: str = "top1"):
    """Bars per model and guidance: ``metric`` unshifted, and its mean over all shifted
    conditions. Returns the figure."""
    cond = np.where(summary["shift"] == "none", "unshifted", "shifted (mean)")
    side = summary.assign(cond=cond).groupby(["model", "guidance", "cond"], sort=False)[metric].mean().unstack("cond")
    side.index = [f"{display_name(m)}\n{'guidance ' + format(g, 'g') if g > 1 else 'no guidance'}" for m, g in side.index]
    width = max(7.0, 1.6 * len(side))  # room for long model names under each pair of bars
    ax = side[["unshifted", "shifted (mean)"]].plot.bar(figsize=(width, 3.4), rot=0, color=["#4c72b0", "#dd8452"])
    ax.set_ylabel("top-1 accuracy" if metric == "top1" else metric)
    ax.set_ylim(0, 1.12)
    ax.legend(loc="upper right", fontsize=8, ncol=2)
    ax.grid(axis="y", alpha=0.3)
    for bars in ax.containers:
        ax.bar_label(bars, fmt="%.2f", fontsize=7)
    ax.figure.tight_layout()
    return ax.figure


@plain_text
def curves_per_panel(curves: dict[str, dict[str, np.ndarray]], xlabel: str, ylabel: str):
    """One panel per outer key, one line per inner key (x = position in the array)."""
    fig, axes = plt.subplots(1, len(curves), figsize=(5 * len(curves), 3.2), squeeze=False)
    for ax, (title, lines) in zip(axes[0], curves.items()):
        for name, y in lines.items():
            ax.plot(np.arange(len(y)), y, label=name, lw=1.2)
        ax.set_title(display_name(title), fontsize=10)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
    axes[0][-1].legend(fontsize=6, ncol=2)
    fig.tight_layout()
    return fig


@plain_text
def step_distance_curves(distances: dict[str, np.ndarray]):
    """Step-to-step distance of each model's sampler (``(N, S)`` per model), divided by its
    mean over all steps, against the fraction of sampling done; band: ±1 std over seeds.
    Flat lines move evenly; a peak at the left is paper 001's "early gap"."""
    fig, ax = plt.subplots(figsize=(6, 3.2))
    for model, d in distances.items():
        rel = d / d.mean(1, keepdims=True).clip(1e-12)
        x = (np.arange(d.shape[1]) + 0.5) / d.shape[1]
        mean, std = rel.mean(0), rel.std(0)
        ax.plot(x, mean, lw=1.4, label=f"{display_name(model)} ({d.shape[1]} steps)")
        ax.fill_between(x, mean - std, mean + std, alpha=0.2)
    ax.set_xlabel("fraction of sampling done")
    ax.set_ylabel("step distance / its mean")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


RULE_STYLE = {"total": ("o", "-"), "per-concept": ("^", ":")}  # marker, line of the poisoned runs per budget rule


@plain_text
def implosion_panels(points: pd.DataFrame):
    """Four panels against k, poisoned runs (95% Wilson bars) beside their clean controls
    (dashed / shaded band), per budget rule (``points["rule"]``; markers and lines tell
    them apart): Alignment Difficulty of the training set; prompts about a poisoned concept
    drawn as its target; accuracy on the unpoisoned concepts; and the concept tokens'
    cross-attention spread (sagekit's own measure). Returns the figure."""
    fig, axes = plt.subplots(1, 4, figsize=(16, 3.5))
    rules = list(dict.fromkeys(points["rule"]))
    k = sorted(points["k"].unique())

    def bars(ax, d, metric, lo, hi, **kw):
        ax.errorbar(d["k"], d[metric], yerr=[d[metric] - d[lo], d[hi] - d[metric]], capsize=3, **kw)

    for rule in rules:
        marker, line = RULE_STYLE.get(rule, ("o", "-"))
        tag = "" if len(rules) == 1 else f" ({rule})"
        d = points[points["rule"] == rule]
        p, c = d[~d["control"]].sort_values("k"), d[d["control"]].sort_values("k")
        axes[0].plot(p["k"], p["ad"], marker=marker, ls=line, color="#c44e52", label="poisoned set" + tag)
        axes[0].plot(c["k"], c["ad"], marker="s", ls="--", color="#55a868", label="clean control" + tag)
        bars(axes[1], p[p["k"] > 0], "poisoned_hit", "poisoned_hit_lo", "poisoned_hit_hi", color="#c44e52",
             marker=marker, ls=line, label="poisoned: A drawn as B" + tag)
        bars(axes[1], c[c["k"] > 0], "poisoned_hit", "poisoned_hit_lo", "poisoned_hit_hi", color="#55a868", ls="--",
             marker="s", label="control: A drawn as B" + tag)
        axes[2].fill_between(c["k"], c["unpoisoned_lo"], c["unpoisoned_hi"], color="#55a868", alpha=0.15,
                             label="control, 95% interval" + tag)
        axes[2].plot(c["k"], c["unpoisoned_acc"], "--", color="#55a868")
        bars(axes[2], p, "unpoisoned_acc", "unpoisoned_lo", "unpoisoned_hi", color="#4c72b0", marker=marker, ls=line,
             label="poisoned runs" + tag)
        axes[3].plot(p["k"], p["spread_unpoisoned"], marker=marker, ls=line, color="#4c72b0",
                     label="unpoisoned, poisoned runs" + tag)
        axes[3].plot(p["k"], p["spread_poisoned"], marker=marker, ls=line, color="#c44e52",
                     label="poisoned concepts" + tag)
        axes[3].plot(c["k"], c["spread_unpoisoned"], marker="s", ls="--", color="#55a868", label="unpoisoned, control" + tag)
    axes[0].set_title("Alignment Difficulty of the training set", fontsize=10)
    axes[1].set_ylim(-0.02, 1.02)
    axes[1].set_title("poisoned concepts drawn as their target", fontsize=10)
    axes[2].set_ylim(-0.02, 1.02)
    axes[2].set_title("accuracy on unpoisoned concepts", fontsize=10)
    axes[3].set_title("attention spread (sagekit's measure)", fontsize=10)
    for ax in axes:
        ax.legend(fontsize=7)
        ax.set_xlabel("k (poisoned concepts)")
        ax.grid(alpha=0.3)
        ax.set_xscale("symlog", linthresh=1)
        ax.set_xticks(k)
        ax.set_xticklabels(k)
    fig.tight_layout()
    return fig


def _first_rule(details: dict) -> str:
    """The budget rule whose runs the image panels show: the first one run."""
    return next(iter(details))[0]


@plain_text
def per_k_grids(result, ks: Sequence[int], per_row: int = 16) -> list:
    """Figures for each k of an implosion result (the poisoned run of the first budget
    rule): up to ``per_row`` images of unpoisoned and of poisoned concepts, one per concept
    in turn (green: the judges see the prompt's label)."""
    details = result.details
    rule, figs = _first_rule(details), []
    for k in ks:
        d = details[(rule, k, False)]
        kinds, want, pred = np.array(d["kinds"]), np.array(d["labels"]), np.array(d["pred"])
        for kind in ("unpoisoned", "poisoned"):
            idx = np.flatnonzero(kinds == kind)
            if len(idx) == 0:
                continue
            # interleave concepts: the first image of each, then the second, ...
            concepts = list(dict.fromkeys(want[idx]))
            per = [idx[want[idx] == cpt] for cpt in concepts]
            idx = np.array([p[j] for j in range(max(map(len, per))) for p in per if j < len(p)])[:per_row]
            right = pred[idx] == want[idx]
            figs.append(image_grid(d["images"][idx], ncol=len(idx), marks=right.tolist(),
                                   title=f"k = {k}, {kind} concepts: {int(right.sum())}/{len(idx)} drawn as asked",
                                   cell_inches=0.7, scale=3))
    return figs


@plain_text
def attention_panels(result, ks: Sequence[int]):
    """Per k of an implosion result (the poisoned run of the first budget rule): the first
    unpoisoned (and poisoned) image with its concept tokens' cross-attention map. Returns
    the figure."""
    details = result.details
    fig, axes = plt.subplots(len(ks), 4, figsize=(9, 2.3 * len(ks)), squeeze=False)
    rule = _first_rule(details)
    for row, k in zip(axes, ks):
        d = details[(rule, k, False)]
        index, maps = d["attention"]["index"], d["attention"]["maps"]
        kinds = [d["kinds"][i] for i in index]
        picks = [(kind, kinds.index(kind)) for kind in ("unpoisoned", "poisoned") if kind in kinds]
        for c, (kind, j) in enumerate(picks):
            i = index[j]
            row[2 * c].imshow(d["images"][i].permute(1, 2, 0).numpy())
            row[2 * c].set_title(f"k={k} {d['labels'][i]}", fontsize=8)
            row[2 * c + 1].imshow(maps[j].mean(0).numpy(), cmap="magma")
            row[2 * c + 1].set_title(f"{kind}: attention", fontsize=8)
        for ax in row:
            ax.axis("off")
    fig.tight_layout()
    return fig


@plain_text
def reliability_diagrams(tables: dict[str, pd.DataFrame], ncol: int = 5):
    """One panel per judge: mean confidence against accuracy per confidence bin (dot size:
    images in the bin), the diagonal a perfectly calibrated judge would follow. Returns the figure."""
    nrow = -(-len(tables) // ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(2.3 * ncol, 2.3 * nrow), squeeze=False)
    for ax in axes.flat[len(tables):]:
        ax.set_visible(False)
    for ax, (name, t) in zip(axes.flat, tables.items()):
        ax.plot([0, 1], [0, 1], ls="--", color="grey", lw=1)
        ax.plot(t.confidence, t.accuracy, color="#4c72b0", lw=1)
        ax.scatter(t.confidence, t.accuracy, s=8 + 60 * t.n / max(t.n.max(), 1), color="#4c72b0", zorder=3)
        ax.set_xlim(0, 1.02)
        ax.set_ylim(0, 1.02)
        ax.set_title(display_name(name), fontsize=9)
        ax.tick_params(labelsize=7)
    for ax in axes[:, 0]:
        ax.set_ylabel("accuracy", fontsize=8)
    for ax in axes[-1, :]:
        ax.set_xlabel("confidence", fontsize=8)
    fig.tight_layout()
    return fig


@plain_text
def share_heatmap(table: pd.DataFrame, title: str, label: str = "share"):
    """A rows x columns table of shares in [0, 1] as a heat map (e.g. background x label).
    Returns the figure."""
    import seaborn as sns

    fig, ax = plt.subplots(figsize=(0.28 * table.shape[1] + 2.5, 0.32 * table.shape[0] + 1.8))
    sns.heatmap(table, vmin=0, vmax=float(max(table.values.max(), 1e-9)), cmap="mako_r", ax=ax,
                cbar_kws={"label": label})
    ax.set_xticks(np.arange(table.shape[1]) + 0.5, [str(c) for c in table.columns], rotation=70,
                  ha="right", fontsize=7)
    ax.set_yticks(np.arange(table.shape[0]) + 0.5, [str(r) for r in table.index], rotation=0,
                  fontsize=8)
    ax.set_xlabel("")
    ax.set_ylabel("")
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return fig


@plain_text
def word_probe_figure(result: dict, title: str):
    """The word probe's images of one pair (columns: seeds): A's own image, with B's word
    states put in, with B's end states put in, and the shape word's attention map over A's
    own image (bright: attended)."""
    shown = result["images"]
    maps = shown["shape_word_maps"]
    maps = maps / maps.flatten(1).amax(1).clamp_min(1e-12).view(-1, 1, 1)
    heat = torch.from_numpy(matplotlib.colormaps["inferno"](maps.numpy())[..., :3]).permute(0, 3, 1, 2).float()
    overlay = 0.35 * shown["own"] + 0.65 * heat
    a, b = result["pairs"][0]
    rows = [f"'{a}'", f"words of '{b}'", f"<eos>.. of '{b}'", f"'{a.split()[1]}' attention"]
    images = torch.cat([shown["own"], shown["word_swap"], shown["end_swap"], overlay])
    return image_grid(images, ncol=len(maps), row_labels=rows, title=title, scale=3, cell_inches=0.9)


@plain_text
def failure_vs_frequency(table: pd.DataFrame | None, title: str):
    """Failure rate of each prompt against how many training captions held its words
    (log scale where they span a decade; 0 drawn at 0.5), coloured by its commonest
    failure category. None (no
    training data to look in: a real model) draws nothing."""
    if table is None:
        return None
    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    seen = table.captions.clip(lower=0.5)
    for category, part in table.groupby(table.category.replace("", "none failed")):
        ax.scatter(seen[part.index], part.failure_rate, label=category, s=28, alpha=0.8)
    if seen.max() >= 10 * seen.min():  # a log axis only where the counts span a decade
        ax.set_xscale("log")
        # plain numbers: the module turns mathtext off, and log ticks are written in it
        ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}"))
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.set_xlabel("training captions holding the prompt's words")
    ax.set_ylabel("failure rate on fresh seeds")
    ax.set_ylim(-0.05, 1.05)
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    return fig
