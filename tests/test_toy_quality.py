"""The toy world's quality bars (foundation issue), measured on the shipped weights."""

import pytest

from sagekit.toy import evaluate as toy_eval


@pytest.fixture(scope="module")
def graded():
    """Every toy judge scored once on 1000 fresh scenes (both judge tests read it)."""
    scores, tables = toy_eval.judge_scores(n=1000)
    graded = scores[scores.judge.isin(toy_eval.JUDGES)]
    assert set(graded.judge) == set(toy_eval.JUDGES) and (graded.n >= 300).all()
    assert all(len(tables[name]) >= 1 for name in toy_eval.JUDGES)
    return graded


def test_every_attribute_has_a_judge_at_least_98_percent_right_and_every_judge_is_calibrated(graded):
    """Issue #16's bar is per attribute: the object attribute has three judges (the ensemble),
    of which the small mobilenet is the weakest; it must still be a useful vote (>= 0.95)."""
    best = graded.groupby("attribute").acc.max()
    assert set(best.index) == {"object", "count", "background", "position", "relation", "realism"}
    assert (best >= 0.98).all(), graded
    assert (graded.acc >= 0.95).all(), graded
    assert (graded.ece <= 0.05).all(), graded


@pytest.mark.parametrize("model,bar", [("toy", 0.90), ("toy-latent-learned", 0.90), ("toy-pixel", 0.80)])
def test_generators_draw_what_they_are_asked_for_with_guidance(model, bar):
    from sagekit.models import load_generator
    from sagekit.toy.scenes import LABELS
    from sagekit.toy.world import WorldConfig

    g = load_generator(model).default_guidance
    res = toy_eval.generation_accuracy(model, g, per_label=6)
    assert res["n"] == 6 * (len(LABELS) - len(WorldConfig().held_out))  # the labels it learned: 192 images
    assert res["acc"] >= bar, res


def test_a_caption_lm_that_speaks_the_captions():
    """The toy GPT-2 proposes caption words: after 'a photo of a red' it expects a shape,
    and after a whole object its likely words reach past the grammar's (the wider corpus)."""
    import torch
    from transformers import AutoTokenizer, GPT2LMHeadModel

    from sagekit.toy.names import TOY_DIR
    from sagekit.toy.scenes import SHAPES

    path = TOY_DIR / "caption-lm"
    lm = GPT2LMHeadModel.from_pretrained(path, use_safetensors=True, local_files_only=True).eval()
    tok = AutoTokenizer.from_pretrained(path, local_files_only=True)
    ids = tok("a photo of a red").input_ids[:-1]  # drop <eos>
    with torch.no_grad():
        top = lm(torch.tensor([ids])).logits[0, -1].topk(6).indices.tolist()
    assert set(tok.convert_ids_to_tokens(top)) == set(SHAPES)
    ids = tok("a photo of a red circle").input_ids[:-1]
    with torch.no_grad():
        top = lm(torch.tensor([ids])).logits[0, -1].topk(12).indices.tolist()
    assert {"at", "on", "in"} & set(tok.convert_ids_to_tokens(top))  # a place may follow


# Two shipped UNets were trained before the reading curriculum: world 2's toy read word swap
# 0.19, end swap 1.00 (README, "Does a generator read words?"). strict: the test fails the day
# a retrained generator passes, so the marker comes off with the new weights (as it did for toy).
NOT_YET_READING = pytest.mark.xfail(strict=True, reason="trained before the reading curriculum (#31)")


@pytest.mark.parametrize("model", ["toy", *(pytest.param(m, marks=NOT_YET_READING)
                                            for m in ("toy-latent-learned", "toy-pixel"))])
def test_generators_read_the_words_of_the_prompt(model):
    """Issue #31's probe: the object words' states decide what is drawn (swapping them
    changes the object in >= 90% of images), the end states do not (<= 50%), and the shape
    word attends to the drawn object (its attention inside the object's colour mask >= 2x
    the mask's share of the image)."""
    from sagekit.toy.probe import word_probes

    table, _ = word_probes([model], pairs=12, seeds_per_pair=4)
    r = table.iloc[0]
    assert r.n == 48 and r.attention_n >= 12, r
    assert r.word_swap >= 0.90, r
    assert r.end_swap <= 0.50, r
    assert r.attention_ratio >= 2.0, r
