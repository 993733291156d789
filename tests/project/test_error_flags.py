"""Error messages name only flags that exist.

Every ``--flag`` quoted in the text of a UserError / DeviceError / ConfigError / ArtifactError
raised in the project must be a flag of run_pipeline.py or of a command-line module of the same
top-level package (``python -m branching.search``, ``fusion.search``, ...), found by reading
their ``add_argument`` calls.
"""
from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("configs", "profiling", "training", "android_runtime", "converter", "branching", "fusion", "exits",
            "modular", "pipeline")
ERRORS = {"UserError", "DeviceError", "ConfigError", "ArtifactError"}
MODULE = re.compile(r"python -m ([A-Za-z_][\w.]*)")
# Commands of other tools a message may quote (their flags are theirs): `ray start --head`, ...
FOREIGN = re.compile(r"\b(?:ray|adb|apt-get|pip) [a-z-]+(?: [a-z-]+)*(?: --[a-z][a-z0-9_-]*)+")
FLAG = re.compile(r"(?<![\w-])--[a-z][a-z0-9_-]*[a-z0-9]")


def _strings(node: ast.AST) -> list[str]:
    return [n.value for n in ast.walk(node) if isinstance(n, ast.Constant) and isinstance(n.value, str)]


def _call_name(call: ast.Call) -> str:
    f = call.func
    return f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else ""


def cli_flags(path: Path) -> set[str]:
    """Flags a module's argparse parser defines (the string arguments of add_argument)."""
    tree = ast.parse(path.read_text())
    return {s for c in ast.walk(tree) if isinstance(c, ast.Call) and _call_name(c) == "add_argument"
            for a in c.args if isinstance(a, ast.Constant) and isinstance(s := a.value, str) and s.startswith("--")}


def error_flags(path: Path) -> list[tuple[int, str, str]]:
    """(line, flag, module) for every --flag in the string parts of an error class call in `path`;
    module is X when the message says ``python -m X`` (the flag is then X's), else ""."""
    tree = ast.parse(path.read_text())
    out = []
    for c in ast.walk(tree):
        if isinstance(c, ast.Call) and _call_name(c) in ERRORS:
            text = " ".join(s for arg in [*c.args, *(k.value for k in c.keywords)] for s in _strings(arg))
            named = MODULE.search(text)
            text = FOREIGN.sub("", text)
            out += [(c.lineno, m, named.group(1) if named else "") for m in FLAG.findall(text)]
    return out


def module_flags(module: str) -> set[str]:
    """Flags of ``python -m module`` (its file or its package's __main__.py); empty if no such module."""
    base = ROOT / module.replace(".", "/")
    for f in (base.with_suffix(".py"), base / "__main__.py"):
        if f.is_file():
            return cli_flags(f)
    return set()


def package_flags() -> dict[str, set[str]]:
    top = cli_flags(ROOT / "run_pipeline.py")
    flags = {}
    for pkg in PACKAGES:
        own = set()
        for f in (ROOT / pkg).rglob("*.py") if (ROOT / pkg).is_dir() else []:
            if "add_argument" in f.read_text():
                own |= cli_flags(f)
        flags[pkg] = top | own
    return flags


def test_the_scan_finds_flags_and_messages():
    """Guards the test itself: run_pipeline's flags are read, and messages quoting flags are found."""
    assert {"--configs", "--serial", "--adb_host", "--runs", "--core_affinity"} <= cli_flags(ROOT / "run_pipeline.py")
    found = [flag for pkg in PACKAGES if (ROOT / pkg).is_dir()
             for f in (ROOT / pkg).rglob("*.py") for _, flag, _ in error_flags(f)]
    assert len(found) > 20 and "--serial" in found
    assert "--out" in module_flags("fusion.search") and "--lanes" in module_flags("branching.search")


def test_every_flag_named_in_an_error_message_exists():
    flags = package_flags()
    bad = []
    for pkg in PACKAGES:
        if not (ROOT / pkg).is_dir():
            continue
        for f in sorted((ROOT / pkg).rglob("*.py")):
            bad += [f"{f.relative_to(ROOT)}:{line}: {flag}" for line, flag, module in error_flags(f)
                    if flag not in flags[pkg] | (module_flags(module) if module else set())]
    assert not bad, "error messages name flags that no CLI of their package (nor run_pipeline.py) has:\n" + \
        "\n".join(bad)
