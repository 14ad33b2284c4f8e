"""Code-aware keys: a stage's key hashes the syntax trees of the modules it runs, so an edit
reruns exactly the stages that run the edited code, and comments or docstrings change nothing."""

import pytest
from conftest import compose

from pipeline import codehash, plan


@pytest.fixture
def fake_repo(tmp_path, monkeypatch):
    pkg = tmp_path / "analysis"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text('"""Doc."""\nfrom analysis import b\n\nX = 1  # note\n')
    (pkg / "b.py").write_text("def f(x):\n    return x + 1\n")
    (pkg / "c.py").write_text("Y = 2\n")
    monkeypatch.setattr(codehash, "REPO_ROOT", str(tmp_path))
    return pkg


def hashes(entries):
    return {k: v for k, v in codehash.code_hashes(entries).items()
            if not k.startswith("version:")}


def test_the_closure_follows_project_imports(fake_repo):
    assert codehash.closure(("analysis.a",)) == ["analysis", "analysis.a", "analysis.b"]


def test_comments_and_docstrings_do_not_change_the_hash(fake_repo):
    before = hashes(("analysis.a",))
    (fake_repo / "a.py").write_text('"""Another doc."""\nfrom analysis import b\n\n'
                                    "X = 1  # another note\n\n")
    (fake_repo / "b.py").write_text('def f(x):\n    """Adds one."""\n    return x + 1\n')
    assert hashes(("analysis.a",)) == before


def test_an_edit_changes_the_hash_of_that_file_and_of_what_imports_it_only(fake_repo):
    before_a, before_c = hashes(("analysis.a",)), hashes(("analysis.c",))
    (fake_repo / "b.py").write_text("def f(x):\n    return x + 2\n")
    after_a = hashes(("analysis.a",))
    assert codehash.changed(before_a, after_a) == ["analysis/b.py"]
    assert hashes(("analysis.c",)) == before_c


def plans_around_an_edit(monkeypatch, cfg, edited_module: str):
    """The plan of ``cfg`` before and after an AST change in ``edited_module``."""
    before = plan.plan(cfg)
    real = codehash._module_info

    def edited(module):
        digest, imports = real(module)
        return ("edited" if module == edited_module else digest), imports

    monkeypatch.setattr(codehash, "_module_info", edited)
    return before, plan.plan(cfg)


def test_a_change_in_dynamics_reruns_analyze_plot_and_aggregate_only(monkeypatch, tmp_path):
    """In smoke: an AST change in analysis/dynamics.py changes the keys of analyze and of
    the stages that read it, and of nothing else."""
    cfg = compose("experiment=smoke", f"artifacts_dir={tmp_path}", "mirror=null")
    before, after = plans_around_an_edit(monkeypatch, cfg, "analysis.dynamics")
    changed = {t.label for name in before for t, u in zip(before[name].targets(),
                                                           after[name].targets(), strict=True)
               if t.key != u.key}
    assert changed == {"stage analyze", "stage plot", "stage aggregate"}
    old = before["analyze"].target
    record = {"code": old.code, "config": old.config, "inputs": old.inputs}
    assert plan.differences(record, after["analyze"].target) == (
        "code changed: analysis/dynamics.py")


def test_an_adapter_edit_reruns_that_models_units_only(monkeypatch, tmp_path):
    """The adapters are imported by name on first lookup, not by an import statement: each
    model's units still hash its own adapter, so an edit to the NMT adapter reruns the NMT's
    train and extract units and no other model's."""
    cfg = compose("experiment=smoke", f"artifacts_dir={tmp_path}", "mirror=null")
    before, after = plans_around_an_edit(monkeypatch, cfg, "pipeline.models.transformer_nmt")
    changed = {(name, model) for name in ("train", "extract")
               for model, unit in before[name].units.items()
               if unit.key != after[name].units[model].key}
    nmt = [m for m, spec in cfg.model.items() if spec.kind == "transformer_nmt"]
    assert nmt and changed == {(name, m) for name in ("train", "extract") for m in nmt}
