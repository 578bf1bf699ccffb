"""Group-level aggregation of participant connectomes (pure functions, no I/O).

Two ways to summarise many connectomes of one set of regions:

* :func:`group_mean`: the edge-wise mean over units (runs, or subjects whose runs are averaged
  first). Correlation-type matrices are averaged as Fisher z (``arctanh``) and back-transformed
  with ``tanh``; covariance and precision are averaged as they are. Missing values (regions set
  to ``n/a`` in some runs) are left out edge by edge, and :attr:`GroupMean.count` says how many
  units each edge averages.
* :func:`group_tangent`: tangent-space embedding (Varoquaux et al. 2010), nilearn's
  ``ConnectivityMeasure(kind="tangent")``: the reference is the geometric mean of the units'
  covariance matrices and each unit's connectome is ``logm(M^-1/2 C M^-1/2)``. With subject
  units, a subject's covariance is the geometric mean of its runs' covariances (the average on
  the manifold the tangent space is built on).
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import Literal, NamedTuple

import numpy as np

from bids_regionx.core.connectivity import (
    ESTIMATORS,
    TangentResult,
    connectivity,
    fisher_z,
    geometric_mean,
    inverse_fisher_z,
    tangent,
)

__all__ = ["GroupMean", "GroupTangent", "group_mean", "group_tangent", "unit_labels"]

Transform = Literal["fisher_z", "none"]


class GroupMean(NamedTuple):
    """Output of :func:`group_mean`.

    Attributes
    ----------
    mean : ndarray, shape (n_regions, n_regions)
        The group connectome in the measure's own units: ``tanh(mean z)`` with a unit diagonal
        for ``transform="fisher_z"``, the plain mean otherwise. NaN where no unit has a value.
    fisherz : ndarray or None, shape (n_regions, n_regions)
        The mean of Fisher z (NaN diagonal) for ``transform="fisher_z"``, else None.
    count : ndarray of int, shape (n_regions, n_regions)
        Number of units averaged for each edge (diagonal: units in which the region is present).
    """

    mean: np.ndarray
    fisherz: np.ndarray | None
    count: np.ndarray


class GroupTangent(NamedTuple):
    """Output of :func:`group_tangent`.

    Attributes
    ----------
    connectomes : ndarray, shape (n_units, n_regions, n_regions)
        Each unit's tangent-space connectome (NaN rows/columns for regions missing anywhere).
    reference : ndarray, shape (n_regions, n_regions)
        Geometric mean of the units' covariance matrices (nilearn's ``mean_``).
    whitening : ndarray, shape (n_regions, n_regions)
        ``reference^(-1/2)`` (nilearn's ``whitening_``).
    count : ndarray of int, shape (n_regions, n_regions)
        Units entering each edge: ``n_units`` for regions present in every run, else 0.
    units : list
        The unit of each connectome, in order (run index, or group label).
    """

    connectomes: np.ndarray
    reference: np.ndarray
    whitening: np.ndarray
    count: np.ndarray
    units: list


def unit_labels(groups: Sequence[Hashable] | None, n: int) -> list:
    """Units in order of first appearance: the distinct ``groups``, or ``range(n)`` if None."""
    if groups is None:
        return list(range(n))
    if len(groups) != n:
        raise ValueError(f"groups: expected one label per matrix ({n}), got {len(groups)}")
    return list(dict.fromkeys(groups))


def group_mean(
    matrices: Sequence[np.ndarray] | np.ndarray,
    *,
    transform: Transform,
    groups: Sequence[Hashable] | None = None,
) -> GroupMean:
    """Edge-wise mean of connectomes over runs, or over subjects after a mean within subject.

    Parameters
    ----------
    matrices : ndarray, shape (n_runs, n_regions, n_regions), or a sequence of (n, n) arrays
        One connectome per run; NaN for missing values (regions set to ``n/a``).
    transform : {"fisher_z", "none"}
        ``"fisher_z"`` for correlation and partial correlation (values in [-1, 1]; averaged as
        ``arctanh`` with ``|r|`` clipped at ``1 - 1e-7``, then back-transformed);
        ``"none"`` for covariance and precision (arithmetic mean).
    groups : sequence of hashable, optional
        One label per run (e.g. the subject). Runs with the same label are averaged first and
        each label then counts once; ``count`` counts labels. Default: every run is a unit.

    Returns
    -------
    GroupMean

    Raises
    ------
    ValueError
        No matrices, matrices not square or not all of one shape, an unknown ``transform``,
        a ``groups`` of the wrong length, or correlations outside [-1, 1].
    """
    if transform not in ("fisher_z", "none"):
        raise ValueError(f"transform: expected 'fisher_z' or 'none', got {transform!r}")
    stack = _stack(matrices)
    units = unit_labels(groups, len(stack))
    values = fisher_z(stack, diagonal="clip") if transform == "fisher_z" else stack
    present = ~np.isnan(stack)
    if groups is not None:
        labels = list(groups)
        per_unit, per_present = [], []
        for unit in units:
            members = [i for i, label in enumerate(labels) if label == unit]
            per_unit.append(_nanmean(values[members], axis=0))
            per_present.append(present[members].any(axis=0))
        values, present = np.array(per_unit), np.array(per_present)
    count = present.sum(axis=0).astype(np.int64)
    mean_values = _nanmean(values, axis=0)
    if transform == "none":
        return GroupMean(mean_values, None, count)
    z = mean_values.copy()
    np.fill_diagonal(z, np.nan)
    r = inverse_fisher_z(z)
    diagonal = np.where(np.diag(count) > 0, 1.0, np.nan)
    np.fill_diagonal(r, diagonal)
    return GroupMean(r, z, count)


def group_tangent(
    timeseries: Sequence[np.ndarray],
    *,
    estimator: str = "ledoit_wolf",
    groups: Sequence[Hashable] | None = None,
    max_iter: int = 30,
    tol: float = 1e-7,
) -> GroupTangent:
    """Tangent-space connectomes of runs, or of subjects, at their geometric mean.

    Parameters
    ----------
    timeseries : sequence of ndarray, each (n_volumes_i, n_regions)
        Region time series of each run (all-NaN columns: regions set to ``n/a``).
    estimator : {"empirical", "ledoit_wolf"}, default="ledoit_wolf"
        Covariance estimator of each run.
    groups : sequence of hashable, optional
        One label per run. Default (None): each run is a unit, exactly
        ``ConnectivityMeasure(kind="tangent").fit_transform(timeseries)``. With labels, each
        label is a unit whose covariance is the geometric mean of its runs' covariances.
    max_iter, tol : int, float
        Geometric-mean iterations and tolerance (nilearn's values for ``kind="tangent"``).

    Returns
    -------
    GroupTangent

    Raises
    ------
    ValueError
        Fewer than 2 units, runs with different numbers of regions, a singular covariance
        (e.g. the empirical estimator with fewer volumes than regions), or a bad ``groups``.
    """
    if estimator not in ESTIMATORS:
        raise ValueError(f"estimator: expected one of {list(ESTIMATORS)}, got {estimator!r}")
    series = [np.asarray(ts, dtype=np.float64) for ts in timeseries]
    units = unit_labels(groups, len(series))
    if groups is None:
        result = tangent(series, estimator=estimator, max_iter=max_iter, tol=tol)
    else:
        result = tangent(
            _unit_covariances(series, list(groups), units, estimator, max_iter, tol),
            input_kind="covariance",
            max_iter=max_iter,
            tol=tol,
        )
    return _with_count(result, units)


def _unit_covariances(series, labels, units, estimator, max_iter, tol) -> list[np.ndarray]:
    """Each unit's covariance: the geometric mean of its runs' (on regions present in all)."""
    covariances = [_covariance(ts, estimator) for ts in series]
    if len({cov.shape for cov in covariances}) > 1:
        raise ValueError("timeseries: runs have different numbers of regions")
    present = np.logical_and.reduce([~np.isnan(np.diag(cov)) for cov in covariances])
    block = np.ix_(present, present)
    out = []
    for unit in units:
        members = [covariances[i] for i, label in enumerate(labels) if label == unit]
        cov = np.full(members[0].shape, np.nan)
        if present.any():
            reduced = [m[block] for m in members]
            cov[block] = (
                reduced[0]
                if len(reduced) == 1
                else geometric_mean(reduced, max_iter=max_iter, tol=tol)
            )
        out.append(cov)
    return out


def _covariance(ts: np.ndarray, estimator: str) -> np.ndarray:
    return connectivity(ts, kind="covariance", estimator=estimator)


def _with_count(result: TangentResult, units: list) -> GroupTangent:
    present = ~np.isnan(np.diag(result.mean))
    count = np.where(np.outer(present, present), len(units), 0).astype(np.int64)
    return GroupTangent(result.connectomes, result.mean, result.whitening, count, units)


def _stack(matrices) -> np.ndarray:
    mats = [np.asarray(m, dtype=np.float64) for m in matrices]
    if not mats:
        raise ValueError("matrices: need at least one connectome")
    shapes = {m.shape for m in mats}
    if len(shapes) > 1:
        raise ValueError(f"matrices: connectomes of different shapes {sorted(shapes)}")
    shape = mats[0].shape
    if len(shape) != 2 or shape[0] != shape[1]:
        raise ValueError(f"matrices: expected square matrices, got shape {shape}")
    return np.array(mats)


def _nanmean(values: np.ndarray, axis: int) -> np.ndarray:
    """Mean ignoring NaN; NaN (without a warning) where every value is NaN."""
    finite = ~np.isnan(values)
    n = finite.sum(axis=axis)
    total = np.where(finite, values, 0.0).sum(axis=axis)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, total / np.maximum(n, 1), np.nan)
