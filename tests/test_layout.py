"""The code's layout keeps its promises: dvc.yaml's deps are the stages' real imports (or DVC
would call stale results up to date), no import cycle, no module too long to read, and the paths
dvc.yaml declares are the ones pipeline/paths.py names."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import yaml

from pipeline import paths
from tests.conftest import REPO

PACKAGE = REPO / "pipeline"
MAX_MODULE_LINES = 400


def module_file(name: str) -> Path | None:
    """pipeline.a.b -> pipeline/a/b.py or pipeline/a/b/__init__.py (None outside the package)."""
    base = REPO.joinpath(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> set[str]:
    """Every pipeline module `path` imports, at the top or inside a function."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        else:
            continue
        found |= {name for name in names if name.split(".")[0] == "pipeline" and module_file(name)}
    return found


def import_graph() -> dict[str, set[str]]:
    graph = {}
    for path in PACKAGE.rglob("*.py"):
        name = module_name(path)
        # importing pipeline.a.b runs pipeline/a/__init__.py too
        parents = {".".join(name.split(".")[:i]) for i in range(2, len(name.split(".")))}
        graph[name] = (imports_of(path) | parents) - {name}
    return graph


def closure(start: str, graph: dict[str, set[str]]) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo += graph.get(name, ())
    return seen


# pipeline/__init__.py only picks the interpreter (re-runs a stage under .venv's python when the
# `python` on PATH lacks the dependencies): it never changes what a stage computes, so it is no dep.
INTERPRETER_GUARD = PACKAGE / "__init__.py"


def has_code(path: Path) -> bool:
    """A module with more than a docstring (empty package __init__ files change nothing)."""
    if path == INTERPRETER_GUARD:
        return False
    body = ast.parse(path.read_text(encoding="utf-8")).body
    return any(not (isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)) for node in body)


def dvc_stages() -> dict:
    return yaml.safe_load((REPO / "dvc.yaml").read_text(encoding="utf-8"))["stages"]


def code_deps(stage: dict) -> list[str]:
    return [d for d in stage["deps"] if isinstance(d, str) and d.startswith("pipeline")]


def covered(file: Path, deps: list[str]) -> bool:
    rel = file.relative_to(REPO).as_posix()
    return any(rel == dep or rel.startswith(dep.rstrip("/") + "/") for dep in deps)


@pytest.mark.parametrize("stage", sorted(dvc_stages()))
def test_dvc_deps_are_the_stage_imports(stage):
    spec = dvc_stages()[stage]
    entry = spec["cmd"].split("-m ", 1)[1].split()[0]
    files = {f for name in closure(entry, import_graph()) if (f := module_file(name)) and has_code(f)}
    deps = code_deps(spec)
    missing = sorted(f.relative_to(REPO).as_posix() for f in files if not covered(f, deps))
    assert not missing, f"dvc.yaml stage '{stage}' does not list what it imports: {missing}"
    absent = [dep for dep in deps if not (REPO / dep).exists()]
    assert not absent, f"dvc.yaml stage '{stage}' lists files that do not exist: {absent}"
    unused = [dep for dep in deps if not any(covered(f, [dep]) for f in files)]
    assert not unused, f"dvc.yaml stage '{stage}' lists code it does not import (needless reruns): {unused}"


def test_the_deps_check_catches_a_missing_dep():
    spec = dvc_stages()["finetune"]
    entry = spec["cmd"].split("-m ", 1)[1].split()[0]
    files = {module_file(name) for name in closure(entry, import_graph())}
    assert all(f is None or covered(f, code_deps(spec)) or not has_code(f) for f in files)
    trimmed = [d for d in code_deps(spec) if "tasks" not in d]
    assert any(f and not covered(f, trimmed) for f in files)


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(name: str) -> list[str] | None:
        state[name] = 1
        stack.append(name)
        for nxt in sorted(graph.get(name, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[name] = 2
        return None

    for name in sorted(graph):
        if name not in state and (cycle := visit(name)):
            return cycle
    return None


def test_no_import_cycle():
    graph = {name: {d for d in deps if not name.startswith(d + ".")} for name, deps in import_graph().items()}
    assert find_cycle(graph) is None, f"import cycle: {' -> '.join(find_cycle(graph))}"


def test_the_cycle_check_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]


def test_no_module_is_too_long():
    long = {module_name(p): n for p in PACKAGE.rglob("*.py")
            if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_MODULE_LINES}
    assert not long, f"split these modules (over {MAX_MODULE_LINES} lines): {long}"


def test_dvc_outs_are_the_named_paths():
    outs = {str(list(o)[0] if isinstance(o, dict) else o) for s in dvc_stages().values()
            for key in ("outs", "metrics", "plots") for o in s.get(key, [])}
    named = {paths.BASE_MODEL, paths.FINETUNED, paths.EXPORT, paths.INGESTED, paths.CLEANED, paths.TOKENIZED,
             paths.SPLIT_DIR, paths.PREDICTIONS, paths.MC_PREDICTIONS, paths.REVIEW, paths.DATA_REPORT, paths.TOKEN_LENGTHS,
             *(paths.rejects(s) for s in ("ingest", "clean", "tokenize")),
             *(paths.stats(s) for s in ("base_model", "ingest", "clean", "tokenize", "split", "finetune", "eval"))}
    assert {p.as_posix() for p in named} <= outs, sorted({p.as_posix() for p in named} - outs)


def test_stages_do_not_branch_on_the_task_kind():
    for path in (PACKAGE / "stages").glob("*.py"):
        text = path.read_text(encoding="utf-8")
        assert 'kind == "' not in text and "kind != \"" not in text, path.name
