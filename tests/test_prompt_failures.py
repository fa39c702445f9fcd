"""SAGE's prompt search on a tiny random Stable-Diffusion-architecture pipeline and a tiny
random GPT-2 (the toy caption-LM architecture, untrained)."""

import math

import pytest
import torch

from sagekit.models import load_generator
from sagekit.models.judges import Ensemble, Judge
from sagekit.search import RobustGoal, TokenRows, signed_descent, SearchState
from sagekit.studies import prompt_failures as ps
from sagekit.toy.architectures import caption_lm
from sagekit.toy.text import build_tokenizer

from fixed_judge import LABELS, ColourJudge


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
    table = ps.continuation_baseline(gen, RobustGoal(always_dog()), model, tok, ["dog", "cat"], cfg, n=2, min_prob=0.0)
    assert table.columns.tolist() == ps.BASELINE_COLUMNS and table["label"].tolist() == ["dog", "dog", "cat", "cat"]
    for r in table.to_dict("records"):
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


def _objective(gen, prompts, target, cfg, judge=None):
    gen.add_tokens([ps.X_TOKEN, ps.Y_TOKEN])
    goal = RobustGoal(judge or Ensemble("colour", [ColourJudge()]))
    return ps._TokenObjective(gen, goal, [f"{p} {ps.X_TOKEN} {ps.Y_TOKEN}" for p in prompts], torch.tensor(target),
                              [0, 1], cfg)


def test_choose_words_ranks_by_first_order_change_and_rescores_by_a_forward_pass(gen):
    cfg = ps.PromptSearchConfig(steps=2, guidance=2.0)
    objective = _objective(gen, ["a cat", "a car"], [0, 2], cfg)
    words = [["red", "green", "blue", "dark", "small"], ["big", "tiny", "bright", "cat"]]
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, gen.token_width, generator=g) * 0.01
    y = torch.randn(2, gen.token_width, generator=g) * 0.01
    grad = torch.randn(2, gen.token_width, generator=g)
    # one candidate re-scored: the one with the lowest g . (e_w - x)
    first = ps.choose_words(gen, objective, x, grad, y, words, rescore=1)
    for i, ws in enumerate(words):
        change = (gen.word_embeddings(ws) - x[i]) @ grad[i]
        assert first[i] == ws[int(change.argmin())]
    # every candidate re-scored: the one whose prompt "{p} {word} [y]" has the lowest loss
    best = ps.choose_words(gen, objective, x, grad, y, words, rescore=10)
    for i, (p, ws) in enumerate(zip(["a cat", "a car"], words)):
        n = len(objective.z)
        emb = gen.embed_prompts([f"{p} {w} {ps.Y_TOKEN}" for w in ws for _ in range(n)],
                                {ps.Y_TOKEN: y[i].expand(len(ws) * n, -1)})
        with torch.no_grad():
            lat = gen.denoise(objective.z.repeat(len(ws), 1, 1, 1), emb, 2.0, 2)
            loss = objective.goal.loss(gen.decode(lat), objective.target[[i] * len(ws)].repeat_interleave(n))
        assert best[i] == ws[int(loss.view(len(ws), n).mean(1).argmin())]


def test_the_label_s_own_words_are_never_candidates(lm):
    model, tok = lm
    top = ps.lm_candidates(model, tok, "a photo of a", 4)
    banned = ps.label_words(f"{top[0]} {top[2].upper()}")
    assert banned == {top[0], top[2]}
    assert ps.lm_candidates(model, tok, "a photo of a", 4, banned)[:2] == [top[1], top[3]]


def test_per_prompt_token_embeddings_stay_in_their_prompt(gen):
    gen.add_tokens([ps.X_TOKEN])
    emb = torch.randn(2, gen.token_width, requires_grad=True)
    hidden = gen.embed_prompts([f"a cat {ps.X_TOKEN}", f"a dog {ps.X_TOKEN}"], {ps.X_TOKEN: emb}).hidden
    (grad,) = torch.autograd.grad(hidden[0].sum(), emb)
    assert grad[0].abs().sum() > 0 and torch.all(grad[1] == 0)


@pytest.mark.parametrize("mode", ["exact", "residual"])
def test_one_step_moves_x_and_y_by_lr_spreads_and_lowers_the_loss(gen, mode):
    cfg = ps.PromptSearchConfig(lr=0.5, mode=mode, k=1, steps=3, guidance=2.0)
    objective = _objective(gen, ["a cat", "a car"], [0, 2], cfg)
    mean, std = gen.token_statistics(exclude=(ps.X_TOKEN, ps.Y_TOKEN))
    token = TokenRows(mean, std, cfg.lr, cfg.bound)
    start = {ps.X_TOKEN: mean.repeat(2, 1), ps.Y_TOKEN: mean.repeat(2, 1)}
    one = signed_descent(objective, {t: token for t in start}, SearchState({k: v.clone() for k, v in start.items()}),
                         1, stop_when_found=False, progress=False)
    for t in start:
        moved = (one.values[t] - start[t]).abs()
        assert (moved > 0).float().mean() > 0.5  # the gradient reached the token
        # a signed step moves every coordinate with a gradient by exactly lr spreads
        assert torch.allclose(moved[moved > 0], token.step.expand_as(moved)[moved > 0], rtol=1e-4)
    more = signed_descent(objective, {t: token for t in start}, SearchState({k: v.clone() for k, v in start.items()}),
                          4, stop_when_found=False, progress=False)
    loss = lambda values: objective(values, torch.arange(2), 0, False)[0].sum()
    with torch.no_grad():
        assert loss(more.values) < loss(start)


def test_search_prompts_counts_a_failure_only_with_appended_words(gen, lm):
    model, tok = lm
    cfg = ps.PromptSearchConfig(iterations=1, max_words=2, top_k=3, train_seeds=1, eval_seeds=2, steps=2,
                                guidance=2.0, k=1)
    out = ps.search_prompts(gen, RobustGoal(always_dog()), model, tok, ["cat", "dog"], cfg, progress=False)
    assert out.table.columns.tolist() == ps.COLUMNS
    cat, dog = out.table.to_dict("records")
    # a verifier that always sees a cat confirms no failure of "cat" and every failure of "dog"
    sees_cat = Ensemble("cat", [ConstantJudge("v", [0.8, 0.1, 0.1])])
    checked = ps.search_prompts(gen, RobustGoal(always_dog()), model, tok, ["cat", "dog"], cfg, progress=False,
                                verifier=sees_cat)
    first = checked.table.iloc[0]
    assert first["failure"] and first["verifier_failure_rate"] == 0.0 and not first["verified"]
    assert cat["verified"]  # without a verifier the search's own judges decide
    # "cat" is never seen, so the starting prompt already fails; one appended word makes it a found failure
    assert cat["base_failure_rate"] == 1.0 and cat["failure"] and len(cat["words"].split()) == 1
    assert cat["words"] in ps.lm_candidates(model, tok, "A photo of a cat", 3)
    # "dog" is always seen: the search uses every word it may and finds nothing
    assert dog["failure_rate"] == 0.0 and not dog["failure"] and len(dog["words"].split()) == 2
    assert dog["prompt"] == "A photo of a dog " + dog["words"]
    assert out.images.shape == (2, 2, 3, 16, 16) and cat["perplexity"] > 1
    assert [r["label"] for r, _ in out.rows(failing_only=True)] == ["cat"]

def test_a_label_set_ban_keeps_every_word_that_names_an_object_out():
    from sagekit.studies.prompt_failures import banned_words

    toy = set(banned_words("label set", "toy"))
    assert {"red", "circle", "crimson", "disc", "box", "hearts"} <= toy
    assert not toy & {"a", "photo", "at", "night", "grass", "on", "two", "sand", "plus"}  # two senses stay
    assert banned_words("label", "toy") == ()
    with pytest.raises(ValueError, match="ban must be"):
        banned_words("everything", "toy")
