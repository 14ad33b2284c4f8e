"""Transformer LM adapter on a trained smoke model: the top layer (through the final LayerNorm)
equals fairseq's features, every token's gradient equals plain autograd of that token's own
loss at every layer, and batched equals one at a time."""

import pytest
import torch
from exactness import assert_rows_close, float64_softmax, load_float64  # noqa: F401

from pipeline.models import transformer_lm, words

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def lm(smoke_trained):
    model, task, _, rows = load_float64(smoke_trained, "transformer_lm_small", "brown_probe", 300)
    return model, task, words.sentences(rows)[:4]


def batch(task, sents):
    d = task.source_dictionary
    ((inp, target, lens),) = list(words.batches(sents, d, d, None, len(sents)))
    return inp, target, lens


def test_states_gradients_and_batching(lm):
    model, task, sents = lm
    pad = task.source_dictionary.pad()
    inp, target, lens = batch(task, sents)
    acts, grads = transformer_lm.transformer_lm_states(model, inp, target, pad, True)
    n_layers = len(model.decoder.layers)
    assert list(acts) == ["embed"] + [f"layer_{i}" for i in range(1, n_layers + 1)]
    x, extra = model.decoder(inp, features_only=True, return_all_hiddens=True)
    norm = model.decoder.layer_norm  # pre-norm: the final LayerNorm follows the last layer
    assert norm is not None
    top = norm(acts[f"layer_{n_layers}"])
    assert_rows_close(top, x.detach())
    lprobs = model.get_normalized_probs((model.decoder.output_layer(x), None), log_probs=True)
    nll = -lprobs.gather(-1, target.unsqueeze(-1)).squeeze(-1)
    states = extra["inner_states"]
    for b, n in enumerate(lens):  # positions 0..n read </s> w1..wn
        for t in range(n + 1):
            ref = torch.autograd.grad(nll[b, t], states, retain_graph=True)
            for i, g in enumerate(ref):
                assert_rows_close(grads["embed" if i == 0 else f"layer_{i}"][b, t], g[t, b])
    for b, sent in enumerate(sents):
        i1, t1, (n,) = batch(task, [sent])
        single, sgrads = transformer_lm.transformer_lm_states(model, i1, t1, pad, True)
        for name in single:
            assert_rows_close(acts[name][b, : n + 1], single[name][0])
            assert_rows_close(grads[name][b, : n + 1], sgrads[name][0])
