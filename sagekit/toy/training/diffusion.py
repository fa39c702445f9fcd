"""Train the toy diffusion UNets on frozen text embeddings.

One loop serves both models: the latent one (fixed variance, epsilon MSE) and the
pixel one (learned variance, epsilon MSE + the variational bound, see ``vlb.py``).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from diffusers import UNet2DConditionModel
from diffusers.training_utils import EMAModel

from ...models.attention_maps import capture_cross_attention
from .checkpoint import load_training_state, save_training_state
from .common import progress, seeded_batches, warmup_cosine
from .grounding import grounding_loss
from .vlb import vlb_term


def train_unet(unet: UNet2DConditionModel, scheduler, x0: torch.Tensor, text: torch.Tensor,
               uncond: torch.Tensor, seed: int, steps: int, batch_size: int = 64, lr: float = 1e-3,
               cond_dropout: float = 0.1, ema_decay: float = 0.998, bf16: bool = False,
               log_every: int = 0, trainable: str = "all", progress_bar: bool = True,
               pixels: bool = True, end_states: str = "keep", end_rate: float = 0.0,
               eos_index: torch.Tensor | None = None, end_switch: float = 0.7, grounding: float = 0.0,
               grounding_targets: tuple[torch.Tensor, torch.Tensor] | None = None,
               checkpoint: Path | None = None, checkpoint_every: int = 250) -> UNet2DConditionModel:
    """x0: training targets ``(N, C, H, W)`` (scaled latents or pixels in [-1, 1]);
    text: their prompt embeddings ``(N, L, D)``; uncond: the empty prompt's ``(1, L, D)``.
    A fraction ``cond_dropout`` of prompts is replaced by the empty one, for guidance.
    ``trainable``: ``"all"`` or ``"cross-attention"`` (only the key/value projections of
    the cross-attention layers, the cheap fine-tuning). ``ema_decay`` 0 disables EMA.
    ``pixels``: whether x0 are pixels (for the variational bound of learned variance).
    ``end_states`` (for ``end_rate`` of the prompts, see :func:`_replace_ends`): ``"keep"``,
    ``"mask"``, ``"shuffle"``, or ``"mask-then-shuffle"``: masked for the first ``end_switch``
    of the steps, shuffled after (see ``UNetRecipe``).
    ``grounding`` > 0 adds that weight times :func:`grounding_loss` on the cross-attention
    maps, with ``grounding_targets`` = :func:`grounding_targets` of the training set.
    ``checkpoint``: a folder for the resumable training state (``checkpoint.py``), saved
    every ``checkpoint_every`` steps and after the last; a call with the same arguments and
    data resumes from it and ends with the weights of an unbroken run (on the same machine
    and thread count: float sums depend on both).
    Returns the (EMA) weights."""
    if end_states not in END_STATES:
        raise ValueError(f"end_states must be one of {END_STATES}, got {end_states!r}")
    if checkpoint_every < 1:
        raise ValueError(f"checkpoint_every must be >= 1, got {checkpoint_every!r}")
    if grounding > 0 and grounding_targets is None:
        raise ValueError("grounding needs grounding_targets (token colours and colour masks)")
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed + 1)
    learned = unet.config.out_channels == 2 * unet.config.in_channels
    params = trainable_parameters(unet, trainable)
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.01)
    sched = warmup_cosine(opt, steps, warmup=min(100, max(1, steps // 10)))
    ema = EMAModel(params, decay=ema_decay, use_ema_warmup=True, power=0.75) if ema_decay > 0 else None
    data = {"x0": x0, "text": text, "uncond": uncond, "eos_index": eos_index, "grounding_targets": grounding_targets}
    fingerprint = _fingerprint(unet, scheduler, data, seed=seed, steps=steps, batch_size=batch_size, lr=lr,
                               cond_dropout=cond_dropout, ema_decay=ema_decay, bf16=bf16, trainable=trainable,
                               pixels=pixels, end_states=end_states, end_rate=end_rate, end_switch=end_switch,
                               grounding=grounding)
    start = 0
    restored = checkpoint and load_training_state(checkpoint, fingerprint, unet, opt, sched, ema)
    if restored:
        start, rng = restored
        g.set_state(rng["sampling"])
        torch.set_rng_state(rng["torch"])  # nothing draws from it today; a dropout layer would
        print(f"resuming the UNet training at step {start} of {steps} from {checkpoint}", file=sys.stderr)
    batches = seeded_batches(len(x0), batch_size, steps, seed)
    for _ in range(start):
        next(batches)
    unet.train()
    desc = "unet (learned variance)" if learned else "unet"
    bar = progress(steps, desc, start) if progress_bar else range(start, steps)
    recording = capture_cross_attention(unet, keep_grad=True) if grounding > 0 else contextlib.nullcontext({})
    with recording as maps:
        for step in bar:
            idx = next(batches)
            x = x0[idx]
            cond = text[idx].clone()
            drop = torch.rand(len(idx), generator=g) < cond_dropout
            if end_states != "keep":
                how = end_states if end_states in END_MODES else ("mask" if step < end_switch * steps else "shuffle")
                cond = _replace_ends(cond, eos_index[idx], uncond, how, end_rate, g)
            cond[drop] = uncond[0]
            noise = torch.randn(x.shape, generator=g)
            t = torch.randint(0, scheduler.config.num_train_timesteps, (len(idx),), generator=g)
            xt = scheduler.add_noise(x, noise, t)
            maps.clear()
            ctx = torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
            with ctx:
                out = unet(xt, t, cond).sample
            out = out.float()
            eps = out[:, : x.shape[1]]
            loss = F.mse_loss(eps, noise)
            if learned:
                loss = loss + vlb_term(scheduler, x, xt, t, eps, out[:, x.shape[1]:], pixels=pixels)
            if grounding > 0:
                words = grounding_targets[0][idx].clone()
                words[drop] = -1  # the empty prompt names nothing
                loss = loss + grounding * grounding_loss(maps, words, grounding_targets[1][idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            sched.step()
            if ema is not None:
                ema.step(params)
            if log_every and step % log_every == 0:
                print(f"step {step} loss {loss.item():.4f}")
            if checkpoint and ((step + 1) % checkpoint_every == 0 or step + 1 == steps):
                save_training_state(checkpoint, step + 1, fingerprint, unet, opt, sched, ema,
                                    {"sampling": g.get_state(), "torch": torch.get_rng_state()})
    if ema is not None:
        ema.copy_to(params)
    return unet.eval()


def _fingerprint(unet: UNet2DConditionModel, scheduler, data: dict, **arguments) -> dict:
    """What a checkpoint must match to be resumed: the arguments, the UNet's and the noise
    scheduler's configs, and a sha256 of every data tensor's bytes (``data``: name ->
    tensor, tuple of tensors or None), so that other data, even reordered, is another run."""
    def digest(value) -> str | None:
        if value is None:
            return None
        h = hashlib.sha256()
        for t in value if isinstance(value, tuple) else (value,):
            h.update(str((t.dtype, tuple(t.shape))).encode())
            h.update(t.detach().contiguous().cpu().view(torch.uint8).numpy())  # the bytes, no copy
        return h.hexdigest()

    def public(config) -> dict:
        return {k: v for k, v in dict(config).items() if not k.startswith("_")}

    return json.loads(json.dumps({**arguments, "unet": public(unet.config), "scheduler": public(scheduler.config),
                                  "data": {k: digest(v) for k, v in data.items()}}))


END_MODES = ("mask", "shuffle")  # what _replace_ends does; END_STATES adds the schedules
END_STATES = ("keep", *END_MODES, "mask-then-shuffle")


def _replace_ends(cond: torch.Tensor, eos: torch.Tensor, uncond: torch.Tensor, how: str, rate: float,
                  g: torch.Generator) -> torch.Tensor:
    """For a share ``rate`` of rows, the states from ``<eos>`` on (``eos`` ``(B,)`` its
    positions) are replaced: ``"mask"`` by the empty prompt's states there, ``"shuffle"``
    by another row's states from its own ``<eos>`` on. A causal text encoder writes the
    whole prompt into those states; made unreliable, they stop being the easy path, and
    the UNet learns to read the word states instead."""
    b, length = cond.shape[:2]
    pick = torch.rand(b, generator=g) < rate
    donor = torch.randperm(b, generator=g)
    out = cond.clone()
    for i in torch.nonzero(pick).flatten().tolist():
        e = int(eos[i])
        if how == "mask":
            out[i, e:] = uncond[0, e:]
        else:
            j = int(donor[i])
            k = int(eos[j])
            src = torch.arange(length - e) + k
            out[i, e:] = cond[j, src.clamp_max(length - 1)]
    return out


def trainable_parameters(unet: UNet2DConditionModel, which: str) -> list[torch.nn.Parameter]:
    """Parameters to train, with ``requires_grad`` set accordingly on the whole UNet."""
    if which not in ("all", "cross-attention"):
        raise ValueError(f"trainable must be 'all' or 'cross-attention', got {which!r}")
    chosen = []
    for name, p in unet.named_parameters():
        use = which == "all" or ("attn2.to_k" in name or "attn2.to_v" in name)
        p.requires_grad_(use)
        if use:
            chosen.append(p)
    if not chosen:
        raise ValueError("the UNet has no cross-attention layers to train")
    return chosen
