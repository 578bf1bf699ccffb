"""Connectivity matrices from region time series.

Numerically equivalent to nilearn's ``ConnectivityMeasure`` (0.14) for the same kind and
covariance estimator, with two additions the BIDS App needs:

* regions set to ``n/a`` (an all-NaN column, e.g. low brain-mask coverage) are left out of the
  estimation and come back as NaN rows/columns, so the matrix keeps one row per region;
* the estimator is chosen by name: ``"empirical"`` (maximum-likelihood covariance; for
  ``kind="correlation"`` this is Pearson's r, what XCP-D users expect) or ``"ledoit_wolf"``
  (scikit-learn's :class:`~sklearn.covariance.LedoitWolf`, nilearn's default).

How nilearn computes each kind, and therefore how we do:

* ``correlation``: each column is z-scored (mean removed, divided by its ``ddof=1`` standard
  deviation), the estimator's covariance of the z-scores is converted to a correlation and the
  diagonal is set to exactly 1. With the empirical estimator the z-scoring changes nothing
  (Pearson's r is scale free); with Ledoit-Wolf it does, because the shrinkage target depends on
  the scale of each column.
* ``covariance``, ``precision``, ``partial correlation``: the estimator is fitted on the raw
  (only centred) time series. Both estimators divide by ``n_volumes`` (not ``n_volumes - 1``).
  Partial correlation is ``-cov_to_corr(precision)`` with an exact 1 on the diagonal.
* ``tangent`` (group level, :func:`tangent`): covariances of every subject, their geometric mean
  (Fletcher & Joshi 2007, algorithm 3, nilearn's ``_geometric_mean`` with ``max_iter=30``,
  ``tol=1e-7``), then ``logm(M^-1/2 C M^-1/2)`` per subject.

Matrices are symmetrised (``(A + A.T) / 2``) so written relmats are exactly symmetric; this only
moves values by rounding error relative to nilearn.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from typing import Literal, NamedTuple

import numpy as np
from scipy import linalg

Kind = Literal["correlation", "partial correlation", "covariance", "precision"]
Estimator = Literal["empirical", "ledoit_wolf"]

#: Participant-level kinds accepted by :func:`connectivity` (``tangent`` is group level).
KINDS: tuple[str, ...] = ("correlation", "partial correlation", "covariance", "precision")
#: Covariance estimators accepted by :func:`connectivity` and :func:`tangent`.
ESTIMATORS: tuple[str, ...] = ("empirical", "ledoit_wolf")

#: Default clipping bound for :func:`fisher_z`: ``arctanh(1 - 1e-7)`` is about 8.4.
FISHER_Z_CLIP = 1.0 - 1e-7

# nilearn treats standard deviations below machine epsilon as 1 when z-scoring.
_EPS = np.finfo(np.float64).eps


class TangentResult(NamedTuple):
    """Output of :func:`tangent`.

    Attributes
    ----------
    connectomes : ndarray, shape (n_subjects, n_regions, n_regions)
        Each subject's tangent-space connectome ``logm(W C_s W)``; NaN rows/columns for regions
        missing in any subject.
    mean : ndarray, shape (n_regions, n_regions)
        The group reference: geometric mean of the subjects' covariance matrices.
    whitening : ndarray, shape (n_regions, n_regions)
        ``W = mean^(-1/2)``.
    """

    connectomes: np.ndarray
    mean: np.ndarray
    whitening: np.ndarray


# --------------------------------------------------------------------------------------------
# Participant level
# --------------------------------------------------------------------------------------------


def connectivity(
    timeseries: np.ndarray,
    *,
    kind: Kind,
    estimator: Estimator = "empirical",
) -> np.ndarray:
    """Compute one connectivity matrix from region time series.

    Parameters
    ----------
    timeseries : array-like, shape (n_volumes, n_regions)
        Cleaned region time series of one run (censored volumes already removed). A column that
        is entirely NaN is a region set to ``n/a``; a column with no variance is treated the same
        way (its correlations are undefined).
    kind : {"correlation", "partial correlation", "covariance", "precision"}
        Which matrix to return.
    estimator : {"empirical", "ledoit_wolf"}, default="empirical"
        Covariance estimator. ``"empirical"`` gives Pearson correlations; ``"ledoit_wolf"``
        shrinks towards a scaled identity, as nilearn's ``ConnectivityMeasure`` does by default.

    Returns
    -------
    ndarray of float64, shape (n_regions, n_regions)
        Symmetric matrix; rows and columns of missing regions are NaN (diagonal included). The
        diagonal of correlation and partial correlation is exactly 1 for present regions.

    Raises
    ------
    ValueError
        Unknown ``kind``/``estimator``; ``timeseries`` not 2D; a column with some (not all) NaN;
        fewer than 2 volumes; for precision and partial correlation with the empirical
        estimator, fewer volumes than present regions + 1 or a singular covariance.
    """
    _check_choice(kind, KINDS, "kind")
    _check_choice(estimator, ESTIMATORS, "estimator")
    x = _as_timeseries(timeseries)
    present = present_regions(x)
    n_regions = x.shape[1]
    out = np.full((n_regions, n_regions), np.nan)
    if not present.any():
        return out
    data = x[:, present]
    _check_n_volumes(data.shape[0], data.shape[1], kind=kind, estimator=estimator)

    if kind == "correlation":
        matrix = cov_to_corr(_covariance(_zscore(data), estimator))
    else:
        cov = _covariance(data, estimator)
        if kind == "covariance":
            matrix = cov
        else:
            precision = _inverse_spd(cov, what=f"the {estimator} covariance of the time series")
            matrix = precision if kind == "precision" else prec_to_partial(precision)
    out[np.ix_(present, present)] = _symmetrize(matrix)
    return out


def present_regions(timeseries: np.ndarray) -> np.ndarray:
    """Return which regions can enter a connectivity estimate.

    Parameters
    ----------
    timeseries : ndarray, shape (n_volumes, n_regions)
        Region time series.

    Returns
    -------
    ndarray of bool, shape (n_regions,)
        False for all-NaN columns (regions set to ``n/a``) and for columns with zero variance.

    Raises
    ------
    ValueError
        If a column has some but not all values NaN.
    """
    x = _as_timeseries(timeseries)
    nan = np.isnan(x)
    all_nan = nan.all(axis=0)
    partial = nan.any(axis=0) & ~all_nan
    if partial.any():
        raise ValueError(
            "timeseries: regions "
            f"{np.flatnonzero(partial).tolist()} have n/a in some volumes only; a region must be "
            "either present in every volume or entirely n/a"
        )
    flat = np.zeros(x.shape[1], dtype=bool)
    if x.shape[0] > 1:
        with np.errstate(invalid="ignore"):
            flat = ~all_nan & (np.ptp(np.where(nan, 0.0, x), axis=0) == 0)
    return ~all_nan & ~flat


def cov_to_corr(covariance: np.ndarray) -> np.ndarray:
    """Convert a covariance matrix to a correlation matrix with an exact unit diagonal.

    Parameters
    ----------
    covariance : ndarray, shape (n, n)
        Covariance matrix with a positive diagonal.

    Returns
    -------
    ndarray, shape (n, n)
    """
    scale = np.atleast_2d(1.0 / np.sqrt(np.diag(covariance)))
    correlation = covariance * scale * scale.T
    np.fill_diagonal(correlation, 1.0)
    return correlation


def prec_to_partial(precision: np.ndarray) -> np.ndarray:
    """Convert a precision matrix to partial correlations with an exact unit diagonal.

    Parameters
    ----------
    precision : ndarray, shape (n, n)
        Inverse covariance matrix.

    Returns
    -------
    ndarray, shape (n, n)
    """
    partial = -cov_to_corr(precision)
    np.fill_diagonal(partial, 1.0)
    return partial


# --------------------------------------------------------------------------------------------
# Fisher z
# --------------------------------------------------------------------------------------------


def fisher_z(
    r: np.ndarray,
    *,
    diagonal: Literal["nan", "clip"] | float = "nan",
    clip: float = FISHER_Z_CLIP,
) -> np.ndarray:
    """Fisher's r-to-z transform, ``arctanh(r)``, safe for unit correlations.

    Parameters
    ----------
    r : array-like
        Correlation coefficients in ``[-1, 1]`` (NaN allowed and kept). If ``r.ndim >= 2`` and
        its last two axes are equal, it is treated as (a stack of) square matrices and
        ``diagonal`` applies.
    diagonal : {"nan", "clip"} or float, default="nan"
        What to put on the diagonal of square matrices, where ``r = 1`` would give infinity:
        ``"nan"`` (not a connection; written as ``n/a``), ``"clip"`` (treat like any other
        value, giving ``arctanh(clip)``), or a number (e.g. ``0.0``).
    clip : float, default=1 - 1e-7
        ``|r|`` is clipped to this bound before the transform so that ``|z| <= arctanh(clip)``
        (about 8.4) instead of infinity.

    Returns
    -------
    ndarray of float64
        Same shape as ``r``.

    Raises
    ------
    ValueError
        If a value lies outside ``[-1, 1]`` by more than 1e-6, or ``clip`` is not in ``(0, 1)``.
    """
    if not 0.0 < clip < 1.0:
        raise ValueError(f"clip: must be in (0, 1), got {clip!r}")
    values = np.array(r, dtype=np.float64)
    if np.any(np.abs(values[~np.isnan(values)]) > 1.0 + 1e-6):
        raise ValueError("r: correlation values must lie in [-1, 1]")
    z = np.arctanh(np.clip(values, -clip, clip))
    if _is_square_stack(z) and diagonal != "clip":
        if isinstance(diagonal, str) and diagonal != "nan":
            raise ValueError(f"diagonal: expected 'nan', 'clip' or a number, got {diagonal!r}")
        fill = np.nan if diagonal == "nan" else float(diagonal)
        _fill_diagonal(z, fill)
    return z


def inverse_fisher_z(z: np.ndarray, *, diagonal: float | None = None) -> np.ndarray:
    """Inverse of :func:`fisher_z`: ``tanh(z)``.

    Parameters
    ----------
    z : array-like
        Fisher-z values (NaN allowed and kept).
    diagonal : float or None, default=None
        If given and ``z`` is (a stack of) square matrices, set their diagonal to this value,
        e.g. ``1.0`` to turn a mean-of-z group connectome back into a correlation matrix.

    Returns
    -------
    ndarray of float64
        Same shape as ``z``; off-diagonal values round-trip
        ``inverse_fisher_z(fisher_z(r)) == r`` for ``|r| <= clip``.
    """
    r = np.tanh(np.array(z, dtype=np.float64))
    if diagonal is not None and _is_square_stack(r):
        _fill_diagonal(r, float(diagonal))
    return r


# --------------------------------------------------------------------------------------------
# Group level: tangent space
# --------------------------------------------------------------------------------------------


def tangent(
    data: Sequence[np.ndarray] | np.ndarray,
    *,
    input_kind: Literal["timeseries", "covariance"] = "timeseries",
    estimator: Estimator = "ledoit_wolf",
    max_iter: int = 30,
    tol: float = 1e-7,
) -> TangentResult:
    """Embed subjects' covariance matrices in the tangent space at their geometric mean.

    Matches nilearn's ``ConnectivityMeasure(kind="tangent", cov_estimator=...)`` fitted and
    transformed on the same subjects (Varoquaux et al. 2010).

    Parameters
    ----------
    data : sequence of ndarray or ndarray
        ``input_kind="timeseries"``: one array per subject, shape (n_volumes_s, n_regions),
        numbers of volumes may differ. ``input_kind="covariance"``: covariance matrices, shape
        (n_subjects, n_regions, n_regions) (or a sequence of (n_regions, n_regions)).
    input_kind : {"timeseries", "covariance"}, default="timeseries"
        How to read ``data``.
    estimator : {"empirical", "ledoit_wolf"}, default="ledoit_wolf"
        Covariance estimator for time-series input (nilearn's default; shrinkage keeps every
        covariance positive definite, which the matrix logarithm needs).
    max_iter : int, default=30
        Gradient-descent iterations of the geometric mean (nilearn uses 30 here).
    tol : float, default=1e-7
        Convergence tolerance on the gradient norm divided by ``n_regions**2``.

    Returns
    -------
    TangentResult
        ``(connectomes, mean, whitening)``. Regions missing (NaN) in any subject are left out
        of the whole computation and are NaN in every output.

    Raises
    ------
    ValueError
        Fewer than 2 subjects, inconsistent numbers of regions, or a covariance matrix that is
        not symmetric positive definite.
    FloatingPointError
        NaN after the matrix logarithm (as nilearn).

    Warns
    -----
    UserWarning
        If the geometric mean did not reach ``tol`` within ``max_iter`` iterations.
    """
    _check_choice(input_kind, ("timeseries", "covariance"), "input_kind")
    _check_choice(estimator, ESTIMATORS, "estimator")
    if input_kind == "timeseries":
        covariances, present = _covariances_from_timeseries(data, estimator)
    else:
        covariances, present = _covariances_from_matrices(data)

    n_regions = present.size
    n_subjects = len(covariances)
    connectomes = np.full((n_subjects, n_regions, n_regions), np.nan)
    mean = np.full((n_regions, n_regions), np.nan)
    whitening = np.full((n_regions, n_regions), np.nan)
    if not present.any():
        return TangentResult(connectomes, mean, whitening)

    reduced = [cov[np.ix_(present, present)] for cov in covariances]
    gmean = geometric_mean(reduced, max_iter=max_iter, tol=tol)
    white = _map_eigenvalues(lambda v: 1.0 / np.sqrt(v), gmean)
    block = np.ix_(present, present)
    for s, cov in enumerate(reduced):
        connectomes[s][block] = _symmetrize(_map_eigenvalues(np.log, white @ cov @ white))
    mean[block] = gmean
    whitening[block] = white
    return TangentResult(connectomes, mean, whitening)


def geometric_mean(
    matrices: Sequence[np.ndarray] | np.ndarray,
    *,
    init: np.ndarray | None = None,
    max_iter: int = 10,
    tol: float | None = 1e-7,
) -> np.ndarray:
    """Geometric (Riemannian) mean of symmetric positive definite matrices.

    The minimiser over ``X`` of ``sum_k ||logm(X^-1/2 M_k X^-1/2)||_F^2``, by the gradient
    descent of Fletcher & Joshi (2007, algorithm 3), step for step as nilearn's
    ``_geometric_mean`` (same initialisation, step halving and stopping rule).

    Parameters
    ----------
    matrices : sequence of ndarray, each (n, n), or ndarray (n_matrices, n, n)
        SPD matrices of the same shape.
    init : ndarray, shape (n, n), optional
        Starting point; default the arithmetic mean.
    max_iter : int, default=10
        Maximum number of iterations.
    tol : float or None, default=1e-7
        Stop when the gradient norm divided by ``n**2`` falls below ``tol``; None runs
        ``max_iter`` iterations without a check.

    Returns
    -------
    ndarray, shape (n, n)

    Raises
    ------
    ValueError
        Non-square, differently shaped or non-SPD inputs.
    FloatingPointError
        NaN after the matrix logarithm.
    """
    mats = [np.asarray(m, dtype=np.float64) for m in matrices]
    if not mats:
        raise ValueError("matrices: need at least one matrix")
    n = mats[0].shape[0]
    for m in mats:
        _check_square(m, "matrices")
        if m.shape[0] != n:
            raise ValueError("matrices: matrices are not all of the same shape")
        _check_spd(m, "matrices")
    stack = np.array(mats)
    if init is None:
        gmean = np.mean(stack, axis=0)
    else:
        gmean = np.asarray(init, dtype=np.float64)
        _check_square(gmean, "init")
        if gmean.shape[0] != n:
            raise ValueError("init: incorrect shape")
        _check_spd(gmean, "init")

    norm_old = np.inf
    step = 1.0
    norm = np.inf
    for _ in range(max_iter):
        vals, vecs = linalg.eigh(gmean)
        inv_sqrt = _form_symmetric(np.sqrt, 1.0 / vals, vecs)
        logs = [_map_eigenvalues(np.log, inv_sqrt @ m @ inv_sqrt) for m in stack]
        logs_mean = np.mean(logs, axis=0)
        if np.any(np.isnan(logs_mean)):
            raise FloatingPointError("Nan value after logarithm operation.")
        norm = np.linalg.norm(logs_mean)
        vals_log, vecs_log = linalg.eigh(logs_mean)
        gmean_sqrt = _form_symmetric(np.sqrt, vals, vecs)
        # Move along the geodesic from the current estimate.
        gmean = gmean_sqrt @ _form_symmetric(np.exp, vals_log * step, vecs_log) @ gmean_sqrt
        # nilearn's step control: halve the step when the gradient norm grows.
        if norm < norm_old:
            norm_old = norm
        elif norm > norm_old:
            step /= 2.0
            norm = norm_old
        if tol is not None and norm / gmean.size < tol:
            break
    if tol is not None and norm / gmean.size >= tol:
        warnings.warn(
            f"Maximum number of iterations {max_iter} reached without getting to the "
            f"requested tolerance level {tol}.",
            UserWarning,
            stacklevel=2,
        )
    return gmean


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------


def _check_choice(value: object, allowed: tuple[str, ...], name: str) -> None:
    if value not in allowed:
        raise ValueError(f"{name}: expected one of {list(allowed)}, got {value!r}")


def _as_timeseries(timeseries: np.ndarray) -> np.ndarray:
    x = np.asarray(timeseries, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(
            f"timeseries: expected a 2D array (n_volumes, n_regions), got shape {x.shape}"
        )
    if np.isinf(x).any():
        raise ValueError("timeseries: contains infinite values")
    return x


def _check_n_volumes(n_volumes: int, n_present: int, *, kind: str, estimator: str) -> None:
    if n_volumes < 2:
        raise ValueError(
            f"timeseries: {kind} needs at least 2 volumes, got {n_volumes} (after censoring)"
        )
    # Centring costs one degree of freedom: the empirical covariance has rank <= n_volumes - 1.
    if kind in ("precision", "partial correlation") and estimator == "empirical":
        if n_volumes <= n_present:
            raise ValueError(
                f"timeseries: {kind} with the empirical estimator needs more volumes than "
                f"regions (got {n_volumes} volumes for {n_present} regions); use "
                "estimator='ledoit_wolf' or keep more volumes"
            )


def _zscore(x: np.ndarray) -> np.ndarray:
    # nilearn.signal.standardize_signal(..., standardize="zscore_sample"): ddof=1, tiny std -> 1.
    centred = x - x.mean(axis=0)
    std = centred.std(axis=0, ddof=1)
    std[std < _EPS] = 1.0
    return centred / std


def _covariance(x: np.ndarray, estimator: str) -> np.ndarray:
    """Covariance of (n_volumes, n_features) data, centred, divided by n_volumes."""
    if estimator == "empirical":
        # Same as sklearn.covariance.empirical_covariance(assume_centered=False).
        return np.atleast_2d(np.cov(x, rowvar=False, bias=True))
    from sklearn.covariance import LedoitWolf  # imported lazily: sklearn is slow to import

    return LedoitWolf(store_precision=False).fit(x).covariance_


def _inverse_spd(matrix: np.ndarray, *, what: str) -> np.ndarray:
    if np.linalg.eigvalsh(matrix).min() <= 0:
        raise ValueError(f"{what} is singular; cannot invert it (use estimator='ledoit_wolf')")
    return linalg.inv(matrix)


def _symmetrize(matrix: np.ndarray) -> np.ndarray:
    return 0.5 * (matrix + matrix.T)


def _is_square_stack(a: np.ndarray) -> bool:
    return a.ndim >= 2 and a.shape[-1] == a.shape[-2]


def _fill_diagonal(a: np.ndarray, value: float) -> None:
    n = a.shape[-1]
    idx = np.arange(n)
    a[..., idx, idx] = value


def _form_symmetric(
    function: Callable[[np.ndarray], np.ndarray], eigenvalues: np.ndarray, eigenvectors: np.ndarray
) -> np.ndarray:
    return (eigenvectors * function(eigenvalues)) @ eigenvectors.T


def _map_eigenvalues(
    function: Callable[[np.ndarray], np.ndarray], symmetric: np.ndarray
) -> np.ndarray:
    eigenvalues, eigenvectors = linalg.eigh(symmetric)
    return _form_symmetric(function, eigenvalues, eigenvectors)


def _check_square(matrix: np.ndarray, name: str) -> None:
    if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1]:
        raise ValueError(f"{name}: expected a square matrix, got shape {matrix.shape}")


def _check_spd(matrix: np.ndarray, name: str) -> None:
    # nilearn's is_spd(decimal=7): symmetric to rtol 1e-7 and all eigenvalues > 0.
    if (
        not np.allclose(matrix, matrix.T, atol=0, rtol=1e-7)
        or np.linalg.eigvalsh(matrix).min() <= 0
    ):
        raise ValueError(f"{name}: expected symmetric positive definite matrices")


def _covariances_from_timeseries(
    data: Sequence[np.ndarray] | np.ndarray, estimator: str
) -> tuple[list[np.ndarray], np.ndarray]:
    series = [_as_timeseries(ts) for ts in data]
    _check_group(len(series), {ts.shape[1] for ts in series})
    present = np.logical_and.reduce([present_regions(ts) for ts in series])
    covariances = []
    for s, ts in enumerate(series):
        cov = np.full((ts.shape[1], ts.shape[1]), np.nan)
        if present.any():
            if ts.shape[0] < 2:
                raise ValueError(f"data: subject {s} has {ts.shape[0]} volume(s); need >= 2")
            cov[np.ix_(present, present)] = _covariance(ts[:, present], estimator)
        covariances.append(cov)
    return covariances, present


def _covariances_from_matrices(
    data: Sequence[np.ndarray] | np.ndarray,
) -> tuple[list[np.ndarray], np.ndarray]:
    mats = [np.asarray(m, dtype=np.float64) for m in data]
    for m in mats:
        _check_square(m, "data")
    _check_group(len(mats), {m.shape[0] for m in mats})
    present = np.logical_and.reduce([~np.isnan(np.diag(m)) for m in mats])
    return mats, present


def _check_group(n_subjects: int, n_regions: set[int]) -> None:
    if n_subjects < 2:
        raise ValueError(
            "data: the tangent space needs a group of at least 2 subjects (it returns "
            f"deviations from the group mean), got {n_subjects}"
        )
    if len(n_regions) > 1:
        raise ValueError(f"data: subjects have different numbers of regions {sorted(n_regions)}")
