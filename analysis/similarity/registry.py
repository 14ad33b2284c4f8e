"""The metric registry (:class:`Measure`, :func:`register`, :func:`metrics`) and what runs any
registered metric by name: :func:`similarity`, :func:`pairwise` (one product per block of
pairs), :func:`prepare` / :func:`compare_many` and the permutation nulls (:func:`permuted_many`).
The metrics register themselves from their family modules; this module imports none of them."""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

from analysis.similarity.bases import (
    BLOCK_BYTES,
    DEFAULT_RTOL,
    PRODUCTS,
    Array,
    Basis,
    SimilarityResult,
    Undefined,
    check_min_tokens,
    cross_product,
    get_basis,
    mm,
    mm32,
    no_variance_error,
    tokens_dims,
)
from analysis.similarity.repeats import check_distinct


@dataclass(frozen=True, eq=False)
class BasisCache:
    """Cache of the basis metrics: a Basis and the number of its directions the metric uses."""

    basis: Basis
    k: int

    @property
    def n_tokens(self) -> int:
        return self.basis.n_tokens

    @property
    def n_perm(self) -> int:
        return self.basis.n_tokens

    def permuted(self, perm: np.ndarray) -> BasisCache:
        """Basis of x[perm]: its token-space directions with their rows permuted."""
        p = torch.from_numpy(perm).to(self.basis.device)
        return dataclasses.replace(self, basis=dataclasses.replace(self.basis, u=self.basis.u[p]))


@dataclass(frozen=True, eq=False)
class _Dead:
    """Placeholder cache of a representation the metric is undefined for."""

    reason: str
    n_tokens: int


@dataclass(frozen=True)
class Measure:
    """A registered metric: what it caches per representation and how it compares two caches.

    ``prepare(x, opts, name)`` builds one representation's cache (once per :func:`pairwise`
    or :func:`shuffled_baseline` call); ``compare(cache_a, cache_b, opts, m)`` returns a
    :class:`SimilarityResult`. Caches have ``n_tokens``, ``n_perm`` (rows a shuffle permutes)
    and ``permuted(perm)`` (the cache of x[perm], cheap). With ``uses_bases`` the caches are
    bases and ``m`` is U_aᵀU_b, taken from one product per block of pairs. ``options`` are
    the keywords the metric takes, with defaults.

    What every reader of a metric needs to know of it is here too: its ``label`` and display
    ``order`` (figures), ``kind`` (a similarity, or a distance the claims do not read),
    whether it is ``symmetric``, the transformations of one side it is ``invariant`` to by
    definition (S4 checks them), and ``truncation(opts)``: how a result names the directions
    it used ("full", the numerical "rank", a variance share or a fixed k). ``rank_limited``:
    the value goes to 1 once the directions it keeps reach the rank (the CCA family), so a
    representation is refused when tokens - 1, or its distinct rows - 1 (an embedding's
    rows repeat per word type), are not more than the directions kept.
    """

    name: str
    prepare: Callable[[Array | Basis, dict, str], object]
    compare: Callable[..., SimilarityResult]
    options: Mapping[str, object]
    label: str
    order: int
    kind: Literal["similarity", "distance"] = "similarity"
    symmetric: bool = True
    uses_bases: bool = False
    invariant: frozenset[str] = frozenset()
    truncation: Callable[[Mapping[str, object]], str] = lambda opts: "full"
    rank_limited: bool = False


# the transformations of one side a metric can be invariant to (Measure.invariant)
ROTATION, ISOTROPIC_SCALING = "rotation", "isotropic_scaling"
SHAPE = frozenset({ROTATION, ISOTROPIC_SCALING})


_REGISTRY: dict[str, Measure] = {}
_ALIASES = {"linear_cka": "cka"}


def register(measure: Measure) -> Measure:
    """Add a metric to those :func:`pairwise`, :func:`shuffled_baseline` and
    :func:`similarity` accept by name."""
    _REGISTRY[measure.name] = measure
    return measure


def metrics() -> tuple[str, ...]:
    """The registered metric names (plus aliases)."""
    return tuple(sorted(_REGISTRY)) + tuple(_ALIASES)


def measure(metric: str) -> Measure:
    """The registry entry of a metric (or alias); an unknown name lists the known ones."""
    name = _ALIASES.get(metric, metric)
    if name not in _REGISTRY:
        raise ValueError(f"metric must be one of {metrics()}, got {metric!r}")
    return _REGISTRY[name]


def _basis_prepare(check: Callable[[int, int, dict, str], None], rows_of: str | None = None):
    """prepare() of a basis metric: token checks, then the (reused or new) basis; with
    ``rows_of`` (a rank-limited metric's name) the distinct-row guard on it."""

    def prepare(x: Array | Basis, opts: dict, name: str) -> BasisCache:
        n, d = tokens_dims(x, name)
        check(n, d, opts)
        b, kk = get_basis(
            x,
            opts.get("variance"),
            opts.get("rule", "s2"),
            opts.get("k"),
            opts["rtol"],
            opts["method"],
            name,
        )
        if b.rank == 0:
            raise no_variance_error(name, n)
        if rows_of is not None:
            check_distinct(b.n_distinct, n, d, opts.get("k"), rows_of, name,
                           bool(opts.get("allow_underdetermined")))
        return BasisCache(b, kk)

    return prepare


def min_tokens_check(metric: str):
    def check(n: int, d: int, opts: dict) -> None:
        check_min_tokens(n, metric, bool(opts.get("debiased")))

    return check


def cache_cross(ca: BasisCache, cb: BasisCache, opts: dict) -> torch.Tensor:
    return cross_product(ca.basis.u[:, : ca.k], cb.basis.u[:, : cb.k], opts["products"])


BASIS_OPTIONS = {"rtol": DEFAULT_RTOL, "method": "auto", "products": "float64"}


def basis_measure(
    name: str,
    check: Callable[[str], Callable[[int, int, dict], None]],
    compare: Callable[..., SimilarityResult],
    options: Mapping[str, object],
    **kw,
) -> Measure:
    """The entry of a basis metric: ``check(name)`` (its token check) before the (reused or new)
    basis, ``compare`` on two :class:`BasisCache`; ``kw``: the other :class:`Measure` fields
    (``rank_limited=True`` adds the distinct-row guard)."""
    guard = name if kw.get("rank_limited") else None
    return Measure(name, _basis_prepare(check(name), guard), compare, options, uses_bases=True,
                   **kw)


def _resolve(metric: str, kw: Mapping) -> tuple[Measure, dict]:
    """The registry entry of ``metric`` and its options (defaults updated by ``kw``)."""
    entry = measure(metric)
    name = entry.name
    opts = dict(entry.options)
    known = {key for m in _REGISTRY.values() for key in m.options}
    unknown = sorted(set(kw) - known)
    if unknown:
        raise TypeError(f"unexpected keyword(s) for {name}: {unknown}")
    for key, value in kw.items():
        if key not in opts:
            raise ValueError(f"{key}= does not apply to {name} (it takes {sorted(opts)})")
        opts[key] = value
    if opts.get("products", "float64") not in PRODUCTS:
        raise ValueError(f"products must be one of {PRODUCTS}, got {opts['products']!r}")
    if opts.get("compat", "paper") != "paper":
        raise ValueError("compat='google' has no basis reuse; call pwcca(a, b, compat='google')")
    if name == "cka_debiased" and not opts["debiased"]:
        raise ValueError("cka_debiased is debiased; use metric='cka' for biased CKA")
    return entry, opts


def _cache(measure: Measure, x: Array | Basis, opts: dict, name: str):
    """One representation's cache, or _Dead (with the reason) where the metric is undefined."""
    try:
        return measure.prepare(x, opts, name)
    except Undefined as err:
        return _Dead(str(err), tokens_dims(x, name)[0])


def similarity(a: Array | Basis, b: Array | Basis, metric: str = "svcca", **kw):
    """One pair through the registry (the same numbers as :func:`pairwise`); raises where the
    metric is undefined for a or b. ``kw``: the metric's options (see :func:`pairwise`)."""
    measure, opts = _resolve(metric, kw)
    (na, _), (nb, _) = tokens_dims(a, "a"), tokens_dims(b, "b")
    if na != nb:
        raise ValueError(
            f"a has {na} tokens and b has {nb}: both must hold the same tokens in the same order"
        )
    ca, cb = measure.prepare(a, opts, "a"), measure.prepare(b, opts, "b")
    if measure.uses_bases and ca.basis.device != cb.basis.device:
        raise ValueError(f"a is on {ca.basis.device} and b on {cb.basis.device}; use one device")
    return measure.compare(ca, cb, opts, None)


# --------------------------------------------------------------------------- all pairs


def _blocks(
    bases: list[Basis],
    ks: list[int],
    index: list[int] | None = None,
    float32: bool = False,
) -> list[tuple[torch.Tensor, list[tuple]]]:
    """Concatenate the used columns of many bases into a few wide blocks (one gemm per row),
    in float32 with ``float32``. Members are (index[j], column offset, k)."""
    index = list(range(len(bases))) if index is None else index
    out, cols, members, nbytes = [], [], [], 0
    for j, b, kb in zip(index, bases, ks, strict=True):
        size = b.u.shape[0] * kb * 8
        if cols and nbytes + size > BLOCK_BYTES:
            out.append(_cat(cols, members))
            cols, members, nbytes = [], [], 0
        cols.append(b.u[:, :kb].float() if float32 else b.u[:, :kb])
        members.append((j, kb))
        nbytes += size
    if cols:
        out.append(_cat(cols, members))
    return out


def _cat(cols: list[torch.Tensor], members: list[tuple]) -> tuple[torch.Tensor, list[tuple]]:
    offsets = np.concatenate([[0], np.cumsum([kb for _, kb in members])])
    block = torch.cat(cols, dim=1)
    return block, [(j, int(o), kb) for (j, kb), o in zip(members, offsets[:-1], strict=True)]


def pairwise(
    reps_a: Sequence[Array | Basis],
    reps_b: Sequence[Array | Basis] | None = None,
    metric: str = "svcca",
    *,
    return_results: bool = False,
    **kw,
) -> np.ndarray:
    """All-pairs similarity matrix of shape (len(reps_a), len(reps_b)).

    One cache per representation (:class:`Measure`), then one cheap comparison per pair. For
    the basis metrics (cca, svcca, pwcca, cka, cka_debiased, procrustes, procrustes_angular)
    the cache is a :class:`Basis` and a pair costs one k_a × k_b block of a product
    U_aᵀ[U_b1 U_b2 ...] (SVCCA: its singular values are the canonical correlations; CKA
    ‖S_a U_aᵀU_b S_b‖_F with cached self terms; Procrustes the nuclear norm of S_a U_aᵀU_b
    S_b); mutual_knn caches each row's neighbours, rsa the ranked RDM. ``reps_b=None`` or
    ``reps_b is reps_a`` is the symmetric case (each pair once, except for the asymmetric
    PWCCA). The caches of ``reps_b`` are held (bases: about tokens × Σk × 8 bytes; Basis
    objects passed in are copied once more); ``reps_a`` is walked once, so it may be a lazy
    sequence (e.g. loading from disk).

    ``metric`` and its keywords (defaults):

    - ``cca``: rtol=None, method="auto", products="float64", allow_underdetermined=False
    - ``svcca``: as cca, plus variance=0.99, rule="s2", k=None
    - ``pwcca``: as cca, plus variance=None, rule="s2", k=None (compat="paper" only)
    - ``cka`` (alias ``linear_cka``): rtol, method, products, debiased=False;
      ``cka_debiased``: the same with debiased=True
    - ``procrustes`` (similarity), ``procrustes_angular`` (a distance): rtol, method, products
    - ``mutual_knn``: k=10 (neighbours)
    - ``rsa``: max_rows=2000, sample_seed=0

    ``products="float32"`` computes the U_aᵀU_b blocks from float32 copies of the bases,
    accumulated in float64 over token chunks: about 2× faster and half the memory, values
    within ~1e-7 (see :func:`cross_product`); bases, ranks and everything else stay float64.

    ``return_results=True`` returns an object array of :class:`SimilarityResult` (with k_a,
    k_b, ranks, rtols, reason) instead of the values. A representation the metric is
    undefined for (no variance, a zero row for mutual_knn) gives NaN cells with the reason,
    and a RuntimeWarning.
    """
    measure, opts = _resolve(metric, kw)
    symmetric = reps_b is None or reps_b is reps_a
    caches_b = [
        _cache(measure, x, opts, f"reps_b[{j}]")
        for j, x in enumerate(reps_a if symmetric else reps_b)
    ]
    n_b = len(caches_b)
    n_a = n_b if symmetric else len(reps_a)
    n_tok = caches_b[0].n_tokens if n_b else None
    for j, c in enumerate(caches_b):
        if c.n_tokens != n_tok:
            raise ValueError(f"reps_b[{j}] has {c.n_tokens} tokens, reps_b[0] has {n_tok}")
    live = [j for j, c in enumerate(caches_b) if not isinstance(c, _Dead)]
    blocks = []
    f32 = opts.get("products") == "float32"
    if measure.uses_bases and live:
        bases, ks = [caches_b[j].basis for j in live], [caches_b[j].k for j in live]
        blocks = _blocks(bases, ks, live, f32)
        for block, members in blocks:  # point at the block's columns: frees internal copies
            for j, o, kb in members:  # (float32 with f32: only debiased CKA reads u itself)
                c = caches_b[j]
                caches_b[j] = BasisCache(dataclasses.replace(c.basis, u=block[:, o : o + kb]), kb)
    values = np.full((n_a, n_b), np.nan)
    results = np.empty((n_a, n_b), dtype=object) if return_results else None
    dead = {"reps_b": [j for j in range(n_b) if j not in set(live)], "reps_a": []}
    mirror = symmetric and measure.symmetric

    def store(i: int, j: int, res: SimilarityResult) -> None:
        values[i, j] = res.value
        if results is not None:
            results[i, j] = res
        if mirror and j != i:
            values[j, i] = res.value
            if results is not None:
                results[j, i] = _swapped(res)

    for i in range(n_a):
        if symmetric:
            ca = caches_b[i]
        else:
            ca = _cache(measure, reps_a[i], opts, f"reps_a[{i}]")
            if n_b and ca.n_tokens != n_tok:
                raise ValueError(f"reps_a[{i}] has {ca.n_tokens} tokens, reps_b have {n_tok}")
            if isinstance(ca, _Dead):
                dead["reps_a"].append(i)
        todo_j = [j for j in range(n_b) if not (mirror and j < i)]
        if isinstance(ca, _Dead):
            for j in todo_j:
                store(i, j, _undefined_result(measure, ca, caches_b[j]))
            continue
        for j in todo_j:
            if isinstance(caches_b[j], _Dead):
                store(i, j, _undefined_result(measure, ca, caches_b[j]))
        if not measure.uses_bases:
            for j in todo_j:
                if not isinstance(caches_b[j], _Dead):
                    store(i, j, measure.compare(ca, caches_b[j], opts, None))
            continue
        ua = ca.basis.u[:, : ca.k]
        ua = ua.float() if f32 else ua
        for block, members in blocks:
            todo = [(j, o, kb) for j, o, kb in members if not (mirror and j < i)]
            if not todo:
                continue
            lo = todo[0][1]
            hi = todo[-1][1] + todo[-1][2]
            prod = mm32(ua, block[:, lo:hi]) if f32 else mm(ua.T, block[:, lo:hi])
            for j, o, kb in todo:
                store(i, j, measure.compare(ca, caches_b[j], opts, prod[:, o - lo : o - lo + kb]))
    if dead["reps_b"] or dead["reps_a"]:
        which = "; ".join(f"{key} {idx}" for key, idx in dead.items() if idx)
        reasons = {c.reason for c in caches_b if isinstance(c, _Dead)}
        warnings.warn(
            f"pairwise({metric!r}): undefined for {which}, their cells are NaN"
            + (f" ({sorted(reasons)[0]})" if reasons else ""),
            RuntimeWarning,
            stacklevel=2,
        )
    return results if return_results else values


def _swapped(res: SimilarityResult) -> SimilarityResult:
    """The result of (b, a) from that of (a, b), for symmetric metrics."""
    return dataclasses.replace(
        res,
        k_a=res.k_b,
        k_b=res.k_a,
        rank_a=res.rank_b,
        rank_b=res.rank_a,
        rtol_a=res.rtol_b,
        rtol_b=res.rtol_a,
    )


def _undefined_result(measure: Measure, ca, cb) -> SimilarityResult:
    """NaN result for a pair with a representation the metric is undefined for, saying why."""
    reason = ca.reason if isinstance(ca, _Dead) else cb.reason

    def info(c, attr, default=None):
        if isinstance(c, BasisCache):
            return {"k": c.k, "rank": c.basis.rank, "rtol": c.basis.rtol}[attr]
        return default

    return SimilarityResult(
        measure.name,
        float("nan"),
        info(ca, "k", 0),
        info(cb, "k", 0),
        ca.n_tokens,
        info(ca, "rank"),
        info(cb, "rank"),
        rtol_a=info(ca, "rtol"),
        rtol_b=info(cb, "rtol"),
        kind=measure.kind,
        reason=reason,
    )


# --------------------------------------------------------------------------- reused caches


@dataclass(frozen=True, eq=False)
class Prepared:
    """One representation's cache for one metric and its options, built once and reused for
    every pair it takes part in (what :func:`pairwise` does inside one call, across calls)."""

    metric: str
    measure: Measure
    opts: dict
    cache: object

    @property
    def n_tokens(self) -> int:
        return self.cache.n_tokens

    @property
    def undefined(self) -> str | None:
        """Why the metric is undefined for this representation (None: it is defined)."""
        return self.cache.reason if isinstance(self.cache, _Dead) else None


def prepare(x: Array | Basis, metric: str = "svcca", name: str = "x", **kw) -> Prepared:
    """The metric's cache of ``x`` (a basis, neighbour lists, a ranked RDM); a representation
    the metric is undefined for gives a cache that compares to NaN with the reason."""
    measure, opts = _resolve(metric, kw)
    return Prepared(metric, measure, opts, _cache(measure, x, opts, name))


def compare_prepared(a: Prepared, b: Prepared) -> SimilarityResult:
    """The metric between two prepared representations (the same numbers as :func:`pairwise`)."""
    return compare_many([(a, b)])[0]


def compare_many(pairs: Sequence[tuple[Prepared, Prepared]]) -> list[SimilarityResult]:
    """:func:`compare_prepared` of each pair (one pair of representations under several
    metrics); the basis metrics among them share one product U_aᵀU_b of the two bases, each
    taking its first k_a × k_b block (a metric's directions lead its basis)."""
    for a, b in pairs:
        if a.measure is not b.measure or a.opts != b.opts:
            raise ValueError(f"prepared for different metrics or options: {a.metric} vs "
                             f"{b.metric}")
        if a.n_tokens != b.n_tokens:
            raise ValueError(f"a has {a.n_tokens} tokens and b has {b.n_tokens}")
    cross = _shared_cross(pairs)
    return [_undefined_result(a.measure, a.cache, b.cache)
            if isinstance(a.cache, _Dead) or isinstance(b.cache, _Dead)
            else a.measure.compare(a.cache, b.cache, a.opts, cross(a.cache, b.cache))
            for a, b in pairs]


def _shared_cross(pairs: Sequence[tuple[Prepared, Prepared]]
                  ) -> Callable[[object, object], torch.Tensor | None]:
    """m for a pair's caches: a block of one U_aᵀU_b when the pairs' basis metrics with
    float64 products hold the same two bases, else None (each metric takes its own product)."""
    shared = [(a.cache, b.cache) for a, b in pairs
              if a.measure.uses_bases and a.opts.get("products") == "float64"
              and not isinstance(a.cache, _Dead) and not isinstance(b.cache, _Dead)]
    bases = {(id(ca.basis), id(cb.basis)) for ca, cb in shared}
    if len(shared) < 2 or len(bases) != 1:
        return lambda ca, cb: None
    ua, ub = shared[0][0].basis.u, shared[0][1].basis.u
    ka, kb = max(ca.k for ca, _ in shared), max(cb.k for _, cb in shared)
    m = cross_product(ua[:, :ka], ub[:, :kb])
    members = {(id(ca), id(cb)) for ca, cb in shared}

    def cross(ca, cb) -> torch.Tensor | None:
        return m[: ca.k, : cb.k] if (id(ca), id(cb)) in members else None

    return cross


def permuted_values(a: Prepared, b: Prepared, n: int, seed: int) -> np.ndarray:
    """The metric after ``n`` random re-pairings of b's tokens (each permutes b's cache only:
    the rows of its basis, its neighbour labels, its RDM); NaN where it is undefined."""
    return permuted_many([(a, b)], n, seed)[0]


def permuted_many(pairs: Sequence[tuple[Prepared, Prepared]], n: int, seed: int
                  ) -> list[np.ndarray]:
    """:func:`permuted_values` of each pair with the same seed (so every metric sees the same
    re-pairings); the basis metrics share each permutation's product, as in
    :func:`compare_many`."""
    out = [np.full(n, np.nan) for _ in pairs]
    live = [i for i, (a, b) in enumerate(pairs)
            if not isinstance(a.cache, _Dead) and not isinstance(b.cache, _Dead)]
    perms: dict[int, list[np.ndarray]] = {}
    for i in live:
        n_perm = pairs[i][1].cache.n_perm
        if n_perm not in perms:
            rng = np.random.default_rng(seed)
            perms[n_perm] = [rng.permutation(n_perm) for _ in range(n)]
    for j in range(n):
        memo: dict[int, Basis] = {}
        permuted = [(pairs[i][0], dataclasses.replace(pairs[i][1], cache=_permute(
            pairs[i][1].cache, perms[pairs[i][1].cache.n_perm][j], memo))) for i in live]
        for i, res in zip(live, compare_many(permuted), strict=True):
            out[i][j] = res.value
    return out


def _permute(cache, perm: np.ndarray, memo: dict[int, Basis]):
    """cache.permuted(perm); the basis metrics' caches of one basis share one permuted basis
    (so that compare_many shares their product)."""
    if not isinstance(cache, BasisCache):
        return cache.permuted(perm)
    if id(cache.basis) not in memo:
        memo[id(cache.basis)] = cache.permuted(perm).basis
    return dataclasses.replace(cache, basis=memo[id(cache.basis)])
