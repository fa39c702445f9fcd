"""The study registry: every study's id, notebook and question.

A study module holds the logic (pure functions returning DataFrames and images); its
notebook holds parameters, calls, plots and prose; ``sagekit run <id>`` turns the
notebook into a report.

Results: a study's run returns its table, a DataFrame with one row per unit of work (a
seed-shift cell, a searched label or latent, a token's held-out prompt × seed, an
implosion point). Where the units have tensors too (images, latents, embeddings), the
run returns a ``…Result`` dataclass whose ``table`` is that DataFrame and whose tensors
sit beside it, row-aligned, on the CPU: ``prompt_failures.PromptSearchResult``,
``latent_search.LatentSearchResult`` / ``SharedLatentResult``,
``adversarial_tokens.TokenResult``, ``implosion.ImplosionResult`` (its ``details`` keyed
like its rows). The seed-shift sweep's images live in the results store, so its run
returns the table itself. Every further table is a DataFrame; plots come from
``sagekit.viz`` as figures. (The toy-world report is not a failure study: its
``toy.evaluate.generation_results`` keeps each generator's images, targets and
predictions by (model, mode), read by ``results_table`` and ``viz.label_grids``.)

Findings: a study module's ``summarize(...)`` returns the dict its notebook hands to
``report.save_findings``, in one schema for all studies:

  models     the generator names the study ran on (list of str)
  headline   a few short numbers for the reports' index page ({name: number})
  <rate>     every rate as {"k": hits, "n": trials, "rate": k / n, "lo", "hi"}: its 95%
             Wilson interval (``sagekit.stats.wilson``)
  ...        the study's own fields (tables as lists of records)
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path

NOTEBOOKS = Path(__file__).resolve().parent.parent.parent / "notebooks"


@dataclass(frozen=True)
class Study:
    id: str
    notebook: str
    question: str
    # Ready: default parameters verified on the toy world (and written by `make demo`).
    # The others run and are tested with small parameters but are still being tuned.
    ready: bool = False
    folder: Path = NOTEBOOKS  # where the notebook lives
    module: str = ""  # the module whose SCHEMA declares the parameters (default: sagekit.studies.<id>)

    @property
    def path(self) -> Path:
        return Path(self.folder) / self.notebook

    @property
    def schema(self):
        """The study's one declaration of its parameters (``parameters.Schema``)."""
        return importlib.import_module(self.module or f"{__name__}.{self.id.replace('-', '_')}").SCHEMA


STUDIES = {s.id: s for s in sorted([
    Study("toy-world", "00_toy_world.ipynb", "How good is the toy world that the other studies run on?", ready=True),
    Study("prompt-failures", "01_prompt_failures.ipynb",
          "Which natural prompts does the model fail to depict, across seeds?", ready=True),
    Study("distorted-latents", "02_distorted_latents.ipynb",
          "Are there non-outlier initial latents that give distorted images for any prompt?", ready=True),
    Study("unrelated-latents", "03_unrelated_latents.ipynb",
          "Are there non-outlier latents that give natural images unrelated to the prompt?", ready=True),
    Study("seed-shifts", "05_seed_shifts.ipynb",
          "How do shifts of the initial noise change accuracy and CLIP score, per model?", ready=True),
    Study("adversarial-tokens", "04_adversarial_tokens.ipynb",
          "Can one appended token embedding make the model draw a chosen object, for any prompt?", ready=True),
    Study("implosion", "06_implosion.ipynb",
          "How does poisoning k concepts raise Alignment Difficulty and break unpoisoned concepts?", ready=True),
    Study("prompt-audit", "07_prompt_audit.ipynb",
          "How often does the model fail the prompts of a list, and which of their facts fail?", ready=True),
], key=lambda s: s.notebook)}


def get_study(study_id: str) -> Study:
    if study_id not in STUDIES:
        raise KeyError(f"unknown study {study_id!r}; known: {', '.join(STUDIES)}")
    study = STUDIES[study_id]
    if not study.path.is_file():
        raise FileNotFoundError(f"notebook {study.path} is missing (sagekit runs from a clone of the repository)")
    return study
