"""VQA judges (``vqa:<model>``): P("yes") of a vision-language model, the model's own
answer probability, differentiable, on tiny random-weight folders of two architectures."""

import pytest
import torch
from PIL import Image

from sagekit.models.registry import load_judge
from sagekit.models.facts import check
from sagekit.models.vqa import LABEL_QUESTION, PROMPT_QUESTION, VQAJudge, load_vqa_model, prompt_facts
from sagekit.models.weights import UnsafeWeightsError
from sagekit.testing import save_tiny_blip_vqa, save_tiny_smolvlm

QUESTIONS = ["Is there a red circle in the image?", PROMPT_QUESTION.format(prompt="a blue star above a green heart"),
             "Is there a yellow cross in the image?"]
BUILDERS = {"blip": save_tiny_blip_vqa, "smolvlm": save_tiny_smolvlm}


@pytest.fixture(scope="module", params=sorted(BUILDERS))
def vqa(request, tmp_path_factory):
    return load_vqa_model(BUILDERS[request.param](tmp_path_factory.mktemp(request.param)))


def images(n: int = 3, seed: int = 0) -> torch.Tensor:
    """Images at the models' own size, on the 8-bit grid: the processor's PIL path sees the same pixels."""
    return (torch.rand(n, 3, 32, 32, generator=torch.Generator().manual_seed(seed)) * 255).round() / 255


def generated(vqa, image: torch.Tensor, question: str) -> float:
    """The model's own generate(): the processor's inputs, one new token, its probability of the answer."""
    pil = Image.fromarray((image.permute(1, 2, 0) * 255).round().byte().numpy())
    if hasattr(vqa, "prompt"):  # a chat model
        inputs = vqa.processor(images=[[pil]], text=[vqa.prompt(question)], return_tensors="pt")
    else:
        inputs = vqa.processor(images=pil, text=question, return_tensors="pt")
    out = vqa.model.generate(**inputs, max_new_tokens=1, do_sample=False, output_logits=True,
                             return_dict_in_generate=True)
    return float(out.logits[0][0].float().softmax(-1)[vqa.answer_id])


def test_p_yes_is_the_models_own_answer_probability(vqa):
    x = images()
    with torch.no_grad():
        together = vqa.probability(x, QUESTIONS)  # in one batch
        alone = torch.cat([vqa.probability(x[i:i + 1], QUESTIONS[i:i + 1]) for i in range(len(x))])
    own = torch.tensor([generated(vqa, x[i], q) for i, q in enumerate(QUESTIONS)])
    assert (together - own).abs().max() <= 1e-5 and (alone - own).abs().max() <= 1e-5
    # not a constant: the answer moves with the question and with the image
    with torch.no_grad():
        same_image = vqa.probability(x[:1].expand(3, -1, -1, -1), QUESTIONS)
        same_question = vqa.probability(images(3, seed=1), QUESTIONS[:1] * 3)
    for p in (same_image, same_question):  # random weights: small probabilities, but not one number
        assert p.max() / p.min() > 1.05


def test_p_yes_can_drive_a_search(vqa):
    """Gradient ascent on the pixels raises P(yes): the judge can steer as well as verify."""
    x = images(1, seed=2).requires_grad_(True)
    question = QUESTIONS[:1]
    start = float(vqa.probability(x, question).detach())
    opt = torch.optim.Adam([x], lr=0.05)
    for _ in range(10):
        opt.zero_grad()
        (-vqa.probability(x, question).clamp_min(1e-12).log()).sum().backward()
        opt.step()
        x.data.clamp_(0, 1)
    assert float(vqa.probability(x, question).detach()) > start * 1.05


def test_a_vqa_judge_classifies_by_one_question_per_label(vqa):
    judge = VQAJudge("vqa", vqa, ["red circle", "blue star", "green heart"])
    x = images(2)
    probs = judge(x)
    with torch.no_grad():
        yes = torch.stack([vqa.probability(x, [LABEL_QUESTION.format(label=l)] * 2) for l in judge.labels], 1)
    assert torch.allclose(probs, yes / yes.sum(1, keepdim=True), atol=1e-6)


def test_vqa_specs_load_from_safetensors_only(tmp_path):
    folder = save_tiny_blip_vqa(tmp_path / "blip")
    ensemble = load_judge(f"ensemble:vqa:{folder}+vqa:{save_tiny_smolvlm(tmp_path / 'smol')}")
    assert len(ensemble.labels) == 1000 and [j.name for j in ensemble.judges][0] == f"vqa:{folder}"
    (folder / "pytorch_model.bin").write_bytes(b"")
    with pytest.raises(UnsafeWeightsError, match="pytorch_model.bin"):
        load_judge(f"vqa:{folder}")


def test_a_chat_model_without_a_chat_template_is_refused(tmp_path):
    folder = save_tiny_smolvlm(tmp_path / "smol")
    (folder / "chat_template.jinja").unlink()
    with pytest.raises(ValueError, match="no chat template"):
        load_vqa_model(folder)


def test_a_vqa_judge_checks_a_prompt_fact_by_fact(vqa):
    """One VQAScore question of the whole prompt, or one question per stated fact: each
    reading's P(yes) is the judge's, held at 0.5 or more."""
    judge = VQAJudge("vqa:tiny", vqa, ["red circle"])
    x = images(2)
    whole = prompt_facts("vqa:tiny", "a blue star above a green heart")
    assert [f.question for f in whole] == [QUESTIONS[1]] and whole[0].category == "prompt"
    asked = prompt_facts("vqa:tiny", "", [("object", QUESTIONS[0]), ("colour", QUESTIONS[2])])
    readings = check({"vqa:tiny": judge}, x, whole + asked)
    with torch.no_grad():
        for f, column in zip(whole + asked, zip(*readings)):
            p = judge.yes(x, [f.question] * 2)
            assert [r.p_yes for r in column] == pytest.approx(p.tolist(), abs=1e-6)
            assert [r.held for r in column] == (p >= 0.5).tolist()
            assert [r.category for r in column] == [None if h else f.category for h in (p >= 0.5).tolist()]
