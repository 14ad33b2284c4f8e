"""The word-stream models' shared pieces: the per-token loss through an adaptive softmax equals
fairseq's own log-probabilities and is differentiable (fairseq's writes into its result)."""

import types

import torch
from fairseq.modules import AdaptiveSoftmax

from pipeline.models.words import target_nll


def test_adaptive_softmax_loss_equals_fairseq_and_has_gradients():
    torch.manual_seed(0)
    softmax = AdaptiveSoftmax(50, 8, [10, 30], dropout=0.0).double().eval()
    model = types.SimpleNamespace(decoder=types.SimpleNamespace(adaptive_softmax=softmax))
    features = torch.randn(3, 7, 8, dtype=torch.float64, requires_grad=True)
    target = torch.randint(0, 50, (3, 7))
    target[0, -1] = 1  # a padding position
    nll = target_nll(model, features, target, pad=1)
    with torch.no_grad():
        ref = -softmax.get_log_prob(features, None).gather(-1, target.unsqueeze(-1)).squeeze(-1)
    keep = target != 1
    torch.testing.assert_close(nll[keep], ref[keep], rtol=1e-12, atol=0)
    assert (nll[~keep] == 0).all()
    (grad,) = torch.autograd.grad(nll.sum(), features, retain_graph=True)
    for b, t in [(0, 0), (1, 3), (2, 6)]:  # each position's loss depends on its own features
        (one,) = torch.autograd.grad(nll[b, t], features, retain_graph=True)
        torch.testing.assert_close(one[b, t], grad[b, t], rtol=1e-12, atol=0)
        assert one.abs().sum() == one[b, t].abs().sum()
