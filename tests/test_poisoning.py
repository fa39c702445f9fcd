"""`sagekit poison`: dirty-label poisoning of a folder, the budget rule, and bad input."""

import json

import pytest

from sagekit.cli import main
from sagekit.poisoning import choose_poison, mentions, parse_concepts, read_folder, recaption, training_set

from captioned import captioned_folder


def broken(folder, breakage):
    """The folder with one fault: no captions, a caption or an image without its pair, a
    file that is no image; or as it is ("none")."""
    if breakage == "no-captions":
        for f in folder.glob("*.txt"):
            f.unlink()
    if breakage == "orphan-caption":
        (folder / "zz.txt").write_text("a photo of a dog")
    if breakage == "orphan-image":
        (folder / "0000.txt").unlink()
    if breakage == "not-an-image":
        (folder / "0001.png").write_bytes(b"this is no png")
    return folder


@pytest.fixture
def folder(tmp_path):
    return captioned_folder(tmp_path / "pairs")


def test_concepts_parse_and_captions_are_relabelled():
    assert parse_concepts("dog:cat, car:bus") == [("dog", "cat"), ("car", "bus")]
    assert mentions("A Cat on a mat", "cat") and not mentions("a category", "cat") and not mentions("a bobcat", "cat")
    assert recaption("a cat, and another Cat", "dog", "cat") == "a dog, and another dog"


def test_poison_writes_the_dirty_label_set(folder, tmp_path, capsys):
    assert main(["poison", str(folder), "--concepts", "dog:cat,car:bus", "--budget", "5", "--out",
                 str(tmp_path / "out")]) == 0
    out = tmp_path / "out"
    manifest = json.loads((out / "poison.json").read_text())
    # the budget is split evenly (3 + 2), every poisoned image shows B and is captioned as A
    assert [len(c["poisoned"]) for c in manifest["concepts"]] == [3, 2]
    for c in manifest["concepts"]:
        for p in c["poisoned"]:
            assert mentions(p["true_caption"], c["target"]) and mentions(p["caption"], c["source"])
            assert (out / p["image"]).read_bytes() == (folder / p["image"]).read_bytes()
            assert (out / p["image"].replace(".png", ".txt")).read_text().strip() == p["caption"]
    # as many pairs as the folder; the rest unchanged
    again = read_folder(out)
    assert len(again.captions) == len(read_folder(folder).captions) == manifest["pairs"]
    changed = sum(a != b for a, b in zip(again.captions, read_folder(folder).captions))
    assert changed == 5


def test_the_study_set_keeps_its_size_and_budget(folder):
    pairs = [("dog", "cat"), ("car", "bus")]
    for k in (1, 2):
        s = training_set(folder, pairs[:k], 20, 4, 16, seed=0)
        c = training_set(folder, pairs[:k], 20, 4, 16, seed=0, control=True)
        assert len(s.captions) == 20 and s.images.shape == (20, 3, 16, 16) and int(s.poisoned.sum()) == 4
        assert (s.images == c.images).all() and not c.poisoned.any()  # the control: the same images, true captions
        assert sum(mentions(x, "cat") for x in c.captions[16:]) + sum(mentions(x, "bus") for x in c.captions[16:]) == 4
        assert all(mentions(x, a) for x, a in zip(s.captions[16:], [p[0] for p in pairs[:k] for _ in range(4 // k)]))
    assert choose_poison(read_folder(folder).captions, pairs, 4, seed=0) == choose_poison(
        read_folder(folder).captions, pairs, 4, seed=0)


@pytest.mark.parametrize("breakage,args,message", [
    ("none", ["--concepts", "dog:cat", "--budget", "2", "--in", "/no/such/folder"], "is not a folder"),
    ("no-captions", ["--concepts", "dog:cat", "--budget", "2"], "holds 0 image/caption pairs"),
    ("orphan-caption", ["--concepts", "dog:cat", "--budget", "2"], "caption file(s) without an image: zz.txt"),
    ("orphan-image", ["--concepts", "dog:cat", "--budget", "2"], "image(s) without a caption"),
    ("not-an-image", ["--concepts", "dog:cat", "--budget", "2"], "not a readable image"),
    ("none", ["--concepts", "dog:zebra", "--budget", "2"], "no caption mentions 'zebra'"),
    ("none", ["--concepts", "unicorn:cat", "--budget", "2"], "no caption mentions 'unicorn'"),
    ("none", ["--concepts", "dog", "--budget", "2"], "is not 'A:B'"),
    ("none", ["--concepts", "dog:cat", "--budget", "0"], "--budget must be at least 1"),
    ("none", ["--concepts", "dog:cat", "--budget", "99"], "needs 99 images of 'cat'"),
    ("none", ["--concepts", "dog:cat,car:bus", "--budget", "1"], "cannot cover 2 concepts"),
])
def test_bad_input_exits_2_and_writes_nothing(tmp_path, capsys, breakage, args, message):
    folder = broken(captioned_folder(tmp_path / "pairs", per_concept=2), breakage)
    if "--in" in args:
        i = args.index("--in")
        folder, args = args[i + 1], args[:i]
    assert main(["poison", str(folder), *args, "--out", str(tmp_path / "out")]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".out-*"))


@pytest.mark.parametrize("breakage,params,message", [
    ("none", ["lora_rank=0", "trainable='lora'"], "parameter 'lora_rank' must be an integer from 1"),
    ("no-captions", [], "holds 0 image/caption pairs"),
    ("orphan-caption", [], "caption file(s) without an image"),
    ("not-an-image", [], "not a readable image"),
    ("none", ["concepts='dog:zebra'"], "no caption mentions 'zebra'"),
    ("none", ["judge='timm:/no/such/judge'"], "/no/such/judge"),
    ("none", ["unpoisoned=['unicorn']"], "does not know the concepts 'unicorn'"),
    ("none", ["concepts=''"], "is not 'A:B'"),
])
def test_a_bad_folder_run_of_the_study_exits_2(tmp_path, capsys, breakage, params, message):
    """The implosion study on a folder refuses bad input before anything runs or is written."""
    from sagekit.testing import save_random_timm_judge

    from captioned import CONCEPTS

    folder = broken(captioned_folder(tmp_path / "pairs", per_concept=3), breakage)
    judge = save_random_timm_judge(tmp_path / "judge", list(CONCEPTS))
    base = {"data": repr(str(folder)), "concepts": "'dog:cat'", "unpoisoned": "['tree']", "judge": repr(f"timm:{judge}"),
            "ks": "[0, 1]", "budget": "2", "n_train": "10"}
    base.update(p.split("=", 1) for p in params)
    args = [a for k, v in base.items() for a in ("-p", f"{k}={v}")]
    assert main(["run", "implosion", *args, "--out", str(tmp_path / "out")]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
