"""The prompt-audit study: how often does a model fail the prompts of a list, and which of
their facts fail?

Every prompt of a list (:mod:`sagekit.audit`: ``.txt``, or ``.jsonl`` with questions or
GenEval's ``include`` entries) is drawn on the same seeds and judged fact by fact, as
TIFA / DSG / GenEval judge: on the toy world by the toy judge trained on each kind of fact
(``judge="toy-facts"``), on real models by a vision-language model answering one question
per stated fact, or one VQAScore question of the whole prompt (``judge="vqa:<model>"``).
An image fails when one of its facts does; its category is the fact that failed. The
judges are checked, not trusted: a held-out verifier reads the facts again (the toy
world's ``toy-clip`` the objects; another VLM every question), people give verdicts on
the failing images, and on the toy world each fact judge's accuracy on fresh scenes is
measured.
"""

from __future__ import annotations

import math
import string
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch

from ..audit import TEMPLATES, TOY_FACTS, AuditPrompt, PromptFileError, audit, facts_for, failing_images, \
    goal_of, read_prompts, verifier_facts
from ..models.facts import Fact
from ..models.vqa import PROMPT_QUESTION
from ..stats import rate
from . import common
from .parameters import Float, Int, ModelName, Param, Parameter, ParameterError, Schema, Text, _fail, short

STUDY = "prompt-audit"
PROMPTS = Path(__file__).resolve().parent.parent / "data" / "prompts"
PROMPT_LISTS = {"toy": PROMPTS / "toy.txt", "objects": PROMPTS / "objects.jsonl"}


def prompt_file(name: str, base: str | Path | None = None) -> Path:
    """A shipped prompt list by name (:data:`PROMPT_LISTS`), or a file; a relative path
    starts at ``base`` (the notebook's folder)."""
    if name in PROMPT_LISTS:
        return PROMPT_LISTS[name]
    path = Path(name).expanduser()
    return path if path.is_absolute() or base is None else Path(base) / path


@dataclass(frozen=True)
class PromptList(Param):
    """A shipped prompt list's name or a ``.txt`` / ``.jsonl`` file that reads."""

    def check(self, name, value, ctx):
        if not isinstance(value, str) or not value:
            raise _fail(name, f"must name a prompt list ({', '.join(PROMPT_LISTS)}) or a .txt / .jsonl file, "
                              f"got {short(value)}")
        try:
            read_prompts(prompt_file(value, ctx.get("__base__")))
        except (PromptFileError, OSError, UnicodeDecodeError) as e:
            raise _fail(name, f"({short(value)}): {e}") from None


@dataclass(frozen=True)
class FactJudge(Param):
    """``"toy-facts"`` or a ``vqa:<model>`` judge whose weights are here."""

    def check(self, name, value, ctx):
        if value == TOY_FACTS:
            return
        if not isinstance(value, str) or not value.startswith("vqa:"):
            raise _fail(name, f"must be {TOY_FACTS!r} (the toy judges, fact by fact) or a 'vqa:<model>' judge, "
                              f"got {short(value)}")
        ModelName("judge").check(name, value, ctx)


@dataclass(frozen=True)
class Template(Param):
    """A question template: text with exactly the named ``{fields}`` it is filled with."""

    fields: tuple[str, ...]
    needed: tuple[str, ...]

    def check(self, name, value, ctx):
        Text(400).check(name, value, ctx)
        try:
            used = {f for _, f, _, _ in string.Formatter().parse(value) if f is not None}
        except ValueError as e:
            raise _fail(name, f"is not a template ({e}), got {short(value)}") from None
        unknown, missing = used - set(self.fields), set(self.needed) - used
        if unknown or missing:
            say = f"may name only {', '.join('{' + f + '}' for f in self.fields)}"
            say += f" and must name {', '.join('{' + f + '}' for f in self.needed)}" if self.needed else ""
            raise _fail(name, f"{say}, got {short(value)}")


def _prompts_fit_the_lm(p: dict) -> None:
    """Every prompt the search may start from, with ``search_words`` more words, fits in the LM."""
    from . import NOTEBOOKS
    from .prompt_failures import prompts_fit_the_lm

    prompts_fit_the_lm(p["lm"], [item.prompt for item in read_prompts(prompt_file(p["prompts"], NOTEBOOKS))],
                       p["search_words"], "search_words", "; set search=0 or shorten it")


@dataclass(frozen=True)
class SearchLM(Param):
    """The search's language model: checked like any LM, unless no search runs (``search=0``)."""

    def check(self, name, value, ctx):
        if ctx.get("search") != 0:
            ModelName("lm").check(name, value, ctx)


def _images(p: dict) -> int:
    from . import NOTEBOOKS

    try:  # the list is checked on its own: a list that does not read is counted as 100 prompts
        n = len(read_prompts(prompt_file(p["prompts"], NOTEBOOKS)))
    except (PromptFileError, OSError, UnicodeDecodeError, TypeError):
        n = 100
    searched = min(p["search"], n) * p["search_words"] * (p["search_iterations"] + 4 + p["seeds_per_prompt"])
    return min(n, p["n_prompts"] or n) * p["seeds_per_prompt"] + searched


def _rules(p: dict) -> None:
    from ..models.registry import judge_label_names, world_of

    if p["search"]:
        _prompts_fit_the_lm(p)
    if p["judge"] == TOY_FACTS and world_of(p["model"]) != "toy":
        raise ParameterError(f"parameter 'judge' is {TOY_FACTS!r}, the toy world's judges, but model "
                             f"{short(p['model'])} is a real model: name a 'vqa:<model>' judge")
    if p["judge"] == TOY_FACTS:
        from ..toy.facts import facts

        from . import NOTEBOOKS

        items = read_prompts(prompt_file(p["prompts"], NOTEBOOKS))[:p["n_prompts"] or None]
        silent = next((item.prompt for item in items if not facts(item.prompt)), None)
        if silent is not None:
            raise ParameterError(f"prompt {short(silent)} of {short(p['prompts'])} states nothing the toy grammar "
                                 f"reads (a shape, its colour, a count, a relation, a position, a place): "
                                 f"'{TOY_FACTS}' could not judge it; audit it with a 'vqa:<model>' judge")
    verifier = p["verifier"]
    if not verifier:
        return
    if p["judge"].startswith("vqa:"):
        if not verifier.startswith("vqa:") or verifier == p["judge"]:
            raise ParameterError(f"parameter 'verifier' must be another 'vqa:<model>' judge than {p['judge']!r} "
                                 f"(it answers the same questions), or '' for none; got {short(verifier)}")
        return
    from ..toy.scenes import LABELS

    common.verifier_shares_no_judge({**p, "judge": "toy-ensemble"})
    known = judge_label_names(verifier) or ()
    if not set(LABELS) <= set(known) or verifier.startswith("vqa:"):
        raise ParameterError(f"parameter 'verifier' ({short(verifier)}) must be a judge of the toy world's labels "
                             f"(such as 'toy-clip') that reads the object facts again, or '' for none")


SCHEMA = Schema({
    "model": common.MODEL,
    "prompts": Parameter(PromptList(), "auto", f'"toy" or "objects" (shipped lists) or a .txt / .jsonl file, relative '
                         f"to the notebook (toy: toy; real: objects)"),
    "judge": Parameter(FactJudge(), "auto", f'"{TOY_FACTS}": each fact by the toy judge trained on it, or '
                       '"vqa:<model>": a yes/no question per fact (toy: toy-facts)'),
    "verifier": Parameter(ModelName("judge", optional=True), "auto",
                          'held-out judge that reads the facts again: another "vqa:<model>", or a toy label judge for '
                          'the objects; "" for none (toy: toy-clip)'),
    "question": Parameter(Template(("prompt",), ("prompt",)), PROMPT_QUESTION,
                          "VQAScore's question of a whole prompt, for prompts given without questions"),
    "object_question": Parameter(Template(("name", "count"), ("name",)), TEMPLATES["object"],
                                 "a GenEval entry's object, asked"),
    "count_question": Parameter(Template(("name", "count"), ("name", "count")), TEMPLATES["count"],
                                "a GenEval entry's count (above one), asked"),
    "colour_question": Parameter(Template(("name", "count", "color"), ("name", "color")), TEMPLATES["colour"],
                                 "a GenEval entry's colour, asked"),
    "n_prompts": Parameter(Int(0, 100_000), 0, "prompts audited, from the top of the list; 0: all", small=6),
    "seeds_per_prompt": Parameter(common.SEEDS, 8, "images per prompt, on the same seeds for every prompt (and "
                                  "fresh seeds per searched prompt)", small=2),
    "n_judge": Parameter(Int(0, 100_000), 500, "toy world: fresh scenes each fact judge is scored on; 0: none",
                         small=100),
    "shown": Parameter(Int(1, 1000), 24, "failing images shown (and offered for people's verdicts)", small=4),
    "search": Parameter(Int(0, 1000), 4, "SAGE's prompt search, started from the n prompts the model fails least, "
                        "until a fact fails; 0: no search", small=1),
    "lm": Parameter(SearchLM(), "auto", "the search's word proposer: a causal LM folder / cached hub id (toy: "
                    "the caption GPT-2)"),
    "search_words": Parameter(Int(1, 32), 2, "words the search appends at most", small=1),
    "search_iterations": Parameter(common.ITERATIONS, 30, "signed-gradient iterations per word", small=2),
    "fail_fraction": Parameter(Float(0, 1, lo_open=True), 0.5, "a searched prompt is found when a fact fails on at "
                               "least this share of its seeds"),
    "steps": common.STEPS,
    "guidance": common.GUIDANCE,
    "batch": Parameter(Int(1, 1024), 16, "images drawn and judged at once"),
    "store_dir": common.store_dir(STUDY, "every failing image, kept as a failure case; people's verdicts"),
    "device": common.DEVICE,
    "dtype": common.DTYPE,
    "seed": common.SEED,
}, _images, _rules, streams={"images": lambda p: p["seeds_per_prompt"], "eval": lambda p: p["seeds_per_prompt"],
                             "train": lambda p: p["search_words"]})


def templates_of(object_question: str, count_question: str, colour_question: str) -> dict[str, str]:
    return {"object": object_question, "count": count_question, "colour": colour_question}


def load_prompts(prompts: str, n_prompts: int = 0, templates: dict[str, str] | None = None,
                 base: str | Path = ".") -> list[AuditPrompt]:
    """The first ``n_prompts`` (0: all) of list ``prompts`` (a name or a file)."""
    items = read_prompts(prompt_file(prompts, base), templates)
    return items[:n_prompts] if n_prompts else items


@dataclass
class Plan:
    """What an audit reads: each prompt's facts, the verifier's reading of them (None
    where it cannot read one) and every judge by spec."""

    items: list[AuditPrompt]
    facts: list[list[Fact]]
    verified: list[list[Fact | None]]
    judges: dict


def plan(items: list[AuditPrompt], judge: str, verifier: str, question: str = PROMPT_QUESTION,
         device: str = "cpu") -> Plan:
    """Each prompt's facts for ``judge`` (and ``verifier``, "" for none), with the judges loaded."""
    from ..models.registry import judge_label_names, load_judge

    facts = [facts_for(item, judge, question) for item in items]
    labels = judge_label_names(verifier) if verifier else None
    verified = [verifier_facts(f, verifier, labels) if verifier else [None] * len(f) for f in facts]
    specs = {f.judge for fs in facts + verified for f in fs if f is not None}
    return Plan(items, facts, verified, {spec: load_judge(spec, device) for spec in sorted(specs)})


def run(gen, p: Plan, seeds: list[int], judge: str, verifier: str, steps: int | None = None,
        guidance: float | None = None, batch: int = 16, store=None, templates: dict | None = None,
        question: str = PROMPT_QUESTION) -> tuple[pd.DataFrame, torch.Tensor, list[str]]:
    """Draw every prompt on ``seeds`` and read its facts. Every failing image is kept in
    ``store`` (a :class:`~sagekit.store.ResultStore`) as a failure case as soon as its
    batch is judged, so a crash loses no found failure. Returns the readings, the images
    (thumbnails) and the store keys of the failing images, in image order."""
    from ..failures import keep as keep_cases

    keys: dict[int, str] = {}

    def keep(rows: pd.DataFrame, drawn: torch.Tensor, first: int) -> None:
        if store is None or rows.empty:
            return
        bad = failing_images(rows)
        cases = [case(gen, p, row, judge, verifier, steps, guidance, templates, question) for row in bad.itertuples()]
        if cases:
            stored = keep_cases(store, cases, drawn[[r - first for r in bad["image"]]])
            keys.update(zip(bad["image"].tolist(), stored))

    readings, images = audit(lambda prompts, s: gen.generate(prompts, s, guidance=guidance, steps=steps,
                                                             batch_size=batch),
                             p.judges, p.items, p.facts, seeds, batch, p.verified, keep)
    return readings, images, [keys[i] for i in sorted(keys)]


def case(gen, p: Plan, row, judge: str, verifier: str, steps, guidance, templates: dict | None, question: str):
    """A failing image as a failure case: its prompt, seed, sampling, the facts it was
    read by and which failed, the judges' names and revisions, the question templates."""
    from ..failures import FailureCase, settings

    facts = p.facts[row.prompt_index]
    revisions = {spec: getattr(j, "revision", "") for spec, j in p.judges.items()}
    goal = goal_of(facts)
    return FailureCase(
        study=STUDY, model=gen.name, prompt=row.prompt, label="; ".join(row.failed), seeds=[int(row.seed)],
        goal=goal, judge=judge, verifier=verifier, fail_fraction=1.0, judge_failure_rate=1.0,
        verifier_failure_rate=math.nan if row.verifier_failed is None else float(row.verifier_failed),
        extra={"failed": list(row.categories), "judge_revisions": revisions,
               "templates": {**(templates or TEMPLATES), "prompt": question}},
        **settings(gen, guidance, steps))


def toy_judge_accuracy(readings: pd.DataFrame, verifier: str, n: int, seed: int = 12345) -> pd.DataFrame:
    """Each toy judge that read a fact here (and the verifier) scored on ``n`` fresh scenes
    of the unbiased world: ``judge, attribute, acc, lo, hi, n`` (Wilson 95%)."""
    from ..toy.evaluate import judge_scores

    scores, _ = judge_scores(n, seed)
    wanted = set(readings["category"]) | {"object"}
    keep = scores["attribute"].isin(wanted) | (scores["judge"] == verifier)
    return scores[keep][["judge", "attribute", "acc", "lo", "hi", "n"]].reset_index(drop=True)


def summarize(readings: pd.DataFrame, by_prompt: pd.DataFrame, by_category: pd.DataFrame,
              agreement: pd.DataFrame, accuracy: pd.DataFrame | None, model: str, judge: str, verifier: str,
              templates: dict[str, str], question: str, people: dict | None, searched: pd.DataFrame | None = None
              ) -> dict:
    """The findings (``sagekit.studies`` schema): the share of failing images, the rates by
    category and prompt, the verifier's agreement, the judges' accuracy and the templates."""
    per_image = readings.groupby("image")["held"].all()
    failing = rate(int((~per_image).sum()), len(per_image))
    agree = agreement[agreement["category"] == "all"].to_dict("records")
    out = {"models": [model], "judge": judge, "verifier": verifier, "images_failing": failing,
           "by_category": by_category.to_dict("records"), "by_prompt": by_prompt.to_dict("records"),
           "verifier_agreement": agreement.to_dict("records"), "templates": {**templates, "prompt": question},
           "judge_accuracy": [] if accuracy is None else accuracy.to_dict("records"), "people": people,
           "headline": {"images failing": failing["rate"], "prompts": len(by_prompt)}}
    if agree:
        out["headline"]["verifier agreement"] = agree[0]["rate"]
    if searched is not None and len(searched):
        out["search"] = search_summary(searched)
        out["headline"]["searched prompts found failing"] = out["search"]["found"]["rate"]
    return out


def _clip(text: str, limit: int = 40) -> str:
    return text if len(text) <= limit else text[:limit - 1] + "…"


def gallery(images: torch.Tensor, readings: pd.DataFrame, n: int) -> tuple[torch.Tensor, list[str], list]:
    """The first ``n`` failing images, a caption each (prompt, seed, the facts that
    failed) and a mark (green: the verifier saw a failure too; red: it did not; none: it
    read no fact of the image); for :func:`sagekit.viz.captioned_grid`."""
    bad = failing_images(readings).head(n)
    captions = [f"{_clip(r.prompt)}\nseed {r.seed}\nfailed: {_clip(', '.join(r.failed))}" for r in bad.itertuples()]
    marks = [None if v is None else bool(v) for v in bad["verifier_failed"]]
    return images[bad["image"].tolist()] if len(bad) else images[:0], captions, marks


def worst_facts(readings: pd.DataFrame) -> pd.DataFrame:
    """Each stated fact of each prompt with how often it failed over the seeds (``k`` of
    ``n``, Wilson 95%), most often first."""
    rows = [{"prompt": prompt, "category": category, "fact": text, **rate(int((~g["held"]).sum()), len(g))}
            for (prompt, category, text), g in readings.groupby(["prompt", "category", "text"], sort=False)]
    out = pd.DataFrame(rows, columns=["prompt", "category", "fact", "k", "n", "rate", "lo", "hi"])
    return out.sort_values(["rate", "k"], ascending=False, kind="stable").reset_index(drop=True)


def questions_table(p: Plan, templates: dict[str, str], question: str) -> pd.DataFrame:
    """What the judges were asked: per category of fact and judge, how many facts and one
    of them as asked (a question, or the labels a toy judge must see); then the question
    templates a GenEval-style list and a bare prompt are asked by."""
    rows: dict[tuple[str, str], dict] = {}
    for fact in (f for fs in p.facts for f in fs):
        row = rows.setdefault((fact.category, fact.judge), {
            "category": fact.category, "judge": fact.judge, "facts": 0,
            "asked as": fact.question or f"{' or '.join(fact.holds[:3])} in its top {fact.top}"})
        row["facts"] += 1
    asked = [{"category": f"VQA template: {k}", "judge": "", "facts": "", "asked as": v}
             for k, v in {**templates, "prompt": question}.items()]
    return pd.DataFrame(list(rows.values()) + asked, columns=["category", "judge", "facts", "asked as"])


def full_images(store, keys: list[str]) -> torch.Tensor:
    """The kept images of ``keys`` at the size they were drawn, ``(N, 3, H, W)``."""
    return torch.stack([store.image(k) for k in keys]) if keys else torch.zeros(0, 3, 1, 1)


def judge_accuracy(readings: pd.DataFrame, judge: str, verifier: str, n: int):
    """:func:`toy_judge_accuracy` where the judges are the toy world's and ``n`` > 0, else
    None (only the toy world has fresh scenes whose facts are known)."""
    return toy_judge_accuracy(readings, verifier, n) if judge == TOY_FACTS and n else None


def accuracy_view(accuracy: pd.DataFrame | None):
    """The accuracy table for a report, or the line that says why there is none."""
    from ..markup import md

    if accuracy is None:
        return md("No accuracy on fresh scenes: only the toy world has scenes whose facts are known (and `n_judge` "
                  "is not 0).")
    return accuracy


def agreement_note(agree: pd.DataFrame, verifier: str):
    """A line on what the verifier read."""
    from ..markup import md

    if not verifier:
        return md("No verifier (`verifier=''`): the judge's readings are not checked by a second judge.")
    both = int(agree.loc[agree["category"] == "all", "n"].sum()) if len(agree) else 0
    return md("The held-out verifier {verifier!c} read **{both}** facts again (on the toy world, the objects); "
              "how often it reads them as the judge does:", verifier=verifier, both=both)


# ---------------------------------------------------------------------------- the search from a prompt
def search_config(p_words: int, iterations: int, eval_seeds: int, fail_fraction: float, steps, guidance,
                  judge: str):
    """SAGE's prompt-search settings for a search from audited prompts: ``eval_seeds`` fresh
    seeds, and on the toy world no word that names an object (a found prompt must not just
    ask for another one)."""
    from .prompt_failures import PromptSearchConfig, banned_words

    return PromptSearchConfig(max_words=p_words, iterations=iterations, eval_seeds=eval_seeds,
                              fail_fraction=fail_fraction, steps=steps, guidance=guidance,
                              banned=banned_words("label set", "toy") if judge == TOY_FACTS else ())


def starts(p: Plan, by_prompt: pd.DataFrame, n: int) -> list[int]:
    """The ``n`` prompts the search starts from: those the model fails least (list order
    among equals), each with at least one fact, each text once."""
    order = by_prompt.sort_values(["rate", "prompt_index"], kind="stable")["prompt_index"].tolist()
    first = {}
    for i in order:  # a prompt listed twice is searched once
        if p.facts[i]:
            first.setdefault(p.items[i].prompt, i)
    return list(first.values())[:n]


def search_from(gen, p: Plan, chosen: list[int], judge: str, verifier: str, lm, lm_tokenizer, cfg, seed: int = 0,
                checkpoints: str | None = None, progress: bool = True):
    """SAGE's word-by-word prompt search started from each ``chosen`` prompt, with the
    prompt-level goal (:class:`~sagekit.search.facts_goal.FactsGoal`: any fact of the
    prompt must fail) and the verifier's reading of the same prompts as its check. Returns
    the search's result, and its table with ``failed_as`` (per searched prompt, how often
    each category of fact failed on the fresh seeds) and ``first_failing`` (the first
    failing image's index among them, 0 when none fails)."""
    from ..search.facts_goal import FactsGoal
    from .prompt_failures import COLUMNS, PromptSearchResult, search_prompts

    if not chosen:
        empty = PromptSearchResult(pd.DataFrame(columns=COLUMNS), torch.zeros(0, cfg.eval_seeds, 3, 1, 1))
        return empty, empty.table.assign(failed_as=pd.Series(dtype=str), first_failing=pd.Series(dtype=int))
    prompts = [p.items[i].prompt for i in chosen]
    goal = FactsGoal(judge, p.judges, prompts, [p.facts[i] for i in chosen])
    check = None
    if verifier:
        check = FactsGoal(verifier, p.judges, prompts, [[f for f in p.verified[i] if f is not None] for i in chosen])
    result = search_prompts(gen, goal, lm, lm_tokenizer, prompts, cfg, seed, template="{label}", progress=progress,
                            verifier=check, checkpoints=checkpoints)
    failed_as, first = [], []
    for row, (_, images) in zip(result.table.itertuples(), result.rows()):
        readings = goal.readings(images, goal.ensemble.label_index(row.label))
        seen = [r.category for reading in readings for r in reading if not r.held]
        failed_as.append(", ".join(f"{c} ×{seen.count(c)}" for c in dict.fromkeys(seen)))
        first.append(next((j for j, reading in enumerate(readings) if not all(r.held for r in reading)), 0))
    return result, result.table.assign(failed_as=failed_as, first_failing=first)


def keep_found(store, gen, p: Plan, chosen: list[int], result, table: pd.DataFrame, cfg, seed: int, judge: str,
               verifier: str, templates: dict | None, question: str) -> list[str]:
    """Each found prompt as a failure case (with its first failing image): its prompt,
    the fresh seeds it failed on, the facts of the prompt it grew from (which ``sagekit
    verify`` reads again), both rates. Returns their store keys."""
    from ..failures import FailureCase, keep, settings
    from .prompt_failures import _eval_seeds

    revisions = {spec: getattr(j, "revision", "") for spec, j in p.judges.items()}
    cases, images = [], []
    for i, row in zip(chosen, table.itertuples()):
        if not row.failure:
            continue
        cases.append(FailureCase(
            study=STUDY, model=gen.name, prompt=row.prompt, label=row.failed_as, seeds=_eval_seeds(cfg, seed),
            goal=goal_of(p.facts[i]), judge=judge, verifier=verifier, fail_fraction=cfg.fail_fraction,
            judge_failure_rate=float(row.failure_rate), verifier_failure_rate=float(row.verifier_failure_rate),
            extra={"searched_from": row.label, "words": row.words, "judge_revisions": revisions,
                   "templates": {**(templates or TEMPLATES), "prompt": question}},
            **settings(gen, cfg.guidance, cfg.steps)))
        images.append(result.images[row.Index, row.first_failing])  # an image in which a fact fails
    return keep(store, cases, torch.stack(images)) if cases else []


def search_gallery(result, table: pd.DataFrame) -> tuple[torch.Tensor, list[str], list]:
    """Per searched prompt its first fresh-seed image, captioned with the start, the
    words the search appended and how often a fact failed; marked green when found."""
    images = result.images[:, 0] if len(table) else torch.zeros(0, 3, 1, 1)
    captions = [f"{_clip(r.label)}\n+ {_clip(r.words or '(none)')}\nfailed {r.failure_rate:.2f}: "
                f"{_clip(r.failed_as or '-')}" for r in table.itertuples()]
    return images, captions, [bool(f) for f in table["failure"]]


def load_lm(name: str, device: str, search: int):
    """The search's word proposer and its tokenizer, or ``(None, None)`` without a search."""
    from ..models.registry import load_caption_lm

    return load_caption_lm(name, device) if search else (None, None)


def search_view(result, table: pd.DataFrame):
    """The searched prompts' images (:func:`search_gallery`) as one picture, or the line
    that says no search ran."""
    from ..markup import md

    if not len(table):
        return md("No search ran (`search=0`).")
    images, captions, marks = search_gallery(result, table)
    return _picture(images, captions, marks,
                    "searched prompts (green: a fact of the start prompt fails on enough fresh seeds)")


def search_summary(table: pd.DataFrame) -> dict:
    """The search's counts: searched, found and verified (rates with Wilson intervals)."""
    n = len(table)
    return {"searched": n, "found": rate(int(table["failure"].sum()) if n else 0, n),
            "verified": rate(int(table["verified"].sum()) if n else 0, n),
            "prompts": table[["label", "prompt", "failure_rate", "verifier_failure_rate", "failure", "verified",
                              "failed_as"]].rename(columns={"label": "start"}).to_dict("records")}


def search_line(table: pd.DataFrame):
    """One line on the search: how many it started from, found and verified."""
    from ..markup import md

    if not len(table):
        return md("No search ran (`search=0`).")
    got = search_summary(table)
    return md("Searched from **{n}** prompts: **{f[k]}** found failing ({f[rate]:.2f}, 95% CI [{f[lo]:.2f}, "
              "{f[hi]:.2f}]); the verifier confirms **{v[k]}**.", n=got["searched"], f=got["found"], v=got["verified"])


def findings_lines(findings: dict):
    """The findings as the report's closing list: each category's rate, the images
    failing, the verifier's agreement and the search's yield, each with its interval."""
    from ..markup import md_text
    from IPython.display import Markdown

    def iv(r: dict) -> str:
        return f"**{r['k']} of {r['n']}** ({r['rate']:.2f}, 95% CI [{r['lo']:.2f}, {r['hi']:.2f}])"

    lines = [md_text("- {category}: facts failed ", category=c["category"]) + iv(c) + "."
             for c in findings["by_category"] if c["n"]]
    lines.append("- Images failing at least one fact: " + iv(findings["images_failing"]) + ".")
    agree = [a for a in findings["verifier_agreement"] if a["category"] == "all"]
    if agree:
        lines.append(md_text("- The verifier {v!c} reads the facts it can read as the judge does: ", v=findings["verifier"])
                     + iv(agree[0]) + ".")
    if "search" in findings:
        s = findings["search"]
        lines.append(f"- Searched from {s['searched']} prompts: found failing " + iv(s["found"]) + ", verified "
                     + iv(s["verified"]) + ".")
    return Markdown("\n".join(lines))


def failures_view(images: torch.Tensor, readings: pd.DataFrame, n: int):
    """The first ``n`` failing images (:func:`gallery`) as one picture, or the line that
    says no image failed."""
    from ..markup import md

    shown, captions, marks = gallery(images, readings, n)
    if not len(shown):
        return md("No image failed a fact.")
    return _picture(shown, captions, marks, "failing images")


def _picture(images, captions, marks, title: str):
    """A captioned grid as a PNG to display (so a cell can show a picture or a line alike)."""
    import io

    import matplotlib.pyplot as plt
    from IPython.display import Image

    from ..viz import captioned_grid

    fig = captioned_grid(images, captions, 4, marks=marks, title=title)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    return Image(buf.getvalue())
