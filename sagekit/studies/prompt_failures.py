"""SAGE's prompt search (paper 000, finding 1): natural prompts the model fails to depict.

From "A photo of a {label}", a causal language model proposes its top-k next words (the
label's own words banned). Two continuous tokens are appended in the text encoder's
token-embedding space, an adversarial [x] and a look-ahead [y] standing for what may
follow, and optimised jointly against the robust loss by the engine's signed descent
(steps and clamp in units of the embedding table's spread, ``TokenRows``). [x] is then
projected onto the candidates with gradient guidance: the first-order loss change of
swapping [x] for each candidate word, g_x . (e_w - x), ranks them, and the best few are
re-scored by a forward pass with the word in place and [y] after it. The chosen word is
appended, [y] becomes the next word's starting [x], and the loop repeats for up to
``max_words`` words. PEZ-style straight-through projection (the forward pass sees the
nearest candidate every ``project_every`` iterations) is an option.

A prompt is *found* when it fails on at least ``fail_fraction`` of fresh seeds, and
*verified* when judges the search never consulted agree on the same images.

Gradients are exact by default, through a shorter sampler (``search_steps``): what a
word changes (the object, its colour) is decided in the early sampling steps, which
residual gradients (through the last k steps only) never reach. Failures are always
tested with the full sampler (``steps``).
"""

from __future__ import annotations

import itertools
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
import torch
from ..progress import bar as progress_bar

from ..models.generator import Generator
from ..models.judges import Ensemble
from ..search import Checkpoint, RobustGoal, SearchState, TokenRows, perplexity, signed_descent
from ..search.loop import weights_in_key
from ..seeds import seeds
from ..stats import rate
from . import common
from .parameters import (Choice, Float, Int, ListOf, ModelName, Parameter, ParameterError, Schema, Text,
                         check_fields, short)

STUDY = "prompt-failures"
X_TOKEN, Y_TOKEN = "<sage-x>", "<sage-y>"
PROMPT = "A photo of a {label}"  # where every search starts
# the search's table, one row per label (PromptSearchResult)
COLUMNS = ["label", "prompt", "words", "base_failure_rate", "failure_rate", "verifier_failure_rate", "failure",
           "verified", "perplexity"]
# the natural baseline's table, one row per continuation (continuation_baseline)
BASELINE_COLUMNS = ["label", "prompt", "words", "lm_probability", "failure_rate", "failure", "perplexity"]


D = {  # the search's own parameters; PromptSearchConfig's fields take their defaults and rules from here
    "max_words": Parameter(Int(1, 32), 2, "words appended at most",
                           small=1),
    "top_k": Parameter(Int(1, 1000), 8, "LM candidates per word", small=3),
    "iterations": Parameter(common.ITERATIONS, 100, "signed-gradient iterations per word (SAGE: 100)", small=2),
    "lr": Parameter(common.LR, 0.05, "signed step, in units of the token table's spread (SAGE: 0.05)"),
    "bound": Parameter(Float(0, 100, lo_open=True), 2.5, "clamp of [x] and [y] around the mean word, in spreads "
                       "(SAGE: 2.5)"),
    "rescore": Parameter(Int(1, 1000), 3, "candidates re-scored by a forward pass after the first-order ranking"),
    "project_every": Parameter(Int(0, 100_000), 0, "PEZ: the forward pass sees [x]'s nearest candidate every n "
                               "iterations (0: never)"),
    "train_seeds": Parameter(common.SEEDS, 1, "seeds the token embeddings are optimised on", small=1),
    "eval_seeds": Parameter(common.SEEDS, 8, "M fresh seeds (SAGE-style failure test)", small=2),
    "fail_fraction": Parameter(Float(0, 1, lo_open=True), 0.8, "share of the fresh seeds that must fail"),
    "mode": Parameter(common.MODE, "exact", 'gradients while optimising: "exact" or "residual" (last k steps)'),
    "k": common.helped(common.K, "residual: steps with gradient"),
    "search_steps": Parameter(Int(1, 1000, none="steps"), 4, "sampling steps while optimising (the failure test "
                              "uses `steps`)", small=3),
    "guidance": common.GUIDANCE,
    "steps": common.STEPS,
}


@dataclass
class PromptSearchConfig:
    """The search's settings; defaults and rules are the study's declaration (:data:`D`).
    ``lr`` and ``bound`` are in units of the token table's spread (``TokenRows``)."""

    lr: float = D["lr"].default
    iterations: int = D["iterations"].default
    bound: float = D["bound"].default
    max_words: int = D["max_words"].default
    top_k: int = D["top_k"].default
    rescore: int = D["rescore"].default
    project_every: int = D["project_every"].default
    train_seeds: int = D["train_seeds"].default
    eval_seeds: int = D["eval_seeds"].default
    fail_fraction: float = D["fail_fraction"].default
    mode: str = D["mode"].default
    k: int = D["k"].default
    guidance: float | None = D["guidance"].default
    steps: int | None = D["steps"].default              # sampling steps of the failure test
    search_steps: int | None = D["search_steps"].default  # sampling steps while optimising (None: ``steps``)
    banned: tuple[str, ...] = ()    # words never candidates, for any label (besides the label's own)

    def __post_init__(self):
        self.banned = tuple(w.lower() for w in self.banned)
        check_fields(D, asdict(self))


@dataclass
class PromptSearchResult:
    """What the search returns. ``table``: one row per searched label (label, prompt, words,
    base_failure_rate, failure_rate, verifier_failure_rate, failure, verified, perplexity);
    ``images``: each final prompt's images on the fresh seeds, ``(L, M, 3, H, W)`` in
    [0, 1] on the CPU, row-aligned with ``table``."""

    table: pd.DataFrame
    images: torch.Tensor

    def rows(self, failing_only: bool = False):
        """``(row, images (M, 3, H, W))`` per searched label (only the failures with ``failing_only``)."""
        return [(r, self.images[i]) for i, r in enumerate(self.table.to_dict("records"))
                if r["failure"] or not failing_only]


def merge(parts: list[PromptSearchResult]) -> PromptSearchResult:
    """The results of searches of disjoint labels (tasks of :mod:`sagekit.spread`) as one, in this order."""
    return common.concat(parts, ("images",))


def prompts_fit_the_lm(lm: str, prompts: list[str], words: int, words_name: str, remedy: str = "") -> None:
    """Each of ``prompts`` and ``words`` more words fit in the positions of LM ``lm`` (the
    toy caption LM reads 24): found before a kernel starts, not by an IndexError once the
    models are loaded. ParameterError names the first prompt too long."""
    import json

    from transformers import AutoTokenizer

    from ..models.registry import resolve_caption_lm

    path = resolve_caption_lm(lm)
    config = json.loads((path / "config.json").read_text())
    positions = config.get("n_positions") or config.get("max_position_embeddings")
    if not positions:
        return
    tok = AutoTokenizer.from_pretrained(path, local_files_only=True)
    for prompt in prompts:
        need = len(tok(prompt, add_special_tokens=False).input_ids) + 1 + words
        if need > positions:
            raise ParameterError(f"prompt {short(prompt)}: it and {words_name} ({words}) more words need {need} "
                                 f"positions, and the LM {short(lm)} reads {positions}{remedy}")


def _prompts_fit_the_lm(p: dict) -> None:
    from ..labels import pick

    prompts_fit_the_lm(p["lm"], [PROMPT.format(label=l) for l in pick(p["label_set"], p["n_labels"])],
                       p["max_words"], "max_words")


def _rules(p: dict) -> None:
    _prompts_fit_the_lm(p)
    common.judged_and_verified(p)


def _images(p: dict) -> int:
    return common.n_labels(p) * (p["max_words"] * (p["train_seeds"] * (p["iterations"] + 1 + p["rescore"])
                                                   + p["eval_seeds"])
                                 + p["baseline_prompts"] * p["eval_seeds"])


SCHEMA = Schema({
    "model": common.MODEL,
    "judge": common.JUDGE,
    "verifier": common.VERIFIER,
    "clip": common.helped(common.CLIP, "CLIP score of the found prompts (toy: toy-clip)"),
    "lm": Parameter(ModelName("lm"), "auto", "the LM that proposes words: a causal LM folder / cached hub id "
                    "(toy: the caption GPT-2)"),
    "label_set": common.LABEL_SET,
    "n_labels": common.helped(common.N_LABELS, "labels searched, evenly spaced over the label set", small=2),
    **{name: D[name] for name in ("max_words", "top_k")},
    "ban": Parameter(Choice(("label", "label set")), "label set",
                     'words never proposed: "label" (its own words) or "label set" (any word naming a label)'),
    **{name: D[name] for name in ("iterations", "lr", "bound", "rescore", "project_every", "train_seeds",
                                  "eval_seeds", "fail_fraction", "mode", "k", "search_steps", "guidance", "steps")},
    "baseline_prompts": Parameter(Int(1, 1000), 3, "natural baseline: the LM's likeliest continuations tested per "
                                  "label", small=1),
    "baseline_min_prob": Parameter(common.PROB, 0.05, "... each of whose words the LM gives at least this "
                                   "probability"),
    "taxonomy": Parameter(ListOf(Text(80), 1, 50, unique=True), common.TAXONOMY, "the tags a person may give a "
                          "found prompt"),
    "store_dir": common.store_dir(STUDY, "where prompts, their tags and the search checkpoints are kept"),
    "device": common.DEVICE,
    "dtype": common.DTYPE,
    **common.SEARCHES,
    "seed": common.SEED,
}, _images, _rules,
    streams={"train": lambda p: p["max_words"] * p["train_seeds"], "eval": lambda p: p["eval_seeds"]})


def _next_words(lm, tokenizer, prompt: str):
    """The LM's next-word distribution after ``prompt``, most likely first, yielded lazily
    (a caller that stops early never decodes the rest of a 50k-token vocabulary):
    ``(word, probability)`` pairs; the end of text is ``("", p)``, other special tokens
    and non-alphabetic pieces are left out."""
    ids = tokenizer(prompt, add_special_tokens=False).input_ids
    if tokenizer.bos_token_id is not None:
        ids = [tokenizer.bos_token_id] + ids
    with torch.no_grad():
        probs = lm(torch.tensor([ids], device=lm.device)).logits[0, -1].float().softmax(-1).cpu()
    special = set(tokenizer.all_special_ids)
    seen = set()
    for i in probs.argsort(descending=True).tolist():
        if i == tokenizer.eos_token_id:
            word = ""
        elif i in special:
            continue
        else:
            word = tokenizer.decode([i]).strip()
            if not (word and word.isalpha()):
                continue
        if word not in seen:
            seen.add(word)
            yield word, float(probs[i])


def lm_candidates(lm, tokenizer, prompt: str, top_k: int, banned: set[str] = frozenset()) -> list[str]:
    """The LM's ``top_k`` most likely next words after ``prompt`` (special tokens and the
    ``banned`` words, compared in lower case, excluded)."""
    words = (w for w, _ in _next_words(lm, tokenizer, prompt) if w and w.lower() not in banned)
    return list(itertools.islice(words, top_k))


def likely_continuations(lm, tokenizer, prompt: str, max_words: int, n: int,
                         min_prob: float = 0.05) -> list[tuple[str, float]]:
    """The LM's ``n`` most probable continuations of ``prompt``, 1 to ``max_words`` words,
    each word at least ``min_prob`` likely: what the LM itself would write, the natural
    baseline the gradient-guided search is compared with. ``(words, probability)`` pairs;
    a continuation shorter than ``max_words`` counts only where the LM would end the text
    there. Beam search keeps ``4 n`` partial continuations per length."""
    beams: list[tuple[list[str], float]] = [([], 1.0)]
    done: list[tuple[list[str], float]] = []
    for _ in range(max_words):
        grown = []
        for words, p in beams:
            for word, q in _next_words(lm, tokenizer, " ".join([prompt, *words])):
                if q < min_prob:
                    break  # most likely first
                if word:
                    grown.append((words + [word], p * q))
                elif words:
                    done.append((words, p * q))
        beams = sorted(grown, key=lambda b: -b[1])[: 4 * n]
    done += beams
    return [(" ".join(w), p) for w, p in sorted(done, key=lambda b: -b[1])[:n]]


@torch.no_grad()
def generate_for(gen: Generator, prompts: list[str], seeds: list[int], cfg) -> torch.Tensor:
    """Every prompt with every seed: images ``(P, len(seeds), 3, H, W)`` in [0, 1] on the CPU."""
    images = gen.generate([p for p in prompts for _ in seeds], list(seeds) * len(prompts), cfg.guidance, cfg.steps)
    return images.view(len(prompts), len(seeds), *images.shape[1:])


@torch.no_grad()
def found_rates(goal: RobustGoal, images: torch.Tensor, targets: list[int]) -> list[float]:
    """Per prompt, the share of its images ``(P, M, 3, H, W)`` that meet ``goal`` for its
    target (an index into the goal's own labels)."""
    p, m = images.shape[:2]
    device = goal.ensemble.weights.device
    hit = goal.found(images.flatten(0, 1).to(device), torch.tensor(targets).repeat_interleave(m))
    return hit.float().view(p, m).mean(1).tolist()


def _train_seeds(cfg: PromptSearchConfig, seed: int, word: int) -> list[int]:
    """The seeds word ``word`` (0, 1, ...) is optimised on: its own block of the train stream."""
    return seeds("train", seed, cfg.train_seeds, start=word * cfg.train_seeds)


def _eval_seeds(cfg: PromptSearchConfig, seed: int) -> list[int]:
    """The fresh seeds of the failure test: never the seeds the search optimised on."""
    return seeds("eval", seed, cfg.eval_seeds)


class _TokenObjective:
    """The robust loss of prompts ``(P,)`` that end in [x] [y], each rendered with every
    one of ``seeds``: per prompt, the mean over its seeds ``(P,)``."""

    def __init__(self, gen: Generator, goal: RobustGoal, prompts: list[str], target: torch.Tensor,
                 seeds: list[int], cfg: PromptSearchConfig, snap: list[torch.Tensor] | None = None):
        self.gen, self.goal, self.prompts, self.target, self.cfg, self.snap = gen, goal, prompts, target, cfg, snap
        self.n = len(seeds)
        self.z = gen.initial_noise(seeds).to(gen.device)
        self.steps = cfg.search_steps or gen.steps_of(cfg.steps)
        self.guidance = gen.guidance_of(cfg.guidance)

    def _snapped(self, x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        """[x] as the forward pass sees it under PEZ: its nearest candidate, with the
        gradient passed straight through to the continuous row."""
        near = torch.stack([self.snap[i][(self.snap[i] - r.detach().cpu()).norm(dim=-1).argmin()]
                            for i, r in zip(index.tolist(), x)]).to(x)
        return x + (near - x).detach()

    def __call__(self, rows, index, it, grad):
        x, y = rows[X_TOKEN], rows[Y_TOKEN]
        if self.snap is not None and self.cfg.project_every and it % self.cfg.project_every == 0:
            x = self._snapped(x, index)
        prompts = [self.prompts[i] for i in index.tolist() for _ in range(self.n)]
        emb = self.gen.embed_prompts(prompts, {X_TOKEN: x.repeat_interleave(self.n, 0),
                                               Y_TOKEN: y.repeat_interleave(self.n, 0)})
        z = self.z.repeat(len(index), 1, 1, 1)
        if grad:
            lat = self.gen.denoise_differentiable(z, emb, mode=self.cfg.mode, k=min(self.cfg.k, self.steps),
                                                  guidance=self.guidance, steps=self.steps)
        else:
            lat = self.gen.denoise(z, emb, self.guidance, self.steps)
        loss = self.goal.loss(self.gen.decode(lat), self.target[index].repeat_interleave(self.n))
        return loss.view(len(index), self.n).mean(1), None


@torch.no_grad()
def choose_words(gen: Generator, objective: _TokenObjective, x: torch.Tensor, grad_x: torch.Tensor,
                 y: torch.Tensor, candidates: list[list[str]], rescore: int,
                 tables: list[torch.Tensor] | None = None) -> list[str]:
    """The gradient-guided projection of [x] ``(P, E)`` onto each prompt's candidate
    words: rank them by the first-order loss change g_x . (e_w - x), re-score the best
    ``rescore`` by a forward pass of "{prompt} {word} [y]" on the search's seeds, keep
    the lowest loss. ``tables``: the candidates' embeddings ``(W, E)`` per prompt, when
    the caller has them."""
    shortlist = []
    for i, words in enumerate(candidates):
        table = gen.word_embeddings(words) if tables is None else tables[i]
        change = (table - x[i].cpu()) @ grad_x[i].cpu()
        shortlist.append([words[j] for j in change.argsort()[:rescore].tolist()])
    pairs = [(i, w) for i, ws in enumerate(shortlist) for w in ws]
    prompts = [f"{objective.prompts[i].rsplit(X_TOKEN, 1)[0]}{w} {Y_TOKEN}" for i, w in pairs]
    n = objective.n
    emb = gen.embed_prompts([p for p in prompts for _ in range(n)],
                            {Y_TOKEN: y[[i for i, _ in pairs]].repeat_interleave(n, 0)})
    lat = gen.denoise(objective.z.repeat(len(pairs), 1, 1, 1), emb, objective.guidance, objective.steps)
    target = objective.target[[i for i, _ in pairs]].repeat_interleave(n)
    loss = objective.goal.loss(gen.decode(lat), target).view(len(pairs), n).mean(1).cpu()
    best: dict[int, tuple[float, str]] = {}
    for (i, w), l in zip(pairs, loss.tolist()):
        if i not in best or l < best[i][0]:
            best[i] = (l, w)
    return [best[i][1] for i in range(len(candidates))]


def label_words(label: str) -> set[str]:
    """The words of a label, lower case: never candidates for its own prompt (a prompt
    that names the object again, or names another, tests nothing)."""
    return {w.lower() for w in label.replace("-", " ").replace("_", " ").split()}


BANS = ("label", "label set")


def banned_words(ban: str, label_set: str) -> tuple[str, ...]:
    """Words no prompt may gain: ``"label"``: none beyond each label's own (SAGE's rule);
    ``"label set"``: every word that names any label of the set (for the toy world with
    its synonyms and plurals), so that a found prompt never just names another object."""
    from ..labels import naming_words

    if ban not in BANS:
        raise ValueError(f"ban must be one of {BANS}, got {ban!r}")
    return tuple(sorted(naming_words(label_set))) if ban == "label set" else ()


def search_prompts(gen: Generator, goal: RobustGoal, lm, lm_tokenizer, labels: list[str], cfg: PromptSearchConfig,
                   seed: int = 0, template: str = PROMPT, progress: bool = True,
                   verifier: Ensemble | None = None, checkpoints: str | None = None) -> PromptSearchResult:
    """SAGE's word-by-word search (see the module docstring), all ``labels`` at once.

    Per label (:class:`PromptSearchResult`): the final prompt, the appended words, the failure rate of the starting and
    the final prompt over ``cfg.eval_seeds`` fresh seeds under the search's judges and
    under ``verifier`` (default: the same judges), ``failure`` (found: rate >= the bar
    with at least one word appended; a starting prompt that already fails is the model's
    own failure, not a found one), ``verified`` (the verifier's rate meets the bar too),
    LM perplexity, and the evaluation images ``(M, 3, H, W)``. With ``checkpoints`` (a
    folder) a killed search resumes from the last finished iteration."""
    gen.add_tokens([X_TOKEN, Y_TOKEN])
    mean, std = gen.token_statistics(exclude=(X_TOKEN, Y_TOKEN))
    token = TokenRows(mean, std, cfg.lr, cfg.bound)
    check = goal if verifier is None else goal.judged_by(verifier)
    targets = [goal.ensemble.label_index(l) for l in labels]
    checked = [check.ensemble.label_index(l) for l in labels]  # the verifier's own label order
    eval_seeds = _eval_seeds(cfg, seed)
    prompts = [template.format(label=l) for l in labels]
    images = generate_for(gen, prompts, eval_seeds, cfg)
    rates, vrates = found_rates(goal, images, targets), found_rates(check, images, checked)
    out = [{"label": l, "prompt": p, "words": [], "base_failure_rate": r, "failure_rate": r,
            "verifier_failure_rate": v, "images": im} for l, p, r, v, im in zip(labels, prompts, rates, vrates, images)]
    carried: dict[int, torch.Tensor] = {}  # a label's optimised [y]: where its next [x] starts
    bar = progress_bar(range(cfg.max_words), desc="prompt search (words)", progress=progress)
    for w in bar:
        active = [i for i, r in enumerate(out) if not (r["words"] and r["failure_rate"] >= cfg.fail_fraction)]
        cands = {i: lm_candidates(lm, lm_tokenizer, out[i]["prompt"], cfg.top_k,
                                  label_words(labels[i]) | set(cfg.banned))
                 for i in active}
        active = [i for i in active if cands[i]]
        if not active:
            break
        tables = [gen.word_embeddings(cands[i]) for i in active]
        centre = torch.stack([t.mean(0) for t in tables])
        x0 = torch.stack([carried.get(i, centre[j]) for j, i in enumerate(active)])
        train_seeds = _train_seeds(cfg, seed, w)
        objective = _TokenObjective(gen, goal, [f"{out[i]['prompt']} {X_TOKEN} {Y_TOKEN}" for i in active],
                                    torch.tensor([targets[i] for i in active]), train_seeds, cfg, snap=tables)
        state = SearchState({X_TOKEN: token.project(x0).to(gen.device), Y_TOKEN: centre.clone().to(gen.device)})
        state = signed_descent(objective, {X_TOKEN: token, Y_TOKEN: token}, state, cfg.iterations,
                               stop_when_found=False, progress=progress, desc=f"word {w + 1}: [x] [y]",
                               checkpoint=Checkpoint.under(checkpoints, {
                                   "search": "prompt", **weights_in_key(gen, goal, lm=lm),
                                   "prompts": objective.prompts, "labels": [labels[i] for i in active],
                                   "seeds": train_seeds, "cfg": asdict(cfg)}))
        x = state.values[X_TOKEN].detach().requires_grad_(True)
        loss, _ = objective({X_TOKEN: x, Y_TOKEN: state.values[Y_TOKEN]}, torch.arange(len(active)), -1, True)
        (grad_x,) = torch.autograd.grad(loss.sum(), [x])
        words = choose_words(gen, objective, x.detach(), grad_x, state.values[Y_TOKEN], [cands[i] for i in active],
                             cfg.rescore, tables)
        for j, i in enumerate(active):
            out[i]["prompt"], out[i]["words"] = f"{out[i]['prompt']} {words[j]}", out[i]["words"] + [words[j]]
            carried[i] = state.values[Y_TOKEN][j].detach().cpu()
        images = generate_for(gen, [out[i]["prompt"] for i in active], eval_seeds, cfg)
        rates = found_rates(goal, images, [targets[i] for i in active])
        vrates = found_rates(check, images, [checked[i] for i in active])
        for j, i in enumerate(active):
            out[i].update(failure_rate=rates[j], verifier_failure_rate=vrates[j], images=images[j])
        bar.set_postfix(failing=sum(bool(r["words"]) and r["failure_rate"] >= cfg.fail_fraction for r in out))
    for r in out:
        r["failure"] = bool(r["words"]) and r["failure_rate"] >= cfg.fail_fraction
        r["verified"] = r["failure"] and r["verifier_failure_rate"] >= cfg.fail_fraction
        r["words"] = " ".join(r["words"])
        r["perplexity"] = perplexity(lm, lm_tokenizer, r["prompt"])
    images = torch.stack([r.pop("images") for r in out]).float().cpu()
    return PromptSearchResult(pd.DataFrame(out, columns=COLUMNS), images)


def _search_task(models, labels: list[str], cfg: PromptSearchConfig, seed: int, template: str,
                 checkpoints: str | None, progress: bool) -> PromptSearchResult:
    """One task of :func:`search` (:mod:`sagekit.spread`): :func:`search_prompts` for ``labels``."""
    return search_prompts(models.gen, models.goal, models.lm, models.tokenizer, labels, cfg, seed, template, progress,
                          models.verifier, checkpoints)


def search(gen: Generator, goal: RobustGoal, lm, lm_tokenizer, labels: list[str], cfg: PromptSearchConfig,
           seed: int = 0, template: str = PROMPT, progress: bool = True,
           verifier: Ensemble | None = None, checkpoints: str | None = None, executor=None,
           per_task: int = 0) -> PromptSearchResult:
    """:func:`search_prompts` for every label, here in one batch or spread over ``executor``
    (:mod:`sagekit.executors`): on Ray each task of ``per_task`` labels (default one) is a
    search on a worker that loads the models by name; the rows come back in ``labels``' order."""
    from ..spread import Models, gather

    parts = gather(f"{__name__}:_search_task", Models({gen.name: gen}, goal=goal, verifier=verifier, lm=lm,
                                                     tokenizer=lm_tokenizer), labels,
                   {"cfg": cfg, "seed": seed, "template": template, "checkpoints": checkpoints}, executor, per_task,
                   progress, "prompt searches")
    return merge(parts)


def continuation_baseline(gen: Generator, goal: RobustGoal, lm, lm_tokenizer, labels: list[str],
                          cfg: PromptSearchConfig, n: int, min_prob: float = 0.05, seed: int = 0,
                          template: str = PROMPT) -> pd.DataFrame:
    """The search's natural baseline: per label, the LM's ``n`` likeliest continuations
    (up to ``cfg.max_words`` words, each word >= ``min_prob``) under the same failure test
    and seeds as ``search_prompts``. One row per prompt (:data:`BASELINE_COLUMNS`): label,
    prompt, words, LM probability of the words, failure rate, failure, perplexity."""
    rows = []
    for label in labels:
        start = template.format(label=label)
        for words, prob in likely_continuations(lm, lm_tokenizer, start, cfg.max_words, n, min_prob):
            rows.append({"label": label, "prompt": f"{start} {words}", "words": words, "lm_probability": prob})
    if rows:
        targets = [goal.ensemble.label_index(r["label"]) for r in rows]
        images = generate_for(gen, [r["prompt"] for r in rows], _eval_seeds(cfg, seed), cfg)
        for r, share in zip(rows, found_rates(goal, images, targets)):
            r.update(failure_rate=share, failure=share >= cfg.fail_fraction,
                     perplexity=perplexity(lm, lm_tokenizer, r["prompt"]))
    return pd.DataFrame(rows, columns=BASELINE_COLUMNS)


def result_table(result: PromptSearchResult, clip=None) -> pd.DataFrame:
    """The search's table; with a CLIP scorer, the mean CLIP score of each final prompt's
    images (``clip``)."""
    if clip is None:
        return result.table
    return result.table.assign(clip=[float(clip(im, [r["prompt"]] * len(im)).mean()) for r, im in result.rows()])


def store_failures(store, gen: Generator, goal: RobustGoal, verifier: Ensemble | None, result: PromptSearchResult,
                   cfg: PromptSearchConfig, seed: int = 0) -> tuple[list[str], list[str], torch.Tensor]:
    """Keep every found failure in the results store (study ``prompt-failures``) as a
    failure case (``sagekit.failures``: prompt, fresh seeds, sampler, goal, judges, both
    failure rates) with its first image: what people's verdicts and tags attach to, and
    what ``sagekit export`` writes out. Returns the keys, the prompts and those images
    ``(F, 3, H, W)``."""
    from ..failures import FailureCase, keep, settings

    fails = result.rows(failing_only=True)
    images = torch.stack([im[0] for _, im in fails]) if fails else None
    how = settings(gen, cfg.guidance, cfg.steps)
    cases = [FailureCase(study=STUDY, model=gen.name, prompt=r["prompt"], label=r["label"],
                         seeds=_eval_seeds(cfg, seed), goal=goal.spec(), judge=goal.ensemble.name,
                         verifier=(verifier or goal.ensemble).name, fail_fraction=cfg.fail_fraction,
                         judge_failure_rate=r["failure_rate"], verifier_failure_rate=r["verifier_failure_rate"],
                         extra={"words": r["words"], "perplexity": r["perplexity"],
                                "base_failure_rate": r["base_failure_rate"]}, **how) for r, _ in fails]
    return keep(store, cases, images), [r["prompt"] for r, _ in fails], images


def explain(result: PromptSearchResult, model: str, device: str = "cpu") -> pd.DataFrame | None:
    """Each searched prompt explained, in the toy world (:func:`sagekit.toy.explain.explain`:
    the category of each image's failure by the attribute judges, and how often the
    prompt's words met in the training captions); None for a real model, whose prompts
    have no parse and whose training data is not at hand."""
    from ..models.registry import world_of

    if world_of(model) != "toy":
        return None
    from ..toy.explain import explain as explain_toy, load_judges

    return explain_toy(result.table, result.images, load_judges(device))


def explanation_table(explained: pd.DataFrame | None) -> pd.DataFrame | None:
    """:func:`explain`'s table to read: per prompt its failure rate, its images' categories
    as one "category n, ..." cell, and its training counts."""
    if explained is None:
        return None
    from ..toy.explain import CATEGORIES

    images = [", ".join(f"{c} {int(r[c])}" for c in CATEGORIES if r[c]) for _, r in explained.iterrows()]
    return explained.assign(images=images)[["label", "prompt", "failure_rate", "images", "captions", "with_label",
                                            "most_drawn"]]


def category_counts(explained: pd.DataFrame | None, table: pd.DataFrame) -> dict[str, int]:
    """How many failing prompts of the search's ``table`` have each commonest category
    (empty without explanations)."""
    if explained is None:
        return {}
    failing = explained[table["failure"].astype(bool).to_numpy()]
    return failing.category.value_counts().to_dict()


def tag_counts(store) -> dict[str, int]:
    """How often each cause of the taxonomy was tagged (verdicts left out)."""
    frame = store.frame(STUDY)
    tags = [t for ts in (frame["tags"] if len(frame) else []) for t in ts if not t.startswith("verdict:")]
    return pd.Series(tags, dtype=object).value_counts().to_dict()


def summarize(result: PromptSearchResult, baseline: pd.DataFrame, labels: list[str], model: str, lm, lm_tokenizer,
              template: str = PROMPT, tags: dict | None = None,
              agreement: dict | None = None, explained: pd.DataFrame | None = None) -> dict:
    """The study's findings (the schema every study's ``summarize`` returns: ``models``,
    ``headline`` (short numbers for the index page), study fields; a rate as
    ``{"k", "n", "rate", "lo", "hi"}`` with its 95% Wilson interval).

    ``result``: :func:`search`'s; ``baseline``: :func:`continuation_baseline`'s table;
    ``tags``: the people's taxonomy counts and ``agreement`` their verdicts' agreement with
    the judges (``verdicts.agreement``), when any; ``explained``: :func:`explain`'s table
    (toy world), whose categories are counted."""
    found = result.table

    def labels_with(table: pd.DataFrame, column: str) -> int:
        return sum(bool(table.loc[table["label"] == l, column].any()) for l in labels)

    median = lambda xs: float(np.median(xs)) if len(xs) else float("nan")
    out = {
        "models": [model],
        "searched": len(found), "found": int(found["failure"].sum()), "verified": int(found["verified"].sum()),
        "labels_found": rate(labels_with(found, "failure"), len(labels)),
        "labels_verified": rate(labels_with(found, "verified"), len(labels)),
        "baseline_labels": rate(labels_with(baseline, "failure"), len(labels)),
        "baseline_failures": rate(int(baseline["failure"].sum()), len(baseline)),
        "perplexity_failing": median(found.loc[found["failure"].astype(bool), "perplexity"]),
        "perplexity_start": median([perplexity(lm, lm_tokenizer, template.format(label=l)) for l in labels]),
        "perplexity_baseline": median(baseline["perplexity"]),
        "prompts": found[["label", "prompt", "failure_rate", "verifier_failure_rate", "failure", "verified",
                          "perplexity"]].to_dict("records"),
        "baseline": baseline[["label", "prompt", "failure_rate", "perplexity"]].to_dict("records"),
        "taxonomy": dict(tags or {}), "agreement": agreement,
        "categories": category_counts(explained, found),
        "explained": [] if explained is None else explained.to_dict("records"),
    }
    # the targets of the study (issue #31): labels with a verified failing prompt, against
    # the LM's own likeliest continuations, and how natural the found prompts read
    out["headline"] = {"found": out["found"], "verified": out["verified"], "labels searched": len(labels),
                       "labels with a verified failing prompt": out["labels_verified"],
                       "labels failing for the LM's likeliest continuations": out["baseline_labels"],
                       "perplexity, failing / LM's likeliest": round(out["perplexity_failing"]
                                                                    / out["perplexity_baseline"], 3)}
    return out


def findings_text(findings: dict, top_k: int, fail_fraction: float, eval_seeds: int, verifier: str):
    """The report's findings as Markdown (``markup.Safe``: every value escaped)."""
    from ..markup import Safe, md_text

    def interval(r):
        return md_text("**{k} of {n}** ({rate:.2f}, 95% CI [{lo:.2f}, {hi:.2f}])", **r)

    failing = findings["perplexity_failing"]
    lines = [
        md_text("- {found} of {searched} searches ended in a prompt of the LM's top-{top_k} next words that fails on "
                "≥ {bar:.0%} of {m} fresh seeds; the verifier {verifier!c}, which the search never consulted, "
                "confirms **{verified}** of them on the same images.", found=findings["found"],
                searched=findings["searched"], top_k=top_k, bar=fail_fraction, m=eval_seeds, verifier=verifier,
                verified=findings["verified"]),
        md_text("- Labels with a verified failure: {iv}.", iv=interval(findings["labels_verified"])),
        (md_text("- Median perplexity of failing prompts: {p:.2f} (of the starting prompts: {s:.2f}).",
                 p=failing, s=findings["perplexity_start"]) if failing == failing else  # NaN: none failed
         md_text("- No failing prompt (the starting prompts' median perplexity: {s:.2f}).",
                 s=findings["perplexity_start"])),
        md_text("- Baseline: {k} of {n} of the LM's likeliest continuations fail (median perplexity {p:.2f}); labels "
                "with one: {iv}.", p=findings["perplexity_baseline"], iv=interval(findings["baseline_labels"]),
                k=findings["baseline_failures"]["k"], n=findings["baseline_failures"]["n"]),
    ]
    if findings.get("categories"):
        lines.append(md_text("- Why the failing prompts fail (their commonest category by the attribute judges): "
                             "{cats}.", cats=", ".join(f"{c} {n}" for c, n in findings["categories"].items())))
    return Safe("\n".join(lines))
