"""SAGE's universal adversarial token on a tiny random Stable-Diffusion-architecture
pipeline."""

import pytest
import torch

from sagekit.models import load_generator
from sagekit.models.judges import Ensemble
from sagekit.search import TargetGoal
from sagekit.studies import adversarial_tokens as at
from sagekit.studies.prompt_failures import X_TOKEN, Y_TOKEN

from fixed_judge import ColourJudge
from interrupt import killed
from test_prompt_failures import always_dog


@pytest.fixture(scope="module")
def gen(tiny_sd):
    return load_generator(str(tiny_sd))


def test_adversarial_token_learning_and_evaluation(gen):
    # learning through a judge with a gradient everywhere: one signed step moves the token from the mean
    # word by lr spreads in (nearly) every coordinate
    cfg = at.TokenConfig(iterations=1, batch=2, k=1, steps=2, guidance=2.0, lr=0.5, bound=0.8)
    learner = TargetGoal(Ensemble("colour", [ColourJudge()]))
    emb = at.learn_adversarial_token(gen, learner, "dog", ["a cat", "a car", "a cow"], cfg, progress=False)
    mean, std = gen.token_statistics(exclude=(X_TOKEN, Y_TOKEN, at.ADV_TOKEN))
    assert emb.shape == (gen.text_encoder.config.hidden_size,) and torch.isfinite(emb).all()
    moved = (emb - mean).abs() / std
    assert (moved > 0).float().mean() > 0.9 and torch.allclose(moved[moved > 0], torch.tensor(cfg.lr), atol=1e-4)
    # evaluation: every judge always sees "dog"
    goal = TargetGoal(always_dog())

    def clip(images, prompts):
        return images.mean((1, 2, 3)) * 100

    res = at.evaluate_token(gen, goal, clip, "dog", ["a cat", "a car"], emb, [0, 1], guidance=2.0, steps=2)
    ev = res.table
    assert len(ev) == 4 and ev["success"].all()  # every judge always sees "dog"
    assert (ev["target"] == "dog").all() and res.targets == ["dog"]
    assert (ev["text_cosine"] < 1).all() and (ev["text_cosine"] > -1).all()
    assert torch.allclose(torch.tensor(ev["clip_delta"].values), torch.tensor((ev["clip_adv"] - ev["clip_plain"]).values))
    # the returned images are the ones scored, row by row (prompt-major, seed-minor)
    assert ev[["prompt", "seed"]].values.tolist() == [["a cat", 0], ["a cat", 1], ["a car", 0], ["a car", 1]]
    assert res.plain.shape == res.token.shape == (4, 3, 16, 16) and torch.equal(res.embeddings["dog"], emb)
    assert torch.allclose(clip(res.plain, None).double(), torch.tensor(ev["clip_plain"].values), atol=1e-4)
    assert torch.allclose(clip(res.token, None).double(), torch.tensor(ev["clip_adv"].values), atol=1e-4)
    assert not torch.equal(res.plain, res.token)
    miss = at.evaluate_token(gen, goal, clip, "cat", ["a car"], emb, [0], guidance=2.0, steps=2)
    assert not miss.table["success"].any()
    both = at.merge([res, miss])  # targets learned in separate tasks, as one result
    assert both.targets == ["dog", "cat"] and len(both.table) == 5 and torch.equal(both.token[4], miss.token[0])


def test_split_labels_is_disjoint_seeded_and_checks_its_input():
    labels = [f"l{i}" for i in range(10)]
    train, held = at.split_labels(labels, "l3", 5, 3, seed=1)
    assert len(train) == 5 and len(held) == 3 and not set(train) & set(held) and "l3" not in train + held
    assert (train, held) == at.split_labels(labels, "l3", 5, 3, seed=1)
    assert (train, held) != at.split_labels(labels, "l3", 5, 3, seed=2)
    with pytest.raises(ValueError, match="unknown target"):
        at.split_labels(labels, "l99", 5, 3)
    with pytest.raises(ValueError):
        at.split_labels(labels, "l3", 6, 4)  # only 9 other labels


def test_token_by_denoising_learns_from_accepted_target_images_only(gen):
    cfg = at.TokenConfig(objective="denoise", iterations=3, batch=2, examples=2, lr=0.01, steps=2, guidance=2.0)
    x0 = at.target_examples(gen, TargetGoal(always_dog()), "dog", 2, 0, cfg)
    assert x0.shape == (2, 4, 8, 8)  # final latents of the tiny SD pipeline
    emb = at.learn_adversarial_token(gen, TargetGoal(always_dog()), "dog", ["a cat", "a car"], cfg, progress=False)
    start = gen.text_encoder.get_input_embeddings().weight[: len(gen.tokenizer) - 1].mean(0)
    assert torch.isfinite(emb).all() and not torch.allclose(emb, start)
    # no image is ever judged a cat: there is nothing to learn from, and the error says so
    with pytest.raises(RuntimeError, match="no image"):
        at.target_examples(gen, TargetGoal(always_dog()), "cat", 2, 0, cfg)
    with pytest.raises(ValueError):
        at.TokenConfig(objective="clip")


def test_a_new_token_starts_at_the_mean_of_the_models_own_words(gen):
    gen.add_tokens([X_TOKEN, Y_TOKEN, at.ADV_TOKEN])
    ids = gen.tokenizer.convert_tokens_to_ids([X_TOKEN, Y_TOKEN, at.ADV_TOKEN])
    table = gen.text_encoder.get_input_embeddings().weight
    saved = table[ids].detach().clone()
    with torch.no_grad():
        table[ids] = 100.0  # sagekit's own rows, whatever they hold, are left out
    own = [i for i in range(table.shape[0]) if i not in ids]
    assert torch.allclose(gen.token_statistics(exclude=(X_TOKEN, Y_TOKEN, at.ADV_TOKEN))[0], table[own].mean(0).detach())
    with torch.no_grad():
        table[ids] = saved  # the pipeline is shared by the module's tests


def test_per_target_shares_of_colour_and_shape():
    import pandas as pd

    from sagekit.studies.adversarial_tokens import per_target

    ev = pd.DataFrame({"target": ["red circle"] * 4 + ["blue star"] * 2,
                       "predicted": ["red circle", "red star", "green circle", "blue heart", "blue star", "red cross"],
                       "success": [1, 0, 0, 0, 1, 0], "text_cosine": 0.9, "clip_plain": 20.0, "clip_adv": 19.0,
                       "clip_delta": -1.0})
    out = per_target(ev, ["red circle", "blue star"])
    assert list(out.index) == ["red circle", "blue star"]
    assert out.loc["red circle", "success"] == 0.25 and out.loc["red circle", "colour"] == 0.5
    assert out.loc["red circle", "shape"] == 0.5 and out.loc["blue star", "colour"] == 0.5
    assert out.loc["blue star", "shape"] == 0.5
    assert "colour" not in per_target(ev, ["tench", "great white shark"])  # not "{colour} {shape}" labels


def _token_loss(gen, goal, emb, prompts, target, seeds=(5, 6)):
    n = len(seeds)
    cond = gen.embed_prompts([f"{p} {at.ADV_TOKEN}" for p in prompts for _ in seeds],
                             {at.ADV_TOKEN: emb.expand(len(prompts) * n, -1)})
    with torch.no_grad():
        lat = gen.denoise(gen.initial_noise(list(seeds) * len(prompts)), cond, 2.0, 2)
        return float(goal.loss(gen.decode(lat), torch.full((len(prompts) * n,), target)).mean())


def test_the_robust_token_lowers_the_loss_on_held_out_prompts_and_resumes(gen, tmp_path, monkeypatch):
    goal = TargetGoal(Ensemble("colour", [ColourJudge()]))
    cfg = at.TokenConfig(iterations=4, lr=0.5, batch=2, steps=2, guidance=2.0)
    train = ["a cat", "a car", "a cow", "a tree"]
    emb = at.learn_adversarial_token(gen, goal, "dog", train, cfg, progress=False)
    start = gen.token_statistics(exclude=(X_TOKEN, Y_TOKEN, at.ADV_TOKEN))[0]
    held = ["a boat", "a house"]
    assert _token_loss(gen, goal, emb, held, 1) < _token_loss(gen, goal, start, held, 1)
    # killed after two steps, it resumes and ends where the uninterrupted run did
    killed(monkeypatch, gen, 3, lambda: at.learn_adversarial_token(gen, goal, "dog", train, cfg, progress=False,
                                                                   checkpoints=tmp_path))
    assert torch.equal(at.learn_adversarial_token(gen, goal, "dog", train, cfg, progress=False,
                                                  checkpoints=tmp_path), emb)
