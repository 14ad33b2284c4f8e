"""Representation similarity on tokens × dims arrays: CCA, SVCCA, PWCCA, linear CKA (biased
and debiased), orthogonal Procrustes (similarity and angular distance), mutual k-NN and RSA.

Every metric is an entry of a small registry (:class:`Measure`: what one representation
caches, how two caches compare), so :func:`pairwise`, :func:`shuffled_baseline` and
:func:`similarity` take any of them by name (:func:`metrics`); adding one is one compare
function and one :func:`register` call, in the module of its family. The CCA family, CKA and
Procrustes cache a :class:`Basis` and share the one-product-per-block fast path; mutual k-NN
caches each row's neighbours, RSA the ranked RDM.

Modules: ``bases`` (input checks, centring, the rank cut, :class:`Basis`, the product
kernels, :class:`SimilarityResult`), ``registry`` (:class:`Measure`, :func:`similarity`,
:func:`pairwise`, :func:`prepare`/:func:`compare_many`, the permutation nulls), one module per
family that holds its functions and registers its metrics (``canonical``: CCA, SVCCA, PWCCA;
``cka``; ``shape``: Procrustes; ``neighbours``: mutual k-NN; ``rdm``: RSA), ``repeats``
(what the metrics do about repeated rows), ``baseline`` (:func:`shuffled_baseline`). The
registry imports no family; this package imports every family (so that they register) and
re-exports the public names.

Conventions (each guards against a measured failure mode of public implementations):

- Inputs are **tokens × dims** (rows are tokens, columns are units), numpy arrays or torch
  tensors. Torch tensors stay on their device for the heavy products; results come back as
  numpy/float on the CPU.
- Every unit is centred over tokens (twice, so huge constant offsets leave no residue; units
  that are exactly constant become exactly zero), and everything is accumulated in float64
  whatever the input dtype.
- Subspaces are truncated at the numerical rank: singular values below ``rtol * s_max`` count
  as zero. The default (``rtol=None``) follows the input's precision and size,
  :func:`default_rtol`: 4e-5..1e-4 for float32 input of 64..512 dims (it drops the null
  direction of LayerNorm outputs, which float32 rounding lifts to ~1e-7..3e-6), about
  1e-13..1e-11 for float64. The cut used is reported (``Basis.rtol``,
  ``SimilarityResult.rtol_a/rtol_b``). Dead, constant and duplicated units are therefore
  harmless. Canonical correlations are clipped to [0, 1].
- Routes (``method=``): "gram" eigendecomposes the float64 dims × dims Gram blocks (fast,
  bound by matrix products; it cannot resolve directions below sqrt(max(tokens, dims)·eps)
  ·s_max, so it cuts there at the least), "svd" takes a tall SVD of each side (most
  accurate), and "auto" (default) uses the Gram route unless a kept direction is weaker than
  1e-4·s_max, the spectrum has values the Gram route cannot resolve above the cut, or
  tokens <= dims.
- A representation's orthonormal token-space basis (:class:`Basis`) is computed once and can
  be reused for every pair: a pair then costs one ``k_a × tokens × k_b`` product plus a small
  SVD. :func:`pairwise` does this for lists of representations.
- CCA-family metrics refuse tokens - 1 <= dims used (after centring the rank is at most
  tokens - 1, so every canonical correlation is then 1, even for independent noise) unless
  ``allow_underdetermined=True``; CCA stays biased upward while tokens are only a few times
  the dims, so compare with :func:`shuffled_baseline` at the same (dims, tokens). CKA needs
  at least 3 tokens (4 debiased): with 2 it is 1 for any data.
- Repeated rows (an embedding's: one per word type, so its rank is at most types - 1): the
  CCA family (``Measure.rank_limited``) also refuses distinct rows - 1 <= dims used, a NaN
  cell / ValueError naming the count; mutual k-NN runs over the rows distinct in both
  representations (NaN with the reason where they repeat different rows); RSA sets
  distances within rounding of 0 to 0, so copies tie exactly.
- A representation without variance (every unit constant over the tokens, e.g. all zero)
  has no similarity to anything: the single-pair functions raise ValueError;
  :func:`pairwise` and :func:`shuffled_baseline` put NaN in its cells, say why in
  ``SimilarityResult.reason`` and warn, so that one dead layer does not void a matrix.

Values are similarities in [0, 1] (debiased CKA and RSA can be negative), except
``procrustes_angular``, a distance in [0, π/2]; ``SimilarityResult.kind`` says which.
"""

from __future__ import annotations

from analysis.similarity.baseline import Baseline, shuffled_baseline
from analysis.similarity.bases import (
    DEFAULT_RTOL,
    Basis,
    SimilarityResult,
    basis,
    default_rtol,
    n_keep,
)
from analysis.similarity.canonical import cca, pwcca, svcca
from analysis.similarity.cka import linear_cka
from analysis.similarity.neighbours import mutual_knn
from analysis.similarity.rdm import rsa, rsa_rows
from analysis.similarity.registry import (
    SHAPE,
    Measure,
    Prepared,
    compare_many,
    compare_prepared,
    measure,
    metrics,
    pairwise,
    permuted_many,
    permuted_values,
    prepare,
    register,
    similarity,
)
from analysis.similarity.shape import procrustes, procrustes_angular

__all__ = [
    "Prepared",
    "SHAPE",
    "compare_many",
    "compare_prepared",
    "permuted_many",
    "permuted_values",
    "prepare",
    "Baseline",
    "Basis",
    "DEFAULT_RTOL",
    "Measure",
    "SimilarityResult",
    "basis",
    "cca",
    "default_rtol",
    "linear_cka",
    "measure",
    "metrics",
    "mutual_knn",
    "n_keep",
    "pairwise",
    "procrustes",
    "procrustes_angular",
    "pwcca",
    "register",
    "rsa",
    "rsa_rows",
    "shuffled_baseline",
    "similarity",
    "svcca",
]
