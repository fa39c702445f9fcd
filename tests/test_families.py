"""Every supported family, proven on a tiny random-weight folder of its real architecture
(``sagekit.testing``): sagekit's images equal the stock diffusers pipeline's, batches equal
single images, gradients are right, pickles are refused per component, and the study
calls run. A pipeline of any other class is refused with the list of families."""

import json
import shutil

import pytest
import torch
from diffusers import DiffusionPipeline, FluxPipeline

from sagekit.cli import main
from sagekit.models import load_clip_scorer, load_generator, load_judge
from sagekit.models.families import FAMILIES, family_of
from sagekit.models.judges import Ensemble
from sagekit.models.registry import ModelNotFoundError, UnknownModelError, UnsafeWeightsError, resolve_generator
from sagekit.store import ResultStore
from sagekit.studies import adversarial_tokens, latent_search, seed_shifts
from sagekit.search import TargetGoal
from sagekit.testing import TINY_BUILDERS

PROMPTS = ["a red cat", "a blue dog", "a green car"]


@pytest.fixture(scope="module", params=list(TINY_BUILDERS))
def family(request, tmp_path_factory):
    """(pipeline class, tiny folder, sagekit Generator) of each family in turn."""
    build, extra = TINY_BUILDERS[request.param]
    folder = build(tmp_path_factory.mktemp("families") / request.param)
    return request.param, folder, load_generator(str(folder), **extra)


def stock_images(cls, folder, gen, prompts, seeds, guidance, steps):
    """The stock pipeline's images ``(N, 3, H, W)`` in [0, 1] from sagekit's initial noise."""
    absent = {k: None for k, v in json.loads((folder / "model_index.json").read_text()).items() if v == [None, None]}
    pipe = DiffusionPipeline.from_pretrained(folder, local_files_only=True, use_safetensors=True, **absent)
    pipe.set_progress_bar_config(disable=True)
    assert type(pipe).__name__ == cls
    z = gen.initial_noise(seeds)
    kw = dict(num_inference_steps=steps, guidance_scale=guidance, output_type="pt")
    if cls == "FluxPipeline":  # takes its latents packed
        kw.update(latents=FluxPipeline._pack_latents(z, len(seeds), *gen.latent_shape), height=gen.image_size,
                  width=gen.image_size)
    elif cls == "IFPipeline":  # takes no latents: one generator per sample draws the same noise
        kw.update(generator=[torch.Generator().manual_seed(s) for s in seeds], clean_caption=False)
    else:
        kw["latents"] = z
    if cls.startswith("PixArt"):
        kw.update(use_resolution_binning=False, clean_caption=False)
    images = pipe(prompts, **kw).images
    return (images / 2 + 0.5).clamp(0, 1) if cls == "IFPipeline" else images  # IF's "pt" output is in [-1, 1]


def test_images_equal_the_stock_pipeline(family):
    cls, folder, gen = family
    assert family_of(folder) == cls and type(gen).__name__ == FAMILIES[cls][1]
    seeds, steps = [3, 3, 4], 4
    ours = gen.generate(PROMPTS, seeds, steps=steps)  # the family's default guidance and scheduler
    theirs = stock_images(cls, folder, gen, PROMPTS, seeds, gen.default_guidance, steps)
    assert ours.shape == theirs.shape == (3, 3, gen.image_size, gen.image_size)
    assert (ours - theirs).abs().max() <= 1e-4
    assert (ours[0] - ours[1]).abs().max() > 1e-3  # same seed, other prompt: the text reaches the image
    assert ours.std() > 0.01 and ((ours > 0) & (ours < 1)).float().mean() > 0.5  # not saturated


# Batch and single runs call the same fp32 matmuls with another row count, for which BLAS may pick
# kernels that sum in another order (on AMD EPYC, IF's pixels then differ by 1.6e-5, every latent
# family by <= 2.5e-6; on Intel every family by 0). Reordered fp32 sums differ by a few units of
# roundoff (6e-8) of each term; through thousands-term dot products and the sampler's steps that
# reaches 1e-5, not more. 1e-4 is the bound the project already calls equal images (sagekit against
# the stock pipeline), and a real difference (another seed's noise, a dropped prompt) is >= 1e-2.
BATCH_ATOL = 1e-4


def test_a_batch_equals_the_same_images_one_by_one(family):
    _, _, gen = family
    seeds = [5, 6, 7]
    batch = gen.generate(PROMPTS, seeds, steps=3, batch_size=3)
    single = torch.cat([gen.generate([p], [s], steps=3) for p, s in zip(PROMPTS, seeds)])
    assert (batch - single).abs().max() <= BATCH_ATOL
    swapped = torch.cat([gen.generate([p], [s], steps=3) for p, s in zip(PROMPTS, [6, 5, 7])])
    assert (batch[:2] - swapped[:2]).abs().max() > 100 * BATCH_ATOL  # each image is its own seed's


def test_the_residual_run_draws_the_ordinary_images(family):
    """Residual gradients change only the gradient path: the values are an ordinary run's,
    multistep solvers (PixArt's DPM-Solver) and ancestral noise (IF's DDPM) included."""
    _, _, gen = family
    z, emb = gen.initial_noise([1, 2]), gen.encode_prompts(PROMPTS[:2])
    plain = gen.denoise(z, emb, steps=4, seeds=[1, 2])
    residual = gen.denoise_differentiable(z.requires_grad_(True), emb, mode="residual", k=2, steps=4, seeds=[1, 2])
    assert residual.requires_grad and torch.allclose(plain, residual.detach(), atol=1e-5)


def test_exact_gradients_agree_with_and_without_checkpointing(family):
    _, _, gen = family
    grads = []
    for checkpointing in (True, False):
        z = gen.initial_noise([9]).requires_grad_(True)
        emb = gen.encode_prompts(PROMPTS[:1])
        emb.hidden = emb.hidden.clone().requires_grad_(True)
        lat = gen.denoise_differentiable(z, emb, mode="exact", steps=3, checkpointing=checkpointing, seeds=[9])
        gen.decode(lat).mean().backward()
        grads.append((z.grad, emb.hidden.grad))
    (gz1, ge1), (gz2, ge2) = grads
    assert gz1.abs().sum() > 0 and ge1.abs().sum() > 0
    assert torch.allclose(gz1, gz2, atol=1e-6, rtol=1e-4) and torch.allclose(ge1, ge2, atol=1e-6, rtol=1e-4)


def test_the_residual_gradient_is_the_gradient_of_the_last_k_steps(family):
    """With c = 1 the residual gradient to z is the gradient of the last k steps' path at
    x_{S-k}: compare it with a central finite difference of that path along a direction."""
    _, _, gen = family
    steps, k = 4, 2
    z = gen.initial_noise([11]).requires_grad_(True)
    emb = gen.encode_prompts(PROMPTS[:1])
    lat = gen.denoise_differentiable(z, emb, mode="residual", k=k, steps=steps, seeds=[11])
    loss = gen.decode(lat).square().mean()
    (grad,) = torch.autograd.grad(loss, [z])
    direction = torch.randn(z.shape, generator=torch.Generator().manual_seed(0))

    def path(eps):  # the same run, x_{S-k} moved along the direction
        out = gen.denoise(z.detach(), emb, steps=steps, seeds=[11], edit_at=steps - k,
                          edit=lambda x: x + eps * direction)
        return gen.decode(out).double().square().mean().item()

    eps = 3e-3  # small enough for the path's curvature, large enough for float32 noise
    numeric = (path(eps) - path(-eps)) / (2 * eps)
    analytic = float((grad * direction).sum())
    assert abs(analytic) > 1e-6
    assert abs(numeric - analytic) <= 0.05 * abs(analytic) + 1e-6


def test_tokens_reach_every_text_encoder(family):
    _, _, gen = family
    gen.add_tokens(["<t>"])
    for tokenizer, encoder in zip(gen.tokenizers, gen.text_encoders):
        assert "<t>" in tokenizer.get_vocab()
        assert encoder.get_input_embeddings().weight.shape[0] >= len(tokenizer)
    rows = gen.mean_token_embedding(exclude=["<t>"]).requires_grad_(True)
    assert rows.shape == (gen.token_width,) and gen.word_embeddings(["cat", "dog"]).shape == (2, gen.token_width)
    emb = gen.embed_prompts(["a cat <t>", "a cat"], {"<t>": rows})
    emb.flat()[0].square().sum().backward()
    # every encoder's part of the token's rows gets a gradient
    for part in rows.grad.split([e.get_input_embeddings().weight.shape[1] for e in gen.text_encoders]):
        assert part.abs().sum() > 0
    plain = gen.encode_prompts(["a cat"])
    assert torch.allclose(emb[1].flat(), plain.flat(), atol=1e-6)  # a prompt without the token is unchanged


def test_training_loss_is_the_familys_own_and_reaches_the_prompt(family):
    """encode_images gives the denoiser's training space; denoising_loss is MSE to the
    noise (DDPM-trained families) or to the velocity noise - x0 along
    x_sigma = (1 - sigma) x0 + sigma noise (flow matching: SD3, Flux), and is
    differentiable in every part of the prompt embedding."""
    _, _, gen = family
    size = gen.image_size
    images = torch.randint(0, 256, (2, 3, size, size), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    x0 = gen.encode_images(images)
    assert x0.shape == (2, *gen.latent_shape) and x0.dtype == torch.float32
    cond = gen.encode_prompts(PROMPTS[:2])
    cond.hidden = cond.hidden.clone().requires_grad_(True)
    if cond.pooled is not None:
        cond.pooled = cond.pooled.clone().requires_grad_(True)
    loss = gen.denoising_loss(x0, cond, torch.Generator().manual_seed(5))
    # the same draws by hand: noise first, then the timesteps
    g = torch.Generator().manual_seed(5)
    noise = torch.randn(x0.shape, generator=g)
    sched = gen.training_scheduler()
    with torch.no_grad():
        if hasattr(sched, "add_noise"):
            t = torch.randint(0, sched.config.num_train_timesteps, (2,), generator=g)
            out = gen.predict(sched.add_noise(x0, noise, t), t, cond)[:, : x0.shape[1]]
            want = noise
        else:
            i = torch.randint(0, len(sched.timesteps), (2,), generator=g)
            sigma = sched.sigmas[i].view(-1, 1, 1, 1)
            xt = (1 - sigma) * x0 + sigma * noise
            out = gen.from_sampler(gen.predict(gen.to_sampler(xt), sched.timesteps[i], cond))
            want = noise - x0
    assert torch.allclose(loss, torch.nn.functional.mse_loss(out, want), rtol=1e-5, atol=1e-6)
    loss.backward()
    assert cond.hidden.grad.abs().sum() > 0
    assert cond.pooled is None or cond.pooled.grad.abs().sum() > 0


def test_text_attention_maps_are_recorded_on_every_family(family):
    """Cross-attention (SD, SDXL, PixArt) or the image-to-text block of joint / added-KV
    attention (SD3, Flux, IF; checked against the model's own probabilities in
    test_attention_maps): one distribution over the text tokens per image position."""
    from sagekit.models.attention_maps import token_maps

    _, _, gen = family
    z, emb = gen.initial_noise([1]), gen.encode_prompts(PROMPTS[:1])
    plain = gen.denoise(z, emb, steps=2)
    with gen.capture_attention() as maps:
        recorded = gen.denoise(z, emb, steps=2)
    # the recorder computes attention explicitly, not through fused kernels: equal to float
    # precision of the latents' scale (a random PixArt's latents reach hundreds)
    assert (plain - recorded).abs().max() <= 1e-5 * plain.abs().max().clamp_min(1) and maps
    for calls in maps.values():
        m = calls[0]
        assert m.shape[2] == emb.hidden.shape[1] and torch.allclose(m.sum(-1), torch.ones(m.shape[:2]), atol=1e-4)
    assert token_maps(maps, gen.image_size).shape[1:] == (emb.hidden.shape[1], gen.image_size, gen.image_size)


def test_pickle_weights_are_refused_per_component(family, tmp_path):
    """sagekit's own check names the pickle file of any component, before diffusers loads."""
    _, folder, _ = family
    components = sorted(p.parent.name for p in folder.glob("*/config.json"))
    assert len(components) >= 2
    for i, component in enumerate(components):
        mixed = tmp_path / f"mixed-{component}"
        shutil.copytree(folder, mixed)
        suffix = (".bin", ".pt", ".ckpt")[i % 3]
        (mixed / component / f"weights{suffix}").write_bytes(b"not loaded")
        with pytest.raises(UnsafeWeightsError, match=f"{component}/weights\\{suffix}"):
            load_generator(str(mixed))


@pytest.fixture(scope="module")
def toy_judges():
    """Real judges with real gradients (the toy world's), and the toy CLIP scorer."""
    ensemble = Ensemble("toy", [load_judge("toy-resnet"), load_judge("toy-mobilenet")])
    return ensemble, load_clip_scorer("toy-clip")


def test_seed_shifts_latent_search_and_a_token_step_run_on_every_family(family, toy_judges, tmp_path):
    cls, _, gen = family
    ensemble, clip = toy_judges
    name = gen.name
    # seed shifts: the shifted and the unshifted image of a seed differ, and every cell is scored
    cells = seed_shifts.build_cells([name], {"UMS": [0.5]}, ["red circle", "blue star"], [0], [gen.default_guidance],
                                    2, ensemble.name, clip.name)
    df = seed_shifts.run(cells, ResultStore(tmp_path / "store"), {name: gen}, ensemble, clip, progress=False)
    assert len(df) == len(cells) == 4 and df["top1"].notna().all()
    shifted = gen.generate(["a red circle"], [0], steps=2, noise=seed_shifts.shifted_noise(gen, cells[-1:]))
    assert (shifted - gen.generate(["a red circle"], [0], steps=2)).abs().max() > 1e-3

    # one step of the latent search (towards the label the judges find least likely in the
    # random model's image, so that the goal is not met before the step) moves the latent
    # along a non-zero gradient
    with torch.no_grad():
        target = int(ensemble(gen.generate(["a photo of a red circle"], [0], steps=2))[0].argmin())
    cfg = latent_search.LatentSearchConfig(iterations=1, steps=2, k=1)
    res = latent_search.search_latents(gen, TargetGoal(ensemble), ["a photo of a red circle"], [target], [0], cfg,
                                       progress=False)
    assert res.z.shape == res.z0.shape == (1, *gen.latent_shape)
    assert not res.table["found"].iloc[0] and (res.z - res.z0).abs().max() > 0

    # one step of the adversarial token moves every encoder's part of its rows
    tcfg = adversarial_tokens.TokenConfig(iterations=1, batch=2, k=1, steps=2)
    start = gen.mean_token_embedding(exclude=[adversarial_tokens.ADV_TOKEN])
    emb = adversarial_tokens.learn_adversarial_token(gen, TargetGoal(ensemble), "blue star", ["a red circle", "a green square"],
                                                tcfg, progress=False)
    assert emb.shape == (gen.token_width,)
    widths = [e.get_input_embeddings().weight.shape[1] for e in gen.text_encoders]
    for moved in (emb - start).split(widths):
        assert moved.abs().max() > 0, cls


# ---------------------------------------------------------------------------- other classes
@pytest.fixture(scope="module")
def img2img(tiny_sdxl, tmp_path_factory):
    """A real folder of a class sagekit does not support: SDXL image-to-image."""
    folder = tmp_path_factory.mktemp("unsupported") / "sdxl-img2img"
    shutil.copytree(tiny_sdxl, folder)
    index = json.loads((folder / "model_index.json").read_text())
    index["_class_name"] = "StableDiffusionXLImg2ImgPipeline"
    (folder / "model_index.json").write_text(json.dumps(index))
    assert type(DiffusionPipeline.from_pretrained(folder, local_files_only=True)).__name__ == index["_class_name"]
    return folder


def test_an_unsupported_pipeline_is_refused_before_loading(img2img, tmp_path):
    with pytest.raises(UnknownModelError, match="'StableDiffusionXLImg2ImgPipeline' is not supported") as e:
        load_generator(str(img2img))
    assert all(cls in str(e.value) for cls in FAMILIES)
    no_index = tmp_path / "plain"
    shutil.copytree(img2img, no_index)
    (no_index / "model_index.json").unlink()
    with pytest.raises(ModelNotFoundError, match="not a diffusers pipeline folder"):
        resolve_generator(str(no_index))


def test_the_cli_exits_2_with_the_families_and_writes_nothing(img2img, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["run", "seed-shifts", "-p", f"models=[{str(img2img)!r}]", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert all(cls in err for cls in FAMILIES)
    assert len(err.strip().splitlines()) == 1 and not out.exists()


def test_the_seed_shift_study_writes_a_report_for_a_tiny_sdxl_folder(tiny_sdxl, tmp_path, real_world):
    """The issue's end-to-end check: `sagekit run seed-shifts` on an SDXL-architecture folder
    (judged by the real world's defaults: here the stand-ins of the README's hub models)."""
    out = tmp_path / "out"
    assert main(["run", "seed-shifts", "-p", f"models=[{str(tiny_sdxl)!r}]", "-p", "n_labels=2", "-p", "seeds_per_cell=1",
                 "-p", "shifts={'UMS': [-0.2, 0.2]}", "-p", "baseline_seeds_per_cell=2", "-p", "trajectory_seeds=2",
                 "-p", "steps=3", "-p", "guidance=[None, 1.0]", "--out", str(out)]) == 0
    summary = json.loads(next(out.glob("seed-shifts-*.json")).read_text())
    rows = summary["findings"]["acc"]
    assert {r["model"] for r in rows} == {str(tiny_sdxl)} and {r["shift"] for r in rows} == {"none", "UMS"}
    # guidance 0 means the family's default (SDXL: 5), and 1 runs unguided
    assert {r["guidance"] for r in rows} == {5.0, 1.0}
    # per guidance, the baseline (2 labels x 2 seeds) and UMS (2 levels x 2 labels x 1 seed)
    assert sum(r["n"] for r in rows) == 2 * (2 * 2 + 2 * 2 * 1)
    assert (out / summary["html"]).read_text().count("data:image/png;base64") >= 3


def test_the_bench_measures_an_sdxl_architecture(capsys):
    """`sagekit bench sweep --arch sdxl` on a GPU; here its test-sized twin, same code path:
    stock SDXL pipeline, sagekit sweep, and the UNet ceiling with SDXL's added conditioning."""
    assert main(["bench", "sweep", "--arch", "tiny-sdxl", "--json"]) == 0
    res = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert res["model"] == "tiny-sdxl-random" and res["dtype"] == "float32" and res["batch_size"] == 8
    rates = [res[k] for k in ("a_stock_single", "b_stock_batched", "c_sagekit_sweep", "d_unet_ceiling")]
    assert all(r > 0 for r in rates)
    # every rate and ratio comes from the timings printed beside it (rounded to its printed places)
    rate = {k: t["images"] / t["seconds"] for k, t in res["timings"].items()}
    for key in ("a_stock_single", "b_stock_batched", "c_sagekit_sweep", "d_unet_ceiling"):
        assert res[key] == pytest.approx(rate[key], abs=5e-4)
    assert res["c_over_a"] == pytest.approx(rate["c_sagekit_sweep"] / rate["a_stock_single"], abs=5e-3)
    assert res["c_over_d"] == pytest.approx(rate["c_sagekit_sweep"] / rate["d_unet_ceiling"], abs=5e-4)
    assert main(["bench", "sweep", "--arch", "sd3"]) == 2
    assert "unknown architecture 'sd3'" in capsys.readouterr().err
    assert main(["bench", "sweep", "--dtype", "fp8"]) == 2
    assert "unknown dtype 'fp8'" in capsys.readouterr().err


def test_the_search_bench_sets_each_mode_against_its_forward_count(capsys):
    """`sagekit bench search`: seconds per iteration of exact (4N forwards) and residual
    (N + 2k) gradients, each against its forwards timed alone."""
    assert main(["bench", "search", "--arch", "tiny-sdxl", "--steps", "10", "--iterations", "1", "--json"]) == 0
    res = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert res["exact"]["forwards"] == 40 and res["residual"]["forwards"] == 14 and res["residual_bound"] == 2.86
    for mode in ("exact", "residual"):
        assert res[mode]["ratio"] == pytest.approx(res[mode]["seconds"] / res[mode]["forwards_s"], rel=0.02)
    # no wall-clock comparison of the modes here (a loaded machine would flake it): the
    # forward counts above are what makes residual cheaper, each rate is checked against them
    assert main(["bench", "search", "--iterations", "0"]) == 2


def test_resolution_is_an_option_only_where_the_denoiser_fixes_none(tiny_sd):
    with pytest.raises(ValueError, match="Flux only"):
        load_generator(str(tiny_sd), resolution=64)


def test_flux_schnell_takes_no_guidance_and_equals_the_stock_pipeline(tmp_path):
    from sagekit.testing import save_tiny_flux_pipeline

    folder = save_tiny_flux_pipeline(tmp_path / "schnell", guidance_embeds=False)
    gen = load_generator(str(folder), resolution=16)
    assert (gen.default_steps, gen.default_guidance) == (4, 0.0)
    ours = gen.generate(PROMPTS[:2], [1, 2])
    assert torch.equal(ours, gen.generate(PROMPTS[:2], [1, 2], guidance=9.0))  # nothing to guide with
    theirs = stock_images("FluxPipeline", folder, gen, PROMPTS[:2], [1, 2], 0.0, 4)
    assert (ours - theirs).abs().max() <= 1e-4


def test_a_v_prediction_sd_folder_equals_the_stock_pipeline(tiny_sd, tmp_path):
    """SD 2.x-style v-prediction: the same family, another scheduler configuration."""
    folder = tmp_path / "sd-v"
    shutil.copytree(tiny_sd, folder)
    config = json.loads((folder / "scheduler" / "scheduler_config.json").read_text())
    config["prediction_type"] = "v_prediction"
    (folder / "scheduler" / "scheduler_config.json").write_text(json.dumps(config))
    gen = load_generator(str(folder))
    assert gen.scheduler.config.prediction_type == "v_prediction"
    ours = gen.generate(PROMPTS[:2], [1, 2], steps=4)
    theirs = stock_images("StableDiffusionPipeline", folder, gen, PROMPTS[:2], [1, 2], gen.default_guidance, 4)
    assert (ours - theirs).abs().max() <= 1e-4
    eps = load_generator(str(tiny_sd)).generate(PROMPTS[:2], [1, 2], steps=4)
    assert (ours - eps).abs().max() > 1e-3  # the prediction type is honoured


def test_an_sd3_folder_without_t5_equals_the_stock_pipeline(tmp_path):
    """SD3 without its T5 encoder: the T5 part of the text sequence is zeros, as in diffusers."""
    from sagekit.testing import save_tiny_sd3_pipeline

    folder = save_tiny_sd3_pipeline(tmp_path / "sd3-no-t5", t5=False)
    gen = load_generator(str(folder))
    assert len(gen.text_encoders) == 2
    ours = gen.generate(PROMPTS[:2], [1, 2], steps=4)
    theirs = stock_images("StableDiffusion3Pipeline", folder, gen, PROMPTS[:2], [1, 2], gen.default_guidance, 4)
    assert (ours - theirs).abs().max() <= 1e-4
