"""Train the whole toy world from one seed: ``sagekit toy train``.

Order matters: the CLIP text tower becomes the (frozen) text encoder of every diffusion
model, and the VAE must exist before the latent UNets train on its latents.
``sagekit toy train --only PART`` retrains one generator part (the caption LM or one
UNet), ``--only generators`` all of them, on the shipped VAE and text encoder.
"""

from __future__ import annotations

import json
import platform
import shutil
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

import timm
import torch
from diffusers import AutoencoderKL, IFPipeline, StableDiffusionPipeline
from transformers import CLIPTextModel, PreTrainedTokenizerFast

from .. import architectures as arch
from ..text import MAX_LENGTH, build_tokenizer, vocabulary
from ..attributes import JUDGE_LABELS, JUDGE_SCENES, scored_examples, training_targets
from ..grammar import NO_NOISE, CaptionNoise
from ..world import WorldConfig, describe_all, make_dataset
from .autoencoder import reconstruct, train_autoencoder
from .checkpoint import discard_training_state
from .common import Timer, check_finite
from .diffusion import END_STATES, train_unet
from .grounding import grounding_targets
from .judges import calibrate, scores, timm_model, train_judge, train_realism_judge
from .text_models import LM_TAILS, lm_corpus, train_caption_lm, train_clip


UNET_PARTS = ("toy", "toy-latent-learned", "toy-pixel")


@dataclass
class UNetRecipe:
    """How one toy UNet trains: ``steps`` at ``batch`` and learning rate ``lr``, and how it
    learns to read the prompt (toy world 3, ``sagekit.toy.probe``).

    ``text_embed``: the pooled text embedding added to the time embedding (a global path
    beside cross-attention, as SDXL's pooled CLIP embedding). ``end_states``: what happens to
    the states from ``<eos>`` on for ``end_rate`` of the training prompts ("keep", "mask":
    the empty prompt's, "shuffle": another prompt's, "mask-then-shuffle": masked for the
    first ``end_switch`` of the steps, then shuffled). Masked ends carry no prompt, so the
    UNet learns the words fast (pilots: 0.70 right at 3000 steps against 0.15-0.27
    shuffled), but at sampling time the real ends are new to it and move the image (end
    swap 0.90); shuffled ends are ordinary states that say nothing, and 1200 steps of them
    after the masked 3000 taught the UNet to ignore them (end swap 0.21, word swap 1.00).
    ``grounding``: weight of the word-grounding loss on the cross-attention
    (``grounding.py``); 0: none. ``caption_noise``: the UNet's training captions are
    wrong at these rates the way alt-text is (``sagekit.toy.grammar.CaptionNoise``; the
    same scenes and images, other words), so it learns the loose binding real models
    learn; ``NO_NOISE``: every caption true."""

    steps: int
    batch: int = 64
    lr: float = 1e-3
    text_embed: bool = True
    end_states: str = "keep"
    end_rate: float = 0.0
    end_switch: float = 0.7
    grounding: float = 0.0
    caption_noise: CaptionNoise = NO_NOISE

    def __post_init__(self):
        if not isinstance(self.caption_noise, CaptionNoise):
            raise ValueError(f"caption_noise must be a CaptionNoise, got {self.caption_noise!r}")
        if self.end_states not in END_STATES or not 0 <= self.end_rate <= 1 or not 0 <= self.end_switch <= 1:
            raise ValueError(f"end_states must be one of {END_STATES}, end_rate and end_switch in [0, 1]; got "
                             f"{self.end_states!r}, {self.end_rate!r}, {self.end_switch!r}")
        if not self.grounding >= 0:
            raise ValueError(f"grounding is a loss weight >= 0, got {self.grounding!r}")
        if self.steps < 1 or self.batch < 1 or not self.lr > 0:
            raise ValueError(f"steps and batch must be >= 1 and lr > 0, got {self.steps!r}, {self.batch!r}, {self.lr!r}")


@dataclass
class TrainConfig:
    """Every knob of ``sagekit toy train``; the defaults reproduce the shipped weights."""

    seed: int = 0
    n_train: int = 60000
    n_judge: int = 20000  # the unbiased world, for judges and CLIP
    n_test: int = 2000  # unbiased, twice: one set calibrates the judges, the other scores them
    judge_steps: int = 400  # count, background, position, realism: 1.000 / 1.000 / 1.000 / 0.994 at 400
    object_judge_steps: int = 800  # at 400 the mobilenet read 0.879 of world 2's objects right
    relation_steps: int = 2500  # 1.000 of 4000 once pairs sat on one line (0.974 when diagonals were allowed)
    clip_steps: int = 1200  # at 500 the zero-shot verifier read 0.56 of world 2's objects right
    lm_steps: int = 300
    vae_steps: int = 1200  # world 2's small objects: reconstructions judged right 0.936 at 600 steps, 0.979 at 1200
    # One recipe per UNet (``UNetRecipe``): each is retrained on its own (``--only``), so
    # each keeps the recipe its shipped weights were trained with.
    unets: dict = field(default_factory=lambda: {
        # `toy` reads the words (README, "Does a generator read words?"): the masked-then-
        # shuffled ends and a light grounding loss, 9000 steps; the shipped weights meet the
        # probe's bars and draw 0.945 of 384 right at DPM-Solver++ 20 steps and guidance 7.5
        # (a first run of this recipe: 0.91 there, 0.80 at world 2's 10 steps and guidance 5).
        # The other two keep world 2's recipe (0.930 and 0.867 of 384 right) until retrained.
        "toy": UNetRecipe(9000, end_states="mask-then-shuffle", end_rate=1.0, grounding=0.001),
        "toy-latent-learned": UNetRecipe(3000),
        "toy-pixel": UNetRecipe(1800),
    })
    # What the caption LM reads after a share of the captions (``lm_corpus``): "words"
    # (uniform words, toy world 2) or "phrases" (second objects, relations, counts, places).
    lm_tails: str = "words"
    threads: int = 0  # 0: torch's default
    only: str = ""  # "" trains everything; one of ONLY_CHOICES retrains just that (``train_only``)

    def __post_init__(self):
        if self.lm_tails not in LM_TAILS:
            raise ValueError(f"lm_tails must be one of {LM_TAILS}, got {self.lm_tails!r}")
        if set(self.unets) != set(UNET_PARTS) or not all(isinstance(r, UNetRecipe) for r in self.unets.values()):
            raise ValueError(f"unets must map each of {', '.join(UNET_PARTS)} to a UNetRecipe, got {self.unets!r}")

    def with_unets(self, **changes) -> "TrainConfig":
        """This config with ``changes`` (``UNetRecipe`` fields) applied to every UNet's recipe."""
        return replace(self, unets={k: replace(r, **changes) for k, r in self.unets.items()})

    def scaled(self, factor: float) -> "TrainConfig":
        """Every data set size and step count times ``factor`` (at least 2 steps, and data
        sets no smaller than the smallest that still cover every label and batch); batch
        sizes and learning rates stay. ``factor`` 1 is this config."""
        if factor == 1:
            return self
        floors = {"n_train": 400, "n_judge": 300, "n_test": 50}
        sizes = {f.name: max(floors.get(f.name, 2), round(getattr(self, f.name) * factor)) for f in fields(self)
                 if f.name.startswith("n_") or f.name.endswith("_steps")}
        unets = {k: replace(r, steps=max(2, round(r.steps * factor))) for k, r in self.unets.items()}
        return replace(self, unets=unets, **sizes)




@torch.no_grad()
def _encode_text(text_encoder: CLIPTextModel, tokenizer, captions: list[str], batch_size: int = 2000) -> torch.Tensor:
    out = []
    for i in range(0, len(captions), batch_size):
        ids = tokenizer(captions[i:i + batch_size], padding="max_length", max_length=MAX_LENGTH,
                        truncation=True, return_tensors="pt").input_ids
        out.append(text_encoder(ids).last_hidden_state)
    return torch.cat(out)


def _eos_positions(tokenizer, captions: list[str]) -> torch.Tensor:
    """Where each caption's ``<eos>`` sits ``(N,)``."""
    ids = tokenizer(captions, padding="max_length", max_length=MAX_LENGTH, truncation=True,
                    return_tensors="pt").input_ids
    return (ids == tokenizer.eos_token_id).int().argmax(1)


class _Reading:
    """``train_unet``'s keyword arguments for how each UNet learns to read the prompts of
    ``data`` (a ``SceneBatch``); the ``<eos>`` positions and grounding targets are computed
    once, when the first recipe asks for them."""

    def __init__(self, tokenizer, data):
        self.tokenizer, self.data, self._eos, self._targets = tokenizer, data, None, None

    def __call__(self, recipe: UNetRecipe) -> dict:
        kw = {}
        if recipe.end_states != "keep":
            if self._eos is None:
                self._eos = _eos_positions(self.tokenizer, self.data.captions)
            kw.update(end_states=recipe.end_states, end_rate=recipe.end_rate, end_switch=recipe.end_switch,
                      eos_index=self._eos)
        if recipe.grounding > 0:
            if self._targets is None:
                d = self.data
                self._targets = grounding_targets(d.scenes, d.captions, self.tokenizer, d.images)
            kw.update(grounding=recipe.grounding, grounding_targets=self._targets)
        return kw


def train_toy_world(out_dir: str | Path, config: TrainConfig | None = None) -> dict:
    """Train every toy model and write them under ``out_dir`` (safetensors).
    Returns the training log (seconds per stage, held-out figures), also saved as
    ``out_dir/training.json``."""
    cfg = config or TrainConfig()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    out = Path(out_dir)
    tmp = out.with_name(out.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    timer = Timer()
    log: dict = {"config": asdict(cfg), "torch": torch.__version__, "threads": torch.get_num_threads(),
                 "machine": platform.processor() or platform.machine()}

    world = WorldConfig()
    with timer("data"):
        data = make_dataset(cfg.n_train, cfg.seed, world, workers=2)
        judge_data = make_dataset(cfg.n_judge, cfg.seed + 20_000, world.unbiased(), workers=2)
        test = make_dataset(cfg.n_test, cfg.seed + 30_000, world.unbiased())
    tokenizer = build_tokenizer()

    log["world"] = asdict(world)
    log["judges"] = _train_judges(tmp / "judges", cfg, world, timer)

    with timer("clip"):
        clip = train_clip(judge_data, tokenizer, cfg.seed + 200, steps=cfg.clip_steps)
    check_finite(clip, "toy CLIP")
    clip.save_pretrained(tmp / "clip")
    tokenizer.save_pretrained(tmp / "clip")

    # The CLIP text tower, frozen, is the text encoder of both generators.
    text_encoder = CLIPTextModel(arch.text_config())
    text_encoder.load_state_dict(clip.text_model.state_dict())
    text_encoder.eval().requires_grad_(False)

    with timer("vae"):
        vae = train_autoencoder(data, cfg.seed + 400, steps=cfg.vae_steps)
    check_finite(vae, "toy VAE")
    resnet = _load_timm_judge(tmp / "judges" / "resnet")
    single = [i for i, s in enumerate(test.scenes) if s.kind in ("one", "many")]
    log["vae_recon_judge_acc"] = scores(resnet, reconstruct(vae, test.float_images()[single]),
                                        test.labels[single])["acc"]
    _train_generators(tmp, cfg, data, world, tokenizer, text_encoder, vae, timer, GENERATOR_PARTS, checkpoints_of(out))

    log["seconds"] = timer.seconds
    log["total_seconds"] = round(sum(v for k, v in timer.seconds.items()), 1)
    (tmp / "training.json").write_text(json.dumps(log, indent=2))
    # Replace the old weights only once everything trained; the UNets' states go after.
    if out.exists():
        shutil.rmtree(out)
    tmp.rename(out)
    shutil.rmtree(checkpoints_of(out), ignore_errors=True)
    return log


def _train_judges(out: Path, cfg: "TrainConfig", world: WorldConfig, timer) -> dict:
    """Train, calibrate and score every toy judge on the unbiased world; save each under
    ``out/<kind>``. The temperature is fitted on augmented held-out images (generated
    images are imperfect too) and kept in [0.25, 20]: a judge right on every calibration
    image would otherwise be sharpened without end, and a saturated softmax gives the
    searches no gradient. Returns ``{kind: {"acc", "ece", "n", "temperature", ...}}``
    (acc on clean held-out renders; ``acc_augmented`` and ``ece`` on augmented ones)."""
    from .common import augment

    log, unbiased = {}, world.unbiased()
    for i, kind in enumerate(arch.JUDGE_ARCHS):
        scene = JUDGE_SCENES.get(kind)
        seed = cfg.seed + 100 + i
        with timer(f"judge_{kind}"):
            n = cfg.n_judge // 2 if scene else cfg.n_judge
            data = make_dataset(n, cfg.seed + 20_000 + (i if scene else 0), unbiased, kind=scene, workers=2)
            calib = make_dataset(cfg.n_test, cfg.seed + 10_000 + i, unbiased, kind=scene)
            if kind == "realism":
                judge = train_realism_judge(data.images, seed, steps=cfg.judge_steps, lr=arch.JUDGE_LR[kind])
            else:
                steps = {"relation": cfg.relation_steps, **{k: cfg.object_judge_steps for k in arch.OBJECT_JUDGES}
                         }.get(kind, cfg.judge_steps)
                judge = train_judge(kind, data.images, training_targets(kind, data.scenes), seed, steps=steps,
                                    lr=arch.JUDGE_LR[kind])
            images, targets = scored_examples(kind, calib.float_images(), calib.scenes, seed)
            t = calibrate(judge, augment(images, torch.Generator().manual_seed(seed)), targets, bounds=(0.25, 20))
        test = make_dataset(cfg.n_test, cfg.seed + 30_000 + i, unbiased, kind=scene)
        images, targets = scored_examples(kind, test.float_images(), test.scenes, seed + 2)
        rough = scores(judge, augment(images, torch.Generator().manual_seed(seed + 1)), targets)
        log[kind] = {**scores(judge, images, targets), "acc_augmented": rough["acc"], "ece": rough["ece"],
                     "temperature": round(t, 4)}
        timm.models.save_for_hf(
            timm_model(judge), out / kind, safe_serialization=True,
            model_config={"label_names": list(JUDGE_LABELS[kind]), "sagekit_edge": kind == "edge"},
        )
    return log


@torch.no_grad()
def _encode_latents(vae: AutoencoderKL, images: torch.Tensor) -> torch.Tensor:
    """uint8 images ``(N, 3, 32, 32)`` -> scaled latent means ``(N, 4, 16, 16)``."""
    vae = vae.float()
    return torch.cat([vae.encode(images[i:i + 1000].float() / 127.5 - 1).latent_dist.mode()
                      for i in range(0, len(images), 1000)]) * vae.config.scaling_factor


def _save_latent(path: Path, vae, text_encoder, tokenizer, unet, learned: bool) -> None:
    StableDiffusionPipeline(
        vae=vae.half(), text_encoder=text_encoder, tokenizer=tokenizer, unet=unet.half(),
        scheduler=arch.sample_scheduler(learned, latent=True), safety_checker=None, feature_extractor=None,
        requires_safety_checker=False,
    ).save_pretrained(path, safe_serialization=True)


GENERATOR_PARTS = ("caption-lm", *UNET_PARTS)


def checkpoints_of(weights: Path) -> Path:
    """Where the UNets of the weights folder ``weights`` keep their training states while
    they train (``checkpoint.py``): beside it, so nothing in it but weights."""
    return weights.with_name(weights.name + ".checkpoints")
# ``--only``: one generator part, or all of them (the caption LM and the three UNets: what a
# change of captions or reading levers retrains; the judges, CLIP and VAE stay).
ONLY_CHOICES = (*GENERATOR_PARTS, "generators")


def _train_generators(out: Path, cfg: TrainConfig, data, world: WorldConfig, tokenizer, text_encoder, vae, timer,
                      parts: tuple[str, ...], checkpoints: Path) -> None:
    """Train the ``parts`` (of :data:`GENERATOR_PARTS`) on the world ``data`` with the frozen
    ``text_encoder`` and ``vae``, and save each under ``out/<part>``. Each UNet's training
    state is kept in ``checkpoints/<part>`` (see ``checkpoint.py``): a rerun after a crash
    resumes it."""
    if "caption-lm" in parts:
        with timer("caption_lm"):
            corpus = lm_corpus(data.captions, vocabulary()[4:], cfg.seed + 301, tails=cfg.lm_tails)
            lm = train_caption_lm(corpus, tokenizer, cfg.seed + 300, steps=cfg.lm_steps)
        check_finite(lm, "caption LM")
        lm.save_pretrained(out / "caption-lm")
        tokenizer.save_pretrained(out / "caption-lm")
    if not set(parts) - {"caption-lm"}:
        return
    captioned: dict = {}  # caption noise -> (text states, _Reading) of the data captioned with it
    with timer("encode_text"):
        uncond = _encode_text(text_encoder, tokenizer, [""])
        for noise in {cfg.unets[p].caption_noise for p in parts if p in UNET_PARTS}:
            captions = data.captions
            if noise != NO_NOISE:  # the same scenes, worded from the same stream as make_dataset's
                captions = describe_all(data.scenes, cfg.seed, world.synonym_rate, noise)
            captioned[noise] = _encode_text(text_encoder, tokenizer, captions), _Reading(tokenizer, replace(data, captions=captions))
    with timer("latent_unet"):
        latents = _encode_latents(vae, data.images)

    def train(part: str, unet, scheduler, x0, seed: int, **kw):
        r = cfg.unets[part]
        text, reading = captioned[r.caption_noise]
        return train_unet(unet, scheduler, x0, text, uncond, seed, r.steps, r.batch, r.lr, **kw, **reading(r),
                          checkpoint=checkpoints / part)

    if "toy" in parts:
        with timer("latent_unet_train"):
            unet = train("toy", arch.latent_unet(text_embed=cfg.unets["toy"].text_embed), arch.train_scheduler(False),
                         latents, cfg.seed + 500)
        check_finite(unet, "toy UNet")
        _save_latent(out / "toy", vae, text_encoder, tokenizer, unet, learned=False)
    if "toy-latent-learned" in parts:
        # The latent-GLIDE of paper 001: toy's VAE, UNet layout and data, with a learned
        # variance trained by the variational bound (as toy-pixel).
        with timer("latent_learned_unet_train"):
            recipe = cfg.unets["toy-latent-learned"]
            unet = train("toy-latent-learned", arch.latent_unet(learned_variance=True, text_embed=recipe.text_embed),
                         arch.train_scheduler(True), latents, cfg.seed + 700, pixels=False)
        check_finite(unet, "toy-latent-learned UNet")
        _save_latent(out / "toy-latent-learned", vae, text_encoder, tokenizer, unet, learned=True)
    del latents
    if "toy-pixel" in parts:
        with timer("pixel_unet_train"):
            pixels = data.images.float() / 127.5 - 1
            # fp32: bf16 autocast measured 10% slower per step on this CPU (0.53 vs 0.49 s at batch 64)
            punet = train("toy-pixel", arch.pixel_unet(text_embed=cfg.unets["toy-pixel"].text_embed),
                          arch.train_scheduler(True), pixels, cfg.seed + 600)
        check_finite(punet, "toy-pixel UNet")
        IFPipeline(
            tokenizer=tokenizer, text_encoder=text_encoder, unet=punet.half(),
            scheduler=arch.sample_scheduler(True), safety_checker=None, feature_extractor=None,
            watermarker=None, requires_safety_checker=False,
        ).save_pretrained(out / "toy-pixel", safe_serialization=True)


def train_only(out_dir: str | Path, config: TrainConfig) -> dict:
    """Retrain some models (``config.only``: one of :data:`GENERATOR_PARTS`, or
    ``"generators"``: all of them) on the VAE and text encoder already in
    ``out_dir/toy``; the judges, CLIP and VAE stay. Returns the updated training log. (The
    shipped VAE is stored in fp16, so its latents differ from a full run's fp32 ones in the
    last bits; the data, seed and step budget are the same.)"""
    cfg = config
    if cfg.only not in ONLY_CHOICES:
        raise ValueError(f"--only must be one of {', '.join(ONLY_CHOICES)}, got {cfg.only!r}")
    parts = GENERATOR_PARTS if cfg.only == "generators" else (cfg.only,)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    out = Path(out_dir)
    base = out / "toy"
    vae = AutoencoderKL.from_pretrained(base / "vae", use_safetensors=True).float().eval()
    text_encoder = CLIPTextModel.from_pretrained(base / "text_encoder", use_safetensors=True).float().eval()
    tokenizer = PreTrainedTokenizerFast.from_pretrained(base / "tokenizer")
    timer = Timer()
    with timer("data"):
        world = WorldConfig()
        data = make_dataset(cfg.n_train, cfg.seed, world, workers=2)
    tmp = out / f".{cfg.only}.partial"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    _train_generators(tmp, cfg, data, world, tokenizer, text_encoder, vae, timer, parts, checkpoints_of(out))
    # Replace the old weights only once every part trained.
    for part in parts:
        final = out / part
        if final.exists():
            shutil.rmtree(final)
        (tmp / part).rename(final)
    shutil.rmtree(tmp)
    states = checkpoints_of(out)
    for part in parts:
        discard_training_state(states / part)
    if states.is_dir() and not any(states.iterdir()):
        states.rmdir()
    log_path = out / "training.json"
    log = json.loads(log_path.read_text()) if log_path.exists() else {"seconds": {}}
    trained = {k: v for k, v in timer.seconds.items() if k.endswith("_train") or k == "caption_lm"}
    log["seconds"].update(trained)
    log["total_seconds"] = round(sum(log["seconds"].values()), 1)
    # The config that reproduces the folder: this one, with the recipes of the UNets not
    # retrained kept from the folder's log where it has them.
    config = {k: v for k, v in asdict(cfg).items() if k != "only"}
    kept = {k: v for k, v in log.get("config", {}).get("unets", {}).items() if k not in parts}
    log["config"] = {**config, "unets": {**config["unets"], **kept}}
    log_path.write_text(json.dumps(log, indent=2))
    return log


def _load_timm_judge(path: Path):
    from ...models.registry import load_judge_folder

    return load_judge_folder(path, f"toy-{Path(path).name}")
