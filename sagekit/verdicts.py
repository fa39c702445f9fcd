"""People's verdicts on found failures (SAGE checked its failures with a human study).

A person looks at each found failure in a notebook's panel (:func:`panel`) and says
whether the *model* failed (the image does not show the prompt), the *judges* erred
(it does), or is unsure. The verdict is a tag ``verdict:<choice>`` on the failure's
cell in the results store, so it outlives the kernel and a rerun of the report shows
it; :func:`agreement` then says how often people, the verifier and the search's
ensemble agree. :func:`tagger` lets them tag causes from a taxonomy beside it.
"""

from __future__ import annotations

from typing import Sequence

import pandas as pd
import torch

from .stats import rate

VERDICTS = ("model failed", "judges erred", "unsure")
PREFIX = "verdict:"


def record(store, key: str, verdict: str) -> None:
    """Set the verdict of a stored failure (a former verdict is replaced; other tags stay)."""
    if verdict not in VERDICTS:
        raise ValueError(f"unknown verdict {verdict!r}; one of {', '.join(VERDICTS)}")
    others = [t for t in _tags(store, key) if not t.startswith(PREFIX)]
    store.tag(key, others + [PREFIX + verdict], replace=True)


def _tags(store, key: str) -> list[str]:
    return store.tags(key)


def tag_causes(store, key: str, causes: Sequence[str]) -> None:
    """Set the causes a person tagged a stored failure with (the taxonomy tagger's save);
    its verdict stays."""
    kept = [t for t in _tags(store, key) if t.startswith(PREFIX)]
    store.tag(key, kept + [c for c in causes if not c.startswith(PREFIX)], replace=True)


def verdict_of(tags: Sequence[str]) -> str | None:
    """The verdict among a cell's tags, or None."""
    return next((t[len(PREFIX):] for t in tags if t.startswith(PREFIX)), None)


def agreement(frame: pd.DataFrame) -> dict | None:
    """How often people agree with the machines, over the stored failures (``frame``: a
    results-store frame with ``tags`` and a boolean ``verified``) that have a verdict
    other than "unsure". Every stored failure was found by the ensemble, so people agree
    with the ensemble when they say the model failed; with the verifier when their
    verdict matches its ``verified`` (over the cases the verifier could read). Rates with
    counts and 95% intervals; None when no one has given a verdict."""
    if frame.empty:
        return None
    said = frame.assign(verdict=[verdict_of(t) for t in frame["tags"]])
    said = said[said["verdict"].isin(VERDICTS[:2])]
    if said.empty:
        return None
    model_failed = said["verdict"] == VERDICTS[0]
    verified = said["verified"].astype(bool)
    # a case the verifier could not read (a rate of NaN: a prompt audit's fact no verifier reads) says nothing
    said_by_it = said["verifier_failure_rate"].notna() if "verifier_failure_rate" in said else verified | True
    n = int(said_by_it.sum())
    return {"judged": len(said), "people_and_ensemble": rate(model_failed.sum(), len(said)),
            "people_and_verifier": rate((model_failed == verified)[said_by_it].sum(), n),
            "verifier_and_ensemble": rate(verified[said_by_it].sum(), n)}


def agreement_table(found: dict | None):
    """:func:`agreement` as a table for a report; without verdicts, a line that says how
    to give them."""
    if found is None:
        from .markup import md

        return md("No person has given a verdict yet: choose one per image above and run the report again to see "
                  "how often people and judges agree.")
    rows = [
        {"who agrees": name, "agree": v["k"], "of": v["n"], "rate": v["rate"], "95% CI": f"[{v['lo']:.2f}, {v['hi']:.2f}]"}
        for name, v in (("people and the search's ensemble", found["people_and_ensemble"]),
                        ("people and the held-out verifier", found["people_and_verifier"]),
                        ("the verifier and the ensemble", found["verifier_and_ensemble"]))]
    return pd.DataFrame(rows, columns=["who agrees", "agree", "of", "rate", "95% CI"])


def panel(store, keys: Sequence[str], prompts: Sequence[str], images: torch.Tensor):
    """An ipywidgets panel: per found failure its image ``(3, H, W)`` in [0, 1], its
    prompt, and the three verdicts; choosing one records it in ``store`` at once. None
    where ipywidgets is missing (a static report shows the agreement table instead); a
    line saying so when there is nothing to judge."""
    if not len(keys):
        from .markup import md

        return md("No failure to judge.")
    try:
        import ipywidgets as w
    except ImportError:
        return None
    from .viz import png_bytes

    frame = store.frame()
    stored = dict(zip(frame["key"], frame["tags"])) if len(frame) else {}
    rows = []
    for key, prompt, image in zip(keys, prompts, images):
        choice = w.ToggleButtons(options=list(VERDICTS), value=verdict_of(stored.get(key, [])),
                                 layout=w.Layout(width="auto"))
        choice.observe(lambda change, key=key: change["new"] and record(store, key, change["new"]), names="value")
        rows.append(w.HBox([w.Image(value=png_bytes(image), format="png"),
                            w.Label(prompt, layout=w.Layout(width="320px")), choice]))
    return w.VBox([w.HTML("<b>Does each image show its prompt?</b> Your verdict is saved in the results store."),
                   *rows])


def tagger(store, keys: Sequence[str], prompts: Sequence[str], taxonomy: Sequence[str]):
    """An ipywidgets box to tag each prompt with causes from ``taxonomy``; "save tags"
    writes them to the results store (a verdict given in the panel stays). None where
    ipywidgets is missing."""
    try:
        import ipywidgets as w
    except ImportError:
        return None
    rows = []
    for key, prompt in zip(keys, prompts):
        box = w.SelectMultiple(options=list(taxonomy), rows=len(taxonomy), layout=w.Layout(width="260px"))
        button = w.Button(description="save tags")
        button.on_click(lambda _, key=key, box=box: tag_causes(store, key, box.value))
        rows.append(w.HBox([w.Label(prompt, layout=w.Layout(width="380px")), box, button]))
    return w.VBox(rows)
