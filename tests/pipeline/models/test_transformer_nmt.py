"""Transformer NMT adapter on a trained smoke model: the encoder's top state equals fairseq's
encoder output, every decoder token's gradient equals plain autograd of that token's loss,
encoder gradients equal the sentence loss's, and batched equals one at a time."""

import pytest
import torch
from exactness import assert_rows_close, float64_softmax, load_float64  # noqa: F401

from pipeline.models import transformer_nmt as tn

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def nmt(smoke_trained):
    model, task, _, rows = load_float64(smoke_trained, "transformer_nmt_small", "pud", 800)
    return model, task, rows


def test_transformer_states_gradients_and_batching(nmt):
    model, task, rows = nmt
    d = task.source_dictionary
    src_s = tn.side_sentences(rows, "source")[:4]
    tgt_s = tn.side_sentences(rows, "target")[:4]
    ((_, src, prev, target, keep, slens, tlens),) = list(tn.nmt_batches(src_s, tgt_s, d, 4))
    acts, grads = tn.nmt_states(model, src, prev, target, d.pad(), True, keep)
    top = max(int(k.split("_")[1]) for k in acts if k.startswith("enc_") and k != "enc_embed")
    enc = model.encoder(src, src_lengths=(src != d.pad()).sum(1), return_all_hiddens=True)
    assert acts[f"enc_{top}"].dtype == torch.float64
    assert_rows_close(acts[f"enc_{top}"], enc["encoder_out"][0].transpose(0, 1).detach())
    # reference: plain autograd through the in-graph states, one token at a time
    x, extra = model.decoder(prev, encoder_out=enc, features_only=True, return_all_hiddens=True)
    lprobs = torch.log_softmax(model.decoder.output_layer(x), -1)
    nll = -lprobs.gather(-1, target.unsqueeze(-1)).squeeze(-1)
    states = extra["inner_states"]
    for b, n in enumerate(tlens):  # every kept token (positions 1..n read y1..yn)
        for t in range(1, n + 1):
            ref = torch.autograd.grad(nll[b, t], states, retain_graph=True)
            for i, g in enumerate(ref):
                name = "dec_embed" if i == 0 else f"dec_{i}"
                assert_rows_close(grads[name][b, t], g[t, b])
    total = torch.autograd.grad((nll * keep).sum(), enc["encoder_states"])
    # encoder states get the sentence loss's gradient; pad rows are zero on both sides
    real = (src != d.pad()).unsqueeze(-1)
    assert_rows_close(grads["enc_1"] * real, total[1].transpose(0, 1) * real)
    # batched equals one at a time
    assert len(src_s) == 4
    for b in range(4):
        ((_, s1, p1, t1, k1, _, _),) = list(tn.nmt_batches(src_s[b:b + 1], tgt_s[b:b + 1], d, 1))
        single, sgrads = tn.nmt_states(model, s1, p1, t1, d.pad(), True, k1)
        for name in single:
            n = single[name].shape[1]
            assert_rows_close(acts[name][b, :n], single[name][0])
            assert_rows_close(grads[name][b, :n], sgrads[name][0])
