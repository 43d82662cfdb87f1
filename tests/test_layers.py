"""The package's layers: no import cycles, nothing reaching back up the data flow.

Every import statement of every module counts, including the lazy ones inside
functions: a lazy import still ties the two modules together."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1] / "mechrare"

#: the data flow, bottom to top; a module may import only from its own rank or below
RANKS = [
    ("mechrare._version", "mechrare.errors", "mechrare.names", "mechrare.registry", "mechrare.atomic", "mechrare.config", "mechrare.devices", "mechrare.ranks", "mechrare.stats", "mechrare.workers"),
    ("mechrare.data", "mechrare.models"),
    ("mechrare.checkpoints",),
    ("mechrare.training", "mechrare.activations", "mechrare.probes", "mechrare.series", "mechrare.runs", "mechrare.examples"),
    ("mechrare.analyses",),
    ("mechrare.reports",),
    ("mechrare.toy",),
    ("mechrare.api", "mechrare.cli", "mechrare.__main__", "mechrare"),
]
#: besides the ranks: pairs of layers that must never import one another
FORBIDDEN = [("mechrare.analyses", "mechrare.training"), ("mechrare.reports", "mechrare.analyses"), ("mechrare.reports", "mechrare.training")]


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in ROOT.rglob("*.py")}


def imports(path: Path, known: set[str]) -> set[str]:
    """Modules of the package that ``path`` imports, anywhere in the file."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            # ``from pkg import sub`` imports the submodule; ``from mod import Name`` the module
            names = [f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in known else node.module for a in node.names]
        else:
            continue
        out.update(n for n in names if n in known)
    return out


def graph() -> dict[str, set[str]]:
    mods = modules()
    known = set(mods)
    return {m: imports(p, known) - {m} for m, p in mods.items()}


def layer(module: str) -> str:
    best = ""
    for group in RANKS:
        for prefix in group:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > len(best):
                best = prefix
    return best


def rank(module: str) -> int:
    name = layer(module)
    return next(i for i, group in enumerate(RANKS) if name in group)


def test_every_module_has_a_layer():
    assert all(layer(m) for m in modules()), [m for m in modules() if not layer(m)]


def test_no_two_modules_import_each_other_and_no_cycles():
    g = graph()
    mutual = sorted((a, b) for a in g for b in g[a] if a < b and a in g.get(b, ()))
    assert not mutual, f"modules importing each other: {mutual}"
    # any longer cycle: depth-first search for a back edge
    state: dict[str, int] = {}

    def visit(m, stack):
        state[m] = 1
        for n in sorted(g[m]):
            if state.get(n) == 1:
                pytest.fail(f"import cycle: {' -> '.join(stack[stack.index(n):] + [n])}")
            if n not in state:
                visit(n, stack + [n])
        state[m] = 2

    for m in sorted(g):
        if m not in state:
            visit(m, [m])


def test_nothing_reaches_back_up_the_flow():
    g = graph()
    up = sorted((a, b) for a, targets in g.items() for b in targets if rank(b) > rank(a))
    assert not up, f"imports against the data flow: {up}"


@pytest.mark.parametrize("low, high", FORBIDDEN)
def test_forbidden_imports(low, high):
    g = graph()
    bad = sorted((a, b) for a, targets in g.items() for b in targets if layer(a) == low and layer(b) == high)
    assert not bad, f"{low} must not import {high}: {bad}"


def test_the_checker_sees_lazy_imports(tmp_path):
    src = tmp_path / "m.py"
    src.write_text("def f():\n    from mechrare.training.runner import train_run\n    import mechrare.errors\n")
    assert imports(src, {"mechrare.training.runner", "mechrare.errors"}) == {"mechrare.training.runner", "mechrare.errors"}
