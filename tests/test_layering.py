"""The library's layers: imports point down, no cycles, no project import inside a function, modules of one size.

:data:`LAYERS` is the one place the order is written (``docs/architecture.md`` explains it). A unit is a
sub-package (``usseg_monai/data/``) or a top-level module (``usseg_monai/infer.py``); a module may import its own
unit and the units of lower layers only, so two units of one layer never import each other. Inside a unit the
modules form no import cycle (the package ``__init__`` included). The checks read the source with ``ast``: nothing
is imported, so a cycle or an upward arrow is found even where Python would tolerate it at run time.
"""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Iterable
from importlib import import_module
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "usseg_monai"

#: bottom to top; "" is the package's own ``__init__`` (its version)
LAYERS: list[list[str]] = [
    ["", "utils"],
    ["calipers", "networks", "engines", "logs", "recipes"],
    ["data", "metrics", "losses"],
    ["transforms", "bundle_paths", "export"],
    ["handlers", "infer_inputs"],
    ["config_checks", "bundle_checks", "infer", "monailabel_client"],
    ["evaluation"],
    ["cli"],
]

#: third-party packages a function may import lazily: optional readers and plotting (heavy, and not needed by
#: most commands); any other import inside a function must be in a ``try`` that handles ``ImportError``
LAZY_OPTIONAL = {"PIL", "itk", "nibabel", "pydicom", "matplotlib"}

MAX_LINES = 550


def _module_name(path: Path, package: Path) -> str:
    rel = path.relative_to(package.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _modules(package: Path) -> dict[str, Path]:
    return {_module_name(p, package): p for p in sorted(package.rglob("*.py"))}


def _unit(module: str, top: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == top else ""


def _imports(path: Path, module: str, modules: dict[str, Path]) -> Iterable[tuple[ast.stmt, str, bool]]:
    """``(node, imported module, at module level)`` for every import of a module of this package in ``path``."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    top = {id(n) for n in tree.body}
    for n in tree.body:  # imports under a module-level ``if`` / ``try`` are module level too
        if isinstance(n, (ast.If, ast.Try)):
            top |= {id(m) for m in ast.walk(n)}
    top_name = module.split(".")[0]
    is_pkg = path.name == "__init__.py"
    for node in ast.walk(tree):
        if not isinstance(node, (ast.Import, ast.ImportFrom)):
            continue
        targets: list[str] = []
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                here = module.split(".") if is_pkg else module.split(".")[:-1]
                here = here[: len(here) - (node.level - 1)]
                base = ".".join(here + ([node.module] if node.module else []))
            for alias in node.names:
                full = f"{base}.{alias.name}"
                targets.append(full if full in modules else base)
        else:
            targets = [alias.name for alias in node.names]
        for t in targets:
            if t.split(".")[0] != top_name:
                continue
            while t not in modules and "." in t:
                t = t.rsplit(".", 1)[0]
            yield node, t, id(node) in top


def layering_problems(package: Path, layers: list[list[str]]) -> list[str]:
    """Every import of ``package`` that points up or sideways, every module of no layer, and every import cycle
    between the modules of one unit."""
    modules = _modules(package)
    top = package.name
    level = {unit: i for i, units in enumerate(layers) for unit in units}
    problems = []
    edges: dict[str, set[str]] = {m: set() for m in modules}
    for module, path in modules.items():
        unit = _unit(module, top)
        if unit not in level:
            problems.append(f"{module}: its unit {unit!r} is in no layer (add it to LAYERS)")
            continue
        for node, target, _ in _imports(path, module, modules):
            other = _unit(target, top)
            if other == unit:
                if target != module:
                    edges[module].add(target)
                continue
            if other not in level:
                continue  # reported for its own modules
            if level[other] >= level[unit]:
                problems.append(
                    f"{module}:{node.lineno} imports {target} (layer {level[other]} {other!r}), not below its own "
                    f"layer {level[unit]} {unit!r}"
                )
    # cycles inside a unit (depth-first search, each cycle reported once by its smallest member)
    seen_cycles = set()
    for start in sorted(edges):
        stack = [(start, [start])]
        while stack:
            node, path_ = stack.pop()
            for nxt in sorted(edges[node]):
                if nxt == start:
                    cycle = path_ + [start]
                    key = frozenset(cycle)
                    if key not in seen_cycles:
                        seen_cycles.add(key)
                        problems.append("import cycle: " + " -> ".join(cycle))
                elif nxt not in path_ and nxt > start:
                    stack.append((nxt, path_ + [nxt]))
    return problems


def _handles_import_error(handlers: list[ast.ExceptHandler]) -> bool:
    for h in handlers:
        names = [h.type] if not isinstance(h.type, ast.Tuple) else list(h.type.elts)
        if any(isinstance(n, ast.Name) and n.id in ("ImportError", "ModuleNotFoundError") for n in names):
            return True
    return False


def function_import_problems(package: Path) -> list[str]:
    """Imports inside functions or classes: never of this package; of a third-party package only where it is an
    optional heavy dependency (:data:`LAZY_OPTIONAL`) or inside a ``try`` that handles ``ImportError``."""
    problems = []
    for module, path in _modules(package).items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        guarded = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Try) and _handles_import_error(node.handlers):
                guarded |= {id(m) for stmt in node.body for m in ast.walk(stmt)}
        for scope in ast.walk(tree):
            if not isinstance(scope, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                continue
            for node in ast.walk(scope):
                if not isinstance(node, (ast.Import, ast.ImportFrom)):
                    continue
                if isinstance(node, ast.ImportFrom):
                    names = ["." if node.level else (node.module or "")]
                else:
                    names = [a.name for a in node.names]
                for name in names:
                    root = name.split(".")[0]
                    if name == "." or root == package.name:
                        problems.append(f"{module}:{node.lineno}: imports {name} inside {scope.name}()")
                    elif root not in LAZY_OPTIONAL and id(node) not in guarded:
                        problems.append(
                            f"{module}:{node.lineno}: imports {name} inside {scope.name}() (only optional heavy "
                            f"dependencies {sorted(LAZY_OPTIONAL)}, or under try/except ImportError)"
                        )
    return problems


def test_imports_point_down_and_form_no_cycle():
    assert layering_problems(PACKAGE, LAYERS) == []


def test_no_project_import_inside_a_function():
    assert function_import_problems(PACKAGE) == []


def test_modules_hold_one_idea_each_by_size():
    long = {m: n for m, p in _modules(PACKAGE).items() if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_LINES}
    assert long == {}, f"modules over {MAX_LINES} lines: split them by concept"


def test_the_checks_find_what_they_are_for(tmp_path):
    """A small package with an upward import, a sideways import, a cycle, an unplaced unit and imports inside
    functions: each is reported."""
    pkg = tmp_path / "toy"
    (pkg / "low").mkdir(parents=True)
    (pkg / "high").mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "low" / "__init__.py").write_text("")
    (pkg / "low" / "a.py").write_text("from toy.high.b import thing\nfrom . import c\n")
    (pkg / "low" / "c.py").write_text("from toy.low import a\n")
    (pkg / "high" / "__init__.py").write_text("")
    (pkg / "high" / "b.py").write_text(
        "import json\n\ndef f():\n    from toy.low import a\n    import numpy\n    import PIL\n"
        "    try:\n        import tqdm\n    except ImportError:\n        tqdm = None\n"
    )
    (pkg / "side.py").write_text("import toy.other\n")
    (pkg / "other.py").write_text("")
    found = layering_problems(pkg, [["", "low"], ["high"], ["side", "other"]])
    assert any("toy.low.a:1 imports toy.high.b (layer 1 'high'), not below its own layer 0 'low'" in p for p in found)
    assert any("toy.side:1 imports toy.other (layer 2 'other')" in p for p in found)
    assert "import cycle: toy.low.a -> toy.low.c -> toy.low.a" in found
    assert any("is in no layer" in p for p in layering_problems(pkg, [["", "low"], ["high"]]))
    inner = function_import_problems(pkg)
    assert any("toy.high.b:4: imports toy.low inside f()" in p for p in inner)
    assert any("toy.high.b:5: imports numpy inside f()" in p for p in inner)
    assert not any("imports PIL" in p or "imports tqdm" in p for p in inner)


def _config_names() -> set[str]:
    names = set()
    for cfg in sorted((ROOT / "bundles").glob("*/configs/*.json")):
        text = json.dumps(json.loads(cfg.read_text(encoding="utf-8")))
        names |= set(re.findall(r"usseg_monai(?:\.[A-Za-z_][A-Za-z0-9_]*)+", text))
    return names


@pytest.mark.parametrize("name", sorted(_config_names()))
def test_every_name_the_bundles_configs_use_imports(name):
    """Each dotted ``usseg_monai...`` name in a bundle config is a module, or an attribute of one."""
    parts = name.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj = import_module(".".join(parts[:i]))
        except ModuleNotFoundError:
            continue
        for attr in parts[i:]:
            assert hasattr(obj, attr), f"{name}: {'.'.join(parts[:i])} has no {attr!r}"
            obj = getattr(obj, attr)
        return
    pytest.fail(f"{name}: no module of it imports")
