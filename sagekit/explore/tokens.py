"""Adversarial-token explorer: type any prompt, pick a learned token and set its strength
(0 → 1 → 2 × its embedding); the prompt with the token at that strength is drawn on a few
seeds, under the prompt without it, each image with every judge's top-1 and the
probability of the token's target."""

from __future__ import annotations

import torch

from ..studies.adversarial_tokens import ADV_TOKEN
from .base import Explorer, Frame, judge_lines


def explorer(gen, judge, result, seeds: list[int], guidance: float | None = None, steps: int | None = None,
             prompt: str | None = None, shown: int = 2) -> Explorer:
    """The explorer of the adversarial-token notebook: ``gen``, ``judge`` (the learning's
    ensemble), its ``result`` (:class:`~sagekit.studies.adversarial_tokens.TokenResult`),
    the ``seeds`` (the first ``shown`` are drawn), the sampling settings and the first
    ``prompt`` shown (default: the first held-out prompt)."""
    import ipywidgets as w

    if not result.targets:
        raise ValueError("no token was learned")
    seeds = [int(s) for s in seeds[:shown]]
    if prompt is None:
        prompt = str(result.table["prompt"].iloc[0]) if len(result.table) else "a photo"
    gen.add_tokens([ADV_TOKEN])
    controls = {
        "target": w.Dropdown(options=result.targets, description="token of"),
        "prompt": w.Text(value=prompt, description="prompt", continuous_update=False),
        "strength": w.FloatSlider(value=1.0, min=0.0, max=2.0, step=0.05, description="strength",
                                  continuous_update=False, readout_format=".2f"),
    }
    plain: dict[tuple[str, str], tuple[torch.Tensor, list[str], list[bool]]] = {}  # (prompt, target) -> its row
    z = gen.initial_noise(seeds).to(gen.device, gen.dtype)

    def drawn(embeddings, target: str) -> tuple[torch.Tensor, list[str], list[bool | None]]:
        with torch.no_grad():
            images = gen.decode(gen.denoise(z, embeddings, guidance, steps, seeds=seeds)).float().cpu()
        lines, _, probs = judge_lines(judge, images, [None] * len(seeds))
        k = judge.label_index(target)
        hit = [judge.labels[int(p.argmax())] == target for p in probs]
        captions = ["\n".join([f"seed {s}", *ls, f"P({target}) {float(p[k]):.2f}"])
                    for s, ls, p in zip(seeds, lines, probs)]
        return images, captions, hit

    def draw(target: str, prompt: str, strength: float) -> Frame:
        prompt = prompt.strip() or "a photo"
        if (prompt, target) not in plain:  # the prompt alone: drawn once per prompt and target
            plain[(prompt, target)] = drawn(gen.encode_prompts([prompt] * len(seeds)), target)
        emb = result.embeddings[target].to(gen.device) * float(strength)
        with torch.no_grad():
            adv = gen.embed_prompts([f"{prompt} {ADV_TOKEN}"] * len(seeds), {ADV_TOKEN: emb})
        base, with_token = plain[(prompt, target)], drawn(adv, target)
        return Frame(torch.cat([base[0], with_token[0]]), base[1] + with_token[1], ncol=len(seeds),
                     row_labels=["without the token", f"with it × {strength:.2f}"],
                     marks=[None] * len(seeds) + with_token[2],
                     note=f"{prompt!r} + the token learned for {target!r}; green: the ensemble sees {target}")

    return Explorer("Adversarial tokens: any prompt, the token at any strength", controls, draw)
