"""Benchmark analysis.similarity against the google/svcca tutorial SVCCA recipe.

Part 1 times one SVCCA pair (dims 512; tokens 2k, 10k, 50k; random and low-rank data) with
our functions and with a plain reference written below the way google/svcca computes it, and
checks that the values agree to 1e-6. Part 2 times the all-pairs pattern of a learning-dynamics
analysis (6 layers × 40 checkpoints, 20k tokens, 256 dims): every checkpoint of every layer
against the 6 final layers, and per layer every checkpoint against every checkpoint.

    python scripts/bench_similarity.py            # full run (a few minutes on 1 core)
    python scripts/bench_similarity.py --quick    # small shapes, seconds
    python scripts/bench_similarity.py --full-matrix   # also the 240 x 240 matrix

BLAS/torch run single-threaded by default (--threads), as in ../shared/NUMERICS.md §2.
"""

import argparse
import itertools
import os
import sys
import time
from pathlib import Path

parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
parser.add_argument("--quick", action="store_true", help="small shapes for a smoke run")
parser.add_argument("--threads", type=int, default=1, help="BLAS and torch threads (default 1)")
parser.add_argument(
    "--full-matrix", action="store_true", help="also time the full (layers·ckpts)² matrix"
)
args = parser.parse_args()
for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[var] = str(args.threads)  # before numpy/torch are imported

import numpy as np  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from analysis import similarity as sim  # noqa: E402

torch.set_num_threads(args.threads)
TOL = 1e-6

# --------------------------------------------------------------------------- reference


def google_svcca(
    acts1: np.ndarray, acts2: np.ndarray, variance: float = 0.99, rule: str = "s"
) -> tuple:
    """SVCCA as in google/svcca tutorial 001 + cca_core.get_cca_similarity(epsilon=1e-10).

    acts are (neurons, datapoints). The tutorial keeps the top directions by their share of
    Σs (``rule="s"``); ``rule="s2"`` keeps them by their share of Σs² (the true variance).
    Returns (mean CCA coefficient, k1, k2).
    """

    def reduce(acts):
        cacts = acts - np.mean(acts, axis=1, keepdims=True)
        _, s, v = np.linalg.svd(cacts, full_matrices=False)
        w = s if rule == "s" else s**2
        frac = np.cumsum(w) / np.sum(w)
        k = int(np.argmax(frac >= variance)) + 1  # the same rule as ours with rule=
        return np.dot(s[:k] * np.eye(k), v[:k]), k

    sv1, k1 = reduce(acts1)
    sv2, k2 = reduce(acts2)
    eps = 1e-10
    cov = np.cov(sv1, sv2)
    sxx, sxy, syy = cov[:k1, :k1], cov[:k1, k1:], cov[k1:, k1:]
    xmax, ymax = np.max(np.abs(sxx)), np.max(np.abs(syy))
    sxx, syy, sxy = sxx / xmax, syy / ymax, sxy / np.sqrt(xmax * ymax)
    sxx = sxx + eps * np.eye(k1)
    syy = syy + eps * np.eye(k2)

    def invsqrt(mat):
        w, v = np.linalg.eigh(np.linalg.pinv(mat))
        return v @ np.diag(np.sqrt(w)) @ v.T

    arr = invsqrt(sxx) @ sxy @ invsqrt(syy)
    s = np.abs(np.linalg.svd(arr, compute_uv=False))
    return float(np.mean(s)), k1, k2


# --------------------------------------------------------------------------- data


def random_pair(rng, n_tokens, dims):
    return rng.standard_normal((n_tokens, dims)), rng.standard_normal((n_tokens, dims))


def lowrank_pair(rng, n_tokens, dims, latent=32):
    """Shared latent with scales 1/i, a different mixing per view, noise 0.1, offsets."""
    z = rng.standard_normal((n_tokens, latent)) / np.arange(1, latent + 1)
    views = []
    for mean in (3.0, -1.0):
        mix = rng.standard_normal((latent, dims))
        views.append(z @ mix + 0.1 * rng.standard_normal((n_tokens, dims)) + mean)
    return views[0], views[1]


class Trajectory:
    """Synthetic checkpoints: layer reps drift from a random init to a low-rank final state."""

    def __init__(self, n_layers, n_ckpt, n_tokens, dims, rank=48, seed=0):
        rng = np.random.default_rng(seed)
        self.n_ckpt, self.dims, self.seed = n_ckpt, dims, seed
        scale = (1.0 / np.arange(1, rank + 1)).astype(np.float32)
        self.z = [
            (rng.standard_normal((n_tokens, 2 * rank), dtype=np.float32) * np.r_[scale, scale])
            for _ in range(n_layers)
        ]
        self.mix = [rng.standard_normal((2, rank, dims), dtype=np.float32) for _ in range(n_layers)]

    def __call__(self, layer, ckpt):
        w = np.float32(((ckpt + 1) / self.n_ckpt) ** 0.5)
        rng = np.random.default_rng([self.seed, layer, ckpt])
        z, (a, b) = self.z[layer], self.mix[layer]
        mix = np.concatenate(
            [w * a + 0.1 * rng.standard_normal(a.shape, dtype=np.float32), (1 - w) * b]
        )
        noise = rng.standard_normal((z.shape[0], self.dims), dtype=np.float32)
        return z @ mix + np.float32(0.05) * noise


# --------------------------------------------------------------------------- timing helpers


def best_of(reps, fn, *fn_args, **fn_kw):
    times, out = [], None
    for _ in range(reps):
        t0 = time.perf_counter()
        out = fn(*fn_args, **fn_kw)
        times.append(time.perf_counter() - t0)
    return min(times), out


def single_pairs(sizes, dims):
    print(f"\n== Part 1: one SVCCA pair, dims {dims}, 99% of Σs (google tutorial) and of Σs² ==")
    header = (
        f"{'data':8} {'rule':4} {'tokens':>7} {'k_a,k_b':>8} {'google':>8} {'ours':>8} {'x':>6} "
        f"{'ours-svd':>8} {'x':>5} {'cka':>7} {'|dv|':>8}  value"
    )
    print(header)
    ok = True
    for name, make in (("random", random_pair), ("lowrank", lowrank_pair)):
        for n_tokens, rule in itertools.product(sizes, ("s", "s2")):
            x, y = make(np.random.default_rng(n_tokens), n_tokens, dims)
            acts1, acts2 = np.ascontiguousarray(x.T), np.ascontiguousarray(y.T)
            reps = 1 if n_tokens >= 50_000 else 3
            t_ref, (ref, k1, k2) = best_of(reps, google_svcca, acts1, acts2, rule=rule)
            t_ours, res = best_of(reps, sim.svcca, x, y, rule=rule)
            t_svd, res_svd = best_of(reps, sim.svcca, x, y, rule=rule, method="svd")
            t_cka, _ = best_of(reps, sim.linear_cka, x, y)
            dv = max(abs(res.value - ref), abs(res_svd.value - ref))
            same_k = (res.k_a, res.k_b) == (k1, k2) == (res_svd.k_a, res_svd.k_b)
            ok &= dv <= TOL and same_k
            print(
                f"{name:8} {rule:4} {n_tokens:7d} {f'{res.k_a},{res.k_b}':>8} {t_ref:8.3f} "
                f"{t_ours:8.3f} {t_ref / t_ours:5.1f}x {t_svd:8.3f} {t_ref / t_svd:4.1f}x "
                f"{t_cka:7.3f} {dv:8.1e}  {res.value:.6f}{'' if same_k else ' k DIFFERS'}"
            )
    print(f"values agree with the reference to {TOL:g} and k matches: {'yes' if ok else 'NO'}")
    return ok


class ConsumeOnce:
    """A sequence whose items are dropped once read, so pairwise() holds the only copy."""

    def __init__(self, items):
        self.items = items

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        item, self.items[i] = self.items[i], None
        return item


def all_pairs(n_layers, n_ckpt, n_tokens, dims, n_ref, full_matrix):
    print(
        f"\n== Part 2: all pairs, {n_layers} layers x {n_ckpt} checkpoints, {n_tokens} tokens, "
        f"{dims} dims, SVCCA 99% of s² =="
    )
    traj = Trajectory(n_layers, n_ckpt, n_tokens, dims)
    last = n_ckpt - 1
    t_basis = 0.0
    bases = []  # bases[layer * n_ckpt + ckpt], each computed once
    for layer in range(n_layers):
        for ckpt in range(n_ckpt):
            x = traj(layer, ckpt)  # data generation is not timed
            t0 = time.perf_counter()
            bases.append(sim.basis(x, variance=0.99))
            t_basis += time.perf_counter() - t0
    finals = [bases[layer * n_ckpt + last] for layer in range(n_layers)]
    ks = [b.k for b in bases]
    t0 = time.perf_counter()
    vs_final = sim.pairwise(bases, finals, "svcca").reshape(n_layers, n_ckpt, n_layers)
    t_vs_final = time.perf_counter() - t0
    t0 = time.perf_counter()
    within = np.stack(
        [
            sim.pairwise(bases[lay * n_ckpt : (lay + 1) * n_ckpt], None, "svcca")
            for lay in range(n_layers)
        ]
    )
    t_within = time.perf_counter() - t0
    n_reps = n_layers * n_ckpt
    n_final_pairs = n_reps * n_layers
    n_within_pairs = n_layers * n_ckpt * (n_ckpt + 1) // 2
    n_pairs = n_final_pairs + n_within_pairs
    total = t_basis + t_vs_final + t_within
    print(
        f"kept dims k per representation: min {min(ks)}, median {int(np.median(ks))}, max {max(ks)}"
    )
    print(
        f"bases: {n_reps} x basis()               {t_basis:7.2f} s  "
        f"({1e3 * t_basis / n_reps:.1f} ms each)"
    )
    print(
        f"all reps vs the {n_layers} finals: {n_final_pairs} pairs  {t_vs_final:7.2f} s  "
        f"({1e3 * t_vs_final / n_final_pairs:.2f} ms/pair)"
    )
    print(
        f"per layer ckpt x ckpt: {n_within_pairs} pairs    {t_within:7.2f} s  "
        f"({1e3 * t_within / n_within_pairs:.2f} ms/pair, symmetric half)"
    )
    print(
        f"total {n_pairs} pairs: {total:.2f} s = {1e3 * total / n_pairs:.2f} ms per pair "
        f"including the bases"
    )

    # reference: a few pairs (layer, ckpt) vs the same layer at the final checkpoint
    picks = [(0, 0), (n_layers // 2, n_ckpt // 2), (n_layers - 1, n_ckpt - 2)][:n_ref]
    ref_times, ok = [], True
    for layer, ckpt in picks:
        a1 = np.ascontiguousarray(traj(layer, ckpt).T, dtype=np.float64)
        a2 = np.ascontiguousarray(traj(layer, last).T, dtype=np.float64)
        t0 = time.perf_counter()
        ref, _, _ = google_svcca(a1, a2, rule="s2")
        ref_times.append(time.perf_counter() - t0)
        ours = vs_final[layer, ckpt, layer]
        dv = max(abs(ref - ours), abs(ref - within[layer, ckpt, last]))
        ok &= dv <= TOL
        print(
            f"check layer {layer} ckpt {ckpt} vs final: google {ref:.8f}  ours {ours:.8f}  "
            f"|dv| {dv:.1e}  ({ref_times[-1]:.2f} s)"
        )
    ref_pair = float(np.median(ref_times))
    print(
        f"google recipe: {ref_pair:.3f} s per pair (median of {len(ref_times)}) -> "
        f"{ref_pair * n_pairs / 60:.0f} min for these {n_pairs} pairs"
    )
    print(
        f"speed-up per pair (amortised, bases included): {ref_pair / (total / n_pairs):.0f}x; "
        f"marginal pair cost only: {ref_pair / ((t_vs_final + t_within) / n_pairs):.0f}x"
    )
    print(f"values agree with the reference to {TOL:g}: {'yes' if ok else 'NO'}")
    if full_matrix:
        del finals
        t0 = time.perf_counter()
        full = sim.pairwise(ConsumeOnce(bases), None, "svcca")
        t_full = time.perf_counter() - t0
        n_full = n_reps * (n_reps + 1) // 2
        same = np.abs(full[:n_ckpt, :n_ckpt] - within[0]).max()
        print(
            f"full {n_reps}x{n_reps} matrix (symmetric, {n_full} pairs): {t_full:.2f} s "
            f"({1e3 * t_full / n_full:.2f} ms/pair) + the bases above; "
            f"max |diff| vs per-layer blocks {same:.1e}"
        )
    return ok, total


def main() -> int:
    print(
        f"numpy {np.__version__}, torch {torch.__version__}, threads {args.threads}, "
        f"cpus {os.cpu_count()}, load average {os.getloadavg()[0]:.2f} at start"
    )
    t_start = time.perf_counter()
    if args.quick:
        ok1 = single_pairs([2000, 5000], 128)
        ok2, total = all_pairs(3, 8, 5000, 64, 2, args.full_matrix)
    else:
        ok1 = single_pairs([2000, 10_000, 50_000], 512)
        ok2, total = all_pairs(6, 40, 20_000, 256, 3, args.full_matrix)
    print(
        f"\nall-pairs time {total:.1f} s (target <= 120 s); whole benchmark "
        f"{time.perf_counter() - t_start:.0f} s; load average {os.getloadavg()[0]:.2f} at end"
    )
    return 0 if ok1 and ok2 else 1


if __name__ == "__main__":
    sys.exit(main())
