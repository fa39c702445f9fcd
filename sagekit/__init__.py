"""sagekit: find and measure how text-to-image diffusion models fail.

Library code lives here; every study is a notebook in ``notebooks/`` run by
``sagekit run``. See ``sagekit.models`` for the adapters and ``sagekit.toy`` for the
self-trained toy world.
"""

__version__ = "0.1.0"
