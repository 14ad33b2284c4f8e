"""Words as a Hugging Face model reads them (hf_words): for four tokenizer classes (GPT-2,
GPT-NeoX, a byte-level BPE saved as the generic fast class, a Metaspace Unigram), every probe
sentence's ids are exactly ``tokenizer(text)``'s of its running text, and the adapter's states
are ``output_hidden_states`` of that text at each word's first/last/mean subword, the word of
a subword being the tokenizer's own pre-token (``word_ids``); a subword merged across two words
is reported, and a slow tokenizer refused."""

import logging
import shutil

import numpy as np
import pandas as pd
import pytest
import torch
from tinyhf import TEXT, TOKENIZERS, revisions

from pipeline.checkpoints import CheckpointError
from pipeline.models import complete, get
from pipeline.models.hf_causal_lm import hf_states
from pipeline.models.hf_words import TOKENIZATION, word_pieces

pytest.importorskip("transformers")
HF = get("hf_causal_lm")
LAYERS = ["embed", "layer_1", "layer_2"]


def probe_rows(sentences=TEXT) -> pd.DataFrame:
    rows = [dict(sent_index=i, position=j, word=w, side="lm")
            for i, s in enumerate(sentences) for j, w in enumerate(s.split())]
    return pd.DataFrame(rows)


def spec_of(folder) -> dict:
    return complete({"kind": "hf_causal_lm", "revisions": [str(folder)], "steps": None,
                     "subword": "last", "dtype": "float64"})


@pytest.fixture(scope="module", params=TOKENIZERS)
def loaded(request, tmp_path_factory):
    folder = tmp_path_factory.mktemp(request.param)
    revs = revisions(folder / "revs", "gpt_neox", steps=(2,), tokenizer_kind=request.param)
    spec = spec_of(folder / "revs")
    return request.param, spec, *HF.load(spec, revs[-1], None, "cpu")


def test_ids_are_the_running_texts_and_each_word_keeps_its_leading_space(loaded):
    kind, spec, _, tok = loaded
    assert spec["tokenization"] == TOKENIZATION == "running text, offsets"
    for sentence in TEXT:
        words = sentence.split()
        pieces = word_pieces(tok, words)
        assert pieces.ids == [tok.bos_token_id, *tok(sentence)["input_ids"]]
        assert pieces.spans[0][0] == 1 and pieces.spans[-1][1] == len(pieces.ids)
        assert not pieces.shared
        # every word after the first starts with its space, as in the running text (the
        # issue's "Oslo": `Ġ O s lo`, not `O s lo`); a Metaspace text's first word too
        heads = tok.convert_ids_to_tokens([pieces.ids[lo] for lo, _ in pieces.spans])
        spaced = heads if kind == "metaspace" else heads[1:]
        assert all(h[0] in "Ġ▁" for h in spaced), heads


def test_states_are_the_running_texts_hidden_states_at_each_words_subwords(loaded):
    """The reference reads ``tokenizer(text)`` after BOS, and a subword's word from the
    tokenizer's pre-tokens (one per word in these sentences); float64, within 1e-12 of the
    norm."""
    _, _, model, tok = loaded
    rows = probe_rows()
    for subword in ("first", "last", "mean"):
        acts, _ = hf_states(model, tok, rows, False, 2, subword)  # batches of 2: padding
        k = 0
        for sentence in TEXT:
            enc = tok(sentence)
            word = np.asarray(enc.word_ids())
            with torch.no_grad():
                hidden = model(input_ids=torch.tensor([[tok.bos_token_id, *enc["input_ids"]]]),
                               output_hidden_states=True).hidden_states
            for w in range(len(sentence.split())):
                at = 1 + np.flatnonzero(word == w)
                pick = {"first": at[:1], "last": at[-1:], "mean": at}[subword]
                for i, name in enumerate(LAYERS):
                    want = hidden[i][0, pick].mean(0).numpy()
                    err = np.linalg.norm(acts[name][k + w] - want)
                    assert err <= 1e-12 * np.linalg.norm(want), (subword, name, w, err)
            k += len(sentence.split())
        assert k == len(rows)


def test_a_subword_merged_across_two_words_counts_for_both_and_is_reported(caplog):
    from tokenizers import Tokenizer, models
    from transformers import PreTrainedTokenizerFast

    vocab = {"<s>": 0, "a": 1, "b": 2, " ": 3, "a ": 4, "a b": 5}
    bpe = Tokenizer(models.BPE(vocab=vocab, merges=[("a", " "), ("a ", "b")]))
    tok = PreTrainedTokenizerFast(tokenizer_object=bpe, bos_token="<s>", eos_token="<s>")
    pieces = word_pieces(tok, ["a", "b", "b"])  # "a b b": `a b`, ` `, `b`
    assert pieces.ids == [0, 5, 3, 2]
    assert pieces.spans == [(1, 2), (1, 2), (2, 4)]  # the bare space leads the third word
    assert pieces.shared == ["'a b' spans words 0-1 ('a b')"]
    from pipeline.models.hf_causal_lm import _report_shared

    rows = pd.DataFrame(dict(sent_index=[7, 7, 7], word=["a", "b", "b"]))
    with caplog.at_level(logging.WARNING):
        _report_shared([rows], [pieces])
    assert "1 subwords span two or more words" in caplog.text and "sentence 7" in caplog.text


def test_a_slow_tokenizer_is_refused_naming_the_revision(tmp_path):
    from transformers import ByT5Tokenizer

    rev = revisions(tmp_path / "revs", "gpt_neox", steps=(0,))[0]
    for f in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        (rev / f).unlink(missing_ok=True)
    ByT5Tokenizer().save_pretrained(rev)
    with pytest.raises(CheckpointError, match=rf"{rev}: the tokenizer \(ByT5Tokenizer\) is a "
                                              "slow one, which gives no character offsets"):
        HF.load(spec_of(tmp_path / "revs"), rev, None, "cpu")
    shutil.rmtree(rev)
