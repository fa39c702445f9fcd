import math

import pytest
import torch

from sagekit.studies.alignment import alignment_difficulty


def test_ad_on_a_small_example_computed_by_hand():
    # three pairs in 2-D; angles in degrees
    def unit(deg):
        return [math.cos(math.radians(deg)), math.sin(math.radians(deg))]

    img = torch.tensor([unit(0), unit(90), unit(45)])
    txt = torch.tensor([unit(60), unit(90), unit(135)])
    # cos(img_i, txt_i): cos60 = .5, cos0 = 1, cos90 = 0
    # s_i = clip((c - .2) * 4, 0, 1): .5 -> 1.0 (clipped from 1.2), 1 -> 1, 0 -> 0
    d_fea = (0 + 0 + 1) / 3
    # image pair cosines: (1,2) cos90 = 0, (1,3) cos45, (2,3) cos45
    # text pair cosines:  (1,2) cos30,     (1,3) cos75, (2,3) cos45
    c = lambda d: math.cos(math.radians(d))
    d_stru = 2 / 9 * (abs(0 - c(30)) + abs(c(45) - c(75)) + abs(c(45) - c(45)))
    out = alignment_difficulty(img, txt)
    assert out["d_fea"] == pytest.approx(d_fea)
    assert out["d_stru"] == pytest.approx(d_stru)
    assert out["ad"] == pytest.approx(0.8 * d_fea + 0.2 * d_stru)


def test_ad_is_zero_for_identical_embeddings_and_grows_with_mismatch():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(50, 16, generator=g)
    assert alignment_difficulty(x, x)["ad"] == pytest.approx(0.0, abs=1e-9)
    shuffled = x[torch.randperm(50, generator=g)]
    assert alignment_difficulty(x, shuffled)["ad"] > 0.3


def test_ad_checks_its_input():
    with pytest.raises(ValueError):
        alignment_difficulty(torch.zeros(3, 4), torch.zeros(4, 4))
    with pytest.raises(ValueError):
        alignment_difficulty(torch.ones(3, 4), torch.ones(3, 4), alpha=2)


def _write_pairs(folder, n, poisoned=0):
    """n procedural images with their own captions; the last `poisoned` get another label's caption."""
    from PIL import Image

    from sagekit.toy.scenes import LABELS
    from sagekit.toy.world import make_dataset

    data = make_dataset(n, 3, kind="one")
    for i in range(n):
        Image.fromarray(data.images[i].permute(1, 2, 0).numpy()).save(folder / f"{i:03d}.png")
        label = int(data.labels[i]) if i < n - poisoned else (int(data.labels[i]) + 7) % len(LABELS)
        (folder / f"{i:03d}.txt").write_text(f"a photo of a {LABELS[label]}")
    (folder / "no-caption.png").write_bytes((folder / "000.png").read_bytes())


def test_folder_ad_rises_with_mismatched_captions(tmp_path):
    from sagekit.studies.alignment import folder_ad, read_pairs

    clean, dirty = tmp_path / "clean", tmp_path / "dirty"
    clean.mkdir(), dirty.mkdir()
    _write_pairs(clean, 40)
    _write_pairs(dirty, 40, poisoned=20)
    found = read_pairs(clean)
    assert len(found.pairs) == 40 and found.uncaptioned == ["no-caption.png"]  # the uncaptioned image is left out
    a, b = folder_ad(clean, "toy-clip"), folder_ad(dirty, "toy-clip")
    assert b["d_fea"] > a["d_fea"] and b["ad"] > a["ad"]


def test_folder_ad_errors_are_clear(tmp_path):
    from sagekit.models import ModelNotFoundError
    from sagekit.studies.alignment import folder_ad

    with pytest.raises(FileNotFoundError, match="not a folder"):
        folder_ad(tmp_path / "nope")
    with pytest.raises(ValueError, match="at least 2"):
        folder_ad(tmp_path)
    _write_pairs(tmp_path, 3)
    with pytest.raises(ModelNotFoundError, match="hf download"):
        folder_ad(tmp_path)  # the default, OpenAI ViT-B/32 (open_clip), is not on this machine


def test_ad_cli_refuses_broken_images_and_counts_what_it_leaves_out(tmp_path, capsys):
    import json

    from sagekit.cli import main

    _write_pairs(tmp_path, 4)
    (tmp_path / "orphan.txt").write_text("a photo of a red star")
    assert main(["ad", str(tmp_path), "--clip", "toy-clip", "--json"]) == 0
    cap = capsys.readouterr()
    res = json.loads(cap.out)
    assert res["n"] == 4 and res["uncaptioned"] == 1 and res["captions_without_image"] == 1
    assert "1 image(s) without a caption" in cap.err and "no-caption.png" in cap.err and "orphan.txt" in cap.err
    # a .png that is no image, and a truncated one: one line naming the file, exit 2
    (tmp_path / "fake.png").write_text("not an image")
    (tmp_path / "fake.txt").write_text("a caption")
    assert main(["ad", str(tmp_path), "--clip", "toy-clip"]) == 2
    err = capsys.readouterr().err
    assert "fake.png: not a readable image" in err and len(err.strip().splitlines()) == 1
    (tmp_path / "fake.png").write_bytes((tmp_path / "000.png").read_bytes()[:-40])
    assert main(["ad", str(tmp_path), "--clip", "toy-clip"]) == 2
    err = capsys.readouterr().err
    assert "fake.png: not a readable image" in err and len(err.strip().splitlines()) == 1
