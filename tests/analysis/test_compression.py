"""analysis.compression on constructed activations whose answers follow from the construction."""

import math

import numpy as np
import pytest
import torch
from torch import nn

from analysis.compression import (
    interpolated_s_star,
    k_grid,
    largest_within,
    log2_k_star,
    pca_basis,
    projector,
    random_basis,
    relative_change,
    smallest_within,
    svcca_basis,
)

D, R, N = 16, 5, 400


def rel(a: torch.Tensor, b: torch.Tensor, scale: torch.Tensor) -> float:
    return float(torch.linalg.norm(a - b) / torch.linalg.norm(scale))


def gauss(*shape: int, seed: int) -> torch.Tensor:
    return torch.from_numpy(np.random.default_rng(seed).standard_normal(shape))


def orthonormal_columns(n: int, m: int, seed: int) -> torch.Tensor:
    """m centred, mutually orthogonal unit columns over n tokens."""
    g = gauss(n, m, seed=seed)
    return torch.linalg.qr(g - g.mean(0)).Q


def bottleneck_model(seed: int = 0) -> nn.Sequential:
    """Linear(D, R) → Linear(R, D) (its output exactly rank R plus the bias) → tanh → head."""
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(D, R), nn.Linear(R, D), nn.Tanh(), nn.Linear(D, 3)).double()
    with torch.no_grad():  # well-conditioned map out of the bottleneck
        model[1].weight.copy_(torch.linalg.qr(gauss(D, R, seed=seed)).Q)
    return model


def layer_output(model: nn.Sequential, z: torch.Tensor) -> torch.Tensor:
    return model[1](model[0](z))


def test_rank_r_layer_top_r_pca_keeps_output_and_r_minus_1_does_not():
    model = bottleneck_model()
    z_fit, z_eval = gauss(N, D, seed=10), gauss(100, D, seed=11)
    mean, u = pca_basis(layer_output(model, z_fit).detach())
    reference = model(z_eval).detach()
    for k, keeps in ((R, True), (R - 1, False)):
        proj = projector(mean, u, k)
        handle = model[1].register_forward_hook(lambda m, i, out, proj=proj: proj(out))
        out = model(z_eval).detach()
        handle.remove()
        err = rel(out, reference, reference)
        assert err <= 1e-10 if keeps else err > 1e-3, (k, err)
    assert torch.equal(model(z_eval), model(z_eval.clone()))  # hook gone: the same function
    assert torch.equal(model(z_eval).detach(), reference)


def test_pca_basis_orders_by_variance_and_is_orthonormal():
    a = orthonormal_columns(N, 3, seed=1) * torch.tensor([1.0, 5.0, 3.0], dtype=torch.float64)
    axes = torch.linalg.qr(gauss(D, 3, seed=12)).Q
    x = a @ axes.T + 7.0
    mean, u = pca_basis(x)
    assert torch.allclose(mean, torch.full((D,), 7.0, dtype=torch.float64), atol=1e-12)
    assert torch.allclose(u.T @ u, torch.eye(D, dtype=torch.float64), atol=1e-12)
    for i, col in enumerate((1, 2, 0)):  # variance 25, 9, 1
        assert abs(float(u[:, i] @ axes[:, col])) == pytest.approx(1.0, abs=1e-12)


def signal_and_nuisance():
    """x = a Maᵀ + 3 b Mbᵀ + mean, y = [a A, c]: y sees only a; b holds most of x's variance.
    a, b, c: exactly orthogonal centred columns, so CCA gives ρ = 1, 1 on a and 0 elsewhere."""
    cols = orthonormal_columns(N, 6, seed=2) * math.sqrt(N)
    a, b, c = cols[:, :2], cols[:, 2:4], cols[:, 4:]
    q = torch.linalg.qr(gauss(D, D, seed=13)).Q
    ma, mb = q[:, :2], q[:, 2:4]
    mix = torch.tensor([[2.0, 1.0], [0.5, 1.5]], dtype=torch.float64)
    mean = torch.linspace(-1, 1, D, dtype=torch.float64)
    x = a @ ma.T + 3 * b @ mb.T + mean
    return x, torch.cat([a @ mix, c], dim=1), a @ ma.T + mean, 3 * b @ mb.T + mean


def test_svcca_basis_puts_the_directions_y_sees_first():
    x, y, seen, unseen = signal_and_nuisance()
    xc = x - x.mean(0)
    mean, u = svcca_basis(x, y)
    assert torch.allclose(u.T @ u, torch.eye(D, dtype=torch.float64), atol=1e-12)
    assert rel(projector(mean, u, 2)(x), seen, xc) <= 1e-10
    assert rel(projector(mean, u, 4)(x), x, xc) <= 1e-10
    pmean, pu = pca_basis(x)  # PCA keeps the high-variance part y does not see
    assert rel(projector(pmean, pu, 2)(x), unseen, xc) <= 1e-10


@pytest.mark.parametrize("against", ["itself", "invertible map"])
def test_svcca_basis_of_x_against_a_copy_spans_its_signal_first(against):
    x = layer_output(bottleneck_model(seed=3), gauss(N, D, seed=14)).detach()
    invertible = torch.eye(D, dtype=torch.float64) + 0.3 * gauss(D, D, seed=15)
    y = x if against == "itself" else x @ invertible
    mean, u = svcca_basis(x, y)
    assert torch.allclose(u.T @ u, torch.eye(D, dtype=torch.float64), atol=1e-12)
    xc = x - x.mean(0)
    assert rel(projector(mean, u, R)(x), x, xc) <= 1e-10
    assert rel(projector(mean, u, R - 1)(x), x, xc) > 1e-3
    # every canonical correlation is 1: the order is x's principal one, not rounding's choice
    pmean, pu = pca_basis(x)
    for k in range(1, R + 1):
        assert rel(projector(mean, u, k)(x), projector(pmean, pu, k)(x), xc) <= 1e-8, k


def test_svcca_basis_refuses_too_few_tokens():
    x = gauss(D, D, seed=16)
    with pytest.raises(ValueError, match="more tokens than dimensions"):
        svcca_basis(x, x)


def test_random_basis_orthonormal_and_deterministic_in_its_seed():
    u = random_basis(D, seed=4)
    assert u.dtype == torch.float64 and u.shape == (D, D)
    assert torch.allclose(u.T @ u, torch.eye(D, dtype=torch.float64), atol=1e-12)
    assert torch.equal(u, random_basis(D, seed=4))
    assert not torch.allclose(u, random_basis(D, seed=5))


def test_projector_full_width_is_identity_up_to_rounding_and_zero_gives_the_mean():
    x = gauss(3, 7, D, seed=17).float()
    mean = gauss(D, seed=18)
    u = random_basis(D, seed=6)
    full = projector(mean, u, D)(x)
    assert full.dtype == torch.float32 and full.shape == x.shape
    assert rel(full, x, x) <= 1e-6
    assert torch.equal(projector(mean, u, 0)(x), mean.float().expand_as(x))
    with pytest.raises(ValueError, match="k must be in"):
        projector(mean, u, D + 1)


def test_k_grid():
    assert k_grid(1) == [1]
    assert k_grid(2) == [1, 2]
    assert k_grid(8) == [1, 2, 4, 8]
    assert k_grid(200) == [1, 2, 4, 8, 16, 32, 64, 128, 200]
    assert k_grid(200, 4) == [1, 4, 16, 64, 200]
    assert k_grid(128, 4) == [1, 4, 16, 64, 128]
    assert k_grid(64, 4) == [1, 4, 16, 64]
    with pytest.raises(ValueError, match="base >= 2"):
        k_grid(8, 1)


def test_smallest_within_lower_is_better():
    ppl = {1: 200.0, 2: 105.0, 4: 101.0, 8: 99.0, 16: 100.0}
    assert smallest_within(ppl, 100.0, 0.02, higher_is_better=False) == 4
    assert smallest_within(ppl, 100.0, 0.05, higher_is_better=False) == 2  # 5% worse: within
    assert smallest_within(ppl, 100.0, 0.0, higher_is_better=False) == 8  # better: within
    assert smallest_within({1: 300.0}, 100.0, 0.5, higher_is_better=False) is None


def test_smallest_within_higher_is_better_skips_nan():
    acc = {1: float("nan"), 2: 0.5, 4: 0.89, 8: 0.9}
    assert smallest_within(acc, 0.9, 0.02, higher_is_better=True) == 4
    assert smallest_within(acc, 0.9, 0.0, higher_is_better=True) == 8
    assert relative_change(0.45, 0.9, higher_is_better=True) == pytest.approx(0.5)
    assert relative_change(0.0, 0.0, higher_is_better=True) == 0.0
    assert relative_change(0.1, 0.0, higher_is_better=False) == math.inf
    with pytest.raises(ValueError, match="reference"):
        smallest_within(acc, float("nan"), 0.02, higher_is_better=True)


def test_largest_within_sparsity():
    bleu = {0.0: 30.0, 0.5: 29.8, 0.8: 28.0, 0.9: 29.9, 0.95: 10.0}
    assert largest_within(bleu, 30.0, 0.01, higher_is_better=True) == 0.9
    assert largest_within(bleu, 30.0, 0.5, higher_is_better=True) == 0.9
    assert largest_within(bleu, 30.0, 0.7, higher_is_better=True) == 0.95


def test_log2_k_star_interpolates_where_the_change_crosses_the_tolerance():
    """Relative changes 0.3 at k=4 and 0.0 at k=8, tolerance 0.1: the crossing is 2/3 of the
    way from log2 4 to log2 8; on the grid k* = 8."""
    ppl = {1: 300.0, 2: 200.0, 4: 130.0, 8: 100.0, 16: 100.0}
    assert smallest_within(ppl, 100.0, 0.1, higher_is_better=False) == 8
    assert log2_k_star(ppl, 100.0, 0.1, higher_is_better=False) == pytest.approx(2 + 2 / 3)
    assert log2_k_star(ppl, 100.0, 2.5, higher_is_better=False) == 0.0  # k* = 1: the grid's
    assert math.isnan(log2_k_star({1: 300.0}, 100.0, 0.1, higher_is_better=False))
    assert log2_k_star({1: float("nan"), 2: 100.0}, 100.0, 0.1, False) == 1.0
    # a tolerance equal to k*'s own change lands on k* exactly
    assert log2_k_star({2: 150.0, 4: 110.0}, 100.0, 0.1, False) == pytest.approx(2.0)


def test_interpolated_s_star_between_the_last_within_and_the_next():
    """Changes 0.02 at 0.5 and 0.12 at 0.6, tolerance 0.05: 30% of the way from 0.5 to 0.6."""
    acc = {0.0: 0.9, 0.5: 0.9 * 0.98, 0.6: 0.9 * 0.88, 0.7: 0.1}
    assert largest_within(acc, 0.9, 0.05, higher_is_better=True) == 0.5
    assert interpolated_s_star(acc, 0.9, 0.05, higher_is_better=True) == pytest.approx(0.53)
    assert interpolated_s_star({0.0: 0.9, 0.9: 0.9}, 0.9, 0.05, True) == 0.9  # the largest
    assert math.isnan(interpolated_s_star({0.5: 0.1}, 0.9, 0.05, True))
