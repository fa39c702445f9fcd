"""The toy world's quality bars (foundation issue), measured on the shipped weights."""

import pytest

from sagekit.toy import evaluate as toy_eval


def test_every_judge_is_at_least_98_percent_right_on_held_out_scenes_and_calibrated():
    scores, tables = toy_eval.judge_scores(n=1000)
    graded = scores[scores.judge.isin(toy_eval.JUDGES)]
    assert set(graded.judge) == set(toy_eval.JUDGES) and (graded.n >= 300).all()
    assert (graded.acc >= 0.98).all(), graded
    assert (graded.ece <= 0.05).all(), graded
    assert all(len(tables[name]) >= 1 for name in toy_eval.JUDGES)


@pytest.mark.parametrize("model,bar", [("toy", 0.85), ("toy-latent-learned", 0.85), ("toy-pixel", 0.75)])
def test_generators_draw_what_they_are_asked_for_with_guidance(model, bar):
    from sagekit.models import load_generator

    g = load_generator(model).default_guidance
    res = toy_eval.generation_accuracy(model, g, per_label=6)  # 216 images
    assert res["n"] >= 200
    assert res["acc"] >= bar, res


def test_a_caption_lm_that_speaks_the_captions():
    """The toy GPT-2 proposes caption words: after 'a photo of a red' it expects a shape,
    and after a whole object its likely words reach past the grammar's (the wider corpus)."""
    import torch
    from transformers import AutoTokenizer, GPT2LMHeadModel

    from sagekit.models.registry import TOY_DIR
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
