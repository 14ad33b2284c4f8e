"""Benchmark analysis.similarity against the google/svcca tutorial SVCCA recipe.

Part 0 times one 512 × tokens × 512 float64 product in each BLAS of this process (numpy's,
scipy's, torch's): the floor of a pair, and how far apart the libraries are on this machine.

Part 1 (P1) times one SVCCA pair, 512 units, 50k tokens, random and low-rank data, for both
"keep 99 %" rules: of Σs (the google tutorial's) and of Σs² (the true variance), each against
google's recipe with the same rule (centre, SVD, keep, ``get_cca_similarity(epsilon=1e-10)``,
mean coefficient). Ours is timed three ways: end to end from the two arrays (``svcca``); per
pair with cached bases (``similarity(basis_x, basis_y)``, what a pair costs once each
representation's basis exists; the bases are timed apart); the same with float32 products. Values
must agree with google's to 1e-6 with the same k.

Part 2 (P2) times the all-pairs pattern of a learning-dynamics analysis on realistic layers
(200 units whose 99 % of variance needs 150-200 directions, float32, 5000 tokens like the
default config): per layer every checkpoint against every checkpoint, and every checkpoint
against the final layers, for every registered metric; pairs/s per metric.

Part 3 (P3) times one pair under the default analysis' metrics (svcca, svcca k20/k50, pwcca,
cka, cka_debiased, procrustes, rsa) with its permutation null, as the analysis runs it: each
metric alone (its own U_aᵀU_b per comparison and per permutation) against ``compare_many`` and
``permuted_many`` (one product per pair or permutation, sliced per metric); values must agree
to 1e-12.

google's code is imported from --google-svcca DIR (a checkout of github.com/google/svcca;
never copied here); without it the reference is the re-implementation below, written from
its documented steps. Ratios are measured side by side in one run; the load average
(os.getloadavg, 1 min) is printed with every row, as the machine may be shared.

    python scripts/bench_similarity.py --google-svcca ~/svcca   # full run (~10 min, 1 core)
    python scripts/bench_similarity.py --quick                  # small shapes, ~30 s

BLAS/torch run single-threaded by default (--threads): one thread per process is what the
pipeline runs with.
"""

import argparse
import os
import sys
import time
from pathlib import Path

parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
parser.add_argument("--quick", action="store_true", help="small shapes for a smoke run")
parser.add_argument("--threads", type=int, default=1, help="BLAS and torch threads (default 1)")
parser.add_argument("--google-svcca", type=Path, help="directory holding google/svcca cca_core.py")
parser.add_argument("--skip-p1", action="store_true", help="only Part 0 and Part 2")
parser.add_argument("--skip-p2", action="store_true", help="only Part 0 and Part 1")
parser.add_argument("--only-p3", action="store_true", help="only Part 3 (shared products)")
args = parser.parse_args()
for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[var] = str(args.threads)  # before numpy/torch are imported

import numpy as np  # noqa: E402
import scipy  # noqa: E402
import scipy.linalg.blas  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from analysis import similarity as sim  # noqa: E402

torch.set_num_threads(args.threads)
TOL = 1e-6


def load() -> str:
    return f"{os.getloadavg()[0]:.2f}"


# --------------------------------------------------------------------------- reference


def _reference_cca(sv1: np.ndarray, sv2: np.ndarray, epsilon: float) -> np.ndarray:
    """Canonical correlations the way google/svcca's get_cca_similarity computes them
    (written from its steps: np.cov of both, each block scaled by its largest entry, small
    diagonal entries dropped, epsilon on the diagonal, pinv, eigh square roots, full SVD)."""
    n1 = sv1.shape[0]
    cov = np.cov(sv1, sv2)
    sxx, sxy, syy = cov[:n1, :n1], cov[:n1, n1:], cov[n1:, n1:]
    xmax, ymax = np.max(np.abs(sxx)), np.max(np.abs(syy))
    sxx, syy, sxy = sxx / xmax, syy / ymax, sxy / np.sqrt(xmax * ymax)
    keep_x, keep_y = np.abs(np.diag(sxx)) >= epsilon, np.abs(np.diag(syy)) >= epsilon
    sxx, syy = sxx[keep_x][:, keep_x], syy[keep_y][:, keep_y]
    sxy = sxy[keep_x][:, keep_y]
    sxx = sxx + epsilon * np.eye(len(sxx))
    syy = syy + epsilon * np.eye(len(syy))

    def inv_sqrt(mat):
        w, v = np.linalg.eigh(np.linalg.pinv(mat))
        return v @ np.diag(np.sqrt(w)) @ v.T

    _, s, _ = np.linalg.svd(inv_sqrt(sxx) @ sxy @ inv_sqrt(syy))
    return np.abs(s)


def load_google(path: Path | None):
    """google/svcca's get_cca_similarity from ``path`` (or None)."""
    if path is None:
        return None
    sys.path.insert(0, str(path))
    import cca_core  # noqa: PLC0415

    return cca_core.get_cca_similarity


GOOGLE = load_google(args.google_svcca)


def google_svcca(
    acts1: np.ndarray, acts2: np.ndarray, rule: str, variance: float = 0.99, svd=np.linalg.svd
):
    """SVCCA as in google/svcca tutorial 001: centre each neuron, SVD of the (neurons,
    datapoints) array, keep the top directions by their share of Σs (``rule="s"``, as the
    tutorial) or Σs² (``rule="s2"``), then get_cca_similarity(epsilon=1e-10) and the mean
    coefficient. ``svd=scipy.linalg.svd`` runs the SVD step (most of the time) in scipy's
    BLAS instead of numpy's. Returns (value, k1, k2)."""

    def reduce(acts):
        cacts = acts - np.mean(acts, axis=1, keepdims=True)
        _, s, v = svd(cacts, full_matrices=False)
        w = s if rule == "s" else s**2
        k = int(np.argmax(np.cumsum(w) / np.sum(w) >= variance)) + 1
        return np.dot(s[:k] * np.eye(k), v[:k]), k

    sv1, k1 = reduce(acts1)
    sv2, k2 = reduce(acts2)
    if GOOGLE is not None:
        rhos = GOOGLE(sv1, sv2, epsilon=1e-10, verbose=False)["cca_coef1"]
    else:
        rhos = _reference_cca(sv1, sv2, 1e-10)
    return float(np.mean(rhos)), k1, k2


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


class Layers:
    """Synthetic checkpoints of realistic layers (float32): per layer a latent Z with a slowly
    decaying spectrum i^-0.5, mixed by w·A + (1 - w)·B_ckpt (w grows to 1 at the final
    checkpoint), plus noise. 99 % of Σs² needs ~175-190 of 200 directions."""

    def __init__(self, n_layers, n_ckpt, n_tokens, dims, seed=0):
        rng = np.random.default_rng(seed)
        self.n_ckpt, self.dims, self.seed = n_ckpt, dims, seed
        scale = np.arange(1, dims + 1, dtype=np.float32) ** -0.5
        self.z = [
            rng.standard_normal((n_tokens, dims), dtype=np.float32) * scale for _ in range(n_layers)
        ]
        self.final = [
            rng.standard_normal((dims, dims), dtype=np.float32) / np.sqrt(dims)
            for _ in range(n_layers)
        ]

    def __call__(self, layer, ckpt):
        w = np.float32(((ckpt + 1) / self.n_ckpt) ** 0.5)
        rng = np.random.default_rng([self.seed, layer, ckpt])
        other = rng.standard_normal((self.dims, self.dims), dtype=np.float32)
        mix = w * self.final[layer] + (1 - w) * other / np.float32(np.sqrt(self.dims))
        noise = rng.standard_normal((self.z[layer].shape[0], self.dims), dtype=np.float32)
        return self.z[layer] @ mix + np.float32(0.05) * noise


# --------------------------------------------------------------------------- timing helpers


def best_of(reps, fn, *fn_args, **fn_kw):
    times, out = [], None
    for _ in range(reps):
        t0 = time.perf_counter()
        out = fn(*fn_args, **fn_kw)
        times.append(time.perf_counter() - t0)
    return min(times), out


def blas_floor(n_tokens, dims):
    print(
        f"\n== Part 0: one {dims} x {n_tokens} x {dims} product per BLAS (min of 2), load {load()}"
    )
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((n_tokens, dims)), rng.standard_normal((n_tokens, dims))
    ta, tb = torch.from_numpy(a), torch.from_numpy(b)
    a32, b32 = ta.float(), tb.float()
    rows = [
        ("numpy float64 aᵀb (numpy's BLAS)", lambda: np.matmul(a.T, b)),
        ("numpy float64 aᵀa (syrk)", lambda: np.matmul(a.T, a)),
        ("scipy float64 dsyrk aᵀa", lambda: scipy.linalg.blas.dsyrk(1.0, a.T)),
        ("torch float64 aᵀb (MKL)", lambda: torch.mm(ta.T, tb)),
        ("torch float32 aᵀb (MKL)", lambda: torch.mm(a32.T, b32)),
    ]
    floors = {}
    for name, fn in rows:
        t, _ = best_of(2, fn)
        floors[name] = t
        print(f"  {name:36} {t:7.3f} s   load {load()}")
    blas = np.__config__.CONFIG["Build Dependencies"]["blas"]
    print(
        f"  numpy {np.__version__} BLAS {blas.get('name')} {blas.get('version')}; scipy "
        f"{scipy.__version__}; torch {torch.__version__}"
    )
    return floors


# --------------------------------------------------------------------------- P1


def single_pairs(n_tokens, dims, reps):
    print(
        f"\n== Part 1: one SVCCA pair, {dims} units, {n_tokens} tokens, 1 thread; google: "
        f"{f'google/svcca cca_core ({args.google_svcca})' if GOOGLE else 're-implementation'}"
    )
    print(
        "  e2e: svcca(x, y) from the arrays; pair: similarity(basis_x, basis_y, 'svcca') with "
        "the bases cached (computed once per representation: 'bases' column, both sides);\n"
        "  pair32: the same with products='float32' (casts both bases per call). "
        "x = google / ours;\n  g-scipy: google's recipe with its SVD step in scipy's BLAS "
        "instead of numpy's (see Part 0), xs = g-scipy / ours."
    )
    header = (
        f"  {'data':7} {'rule':4} {'k_a,k_b':>8} {'google':>7} {'g-scipy':>7} {'e2e':>6} "
        f"{'x':>6} {'xs':>6} {'pair':>6} {'x':>6} {'xs':>6} {'pair32':>6} {'x':>6} {'xs':>6} "
        f"{'bases':>6} {'max|dv|':>8} {'value':>9} load"
    )
    print(header)
    ok, ratios = True, {}
    for name, make in (("random", random_pair), ("lowrank", lowrank_pair)):
        x, y = make(np.random.default_rng(n_tokens), n_tokens, dims)
        acts1, acts2 = np.ascontiguousarray(x.T), np.ascontiguousarray(y.T)
        t_bases, (bx, by) = best_of(1, lambda x=x, y=y: (sim.basis(x), sim.basis(y)))
        for rule in ("s", "s2"):
            t_ref, (ref, k1, k2) = best_of(1, google_svcca, acts1, acts2, rule)
            t_sci, (ref_sci, _, _) = best_of(
                1, google_svcca, acts1, acts2, rule, svd=scipy.linalg.svd
            )
            t_e2e, res = best_of(reps, sim.svcca, x, y, rule=rule)
            t_pair, p64 = best_of(reps, sim.similarity, bx, by, "svcca", rule=rule)
            t_p32, p32 = best_of(
                reps, sim.similarity, bx, by, "svcca", rule=rule, products="float32"
            )
            dv = max([abs(r.value - ref) for r in (res, p64, p32)] + [abs(ref_sci - ref)])
            same_k = all((r.k_a, r.k_b) == (k1, k2) for r in (res, p64, p32))
            ok &= dv <= TOL and same_k
            ratios[(name, rule)] = (t_ref / t_e2e, t_ref / t_pair, t_ref / t_p32)
            print(
                f"  {name:7} {rule:4} {f'{k1},{k2}':>8} {t_ref:7.2f} {t_sci:7.2f} {t_e2e:6.3f} "
                f"{t_ref / t_e2e:5.1f}x {t_sci / t_e2e:5.1f}x {t_pair:6.3f} "
                f"{t_ref / t_pair:5.1f}x {t_sci / t_pair:5.1f}x {t_p32:6.3f} "
                f"{t_ref / t_p32:5.1f}x {t_sci / t_p32:5.1f}x {t_bases:6.2f} {dv:8.1e} "
                f"{res.value:9.6f} {load()}{'' if same_k else '  k DIFFERS'}"
            )
    print(f"  values agree with google to {TOL:g} and k matches: {'yes' if ok else 'NO'}")
    return ok, ratios


# --------------------------------------------------------------------------- P2


def all_pairs(n_layers, n_ckpt, n_tokens, dims, n_ref):
    print(
        f"\n== Part 2: all pairs, {n_layers} layers x {n_ckpt} checkpoints, {n_tokens} tokens, "
        f"{dims} units (float32), every metric; load {load()}"
    )
    layers = Layers(n_layers, n_ckpt, n_tokens, dims)
    last = n_ckpt - 1
    arrays = [layers(lay, c) for lay in range(n_layers) for c in range(n_ckpt)]
    t0 = time.perf_counter()
    bases = [sim.basis(x) for x in arrays]  # full rank: every basis metric and truncation
    t_basis = time.perf_counter() - t0
    ks = [sim.n_keep(b.s, 0.99, "s2") for b in bases]
    ks_s = [sim.n_keep(b.s, 0.99, "s") for b in bases]
    print(
        f"  kept dims for 99% of Σs²: min {min(ks)}, median {int(np.median(ks))}, max {max(ks)} "
        f"(of Σs: median {int(np.median(ks_s))}); rank {min(b.rank for b in bases)}-"
        f"{max(b.rank for b in bases)}"
    )
    n_reps = len(bases)
    print(f"  bases: {n_reps} x basis() {t_basis:6.2f} s ({1e3 * t_basis / n_reps:.1f} ms each)")
    n_within = n_layers * n_ckpt * (n_ckpt + 1) // 2
    n_final = n_reps * n_layers
    print(
        f"  pairs per metric: {n_within} within layers (ckpt x ckpt, symmetric half) + {n_final} "
        f"vs the {n_layers} final layers = {n_within + n_final}"
    )
    print(
        f"  {'metric':28} {'within s':>9} {'finals s':>9} {'pairs/s':>9} {'cache ms/rep':>13} load"
    )
    runs = [
        (m, {})
        for m in (
            "cca",
            "svcca",
            "pwcca",
            "cka",
            "cka_debiased",
            "procrustes",
            "procrustes_angular",
            "mutual_knn",
            "rsa",
        )
    ]
    runs.insert(2, ("svcca", {"products": "float32"}))
    out = {}
    for metric, kw in runs:
        raw = metric in ("mutual_knn", "rsa")  # their caches come from the rows
        reps = arrays if raw else bases
        finals = [reps[lay * n_ckpt + last] for lay in range(n_layers)]
        t0 = time.perf_counter()
        within = [
            sim.pairwise(reps[lay * n_ckpt : (lay + 1) * n_ckpt], None, metric, **kw)
            for lay in range(n_layers)
        ]
        t_within = time.perf_counter() - t0
        t0 = time.perf_counter()
        vs_final = sim.pairwise(reps, finals, metric, **kw)
        t_final = time.perf_counter() - t0
        cache = ""
        if raw:  # cache build alone (inside the timings above: once per rep per call)
            t_c, _ = best_of(1, lambda f=finals, m=metric, k=kw: [sim.prepare(x, m, "x", **k)
                                                                 for x in f])
            cache = f"{1e3 * t_c / len(finals):.0f}"
        label = metric + (" (products=float32)" if kw else "")
        rate = (n_within + n_final) / (t_within + t_final)
        print(f"  {label:28} {t_within:9.2f} {t_final:9.2f} {rate:9.0f} {cache:>13} {load()}")
        out[label] = (within, vs_final.reshape(n_layers, n_ckpt, n_layers), rate)
    ok = True
    w64, f64 = out["svcca"][0], out["svcca"][1]
    w32 = out["svcca (products=float32)"][0]
    d32 = max(float(np.max(np.abs(a - b))) for a, b in zip(w64, w32, strict=True))
    ok &= d32 <= TOL
    print(f"  svcca float32 products vs float64: max |dv| {d32:.1e}")
    picks = [(0, 0), (n_layers // 2, n_ckpt // 2), (n_layers - 1, n_ckpt - 2)][:n_ref]
    for layer, ckpt in picks:
        a1 = np.ascontiguousarray(arrays[layer * n_ckpt + ckpt].T, dtype=np.float64)
        a2 = np.ascontiguousarray(arrays[layer * n_ckpt + last].T, dtype=np.float64)
        t0 = time.perf_counter()
        ref, _, _ = google_svcca(a1, a2, "s2")
        t_ref = time.perf_counter() - t0
        ours = f64[layer, ckpt, layer]
        dv = max(abs(ref - ours), abs(ref - w64[layer][ckpt, last]))
        ok &= dv <= TOL
        print(
            f"  check layer {layer} ckpt {ckpt} vs final: google {ref:.8f} ours {ours:.8f} "
            f"|dv| {dv:.1e} (google {t_ref:.2f} s per pair)"
        )
    print(f"  values agree with google to {TOL:g}: {'yes' if ok else 'NO'}")
    return ok


def shared_products(n_tokens, dims, n_perm, reps):
    print(
        f"\n== Part 3: one pair, {n_tokens} tokens, {dims} units, the default metrics, "
        f"{n_perm} permutations; load {load()}"
    )
    layers = Layers(1, 4, n_tokens, dims)
    ba, bb = sim.basis(layers(0, 1)), sim.basis(layers(0, 3))
    specs = [("svcca", {}), ("svcca", {"k": 20}), ("svcca", {"k": 50}), ("pwcca", {}),
             ("cka", {}), ("cka_debiased", {}), ("procrustes", {}), ("rsa", {"max_rows": 1000})]
    pairs = [(sim.prepare(ba, m, **kw), sim.prepare(bb, m, **kw)) for m, kw in specs]

    def alone():
        return ([sim.compare_many([p])[0].value for p in pairs],
                [sim.permuted_many([p], n_perm, 0)[0] for p in pairs])

    def shared():
        return ([r.value for r in sim.compare_many(pairs)], sim.permuted_many(pairs, n_perm, 0))

    t_alone, (v_alone, n_alone) = best_of(reps, alone)
    t_shared, (v_shared, n_shared) = best_of(reps, shared)
    ok = np.allclose(v_alone, v_shared, rtol=0, atol=1e-12) and all(
        np.allclose(a, b, rtol=0, atol=1e-12) for a, b in zip(n_alone, n_shared, strict=True))
    print(f"  each metric alone {t_alone:6.2f} s, shared products {t_shared:6.2f} s: "
          f"{t_alone / t_shared:.2f}x; values agree to 1e-12: {'yes' if ok else 'NO'}; "
          f"load {load()}")
    return ok


# Arguments of each part for --quick and the full run: Part 0 and P1 (tokens, dims[, repeats]),
# P2 (layers, checkpoints, tokens, dims, references) and P3 (tokens, dims, permutations,
# repeats; --only-p3 repeats twice).
SIZES = {
    "quick": dict(p1=(5000, 128, 2), p2=(2, 6, 1500, 64, 2), p3=(1500, 64, 10, 2)),
    "full": dict(p1=(50_000, 512, 3), p2=(3, 16, 5000, 200, 3), p3=(5000, 200, 10, 3)),
}


def main() -> int:
    print(
        f"numpy {np.__version__}, torch {torch.__version__}, threads {args.threads}, "
        f"cpus {os.cpu_count()}, load average {os.getloadavg()} at start"
    )
    t_start = time.perf_counter()
    ok = True
    size = SIZES["quick" if args.quick else "full"]
    if args.only_p3:
        ok &= shared_products(*size["p3"][:3], 2)
    else:
        blas_floor(*size["p1"][:2])
        if not args.skip_p1:
            ok &= single_pairs(*size["p1"])[0]
        if not args.skip_p2:
            ok &= all_pairs(*size["p2"])
        ok &= shared_products(*size["p3"])
    print(
        f"\nwhole benchmark {time.perf_counter() - t_start:.0f} s; load average "
        f"{os.getloadavg()} at end; all values agree: {'yes' if ok else 'NO'}"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
