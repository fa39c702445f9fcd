"""The package's layers: no module imports another that (through any chain, lazy imports
inside functions included) imports it back, and the adapters never import a world."""

import ast
from pathlib import Path

import pytest

import sagekit

ROOT = Path(sagekit.__file__).resolve().parent


def _modules() -> dict[str, Path]:
    out = {}
    for f in ROOT.rglob("*.py"):
        parts = ["sagekit", *f.relative_to(ROOT).with_suffix("").parts]
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = f
    return out


def import_graph() -> dict[str, set[str]]:
    """module -> the sagekit modules it imports anywhere in its text (a ``from pkg import
    name`` counts as importing ``pkg.name`` when that is a module, else ``pkg``)."""
    mods = _modules()
    graph = {}
    for mod, f in mods.items():
        package = mod.split(".") if f.name == "__init__.py" else mod.split(".")[:-1]
        deps = set()
        for node in ast.walk(ast.parse(f.read_text())):
            if isinstance(node, ast.ImportFrom):
                base = package[:len(package) - node.level + 1] if node.level else []
                target = ".".join(base + ([node.module] if node.module else []))
                deps |= {f"{target}.{a.name}" if f"{target}.{a.name}" in mods else target for a in node.names}
            elif isinstance(node, ast.Import):
                deps |= {a.name for a in node.names}
        graph[mod] = {d for d in deps if d in mods and d != mod}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on, found = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_walk_finds_a_cycle_when_there_is_one():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycle_anywhere():
    graph = import_graph()
    assert len(graph) > 50 and "sagekit.models.catalog" in graph["sagekit.toy.names"]
    assert cycles(graph) == []


@pytest.mark.parametrize("layer,never", [("sagekit.models", "sagekit.toy"), ("sagekit.models", "sagekit.studies"),
                                         ("sagekit.search", "sagekit.studies"), ("sagekit.toy", "sagekit.studies")])
def test_a_lower_layer_never_imports_a_higher_one(layer, never):
    """The adapters know no world and no study (a world registers its names with
    ``models.catalog``); the search engine and the toy world know no study."""
    wrong = {(m, d) for m, deps in import_graph().items() if m.startswith(layer)
             for d in deps if d == never or d.startswith(never + ".")}
    assert not wrong, sorted(wrong)


def test_the_toy_world_registers_its_names_without_loading_torch():
    import subprocess
    import sys

    code = ("import sys, sagekit; from sagekit.models import catalog; "
            "print(sorted(catalog.GENERATORS), 'toy-ensemble' in catalog.JUDGES, 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "['toy', 'toy-ddpm', 'toy-latent-learned', 'toy-pixel'] True False"
