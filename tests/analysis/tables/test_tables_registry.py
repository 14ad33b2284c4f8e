"""analysis.tables.registry: every table the analysis writes is registered, its key columns
identify its rows, and the code names tables through the registry, never by a literal."""
import ast
from pathlib import Path

import pytest
from synthstudy import stage_runs

from analysis.tables import registry as T
from pipeline.tables import load_tables

REPO = Path(__file__).parents[3]
# The code that handles tables: the analysis and the stages that write or read them.
HANDLERS = sorted([*REPO.glob("analysis/**/*.py"),
                   *(REPO / "pipeline" / "stages" / f"{stage}.py"
                     for stage in ("analyze", "plot", "aggregate"))])
# A table's name used for something else where the code reads it: (file, name) and why.
OTHER_MEANINGS = {
    ("analysis/runs.py", "family"): "model.json's architecture family",
    ("pipeline/stages/aggregate.py", "seeds"): "the across-seeds stage's inputs",
}


def test_every_table_the_analysis_writes_is_registered_with_unique_keys():
    tables = load_tables(stage_runs()["analyze"][1][1] / "tables")  # a seed's every table
    assert set(tables) <= set(T.TABLES), sorted(set(tables) - set(T.TABLES))
    across = {name for name, t in T.TABLES.items() if t.pooling == T.ACROSS}
    assert set(T.TABLES) - set(tables) == across  # made by the aggregate stage only
    for name, table in tables.items():
        keys = list(T.TABLES[name].keys)
        assert set(keys) <= set(table.columns), (name, sorted(set(keys) - set(table.columns)))
        assert not table.duplicated(keys).any(), name


def test_a_table_registered_twice_or_pooled_without_columns_is_refused():
    with pytest.raises(ValueError, match="registered twice"):
        T.table(T.CONVERGENCE, "again", ("model",), pooled=("value",))
    with pytest.raises(ValueError, match="pooled columns go with pooling='mean'"):
        T.table("new_table", "a row", ("model",), pooling=T.FIRST, pooled=("value",))
    assert "new_table" not in T.TABLES


def _table_accesses(path: Path) -> list[tuple[int, str]]:
    """(line, name) of every registered table name written as a literal where a table is
    read or written: a subscript, a .get() or .pop() key, a dict key or an ``in`` test."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        keys = []
        if isinstance(node, ast.Subscript):
            keys = [node.slice]
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) \
                and node.func.attr in ("get", "pop") and node.args:
            keys = [node.args[0]]
        elif isinstance(node, ast.Dict):
            keys = [k for k in node.keys if k is not None]
        elif isinstance(node, ast.Compare) and any(isinstance(op, ast.In | ast.NotIn)
                                                   for op in node.ops):
            keys = [node.left]
        elif isinstance(node, ast.keyword) and node.arg == "analysis":
            keys = [node.value]  # a similarity row's table
        found += [(k.lineno, k.value) for k in keys if isinstance(k, ast.Constant)
                  and isinstance(k.value, str) and k.value in T.TABLES]
    return found


def test_no_table_name_literal_outside_the_registry():
    hits = []
    for path in HANDLERS:
        rel = str(path.relative_to(REPO))
        if rel != "analysis/tables/registry.py":
            hits += [f"{rel}:{line} {name!r}" for line, name in _table_accesses(path)
                     if (rel, name) not in OTHER_MEANINGS]
    assert not hits, "name tables through analysis.tables.registry:\n" + "\n".join(hits)


def test_the_literal_check_finds_a_literal(tmp_path):
    code = tmp_path / "x.py"
    code.write_text('t = tables["convergence"]\nu = tables.get("answer")\nv = {"models": 1}\n'
                    'w = "claims" in tables\nrow = dict(analysis="tagger")\nz = "family"\n')
    assert _table_accesses(code) == [(1, "convergence"), (2, "answer"), (3, "models"),
                                     (4, "claims"), (5, "tagger")]
