"""Prompt search and the adversarial token on a tiny random Stable-Diffusion-architecture
pipeline and a tiny random GPT-2 (the toy caption-LM architecture, untrained)."""

import math

import pytest
import torch

from sagekit.models import load_generator
from sagekit.models.judges import Ensemble, Judge
from sagekit.studies import prompt_search as ps
from sagekit.studies.sage import RobustGoal, TargetGoal
from sagekit.toy.architectures import caption_lm
from sagekit.toy.text import build_tokenizer

from fixed_judge import LABELS


class ConstantJudge(Judge):
    """Says the same for every image, yet stays on the autograd graph of the image (with
    zero gradient), so the searches run through it."""

    def __init__(self, name, probs):
        super().__init__(name, LABELS)
        self.register_buffer("p", torch.tensor(probs))

    def logits(self, images):
        return self.p.log().expand(len(images), -1) + 0 * images.mean((1, 2, 3)).unsqueeze(-1)


@pytest.fixture(scope="module")
def gen(tiny_sd):
    return load_generator(str(tiny_sd))


@pytest.fixture(scope="module")
def lm():
    torch.manual_seed(0)
    return caption_lm().eval(), build_tokenizer()


def always_dog():
    return Ensemble("dog", [ConstantJudge("a", [0.1, 0.8, 0.1]), ConstantJudge("b", [0.2, 0.7, 0.1])])


def test_lm_candidates_are_the_most_likely_words(lm):
    model, tok = lm
    cands = ps.lm_candidates(model, tok, "a photo of a", 5)
    assert len(cands) == len(set(cands)) == 5
    ids = [tok.bos_token_id] + tok("a photo of a", add_special_tokens=False).input_ids
    logits = model(torch.tensor([ids])).logits[0, -1]
    chosen = tok.convert_tokens_to_ids(cands)
    rest = [i for i in range(len(tok)) if i not in chosen and i not in tok.all_special_ids]
    assert logits[chosen].min() >= logits[rest].max()
    assert logits[chosen].tolist() == sorted(logits[chosen].tolist(), reverse=True)


def test_likely_continuations_are_the_lms_own_most_probable(lm):
    model, tok = lm

    @torch.no_grad()
    def prob(prompt, word):  # the LM's probability of the next word ("" = end of text)
        ids = [tok.bos_token_id] + tok(prompt, add_special_tokens=False).input_ids
        p = model(torch.tensor([ids])).logits[0, -1].softmax(-1)
        return float(p[tok.eos_token_id if word == "" else tok.convert_tokens_to_ids(word)])

    out = ps.likely_continuations(model, tok, "a photo of a", max_words=2, n=5, min_prob=0.0)
    assert len(out) == 5 and [p for _, p in out] == sorted((p for _, p in out), reverse=True)
    for words, p in out:
        w = words.split()
        expect = prob("a photo of a", w[0])
        expect *= prob(f"a photo of a {w[0]}", w[1]) if len(w) == 2 else prob(f"a photo of a {w[0]}", "")
        assert 1 <= len(w) <= 2 and p == pytest.approx(expect, rel=1e-4)
    # an untrained LM is nearly uniform over ~30 words: no word reaches 50%
    assert ps.likely_continuations(model, tok, "a photo of a", max_words=2, n=5, min_prob=0.5) == []


def test_continuation_baseline_uses_the_failure_test(gen, lm):
    model, tok = lm
    cfg = ps.PromptSearchConfig(max_words=1, eval_seeds=2, steps=2, guidance=2.0)
    rows = ps.continuation_baseline(gen, RobustGoal(always_dog()), model, tok, ["dog", "cat"], cfg, n=2, min_prob=0.0)
    assert [r["label"] for r in rows] == ["dog", "dog", "cat", "cat"]
    for r in rows:
        assert r["prompt"] == f"A photo of a {r['label']} {r['words']}" and len(r["words"].split()) == 1
        # every judge always sees a dog: a dog prompt never fails, a cat prompt always does
        assert r["failure_rate"] == (1.0 if r["label"] == "cat" else 0.0) and r["failure"] == (r["label"] == "cat")
        assert 0 < r["lm_probability"] < 1 and r["perplexity"] > 1


def test_perplexity_is_exp_of_mean_next_word_nll(lm):
    model, tok = lm
    ids = [tok.bos_token_id] + tok("a photo of a red circle", add_special_tokens=False).input_ids
    logp = model(torch.tensor([ids])).logits[0, :-1].log_softmax(-1)
    nll = -logp[torch.arange(len(ids) - 1), torch.tensor(ids[1:])].mean()
    assert ps.perplexity(model, tok, "a photo of a red circle") == pytest.approx(math.exp(nll.item()), rel=1e-5)


def test_nearest_word_picks_the_closest_candidate(gen):
    cands = ["cat", "dog", "car"]
    table = gen.word_embeddings(cands)
    assert table.shape == (3, gen.text_encoder.config.hidden_size)
    for j, word in enumerate(cands):
        x = 0.7 * table[j] + 0.3 * table[(j + 1) % 3]
        assert ps.nearest_word(gen, x, cands) == word


def test_per_prompt_token_embeddings_stay_in_their_prompt(gen):
    gen.add_tokens([ps.X_TOKEN])
    emb = torch.randn(2, gen.token_width, requires_grad=True)
    hidden = gen.embed_prompts([f"a cat {ps.X_TOKEN}", f"a dog {ps.X_TOKEN}"], {ps.X_TOKEN: emb}).hidden
    (grad,) = torch.autograd.grad(hidden[0].sum(), emb)
    assert grad[0].abs().sum() > 0 and torch.all(grad[1] == 0)


@pytest.mark.parametrize("mode", ["exact", "residual"])
def test_the_gradient_reaches_the_token_embeddings(gen, mode):
    import timm

    from sagekit.models.judges import EdgeJudge, TimmJudge

    torch.manual_seed(0)
    ens = Ensemble("r", [TimmJudge("r", timm.create_model("test_resnet", num_classes=3).eval(), LABELS),
                         EdgeJudge("e", TimmJudge("r2", timm.create_model("test_resnet", num_classes=3).eval(), LABELS))])
    gen.add_tokens([ps.X_TOKEN, ps.Y_TOKEN])
    prompts = [f"a cat {ps.X_TOKEN} {ps.Y_TOKEN}", f"a car {ps.X_TOKEN} {ps.Y_TOKEN}"]
    init = torch.zeros(2, gen.token_width)
    cfg = ps.PromptSearchConfig(iterations=1, lr=0.05, mode=mode, k=1, steps=3, guidance=2.0)
    out = ps._optimise_tokens(gen, RobustGoal(ens), prompts, {ps.X_TOKEN: init, ps.Y_TOKEN: init.clone()},
                              torch.tensor([0, 2]), [0, 1], cfg)
    for token in (ps.X_TOKEN, ps.Y_TOKEN):
        moved = (out[token] - init).abs()
        assert torch.isfinite(out[token]).all()
        # a signed step: every coordinate with a non-zero gradient moves by exactly lr
        assert (moved > 0).float().mean() > 0.5 and torch.allclose(moved[moved > 0], torch.tensor(0.05))


def test_search_prompts_counts_a_failure_only_with_appended_words(gen, lm):
    model, tok = lm
    cfg = ps.PromptSearchConfig(iterations=1, max_words=2, top_k=3, train_seeds=1, eval_seeds=2, steps=2,
                                guidance=2.0, k=1)
    out = ps.search_prompts(gen, RobustGoal(always_dog()), model, tok, ["cat", "dog"], cfg, progress=False)
    cat, dog = out
    # "cat" is never seen, so the starting prompt already fails; one appended word makes it a found failure
    assert cat["base_failure_rate"] == 1.0 and cat["failure"] and len(cat["words"].split()) == 1
    assert cat["words"] in ps.lm_candidates(model, tok, "A photo of a cat", 3)
    # "dog" is always seen: the search uses every word it may and finds nothing
    assert dog["failure_rate"] == 0.0 and not dog["failure"] and len(dog["words"].split()) == 2
    assert dog["prompt"] == "A photo of a dog " + dog["words"]
    assert cat["images"].shape == (2, 3, 16, 16) and cat["perplexity"] > 1


def test_adversarial_token_learning_and_evaluation(gen):
    goal = TargetGoal(always_dog())
    cfg = ps.TokenConfig(iterations=2, batch=2, k=1, steps=2, guidance=2.0)
    emb = ps.learn_adversarial_token(gen, goal, "dog", ["a cat", "a car", "a cow"], cfg, progress=False)
    assert emb.shape == (gen.text_encoder.config.hidden_size,) and torch.isfinite(emb).all()

    def clip(images, prompts):
        return images.mean((1, 2, 3)) * 100

    res = ps.evaluate_token(gen, goal, clip, "dog", ["a cat", "a car"], emb, [0, 1], guidance=2.0, steps=2)
    ev = res.frame
    assert len(ev) == 4 and ev["success"].all()  # every judge always sees "dog"
    assert (ev["text_cosine"] < 1).all() and (ev["text_cosine"] > -1).all()
    assert torch.allclose(torch.tensor(ev["clip_delta"].values), torch.tensor((ev["clip_adv"] - ev["clip_plain"]).values))
    # the returned images are the ones scored: prompt-major, seed-minor, like the rows
    assert res.plain.shape == res.token.shape == (2, 2, 3, 16, 16)
    assert torch.allclose(clip(res.plain.flatten(0, 1), None).double(), torch.tensor(ev["clip_plain"].values), atol=1e-4)
    assert torch.allclose(clip(res.token.flatten(0, 1), None).double(), torch.tensor(ev["clip_adv"].values), atol=1e-4)
    assert not torch.equal(res.plain, res.token)
    miss = ps.evaluate_token(gen, goal, clip, "cat", ["a car"], emb, [0], guidance=2.0, steps=2)
    assert not miss.frame["success"].any()


def test_split_labels_is_disjoint_seeded_and_checks_its_input():
    labels = [f"l{i}" for i in range(10)]
    train, held = ps.split_labels(labels, "l3", 5, 3, seed=1)
    assert len(train) == 5 and len(held) == 3 and not set(train) & set(held) and "l3" not in train + held
    assert (train, held) == ps.split_labels(labels, "l3", 5, 3, seed=1)
    assert (train, held) != ps.split_labels(labels, "l3", 5, 3, seed=2)
    with pytest.raises(ValueError, match="unknown target"):
        ps.split_labels(labels, "l99", 5, 3)
    with pytest.raises(ValueError):
        ps.split_labels(labels, "l3", 6, 4)  # only 9 other labels


def test_token_by_denoising_learns_from_accepted_target_images_only(gen):
    cfg = ps.TokenConfig(objective="denoise", iterations=3, batch=2, examples=2, lr=0.01, steps=2, guidance=2.0)
    x0 = ps.target_examples(gen, TargetGoal(always_dog()), "dog", 2, 0, cfg)
    assert x0.shape == (2, 4, 8, 8)  # final latents of the tiny SD pipeline
    emb = ps.learn_adversarial_token(gen, TargetGoal(always_dog()), "dog", ["a cat", "a car"], cfg, progress=False)
    start = gen.text_encoder.get_input_embeddings().weight[: len(gen.tokenizer) - 1].mean(0)
    assert torch.isfinite(emb).all() and not torch.allclose(emb, start)
    # no image is ever judged a cat: there is nothing to learn from, and the error says so
    with pytest.raises(RuntimeError, match="no image"):
        ps.target_examples(gen, TargetGoal(always_dog()), "cat", 2, 0, cfg)
    with pytest.raises(ValueError):
        ps.TokenConfig(objective="clip")


def test_a_new_token_starts_at_the_mean_of_the_models_own_words(gen):
    gen.add_tokens([ps.X_TOKEN, ps.Y_TOKEN, ps.ADV_TOKEN])
    ids = gen.tokenizer.convert_tokens_to_ids([ps.X_TOKEN, ps.Y_TOKEN, ps.ADV_TOKEN])
    table = gen.text_encoder.get_input_embeddings().weight
    saved = table[ids].detach().clone()
    with torch.no_grad():
        table[ids] = 100.0  # sagekit's own rows, whatever they hold, are left out
    own = [i for i in range(table.shape[0]) if i not in ids]
    assert torch.allclose(ps._mean_word(gen), table[own].mean(0).detach())
    with torch.no_grad():
        table[ids] = saved  # the pipeline is shared by the module's tests


def test_per_target_shares_of_colour_and_shape():
    import pandas as pd

    from sagekit.studies.prompt_search import per_target

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
