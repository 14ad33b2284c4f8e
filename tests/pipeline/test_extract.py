"""The extract stage end to end on the smoke models: every model, its probes (by the probe
manifest), every extracted checkpoint and layer; training changes the representations."""

import json

import numpy as np
import pytest
from conftest import plan, run_pipeline, units

from analysis import repstore
from pipeline import checkpoints

pytestmark = pytest.mark.slow


def test_extract_stage_writes_every_model_checkpoint_probe_and_layer(smoke_trained):
    art, args, _, train_units, prepared = smoke_trained
    result = run_pipeline(*[a.replace("stages=[prepare,train]", "stages=[prepare,train,extract]")
                            for a in args])
    assert result.returncode == 0, result.stderr[-3000:]
    out_text = result.stdout + result.stderr
    # the disk estimate is printed before any per-model work (an earlier test may have run it)
    assert "extraction about" in out_text
    extract = units(plan(*[a for a in args if not a.startswith("stages=")]), "extract")
    assert set(extract) == set(train_units) and len(extract) == 8
    manifest = json.loads((prepared / "probes.json").read_text())
    assert manifest["brown_probe"]["labels"] == {"pos": "pos", "topic": "genre"}
    assert manifest["pud"]["sides"] == ["source", "target"]
    for name, out in extract.items():
        info = json.loads((out / "model.json").read_text())
        steps = list(checkpoints.read_table(train_units[name]).step)
        probes = ["pud"] if info["kind"] == "transformer_nmt" else ["brown_probe", "ewt_test"]
        assert sorted(p.name for p in out.iterdir() if p.is_dir()) == sorted(probes)
        for probe in probes:
            root = out / probe
            # references (taggers): the last checkpoint and the one nearest 90% of training
            # (extract.reference_checkpoints=endpoint, for the endpoint's late CKA)
            late = min(steps, key=lambda s: abs(s - 0.9 * steps[-1]))
            assert repstore.steps(root) == (sorted({late, steps[-1]}) if info["reference"]
                                            else steps)
            assert json.loads((root / "probe.json").read_text()) == manifest[probe]
            tokens = repstore.tokens(root)
            layers = repstore.layers(root)
            assert list(layers) == [layer["name"] for layer in info["layers"]]
            labelled = info["tags"] is None or info["tags"] in manifest[probe]["labels"]
            for layer, meta in layers.items():
                n = int((tokens.side == meta["side"]).sum())
                first, _ = repstore.load(root, repstore.steps(root)[0], layer)
                last, rows = repstore.load(root, steps[-1], layer)
                assert first.shape == last.shape == (n, meta["dim"]) and len(rows) == n
                if not info["reference"]:
                    assert not (first == last).all()  # training changed the representation
                if labelled:
                    grad, _ = repstore.load(root, steps[-1], layer, kind="grad")
                    # every token has its gradient (NMT decoder included), none all zero
                    assert grad.shape == last.shape and np.isfinite(grad).all()
                    assert (abs(grad).sum(1) > 0).mean() > 0.99
