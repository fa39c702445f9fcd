"""sagekit: find and measure how text-to-image diffusion models fail.

Library code lives here; every study is a notebook in ``notebooks/`` run by
``sagekit run``. See ``sagekit.models`` for the adapters and ``sagekit.toy`` for the
self-trained toy world.
"""

__version__ = "0.1.0"

# The toy world registers its model names (timm-style), so that the adapters in
# sagekit.models never import a world; this costs no torch import.
from .toy import names as _toy_names  # noqa: E402,F401
