"""LSTM adapter on a trained smoke model: the top layer equals fairseq's own output, batched
equals one-at-a-time, and per-token gradients equal those through an injected zero offset in
the real recurrent forward pass."""

import pytest
import torch
from exactness import assert_rows_close, float64_softmax, load_float64  # noqa: F401

from pipeline.models import lstm, words

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def lm(smoke_trained):
    model, task, _, rows = load_float64(smoke_trained, "lstm_lm_deep", "brown_probe", 300)
    return model, task, words.sentences(rows)[:6]


def batch(lm, sents):
    _, task, _ = lm
    d = task.source_dictionary
    ((inp, target, lens),) = list(words.batches(sents, d, d, None, len(sents)))
    return inp, target, lens


def test_lstm_top_layer_equals_decoder_features(lm):
    model, task, sents = lm
    inp, target, _ = batch(lm, sents)
    acts, _ = lstm.lstm_states(model, inp, target, task.source_dictionary.pad(), False)
    assert list(acts) == ["embed", "lstm_1", "lstm_2", "lstm_3"]
    assert acts["lstm_3"].dtype == torch.float64
    with torch.no_grad():
        features, _ = model.decoder.extract_features(inp)
    assert_rows_close(acts["lstm_3"], features)


def test_lstm_batched_equals_one_at_a_time(lm):
    model, task, sents = lm
    pad = task.source_dictionary.pad()
    inp, target, lens = batch(lm, sents)
    batched, bgrads = lstm.lstm_states(model, inp, target, pad, True)
    for b, sent in enumerate(sents):
        i1, t1, (n,) = batch(lm, [sent])
        single, sgrads = lstm.lstm_states(model, i1, t1, pad, True)
        for name in batched:
            assert_rows_close(batched[name][b, : n + 1], single[name][0])
            assert_rows_close(bgrads[name][b, : n + 1], sgrads[name][0])


def test_lstm_gradients_equal_injected_zero_offsets(lm):
    """d loss_t / d state_t through a zero delta added at each layer's output in the real,
    recurrent forward pass (not the vertical recomputation)."""
    model, task, sents = lm
    pad = task.source_dictionary.pad()
    inp, target, lens = batch(lm, sents[:2])
    _, grads = lstm.lstm_states(model, inp, target, pad, True)
    dec = model.decoder
    bsz, steps = inp.shape
    deltas = {name: torch.zeros(bsz, steps, dim, dtype=torch.float64, requires_grad=True)
              for name, dim in [("embed", dec.embed_tokens.embedding_dim)]
              + [(f"lstm_{i + 1}", dec.hidden_size) for i in range(len(dec.layers))]}
    counters = [0] * len(dec.layers)

    def cell_hook(i, module, inputs, output):
        h, c = output
        t = counters[i]
        counters[i] += 1
        return h + deltas[f"lstm_{i + 1}"][:, t], c

    handles = [dec.embed_tokens.register_forward_hook(lambda m, i, o: o + deltas["embed"])]
    handles += [cell.register_forward_hook(lambda m, i, o, k=k: cell_hook(k, m, i, o))
                for k, cell in enumerate(dec.layers)]
    try:
        logits, _ = model(inp)
    finally:
        for h in handles:
            h.remove()
    lprobs = model.get_normalized_probs((logits, None), log_probs=True)
    nll = -lprobs.gather(-1, target.unsqueeze(-1)).squeeze(-1)
    for b, t in [(0, 1), (0, lens[0]), (1, 2), (1, lens[1] // 2), (1, lens[1])]:
        ref = torch.autograd.grad(nll[b, t], list(deltas.values()), retain_graph=True)
        for name, g in zip(deltas, ref, strict=True):
            assert_rows_close(grads[name][b, t], g[b, t])
