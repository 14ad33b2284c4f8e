"""pipeline.pruning on a tiny fairseq-free LM (Embedding → LSTM → Linear) with known weights."""

import numpy as np
import pytest
import torch
from torch import nn

from pipeline.pruning import (
    global_magnitude_masks,
    imp_masks,
    mask_sparsity,
    n_to_prune,
    prunable,
    random_like,
    random_masks,
    sparsity_of,
    ticket_names,
)

VOCAB, EMB, HID = 7, 4, 5
COUNTED = ["emb.weight", "lstm.weight_ih_l0", "lstm.weight_hh_l0", "out.weight"]


class TinyLM(nn.Module):
    def __init__(self, tied: bool = False):
        super().__init__()
        self.emb = nn.Embedding(VOCAB, EMB)
        self.lstm = nn.LSTM(EMB, HID if not tied else EMB, batch_first=True)
        self.out = nn.Linear(HID if not tied else EMB, VOCAB)
        if tied:
            self.out.weight = self.emb.weight

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.out(self.lstm(self.emb(tokens))[0])


def distinct_weights(model: nn.Module, seed: int = 0) -> nn.Module:
    """Counted weights set to ±(1..n)/n in a random order: every magnitude distinct."""
    params = [p for p in model.parameters() if p.ndim >= 2]
    n = sum(p.numel() for p in params)
    rng = np.random.default_rng(seed)
    values = rng.permutation(np.arange(1, n + 1) / n) * rng.choice([-1.0, 1.0], n)
    with torch.no_grad():
        at = 0
        for p in params:
            p.copy_(torch.from_numpy(values[at : at + p.numel()]).view_as(p))
            at += p.numel()
    return model


def tiny(seed: int = 0, tied: bool = False) -> nn.Module:
    torch.manual_seed(seed)
    return distinct_weights(TinyLM(tied).double(), seed)


def counted_weights(model: nn.Module) -> torch.Tensor:
    return torch.cat([getattr(m, a).detach().flatten() for _, m, a in prunable(model)])


TOKENS = torch.tensor([[1, 2, 3, 4, 5, 6], [6, 5, 0, 3, 2, 1]])


def test_counted_parameters_are_the_matrices_once():
    assert [name for name, _, _ in prunable(tiny())] == COUNTED
    assert [name for name, _, _ in prunable(tiny(tied=True))] == COUNTED[:3]  # out = emb


def test_zero_sparsity_is_bit_identical():
    model = tiny()
    pruned = global_magnitude_masks(model, 0.0)
    assert list(pruned.state_dict()) == list(model.state_dict())  # same order, too
    for name, value in model.state_dict().items():
        assert torch.equal(pruned.state_dict()[name], value), name
    assert torch.equal(pruned(TOKENS), model(TOKENS))


@pytest.mark.parametrize("sparsity", [0.3, 0.95, 1.0])
def test_original_untouched(sparsity):
    model = tiny()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    global_magnitude_masks(model, sparsity)
    random_masks(model, dict.fromkeys(COUNTED, sparsity), seed=0)
    for name, value in model.state_dict().items():
        assert torch.equal(value, before[name]), name


@pytest.mark.parametrize("sparsity", [0.0, 0.1, 0.35, 0.5, 0.8, 0.95, 1.0])
def test_magnitude_pruning_zeroes_the_round_s_n_smallest(sparsity):
    model = tiny()
    w = counted_weights(model)
    n = w.numel()
    zero = counted_weights(global_magnitude_masks(model, sparsity)) == 0
    assert int(zero.sum()) == round(sparsity * n)
    if 0 < zero.sum() < n:  # exactly the smallest magnitudes: distinct, so no ties
        assert w[zero].abs().max() < w[~zero].abs().min()
    _, overall = sparsity_of(global_magnitude_masks(model, sparsity))
    assert overall == round(sparsity * n) / n


def test_pruned_copy_runs_with_its_zeros_and_keeps_biases():
    """The LSTM reads the pruned weights (its flat weight list follows prune.remove): the
    copy computes what a model loaded with the same state dict computes."""
    model = tiny()
    pruned = global_magnitude_masks(model, 0.5)
    loaded = tiny()
    loaded.load_state_dict(pruned.state_dict())
    assert torch.equal(pruned(TOKENS), loaded(TOKENS))
    assert not torch.equal(pruned(TOKENS), model(TOKENS))
    for name, p in model.named_parameters():
        if p.ndim < 2:
            assert torch.equal(p, dict(pruned.named_parameters())[name]), name


def test_tied_weights_stay_tied_and_count_once():
    model = tiny(tied=True)
    pruned = global_magnitude_masks(model, 0.5)
    assert pruned.out.weight is pruned.emb.weight
    n = counted_weights(model).numel()
    assert int((counted_weights(pruned) == 0).sum()) == round(0.5 * n)


def test_ties_at_the_threshold_keep_the_count():
    """Equal magnitudes across the threshold: which of them go is torch.topk's choice, the
    count is still round(s·n), and every larger weight stays."""
    model = tiny()
    with torch.no_grad():
        for _, m, a in prunable(model):
            w = getattr(m, a)
            w.copy_(torch.where(torch.arange(w.numel()).view_as(w) % 2 == 0, 1.0, -2.0))
    w = counted_weights(model)
    ones = int((w.abs() == 1).sum())
    sparsity = 0.3
    assert round(sparsity * w.numel()) < ones  # the threshold falls among the ties
    after = counted_weights(global_magnitude_masks(model, sparsity))
    assert int((after == 0).sum()) == round(sparsity * w.numel())
    assert torch.equal(after[w.abs() == 2], w[w.abs() == 2])


def test_round_is_pythons():
    assert n_to_prune(0.5, 5) == 2 and n_to_prune(0.5, 7) == 4  # halves to even
    with pytest.raises(ValueError, match="sparsity must be in"):
        n_to_prune(1.5, 10)


def test_random_control_keeps_each_parameters_sparsity():
    model = tiny()
    magnitude = global_magnitude_masks(model, 0.6)
    per, overall = sparsity_of(magnitude)
    assert len(set(per.values())) > 1  # the global mask prunes the parameters unequally
    control = random_masks(model, per, seed=3)
    control_per, control_overall = sparsity_of(control)
    assert control_per == per and control_overall == overall
    assert not torch.equal(counted_weights(control) == 0, counted_weights(magnitude) == 0)
    same = counted_weights(random_masks(model, per, seed=3))
    assert torch.equal(same, counted_weights(control))
    assert not torch.equal(counted_weights(random_masks(model, per, seed=4)), same)


def test_unknown_parameter_name_is_refused_and_a_named_bias_is_pruned():
    with pytest.raises(ValueError, match="not parameters of this model: \\['out.gain'\\]"):
        random_masks(tiny(), {"out.gain": 0.5}, seed=0)
    per, _ = sparsity_of(random_masks(tiny(), {"out.bias": 0.5}, seed=0), ["out.bias"])
    assert per["out.bias"] == n_to_prune(0.5, tiny().out.bias.numel()) / tiny().out.bias.numel()


def _expected_kept(n: int, rate: float, rounds: int) -> int:
    """Weights left after ``rounds`` rounds removing round(rate·kept) each: ~ n·(1-rate)^r."""
    kept = n
    for _ in range(rounds):
        kept -= n_to_prune(rate, kept)
    return kept


def test_imp_rounds_remove_a_fifth_of_the_remaining_weights_by_global_magnitude():
    """Every magnitude distinct (no ties): round r keeps exactly the n·0.8^r weights (each
    round's count rounded) of largest |w| among those the last round kept, over all tensors
    together; the masks only ever shrink. With the weights unchanged between rounds, that is
    the n·0.8^r largest of the original weights."""
    model = tiny()
    names = ticket_names(model, ["weights", "embeddings"])
    assert names == COUNTED
    masks = {n: torch.ones_like(dict(model.named_parameters())[n]) for n in names}
    everything = torch.cat([dict(model.named_parameters())[n].detach().abs().flatten()
                            for n in names])
    n = everything.numel()
    for r in range(1, 7):
        new = imp_masks(model, masks, 0.2)
        assert all(torch.all(new[k] <= masks[k]) for k in names)
        _, overall = mask_sparsity(new)
        kept = _expected_kept(n, 0.2, r)
        assert int(sum((m == 0).sum() for m in new.values())) == n - kept
        assert abs(overall - (1 - 0.8 ** r)) <= r / n  # each round's rounding: < 1 weight
        flat = torch.cat([new[k].flatten() for k in names])
        assert torch.equal(flat.bool(), everything >= everything.topk(kept).values.min())
        masks = new


def test_imp_prunes_among_the_kept_weights_of_the_trained_model():
    """The next mask is chosen on the trained weights (here: new magnitudes), never revives a
    pruned weight, and zero-valued kept weights go first (ties at |w| = 0: topk's choice)."""
    model = tiny()
    names = ticket_names(model, ["weights"])
    assert "emb.weight" not in names and names == COUNTED[1:]
    first = imp_masks(model, {k: torch.ones_like(dict(model.named_parameters())[k])
                              for k in names}, 0.5)
    retrained = tiny(seed=1)  # other weights where the ticket trained
    second = imp_masks(retrained, first, 0.5)
    kept_before = int(sum(m.sum() for m in first.values()))
    assert int(sum(m.sum() for m in second.values())) == kept_before - n_to_prune(0.5,
                                                                                   kept_before)
    params = dict(retrained.named_parameters())
    survivors = torch.cat([params[k].detach().abs()[first[k].bool()] for k in names])
    chosen = torch.cat([params[k].detach().abs()[second[k].bool()] for k in names])
    assert chosen.min() >= survivors.sort().values[n_to_prune(0.5, kept_before)]
    assert all(torch.all(second[k] <= first[k]) for k in names)


def test_biases_are_pruned_only_where_named_and_layernorm_gains_never():
    model = nn.Sequential(nn.Linear(3, 4), nn.LayerNorm(4), nn.Linear(4, 2))
    assert ticket_names(model, ["weights"]) == ["0.weight", "2.weight"]
    assert ticket_names(model, ["weights", "biases"]) == ["0.weight", "0.bias", "1.bias",
                                                          "2.weight", "2.bias"]
    with pytest.raises(ValueError, match="ticket parts \\['gains'\\]"):
        ticket_names(model, ["gains"])


def test_the_random_control_has_each_tensors_sparsity_and_its_own_positions():
    model = tiny()
    names = ticket_names(model, ["weights", "embeddings"])
    masks = {k: torch.ones_like(dict(model.named_parameters())[k]) for k in names}
    for _ in range(3):
        masks = imp_masks(model, masks, 0.2)
    control = random_like(masks, seed=5)
    assert mask_sparsity(control)[0] == mask_sparsity(masks)[0]
    assert any(not torch.equal(control[k], masks[k]) for k in names)
    assert all(torch.equal(control[k], random_like(masks, seed=5)[k]) for k in names)


def test_imp_prunes_the_exact_count_when_magnitudes_tie():
    """Ties at the threshold (every |w| = 1 here): which weights go is torch.topk's choice,
    the count is exact."""
    model = tiny()
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(1.0)
    names = ticket_names(model, ["weights", "embeddings"])
    ones = {k: torch.ones_like(dict(model.named_parameters())[k]) for k in names}
    n = sum(m.numel() for m in ones.values())
    masks = imp_masks(model, ones, 0.2)
    assert int(sum((m == 0).sum() for m in masks.values())) == n_to_prune(0.2, n)
