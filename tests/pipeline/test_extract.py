"""Extraction correctness on the smoke models: top layers equal fairseq's own outputs, batched
equals one-at-a-time, per-token gradients equal those through an injected zero offset or plain
autograd, and training changes the representations; then the extract stage end to end.

The equality checks run the models in float64 (fairseq's float32 softmax casts patched out), so
their bounds hold by construction on any CPU: in float32, rounding alone can move an FFN unit's
pre-activation across the ReLU kink (seen: +3e-8 in fairseq's forward, exactly 0 in the
recomputation), which drops one gradient path for that token."""

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from conftest import run_pipeline
from fairseq import utils as fairseq_utils

from analysis import repstore
from pipeline import checkpoints, evaluate, extract

pytestmark = pytest.mark.slow
RTOL = 1e-6  # per-token relative bound in float64; every row measured within 1e-12


@pytest.fixture(scope="module", autouse=True)
def float64_softmax():
    """fairseq's softmax helpers always return float32; keep float64 for the float64 checks."""
    patch = pytest.MonkeyPatch()

    def widen(x):
        return torch.float64 if x.dtype == torch.float64 else torch.float32

    patch.setattr(fairseq_utils, "softmax",
                  lambda x, dim, onnx_trace=False: F.softmax(x, dim=dim, dtype=widen(x)))
    patch.setattr(fairseq_utils, "log_softmax",
                  lambda x, dim, onnx_trace=False: F.log_softmax(x, dim=dim, dtype=widen(x)))
    yield
    patch.undo()


def assert_rows_close(actual: torch.Tensor, expected: torch.Tensor, rtol: float = RTOL) -> None:
    """Every row (token) within ``rtol`` of the reference row's norm: ‖a − e‖₂ ≤ rtol·‖e‖₂."""
    assert actual.shape == expected.shape, (actual.shape, expected.shape)
    a = actual.reshape(-1, actual.shape[-1]).double()
    e = expected.reshape(-1, expected.shape[-1]).double()
    err = (a - e).norm(dim=-1)
    bound = rtol * e.norm(dim=-1) + 1e-300
    worst = int(torch.argmax(err / bound))
    assert (err <= bound).all(), (f"{int((err > bound).sum())}/{len(err)} rows off; worst row "
                                  f"{worst}: |Δ| {float(err[worst]):.3g}, |ref| "
                                  f"{float(e[worst].norm()):.3g}")


@pytest.fixture(scope="module")
def lm(smoke_trained):
    _, _, _, train_dir, prepared = smoke_trained
    spec = {"kind": "lm", "words": "lm"}
    path = checkpoints.checkpoint_path(train_dir / "lstm_lm_deep", 30)
    model, _, task = evaluate.load_model(path, evaluate.stream_overrides(spec, prepared))
    rows = extract.probe_rows(pd.read_parquet(prepared / "probe_tokens.parquet"),
                              "brown_probe", 300).assign(side="lm")
    return model.double(), task, extract.sentences(rows, "lm")[:6]


@pytest.fixture(scope="module")
def nmt(smoke_trained):
    _, _, _, train_dir, prepared = smoke_trained
    path = checkpoints.checkpoint_path(train_dir / "transformer_nmt_small", 20)
    model, _, task = evaluate.load_model(path, {"data": str(prepared / "nmt" / "bin")})
    rows = extract.probe_rows(pd.read_parquet(prepared / "probe_tokens.parquet"), "pud", 800)
    return model.double(), task, rows


def lstm_batch(lm, sents):
    model, task, _ = lm
    d = task.source_dictionary
    ((inp, target, lens),) = list(extract.lstm_batches(sents, d, d, None, len(sents)))
    return inp, target, lens


def test_lstm_top_layer_equals_decoder_features(lm):
    model, task, sents = lm
    inp, target, _ = lstm_batch(lm, sents)
    acts, _, features = extract.lstm_states(model, inp, target, task.source_dictionary.pad(),
                                            False)
    assert list(acts) == ["embed", "lstm_1", "lstm_2", "lstm_3"]
    assert acts["lstm_3"].dtype == torch.float64
    assert_rows_close(acts["lstm_3"], features)


def test_lstm_batched_equals_one_at_a_time(lm):
    model, task, sents = lm
    pad = task.source_dictionary.pad()
    inp, target, lens = lstm_batch(lm, sents)
    batched, bgrads, _ = extract.lstm_states(model, inp, target, pad, True)
    for b, sent in enumerate(sents):
        i1, t1, (n,) = lstm_batch(lm, [sent])
        single, sgrads, _ = extract.lstm_states(model, i1, t1, pad, True)
        for name in batched:
            assert_rows_close(batched[name][b, : n + 1], single[name][0])
            assert_rows_close(bgrads[name][b, : n + 1], sgrads[name][0])


def test_lstm_gradients_equal_injected_zero_offsets(lm):
    """d loss_t / d state_t through a zero delta added at each layer's output in the real,
    recurrent forward pass (not the vertical recomputation)."""
    model, task, sents = lm
    pad = task.source_dictionary.pad()
    inp, target, lens = lstm_batch(lm, sents[:2])
    _, grads, _ = extract.lstm_states(model, inp, target, pad, True)
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


def test_transformer_states_gradients_and_batching(nmt):
    model, task, rows = nmt
    d = task.source_dictionary
    src_s, tgt_s = extract.sentences(rows, "source")[:4], extract.sentences(rows, "target")[:4]
    ((_, src, prev, target, keep, slens, tlens),) = list(extract.nmt_batches(src_s, tgt_s, d,
                                                                            4))
    acts, grads, encoder_out = extract.nmt_states(model, src, prev, target, d.pad(), True, keep)
    top = max(int(k.split("_")[1]) for k in acts if k.startswith("enc_") and k != "enc_embed")
    assert acts[f"enc_{top}"].dtype == torch.float64
    assert_rows_close(acts[f"enc_{top}"], encoder_out)
    # reference: plain autograd through the in-graph states, one token at a time
    enc = model.encoder(src, src_lengths=(src != d.pad()).sum(1), return_all_hiddens=True)
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
        ((_, s1, p1, t1, k1, _, _),) = list(extract.nmt_batches(src_s[b:b + 1], tgt_s[b:b + 1],
                                                            d, 1))
        single, sgrads, _ = extract.nmt_states(model, s1, p1, t1, d.pad(), True, k1)
        for name in single:
            n = single[name].shape[1]
            assert_rows_close(acts[name][b, :n], single[name][0])
            assert_rows_close(grads[name][b, :n], sgrads[name][0])


def test_extract_stage_writes_every_model_checkpoint_probe_and_layer(smoke_trained):
    art, args, _, train_dir, _ = smoke_trained
    result = run_pipeline(*[a.replace("stages=[prepare,train]", "stages=[prepare,train,extract]")
                            for a in args])
    assert result.returncode == 0, result.stderr[-3000:]
    out_text = result.stdout + result.stderr
    # the disk estimate is printed when extraction runs (an earlier test may have run it)
    assert "extraction will write about" in out_text or "stage extract: cached" in out_text
    (out,) = [p for p in (art / "smoke" / "extract").iterdir() if p.is_dir()]
    kinds = pd.read_csv(train_dir / "models.csv").set_index("model").kind
    assert len(kinds) == 6
    tags = {"tagger_pos": "pos", "tagger_topic": "topic", "tagger_semtag": "semtag"}
    for name, kind in kinds.items():
        steps = list(checkpoints.read_table(train_dir / name).step)
        probes = ["pud"] if kind == "nmt" else ["brown_probe", "ewt_test"]
        for probe in probes:
            root = out / name / probe
            # taggers are references: their last checkpoint only (extract.tagger_checkpoints)
            assert repstore.steps(root) == (steps[-1:] if kind == "tagger" else steps)
            tokens = repstore.tokens(root)
            for layer, info in repstore.layers(root).items():
                n = int((tokens.side == info["side"]).sum())
                first, _ = repstore.load(root, repstore.steps(root)[0], layer)
                last, rows = repstore.load(root, steps[-1], layer)
                assert first.shape == last.shape == (n, info["dim"]) and len(rows) == n
                if kind != "tagger":
                    assert not (first == last).all()  # training changed the representation
                if kind != "tagger" or (probe, tags.get(name)) in (
                        ("brown_probe", "pos"), ("ewt_test", "pos"), ("brown_probe", "topic")):
                    grad, _ = repstore.load(root, steps[-1], layer, kind="grad")
                    # every token has its gradient (NMT decoder included), none all zero
                    assert grad.shape == last.shape and np.isfinite(grad).all()
                    assert (abs(grad).sum(1) > 0).mean() > 0.99
