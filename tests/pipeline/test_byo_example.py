"""`experiment=byo_example` on a tiny GPT-NeoX's revisions made here (no network), with a probe
corpus of the user's own (a CoNLL-U file): prepare, the import, extract, analyze and plot run,
and the report says where the series came from."""

import gzip

import pandas as pd
import pytest
from conftest import plan, run_pipeline

pytestmark = pytest.mark.slow


def test_byo_example_runs_on_local_revisions(smoke_prepared, mirror, tmp_path):
    pytest.importorskip("transformers")
    from tinyhf import revisions

    prepared = smoke_prepared[0] / "smoke" / "prepare"
    (key,) = [p for p in prepared.iterdir() if p.is_dir()]
    words = pd.read_parquet(key / "probe_tokens.parquet")
    text = [" ".join(s.word.astype(str)) for _, s in words[words.side == "lm"].groupby(
        ["probe", "sent_index"])]
    revisions(tmp_path / "revs", "gpt_neox", texts=text, vocab=1500)  # words mostly whole
    mine = tmp_path / "mine.conllu"  # the user's corpus: EWT test's last 30 sentences
    with gzip.open(mirror / "ud" / "UD_English-EWT" / "en_ewt-ud-test.conllu.gz", "rt") as f:
        mine.write_text("\n\n".join(f.read().split("\n\n")[-31:-1]) + "\n\n")
    args = ["experiment=byo_example", f"mirror={mirror}", f"artifacts_dir={tmp_path / 'art'}",
            f"model.theirs.revisions=[{tmp_path / 'revs'}]", f"+data.probes.mine.conllu={mine}",
            "extract.probes=[brown_probe,mine]",
            "extract.max_tokens_per_probe=300"]  # a backward pass per subword position
    result = run_pipeline(*args)
    assert result.returncode == 0, result.stderr[-3000:]
    nodes = plan(*args)
    tables = nodes["analyze"].dir / "tables"
    convergence = pd.read_parquet(tables / "convergence.parquet")
    assert set(convergence.model) == {"theirs"}
    assert set(convergence.probe) == {"brown_probe", "mine"}
    tokens = pd.read_parquet(nodes["prepare"].dir / "probe_tokens.parquet")
    ours = tokens[tokens.probe == "mine"]
    assert len(ours) > 300 and set(ours.side) == {"lm"} and ours.pos.notna().all()
    assert set(convergence.step_a) == {0, 2, 4} and convergence.value.notna().any()
    assert set(convergence.layer_a) == {"embed", "layer_1", "layer_2"}
    concentration = pd.read_parquet(tables / "concentration.parquet")
    assert {"act", "grad"} <= set(concentration.quantity)  # the per-token gradients too
    report = (nodes["plot"].dir / "report.md").read_text()
    assert "Where each model came from" in report and str(tmp_path / "revs") in report
    models = pd.read_parquet(tables / "models.parquet")
    assert models.set_index("model").loc["theirs", "subword"] == "last"
    missing = run_pipeline(*args, "model.theirs.steps=[0,1000]")
    assert missing.returncode != 0
    assert "['step1000'] are not on this machine" in missing.stdout + missing.stderr
