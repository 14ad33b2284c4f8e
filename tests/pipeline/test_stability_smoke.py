"""experiment=stability_smoke end to end: children and tickets trained from the rewind points,
the masks (a pruned weight stays exactly 0 through training; round r has the expected
sparsity; the rewound ticket starts from W_k's unpruned weights bit for bit), and the tables,
claims, F10/F11 and the report's section."""

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
import torch
from conftest import run_pipeline

from pipeline.pruning import n_to_prune
from pipeline.stages import train

pytestmark = pytest.mark.slow
MODELS = ("lstm_lm_paper", "transformer_nmt_small")


@pytest.fixture(scope="module")
def stability_run(smoke_prepared, mirror, tmp_path_factory):
    """The whole stability_smoke chain in its own artifacts dir (smoke's prepare copied in:
    the same data config); the artifacts root."""
    art, _, _ = smoke_prepared
    root = tmp_path_factory.mktemp("stability")
    shutil.copytree(art / "smoke" / "prepare", root / "stability_smoke" / "prepare")
    done = run_pipeline("experiment=stability_smoke", f"mirror={mirror}",
                        f"artifacts_dir={root}", timeout=1800)
    assert done.returncode == 0, done.stderr[-3000:]
    return root / "stability_smoke"


def _unit(root: Path, stage: str, model: str) -> Path:
    (unit,) = [d for d in (root / stage / model).iterdir() if (d / ".done.json").is_file()]
    return unit


def _checkpoints(where: Path) -> list[Path]:
    return [where / "checkpoints" / f for f in pd.read_csv(where / "checkpoints.csv").file]


def test_every_tickets_pruned_weights_stay_zero_and_it_starts_from_w_k(stability_run):
    for model in MODELS:
        parent = _unit(stability_run, "train", model)
        unit = _unit(stability_run, "tickets", model)
        table = pd.read_parquet(unit / "tickets.parquet")
        tickets = table[table.method != "dense"].drop_duplicates("dir")
        assert set(tickets.method) == {"imp", "random", "reinit"}
        for t in tickets.itertuples():
            where = unit / t.dir
            mask_file = where / "mask.pt" if (where / "mask.pt").is_file() else \
                unit / "imp_late" / t.dir.split("/")[1] / "mask.pt"
            masks = torch.load(mask_file, weights_only=True)
            for path in _checkpoints(where):  # every checkpoint, every masked parameter
                state = torch.load(path, weights_only=False)["model"]
                for name, mask in masks.items():
                    assert torch.all(state[name][mask == 0] == 0), (t.dir, path.name, name)
            steps = pd.read_csv(where / "checkpoints.csv").step
            assert json.loads((where / "extract" / "model.json").read_text())["steps"] == [
                int(steps.iloc[-1])], t.dir  # only the last is extracted (and compared)
            first = torch.load(_checkpoints(where)[0], weights_only=False)["model"]
            if t.method != "reinit":  # rewound: W_k's kept weights, bit for bit
                start = torch.load(train.rewind_checkpoint(parent, int(t.rewind_step)),
                                   weights_only=False)["model"]
                for name, mask in masks.items():
                    keep = mask == 1
                    assert torch.equal(first[name][keep], start[name][keep]), (t.dir, name)


def test_round_r_keeps_the_expected_share_of_the_weights(stability_run):
    for model in MODELS:
        unit = _unit(stability_run, "tickets", model)
        for chain in sorted(unit.glob("imp_*")):
            rounds = sorted(chain.glob("round_*"))
            first = torch.load(rounds[0] / "mask.pt", weights_only=True)
            kept = sum(m.numel() for m in first.values())
            for folder in rounds:  # round r keeps ~0.8^r of the weights
                masks = torch.load(folder / "mask.pt", weights_only=True)
                kept -= n_to_prune(0.2, kept)  # 20% of what the last round kept
                assert int(sum(int(m.sum()) for m in masks.values())) == kept, folder


def test_children_branch_with_another_data_seed_and_are_extracted(stability_run):
    for model in MODELS:
        unit = _unit(stability_run, "stability", model)
        children = pd.read_csv(unit / "children.csv")
        summary = json.loads((unit / "stability.json").read_text())
        assert list(children.step) == summary["rewind_steps"]
        assert (children.data_seed == summary["data_seed"] + 1000).all()
        for child in children.child:
            assert (unit / child / "extract" / "model.json").is_file()
        path = pd.read_parquet(unit / "stability.parquet")
        assert sorted(path.alpha.unique()) == pytest.approx([i / 10 for i in range(11)])


def test_the_tables_claims_figures_and_report_section(stability_run):
    (analyze,) = [d for d in (stability_run / "analyze").iterdir() if (d / ".done.json").is_file()]
    tables = analyze / "tables"
    for name in ("instability", "stability_path", "lottery_tickets", "commit",
                 "final_similarity"):
        assert (tables / f"{name}.parquet").is_file(), name
    claims = pd.read_parquet(tables / "claims.parquet")
    assert {"C7", "C8", "C8 k0", "C9"} <= set(claims.claim)
    (plot,) = [d for d in (stability_run / "plot").iterdir() if (d / ".done.json").is_file()]
    for model in MODELS:
        assert (plot / "figures" / f"f10_commit_{model}.png").is_file()
        assert (plot / "figures" / f"f11_tickets_{model}.png").is_file()
    report = (plot / "report.md").read_text()
    section = report.split("### When does each model commit?")[1]
    assert section.lstrip().startswith("Stable to SGD noise")


def test_the_paths_ends_are_each_models_own_loss_exactly(stability_run):
    """α = 0 and 1 on the line reproduce the model's and the child's own validation loss,
    measured on their own checkpoints (torch.lerp's ends are exact)."""
    from pipeline import checkpoints, evaluate
    from pipeline.models import adapter

    model_name = "lstm_lm_paper"
    parent = _unit(stability_run, "train", model_name)
    unit = _unit(stability_run, "stability", model_name)
    config = json.loads((unit / ".done.json").read_text())["config"]
    spec, limit = config["model"], config["stability.limit"]
    prepared = next(d for d in (stability_run / "prepare").iterdir() if d.is_dir())
    path = pd.read_parquet(unit / "stability.parquet")
    last = int(pd.read_csv(parent / "checkpoints.csv").step.iloc[-1])
    kind = adapter(spec)
    model, task = kind.load(spec, checkpoints.checkpoint_path(parent, last), prepared, "cpu")
    own = evaluate.token_metrics(model, task, "valid", "cpu", limit)["loss_bits"]
    for child, g in path[path.measure == "valid_loss"].groupby("child"):
        kind.load_weights(model, checkpoints.checkpoint_path(unit / child, last), "cpu")
        theirs = evaluate.token_metrics(model, task, "valid", "cpu", limit)["loss_bits"]
        assert g[g.alpha == 0].value.iloc[0] == own, child
        assert g[g.alpha == 1].value.iloc[0] == theirs, child
