"""SAGE's universal adversarial token (paper 000, finding 4): one appended token
embedding that makes the model draw a chosen object whatever the prompt, while the text
embedding barely changes.

The token is one new row of every text encoder's embedding table, learned on the prompts
of some labels and tested on the prompts of others (held out).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from ..progress import bar as progress_bar

from ..models.generator import Generator
from ..models.judges import Ensemble
from ..search import Checkpoint, SearchState, TargetGoal, TokenRows, signed_descent
from ..search.loop import weights_in_key
from ..seeds import seeds as seed_stream
from ..stats import rate
from . import common
from .parameters import (Choice, Float, Int, ListOf, Parameter, ParameterError, Schema, Text,
                         check_fields)
from .prompt_failures import X_TOKEN, Y_TOKEN

STUDY = "adversarial-tokens"
ADV_TOKEN = "<sage-adv>"


D = {  # the learning's own parameters; TokenConfig's fields take their defaults and rules from here
    "objective": Parameter(Choice(("denoise", "judges")), "judges",
                           '"judges" (SAGE\'s robust loss through the sampler, signed steps) or "denoise" (textual '
                           "inversion's diffusion loss on the model's own target images)"),
    "iterations": Parameter(common.ITERATIONS, 100, "judges: signed-gradient steps (SAGE: 100); denoise: Adam steps",
                            small=2),
    "lr": Parameter(common.LR, 0.05, "judges: signed step, in units of the token table's spread (SAGE: 0.05); "
                    "denoise: Adam's"),
    "bound": Parameter(Float(0, 100, lo_open=True), 2.5, "clamp of the token around the mean word, in spreads "
                       "(SAGE: 2.5)"),
    "batch": Parameter(Int(1, 1024), 4, "prompts (one fresh seed each) per step", small=2),
    "examples": Parameter(Int(1, 10_000), 16, "denoise: target images the model drew and every judge accepts",
                          small=2),
    "mode": Parameter(common.MODE, "exact", 'judges: gradients "exact" or "residual" (last k steps)'),
    "k": common.K,
    "search_steps": Parameter(Int(1, 1000, none="steps"), 4, "judges: sampling steps while learning (the "
                              "evaluation uses `steps`)", small=3),
    "guidance": common.GUIDANCE,
    "steps": common.STEPS,
}


@dataclass
class TokenConfig:
    """The learning's settings; defaults and rules are the study's declaration (:data:`D`).
    ``objective``: ``"judges"`` (SAGE's robust loss through the sampler, signed steps of
    ``lr`` spreads) or ``"denoise"`` (textual inversion's diffusion loss on images of the
    target that the model drew itself, Adam with ``lr``). ``bound``: the clamp, in units
    of the token table's spread (``TokenRows``)."""

    objective: str = D["objective"].default
    lr: float = D["lr"].default
    iterations: int = D["iterations"].default
    bound: float = D["bound"].default
    batch: int = D["batch"].default
    examples: int = D["examples"].default
    mode: str = D["mode"].default
    k: int = D["k"].default
    guidance: float | None = D["guidance"].default
    steps: int | None = D["steps"].default                # sampling steps of the evaluation
    search_steps: int | None = D["search_steps"].default  # sampling steps while learning (None: ``steps``)

    def __post_init__(self):
        check_fields(D, asdict(self))


def _images(p: dict) -> int:
    return len(p["targets"]) * (p["iterations"] * p["batch"] + 4 * p["examples"]
                                + 2 * p["n_heldout_labels"] * p["eval_seeds"])


def _targets_are_judged(p: dict) -> None:
    from ..models.registry import judge_label_names

    known = judge_label_names(p["judge"])
    if known is None:
        return
    for t in p["targets"]:
        if t not in known:
            raise ParameterError(f"target {t!r} is not a label of judge {p['judge']!r}")
    if p["n_train_labels"] + p["n_heldout_labels"] > len(known) - 1:
        raise ParameterError(f"n_train_labels + n_heldout_labels must be at most {len(known) - 1} "
                             f"(the judge's other labels), got {p['n_train_labels'] + p['n_heldout_labels']}")


def _rules(p: dict) -> None:
    _targets_are_judged(p)
    _targets_are_judged({**p, "judge": p["verifier"]})
    common.verifier_shares_no_judge(p)


SCHEMA = Schema({
    "model": common.MODEL,
    "judge": common.JUDGE,
    "verifier": common.helped(common.VERIFIER, "held-out judges, never used in learning, confirm each success "
                              "(toy: toy-clip)"),
    "clip": common.helped(common.CLIP, "CLIP score with and without the token (toy: toy-clip)"),
    "targets": Parameter(ListOf(Text(200), 1, 100, unique=True), "auto", "a list of the judge's labels, one token "
                         "learned per target (toy: green square; real: goldfinch)", small=["red circle", "cyan star"]),
    "n_train_labels": Parameter(Int(1, 1000), 16, "labels whose prompts train the token", small=2),
    "n_heldout_labels": Parameter(Int(1, 1000), 8, "labels whose prompts test it", small=2),
    **{name: D[name] for name in ("objective", "iterations", "lr", "bound", "batch", "examples", "mode", "k",
                                  "search_steps", "guidance", "steps")},
    "eval_seeds": Parameter(common.SEEDS, 4, "seeds per held-out prompt", small=1),
    "store_dir": common.store_dir(STUDY),
    "device": common.DEVICE,
    "dtype": common.DTYPE,
    **common.SEARCHES,
    "seed": common.SEED,
}, _images, _rules, streams={"iterations": lambda p: p["iterations"] * p["batch"],
                            "examples": lambda p: 2 * p["examples"], "heldout": lambda p: p["eval_seeds"]})


def _token_rows(gen: Generator, cfg: TokenConfig) -> TokenRows:
    """The token's steps and clamp, in units of the model's own token table's spread
    (the rows sagekit adds left out); it starts at the mean word."""
    mean, std = gen.token_statistics(exclude=(X_TOKEN, Y_TOKEN, ADV_TOKEN))
    return TokenRows(mean, std, cfg.lr, cfg.bound)


@torch.no_grad()
def target_examples(gen: Generator, goal: TargetGoal, target_label: str, n: int, seed: int, cfg: TokenConfig,
                    prompt: str = "a photo of a {label}") -> torch.Tensor:
    """Up to ``n`` final latents ``(n, C, h, w)`` (scaled VAE latents, or pixels in [-1, 1])
    of the model's own images of the target, kept only where every judge sees it: training
    targets that need no data set, for real models too."""
    target = goal.ensemble.label_index(target_label)
    seeds = seed_stream("examples", seed, 2 * n)
    z = gen.initial_noise(seeds).to(gen.device)
    lat = gen.denoise(z, gen.encode_prompts([prompt.format(label=target_label)] * len(seeds)), cfg.guidance, cfg.steps)
    ok = goal.found(gen.decode(lat), torch.full((len(seeds),), target))
    if not ok.any():
        raise RuntimeError(f"the model drew no image of {target_label!r} that every judge accepts")
    return lat[ok.to(lat.device)][:n].float()


def _learn_token_by_denoising(gen: Generator, goal: TargetGoal, target_label: str, train_prompts: list[str],
                              cfg: TokenConfig, seed: int, progress: bool) -> torch.Tensor:
    """Textual inversion with other objects' prompts: eps-prediction loss of the UNet on
    noised target examples, conditioned on "{train prompt} <token>"."""
    gen.add_tokens([ADV_TOKEN])
    x0 = target_examples(gen, goal, target_label, cfg.examples, seed, cfg)
    g = torch.Generator().manual_seed(seed)
    token = _token_rows(gen, cfg)
    emb = token.mean.clone().to(gen.device).requires_grad_(True)
    opt = torch.optim.Adam([emb], lr=cfg.lr)
    bar = progress_bar(range(cfg.iterations), progress=progress, desc="adversarial token (denoise)")
    for _ in bar:
        pick = torch.randint(len(train_prompts), (cfg.batch,), generator=g).tolist()
        x = x0[torch.randint(len(x0), (cfg.batch,), generator=g)]
        cond = gen.embed_prompts([f"{train_prompts[i]} {ADV_TOKEN}" for i in pick], {ADV_TOKEN: emb})
        loss = gen.denoising_loss(x, cond, g)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        with torch.no_grad():
            emb.copy_(token.project(emb))
        bar.set_postfix(loss=f"{loss.item():.3f}")
    return emb.detach()


def learn_adversarial_token(gen: Generator, goal: TargetGoal, target_label: str, train_prompts: list[str],
                            cfg: TokenConfig, seed: int = 0, progress: bool = True,
                            checkpoints: str | None = None) -> torch.Tensor:
    """Learn the embedding row of a new token that, appended to a prompt, makes the judges
    see ``target_label``. Returns the embedding ``(E,)``; the token is ``ADV_TOKEN``.

    ``judges`` (the default): SAGE's robust loss, the ensemble's weighted probability of
    the target, over ``cfg.batch`` training prompts and fresh seeds per iteration, by the
    engine's signed descent (steps and clamp in units of the embedding table's spread).
    With ``checkpoints`` (a folder) a killed run resumes."""
    if cfg.objective == "denoise":
        return _learn_token_by_denoising(gen, goal, target_label, train_prompts, cfg, seed, progress)
    gen.add_tokens([ADV_TOKEN])
    token = _token_rows(gen, cfg)
    steps = cfg.search_steps or gen.steps_of(cfg.steps)
    guidance = gen.guidance_of(cfg.guidance)
    target = torch.tensor([goal.ensemble.label_index(target_label)] * cfg.batch)

    def objective(rows, index, it, grad):
        # each iteration's prompts and seeds derive from (seed, iteration) alone: a resumed search is the same
        pick = np.random.default_rng([seed, it]).choice(len(train_prompts), size=cfg.batch,
                                                        replace=len(train_prompts) < cfg.batch)
        seeds = seed_stream("iterations", seed, cfg.batch, start=it * cfg.batch)
        emb = gen.embed_prompts([f"{train_prompts[i]} {ADV_TOKEN}" for i in pick],
                                {ADV_TOKEN: rows[ADV_TOKEN].expand(cfg.batch, -1)})
        z = gen.initial_noise(seeds).to(gen.device)
        if grad:
            lat = gen.denoise_differentiable(z, emb, mode=cfg.mode, k=min(cfg.k, steps), guidance=guidance,
                                             steps=steps)
        else:
            lat = gen.denoise(z, emb, guidance, steps)
        return goal.loss(gen.decode(lat), target).mean().view(1), None

    start = SearchState({ADV_TOKEN: token.mean[None].clone().to(gen.device)})
    state = signed_descent(objective, {ADV_TOKEN: token}, start, cfg.iterations, stop_when_found=False,
                           progress=progress, desc="adversarial token",
                           checkpoint=Checkpoint.under(checkpoints, {
                               "search": "token", **weights_in_key(gen, goal),
                               "target": target_label, "prompts": train_prompts, "seed": seed, "cfg": asdict(cfg)}))
    return state.values[ADV_TOKEN][0].detach()


def split_labels(labels: list[str], target: str, n_train: int, n_heldout: int, seed: int = 0
                 ) -> tuple[list[str], list[str]]:
    """Disjoint training and held-out labels, drawn (seeded) from ``labels`` without ``target``."""
    if target not in labels:
        raise ValueError(f"unknown target {target!r}; labels: {', '.join(labels)}")
    others = [l for l in labels if l != target]
    if n_train < 1 or n_heldout < 1 or n_train + n_heldout > len(others):
        raise ValueError(f"need 1 <= n_train, 1 <= n_heldout and n_train + n_heldout <= {len(others)}, "
                         f"got {n_train} and {n_heldout}")
    order = np.random.default_rng(seed).permutation(len(others))
    return [others[i] for i in order[:n_train]], [others[i] for i in order[n_train:n_train + n_heldout]]


def split_all(labels: list[str], targets: list[str], n_train: int, n_heldout: int, seed: int = 0
              ) -> dict[str, tuple[list[str], list[str]]]:
    """:func:`split_labels` for every target: target -> (train labels, held-out labels)."""
    return {t: split_labels(labels, t, n_train, n_heldout, seed) for t in targets}


@dataclass
class TokenResult:
    """What learning tokens returns. ``table``: one row per (target, held-out prompt, seed):
    success, verified, the ensemble's prediction, text cosine, CLIP scores; ``plain`` /
    ``token``: each row's image without / with the token, ``(N, 3, H, W)`` in [0, 1] on the
    CPU, row-aligned; ``embeddings``: target -> its token's embedding ``(E,)``;
    ``verifier``: the judges that decided ``verified``."""

    table: pd.DataFrame
    plain: torch.Tensor
    token: torch.Tensor
    embeddings: dict[str, torch.Tensor]
    verifier: str = ""

    @property
    def targets(self) -> list[str]:
        return list(self.embeddings)


def merge(parts: list[TokenResult]) -> TokenResult:
    """The results of disjoint targets (tasks of :mod:`sagekit.spread`) as one, in this order."""
    return common.concat(parts, ("plain", "token"),
                         embeddings={t: e for p in parts for t, e in p.embeddings.items()})


@torch.no_grad()
def evaluate_token(gen: Generator, goal: TargetGoal, clip, target_label: str, prompts: list[str], emb: torch.Tensor,
                   seeds: list[int], guidance: float | None = None, steps: int | None = None,
                   verifier: Ensemble | None = None) -> TokenResult:
    """One target's token (:class:`TokenResult`), per held-out prompt and seed: success
    (every judge sees the target) with the token,
    ``verified`` (the held-out ``verifier``'s judges see it too; default: the same judges),
    the ensemble's prediction, the text-embedding cosine with vs without the token, and
    the CLIP score (against the prompt without the token) of the images with and without it."""
    gen.add_tokens([ADV_TOKEN])
    rows, plain, token = [], [], []
    target = goal.ensemble.label_index(target_label)
    check = goal if verifier is None else goal.judged_by(verifier)
    checked = check.ensemble.label_index(target_label)
    for prompt in prompts:
        e_plain = gen.embed_prompts([prompt] * len(seeds))
        e_adv = gen.embed_prompts([f"{prompt} {ADV_TOKEN}"] * len(seeds), {ADV_TOKEN: emb})
        cos = F.cosine_similarity(e_plain.flat(), e_adv.flat(), dim=-1)
        z = gen.initial_noise(seeds).to(gen.device)
        img_plain = gen.decode(gen.denoise(z, e_plain, guidance, steps, seeds=seeds))
        img_adv = gen.decode(gen.denoise(z, e_adv, guidance, steps, seeds=seeds))
        plain.append(img_plain.float().cpu())
        token.append(img_adv.float().cpu())
        hit = goal.found(img_adv, torch.full((len(seeds),), target))
        confirmed = check.found(img_adv, torch.full((len(seeds),), checked))
        pred = goal.ensemble(img_adv).argmax(-1).cpu()
        clip_plain = clip(img_plain, [prompt] * len(seeds)).cpu()
        clip_adv = clip(img_adv, [prompt] * len(seeds)).cpu()
        for i, s in enumerate(seeds):
            rows.append({"target": target_label, "prompt": prompt, "seed": s, "success": bool(hit[i]),
                         "verified": bool(hit[i] & confirmed[i]),
                         "predicted": goal.ensemble.labels[int(pred[i])], "text_cosine": float(cos[i]),
                         "clip_plain": float(clip_plain[i]), "clip_adv": float(clip_adv[i]),
                         "clip_delta": float(clip_adv[i] - clip_plain[i])})
    return TokenResult(pd.DataFrame(rows), torch.cat(plain), torch.cat(token), {target_label: emb.detach().cpu()},
                       check.ensemble.name)


def _learn_task(models, targets: list[str], splits: dict[str, tuple[list[str], list[str]]], cfg: TokenConfig,
                eval_seeds: list[int], seed: int, template: str, checkpoints: str | None,
                progress: bool) -> TokenResult:
    """One task of :func:`learn_tokens` (:mod:`sagekit.spread`): the tokens of ``targets``, one after another."""
    results = []
    for target in targets:
        train, held = splits[target]
        emb = learn_adversarial_token(models.gen, models.goal, target, [template.format(label=l) for l in train], cfg,
                                      seed=seed, progress=progress, checkpoints=checkpoints)
        results.append(evaluate_token(models.gen, models.goal, models.clip, target,
                                      [template.format(label=l) for l in held], emb, eval_seeds, cfg.guidance,
                                      cfg.steps, models.verifier))
    return merge(results)


def learn_tokens(gen: Generator, goal: TargetGoal, clip, splits: dict[str, tuple[list[str], list[str]]],
                 cfg: TokenConfig, eval_seeds: list[int], seed: int = 0,
                 template: str = "a photo of a {label}", checkpoints: str | None = None,
                 verifier: Ensemble | None = None, progress: bool = True, executor=None,
                 per_task: int = 0) -> TokenResult:
    """For every target of ``splits`` (target -> (train labels, held-out labels)): learn
    its token on the train labels' prompts and evaluate it on the held-out ones (success
    confirmed by ``verifier``, judges the learning never used). Here one target after
    another, or spread over ``executor`` (:mod:`sagekit.executors`; on Ray, tasks of
    ``per_task`` targets, default one, on workers that load the models by name)."""
    from ..spread import Models, gather

    parts = gather(f"{__name__}:_learn_task", Models({gen.name: gen}, goal=goal, verifier=verifier, clip=clip), list(splits),
                   {"splits": dict(splits), "cfg": cfg, "eval_seeds": list(eval_seeds), "seed": seed,
                    "template": template, "checkpoints": checkpoints}, executor, per_task, progress, "tokens")
    return merge(parts)


def store_successes(store, gen: Generator, goal: TargetGoal, result: TokenResult, cfg: TokenConfig) -> list[str]:
    """Keep every held-out prompt x seed on which a token made every judge see its target
    as a failure case (``sagekit.failures``: the prompt with ``ADV_TOKEN``, the token's
    embedding as safetensors, the seed, sampler and judges) with its image; what
    ``sagekit export`` writes out. Returns the keys."""
    from ..failures import FailureCase, keep, settings

    how = settings(gen, cfg.guidance, cfg.steps)
    hits = result.table["success"].to_numpy(dtype=bool)
    cases = [FailureCase(
        study=STUDY, model=gen.name, prompt=f"{r.prompt} {ADV_TOKEN}", label=r.target, seeds=[int(r.seed)],
        goal=goal.spec(), judge=goal.ensemble.name, verifier=result.verifier, fail_fraction=1.0,
        judge_failure_rate=1.0, verifier_failure_rate=float(r.verified), token=ADV_TOKEN,
        embedding=result.embeddings[r.target], extra={"prompt_without_token": r.prompt, "text_cosine": r.text_cosine,
                                                      "clip_delta": r.clip_delta}, **how)
        for r in result.table[hits].itertuples()]
    return keep(store, cases, result.token[torch.from_numpy(hits)] if cases else None)


def per_target(ev: pd.DataFrame, labels) -> pd.DataFrame:
    """Means per target of a frame of :func:`evaluate_token` rows with a ``target`` column.
    Where every label reads "{colour} {shape}" (the toy world), also the share of
    predictions with the target's colour and with its shape."""
    cols = [c for c in ("success", "verified", "text_cosine", "clip_plain", "clip_adv", "clip_delta") if c in ev]
    out = ev.groupby("target", sort=False)[cols].mean()
    if all(len(l.split()) == 2 for l in labels):
        pred = ev["predicted"].str.split(" ", n=1, expand=True)
        want = ev["target"].str.split(" ", n=1, expand=True)
        out["colour"] = (pred[0] == want[0]).groupby(ev["target"], sort=False).mean()
        out["shape"] = (pred[1] == want[1]).groupby(ev["target"], sort=False).mean()
    return out


def summarize(result: TokenResult, labels, model: str) -> dict:
    """The study's findings (the common schema: ``models``, ``headline``, rates as
    ``{"k", "n", "rate", "lo", "hi"}`` with 95% Wilson intervals): held-out success over
    every target's prompts × seeds, mean text cosine and CLIP-score change, per target."""
    ev = result.table
    by = per_target(ev, labels)
    best = str(by["success"].idxmax())
    mine = ev[ev["target"] == best]
    out = {"models": [model], "targets": result.targets,
           "success": rate(ev["success"].sum(), len(ev)), "verified": rate(ev["verified"].sum(), len(ev)),
           "text_cosine": float(ev["text_cosine"].mean()),
           "clip_delta": float(ev["clip_delta"].mean()), "by_target": by.round(4).to_dict("index"),
           "best_target": best, "worst_target": str(by["success"].idxmin()),
           "best_target_success": rate(mine["success"].sum(), len(mine)),
           "best_target_verified": rate(mine["verified"].sum(), len(mine))}
    # the study's target (issue #31): one target's held-out success, verified, with the
    # prompt's text embedding kept close; the CLIP-score change beside it
    out["headline"] = {"best target": best, "best target's held-out success": out["best_target_success"],
                       "best target's verified success": out["best_target_verified"],
                       "all targets' held-out success": out["success"],
                       "best target's text cosine": round(float(mine["text_cosine"].mean()), 3),
                       "CLIP-score change": round(out["clip_delta"], 3)}
    return out
