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
from ..toy.attributes import RELATIONS
from ..toy.grammar import describe, objects_named
from ..toy.names import OBJECT_JUDGES, TOY_ATTRIBUTE_JUDGES
from ..toy.scenes import BACKGROUNDS, COUNTS, LABELS, Scene, render
from ..toy.world import KINDS, WorldConfig, sample_scene
from .base import Explorer, Frame

ANY = "as the world mixes them"


def truth(scene: Scene) -> dict[str, set[str]]:
    """What each toy judge (name without ``toy-``) should say of a procedural ``scene``: a
    set of right answers, empty where the judge's attribute does not apply."""
    objects = {LABELS[t.label] for t in scene.things}
    relation = (RELATIONS[scene.things[0].label + (0 if scene.axis == "horizontal" else len(LABELS))]
                if scene.kind == "two" else None)
    return {**{j: objects for j in ("resnet", "mobilenet", "edge")},
            "count": {COUNTS[scene.count]}, "background": {list(BACKGROUNDS)[scene.background]},
            "position": {scene.position} if scene.kind == "one" else set(),
            "relation": {relation} if relation else set(), "realism": {"real"}}


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
    order = list(OBJECT_JUDGES + TOY_ATTRIBUTE_JUDGES)

    def readings(image: torch.Tensor) -> dict[str, tuple[str, float]]:
        out = {}
        for name in order:
            p = judges[name](image.to(judges[name].device)).cpu()[0]
            out[name.removeprefix("toy-")] = (judges[name].labels[int(p.argmax())], float(p.max()))
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
            mark = (" ✓" if said in named else " ✗") if judge in ("resnet", "mobilenet", "edge") and named else ""
            drawn_lines.append(f"{judge}: {said} ({p:.2f}){mark}")
        object_hits = [line.endswith("✓") for line in drawn_lines[:3]]
        return Frame(torch.cat([procedural, drawn]), ["\n".join(["the scene", *scene_lines]),
                                                      "\n".join([f"{model} draws its caption", *drawn_lines])],
                     ncol=2, row_labels=[scene.kind], marks=[None, all(object_hits) if named else None],
                     note=f"caption: {caption!r}")

    return Explorer("Toy world: a scene, its caption, a model's drawing, every judge's reading", controls, draw)

