"""SAGE prompt-space search (finding 1) and the universal adversarial token (finding 4).

Prompt search: from "A photo of a {label}", a causal language model proposes the top-k
next words; two continuous tokens, an adversarial [x] and a look-ahead [y], appended in
the text encoder's token-embedding space, are optimised against the robust loss (signed
gradient, clamped); the candidate word nearest to [x] is appended, and the loop repeats
for up to ``max_words`` words. A prompt is a failure when it fails on at least
``fail_fraction`` of ``eval_seeds`` fresh seeds.

Adversarial token: one new row of the embedding table (textual-inversion style),
appended to many prompts, optimised so that the judges see a chosen target label.
"""

from __future__ import annotations

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
    mode: str = "residual"
    k: int = 2
    guidance: float | None = None
    steps: int | None = None

    def __post_init__(self):
        if self.mode not in ("exact", "residual"):
            raise ValueError(f"mode must be 'exact' or 'residual', got {self.mode!r}")
        if (self.lr <= 0 or self.iterations < 0 or self.bound <= 0 or self.max_words < 1 or self.top_k < 1
                or self.train_seeds < 1 or self.eval_seeds < 1 or not 0 < self.fail_fraction <= 1):
            raise ValueError(f"invalid prompt search parameters: {asdict(self)}")


def add_tokens(gen: Generator, tokens: list[str]) -> list[int]:
    """Add new tokens to the generator's tokenizer and text encoder (once); their ids."""
    new = [t for t in tokens if t not in gen.tokenizer.get_vocab()]
    if new:
        gen.tokenizer.add_tokens(new)
        gen.text_encoder.resize_token_embeddings(len(gen.tokenizer))
        gen._prompt_cache.clear()
    return gen.tokenizer.convert_tokens_to_ids(tokens)


def word_embeddings(gen: Generator, words: list[str]) -> torch.Tensor:
    """Input-embedding rows of single-token words ``(W, E)`` (multi-token words: the mean)."""
    table = gen.text_encoder.get_input_embeddings().weight.detach()
    rows = []
    for w in words:
        ids = gen.tokenizer(w, add_special_tokens=False).input_ids
        rows.append(table[ids].mean(0))
    return torch.stack(rows)


def nearest_word(gen: Generator, x: torch.Tensor, candidates: list[str]) -> str:
    """The candidate whose embedding is nearest (L2) to ``x``."""
    d = (word_embeddings(gen, candidates) - x.detach().to(gen.text_encoder.device)).norm(dim=-1)
    return candidates[int(d.argmin())]


@torch.no_grad()
def lm_candidates(lm, tokenizer, prompt: str, top_k: int) -> list[str]:
    """The LM's ``top_k`` most likely next words after ``prompt`` (special tokens excluded)."""
    ids = tokenizer(prompt, add_special_tokens=False).input_ids
    if tokenizer.bos_token_id is not None:
        ids = [tokenizer.bos_token_id] + ids
    logits = lm(torch.tensor([ids], device=lm.device)).logits[0, -1]
    special = set(tokenizer.all_special_ids)
    out = []
    for i in logits.argsort(descending=True).tolist():
        if i in special:
            continue
        word = tokenizer.decode([i]).strip()
        if word and word.isalpha() and word not in out:
            out.append(word)
        if len(out) == top_k:
            break
    return out


@torch.no_grad()
def perplexity(lm, tokenizer, prompt: str) -> float:
    """exp(mean negative log-likelihood) of the prompt's words under the LM."""
    ids = tokenizer(prompt, add_special_tokens=False).input_ids
    if tokenizer.bos_token_id is not None:
        ids = [tokenizer.bos_token_id] + ids
    x = torch.tensor([ids], device=lm.device)
    return float(math.exp(lm(x, labels=x).loss.item()))


def _optimise_tokens(gen: Generator, goal, base_ids: torch.Tensor, tokens: dict[int, torch.Tensor],
                     target: torch.Tensor, seeds: list[int], cfg, progress: bool = False) -> dict[int, torch.Tensor]:
    """Signed-gradient descent of ``goal.loss`` over the continuous token embeddings."""
    steps = cfg.steps or gen.default_steps
    guidance = gen.default_guidance if cfg.guidance is None else cfg.guidance
    z = gen.initial_noise(seeds).to(gen.device)
    ids = base_ids.expand(len(seeds), -1)
    params = {t: e.clone().requires_grad_(True) for t, e in tokens.items()}
    for _ in tqdm(range(cfg.iterations), disable=not progress, leave=False, desc="token embeddings"):
        emb = gen.embed_token_ids(ids, params)
        lat = gen.denoise_differentiable(z, emb, mode=cfg.mode, k=min(cfg.k, steps), guidance=guidance, steps=steps)
        loss = goal.loss(gen.decode(lat), target.expand(len(seeds))).sum()
        grads = torch.autograd.grad(loss, list(params.values()))
        with torch.no_grad():
            params = {t: signed_step(p, g, cfg.lr, cfg.bound).requires_grad_(True)
                      for (t, p), g in zip(params.items(), grads)}
    return {t: p.detach() for t, p in params.items()}


@torch.no_grad()
def failure_rate(gen: Generator, goal: RobustGoal, prompt: str, target: int, seeds: list[int], cfg) -> tuple[float, torch.Tensor]:
    """Fraction of ``seeds`` whose image of ``prompt`` meets the goal, and the images."""
    images = gen.generate([prompt] * len(seeds), seeds, cfg.guidance, cfg.steps)
    return float(goal.found(images.to(gen.device), torch.full((len(seeds),), target)).float().mean()), images


def search_prompt(gen: Generator, goal: RobustGoal, lm, lm_tokenizer, label: str, cfg: PromptSearchConfig,
                  seed: int = 0, template: str = "A photo of a {label}", progress: bool = False) -> dict:
    """SAGE's word-by-word search for one label. Returns the final prompt, its words,
    failure rate over fresh seeds, LM perplexity and the evaluation images."""
    x_id, y_id = add_tokens(gen, [X_TOKEN, Y_TOKEN])
    target = torch.tensor([goal.ensemble.label_index(label)])
    prompt = template.format(label=label)
    eval_seeds = list(range(10_000 + seed, 10_000 + seed + cfg.eval_seeds))
    base_rate, _ = failure_rate(gen, goal, prompt, int(target), eval_seeds, cfg)
    words, rate, images = [], base_rate, None
    for w in range(cfg.max_words):
        cands = lm_candidates(lm, lm_tokenizer, prompt, cfg.top_k)
        if not cands:
            break
        ids = gen.tokenize([f"{prompt} {X_TOKEN} {Y_TOKEN}"])
        init = word_embeddings(gen, cands).mean(0)  # start at the candidates' centre
        found = _optimise_tokens(gen, goal, ids, {x_id: init.clone(), y_id: init.clone()}, target,
                                 list(range(seed * 100 + w * 10, seed * 100 + w * 10 + cfg.train_seeds)), cfg, progress)
        word = nearest_word(gen, found[x_id], cands)
        prompt, words = f"{prompt} {word}", words + [word]
        rate, images = failure_rate(gen, goal, prompt, int(target), eval_seeds, cfg)
        if rate >= cfg.fail_fraction:
            break
    return {"label": label, "prompt": prompt, "words": " ".join(words), "base_failure_rate": base_rate,
            "failure_rate": rate, "failure": rate >= cfg.fail_fraction,
            "perplexity": perplexity(lm, lm_tokenizer, prompt), "images": images}


# ---------------------------------------------------------------------------- adversarial token
@dataclass
class TokenConfig:
    lr: float = 0.05
    iterations: int = 100
    bound: float = 2.5
    batch: int = 8               # prompts (one seed each) per iteration
    mode: str = "residual"
    k: int = 2
    guidance: float | None = None
    steps: int | None = None

    def __post_init__(self):
        if self.mode not in ("exact", "residual") or self.lr <= 0 or self.iterations < 0 or self.batch < 1:
            raise ValueError(f"invalid adversarial token parameters: {asdict(self)}")


def learn_adversarial_token(gen: Generator, goal: TargetGoal, target_label: str, train_prompts: list[str],
                            cfg: TokenConfig, seed: int = 0, progress: bool = True) -> torch.Tensor:
    """Learn the embedding row of a new token that, appended to a prompt, makes the judges
    see ``target_label``. Returns the embedding ``(E,)``; the token is ``ADV_TOKEN``."""
    (adv_id,) = add_tokens(gen, [ADV_TOKEN])
    rng = np.random.default_rng(seed)
    steps = cfg.steps or gen.default_steps
    guidance = gen.default_guidance if cfg.guidance is None else cfg.guidance
    target = torch.tensor([goal.ensemble.label_index(target_label)] * cfg.batch)
    table = gen.text_encoder.get_input_embeddings().weight.detach()
    emb = table[: len(gen.tokenizer) - 1].mean(0).clone()  # start at the mean word
    bar = tqdm(range(cfg.iterations), disable=not progress, leave=False, desc="adversarial token")
    for it in bar:
        pick = rng.choice(len(train_prompts), size=cfg.batch, replace=len(train_prompts) < cfg.batch)
        prompts = [f"{train_prompts[i]} {ADV_TOKEN}" for i in pick]
        seeds = [seed * 1_000_000 + it * cfg.batch + j for j in range(cfg.batch)]
        p = emb.clone().requires_grad_(True)
        lat = gen.denoise_differentiable(gen.initial_noise(seeds).to(gen.device),
                                         gen.embed_token_ids(gen.tokenize(prompts), {adv_id: p}),
                                         mode=cfg.mode, k=min(cfg.k, steps), guidance=guidance, steps=steps)
        loss = goal.loss(gen.decode(lat), target).mean()
        (grad,) = torch.autograd.grad(loss, [p])
        emb = signed_step(p.detach(), grad, cfg.lr, cfg.bound)
        bar.set_postfix(loss=f"{loss.item():.3f}")
    return emb


@torch.no_grad()
def evaluate_token(gen: Generator, goal: TargetGoal, clip, target_label: str, prompts: list[str], emb: torch.Tensor,
                   seeds: list[int], guidance: float | None = None, steps: int | None = None) -> pd.DataFrame:
    """Per held-out prompt and seed: success (every judge sees the target) with the token,
    the text-embedding cosine with vs without the token, and the CLIP score (against the
    prompt without the token) of the images with and without it."""
    (adv_id,) = add_tokens(gen, [ADV_TOKEN])
    rows = []
    target = goal.ensemble.label_index(target_label)
    for prompt in prompts:
        plain_ids = gen.tokenize([prompt] * len(seeds))
        adv_ids = gen.tokenize([f"{prompt} {ADV_TOKEN}"] * len(seeds))
        e_plain = gen.embed_token_ids(plain_ids)
        e_adv = gen.embed_token_ids(adv_ids, {adv_id: emb})
        cos = F.cosine_similarity(e_plain.flatten(1), e_adv.flatten(1), dim=-1)
        z = gen.initial_noise(seeds).to(gen.device)
        img_plain = gen.decode(gen.denoise(z, e_plain, guidance, steps, seeds=seeds))
        img_adv = gen.decode(gen.denoise(z, e_adv, guidance, steps, seeds=seeds))
        hit = goal.found(img_adv, torch.full((len(seeds),), target))
        clip_plain = clip(img_plain, [prompt] * len(seeds)).cpu()
        clip_adv = clip(img_adv, [prompt] * len(seeds)).cpu()
        for i, s in enumerate(seeds):
            rows.append({"prompt": prompt, "seed": s, "success": bool(hit[i]), "text_cosine": float(cos[i]),
                         "clip_plain": float(clip_plain[i]), "clip_adv": float(clip_adv[i]),
                         "clip_delta": float(clip_adv[i] - clip_plain[i])})
    return pd.DataFrame(rows)
