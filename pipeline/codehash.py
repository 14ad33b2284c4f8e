"""The code a stage runs, as hashes that go into its key: a stage's entry modules and every
project module they import (transitively, found in their source), each hashed by its syntax
tree without docstrings, so a comment, a docstring or reformatting changes nothing and any
other edit reruns exactly the stages that run that code. The versions of the numerical
libraries count too.
"""

from __future__ import annotations

import ast
import functools
import hashlib
from importlib import metadata
from pathlib import Path

from pipeline.runtime import REPO_ROOT

PACKAGES = ("pipeline", "data_prep", "analysis")
# Orchestration only: where and when work runs, never what it computes.
NEUTRAL = frozenset({"pipeline.__main__", "pipeline.runner", "pipeline.plan", "pipeline.jobs",
                     "pipeline.store", "pipeline.schema", "pipeline.config", "pipeline.codehash",
                     "pipeline.progress", "pipeline.stages.registry", "pipeline.stages.stage"})
LIBRARIES = ("torch", "fairseq-fixed", "numpy", "scipy", "pandas", "sentencepiece", "sacrebleu")


def module_path(module: str) -> Path | None:
    """The source file of a project module (a package's __init__.py), or None."""
    return _module_path(REPO_ROOT, module)


@functools.cache
def _module_path(root: str, module: str) -> Path | None:
    base = Path(root, *module.split("."))
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


def _tree(path: Path) -> ast.Module:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    for node in ast.walk(tree):  # docstrings do not change what the code does
        body = getattr(node, "body", None)
        if (isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
                and body and isinstance(body[0], ast.Expr)
                and isinstance(body[0].value, ast.Constant)
                and isinstance(body[0].value.value, str)):
            node.body = body[1:] or [ast.Pass()]
    return tree


def _module_info(module: str) -> tuple[str, tuple[str, ...]]:
    """(hash of the module's syntax tree, the project modules it imports), parsed again only
    when its file changed (the cache is keyed by the file's path, size and mtime)."""
    path = module_path(module)
    stat = path.stat()
    return _parsed(module, path, stat.st_mtime_ns, stat.st_size)


@functools.cache
def _parsed(module: str, path: Path, mtime_ns: int, size: int) -> tuple[str, tuple[str, ...]]:
    tree = _tree(path)
    imports = set()
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative import
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parent + ([base] if base else []))
            names = [base] + [f"{base}.{a.name}" for a in node.names]
        else:
            continue
        for name in names:
            if name.split(".")[0] in PACKAGES and module_path(name) is not None:
                imports.add(name)
    digest = hashlib.sha256(ast.dump(tree).encode()).hexdigest()[:16]
    return digest, tuple(sorted(imports))


def closure(entries: tuple[str, ...]) -> list[str]:
    """The entry modules and every project module they import, transitively (sorted), less
    the orchestration modules."""
    seen, todo = set(), list(entries)
    while todo:
        module = todo.pop()
        if module in seen or module in NEUTRAL or module_path(module) is None:
            continue
        seen.add(module)
        todo.extend(_module_info(module)[1])
    return sorted(seen)


@functools.cache
def _versions() -> tuple[tuple[str, str], ...]:
    """The numerical libraries' installed versions (read once per process: each lookup
    parses a package's metadata)."""
    out = []
    for lib in LIBRARIES:
        try:
            out.append((f"version:{lib}", metadata.version(lib)))
        except metadata.PackageNotFoundError:
            out.append((f"version:{lib}", "absent"))
    return tuple(out)


def code_hashes(entries: tuple[str, ...]) -> dict[str, str]:
    """{source file (repository-relative): hash} of everything ``entries`` run, plus the
    versions of the numerical libraries. A file is parsed once per process unless it changes."""
    files = {str(module_path(m).relative_to(REPO_ROOT)): _module_info(m)[0]
             for m in closure(tuple(entries))}
    return {**files, **dict(_versions())}


def changed(old: dict[str, str], new: dict[str, str]) -> list[str]:
    """The files (and library versions) whose hashes differ, were added or removed."""
    return sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
