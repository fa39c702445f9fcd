"""Generator: one adapter over diffusers text-to-image models, latent (VAE) or pixel space.

Shapes used throughout:
  prompts      N strings
  embeddings   ``(N, L, D)`` text-encoder hidden states
  noise / z    ``(N, C, h, w)`` initial noise ~ N(0, I), float32 (latent or pixel shape)
  latents      ``(N, C, h, w)`` the model's clean output (VAE latents, or pixels in [-1, 1])
  images       ``(N, 3, H, W)`` float32 in [0, 1]

Initial noise is drawn on the CPU with one ``torch.Generator`` per sample, seeded by
that sample's seed, so the image of a seed does not depend on the device or the batch it
is generated in. Sampling runs the UNet and scheduler directly (the same steps as the
diffusers pipelines) because the studies need what ``pipeline.__call__`` hides: shifted
noise, trajectories, and gradients.
"""

from __future__ import annotations

import copy
from contextlib import nullcontext
from typing import Sequence

import torch
from diffusers import (DDIMScheduler, DDPMScheduler, DPMSolverMultistepScheduler, EulerDiscreteScheduler,
                       PNDMScheduler)
from torch.utils.checkpoint import checkpoint
from tqdm.auto import tqdm

SCHEDULERS = {
    "ddim": DDIMScheduler,
    "ddpm": DDPMScheduler,
    "dpm": DPMSolverMultistepScheduler,
    "euler": EulerDiscreteScheduler,
    "pndm": PNDMScheduler,
}


class Generator:
    """Wraps the components of a diffusers text-to-image pipeline.

    ``vae`` is None for pixel-space models. A UNet with twice as many output as input
    channels predicts a learned variance (GLIDE / DeepFloyd IF); its variance channels
    are passed to schedulers that use them (DDPM with ``learned_range``) and dropped for
    the others.
    """

    def __init__(self, name: str, unet, scheduler, text_encoder, tokenizer, vae=None,
                 default_steps: int = 50, default_guidance: float = 7.5):
        self.name = name
        self.unet, self.scheduler, self.text_encoder, self.tokenizer, self.vae = unet, scheduler, text_encoder, tokenizer, vae
        self.default_steps, self.default_guidance = default_steps, default_guidance
        for module in (unet, text_encoder, vae):
            if module is not None:
                module.eval().requires_grad_(False)
        self._prompt_cache: dict[str, torch.Tensor] = {}

    # ------------------------------------------------------------------ properties
    @property
    def device(self) -> torch.device:
        return self.unet.device

    @property
    def dtype(self) -> torch.dtype:
        return self.unet.dtype

    @property
    def is_latent(self) -> bool:
        return self.vae is not None

    @property
    def learned_variance(self) -> bool:
        return self.unet.config.out_channels == 2 * self.unet.config.in_channels

    @property
    def latent_shape(self) -> tuple[int, int, int]:
        s = self.unet.config.sample_size
        h, w = (s, s) if isinstance(s, int) else tuple(s)
        return (self.unet.config.in_channels, h, w)

    @property
    def image_size(self) -> int:
        factor = 2 ** (len(self.vae.config.block_out_channels) - 1) if self.is_latent else 1
        return self.latent_shape[1] * factor

    def to(self, device=None, dtype=None) -> "Generator":
        kwargs = {k: v for k, v in (("device", device), ("dtype", dtype)) if v is not None}
        for module in (self.unet, self.text_encoder, self.vae):
            if module is not None and kwargs:
                module.to(**kwargs)
        self._prompt_cache.clear()
        return self

    # ------------------------------------------------------------------ text
    @torch.no_grad()
    def encode_prompts(self, prompts: Sequence[str]) -> torch.Tensor:
        """N prompts -> ``(N, L, D)``; each distinct prompt is encoded once and cached."""
        missing = [p for p in dict.fromkeys(prompts) if p not in self._prompt_cache]
        if missing:
            for p, e in zip(missing, self.embed_token_ids(self.tokenize(missing))):
                self._prompt_cache[p] = e
        return torch.stack([self._prompt_cache[p] for p in prompts])

    def tokenize(self, prompts: Sequence[str]) -> torch.Tensor:
        """Token ids ``(N, L)``, padded to the tokenizer's maximum length as SD does."""
        return self.tokenizer(list(prompts), padding="max_length", max_length=self.tokenizer.model_max_length,
                              truncation=True, return_tensors="pt").input_ids

    def embed_token_ids(self, ids: torch.Tensor, overrides: dict[int, torch.Tensor] | None = None) -> torch.Tensor:
        """Hidden states ``(N, L, D)`` from token ids ``(N, L)``.

        ``overrides`` maps a token id to an embedding ``(E,)`` or ``(N, E)`` used in place
        of that token's row of the embedding table, differentiably: the prompt attacks
        optimise such continuous tokens. (A forward hook on the input embedding layer,
        so it works for any transformers text encoder.)"""
        ids = ids.to(self.text_encoder.device)
        if not overrides:
            return self.text_encoder(ids)[0]

        def substitute(module, inputs, output):
            out = output.clone()
            for token, emb in overrides.items():
                mask = ids == token  # (N, L)
                if emb.dim() == 1:
                    out = torch.where(mask.unsqueeze(-1), emb.to(out.dtype), out)
                else:
                    out = torch.where(mask.unsqueeze(-1), emb.to(out.dtype).unsqueeze(1), out)
            return out

        handle = self.text_encoder.get_input_embeddings().register_forward_hook(substitute)
        try:
            return self.text_encoder(ids)[0]
        finally:
            handle.remove()

    def uncond_embedding(self) -> torch.Tensor:
        return self.encode_prompts([""])

    # ------------------------------------------------------------------ tokens
    def add_tokens(self, tokens: Sequence[str]) -> list[int]:
        """Add new tokens to the tokenizer and a row for each to the text encoder (once);
        returns their ids. The new rows are meant to be set through ``embed_token_ids``'s
        overrides, so transformers' mean/covariance initialisation is skipped."""
        new = [t for t in tokens if t not in self.tokenizer.get_vocab()]
        if new:
            self.tokenizer.add_tokens(new)
            self.text_encoder.resize_token_embeddings(len(self.tokenizer), mean_resizing=False)
            self._prompt_cache.clear()
        return self.tokenizer.convert_tokens_to_ids(list(tokens))

    def word_embeddings(self, words: Sequence[str]) -> torch.Tensor:
        """Input-embedding rows ``(W, E)`` of words (a word of several tokens: their mean),
        detached, on the text encoder's device."""
        table = self.text_encoder.get_input_embeddings().weight.detach()
        return torch.stack([table[self.tokenizer(w, add_special_tokens=False).input_ids].mean(0) for w in words])

    def mean_token_embedding(self, exclude: Sequence[str] = ()) -> torch.Tensor:
        """The mean row ``(E,)`` of the input-embedding table, leaving out the rows of the
        tokens in ``exclude`` that exist (e.g. those sagekit added): where a learned token
        starts."""
        table = self.text_encoder.get_input_embeddings().weight.detach()
        vocab = self.tokenizer.get_vocab()
        keep = torch.ones(table.shape[0], dtype=torch.bool, device=table.device)
        keep[[vocab[t] for t in exclude if t in vocab]] = False
        return table[keep].mean(0).clone()

    # ------------------------------------------------------------------ noise
    def initial_noise(self, seeds: Sequence[int]) -> torch.Tensor:
        """``(N, C, h, w)`` float32 on the CPU; sample i is N(0, I) from ``seeds[i]`` alone."""
        return torch.stack([torch.randn(self.latent_shape, generator=torch.Generator().manual_seed(int(s)))
                            for s in seeds])

    # ------------------------------------------------------------------ sampling
    def make_scheduler(self, name: str | None = None, steps: int | None = None):
        """A fresh scheduler (schedulers hold per-run state) with its timesteps set."""
        if name is None:
            sched = self.scheduler.__class__.from_config(self.scheduler.config)
        elif name in SCHEDULERS:
            sched = SCHEDULERS[name].from_config(self.scheduler.config)
        else:
            raise ValueError(f"unknown scheduler {name!r}; choose one of {sorted(SCHEDULERS)}")
        sched.set_timesteps(steps or self.default_steps, device=self.device)
        return sched

    def training_scheduler(self):
        """The model's noise schedule as a ``DDPMScheduler`` (``add_noise``, the training
        timesteps): what denoising losses and fine-tuning use."""
        return DDPMScheduler.from_config(self.scheduler.config)

    def _uses_variance(self, sched) -> bool:
        # Only DDPM's step() reads variance channels; the others take epsilon alone.
        return (self.learned_variance and isinstance(sched, DDPMScheduler)
                and sched.config.variance_type in ("learned", "learned_range"))

    def _model_output(self, sched, x: torch.Tensor, t, cond: torch.Tensor, uncond: torch.Tensor | None,
                      guidance: float) -> torch.Tensor:
        """One guided UNet evaluation; returns what ``sched.step`` takes (fp32)."""
        c = x.shape[1]
        x_in = sched.scale_model_input(x, t)
        if uncond is not None:
            x_in = torch.cat([x_in, x_in])
            cond = torch.cat([uncond.expand(x.shape[0], -1, -1), cond])
        out = self.unet(x_in.to(self.dtype), t, cond.to(self.dtype)).sample.float()
        if uncond is not None:
            out_u, out_c = out.chunk(2)
            eps = out_u[:, :c] + guidance * (out_c[:, :c] - out_u[:, :c])
            out = torch.cat([eps, out_c[:, c:]], dim=1)
        return out if self._uses_variance(sched) else out[:, :c]

    def denoise(self, noise: torch.Tensor, embeddings: torch.Tensor, guidance: float | None = None,
                steps: int | None = None, scheduler: str | None = None, seeds: Sequence[int] | None = None,
                trajectory: bool = False, grad: bool = False, checkpointing: bool = True,
                start_step: int = 0, stop_step: int | None = None, start_latents: torch.Tensor | None = None):
        """Run the reverse process from initial noise.

        noise ``(N, C, h, w)``; embeddings ``(N, L, D)``. ``guidance`` <= 1 disables
        classifier-free guidance (one conditional pass). ``seeds`` seed the per-sample
        noise of ancestral schedulers (DDPM), so batches stay equal to single runs.
        ``grad=True`` keeps the graph (with per-step gradient checkpointing unless
        ``checkpointing=False``). ``start_step``/``start_latents`` resume from an
        intermediate step and ``stop_step`` stops before one (used by residual gradients). Returns latents ``(N, C, h, w)``
        and, if ``trajectory``, a tensor ``(S+1, N, C, h, w)`` of every x_t on the CPU.
        """
        guidance = self.default_guidance if guidance is None else guidance
        sched = self.make_scheduler(scheduler, steps)
        generators = None
        if seeds is not None:
            # Offset so the step noise is not the initial noise again.
            generators = [torch.Generator().manual_seed(int(s) + 7919) for s in seeds]
        emb = embeddings.to(self.device)
        uncond = self.uncond_embedding().to(self.device) if guidance > 1 else None
        x = noise.to(self.device, torch.float32) * sched.init_noise_sigma if start_latents is None else start_latents
        traj = [x.detach().cpu()] if trajectory else None
        ctx = nullcontext() if grad else torch.no_grad()
        with ctx:
            for t in sched.timesteps[start_step:stop_step]:
                if grad and checkpointing:
                    out = checkpoint(self._model_output, sched, x, t, emb, uncond, guidance, use_reentrant=False)
                else:
                    out = self._model_output(sched, x, t, emb, uncond, guidance)
                kwargs = {"generator": generators} if generators is not None and isinstance(sched, DDPMScheduler) else {}
                x = sched.step(out, t, x, return_dict=False, **kwargs)[0]
                if trajectory:
                    traj.append(x.detach().cpu())
        return (x, torch.stack(traj)) if trajectory else x

    def denoise_differentiable(self, z: torch.Tensor, embeddings: torch.Tensor, mode: str = "exact",
                               k: int = 5, c: float = 1.0, **kw) -> torch.Tensor:
        """Latents with a gradient path to ``z`` (and ``embeddings``).

        ``exact``: backprop through every step, checkpointing each UNet call.
        ``residual`` (SAGE): sample without gradient to step S-k, then set
        x := sg(x) + c * (z - sg(z)) and backprop only through the last k steps.
        """
        if mode == "exact":
            return self.denoise(z, embeddings, grad=True, **kw)
        if mode != "residual":
            raise ValueError(f"unknown gradient mode {mode!r}; choose 'exact' or 'residual'")
        steps = kw.pop("steps", None) or self.default_steps
        if not 0 < k <= steps:
            raise ValueError(f"residual mode needs 0 < k <= steps, got k={k}, steps={steps}")
        x = self.denoise(z.detach(), embeddings.detach(), steps=steps, stop_step=steps - k, **kw)
        x = x.detach() + c * (z.to(x.device) - z.detach().to(x.device))
        return self.denoise(z, embeddings, steps=steps, grad=True, start_step=steps - k, start_latents=x, **kw)

    # ------------------------------------------------------------------ training
    @torch.no_grad()
    def encode_images(self, images: torch.Tensor, batch_size: int = 500) -> torch.Tensor:
        """uint8 images ``(N, 3, H, W)`` -> what the denoiser is trained on, ``(N, C, h, w)``
        float32 on the CPU: scaled VAE latent means, or pixels in [-1, 1]."""
        x = images.float() / 127.5 - 1
        if not self.is_latent:
            return x
        return torch.cat([self.vae.encode(x[i:i + batch_size].to(self.device, self.vae.dtype)).latent_dist.mode()
                          .float().cpu() for i in range(0, len(x), batch_size)]) * self.vae.config.scaling_factor

    def denoising_loss(self, x0: torch.Tensor, cond: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """The training loss of the denoiser (MSE to epsilon, or to v for v-prediction) on
        clean ``x0`` ``(B, C, h, w)`` noised at random timesteps, conditioned on ``cond``
        ``(B, L, D)``; noise and timesteps come from the CPU ``generator``. Differentiable
        in ``cond`` (textual inversion) and in the denoiser's weights."""
        sched = self.training_scheduler()
        noise = torch.randn(x0.shape, generator=generator).to(x0)
        t = torch.randint(0, sched.config.num_train_timesteps, (x0.shape[0],), generator=generator).to(x0.device)
        xt = sched.add_noise(x0, noise, t)
        out = self.unet(xt.to(self.dtype), t, cond.to(self.dtype)).sample.float()[:, : x0.shape[1]]
        want = sched.get_velocity(x0, noise, t) if sched.config.prediction_type == "v_prediction" else noise
        return torch.nn.functional.mse_loss(out, want)

    def fine_tuned(self, images: torch.Tensor, captions: Sequence[str], steps: int, lr: float = 5e-4,
                   trainable: str = "all", batch_size: int = 64, seed: int = 0, progress: bool = False) -> "Generator":
        """A copy whose denoiser continued training on (uint8 images ``(N, 3, H, W)``,
        captions) with the model's own noise schedule; this generator is left as it was.
        ``trainable``: ``"all"`` or ``"cross-attention"`` (key/value projections only)."""
        from ..toy.training.diffusion import train_unet

        tuned = copy.copy(self)
        tuned.unet = copy.deepcopy(self.unet)
        tuned._prompt_cache = {}
        x = self.encode_images(images)
        with torch.no_grad():
            text = torch.cat([self.embed_token_ids(self.tokenize(captions[i:i + 500])).float().cpu()
                              for i in range(0, len(captions), 500)])
            uncond = self.uncond_embedding().float().cpu()
        dev = tuned.unet.device
        train_unet(tuned.unet, self.training_scheduler(), x.to(dev), text.to(dev), uncond.to(dev), seed, steps,
                   batch_size, lr, ema_decay=0, trainable=trainable, progress_bar=progress)
        tuned.unet.requires_grad_(False).eval()
        return tuned

    def capture_attention(self):
        """Context manager recording the cross-attention maps of every denoiser call:
        yields ``{layer: [(B, Q, L), ...]}`` (see ``attention_maps.token_maps``)."""
        from .attention_maps import capture_cross_attention

        return capture_cross_attention(self.unet)

    # ------------------------------------------------------------------ decode
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Latents -> images ``(N, 3, H, W)`` in [0, 1] (differentiable)."""
        if self.is_latent:
            z = latents / self.vae.config.scaling_factor
            x = self.vae.decode(z.to(self.vae.dtype)).sample.float()
        else:
            x = latents.float()
        return (x / 2 + 0.5).clamp(0, 1)

    # ------------------------------------------------------------------ convenience
    def generate(self, prompts: Sequence[str], seeds: Sequence[int], guidance: float | None = None,
                 steps: int | None = None, scheduler: str | None = None, batch_size: int = 32,
                 noise: torch.Tensor | None = None, show_progress: bool = False) -> torch.Tensor:
        """Images ``(N, 3, H, W)`` in [0, 1] on the CPU for N (prompt, seed) pairs.
        ``noise`` overrides the seeded initial noise (e.g. shifted noise)."""
        if len(prompts) != len(seeds):
            raise ValueError(f"{len(prompts)} prompts but {len(seeds)} seeds")
        out = []
        rng = range(0, len(prompts), batch_size)
        for i in tqdm(rng, desc=f"generate {self.name}", disable=not show_progress, leave=False):
            p, s = list(prompts[i:i + batch_size]), list(seeds[i:i + batch_size])
            z = self.initial_noise(s) if noise is None else noise[i:i + batch_size]
            lat = self.denoise(z, self.encode_prompts(p), guidance, steps, scheduler, seeds=s)
            with torch.no_grad():
                out.append(self.decode(lat).cpu())
        return torch.cat(out)
