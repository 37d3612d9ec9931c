"kdbook's modules form layers: each imports only the layers below it, and no import (inside a function or not) closes a circle."
import ast
from pathlib import Path

import kdbook

PACKAGE = Path(kdbook.__file__).parent

# Bottom to top, as the README's "What is inside" draws them. The methods (kdbook/methods/*) are one layer: they may
# import each other (no circle), and the registry in `distill` finds them by package name, never by import.
LAYERS = ["compat", "core", "results", "stats", "viz", "graphs", "memory", "data", "models", "distill", "methods", "teachers",
          "config", "checkpoint", "loop", "train", "launch", "tables", "runner", "probe", "reproduce", "report", "analysis", "cli"]
# The modules `kdbook --help` and `kdbook list` import: they start without torch, so they import the rest of kdbook
# inside the functions that need it. Everywhere else kdbook's own imports are at the top of the module.
LIGHT = {"compat", "core", "results", "runner", "cli"}


def module_name(path: Path) -> str:
    return ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts).removesuffix(".__init__")


def is_module(name: str) -> bool:
    return PACKAGE.parent.joinpath(*name.split(".")).with_suffix(".py").exists()


def imports(path: Path) -> list:
    "(kdbook module imported, inside a function?) for every import statement of the file at `path`."
    name, tree = module_name(path), ast.parse(path.read_text())
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    inner = {id(n) for f in ast.walk(tree) if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef)) for n in ast.walk(f)}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import): targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parent + ([base] if base else []))
            # `from kdbook.methods import irg` imports the module kdbook.methods.irg
            targets = [f"{base}.{a.name}" if is_module(f"{base}.{a.name}") else base for a in node.names]
        else: continue
        found += [(t, id(node) in inner) for t in targets if t.startswith("kdbook.") and t != name]
    return found


def graph() -> dict:
    files = [p for p in PACKAGE.rglob("*.py") if p.name != "_modidx.py"]
    return {module_name(p): imports(p) for p in files}


def layer(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "kdbook"


def test_every_module_has_a_layer():
    assert {layer(m) for m in graph()} - {"kdbook"} == set(LAYERS)


def test_no_import_circle():
    edges = {m: {t for t, _ in ts} for m, ts in graph().items()}
    state, stack = {}, []

    def visit(m):   # depth first: a module met again while on the stack closes a circle
        state[m] = "open"; stack.append(m)
        for t in sorted(edges.get(m, ())):
            if state.get(t) == "open": raise AssertionError("import circle: " + " -> ".join(stack[stack.index(t):] + [t]))
            if t not in state: visit(t)
        state[m] = "done"; stack.pop()

    for m in sorted(edges):
        if m not in state: visit(m)


def test_each_module_imports_only_the_layers_below():
    rank = {name: i for i, name in enumerate(LAYERS)}
    upward = [f"{m} imports {t}" for m, ts in graph().items() for t, _ in ts
              if layer(m) in rank and layer(t) in rank and layer(t) != layer(m) and rank[layer(t)] > rank[layer(m)]]
    assert not upward, upward


def test_imports_inside_functions_only_where_the_command_line_starts_without_torch():
    inside = sorted({f"{m} imports {t}" for m, ts in graph().items() for t, inner in ts if inner and layer(m) not in LIGHT})
    assert not inside, inside


def test_the_command_line_starts_without_torch():
    import subprocess, sys
    out = subprocess.run([sys.executable, "-c", "import sys, kdbook.cli; print('torch' in sys.modules)"],
                         capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_the_checker_sees_a_planted_circle_and_an_upward_import(tmp_path, monkeypatch):
    # the tests above would pass vacuously if `imports` missed relative or in-function imports: plant both
    pkg = tmp_path / "kdbook"; (pkg / "methods").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "core.py").write_text("def f():\n    from kdbook.cli import main\n")
    (pkg / "cli.py").write_text("from .core import f\n")
    (pkg / "methods" / "__init__.py").write_text("")
    (pkg / "methods" / "a.py").write_text("from ..distill import x\nfrom . import b\n")
    (pkg / "methods" / "b.py").write_text("")
    monkeypatch.setattr(__import__(__name__), "PACKAGE", pkg)
    g = graph()
    assert g["kdbook.core"] == [("kdbook.cli", True)] and g["kdbook.cli"] == [("kdbook.core", False)]
    assert sorted(g["kdbook.methods.a"]) == [("kdbook.distill", False), ("kdbook.methods.b", False)]
    try: test_no_import_circle(); raise AssertionError("the circle core -> cli -> core was not found")
    except AssertionError as e: assert "kdbook.cli -> kdbook.core -> kdbook.cli" in str(e) or "kdbook.core -> kdbook.cli -> kdbook.core" in str(e)


def test_no_module_uses_a_name_it_does_not_define_or_import_or_shadows_one():
    # moving a function between modules can leave a name behind in a branch no example reaches (an analysis section
    # drawn only for some columns), and an imported name can be redefined below it (reproduce's exit code 4 once
    # shadowed the record state INTERRUPTED): pyflakes reads every line. Unused imports are allowed (re-exports).
    from pyflakes.api import check
    from pyflakes.reporter import Reporter
    import io
    out = io.StringIO()
    for p in sorted(PACKAGE.rglob("*.py")):
        if p.name != "_modidx.py": check(p.read_text(), str(p), Reporter(out, out))
    problems = [line for line in out.getvalue().splitlines() if "imported but unused" not in line]
    assert not problems, problems


def test_record_states_and_teacher_placeholders_are_named_once():
    # kdbook.results names a record's states, kdbook.core the teacher placeholders: a literal elsewhere is a typo waiting
    # to happen ("complete"), so every other module uses the names (text inside messages and f-strings is free)
    import io, tokenize
    literals = {'"completed"', '"running"', '"interrupted"', '"untrained"', '"pretrained"'}
    home = {"kdbook.results": {'"completed"', '"running"', '"interrupted"'}, "kdbook.core": {'"untrained"', '"pretrained"'}}
    found = []
    for p in sorted(PACKAGE.rglob("*.py")):
        if p.name == "_modidx.py": continue
        allowed = home.get(module_name(p), set())
        for t in tokenize.generate_tokens(io.StringIO(p.read_text()).readline):
            if t.type == tokenize.STRING and t.string in literals - allowed:
                found.append(f"{p.relative_to(PACKAGE.parent)}:{t.start[0]} {t.string}")
    assert not found, found
