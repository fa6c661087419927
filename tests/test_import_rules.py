"""The direction of imports (README "Layout"), read statically from the source with `ast`:
which of our packages may import which, and no import cycles between modules.

Every import counts, also one inside a function (a lazy import still ties the modules) and
`importlib.import_module("literal")`, except imports under `if TYPE_CHECKING:`. To let a package import another, add a row to `ALLOWED` with
the reason.
"""

from __future__ import annotations

import ast
import graphlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PRODUCT = ("crowd", "analysis", "explain", "training", "active", "templates")
OURS = (*PRODUCT, "argus", "sim", "bench", "tests")
NEVER_FROM_PRODUCT = ("sim", "bench", "tests", "argus")

# (importing package, imported package or module, why). A package may always import itself;
# "*" allows every package of ours except `bench` and `tests`. `training` imports none of ours.
ALLOWED = [
    ("explain", "training.datasets", "explain reads the dataset folder through training's readers"),
    ("explain", "training.checkpoint", "the checkpoint (model.pt + model.json) is read by training.checkpoint alone"),
    ("explain", "training.evaluate", "device resolution (`resolve_device`) is written once, in training"),
    ("explain", "templates", "sheets render with templates/sheets"),
    ("explain", "training.progress", "progress bars that stay readable in logs are written once, in training"),
    ("crowd", "templates", "the worker and admin pages render with templates/worker and templates/admin"),
    ("crowd", "explain.sheet_files", "batches are made from sheets folders, read by their one reader"),
    ("crowd", "training.progress", "progress bars that stay readable in logs (it imports only tqdm)"),
    ("analysis", "crowd.judgments", "the judgments frame contract (columns, kinds, levels, reader) has one owner; "
                                    "it imports nothing of the server, so analysis still never reads the server"),
    ("analysis", "explain.sheet_files", "the sheets folder is read by its one reader"),
    ("analysis", "training.datasets", "the dataset folder (parts, masks, samples) is read by its one reader"),
    ("analysis", "training.registry", "aggregators register in the one plug-in registry"),
    ("analysis", "training.progress", "progress bars that stay readable in logs are written once, in training"),
    ("active", "training", "active learning trains and evaluates with training's models and datasets"),
    ("active", "crowd.client", "the crowd oracle talks to the crowd server through its public HTTP API only"),
    ("active", "analysis.aggregate", "the crowd oracle aggregates the bought judgments with Dawid-Skene"),
    ("argus", "*", "the CLI and the pipelines are glue over every package (the demo uses sim)"),
    ("sim", "*", "simulations drive the product from outside"),
    ("bench", "*", "benchmarks measure the product (bench/ is a folder of scripts, not a package)"),
    ("tests", "*", "tests exercise every package"),
]


def _is_type_checking(node: ast.If) -> bool:
    t = node.test
    return (isinstance(t, ast.Name) and t.id == "TYPE_CHECKING") or (
        isinstance(t, ast.Attribute) and t.attr == "TYPE_CHECKING")


def _call_name(func) -> str:
    if isinstance(func, ast.Name):
        return func.id
    if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name):
        return f"{func.value.id}.{func.attr}"
    return ""


def _walk(node):
    """Every node, skipping the bodies of `if TYPE_CHECKING:` blocks."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.If) and _is_type_checking(child):
            yield from (n for orelse in child.orelse for n in [orelse, *_walk(orelse)])
            continue
        yield child
        yield from _walk(child)


class ImportGraph:
    """Our modules under `root` (dotted name -> file) and what each imports of ours."""

    def __init__(self, root: Path):
        self.root = root
        self.modules: dict[str, Path] = {}
        for top in OURS:
            for path in sorted((root / top).rglob("*.py")):
                rel = path.relative_to(root)
                if any(part.startswith(".") or part == "__pycache__" for part in rel.parts):
                    continue
                parts = list(rel.with_suffix("").parts)
                if parts[-1] == "__init__":
                    parts.pop()
                self.modules[".".join(parts)] = path
        self._imports: dict[str, tuple] = {}

    def resolve(self, name: str) -> str | None:
        """The longest known module that `name` names (a name imported from a module is not one)."""
        while name and name not in self.modules:
            name = name.rpartition(".")[0]
        return name or None

    def imports_of(self, module: str) -> tuple[tuple[str, int], ...]:
        """`(imported module of ours, line)` for every import in `module`."""
        if module in self._imports:
            return self._imports[module]
        path = self.modules[module]
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        found = []
        for node in _walk(ast.parse(path.read_text(), str(path))):
            names = []
            if isinstance(node, ast.Call) and _call_name(node.func) in ("importlib.import_module", "import_module",
                                                                         "__import__") \
                    and node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str):
                names = [node.args[0].value]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*anchor, base] if base else anchor)
                # `from X import y`: the submodule X.y when y is one, else X itself
                names = [f"{base}.{a.name}" if f"{base}.{a.name}" in self.modules else base for a in node.names]
            for name in names:
                if name.split(".")[0] in OURS:
                    target = self.resolve(name)
                    if target and target != module:
                        found.append((target, node.lineno))
        first = {}
        for target, line in found:
            first.setdefault(target, line)
        self._imports[module] = tuple(first.items())
        return self._imports[module]

    def cycle(self) -> list[str] | None:
        """One import cycle between modules, or None."""
        try:
            graphlib.TopologicalSorter({m: {t for t, _ in self.imports_of(m)} for m in self.modules}).prepare()
        except graphlib.CycleError as exc:
            return list(exc.args[1])
        return None


@pytest.fixture(scope="module")
def graph() -> ImportGraph:
    return ImportGraph(ROOT)


def _allowed(importer: str, target: str) -> bool:
    src, dst = importer.split(".")[0], target.split(".")[0]
    if src == dst:
        return True
    for who, what, _why in ALLOWED:
        if who != src:
            continue
        if what == "*" and dst not in ("bench", "tests"):
            return True
        if target == what or target.startswith(what + "."):
            return True
    return False


def test_the_table_never_lets_a_product_package_import_sim_bench_tests_or_argus():
    for who, what, why in ALLOWED:
        assert why.strip(), f"ALLOWED row ({who}, {what}) needs a reason"
        if who in PRODUCT:
            assert what != "*" and what.split(".")[0] not in NEVER_FROM_PRODUCT, (who, what)
    assert not any(who == "training" for who, _, _ in ALLOWED)  # training depends on nothing of ours


@pytest.mark.parametrize("package", OURS)
def test_every_import_is_allowed(graph, package):
    bad = [f"{graph.modules[m].relative_to(ROOT)}:{line}: {m} imports {target}"
           for m in graph.modules if m.split(".")[0] == package
           for target, line in graph.imports_of(m) if not _allowed(m, target)]
    assert not bad, "imports the layout does not allow (add a row to ALLOWED with the reason if it should):\n" \
                    + "\n".join(bad)


def test_every_row_of_the_table_is_used(graph):
    # a row no import needs any more would let the next, unreviewed import through
    used = {(m.split(".")[0], t) for m in graph.modules for t, _ in graph.imports_of(m)}
    stale = [(who, what) for who, what, _ in ALLOWED if what != "*"
             and not any(src == who and (t == what or t.startswith(what + ".")) for src, t in used)]
    assert not stale, f"ALLOWED rows no import uses (remove them): {stale}"


def test_product_packages_never_import_sim_bench_tests_or_argus(graph):
    bad = [f"{m} imports {t}" for m in graph.modules if m.split(".")[0] in PRODUCT
           for t, _ in graph.imports_of(m) if t.split(".")[0] in NEVER_FROM_PRODUCT]
    assert not bad, bad


@pytest.mark.parametrize("module", ["crowd.client", "crowd.judgments"])
def test_the_crowd_modules_other_packages_import_bring_none_of_the_server(graph, module):
    # `active` and `analysis` may import these (ALLOWED); they must not drag in the server
    assert graph.imports_of(module) == (), graph.imports_of(module)


def test_no_import_cycles_between_modules(graph):
    cycle = graph.cycle()
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_the_reader_sees_imports_of_every_form(tmp_path):
    """The checker itself, on made-up packages: plain, from, relative, lazy and TYPE_CHECKING
    imports, the rules and a cycle."""
    files = {
        "crowd/__init__.py": "",
        "crowd/a.py": "from typing import TYPE_CHECKING\nimport crowd.b\nfrom . import c\nfrom .c import thing\n"
                      "def f():\n    from sim import worker\nif TYPE_CHECKING:\n    import argus\n"
                      "else:\n    import training\nimportlib.import_module('crowd.b')\n",
        "crowd/b.py": "", "crowd/c.py": "thing = 1\n",
        "sim/__init__.py": "", "sim/worker.py": "import crowd.a\n",
        "training/__init__.py": "",
    }
    for rel, text in files.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    g = ImportGraph(tmp_path)
    assert [t for t, _ in g.imports_of("crowd.a")] == ["crowd.b", "crowd.c", "sim.worker", "training"]
    assert g.resolve("crowd.c.thing") == "crowd.c" and g.resolve("numpy") is None
    assert not _allowed("crowd.a", "sim.worker") and _allowed("sim.worker", "crowd.a")
    assert not _allowed("crowd.a", "training") and _allowed("crowd.a", "crowd.b")
    assert g.cycle() in (["crowd.a", "sim.worker", "crowd.a"], ["sim.worker", "crowd.a", "sim.worker"])
