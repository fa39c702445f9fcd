"""`sagekit bench`: measured speed and memory, on the toy world or on random-weight
pipelines of real architectures (``sagekit.bench.pipelines``).

- :func:`bench_sweep` (``sagekit bench sweep``): images/s of the stock pipeline vs a sagekit sweep
- :func:`bench_search` (``sagekit bench search``): seconds and peak memory per latent-search iteration
"""

from .pipelines import ARCHS, bench_model, sd15_random_pipeline, sdxl_random_pipeline
from .search_speed import bench_search
from .sweep_speed import bench_sweep

__all__ = ["ARCHS", "bench_model", "bench_search", "bench_sweep", "sd15_random_pipeline", "sdxl_random_pipeline"]
