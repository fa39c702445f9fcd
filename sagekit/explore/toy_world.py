"""Toy-world explorer: draw a scene of the toy world (of any kind, or as the world mixes
them), its caption, and a toy generator's image of that caption; every toy judge (the
three object judges and the count, background, position, relation and realism judges)
reads both. Under the scene each judge's line says whether it got the scene right (✓/✗;
nothing where its attribute does not apply); under the generated image, whether the
object judges see what the caption names."""

from __future__ import annotations

import numpy as np
import torch

from ..seeds import seed_of
from ..toy.attributes import ATTRIBUTE_JUDGES as ATTRIBUTE_KINDS
from ..toy.attributes import JUDGE_LABELS, attribute_targets
from ..toy.attributes import OBJECT_JUDGES as OBJECT_KINDS
from ..toy.grammar import describe, objects_named
from ..toy.names import OBJECT_JUDGES, TOY_ATTRIBUTE_JUDGES
from ..toy.scenes import LABELS, Scene, render
from ..toy.world import KINDS, WorldConfig, sample_scene
from .base import Explorer, Frame

ANY = "as the world mixes them"


def truth(scene: Scene) -> dict[str, set[str]]:
    """What each toy judge (name without ``toy-``) should say of a procedural ``scene``: a
    set of right answers (the judges' training targets), empty where the judge's attribute
    does not apply."""
    targets = attribute_targets([scene])
    objects = {LABELS[t.label] for t in scene.things}
    out = {**{j: objects for j in OBJECT_KINDS}, "realism": {"real"}}
    for kind in ATTRIBUTE_KINDS:
        index = int(targets[kind][0])
        out[kind] = {JUDGE_LABELS[kind][index]} if index >= 0 else set()
    return out


def explorer(models, seed: int = 0, device: str = "cpu") -> Explorer:
    """The explorer of the toy-world notebook: the toy generators ``models`` (names) and
    the seed its scenes are drawn from; every object and attribute judge is loaded."""
    import ipywidgets as w

    from ..models.registry import load_generators, load_judge

    generators = load_generators(models, device)
    judges = {name: load_judge(name, device) for name in OBJECT_JUDGES + TOY_ATTRIBUTE_JUDGES}
    controls = {
        "model": w.Dropdown(options=list(generators), description="model"),
        "kind": w.Dropdown(options=[ANY, *KINDS], description="scene"),
        "number": w.BoundedIntText(value=0, min=0, max=2**24 - 1, description="number"),
    }
    cfg = WorldConfig()

    def readings(image: torch.Tensor) -> dict[str, tuple[str, float]]:
        out = {}
        for name, judge in judges.items():
            p = judge(image.to(judge.device)).cpu()[0]
            out[name.removeprefix("toy-")] = (judge.labels[int(p.argmax())], float(p.max()))
        return out

    def draw(model: str, kind: str, number: int) -> Frame:
        gen = generators[model]
        rng = np.random.default_rng([seed, number])  # the scene, then its words, from one stream per number
        scene = sample_scene(rng, cfg, None if kind == ANY else kind)
        caption = describe(scene, rng, cfg.synonym_rate)
        procedural = torch.tensor(render(scene, gen.image_size)).permute(2, 0, 1)[None].float() / 255
        with torch.no_grad():
            drawn = gen.generate([caption], [seed_of("explore", seed, number)])
        right = truth(scene)
        scene_lines = []
        for judge, (said, p) in readings(procedural).items():
            mark = "" if not right[judge] else (" ✓" if said in right[judge] else " ✗")
            scene_lines.append(f"{judge}: {said} ({p:.2f}){mark}")
        named = set(objects_named(caption))
        drawn_lines = []
        for judge, (said, p) in readings(drawn).items():
            mark = (" ✓" if said in named else " ✗") if judge in OBJECT_KINDS and named else ""
            drawn_lines.append(f"{judge}: {said} ({p:.2f}){mark}")
        object_hits = [line.endswith("✓") for line in drawn_lines[:3]]
        return Frame(torch.cat([procedural, drawn]), ["\n".join(["the scene", *scene_lines]),
                                                      "\n".join([f"{model} draws its caption", *drawn_lines])],
                     ncol=2, row_labels=[scene.kind], marks=[None, all(object_hits) if named else None],
                     note=f"caption: {caption!r}")

    return Explorer("Toy world: a scene, its caption, a model's drawing, every judge's reading", controls, draw)
