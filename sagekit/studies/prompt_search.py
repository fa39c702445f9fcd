"""SAGE prompt-space search (finding 1) and the universal adversarial token (finding 4).

Prompt search: from "A photo of a {label}", a causal language model proposes the top-k
next words; two continuous tokens, an adversarial [x] and a look-ahead [y], appended in
the text encoder's token-embedding space, are optimised against the robust loss (signed
gradient, clamped); the candidate word nearest to [x] is appended, and the loop repeats
for up to ``max_words`` words. A prompt is a failure when it fails on at least
``fail_fraction`` of ``eval_seeds`` fresh seeds.

Gradients are exact by default, through a shorter sampler (``search_steps``) to keep
them affordable: what a word changes (the object, its colour) is decided in the early
sampling steps, which residual gradients (through the last k steps only) never reach.
Failures are always tested with the full sampler (``steps``).

Adversarial token: one new row of the embedding table (textual-inversion style),
appended to many prompts, optimised so that the judges see a chosen target label.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from ..models.generator import Generator
from .sage import RobustGoal, TargetGoal, signed_step

X_TOKEN, Y_TOKEN, ADV_TOKEN = "<sage-x>", "<sage-y>", "<sage-adv>"


@dataclass
class PromptSearchConfig:
    lr: float = 0.05
    iterations: int = 100
    bound: float = 2.5          # clamp of the continuous token embeddings
    max_words: int = 3
    top_k: int = 10             # LM candidates per word
    train_seeds: int = 2        # seeds the embeddings are optimised on
    eval_seeds: int = 8         # M fresh seeds for the failure test
    fail_fraction: float = 0.8
    mode: str = "exact"
    k: int = 2
    guidance: float | None = None
    steps: int | None = None        # sampling steps of the failure test (None: the model's default)
    search_steps: int | None = None  # sampling steps while optimising (None: ``steps``)

    def __post_init__(self):
        if self.mode not in ("exact", "residual"):
            raise ValueError(f"mode must be 'exact' or 'residual', got {self.mode!r}")
        if (self.lr <= 0 or self.iterations < 0 or self.bound <= 0 or self.max_words < 1 or self.top_k < 1
                or self.train_seeds < 1 or self.eval_seeds < 1 or not 0 < self.fail_fraction <= 1):
            raise ValueError(f"invalid prompt search parameters: {asdict(self)}")


def nearest_word(gen: Generator, x: torch.Tensor, candidates: list[str]) -> str:
    """The candidate whose embedding is nearest (L2) to ``x``."""
    table = gen.word_embeddings(candidates)
    d = (table - x.detach().to(table.device)).norm(dim=-1)
    return candidates[int(d.argmin())]


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


def lm_candidates(lm, tokenizer, prompt: str, top_k: int) -> list[str]:
    """The LM's ``top_k`` most likely next words after ``prompt`` (special tokens excluded)."""
    words = (w for w, _ in _next_words(lm, tokenizer, prompt) if w)
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
def perplexity(lm, tokenizer, prompt: str) -> float:
    """exp(mean negative log-likelihood) of the prompt's words under the LM."""
    ids = tokenizer(prompt, add_special_tokens=False).input_ids
    if tokenizer.bos_token_id is not None:
        ids = [tokenizer.bos_token_id] + ids
    x = torch.tensor([ids], device=lm.device)
    logp = lm(x).logits[0, :-1].float().log_softmax(-1)
    nll = -logp.gather(1, x[0, 1:, None]).mean()
    return float(math.exp(nll.item()))


def _optimise_tokens(gen: Generator, goal, prompts: list[str], tokens: dict[str, torch.Tensor], target: torch.Tensor,
                     seeds: list[int], cfg, progress: bool = False) -> dict[str, torch.Tensor]:
    """Signed-gradient descent of ``goal.loss`` over continuous token embeddings.

    ``prompts``: P prompts that contain the tokens; ``tokens`` maps a token to per-prompt
    rows ``(P, E)``; ``target`` ``(P,)``. Every prompt is rendered with every seed (one
    batch of P * len(seeds) images); the optimised rows ``(P, E)``."""
    steps = cfg.search_steps or cfg.steps or gen.default_steps
    guidance = gen.default_guidance if cfg.guidance is None else cfg.guidance
    n_seeds = len(seeds)
    z = gen.initial_noise(seeds).to(gen.device).repeat(len(prompts), 1, 1, 1)  # prompt-major rows
    rows = [p for p in prompts for _ in range(n_seeds)]
    target = target.repeat_interleave(n_seeds)
    params = {t: e.clone().requires_grad_(True) for t, e in tokens.items()}
    for _ in tqdm(range(cfg.iterations), disable=not progress, leave=False, desc="token embeddings"):
        emb = gen.embed_prompts(rows, {t: p.repeat_interleave(n_seeds, 0) for t, p in params.items()})
        lat = gen.denoise_differentiable(z, emb, mode=cfg.mode, k=min(cfg.k, steps), guidance=guidance, steps=steps)
        loss = goal.loss(gen.decode(lat), target).sum()
        grads = torch.autograd.grad(loss, list(params.values()))
        with torch.no_grad():
            params = {t: signed_step(p, g, cfg.lr, cfg.bound).requires_grad_(True)
                      for (t, p), g in zip(params.items(), grads)}
    return {t: p.detach() for t, p in params.items()}


@torch.no_grad()
def failure_rates(gen: Generator, goal: RobustGoal, prompts: list[str], targets: list[int], seeds: list[int],
                  cfg) -> tuple[list[float], torch.Tensor]:
    """Per prompt, the fraction of ``seeds`` whose image meets the goal; images
    ``(P, len(seeds), 3, H, W)`` in [0, 1] on the CPU."""
    m = len(seeds)
    images = gen.generate([p for p in prompts for _ in seeds], list(seeds) * len(prompts), cfg.guidance, cfg.steps)
    hit = goal.found(images.to(gen.device), torch.tensor(targets).repeat_interleave(m))
    return hit.float().view(len(prompts), m).mean(1).tolist(), images.view(len(prompts), m, *images.shape[1:])


def _eval_seeds(cfg: PromptSearchConfig, seed: int) -> list[int]:
    """The fresh seeds of the failure test: never the seeds the search optimised on."""
    return list(range(10_000 + seed, 10_000 + seed + cfg.eval_seeds))


def search_prompts(gen: Generator, goal: RobustGoal, lm, lm_tokenizer, labels: list[str], cfg: PromptSearchConfig,
                   seed: int = 0, template: str = "A photo of a {label}", progress: bool = True) -> list[dict]:
    """SAGE's word-by-word search, for all ``labels`` at once (one batch per word).

    Per label: the final prompt, the appended words, the failure rate of the starting and
    the final prompt over ``cfg.eval_seeds`` fresh seeds, ``failure`` (rate >= the bar
    with at least one word appended: a starting prompt that already fails is the model's
    own failure, not a found one), LM perplexity, and the evaluation images."""
    gen.add_tokens([X_TOKEN, Y_TOKEN])
    targets = [goal.ensemble.label_index(l) for l in labels]
    eval_seeds = _eval_seeds(cfg, seed)
    prompts = [template.format(label=l) for l in labels]
    rates, images = failure_rates(gen, goal, prompts, targets, eval_seeds, cfg)
    out = [{"label": l, "prompt": p, "words": [], "base_failure_rate": r, "failure_rate": r, "images": im}
           for l, p, r, im in zip(labels, prompts, rates, images)]
    bar = tqdm(range(cfg.max_words), desc="prompt search (words)", disable=not progress, leave=False)
    for w in bar:
        active = [i for i, r in enumerate(out) if not (r["words"] and r["failure_rate"] >= cfg.fail_fraction)]
        cands = {i: lm_candidates(lm, lm_tokenizer, out[i]["prompt"], cfg.top_k) for i in active}
        active = [i for i in active if cands[i]]
        if not active:
            break
        with_tokens = [f"{out[i]['prompt']} {X_TOKEN} {Y_TOKEN}" for i in active]
        init = torch.stack([gen.word_embeddings(cands[i]).mean(0) for i in active])  # the candidates' centre
        train_seeds = list(range(seed * 100 + w * 10, seed * 100 + w * 10 + cfg.train_seeds))
        opt = _optimise_tokens(gen, goal, with_tokens, {X_TOKEN: init, Y_TOKEN: init.clone()},
                               torch.tensor([targets[i] for i in active]), train_seeds, cfg, progress)
        for j, i in enumerate(active):
            word = nearest_word(gen, opt[X_TOKEN][j], cands[i])
            out[i]["prompt"], out[i]["words"] = f"{out[i]['prompt']} {word}", out[i]["words"] + [word]
        rates, images = failure_rates(gen, goal, [out[i]["prompt"] for i in active], [targets[i] for i in active],
                                      eval_seeds, cfg)
        for j, i in enumerate(active):
            out[i]["failure_rate"], out[i]["images"] = rates[j], images[j]
        bar.set_postfix(failing=sum(bool(r["words"]) and r["failure_rate"] >= cfg.fail_fraction for r in out))
    for r in out:
        r["failure"] = bool(r["words"]) and r["failure_rate"] >= cfg.fail_fraction
        r["words"] = " ".join(r["words"])
        r["perplexity"] = perplexity(lm, lm_tokenizer, r["prompt"])
    return out


def continuation_baseline(gen: Generator, goal: RobustGoal, lm, lm_tokenizer, labels: list[str],
                          cfg: PromptSearchConfig, n: int, min_prob: float = 0.05, seed: int = 0,
                          template: str = "A photo of a {label}") -> list[dict]:
    """The search's natural baseline: per label, the LM's ``n`` likeliest continuations
    (up to ``cfg.max_words`` words, each word >= ``min_prob``) under the same failure test
    and seeds as ``search_prompts``. One dict per prompt: label, prompt, words, LM
    probability of the words, failure rate, failure, perplexity."""
    rows = []
    for label in labels:
        start = template.format(label=label)
        for words, prob in likely_continuations(lm, lm_tokenizer, start, cfg.max_words, n, min_prob):
            rows.append({"label": label, "prompt": f"{start} {words}", "words": words, "lm_probability": prob})
    if not rows:
        return rows
    targets = [goal.ensemble.label_index(r["label"]) for r in rows]
    rates, _ = failure_rates(gen, goal, [r["prompt"] for r in rows], targets, _eval_seeds(cfg, seed), cfg)
    for r, rate in zip(rows, rates):
        r.update(failure_rate=rate, failure=rate >= cfg.fail_fraction, perplexity=perplexity(lm, lm_tokenizer, r["prompt"]))
    return rows


# ---------------------------------------------------------------------------- adversarial token
@dataclass
class TokenConfig:
    """``objective``: ``"judges"`` (SAGE's robust loss through the sampler, signed steps)
    or ``"denoise"`` (textual inversion's diffusion loss on images of the target that the
    model drew itself, Adam with ``lr``)."""

    objective: str = "judges"
    lr: float = 0.05
    iterations: int = 100
    bound: float = 2.5
    batch: int = 8               # prompts (one seed each) per iteration
    examples: int = 16           # denoise: images of the target to learn from
    mode: str = "exact"
    k: int = 2
    guidance: float | None = None
    steps: int | None = None        # sampling steps of the evaluation (None: the model's default)
    search_steps: int | None = None  # sampling steps while learning (None: ``steps``)

    def __post_init__(self):
        if (self.objective not in ("judges", "denoise") or self.mode not in ("exact", "residual") or self.lr <= 0
                or self.iterations < 0 or self.batch < 1 or self.examples < 1):
            raise ValueError(f"invalid adversarial token parameters: {asdict(self)}")


def _mean_word(gen: Generator) -> torch.Tensor:
    """Where a new token starts: the mean ``(E,)`` of the model's own token embeddings
    (the rows sagekit adds left out)."""
    return gen.mean_token_embedding(exclude=(X_TOKEN, Y_TOKEN, ADV_TOKEN))


@torch.no_grad()
def target_examples(gen: Generator, goal: TargetGoal, target_label: str, n: int, seed: int, cfg: TokenConfig,
                    prompt: str = "a photo of a {label}") -> torch.Tensor:
    """Up to ``n`` final latents ``(n, C, h, w)`` (scaled VAE latents, or pixels in [-1, 1])
    of the model's own images of the target, kept only where every judge sees it: training
    targets that need no data set, for real models too."""
    target = goal.ensemble.label_index(target_label)
    seeds = list(range(700_000 + seed * 1000, 700_000 + seed * 1000 + 2 * n))
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
    emb = _mean_word(gen).requires_grad_(True)
    opt = torch.optim.Adam([emb], lr=cfg.lr)
    bar = tqdm(range(cfg.iterations), disable=not progress, leave=False, desc="adversarial token (denoise)")
    for _ in bar:
        pick = torch.randint(len(train_prompts), (cfg.batch,), generator=g).tolist()
        x = x0[torch.randint(len(x0), (cfg.batch,), generator=g)]
        cond = gen.embed_prompts([f"{train_prompts[i]} {ADV_TOKEN}" for i in pick], {ADV_TOKEN: emb})
        loss = gen.denoising_loss(x, cond, g)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        with torch.no_grad():
            emb.clamp_(-cfg.bound, cfg.bound)
        bar.set_postfix(loss=f"{loss.item():.3f}")
    return emb.detach()


def learn_adversarial_token(gen: Generator, goal: TargetGoal, target_label: str, train_prompts: list[str],
                            cfg: TokenConfig, seed: int = 0, progress: bool = True) -> torch.Tensor:
    """Learn the embedding row of a new token that, appended to a prompt, makes the judges
    see ``target_label``. Returns the embedding ``(E,)``; the token is ``ADV_TOKEN``."""
    if cfg.objective == "denoise":
        return _learn_token_by_denoising(gen, goal, target_label, train_prompts, cfg, seed, progress)
    gen.add_tokens([ADV_TOKEN])
    rng = np.random.default_rng(seed)
    steps = cfg.search_steps or cfg.steps or gen.default_steps
    guidance = gen.default_guidance if cfg.guidance is None else cfg.guidance
    target = torch.tensor([goal.ensemble.label_index(target_label)] * cfg.batch)
    emb = _mean_word(gen)
    bar = tqdm(range(cfg.iterations), disable=not progress, leave=False, desc="adversarial token")
    for it in bar:
        pick = rng.choice(len(train_prompts), size=cfg.batch, replace=len(train_prompts) < cfg.batch)
        prompts = [f"{train_prompts[i]} {ADV_TOKEN}" for i in pick]
        seeds = [seed * 1_000_000 + it * cfg.batch + j for j in range(cfg.batch)]
        p = emb.clone().requires_grad_(True)
        lat = gen.denoise_differentiable(gen.initial_noise(seeds).to(gen.device),
                                         gen.embed_prompts(prompts, {ADV_TOKEN: p}),
                                         mode=cfg.mode, k=min(cfg.k, steps), guidance=guidance, steps=steps)
        loss = goal.loss(gen.decode(lat), target).mean()
        (grad,) = torch.autograd.grad(loss, [p])
        emb = signed_step(p.detach(), grad, cfg.lr, cfg.bound)
        bar.set_postfix(loss=f"{loss.item():.3f}")
    return emb


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


@dataclass
class TokenEvaluation:
    """``frame``: one row per held-out prompt × seed; ``plain`` / ``token``: the images
    without / with the token, ``(P, S, 3, H, W)`` in [0, 1] on the CPU."""

    frame: pd.DataFrame
    plain: torch.Tensor
    token: torch.Tensor


@torch.no_grad()
def evaluate_token(gen: Generator, goal: TargetGoal, clip, target_label: str, prompts: list[str], emb: torch.Tensor,
                   seeds: list[int], guidance: float | None = None, steps: int | None = None) -> TokenEvaluation:
    """Per held-out prompt and seed: success (every judge sees the target) with the token,
    the ensemble's prediction, the text-embedding cosine with vs without the token, and
    the CLIP score (against the prompt without the token) of the images with and without it."""
    gen.add_tokens([ADV_TOKEN])
    rows, plain, token = [], [], []
    target = goal.ensemble.label_index(target_label)
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
        pred = goal.ensemble(img_adv).argmax(-1).cpu()
        clip_plain = clip(img_plain, [prompt] * len(seeds)).cpu()
        clip_adv = clip(img_adv, [prompt] * len(seeds)).cpu()
        for i, s in enumerate(seeds):
            rows.append({"prompt": prompt, "seed": s, "success": bool(hit[i]),
                         "predicted": goal.ensemble.labels[int(pred[i])], "text_cosine": float(cos[i]),
                         "clip_plain": float(clip_plain[i]), "clip_adv": float(clip_adv[i]),
                         "clip_delta": float(clip_adv[i] - clip_plain[i])})
    return TokenEvaluation(pd.DataFrame(rows), torch.stack(plain), torch.stack(token))


def learn_tokens(gen: Generator, goal: TargetGoal, clip, splits: dict[str, tuple[list[str], list[str]]],
                 cfg: TokenConfig, eval_seeds: list[int], seed: int = 0,
                 template: str = "a photo of a {label}") -> dict[str, TokenEvaluation]:
    """For every target of ``splits`` (target -> (train labels, held-out labels)): learn
    its token on the train labels' prompts and evaluate it on the held-out ones."""
    results = {}
    for target, (train, held) in splits.items():
        emb = learn_adversarial_token(gen, goal, target, [template.format(label=l) for l in train], cfg, seed=seed)
        results[target] = evaluate_token(gen, goal, clip, target, [template.format(label=l) for l in held], emb,
                                         eval_seeds, cfg.guidance, cfg.steps)
    return results


def per_target(ev: pd.DataFrame, labels) -> pd.DataFrame:
    """Means per target of a frame of :func:`evaluate_token` rows with a ``target`` column.
    Where every label reads "{colour} {shape}" (the toy world), also the share of
    predictions with the target's colour and with its shape."""
    out = ev.groupby("target", sort=False)[["success", "text_cosine", "clip_plain", "clip_adv", "clip_delta"]].mean()
    if all(len(l.split()) == 2 for l in labels):
        pred = ev["predicted"].str.split(" ", n=1, expand=True)
        want = ev["target"].str.split(" ", n=1, expand=True)
        out["colour"] = (pred[0] == want[0]).groupby(ev["target"], sort=False).mean()
        out["shape"] = (pred[1] == want[1]).groupby(ev["target"], sort=False).mean()
    return out
