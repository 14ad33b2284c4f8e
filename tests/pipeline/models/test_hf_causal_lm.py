"""The Hugging Face causal-LM adapter on tiny GPT-NeoX and GPT-2 revisions made here: its states
are `output_hidden_states` at each word's subword, its gradients each position's own
next-token loss (checked on the prefix alone, in float64), and revisions are found in revision
folders and in a Hugging Face cache layout, with a clear error for one that is missing."""

import shutil

import numpy as np
import pandas as pd
import pytest
import torch
from tinyhf import TEXT, revisions

from pipeline.models import complete, get
from pipeline.models.hf_causal_lm import hf_states, word_pieces

pytest.importorskip("transformers")
HF = get("hf_causal_lm")


def probe_rows(sentences=TEXT) -> pd.DataFrame:
    rows = [dict(sent_index=i, position=j, word=w, side="lm")
            for i, s in enumerate(sentences) for j, w in enumerate(s.split())]
    return pd.DataFrame(rows)


@pytest.fixture(scope="module", params=["gpt_neox", "gpt2"])
def series(request, tmp_path_factory):
    folder = tmp_path_factory.mktemp(request.param)
    return request.param, folder, revisions(folder / "revs", request.param)


def test_states_are_output_hidden_states_at_each_words_subword(series):
    arch, folder, revs = series
    spec = complete({"kind": "hf_causal_lm", "revisions": [str(folder / "revs")],
                     "steps": None, "subword": "last", "dtype": "float64"})
    assert HF.steps(spec) == [0, 2, 4]
    assert [n for n, _, _ in HF.layers(spec)] == ["embed", "layer_1", "layer_2"]
    assert HF.family_of(spec) == arch
    model, tok = HF.load(spec, revs[-1], None, "cpu")
    rows = probe_rows()
    for subword in ("first", "last", "mean"):
        acts, _ = hf_states(model, tok, rows, False, 2, subword)  # batches of 2: padding
        k = 0
        for sentence in TEXT:
            words = sentence.split()
            ids, owners = word_pieces(tok, words)
            with torch.no_grad():
                hidden = model(input_ids=torch.tensor([ids]), output_hidden_states=True
                               ).hidden_states
            owners = np.asarray(owners)
            for w in range(len(words)):
                at = np.flatnonzero(owners == w)
                pick = {"first": at[:1], "last": at[-1:], "mean": at}[subword]
                for i, name in enumerate(["embed", "layer_1", "layer_2"]):
                    want = hidden[i][0, pick].mean(0).numpy()
                    np.testing.assert_allclose(acts[name][k + w], want, rtol=0, atol=1e-6)
            k += len(words)
        assert k == len(rows)


def test_gradients_are_each_positions_own_next_token_loss(series):
    """In float64: the adapter's gradient at a word's last subword equals autograd's of the
    loss at that position on the prefix alone (later tokens cannot enter it), per token within
    1e-10 of its norm."""
    _, folder, revs = series
    spec = complete({"kind": "hf_causal_lm", "revisions": [str(folder / "revs")],
                     "steps": None, "subword": "last", "dtype": "float64"})
    model, tok = HF.load(spec, revs[-1], None, "cpu")
    rows = probe_rows()
    _, grads = hf_states(model, tok, rows, True, 3, "last")
    k = 0
    for sentence in TEXT:
        words = sentence.split()
        ids, owners = word_pieces(tok, words)
        nxt = ids[1:] + [tok.eos_token_id]
        for w in range(len(words)):
            p = int(np.flatnonzero(np.asarray(owners) == w)[-1])
            out = model(input_ids=torch.tensor([ids[: p + 1]]), output_hidden_states=True)
            loss = torch.nn.functional.cross_entropy(out.logits[0, -1:], torch.tensor([nxt[p]]))
            want = torch.autograd.grad(loss, out.hidden_states)
            for i, name in enumerate(["embed", "layer_1", "layer_2"]):
                expected = want[i][0, -1].numpy()
                err = np.linalg.norm(grads[name][k + w] - expected)
                assert err <= 1e-10 * np.linalg.norm(expected), (name, w, err)
        k += len(words)


def test_a_cache_layout_and_a_missing_revision(series, tmp_path):
    _, folder, revs = series
    cache = tmp_path / "models--tiny--lm"
    (cache / "refs").mkdir(parents=True)
    for rev, commit in zip(revs, ("a1", "b2", "c3"), strict=True):
        shutil.copytree(rev, cache / "snapshots" / commit)
        (cache / "refs" / rev.name).write_text(commit)
    (cache / "refs" / "main").write_text("c3")
    spec = complete({"kind": "hf_causal_lm", "revisions": [str(cache)], "steps": [0, 4],
                     "subword": "last"})
    assert HF.series(spec) == [(0, cache / "snapshots" / "a1"), (4, cache / "snapshots" / "c3")]
    with pytest.raises(FileNotFoundError, match=r"\['step1000'\] are not on this machine"):
        HF.series({**spec, "steps": [0, 1000]})
    (cache / "refs" / "step9").write_text("d4")
    with pytest.raises(FileNotFoundError, match="step9 is referenced but not downloaded"):
        HF.series({**spec, "revisions": [str(cache)] + ["again"]})
