"""The package map in clipsearch/__init__.py stays true: every module has its place and
imports only from its own layer and those below."""

from __future__ import annotations

import ast
from pathlib import Path

import clipsearch

PACKAGE = Path(clipsearch.__file__).parent
LAYERS = {  # lowest first, as the map in clipsearch/__init__.py lists them from the bottom
    "basics": "errors faults files content prompts precisions config memo digests priority items",
    "images": "preprocess",
    "model": "model tokenizer open_clip_models weights torchscript pretrained hub cpu_text encoder",
    "storage": "catalog exact query_log tuning ann store synthetic",
    "work": "indexer decoding scan sources ray_pipeline search query_precision status train "
    "training_data evaluate distill",
    "faces": "cli server render library __main__",
}
RANK = {m: rank for rank, names in enumerate(LAYERS.values()) for m in names.split()}


def imported(module: Path) -> set[str]:
    """Package modules a module imports (`from .x import`, `from . import x`), anywhere."""
    out = set()
    for node in ast.walk(ast.parse(module.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            if node.module:
                out.add(node.module.split(".")[0])
            else:
                out.update(alias.name for alias in node.names)
    return out


def test_every_module_has_a_layer_and_is_on_the_map():
    modules = {p.stem for p in PACKAGE.glob("*.py")} - {"__init__"}
    assert modules == set(RANK)
    for name in modules - {"__main__"}:
        assert name in clipsearch.__doc__, f"{name} is missing from the map in __init__.py"


def test_modules_import_only_their_layer_and_below():
    upward = [
        f"{module.stem} ({layer}) imports {other}"
        for module in PACKAGE.glob("*.py")
        if module.stem != "__init__"
        for layer in [RANK[module.stem]]
        for other in imported(module)
        if RANK.get(other, 0) > layer
    ]
    assert upward == []
