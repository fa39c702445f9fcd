"""Explorers: one interactive view per study, for JupyterLab (ipywidgets), built here and
only called by the notebooks. A static report shows each as a still image of its first
view (:mod:`sagekit.explore.base`). One module per study: ``seed_shifts``, ``latents``
(distorted and unrelated latents), ``tokens``, ``prompts``, ``implosion``, ``toy_world``, ``audit`` (the prompt audit)."""

from .base import Explorer, Frame, in_report

__all__ = ["Explorer", "Frame", "in_report"]
