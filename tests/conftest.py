import atexit
import os
import shutil
import tempfile

# Before anything imports huggingface_hub: a missing model must fail at once, not retry.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
# The tests see an empty Hugging Face cache and their own digest cache, whatever this
# machine holds (a researcher's cache of the README's models must not change a result);
# tests that need hub models build a stand-in cache (`hub_cache`).
_EMPTY = tempfile.mkdtemp(prefix="sagekit-tests-")
atexit.register(shutil.rmtree, _EMPTY, True)
os.environ["HF_HOME"] = os.path.join(_EMPTY, "hf")
os.environ["HF_HUB_CACHE"] = os.path.join(_EMPTY, "hf", "hub")
os.environ["SAGEKIT_CACHE"] = os.path.join(_EMPTY, "sagekit")

import pytest
import torch

# a run that skipped tests ends with one NOT CHECKED line
from not_checked import pytest_terminal_summary, pytest_unconfigure  # noqa: F401

torch.set_num_threads(min(2, os.cpu_count() or 1))


@pytest.fixture(scope="session")
def tiny_sd(tmp_path_factory):
    """Folder of a tiny random Stable-Diffusion-architecture pipeline."""
    from sagekit.testing import save_tiny_pipeline

    return save_tiny_pipeline(tmp_path_factory.mktemp("tiny") / "tiny-sd", seed=0)


@pytest.fixture(scope="session")
def tiny_pixel(tmp_path_factory):
    """Folder of a tiny random pixel-space pipeline with learned variance (IF layout)."""
    from sagekit.testing import save_tiny_pipeline

    return save_tiny_pipeline(tmp_path_factory.mktemp("tiny") / "tiny-pixel", seed=1, learned_variance=True,
                              latent=False)


@pytest.fixture(scope="session")
def tiny_sdxl(tmp_path_factory):
    """Folder of a tiny random SDXL-base-architecture pipeline."""
    from sagekit.testing import save_tiny_sdxl_pipeline

    return save_tiny_sdxl_pipeline(tmp_path_factory.mktemp("tiny") / "tiny-sdxl", seed=2)


@pytest.fixture(scope="session")
def tiny_sd3(tmp_path_factory):
    """Folder of a tiny random SD3-architecture (flow-matching MMDiT) pipeline."""
    from sagekit.testing import save_tiny_sd3_pipeline

    return save_tiny_sd3_pipeline(tmp_path_factory.mktemp("tiny") / "tiny-sd3", seed=3)


@pytest.fixture(scope="session")
def hub_cache(tmp_path_factory):
    """Every hub model the README names, as a tiny random-weight stand-in of the same classes
    in an offline Hugging Face cache under its own id (``sagekit.testing.HUB_STAND_INS``)."""
    from sagekit.testing import HUB_STAND_INS, save_hub_stand_in

    cache = tmp_path_factory.mktemp("hub")
    for repo in HUB_STAND_INS:
        save_hub_stand_in(repo, cache)
    return cache


@pytest.fixture
def real_world(hub_cache, monkeypatch):
    """This process and the kernels it starts read the stand-in cache: a real model's "auto"
    judges resolve to the stand-ins of the README's hub models."""
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_CACHE", str(hub_cache))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(hub_cache))
    return hub_cache
