"""Judges and CLIP scoring on random-weight models of the real libraries (no download)."""

import open_clip
import pytest
import timm
import torch

from sagekit.models.clip import ClipEmbedder, ClipScorer
from sagekit.models.judges import ClipZeroShotJudge, EdgeJudge, Ensemble, TimmJudge
from sagekit.models.registry import load_judge

from fixed_judge import LABELS, FixedJudge


def timm_judge(arch="test_resnet", seed=0, labels=LABELS):
    torch.manual_seed(seed)
    model = timm.create_model(arch, pretrained=False, num_classes=len(labels)).eval()
    return TimmJudge(arch, model, labels)




@pytest.mark.parametrize("arch", ["test_resnet", "mobilenetv3_small_050", "test_vit"])
def test_timm_judge_gives_differentiable_probabilities_at_any_size(arch):
    judge = timm_judge(arch)
    for size in (32, 97):
        x = torch.rand(2, 3, size, size, requires_grad=True)
        p = judge(x)
        assert p.shape == (2, 3) and torch.allclose(p.sum(-1), torch.ones(2), atol=1e-5)
        p[:, 0].sum().backward()
        assert x.grad.abs().sum() > 0


def test_judge_rejects_wrong_input_and_label_count():
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        timm_judge()(torch.rand(3, 32, 32))
    model = timm.create_model("test_resnet", pretrained=False, num_classes=5)
    with pytest.raises(ValueError, match="5 classes but 3 labels"):
        TimmJudge("x", model, LABELS)
    with pytest.raises(KeyError, match="not a label"):
        timm_judge().label_index("zebra")


def test_edge_judge_ignores_flat_colour_changes():
    """A constant offset has no edges: the edge judge must not see it; a plain judge does."""
    edge, plain = EdgeJudge("edge", timm_judge(seed=1)), timm_judge(seed=1)
    x = torch.rand(2, 3, 32, 32) * 0.5
    assert torch.allclose(edge(x), edge(x + 0.3), atol=1e-5)
    assert not torch.allclose(plain(x), plain(x + 0.3), atol=1e-3)
    x.requires_grad_(True)
    edge(x)[:, 1].sum().backward()
    assert x.grad.abs().sum() > 0


def test_ensemble_mean_and_agreement_rules():
    a = FixedJudge("a", [[0.7, 0.2, 0.1], [0.1, 0.8, 0.1]])
    b = FixedJudge("b", [[0.2, 0.7, 0.1], [0.1, 0.1, 0.8]])
    c = FixedJudge("c", [[0.1, 0.8, 0.1], [0.2, 0.2, 0.6]])
    x = torch.zeros(2, 3, 8, 8)
    ens = Ensemble("e", [a, b, c], weights=[2, 1, 1])
    assert torch.allclose(ens(x)[0], torch.tensor([0.425, 0.475, 0.1]), atol=1e-6)
    target = torch.tensor([0, 0])
    # image 0: judge a still sees label 0 -> not all agree it is absent; image 1: all agree
    assert ens.absent(x, target).tolist() == [False, True]
    assert Ensemble("m", [a, b, c], rule="majority").absent(x, target).tolist() == [True, True]
    assert Ensemble("w", [a, b, c], weights=[10, 1, 1], rule="mean").absent(x, target).tolist() == [False, True]


def test_ensemble_checks_its_parts():
    with pytest.raises(ValueError, match="other labels"):
        Ensemble("e", [timm_judge(), timm_judge(labels=("a", "b", "c"))])
    with pytest.raises(ValueError, match="agreement rule"):
        Ensemble("e", [timm_judge()], rule="any")
    with pytest.raises(ValueError, match="weights"):
        Ensemble("e", [timm_judge()], weights=[1, 2])


@pytest.fixture(scope="module")
def random_open_clip():
    torch.manual_seed(0)
    model = open_clip.create_model("ViT-B-32", pretrained=None).eval()
    return ClipEmbedder("open_clip:ViT-B-32:random", model, open_clip.get_tokenizer("ViT-B-32"), "open_clip",
                        (224, 224), open_clip.OPENAI_DATASET_MEAN, open_clip.OPENAI_DATASET_STD)


def test_open_clip_score_and_zero_shot(random_open_clip):
    scorer = ClipScorer(random_open_clip)
    x = torch.rand(2, 3, 64, 64)
    s = scorer(x, ["a photo of a cat", "a <script>alert(1)</script>"])
    assert s.shape == (2,) and (s >= 0).all() and (s <= 100).all()
    emb = random_open_clip.embed_images(x)
    assert torch.allclose(emb.norm(dim=-1), torch.ones(2), atol=1e-4)
    judge = ClipZeroShotJudge("zs", random_open_clip, LABELS)
    p = judge(x)
    assert p.shape == (2, 3) and torch.allclose(p.sum(-1), torch.ones(2), atol=1e-5)
    with pytest.raises(ValueError, match="2 images but 1 prompts"):
        scorer(x, ["one"])


def test_clip_score_is_100_times_clamped_cosine(random_open_clip):
    x = torch.rand(3, 3, 32, 32)
    prompts = ["a cat", "a dog", "a car"]
    cos = (random_open_clip.embed_images(x) * random_open_clip.embed_text(prompts)).sum(-1)
    assert torch.allclose(ClipScorer(random_open_clip)(x, prompts), 100 * cos.clamp_min(0), atol=1e-4)


# ---------------------------------------------------------------------------- judges by name
def test_ensemble_and_edge_specs_compose_any_judges(tmp_path):
    """`ensemble(rule):A*w+B+edge:C` builds the weighted ensemble SAGE uses from judges on
    disk (here random-weight timm folders saved as the hub saves them)."""
    from sagekit.models.judge_spec import parse_judge
    from sagekit.models.registry import load_ensemble, resolve_judge
    from sagekit.testing import save_random_timm_judge

    a = save_random_timm_judge(tmp_path / "a", LABELS, seed=1)
    b = save_random_timm_judge(tmp_path / "b", LABELS, arch="mobilenetv3_small_050", seed=2)
    spec = f"ensemble(majority):timm:{a}*2+timm:{b}+edge(sobel):timm:{a}"
    tree = parse_judge(spec)
    assert (tree.kind, tree.rule) == ("ensemble", "majority")
    assert [(m.text, m.kind, w) for m, w in tree.members] == [(f"timm:{a}", "timm", 2.0), (f"timm:{b}", "timm", 1.0),
                                                             (f"edge(sobel):timm:{a}", "edge", 1.0)]
    assert tree.members[2][0].inner.text == f"timm:{a}" and tree.leaves() == {f"timm:{a}", f"timm:{b}"}
    assert resolve_judge(spec) == [a, b, a]
    ens = load_judge(spec)
    assert isinstance(ens, Ensemble) and ens.rule == "majority" and ens.labels == LABELS
    assert torch.allclose(ens.weights, torch.tensor([0.5, 0.25, 0.25]))
    assert isinstance(ens.judges[2], EdgeJudge) and ens.judges[2].method == "sobel"
    images = torch.rand(2, 3, 24, 24, requires_grad=True)
    probs = ens(images)
    assert probs.shape == (2, 3) and torch.allclose(probs.sum(-1), torch.ones(2))
    assert torch.allclose(probs, torch.einsum("j,jbk->bk", ens.weights, ens.per_judge(images)))
    # a single judge becomes an ensemble of one; Canny is the default edge map
    single = load_ensemble(f"edge:timm:{b}")
    assert isinstance(single, Ensemble) and len(single.judges) == 1 and single.judges[0].method == "canny"


def test_the_canny_edge_judge_passes_gradients_along_the_edges():
    judge = EdgeJudge("edge", timm_judge(seed=3), method="canny")
    images = torch.zeros(1, 3, 32, 32)
    images[..., 8:24, 8:24] = 1.0  # a square: its outline is the only edge
    images.requires_grad_(True)
    edges = judge.edges(images)
    assert edges.shape == (1, 3, 32, 32) and edges[0, 0, 16, 16] == 0 and edges[0, 0].amax() > 0.1
    judge(images)[0, 0].backward()
    assert images.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="unknown edge method"):
        EdgeJudge("e", timm_judge(seed=3), method="laplace")


def test_bad_ensemble_specs_say_what_is_wrong(tmp_path):
    from sagekit.models.registry import UnknownModelError, resolve_judge
    from sagekit.testing import save_random_timm_judge

    a = save_random_timm_judge(tmp_path / "a", LABELS)
    other = save_random_timm_judge(tmp_path / "other", ("x", "y"))
    for spec, message in [(f"ensemble:timm:{a}+timm:{other}", "different label sets"),
                          (f"ensemble:timm:{a}*0", "every weight is zero"),
                          (f"ensemble:timm:{a}*inf", "non-negative weight"),
                          (f"ensemble:timm:{a}+toy-ensemble", "cannot hold another ensemble"),
                          (f"ensemble(best):timm:{a}", "unknown agreement rule")]:
        with pytest.raises(UnknownModelError, match=message):
            resolve_judge(spec)
