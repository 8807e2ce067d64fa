"""The package is drawn by its folders: the floors in clipsearch/__init__.py's map name
the folders (and the modules at the top), and every import goes down a floor or stays in
its own folder. Nothing here lists modules: a new one belongs to its folder's floor."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import clipsearch

PACKAGE = Path(clipsearch.__file__).parent
ENTRY = "__main__"  # `python -m clipsearch`: above every floor


def floors() -> list[list[str]]:
    """The map's floors, top first: folders as `name/`, top-level modules by name."""
    out = []
    for line in clipsearch.__doc__.splitlines():
        if line.startswith("    ") and not line.startswith("     "):
            names = re.split(r"\s{2,}", line.strip())[0].split()
            if names and all(re.fullmatch(r"[a-z_]+/?", n) for n in names):
                out.append(names)
    return out


def modules() -> dict[str, Path]:
    """Every module by dotted name under clipsearch ("indexing.plan", "library")."""
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        if parts:
            out[".".join(parts)] = path
    return out


def place(module: str) -> str:
    """The map's name for where a module lives: its folder (`storage/`) or, at the top,
    itself."""
    head, _, rest = module.partition(".")
    return f"{head}/" if rest or (PACKAGE / head).is_dir() else head


def folder(module: str) -> str:
    """The folder a module is in: a sub-package, or "" for the top of clipsearch/."""
    place_ = place(module)
    return place_ if place_.endswith("/") else ""


def imports(module: str, path: Path) -> set[str]:
    """The clipsearch modules a module imports, anywhere in it (in functions too, and
    under TYPE_CHECKING): relative imports resolved, `from . import x` as module x."""
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    known = modules()
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = package[: len(package) - node.level + 1]
            target = ".".join(base + ([node.module] if node.module else []))
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("clipsearch."):
            target = node.module.removeprefix("clipsearch.")
        else:
            continue
        for alias in node.names:
            name = f"{target}.{alias.name}" if target else alias.name
            out.add(name if name in known else target)
    return out - {""}


def rank() -> dict[str, int]:
    return {name: i for i, floor in enumerate(floors()) for name in floor}


def test_the_map_names_every_folder_and_top_module_once():
    mapped = [name for floor in floors() for name in floor]
    folders = {f"{p.parent.name}/" for p in PACKAGE.glob("*/__init__.py")}
    top = {p.stem for p in PACKAGE.glob("*.py")} - {"__init__", ENTRY}
    assert sorted(mapped) == sorted(folders | top)


def test_every_import_goes_down_a_floor_or_stays_in_its_folder():
    ranks = rank()
    upward = []
    for module, path in modules().items():
        if module == ENTRY:
            continue
        here = place(module)
        for other in imports(module, path):
            there = place(other)
            if folder(other) != folder(module) and ranks[there] <= ranks[here]:
                upward.append(f"{module} ({here}) imports {other} ({there})")
    assert upward == []


def test_no_module_imports_itself_round_a_circle():
    graph = {m: imports(m, p) - {m} for m, p in modules().items()}
    state: dict[str, str] = {}

    def visit(m: str, trail: list[str]) -> list[str] | None:
        state[m] = "open"
        for n in sorted(graph.get(m, ())):
            if state.get(n) == "open":
                loop = trail + [m, n]
                return loop[loop.index(n) :]
            if n not in state and (loop := visit(n, trail + [m])):
                return loop
        state[m] = "done"
        return None

    loops = [loop for m in sorted(graph) if m not in state and (loop := visit(m, []))]
    assert loops == []


def test_a_few_modules_at_the_top_and_the_rest_in_folders():
    top = [p.stem for p in PACKAGE.glob("*.py")]
    folders = [p.parent.name for p in PACKAGE.glob("*/__init__.py")]
    assert len(top) <= 8 and len(folders) >= 5


def test_no_function_is_longer_than_a_screen():
    """60 lines at most for a function's body, 40 for a command's: a longer one holds
    parts that want names of their own."""
    long = []
    for module, path in modules().items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.body[0].lineno + 1
                command = module.startswith("cli.") and any(
                    "command" in ast.unparse(d) for d in node.decorator_list
                )
                if length > (40 if command else 60):
                    long.append(f"{module}.{node.name}: {length} lines")
    assert long == []


def test_importing_the_package_status_or_a_decoding_worker_leaves_torch_out():
    """What `clipsearch --help`, `status`, `forget` and every decoding process import
    (the commands themselves are run in tests/cli/test_cli.py)."""
    for module in ("clipsearch", "clipsearch.cli", "clipsearch.status", "clipsearch.indexing.pool"):
        code = f"import sys, {module}; print('torch' in sys.modules)"
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
        assert proc.stdout.strip() == "False", (module, proc.stderr)
