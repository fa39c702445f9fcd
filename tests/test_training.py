"""Toy training is deterministic by seed, writes loadable safetensors, and its losses are right."""

import hashlib
from dataclasses import asdict, replace

import pytest
import torch

from sagekit.toy.architectures import train_scheduler
from sagekit.toy.training import TrainConfig, UNetRecipe, train_toy_world
from sagekit.toy.training.vlb import vlb_term

TINY = dict(n_train=400, n_judge=300, n_test=50, judge_steps=2, object_judge_steps=2, relation_steps=2, clip_steps=2, lm_steps=2,
            vae_steps=2)


def tiny(**kw) -> TrainConfig:
    """A seconds-long world: every step count 2, UNet batches of 8, the recipes' reading levers kept."""
    return TrainConfig(**TINY, **kw).with_unets(steps=2, batch=8)


def _digest(folder):
    h = hashlib.sha256()
    for f in sorted(folder.rglob("*.safetensors")):
        h.update(f.relative_to(folder).as_posix().encode())
        h.update(f.read_bytes())
    return h.hexdigest()


def test_training_is_a_function_of_the_seed(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    train_toy_world(a, tiny(seed=1))
    train_toy_world(b, tiny(seed=1))
    assert _digest(a) == _digest(b)
    assert not (tmp_path / "a.partial").exists() and not (tmp_path / "a.checkpoints").exists()
    from sagekit.models.registry import load_generator, load_judge_folder

    assert load_judge_folder(a / "judges" / "edge", "toy-edge").labels[0] == "red circle"
    assert load_generator(str(a / "toy")).latent_shape == (4, 16, 16)
    learned = load_generator(str(a / "toy-latent-learned"))
    assert learned.is_latent and learned.learned_variance and learned.latent_shape == (4, 16, 16)


def test_only_the_learned_latent_model_is_retrained(tmp_path, monkeypatch):
    """`sagekit toy train --only toy-latent-learned`: a new model on the folder's own VAE
    and text encoder; everything else stays byte for byte."""
    from sagekit.cli import main
    from sagekit.models.registry import load_generator
    from sagekit.toy.training import train_only

    folder = tmp_path / "w"
    train_toy_world(folder, tiny(seed=1))
    before = {f: f.read_bytes() for f in folder.rglob("*.safetensors") if "toy-latent-learned" not in f.parts}
    old = (folder / "toy-latent-learned" / "unet" / "diffusion_pytorch_model.safetensors").read_bytes()
    cfg = tiny(seed=2, only="toy-latent-learned")
    cfg.unets["toy"] = replace(cfg.unets["toy"], lr=0.5)  # toy is not retrained: the log keeps its recipe
    log = train_only(folder, cfg)
    assert log["config"]["seed"] == 2 and log["config"]["unets"]["toy"]["lr"] == 1e-3
    assert {f: f.read_bytes() for f in before} == before
    assert (folder / "toy-latent-learned" / "unet" / "diffusion_pytorch_model.safetensors").read_bytes() != old
    assert log["seconds"]["latent_learned_unet_train"] > 0 and not list(folder.glob(".*partial"))
    gen = load_generator(str(folder / "toy-latent-learned"))
    assert gen.learned_variance and gen.scheduler.config.variance_type == "learned_range"
    assert not gen.scheduler.config.clip_sample  # latents are not bounded to [-1, 1]
    # --only generators: the caption LM and the three UNets anew; judges, CLIP, VAE and text encoder stay
    files = {f: f.read_bytes() for f in folder.rglob("*.safetensors")}
    retrained = {f: b for f, b in files.items() if f.parent.name == "unet" or "caption-lm" in f.parts}
    kept = {f: b for f, b in files.items() if f not in retrained}
    assert len(retrained) == 4 and {"judges", "clip", "vae", "text_encoder"} <= {p for f in kept for p in f.parts}
    log = train_only(folder, tiny(seed=3, only="generators", lm_tails="phrases"))
    assert {f: f.read_bytes() for f in kept} == kept
    assert all(f.read_bytes() != b for f, b in retrained.items())
    assert {"caption_lm", "latent_unet_train", "latent_learned_unet_train", "pixel_unet_train"} <= set(log["seconds"])
    assert log["config"]["lm_tails"] == "phrases" and not list(folder.glob(".*partial"))
    assert not (tmp_path / "w.checkpoints").exists()  # the UNets' training states go once their weights are saved
    # --only caption-lm: the LM alone, no UNet touched
    files = {f: f.read_bytes() for f in folder.rglob("*.safetensors")}
    log = train_only(folder, tiny(seed=4, only="caption-lm"))
    changed = {f for f, b in files.items() if f.read_bytes() != b}
    assert changed and all("caption-lm" in f.parts for f in changed) and log["seconds"]["caption_lm"] > 0
    # a recipe's caption noise rewords that UNet's training captions (the same scenes) and no other's
    from sagekit.toy import training
    from sagekit.toy.grammar import NO_NOISE, CaptionNoise, objects_named
    from sagekit.toy.scenes import COLOURS, SHAPES
    from sagekit.toy.world import describe_all, make_dataset

    data = make_dataset(400, 5)
    assert describe_all(data.scenes, 5, 0.05, NO_NOISE) == data.captions  # the stream make_dataset words with
    noise = CaptionNoise(colour_swap=1.0)
    noisy = describe_all(data.scenes, 5, 0.05, noise)

    def true_of_scene(caption, scene):  # names exactly the scene's colour-shape pairs
        return set(objects_named(caption)) == {f"{list(COLOURS)[t.colour]} {SHAPES[t.shape]}" for t in scene.things}

    two = [i for i, sc in enumerate(data.scenes)  # a colour swap shows where colours and shapes both differ
           if sc.kind == "two" and sc.things[0].colour != sc.things[1].colour and sc.things[0].shape != sc.things[1].shape]
    assert two and all(true_of_scene(data.captions[i], data.scenes[i]) for i in two)
    assert not any(true_of_scene(noisy[i], data.scenes[i]) for i in two)
    seen = []
    real = training.train_unet

    def spy(unet, scheduler, x0, text, *args, **kw):
        seen.append(text)
        return real(unet, scheduler, x0, text, *args, **kw)

    monkeypatch.setattr(training, "train_unet", spy)
    cfg = tiny(seed=5, only="generators")
    cfg.unets["toy"] = replace(cfg.unets["toy"], caption_noise=noise)
    log = train_only(folder, cfg)
    toy_text, learned_text, pixel_text = seen
    assert torch.equal(learned_text, pixel_text) and not torch.equal(toy_text, learned_text)
    assert log["config"]["unets"]["toy"]["caption_noise"]["colour_swap"] == 1.0
    assert log["config"]["unets"]["toy-pixel"]["caption_noise"] == asdict(NO_NOISE)
    with pytest.raises(ValueError, match="caption_noise"):
        UNetRecipe(100, caption_noise={"colour_swap": 0.5})
    # bad --only values and a folder without a trained toy are refused before any work
    assert main(["toy", "train", "--only", "judges", "--out", str(folder)]) == 2
    assert main(["toy", "train", "--only", "toy-latent-learned", "--out", str(tmp_path / "empty")]) == 2


def test_grounding_reaches_every_unet_and_nothing_else(tmp_path):
    """``TrainConfig.grounding`` changes the three UNets and leaves every other weight as it was."""
    plain, grounded = tmp_path / "plain", tmp_path / "grounded"
    train_toy_world(plain, tiny(seed=1))
    train_toy_world(grounded, tiny(seed=1).with_unets(grounding=1.0))
    changed = {f.relative_to(plain).as_posix() for f in plain.rglob("*.safetensors")
               if f.read_bytes() != (grounded / f.relative_to(plain)).read_bytes()}
    assert changed == {f"{m}/unet/diffusion_pytorch_model.safetensors" for m in ("toy", "toy-latent-learned", "toy-pixel")}


def test_another_seed_trains_another_model():
    from sagekit.toy.attributes import training_targets
    from sagekit.toy.training.judges import train_judge
    from sagekit.toy.world import make_dataset

    data = make_dataset(64, seed=0)
    targets = training_targets("resnet", data.scenes)
    w = [train_judge("resnet", data.images, targets, seed, steps=1, batch_size=16).state_dict() for seed in (1, 1, 2)]
    key = next(iter(w[0]))
    assert torch.equal(w[0][key], w[1][key]) and not torch.equal(w[0][key], w[2][key])


def test_vlb_is_zero_for_the_true_posterior_and_trains_only_the_variance():
    sched = train_scheduler(True)
    torch.manual_seed(0)
    x0 = torch.rand(4, 3, 8, 8) * 2 - 1
    noise = torch.randn_like(x0)
    t = torch.tensor([10, 200, 500, 900])
    xt = sched.add_noise(x0, noise, t)
    # exact epsilon and v = -1 (variance = the posterior's) -> KL = 0
    v = -torch.ones_like(x0, requires_grad=True)
    eps = noise.clone().requires_grad_(True)
    loss = vlb_term(sched, x0, xt, t, eps, v)
    assert loss.abs() < 1e-4
    # a wrong variance costs, and only v gets a gradient
    v2 = torch.zeros_like(x0, requires_grad=True)
    loss2 = vlb_term(sched, x0, xt, t, eps, v2)
    loss2.backward()
    assert loss2 > 10 * loss.abs() + 1e-5 and v2.grad.abs().sum() > 0 and eps.grad is None


def test_vlb_on_latents_does_not_clamp_them_to_the_pixel_range():
    """Scaled latents reach past [-1, 1]: the pixel bound would clamp the x0 estimate and
    charge a correct model; the latent bound does not."""
    sched = train_scheduler(True)
    torch.manual_seed(0)
    x0 = torch.randn(4, 4, 8, 8) * 2.5  # latents, well outside [-1, 1]
    noise = torch.randn_like(x0)
    t = torch.tensor([10, 200, 500, 900])
    xt = sched.add_noise(x0, noise, t)
    v = -torch.ones_like(x0)
    assert vlb_term(sched, x0, xt, t, noise, v, pixels=False).abs() < 1e-4
    assert vlb_term(sched, x0, xt, t, noise, v, pixels=True) > 1e-2
    # at t = 0 the latent bound is a Gaussian likelihood: finite, and lower for the true x0
    t0 = torch.zeros(4, dtype=torch.long)
    xt0 = sched.add_noise(x0, noise, t0)
    right = vlb_term(sched, x0, xt0, t0, noise, v, pixels=False)
    wrong = vlb_term(sched, x0, xt0, t0, noise + 1, v, pixels=False)
    assert torch.isfinite(right) and wrong > right


def test_clip_training_survives_a_caption_that_reads_as_another_place():
    """ "a plus in sand" (a yellow cross on grass) reads as naming the sand background, so
    the truth rule alone would call it false of its own image; its own image must still be
    a positive, or its row of the loss is 0 / 0 and every weight turns NaN."""
    from sagekit.toy.scenes import BACKGROUNDS
    from sagekit.toy.text import build_tokenizer
    from sagekit.toy.training.common import check_finite
    from sagekit.toy.training.text_models import train_clip, truth
    from sagekit.toy.world import WorldConfig, make_dataset

    data = make_dataset(4, 0, WorldConfig().unbiased(), kind="one")
    i = next(i for i, s in enumerate(data.scenes) if list(BACKGROUNDS)[s.background] != "sand")
    data.captions[i] = "a plus in sand"
    what, where, named = truth(data)
    assert named[i] >= 0 and named[i] != where[i]  # the rule misreads it
    clip = train_clip(data, build_tokenizer(), seed=0, steps=2, batch_size=4)
    check_finite(clip, "toy CLIP")


def test_check_finite_names_the_diverged_stage():
    from sagekit.toy.training.common import check_finite

    model = torch.nn.Linear(2, 2)
    check_finite(model, "toy UNet")
    with torch.no_grad():
        model.weight[0, 0] = float("nan")
    with pytest.raises(FloatingPointError, match="toy UNet diverged.*weight"):
        check_finite(model, "toy UNet")


def test_end_states_are_replaced_only_from_eos_on_and_only_at_their_rate():
    from sagekit.toy.training.diffusion import _replace_ends

    b, length, d = 400, 10, 3
    cond = torch.arange(b, dtype=torch.float32).view(b, 1, 1).expand(b, length, d).clone()
    cond[:, :, 1] = torch.arange(length, dtype=torch.float32)  # channel 1: the position
    eos = torch.randint(3, 8, (b,), generator=torch.Generator().manual_seed(0))
    uncond = torch.full((1, length, d), -1.0)
    g = torch.Generator().manual_seed(1)
    masked = _replace_ends(cond, eos, uncond, "mask", 0.5, g)
    shuffled = _replace_ends(cond, eos, uncond, "shuffle", 0.5, g)
    for out in (masked, shuffled):
        changed = (out != cond).flatten(1).any(1)
        assert 0.4 < changed.float().mean() < 0.6
        for i in range(b):  # the word states stay; from eos on, all or nothing is replaced
            e = int(eos[i])
            assert torch.equal(out[i, :e], cond[i, :e])
    rows = torch.nonzero((masked != cond).flatten(1).any(1)).flatten()
    assert all((masked[i, int(eos[i]):] == -1).all() for i in rows.tolist())
    for i in torch.nonzero((shuffled != cond).flatten(1).any(1)).flatten().tolist():
        donor = int(shuffled[i, int(eos[i]), 0])
        # another prompt's states, read from its own eos on
        assert donor != i and int(shuffled[i, int(eos[i]), 1]) == int(eos[donor])
    assert torch.equal(_replace_ends(cond, eos, uncond, "shuffle", 0.0, g), cond)


def test_mask_then_shuffle_masks_the_ends_before_the_switch_and_shuffles_them_after():
    """The reading curriculum: the UNet sees the empty prompt's end states for the first
    ``end_switch`` of the steps, then another prompt's."""
    from sagekit.toy import architectures as arch
    from sagekit.toy.training.diffusion import train_unet

    n, length, steps, eos = 8, 6, 6, 3
    text = torch.randn(n, length, arch.TEXT_DIM, generator=torch.Generator().manual_seed(0))
    uncond = torch.zeros(1, length, arch.TEXT_DIM)
    seen = []
    unet = arch.latent_unet()
    unet.register_forward_pre_hook(lambda m, args: seen.append(args[2].detach().clone()))
    train_unet(unet, arch.train_scheduler(False), torch.randn(n, 4, 16, 16), text, uncond, 0, steps, batch_size=4,
               cond_dropout=0.0, ema_decay=0, progress_bar=False, end_states="mask-then-shuffle", end_rate=1.0,
               eos_index=torch.full((n,), eos), end_switch=0.5)
    assert len(seen) == steps
    for step, cond in enumerate(seen):
        words = cond[:, :eos]
        ends = cond[:, eos:]
        # the words are always some prompt's own; the ends are the empty prompt's, then prompts' ends
        assert all(any(torch.equal(w, t) for t in text[:, :eos]) for w in words)
        if step < steps // 2:
            assert (ends == 0).all()
        else:
            assert all(any(torch.equal(e, t) for t in text[:, eos:]) for e in ends)
    with pytest.raises(ValueError, match="end_states"):
        train_unet(unet, arch.train_scheduler(False), torch.randn(n, 4, 16, 16), text, uncond, 0, 1, batch_size=4,
                   progress_bar=False, end_states="drop", eos_index=torch.full((n,), eos))


def test_an_interrupted_unet_training_resumes_to_the_weights_of_an_unbroken_one(tmp_path, capsys):
    """A crash mid-training loses at most ``checkpoint_every`` steps: the rerun restores the
    weights, EMA, AdamW moments, schedule and random streams, and ends bit-identical to a
    run that never stopped. A checkpoint of another run (here another learning rate) is
    not resumed."""
    from sagekit.toy import architectures as arch
    from sagekit.toy.training.diffusion import train_unet

    n, length, steps = 8, 6, 6
    text = torch.randn(n, length, arch.TEXT_DIM, generator=torch.Generator().manual_seed(0))
    x0 = torch.randn(n, 4, 16, 16, generator=torch.Generator().manual_seed(1))
    uncond = torch.zeros(1, length, arch.TEXT_DIM)
    kw = dict(batch_size=4, cond_dropout=0.5, progress_bar=False, end_states="mask-then-shuffle", end_rate=0.5,
              eos_index=torch.full((n,), 3), end_switch=0.5)

    def run(checkpoint=None, crash_at=None, lr=1e-3):
        torch.manual_seed(7)  # the same initial UNet for every run
        unet = arch.latent_unet()
        calls = []

        def count(module, args):
            calls.append(1)
            if len(calls) == crash_at:
                raise RuntimeError("power cut")

        unet.register_forward_pre_hook(count)
        try:
            train_unet(unet, arch.train_scheduler(False), x0, text, uncond, 3, steps, lr=lr, checkpoint=checkpoint,
                       checkpoint_every=2, **kw)
        except RuntimeError:
            return None, len(calls)
        return unet.state_dict(), len(calls)

    unbroken, _ = run()
    folder = tmp_path / "ckpt"
    assert run(folder, crash_at=4) == (None, 4)  # steps 0-2 ran, the state after step 2 is saved
    assert folder.is_dir() and capsys.readouterr().err == ""
    resumed, calls = run(folder)
    assert calls == steps - 2 and "resuming the UNet training at step 2 of 6" in capsys.readouterr().err
    assert resumed.keys() == unbroken.keys()
    assert all(torch.equal(resumed[k], unbroken[k]) for k in unbroken)
    done, calls = run(folder)  # a finished state (a later part crashed): no step again, the same weights
    assert calls == 0 and all(torch.equal(done[k], unbroken[k]) for k in unbroken)
    fresh, calls = run(folder, lr=2e-3)  # the saved state is the finished lr=1e-3 run's: not this one
    assert calls == steps and not all(torch.equal(fresh[k], unbroken[k]) for k in unbroken)
    (folder / "state.safetensors").write_bytes(b"cut short")  # a damaged state is set aside, not fatal
    again, calls = run(folder, lr=2e-3)
    assert calls == steps and all(torch.equal(again[k], fresh[k]) for k in fresh)
    assert "unreadable" in capsys.readouterr().err and (tmp_path / "ckpt.unreadable").is_dir()
    with pytest.raises(ValueError, match="checkpoint_every"):
        train_unet(arch.latent_unet(), arch.train_scheduler(False), x0, text, uncond, 3, 1, checkpoint=folder,
                   checkpoint_every=0, **kw)


def test_bad_reading_levers_are_refused():
    from sagekit.toy.training import UNetRecipe

    with pytest.raises(ValueError):
        UNetRecipe(100, end_states="drop")
    with pytest.raises(ValueError):
        UNetRecipe(100, end_states="mask", end_rate=1.5)
    with pytest.raises(ValueError, match="end_switch"):
        UNetRecipe(100, end_states="mask-then-shuffle", end_switch=2.0)
    with pytest.raises(ValueError, match="grounding"):
        TrainConfig().with_unets(grounding=-0.1)
    with pytest.raises(ValueError, match="lr"):
        UNetRecipe(100, lr=0.0)
    with pytest.raises(ValueError, match="unets"):  # every UNet has its recipe
        TrainConfig(unets={"toy": UNetRecipe(100)})


def test_the_defaults_reproduce_the_shipped_weights_and_scale_per_recipe():
    """``TrainConfig()`` is the config the shipped folder's log records (one recipe per
    UNet); ``scaled`` scales each recipe's steps and nothing else of it."""
    import json
    from dataclasses import asdict

    from sagekit.toy.names import TOY_DIR

    shipped = json.loads((TOY_DIR / "training.json").read_text())["config"]
    cfg = TrainConfig()
    assert {k: v for k, v in asdict(cfg).items() if k != "only"} == shipped
    half = cfg.scaled(0.5)
    assert {k: r.steps for k, r in half.unets.items()} == {k: round(r.steps / 2) for k, r in cfg.unets.items()}
    assert {k: replace(r, steps=1) for k, r in half.unets.items()} == {k: replace(r, steps=1) for k, r in cfg.unets.items()}


def test_the_caption_lm_reads_the_continuations_people_write():
    """``lm_corpus(tails="phrases")``: a free sequence is a whole caption and then a second
    object, a relation to one, a count of others or a place, each as the grammar words it;
    "words" keeps toy world 2's uniform tails; other tails are refused."""
    from sagekit.toy.grammar import PLACES, objects_named
    from sagekit.toy.training.text_models import lm_corpus

    captions = ["a photo of a red circle", "a blue star on the grass", "two green hearts"] * 200
    free = lm_corpus(captions, ["x"], seed=0, free_share=1.0, tails="phrases")
    places = {p for phrases in PLACES.values() for p in phrases}
    kinds = set()
    for caption, text in zip(captions, free):
        assert text.startswith(caption + " ")
        tail = text[len(caption) + 1:]
        first = tail.split()[0]
        if tail in places:
            kinds.add("place")
            continue
        named = objects_named(tail)
        assert len(named) == 1 and "None" not in named[0], tail  # one object, with its colour
        kinds.add({"and": "object or count", "plus": "object or count"}.get(first, "relation"))
        assert first in ("and", "plus", "left", "right", "next", "above", "below"), tail
    assert kinds == {"place", "object or count", "relation"}
    assert any({"two", "three"} & set(t.split()[-3:]) for t in free)  # counts ("and two red circles")
    # share: about a quarter of the captions get a tail by default
    some = lm_corpus(captions, ["x"], seed=0, tails="phrases")
    assert 0.2 < sum(a != b for a, b in zip(captions, some)) / len(captions) < 0.3
    words = lm_corpus(captions, ["x"], seed=0, free_share=1.0)
    assert all(t.split()[-1] == "x" for t in words)
    with pytest.raises(ValueError):
        lm_corpus(captions, ["x"], seed=0, tails="sentences")
    with pytest.raises(ValueError):
        TrainConfig(lm_tails="sentences")
