"""The Hugging Face causal-LM adapter on tiny GPT-NeoX, GPT-2 and Llama (grouped-query
attention) revisions made here: its states are `output_hidden_states` at each word's subword,
its gradients each position's own next-token loss (checked on the prefix alone, in float64),
the one-pass gradients equal the per-position ones, a model whose layers mix positions outside
the attention registry falls back to per-position passes, and revisions are found in revision
folders and in a Hugging Face cache layout, with a clear error for each malformed layout."""

import logging
import shutil

import numpy as np
import pandas as pd
import pytest
import torch
from tinyhf import TEXT, revisions

from pipeline.checkpoints import CheckpointError
from pipeline.models import complete, get
from pipeline.models.hf_causal_lm import hf_states
from pipeline.models.hf_grads import one_pass_ok
from pipeline.models.hf_words import word_pieces

pytest.importorskip("transformers")
HF = get("hf_causal_lm")


def probe_rows(sentences=TEXT) -> pd.DataFrame:
    rows = [dict(sent_index=i, position=j, word=w, side="lm")
            for i, s in enumerate(sentences) for j, w in enumerate(s.split())]
    return pd.DataFrame(rows)


@pytest.fixture(scope="module", params=["gpt_neox", "gpt2", "llama"])
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
            ids, spans, _ = word_pieces(tok, words)
            with torch.no_grad():
                hidden = model(input_ids=torch.tensor([ids]), output_hidden_states=True
                               ).hidden_states
            for w, (lo, hi) in enumerate(spans):
                at = np.arange(lo, hi)
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
    assert one_pass_ok(model)  # the gradients below come from one backward pass per batch
    _, grads = hf_states(model, tok, rows, True, 3, "last")
    k = 0
    for sentence in TEXT:
        words = sentence.split()
        ids, spans, _ = word_pieces(tok, words)
        nxt = ids[1:] + [tok.eos_token_id]
        for w, (_, hi) in enumerate(spans):
            p = hi - 1
            out = model(input_ids=torch.tensor([ids[: p + 1]]), output_hidden_states=True)
            loss = torch.nn.functional.cross_entropy(out.logits[0, -1:], torch.tensor([nxt[p]]))
            want = torch.autograd.grad(loss, out.hidden_states)
            for i, name in enumerate(["embed", "layer_1", "layer_2"]):
                expected = want[i][0, -1].numpy()
                err = np.linalg.norm(grads[name][k + w] - expected)
                assert err <= 1e-10 * np.linalg.norm(expected), (name, w, err)
        k += len(words)


def test_one_pass_gradients_equal_the_per_position_ones(series):
    """In float64, batches of 2 (sentences of different lengths: padding), each pooling: the
    one-backward-pass gradients equal one backward pass per position within 1e-10 of the
    norm, and the states are the same."""
    _, folder, revs = series
    spec = complete({"kind": "hf_causal_lm", "revisions": [str(folder / "revs")],
                     "steps": None, "subword": "last", "dtype": "float64"})
    model, tok = HF.load(spec, revs[-1], None, "cpu")
    rows = probe_rows()
    for subword in ("first", "last", "mean"):
        acts, one = hf_states(model, tok, rows, True, 2, subword, one_pass=True)
        acts_each, each = hf_states(model, tok, rows, True, 2, subword, one_pass=False)
        assert sorted(one) == sorted(each) == ["embed", "layer_1", "layer_2"]
        for name in one:
            assert one[name].shape == (len(rows), 16)
            err = np.linalg.norm(one[name] - each[name], axis=1)
            assert (err <= 1e-10 * np.linalg.norm(each[name], axis=1)).all(), (subword, name)
            assert np.linalg.norm(each[name], axis=1).min() > 0
            np.testing.assert_allclose(acts[name], acts_each[name], rtol=1e-12, atol=0)
    assert model.config._attn_implementation == "sdpa"  # restored after the gradient pass


def test_a_model_mixing_positions_outside_attention_falls_back_per_position(caplog):
    """A tiny Mamba (its layers mix positions by a scan, not through the attention registry):
    the fallback is logged, and its gradients are still each position's own loss's (prefix
    alone; 1e-5 of the norm: its scan's reference implementation runs in float32 whatever the
    model's dtype, where leaking a later position's loss would differ by the whole norm)."""
    from transformers import MambaConfig, MambaForCausalLM

    torch.manual_seed(0)
    model = MambaForCausalLM(MambaConfig(
        vocab_size=300, hidden_size=16, state_size=4, num_hidden_layers=2, expand=2,
        conv_kernel=3, bos_token_id=0, eos_token_id=0)).double().eval()
    from tinyhf import tokenizer

    tok = tokenizer()
    with caplog.at_level(logging.WARNING, logger="pipeline.models.hf_grads"):
        assert not one_pass_ok(model)
    assert "0 of its 2 layers' attention" in caplog.text
    sentence = TEXT[1]
    rows = probe_rows([sentence])
    _, grads = hf_states(model, tok, rows, True, 1, "last")
    ids, spans, _ = word_pieces(tok, sentence.split())
    nxt = ids[1:] + [tok.eos_token_id]
    for w, (_, hi) in enumerate(spans[:4]):
        out = model(input_ids=torch.tensor([ids[:hi]]), output_hidden_states=True)
        loss = torch.nn.functional.cross_entropy(out.logits[0, -1:], torch.tensor([nxt[hi - 1]]))
        want = torch.autograd.grad(loss, out.hidden_states)
        for i, name in enumerate(["embed", "layer_1", "layer_2"]):
            expected = want[i][0, -1].numpy()
            err = np.linalg.norm(grads[name][w] - expected)
            assert err <= 1e-5 * np.linalg.norm(expected), (name, w, err)


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
    with pytest.raises(CheckpointError, match=r"\['step1000'\] are not on this machine"):
        HF.series({**spec, "steps": [0, 1000]})
    (cache / "refs" / "step9").write_text("d4")
    with pytest.raises(CheckpointError, match="step9 is referenced but not downloaded"):
        HF.series({**spec, "revisions": [str(cache)] + ["again"]})


def test_malformed_revision_layouts_are_refused_naming_the_folder(series, tmp_path):
    _, folder, revs = series

    def refused(paths, message):
        with pytest.raises(CheckpointError, match=message):
            HF.series(complete({"kind": "hf_causal_lm", "revisions": [str(p) for p in paths],
                                "steps": None, "subword": "last"}))

    refused([tmp_path / "nowhere"], f"revisions: no folder {tmp_path / 'nowhere'}")
    (tmp_path / "empty").mkdir()
    refused([tmp_path / "empty"], f"{tmp_path / 'empty'}: no revision")
    shutil.copytree(revs[0], tmp_path / "final")
    refused([tmp_path / "final"], "final: no step in its name")
    shutil.copytree(revs[0], tmp_path / "again" / "step0")
    refused([folder / "revs", tmp_path / "again"], "step 0 twice")
