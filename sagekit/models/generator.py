"""Generator: the one interface studies use to draw from a diffusers text-to-image model.

This module holds what every family shares: seeded initial noise, the sampling loop over a
diffusers scheduler (classifier-free guidance, trajectories, exact and residual gradients),
prompt caching, and new-token embeddings. What differs between families (how prompts are
encoded, how the denoiser is called, packing, decoding) lives in one module per family
under ``sagekit.models.families``, each a subclass of :class:`Generator`.

Shapes used throughout:
  prompts      N strings
  embeddings   :class:`PromptEmbeds`: ``hidden (N, L, D)``, optional ``pooled (N, P)`` and ``mask (N, L)``
  noise / z    ``(N, C, h, w)`` initial noise ~ N(0, I), float32, in the family's unpacked noise space
  latents      ``(N, C, h, w)`` the model's clean output (VAE latents, or pixels in [-1, 1])
  images       ``(N, 3, H, W)`` float32 in [0, 1]
  token rows   ``(E,)``: one new token's input-embedding rows of every text encoder, concatenated

Initial noise is drawn on the CPU with one ``torch.Generator`` per sample, seeded by that
sample's seed; the same generator then draws that sample's step noise (ancestral
schedulers), as the stock pipelines do with a list of generators. So the image of a seed
does not depend on the device or the batch it is drawn in. Sampling runs the denoiser and
scheduler directly, step for step as the diffusers pipelines do, because the studies need
what ``pipeline.__call__`` hides: shifted noise, trajectories and gradients.
"""

from __future__ import annotations

import inspect
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Sequence

import torch
from diffusers import (DDIMScheduler, DDPMScheduler, DPMSolverMultistepScheduler, EulerDiscreteScheduler,
                       PNDMScheduler)
from torch.utils.checkpoint import checkpoint

from ..progress import bar as progress_bar

SCHEDULERS = {
    "ddim": DDIMScheduler,
    "ddpm": DDPMScheduler,
    "dpm": DPMSolverMultistepScheduler,
    "euler": EulerDiscreteScheduler,
    "pndm": PNDMScheduler,
}


@dataclass
class PromptEmbeds:
    """Everything a denoiser is conditioned on for N prompts.

    ``hidden`` ``(N, L, D)`` text-encoder states; ``pooled`` ``(N, P)`` a pooled text
    embedding (SDXL, SD3, Flux) or None; ``mask`` ``(N, L)`` the text attention mask where
    the denoiser takes one (PixArt) or None. Indexing, ``len``, ``detach`` and ``to`` act
    on all of them, so studies can treat it like a tensor of N rows."""

    hidden: torch.Tensor
    pooled: torch.Tensor | None = None
    mask: torch.Tensor | None = None

    def _map(self, f, mask_too: bool = True) -> "PromptEmbeds":
        return PromptEmbeds(f(self.hidden), None if self.pooled is None else f(self.pooled),
                            None if self.mask is None else (f(self.mask) if mask_too else self.mask))

    def __len__(self) -> int:
        return self.hidden.shape[0]

    def __getitem__(self, index) -> "PromptEmbeds":
        if isinstance(index, int):
            index = slice(index, index + 1)
        return self._map(lambda t: t[index.to(t.device) if torch.is_tensor(index) else index])

    def detach(self) -> "PromptEmbeds":
        return self._map(torch.Tensor.detach)

    def to(self, device=None, dtype=None) -> "PromptEmbeds":
        out = self._map(lambda t: t.to(device) if device is not None else t)
        return out._map(lambda t: t.to(dtype), mask_too=False) if dtype is not None else out

    def repeat_interleave(self, n: int) -> "PromptEmbeds":
        return self._map(lambda t: t.repeat_interleave(n, 0))

    def repeat(self, n: int) -> "PromptEmbeds":
        """All N rows, ``n`` times over: row i of copy c is row c * N + i."""
        return self._map(lambda t: t.repeat(n, *([1] * (t.dim() - 1))))

    def expand(self, n: int) -> "PromptEmbeds":
        """A batch of one, broadcast to ``n`` rows."""
        return self._map(lambda t: t.expand(n, *t.shape[1:]))

    def flat(self) -> torch.Tensor:
        """``(N, L * D [+ P])``: the whole conditioning of each prompt as one vector."""
        parts = [self.hidden.flatten(1)] + ([] if self.pooled is None else [self.pooled.flatten(1)])
        return torch.cat(parts, 1)

    @staticmethod
    def cat(items: Sequence["PromptEmbeds"]) -> "PromptEmbeds":
        first = items[0]
        return PromptEmbeds(torch.cat([e.hidden for e in items]),
                            None if first.pooled is None else torch.cat([e.pooled for e in items]),
                            None if first.mask is None else torch.cat([e.mask for e in items]))


class Generator:
    """A text-to-image model as the studies see it. Subclasses (one per family) set
    ``denoiser``, ``text_encoders`` / ``tokenizers`` (parallel lists), ``vae`` (None in
    pixel space) and ``scheduler``, and implement :meth:`_encode` and :meth:`predict`."""

    #: pipeline defaults, used unless a model has measured ones of its own (the toy models)
    DEFAULT_STEPS, DEFAULT_GUIDANCE = 50, 7.5
    #: named schedulers a study may ask for instead of the model's own
    SCHEDULERS = SCHEDULERS
    #: whether the image size is a loading option (a denoiser that fixes none: Flux)
    SETS_RESOLUTION = False

    def __init__(self, name: str, denoiser, scheduler, text_encoders: Sequence, tokenizers: Sequence, vae=None,
                 default_steps: int | None = None, default_guidance: float | None = None):
        self.name = name
        self.denoiser, self.scheduler, self.vae = denoiser, scheduler, vae
        self.text_encoders, self.tokenizers = list(text_encoders), list(tokenizers)
        self.default_steps = default_steps or self.DEFAULT_STEPS
        self.default_guidance = self.DEFAULT_GUIDANCE if default_guidance is None else default_guidance
        for module in self.modules():
            module.eval().requires_grad_(False)
        self._prompt_cache: dict[str, PromptEmbeds] = {}

    def steps_of(self, steps: int | None) -> int:
        """Sampling steps, None meaning the model's default (the one place that sentinel
        is resolved)."""
        return self.default_steps if steps is None else int(steps)

    def guidance_of(self, guidance: float | None) -> float:
        """Guidance scale, None meaning the model's default."""
        return self.default_guidance if guidance is None else float(guidance)

    # ------------------------------------------------------------------ family hooks
    def _encode(self, prompts: list[str]) -> PromptEmbeds:
        """Encode prompts with gradients (token overrides are applied by hooks)."""
        raise NotImplementedError

    def predict(self, x: torch.Tensor, t, cond: PromptEmbeds, guidance: float | None = None) -> torch.Tensor:
        """One denoiser call on sampler-space input ``x`` at scheduler timestep ``t`` (a
        scalar or one per row); the raw output in float32. ``guidance`` is for families
        that embed it (Flux-dev); classifier-free guidance happens outside."""
        raise NotImplementedError

    @property
    def latent_shape(self) -> tuple[int, int, int]:
        """``(C, h, w)`` of one sample's initial noise: the size the denoiser was built for."""
        s = self.denoiser.config.sample_size
        h, w = (s, s) if isinstance(s, int) else tuple(s)
        return (self.denoiser.config.in_channels, h, w)

    def to_sampler(self, x: torch.Tensor) -> torch.Tensor:
        """Noise-space ``(N, C, h, w)`` -> what the scheduler steps over (Flux packs it)."""
        return x

    def from_sampler(self, x: torch.Tensor) -> torch.Tensor:
        return x

    # ------------------------------------------------------------------ properties
    def modules(self) -> list[torch.nn.Module]:
        return [m for m in (self.denoiser, self.vae, *self.text_encoders) if m is not None]

    @property
    def device(self) -> torch.device:
        return self.denoiser.device

    @property
    def dtype(self) -> torch.dtype:
        return self.denoiser.dtype

    @property
    def is_latent(self) -> bool:
        return self.vae is not None

    @property
    def latent_channels(self) -> int:
        return self.latent_shape[0]

    @property
    def learned_variance(self) -> bool:
        """Whether the denoiser also predicts a variance (twice the channels it takes)."""
        cfg = self.denoiser.config
        return cfg.out_channels == 2 * cfg.in_channels

    @property
    def samples_learned_variance(self) -> bool:
        """Whether sampling draws with the learned variance: only a DDPM step reads it
        (PixArt predicts one, and its DPM-Solver drops it)."""
        return self._uses_variance(self.scheduler)

    @property
    def vae_scale_factor(self) -> int:
        return 2 ** (len(self.vae.config.block_out_channels) - 1) if self.is_latent else 1

    @property
    def image_size(self) -> int:
        return self.latent_shape[1] * self.vae_scale_factor

    def to(self, device=None, dtype=None) -> "Generator":
        kwargs = {k: v for k, v in (("device", device), ("dtype", dtype)) if v is not None}
        for module in self.modules():
            if kwargs:
                module.to(**kwargs)
        self._prompt_cache.clear()
        return self

    # ------------------------------------------------------------------ text
    @torch.no_grad()
    def encode_prompts(self, prompts: Sequence[str]) -> PromptEmbeds:
        """N prompts -> :class:`PromptEmbeds`; each distinct prompt is encoded once and cached."""
        missing = [p for p in dict.fromkeys(prompts) if p not in self._prompt_cache]
        if missing:
            emb = self._encode(missing)
            for i, p in enumerate(missing):
                self._prompt_cache[p] = emb[i]
        return PromptEmbeds.cat([self._prompt_cache[p] for p in prompts])

    def embed_prompts(self, prompts: Sequence[str], overrides: dict[str, torch.Tensor] | None = None) -> PromptEmbeds:
        """Prompts -> :class:`PromptEmbeds`, differentiably.

        ``overrides`` maps a token (added with :meth:`add_tokens`) to its rows ``(E,)`` or
        per prompt ``(N, E)`` (every text encoder's row, concatenated), used in place of
        that token's rows in the embedding tables: the prompt attacks optimise such
        continuous tokens."""
        with self._token_overrides(overrides or {}):
            return self._encode(list(prompts))

    def uncond_embedding(self) -> PromptEmbeds:
        """The unconditional (empty prompt) embedding of guidance, a batch of one."""
        return self.encode_prompts([""])

    @staticmethod
    def _token_ids(tokenizer, prompts: list[str], max_length: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Ids and attention mask ``(N, max_length)``, padded and truncated as the pipelines do."""
        out = tokenizer(prompts, padding="max_length", max_length=max_length, truncation=True,
                        add_special_tokens=True, return_tensors="pt")
        return out.input_ids, out.attention_mask

    # ------------------------------------------------------------------ tokens
    def _embedding_tables(self) -> list[torch.nn.Embedding]:
        return [enc.get_input_embeddings() for enc in self.text_encoders]

    @property
    def token_width(self) -> int:
        """E: the length of one token's rows, summed over the text encoders."""
        return sum(t.weight.shape[1] for t in self._embedding_tables())

    def _split(self, rows: torch.Tensor) -> list[torch.Tensor]:
        widths = [t.weight.shape[1] for t in self._embedding_tables()]
        if rows.shape[-1] != sum(widths):
            raise ValueError(f"token rows have width {rows.shape[-1]}; {self.name} takes {sum(widths)} ({widths})")
        return list(rows.split(widths, dim=-1))

    @contextmanager
    def _token_overrides(self, overrides: dict[str, torch.Tensor]):
        """Forward hooks on every text encoder's input embedding that put each override's
        rows where its token's id occurs (the hook sees the ids the layer is called with)."""
        handles = []
        for table, tokenizer in zip(self._embedding_tables(), self.tokenizers):
            subs = {}
            for token, rows in overrides.items():
                if token not in tokenizer.get_vocab():
                    raise KeyError(f"token {token!r} is not in {self.name}'s vocabulary; call add_tokens first")
                subs[tokenizer.convert_tokens_to_ids(token)] = rows
            index = len(handles)

            def substitute(module, inputs, output, index=index, subs=subs):
                ids = inputs[0]
                out = output
                for token_id, rows in subs.items():
                    part = self._split(rows)[index].to(out.device, out.dtype)
                    part = part.unsqueeze(1) if part.dim() == 2 else part  # (N, 1, E) or (E,)
                    out = torch.where((ids == token_id).unsqueeze(-1), part, out)
                return out

            handles.append(table.register_forward_hook(substitute))
        try:
            yield
        finally:
            for h in handles:
                h.remove()

    def add_tokens(self, tokens: Sequence[str]) -> None:
        """Add new tokens to every tokenizer and a row for each to every text encoder
        (once). The rows are meant to be set through :meth:`embed_prompts`'s overrides, so
        transformers' mean/covariance initialisation is skipped."""
        for tokenizer, enc in zip(self.tokenizers, self.text_encoders):
            new = [t for t in tokens if t not in tokenizer.get_vocab()]
            if new:
                tokenizer.add_tokens(new)
                enc.resize_token_embeddings(len(tokenizer), mean_resizing=False)
                self._prompt_cache.clear()

    def word_embeddings(self, words: Sequence[str]) -> torch.Tensor:
        """Token rows ``(W, E)`` of words (a word of several tokens: their mean), detached,
        on the CPU in float32."""
        per_encoder = []
        for table, tokenizer in zip(self._embedding_tables(), self.tokenizers):
            w = table.weight.detach()  # rows are picked where the table lives (T5's is large)
            per_encoder.append(torch.stack([w[tokenizer(x, add_special_tokens=False).input_ids].float().mean(0)
                                            for x in words]).cpu())
        return torch.cat(per_encoder, -1)

    def token_statistics(self, exclude: Sequence[str] = ()) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and standard deviation ``(E,)`` each, per coordinate, of the vocabularies'
        token rows (every encoder's, concatenated), leaving out the tokens in ``exclude``
        that exist (e.g. those sagekit added); float32 on the CPU. The mean is where a
        learned token starts; the spread is the unit of its steps."""
        means, stds = [], []
        for table, tokenizer in zip(self._embedding_tables(), self.tokenizers):
            w = table.weight.detach()
            vocab = tokenizer.get_vocab()
            keep = torch.ones(w.shape[0], dtype=torch.bool, device=w.device)
            keep[[vocab[t] for t in exclude if t in vocab]] = False
            rows = w[keep].float()
            means.append(rows.mean(0).cpu())
            stds.append(rows.std(0).cpu())
        return torch.cat(means), torch.cat(stds)

    def mean_token_embedding(self, exclude: Sequence[str] = ()) -> torch.Tensor:
        """The mean token row ``(E,)`` (see :meth:`token_statistics`)."""
        return self.token_statistics(exclude)[0]

    # ------------------------------------------------------------------ noise
    def initial_noise(self, seeds: Sequence[int]) -> torch.Tensor:
        """``(N, C, h, w)`` float32 on the CPU; sample i is N(0, I) from ``seeds[i]`` alone."""
        return torch.stack([torch.randn(self.latent_shape, generator=torch.Generator().manual_seed(int(s)))
                            for s in seeds])

    def _step_generators(self, seeds: Sequence[int]) -> list[torch.Generator]:
        """Per-sample generators positioned after their initial noise: what a stock pipeline
        given one generator per sample uses for the step noise of ancestral schedulers."""
        gens = []
        for s in seeds:
            g = torch.Generator().manual_seed(int(s))
            torch.randn(self.latent_shape, generator=g)
            gens.append(g)
        return gens

    # ------------------------------------------------------------------ sampling
    def named_scheduler(self, name: str, **config):
        """A scheduler of kind ``name`` (see ``SCHEDULERS``) on the model's noise schedule,
        with ``config`` changed; its timesteps are not set."""
        if name not in self.SCHEDULERS:
            raise ValueError(f"unknown scheduler {name!r} for {self.name}; choose one of {sorted(self.SCHEDULERS)}")
        cls = self.SCHEDULERS[name]
        # DDIM and DDPM clip the predicted x0 to [-1, 1] unless their config says not to, a
        # default meant for pixel models; a config written by a scheduler that has no such
        # option (DPM-Solver, Euler) never clipped, so its stand-in must not either (clipped
        # scaled latents give noise: 0.02 of toy's DDIM images were right, 0.98 unclipped).
        keep = {"clip_sample": False} if ("clip_sample" in inspect.signature(cls.__init__).parameters
                                          and "clip_sample" not in self.scheduler.config) else {}
        return cls.from_config(self.scheduler.config, **{**keep, **config})

    def make_scheduler(self, name: str | None = None, steps: int | None = None):
        """A fresh scheduler (schedulers hold per-run state) with its timesteps set."""
        if name is None:
            sched = self.scheduler.__class__.from_config(self.scheduler.config)
        else:
            sched = self.named_scheduler(name)
        self._set_timesteps(sched, self.steps_of(steps))
        return sched

    def other_sampler(self) -> str | None:
        """A named scheduler of another kind than the model's own (deterministic solvers
        first), to draw a found failure again: a failure that only one sampler's
        discretisation produces is not the model's. None where the family has no other."""
        own = type(self.scheduler)
        return next((n for n in ("dpm", "ddim", "euler") if n in self.SCHEDULERS and self.SCHEDULERS[n] is not own),
                    None)

    def _set_timesteps(self, sched, steps: int) -> None:
        sched.set_timesteps(steps, device=self.device)

    def training_scheduler(self):
        """The model's noise schedule as a ``DDPMScheduler`` (``add_noise``, the training
        timesteps): what denoising losses and fine-tuning use."""
        return DDPMScheduler.from_config(self.scheduler.config)

    def uses_guidance(self, guidance: float) -> bool:
        """Whether ``guidance`` means classifier-free guidance (a second, unconditional pass)."""
        return guidance > 1

    def _uses_variance(self, sched) -> bool:
        # Only DDPM's step() reads variance channels; the others take epsilon alone.
        return (self.learned_variance and isinstance(sched, DDPMScheduler)
                and sched.config.variance_type in ("learned", "learned_range"))

    def _model_output(self, x_in: torch.Tensor, t, cond: PromptEmbeds, uncond: PromptEmbeds | None,
                      guidance: float, keep_variance: bool) -> torch.Tensor:
        """One guided denoiser evaluation on scheduler-scaled input; returns what the
        scheduler's step takes (fp32). A pure function of its arguments, so that gradient
        checkpointing may run it again: the scheduler, whose state moves on, stays outside."""
        n = x_in.shape[0]
        if uncond is not None:
            x_in = torch.cat([x_in, x_in])
            cond = PromptEmbeds.cat([uncond.expand(n), cond])
        out = self.predict(x_in.to(self.dtype), t, cond.to(dtype=self.dtype), guidance)
        if out.dim() != 4:  # packed tokens (Flux): no variance channels, no second pass
            return out
        c = self.latent_channels
        if uncond is not None:
            out_u, out_c = out.chunk(2)
            eps = out_u[:, :c] + guidance * (out_c[:, :c] - out_u[:, :c])
            out = torch.cat([eps, out_c[:, c:]], dim=1)
        return out if keep_variance else out[:, :c]

    def _step(self, sched, out, t, x, generators):
        kwargs = {"generator": generators} if generators is not None and isinstance(sched, DDPMScheduler) else {}
        return sched.step(out, t, x, return_dict=False, **kwargs)[0]

    def denoise(self, noise: torch.Tensor, embeddings: PromptEmbeds, guidance: float | None = None,
                steps: int | None = None, scheduler: str | None = None, seeds: Sequence[int] | None = None,
                trajectory: bool = False, grad: bool = False, checkpointing: bool = True,
                stop_step: int | None = None, grad_from: int = 0, edit_at: int | None = None, edit=None):
        """Run the reverse process from initial noise.

        noise ``(N, C, h, w)``; embeddings N rows. ``guidance`` <= 1 disables
        classifier-free guidance (one conditional pass). ``seeds`` seed the per-sample
        step noise of ancestral schedulers (DDPM), so batches stay equal to single runs
        (without them one generator seeded 0 draws it for the batch). ``grad=True`` keeps
        the graph from step ``grad_from`` on (with per-step gradient checkpointing unless
        ``checkpointing=False``); ``stop_step`` stops before that step; ``edit`` maps x_t
        ``(N, C, h, w)`` to a new x_t before step ``edit_at`` (residual gradients). One
        scheduler serves the whole run, so multistep solvers keep their history. Returns
        latents ``(N, C, h, w)`` and, if ``trajectory``, ``(S+1, N, C, h, w)`` of every x_t
        on the CPU.
        """
        guidance = self.guidance_of(guidance)
        sched = self.make_scheduler(scheduler, steps)
        generators = self._step_generators(seeds) if seeds is not None else torch.Generator().manual_seed(0)
        emb = embeddings.to(self.device)
        uncond = self.uncond_embedding().to(self.device) if self.uses_guidance(guidance) else None
        # flow-matching schedulers start from the noise itself and have no init_noise_sigma
        x = self.to_sampler(noise.to(self.device, torch.float32)) * getattr(sched, "init_noise_sigma", 1.0)
        traj = [self.from_sampler(x).detach().cpu()] if trajectory else None
        for i, t in enumerate(sched.timesteps[:stop_step]):
            with torch.enable_grad() if grad and i >= grad_from else torch.no_grad():
                if edit is not None and i == edit_at:
                    x = self.to_sampler(edit(self.from_sampler(x)))
                # e.g. Euler divides by the sigma of its current step: scale before checkpointing
                scale = getattr(sched, "scale_model_input", None)
                x_in = scale(x, t) if scale is not None else x
                args = (x_in, t, emb, uncond, guidance, self._uses_variance(sched))
                if grad and i >= grad_from and checkpointing:
                    out = checkpoint(self._model_output, *args, use_reentrant=False)
                else:
                    out = self._model_output(*args)
                x = self._step(sched, out, t, x, generators)
            if trajectory:
                traj.append(self.from_sampler(x).detach().cpu())
        x = self.from_sampler(x)
        return (x, torch.stack(traj)) if trajectory else x

    def denoise_differentiable(self, z: torch.Tensor, embeddings: PromptEmbeds, mode: str = "exact",
                               k: int = 5, c: float = 1.0, **kw) -> torch.Tensor:
        """Latents with a gradient path to ``z`` (and ``embeddings``).

        ``exact``: backprop through every step, checkpointing each denoiser call.
        ``residual`` (SAGE): sample without gradient to step S-k, there set
        x := sg(x) + c * (z - sg(z)), and backprop only through the last k steps. The
        values are those of an ordinary run; only the gradient path is cut short.
        """
        if mode == "exact":
            return self.denoise(z, embeddings, grad=True, **kw)
        if mode != "residual":
            raise ValueError(f"unknown gradient mode {mode!r}; choose 'exact' or 'residual'")
        steps = self.steps_of(kw.pop("steps", None))
        if not 0 < k <= steps:
            raise ValueError(f"residual mode needs 0 < k <= steps, got k={k}, steps={steps}")
        z_dev = z.to(self.device)

        def reattach(x):
            return x.detach() + c * (z_dev - z_dev.detach())

        return self.denoise(z.detach(), embeddings, steps=steps, grad=True, grad_from=steps - k,
                            edit_at=steps - k, edit=reattach, **kw)

    # ------------------------------------------------------------------ training
    @torch.no_grad()
    def encode_images(self, images: torch.Tensor, batch_size: int = 500) -> torch.Tensor:
        """uint8 images ``(N, 3, H, W)`` -> what the denoiser is trained on, ``(N, C, h, w)``
        float32 on the CPU: scaled VAE latent means, or pixels in [-1, 1]."""
        x = images.float() / 127.5 - 1
        if not self.is_latent:
            return x
        means = torch.cat([self.vae.encode(x[i:i + batch_size].to(self.device, self.vae.dtype)).latent_dist.mode()
                           .float().cpu() for i in range(0, len(x), batch_size)])
        return (means - self._vae_shift()) * self.vae.config.scaling_factor

    def _vae_shift(self) -> float:
        return getattr(self.vae.config, "shift_factor", None) or 0.0

    def denoising_loss(self, x0: torch.Tensor, cond: PromptEmbeds, generator: torch.Generator) -> torch.Tensor:
        """The training loss of the denoiser (MSE to epsilon, or to v for v-prediction) on
        clean ``x0`` ``(B, C, h, w)`` noised at random timesteps, conditioned on ``cond``
        (B rows); noise and timesteps come from the CPU ``generator``. Differentiable in
        ``cond`` (textual inversion) and in the denoiser's weights."""
        sched = self.training_scheduler()
        noise = torch.randn(x0.shape, generator=generator).to(x0)
        t = torch.randint(0, sched.config.num_train_timesteps, (x0.shape[0],), generator=generator).to(x0.device)
        xt = sched.add_noise(x0, noise, t)
        out = self.predict(xt.to(self.dtype), t, cond.to(x0.device, self.dtype))[:, : x0.shape[1]]
        want = sched.get_velocity(x0, noise, t) if sched.config.prediction_type == "v_prediction" else noise
        return torch.nn.functional.mse_loss(out, want)

    def fine_tune_data(self, images: torch.Tensor, captions: Sequence[str]) -> tuple:
        """``(copy, latents, text states, empty prompt's states)``: a copy whose denoiser
        may be trained on the images and captions (SD-layout UNets; any family trains LoRA
        adapters instead, ``models.lora``)."""
        raise NotImplementedError(f"fine-tuning the denoiser's own weights is not implemented for "
                                  f"{type(self).__name__}; use LoRA (trainable 'lora')")

    def capture_attention(self):
        """Context manager recording the text attention maps of every denoiser call:
        yields ``{layer: [(B, Q, L), ...]}`` (see ``attention_maps.token_maps``)."""
        from .attention_maps import capture_text_attention

        return capture_text_attention(self.denoiser)

    # ------------------------------------------------------------------ decode
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Latents ``(N, C, h, w)`` -> images ``(N, 3, H, W)`` in [0, 1] (differentiable)."""
        if self.is_latent:
            z = latents / self.vae.config.scaling_factor + self._vae_shift()
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
        for i in progress_bar(rng, desc=f"generate {self.name}", progress=show_progress):
            p, s = list(prompts[i:i + batch_size]), list(seeds[i:i + batch_size])
            z = self.initial_noise(s) if noise is None else noise[i:i + batch_size]
            lat = self.denoise(z, self.encode_prompts(p), guidance, steps, scheduler, seeds=s)
            with torch.no_grad():
                out.append(self.decode(lat).cpu())
        return torch.cat(out)

