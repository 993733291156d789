"""nnsplice's packages form layers: none imports a package above it, none imports another from
inside a function (only heavy third-party libraries are imported lazily), and a config followed from
run_pipeline.py to its result row goes down the layers."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# Bottom to top; README.md ("Extending nnsplice") draws the same order.
LAYERS = ["configs", "profiling", "training", "android_runtime", "converter", "branching", "fusion", "exits",
          "modular", "pipeline"]
CLIS = ["run_pipeline.py"]  # on top of every package


def _top(module: str) -> str:
    return module.split(".")[0]


def _imports(path: Path) -> list[tuple[str, int, bool]]:
    """(imported top-level package, line, inside a function) for every absolute project import."""
    tree = ast.parse(path.read_text())
    inside: set[int] = set()
    for fn in ast.walk(tree):
        if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
            inside.update(id(n) for n in ast.walk(fn) if isinstance(n, (ast.Import, ast.ImportFrom)))
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        out += [(_top(n), node.lineno, id(node) in inside) for n in names if _top(n) in LAYERS]
    return out


def _package_files() -> list[Path]:
    return [p for pkg in LAYERS if (ROOT / pkg).is_dir() for p in sorted((ROOT / pkg).rglob("*.py"))]


def _relative_lazy(path: Path) -> list[int]:
    """Lines of relative imports inside functions (a package's own modules belong at the top too)."""
    tree = ast.parse(path.read_text())
    return [n.lineno for fn in ast.walk(tree) if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef))
            for n in ast.walk(fn) if isinstance(n, ast.ImportFrom) and n.level > 0]


def test_every_top_level_package_is_in_a_layer():
    skip = {"tests", "bench", "build", "work", "configs"}
    pkgs = {p.parent.name for p in ROOT.glob("*/__init__.py")} - skip
    assert pkgs <= set(LAYERS), f"add {sorted(pkgs - set(LAYERS))} to LAYERS (and the README's layer drawing)"


@pytest.mark.parametrize("path", _package_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_no_package_imports_one_above_it(path):
    own = LAYERS.index(path.relative_to(ROOT).parts[0])
    up = [(pkg, line) for pkg, line, _ in _imports(path) if LAYERS.index(pkg) > own]
    assert not up, f"{path.relative_to(ROOT)} imports packages above its layer: {up}"


@pytest.mark.parametrize("path", _package_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_project_modules_are_imported_at_the_top(path):
    own = path.relative_to(ROOT).parts[0]
    lazy = [(pkg, line) for pkg, line, inside in _imports(path) if inside]
    if path.name != "__init__.py":  # a package's __init__ may re-export lazily to keep `import pkg` free of torch
        lazy += [(own, line) for line in _relative_lazy(path)]
    assert not lazy, f"{path.relative_to(ROOT)} imports project modules inside functions: {lazy}"


def test_no_two_packages_import_each_other():
    edges = {(path.relative_to(ROOT).parts[0], pkg) for path in _package_files() for pkg, _, _ in _imports(path)}
    pairs = sorted({tuple(sorted(e)) for e in edges if e[0] != e[1] and (e[1], e[0]) in edges})
    assert not pairs, f"packages that import each other: {pairs}"


def test_a_config_goes_down_the_layers():
    """From run_pipeline.py to the result row, every hop goes to a lower (or the same) layer: the
    CLI -> pipeline -> sources -> networks -> converter -> runtime -> profiling -> configs."""
    chain = ["pipeline", "fusion", "branching", "converter", "android_runtime", "profiling", "configs"]
    assert [LAYERS.index(p) for p in chain] == sorted((LAYERS.index(p) for p in chain), reverse=True)
    cli = {pkg for pkg, _, _ in _imports(ROOT / "run_pipeline.py")}
    assert "pipeline" in cli and cli <= set(LAYERS)
