"""Every weight that decides a stored number is in the number's key, hashed whole: a
garbled or retrained file gives another key, so old results are never reused for it."""

import os

import pytest
import torch
from safetensors.torch import save_file

from sagekit.models.registry import load_clip_scorer, load_generator, load_judge
from sagekit.models.weights import file_digest, weights_fingerprint
from sagekit.search import RobustGoal
from sagekit.search.loop import weights_in_key
from sagekit.studies import seed_shifts as ss
from sagekit.testing import save_random_open_clip, save_random_timm_judge
from sagekit.store import cell_key

LABELS = ["red circle", "blue square"]


def _garble_middle(path, n=2**20):
    size = path.stat().st_size
    with open(path, "r+b") as fh:
        fh.seek(size // 2 - n // 2)
        fh.write(os.urandom(n))
    assert path.stat().st_size == size


def test_a_file_garbled_in_its_middle_gets_another_fingerprint(tmp_path):
    folder = tmp_path / "unet"
    folder.mkdir()
    # 6 MiB: the old fingerprint read only the first and last MiB of a file
    save_file({"w": torch.randn(6 * 2**18)}, str(folder / "diffusion_pytorch_model.safetensors"))
    before = weights_fingerprint(folder)
    assert weights_fingerprint(folder) == before  # read from the digest cache, same answer
    _garble_middle(folder / "diffusion_pytorch_model.safetensors")
    assert weights_fingerprint(folder) != before


def test_the_digest_cache_is_keyed_by_size_and_modification_time(tmp_path):
    f = tmp_path / "w.safetensors"
    save_file({"w": torch.zeros(10)}, str(f))
    first = file_digest(f)
    stat = f.stat()
    save_file({"w": torch.ones(10)}, str(f))  # same size
    os.utime(f, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert file_digest(f) == first  # unchanged stamp: the cached hash (what makes SDXL cheap)
    os.utime(f, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1))
    assert file_digest(f) != first


@pytest.fixture
def judged(tmp_path, tiny_sd):
    judge_dir = save_random_timm_judge(tmp_path / "judge", LABELS, seed=0)
    clip_file = save_random_open_clip(tmp_path / "clip", seed=0)
    return tmp_path, judge_dir, clip_file, {"tiny": load_generator(str(tiny_sd))}


def _keys(gens, judge, clip):
    plan = ss.plan(gens, {"UMS": [0.1]}, LABELS, 0, 1, 1, [None], 2, judge, clip)
    return {cell_key(c) for c in plan.cells}


def test_a_retrained_judge_or_clip_model_misses_the_seed_shift_store(judged):
    tmp_path, judge_dir, clip_file, gens = judged
    judge, clip = load_judge(f"timm:{judge_dir}"), load_clip_scorer(f"open_clip:ViT-S-32-alt:{clip_file}")
    keys = _keys(gens, judge, clip)
    assert keys == _keys(gens, load_judge(f"timm:{judge_dir}"), clip)  # same weights: the same keys

    save_random_timm_judge(judge_dir, LABELS, seed=1)  # the judge retrained under the same name
    retrained = load_judge(f"timm:{judge_dir}")
    assert retrained.revision != judge.revision
    assert keys.isdisjoint(_keys(gens, retrained, clip))

    save_random_open_clip(tmp_path / "clip", seed=1)
    other_clip = load_clip_scorer(f"open_clip:ViT-S-32-alt:{clip_file}")
    assert other_clip.revision != clip.revision
    assert keys.isdisjoint(_keys(gens, judge, other_clip))


def test_a_search_checkpoint_key_holds_the_judges_and_the_generators_weights(judged, tiny_sd):
    tmp_path, judge_dir, _, gens = judged
    gen = gens["tiny"]
    goal = RobustGoal(load_judge(f"ensemble:timm:{judge_dir}"))
    key = weights_in_key(gen, goal)
    assert key["revision"] == gen.revision and key["weights"]["judges"] == goal.ensemble.revision != ""
    save_random_timm_judge(judge_dir, LABELS, seed=1)
    assert weights_in_key(gen, RobustGoal(load_judge(f"ensemble:timm:{judge_dir}"))) != key
