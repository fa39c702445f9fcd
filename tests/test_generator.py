"""The Generator adapter on tiny random Stable-Diffusion-architecture pipelines."""

import pytest
import torch
from diffusers import StableDiffusionPipeline

from sagekit.models import load_generator

PROMPTS = ["a photo of a cat", "a photo of a dog", "a red car", "a photo of a cat"]


@pytest.fixture(scope="module")
def gen(tiny_sd):
    return load_generator(str(tiny_sd))


def test_loads_as_a_latent_model(gen):
    assert gen.is_latent and not gen.learned_variance
    assert gen.latent_shape == (4, 8, 8) and gen.image_size == 16


def test_noise_is_per_seed_and_standard_normal(gen):
    a = gen.initial_noise([1, 2, 3])
    b = gen.initial_noise([3, 2, 1])
    assert a.device.type == "cpu" and a.dtype == torch.float32
    assert torch.equal(a[0], b[2]) and not torch.equal(a[0], a[1])
    big = gen.initial_noise(range(200))
    assert abs(big.mean().item()) < 0.02 and abs(big.std().item() - 1) < 0.02


def test_same_seed_same_image_and_batch_equals_single(gen):
    seeds = [11, 12, 13, 11]
    batch = gen.generate(PROMPTS, seeds, guidance=4.0, steps=4, batch_size=4)
    single = torch.cat([gen.generate([p], [s], guidance=4.0, steps=4) for p, s in zip(PROMPTS, seeds)])
    assert batch.shape == (4, 3, 16, 16) and 0 <= batch.min() and batch.max() <= 1
    assert torch.allclose(batch, single, atol=1e-4)
    assert torch.allclose(batch[0], batch[3])  # same prompt and seed
    assert not torch.allclose(batch[0], batch[1], atol=1e-3)


def test_matches_the_stock_diffusers_pipeline(gen, tiny_sd):
    """Our sampling loop is the pipeline's: same noise, same prompt -> same image."""
    pipe = StableDiffusionPipeline.from_pretrained(tiny_sd, safety_checker=None)
    pipe.set_progress_bar_config(disable=True)
    noise = gen.initial_noise([5])
    ours = gen.generate(["a photo of a cat"], [5], guidance=3.0, steps=5)
    theirs = pipe("a photo of a cat", latents=noise.clone(), num_inference_steps=5, guidance_scale=3.0,
                  output_type="pt").images
    assert (ours - theirs.float()).abs().max() <= 1e-4  # the project's bar for a family (test_families)


def test_guidance_changes_the_image(gen):
    a = gen.generate(["a photo of a cat"], [3], guidance=1.0, steps=4)
    b = gen.generate(["a photo of a cat"], [3], guidance=6.0, steps=4)
    assert not torch.allclose(a, b, atol=1e-3)


def test_trajectory_and_schedulers(gen):
    z = gen.initial_noise([1, 2])
    lat, traj = gen.denoise(z, gen.encode_prompts(PROMPTS[:2]), guidance=2.0, steps=6, trajectory=True)
    assert traj.shape == (7, 2, 4, 8, 8)
    assert torch.allclose(traj[-1], lat.cpu())
    for name in ("ddim", "dpm", "euler", "ddpm", "pndm"):
        out = gen.denoise(z, gen.encode_prompts(PROMPTS[:2]), guidance=2.0, steps=6, scheduler=name, seeds=[1, 2])
        assert torch.isfinite(out).all()
    with pytest.raises(ValueError, match="unknown scheduler"):
        gen.make_scheduler("nope", 5)


@pytest.mark.parametrize("mode", ["exact", "residual"])
def test_gradients_reach_the_latent(gen, mode):
    z = gen.initial_noise([7]).requires_grad_(True)
    emb = gen.encode_prompts(["a photo of a cat"])
    lat = gen.denoise_differentiable(z, emb, mode=mode, k=2, guidance=3.0, steps=5)
    img = gen.decode(lat)
    img.mean().backward()
    assert z.grad is not None and torch.isfinite(z.grad).all() and z.grad.abs().sum() > 0


def test_exact_gradient_with_and_without_checkpointing_agree(gen):
    emb = gen.encode_prompts(["a photo of a dog"])
    grads = []
    for ckpt in (True, False):
        z = gen.initial_noise([9]).requires_grad_(True)
        gen.decode(gen.denoise(z, emb, guidance=2.0, steps=3, grad=True, checkpointing=ckpt)).sum().backward()
        grads.append(z.grad)
    assert torch.allclose(grads[0], grads[1], atol=1e-5)


def test_residual_mode_rejects_bad_k(gen):
    z = gen.initial_noise([1])
    with pytest.raises(ValueError, match="0 < k <= steps"):
        gen.denoise_differentiable(z, gen.encode_prompts(["x"]), mode="residual", k=9, steps=5)
    with pytest.raises(ValueError, match="gradient mode"):
        gen.denoise_differentiable(z, gen.encode_prompts(["x"]), mode="nope")


def test_learned_variance_pixel_model(tiny_pixel):
    gen = load_generator(str(tiny_pixel))
    assert not gen.is_latent and gen.learned_variance and gen.latent_shape == (3, 8, 8)
    a = gen.generate(["a cat", "a dog"], [1, 2], guidance=3.0, steps=5)
    b = torch.cat([gen.generate(["a cat"], [1], guidance=3.0, steps=5), gen.generate(["a dog"], [2], guidance=3.0, steps=5)])
    assert a.shape == (2, 3, 8, 8) and torch.allclose(a, b, atol=1e-4)  # ancestral noise is per seed too
    c = gen.generate(["a cat"], [1], guidance=3.0, steps=5, scheduler="ddim")  # drops the variance channels
    assert torch.isfinite(c).all()


def test_token_overrides_are_differentiable_and_local(gen):
    gen.add_tokens(["<t>"])
    prompts = ["a cat <t>", "a dog"]
    base = gen.embed_prompts(prompts)
    emb = torch.zeros(gen.token_width, requires_grad=True)
    out = gen.embed_prompts(prompts, {"<t>": emb})
    assert out.hidden.shape == base.hidden.shape and not torch.allclose(out.hidden[0], base.hidden[0])
    assert torch.allclose(out.hidden[1], base.hidden[1])  # a prompt without the token is untouched
    out.hidden.sum().backward()
    assert emb.grad is not None and emb.grad.abs().sum() > 0
    # the hook is removed afterwards
    assert torch.allclose(gen.embed_prompts(prompts).hidden, base.hidden)
    with pytest.raises(KeyError, match="add_tokens"):
        gen.embed_prompts(prompts, {"<never-added>": emb})


def test_denoising_loss_targets_epsilon_or_velocity_and_reaches_the_prompt(tiny_sd):
    """The training loss studies use (textual inversion, fine-tuning) is the model's own:
    MSE to the noise for epsilon models, to the velocity for v-prediction ones."""
    import copy

    from diffusers import DDPMScheduler

    gen = load_generator(str(tiny_sd))
    x0 = gen.encode_images(torch.randint(0, 256, (3, 3, 16, 16), dtype=torch.uint8))
    assert x0.shape == (3, 4, 8, 8) and x0.dtype == torch.float32
    cond = gen.encode_prompts(["a cat", "a dog", "a car"])
    cond.hidden = cond.hidden.clone().requires_grad_(True)
    for prediction in ("epsilon", "v_prediction"):
        g2 = copy.copy(gen)
        g2.scheduler = DDPMScheduler.from_config(gen.scheduler.config, prediction_type=prediction)
        loss = g2.denoising_loss(x0, cond, torch.Generator().manual_seed(5))
        # the same draws by hand: noise first, then the timesteps
        g = torch.Generator().manual_seed(5)
        noise = torch.randn(x0.shape, generator=g)
        t = torch.randint(0, 1000, (3,), generator=g)
        sched = g2.training_scheduler()
        with torch.no_grad():
            out = gen.unet(sched.add_noise(x0, noise, t), t, cond.hidden).sample
        want = sched.get_velocity(x0, noise, t) if prediction == "v_prediction" else noise
        assert torch.allclose(loss, torch.nn.functional.mse_loss(out, want), atol=1e-6), prediction
    cond.hidden.grad = None
    gen.denoising_loss(x0, cond, torch.Generator().manual_seed(5)).backward()
    assert cond.hidden.grad.abs().sum() > 0


def test_a_pixel_model_trains_on_pixels(tiny_pixel):
    gen = load_generator(str(tiny_pixel))
    images = torch.tensor([0, 255], dtype=torch.uint8).repeat(1, 3, 16, 8).view(1, 3, 16, 16)
    x = gen.encode_images(images)
    assert x.min() == -1 and x.max() == 1 and x.shape == images.shape


def test_another_sampler_draws_what_the_models_own_does():
    """The stand-in sampler (what a found failure is drawn again with) must be a faithful
    one: toy samples with DPM-Solver++, whose config has no ``clip_sample``, and a DDIM built
    from it must not clip the scaled latents to [-1, 1] (diffusers' default), which gives noise."""
    from sagekit.models import load_judge
    from sagekit.toy.scenes import LABELS

    gen = load_generator("toy")
    assert gen.other_sampler() == "ddim" and gen.make_scheduler("ddim").config.clip_sample is False
    # every label, at the model's own step count: what latent_search redraws a failure with
    labels = list(LABELS)
    images = gen.generate([f"a photo of a {l}" for l in labels], list(range(len(labels))), scheduler="ddim")
    ensemble = load_judge("toy-ensemble")
    right = ensemble(images).argmax(-1) == torch.tensor([ensemble.label_index(l) for l in labels])
    assert right.float().mean() >= 0.75, right
