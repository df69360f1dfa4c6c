"""The shape of the house: no import circles between modules, and the config commands stay torch-free (fast)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src"


def _module_edges(package: str = "tuneforge") -> dict[str, set[str]]:
    """Every import of the package's own modules, lazy ones inside functions included."""
    root = SRC / package
    mods = {}
    for path in root.rglob("*.py"):
        rel = path.relative_to(SRC).with_suffix("")
        mods[".".join(rel.parts).removesuffix(".__init__")] = path

    def resolve(name: str) -> str | None:
        while name and name not in mods:
            name = name.rpartition(".")[0]
        return name or None

    edges: dict[str, set[str]] = {m: set() for m in mods}
    for mod, path in mods.items():
        is_pkg = path.name == "__init__.py"
        for node in ast.walk(ast.parse(path.read_text())):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = mod.split(".") if is_pkg else mod.split(".")[:-1]
                    parts = parts[: len(parts) - node.level + 1]
                    base = ".".join([*parts, base] if base else parts)
                targets = [f"{base}.{a.name}" for a in node.names] + [base]
            for target in targets:
                found = resolve(target) if target.split(".")[0] == package else None
                # a package re-exporting its own children is not a circle of design
                if found and found != mod and not mod.startswith(found + "."):
                    edges[mod].add(found)
    return edges


def _circles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    sys.setrecursionlimit(10000)

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in edges[v]:
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
                out.append(sorted(comp))

    for v in edges:
        if v not in index:
            visit(v)
    return out


def test_no_import_circles() -> None:
    assert _circles(_module_edges()) == []


def test_circle_finder_finds_a_planted_circle() -> None:
    edges = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _circles(edges) == [["a", "b", "c"]]


def test_config_validate_imports_no_torch(tmp_path: Path) -> None:
    cfg = tmp_path / "run.yaml"
    cfg.write_text("data: {train: x.jsonl}\ntask: {name: classification}\nmethod: {name: lora, r: 4}\n")
    probe = ("import sys\nfrom tuneforge.cli.main import main\nsys.argv = ['tuneforge', 'config', 'validate', "
             f"{str(cfg)!r}]\ntry:\n    main()\nexcept SystemExit as e:\n    code = e.code\n"
             "heavy = [m for m in ('torch', 'transformers', 'sklearn', 'peft') if m in sys.modules]\n"
             "print('HEAVY', heavy)\n")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert "HEAVY []" in out.stdout, out.stdout + out.stderr
