"""`python -m pipeline experiment=smoke stages=[prepare]` on the mirror, then again from cache."""


import pandas as pd
import pytest
from conftest import run_pipeline

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def smoke(smoke_prepared):
    return smoke_prepared


def prepared_dir(art):
    (d,) = [p for p in (art / "smoke" / "prepare").iterdir() if p.is_dir()
            and not p.name.endswith(".partial")]
    return d


def test_smoke_prepare_writes_tables_and_fairseq_bins(smoke):
    art, _, first = smoke
    d = prepared_dir(art)
    # the run that computed it logged the statistics (another test process may have)
    logs = "".join(p.read_text() for p in (art / "smoke" / "runs").glob("*/*.log"))
    assert "corpus statistics" in logs
    table = pd.read_parquet(d / "sentences.parquet")
    assert {"brown", "ewt", "pud_en", "pud_de", "pmb"} <= set(table.corpus)
    brown = table[table.corpus == "brown"]
    assert set(brown.split) == {"train", "valid", "test", "probe"}
    assert brown.genre.nunique() == 15  # every genre survives sub-sampling
    # document-level split: no document in two splits
    assert brown.groupby("doc_id").split.nunique().max() == 1
    for name in ("lm", "pos", "topic", "semtag", "semtag_words"):
        assert (d / "lm" / "bin" / name / "train.bin").stat().st_size > 0
    assert (d / "nmt" / "bin" / "train.en-de.en.bin").is_file()
    assert (d / "nmt" / "spm.model").is_file()
    tokens = pd.read_parquet(d / "probe_tokens.parquet")
    assert set(tokens.probe) == {"brown_probe", "ewt_test", "pud"}
    pud = tokens[tokens.probe == "pud"]
    assert set(pud.side) == {"source", "target"}
    # both PUD sides cover the same sentences
    ids = pud.groupby("side").sent_id.unique()
    assert list(ids["source"]) == list(ids["target"])
    # target-aligned tags are the next token's input-aligned tags within a sentence
    for _, sent in pud.groupby(["side", "sent_id"]):
        assert list(sent.pos_target[:-1]) == list(sent.pos[1:])
        assert sent.pos_target.iloc[-1] == "</s>"
    stats = pd.read_csv(d / "stats.csv")
    assert (stats.sentences > 0).all()


def test_second_run_is_cached_and_does_no_work(smoke):
    art, args, _ = smoke
    (done,) = (art / "smoke" / "prepare").glob("*/.done.json")
    before = (done.stat().st_mtime_ns, done.read_text())
    again = run_pipeline(*args)
    assert again.returncode == 0, again.stderr[-2000:]
    assert "stage prepare: cached" in again.stderr + again.stdout
    assert (done.stat().st_mtime_ns, done.read_text()) == before  # nothing was rewritten
