"""Thresholding of 4D maps before they are split into regions.

Three strategies, with the reference's exact cut-offs and comparison precisions (spec traps 5-7):

``ratio_n_voxels``
    keep about ``threshold`` brain-volumes' worth of the strongest voxels across all maps;
    the cut-off is a percentile of ``|maps|`` over the whole 4D array (mask and ``two_sided``
    ignored), compared in float64.
``img_value``
    keep voxels at or beyond a value (``|v| >= t`` if two-sided, ``v >= t`` otherwise, or
    ``v <= t`` for a negative ``t``), compared in the maps' dtype.
``percentile``
    like ``img_value`` with ``t`` = a percentile of the (in-mask) values plus 1e-5.
"""

from __future__ import annotations

import numbers
import warnings

import numpy as np

STRATEGIES = ("ratio_n_voxels", "img_value", "percentile")


def score_at_percentile(values: np.ndarray, q: float) -> np.float64:
    """The ``q``-th percentile of ``values`` with linear ("fraction") interpolation.

    Bit-identical to ``scipy.stats.scoreatpercentile(values, q)`` -- whose arithmetic differs
    from ``np.percentile`` in the last ulp -- but selects the two order statistics it needs
    with :func:`numpy.partition` instead of sorting every value.

    Parameters
    ----------
    values : ndarray
        Any shape; flattened.
    q : float
        Percentile in [0, 100].

    Returns
    -------
    numpy.float64
    """
    if not 0 <= q <= 100:
        raise ValueError("percentile must be in the range [0, 100]")
    flat = np.ravel(values, order="K")  # order is irrelevant to a percentile: avoid a copy
    if flat.size == 0:
        return np.float64(np.nan)
    idx = q / 100.0 * (flat.size - 1)
    i = int(idx)
    if i == idx:
        low = _order_statistics(flat, [i])
        # Same expression as scipy: (value * array(1)) / 1.0 promotes to float64.
        return np.add.reduce(low * np.array(1), axis=0) / 1.0
    pair = _order_statistics(flat, [i, i + 1])
    weights = np.array([(i + 1 - idx), (idx - i)], float)
    return np.add.reduce(pair * weights, axis=0) / weights.sum()


def _order_statistics(flat: np.ndarray, ranks: list[int]) -> np.ndarray:
    """Values of rank ``ranks`` (0-based, ascending) of ``flat``, exactly as a full sort gives.

    Sparse maps are mostly zeros: when every value is >= 0 and zeros fill the low ranks, only
    the non-zero values need partitioning.
    """
    nonzero = flat[flat != 0]
    n_zero = flat.size - nonzero.size
    if n_zero and (nonzero.size == 0 or nonzero.min() > 0):
        out = np.zeros(len(ranks), dtype=flat.dtype)
        upper = [r - n_zero for r in ranks if r >= n_zero]
        if upper:
            out[len(ranks) - len(upper) :] = np.partition(nonzero, upper)[upper]
        return out
    return np.partition(flat, ranks)[ranks]


def _check_real(threshold, name: str = "threshold") -> float:
    if isinstance(threshold, bool) or not isinstance(threshold, numbers.Real):
        raise TypeError(f"'{name}' must be a number; got {threshold!r}")
    return float(threshold)


def threshold_ratio(maps: np.ndarray, ratio: float) -> np.ndarray:
    """Keep the ``ratio`` x n_voxels strongest voxels across all maps.

    Parameters
    ----------
    maps : ndarray, shape (x, y, z, n_maps)
        Finite map values (not modified).
    ratio : float
        In ``(0, n_maps]``.

    Returns
    -------
    ndarray
        A copy of ``maps`` (same dtype and memory layout) with ``|v| < cutoff`` set to 0.
    """
    n_maps = maps.shape[-1]
    if (
        isinstance(ratio, bool)
        or not isinstance(ratio, numbers.Real)
        or ratio <= 0
        or ratio > n_maps
    ):
        raise ValueError(
            "threshold given as ratio to the number of voxels must be Real number and should "
            "be positive and between 0 and total number of maps i.e. "
            f"n_maps={n_maps}. You provided {ratio}"
        )
    out = maps.copy(order="K")
    magnitude = np.abs(out)
    cutoff = score_at_percentile(magnitude, 100.0 - (100.0 / n_maps) * ratio)
    # cutoff is a numpy float64: the comparison happens in float64, as in the reference.
    np.copyto(out, 0.0, where=magnitude < cutoff)
    return out


def _cutoff(
    threshold, values: np.ndarray, *, two_sided: bool
) -> float:
    """Resolve an ``img_value`` number or a ``"q%"`` percentile string to a cut-off value."""
    percentile = isinstance(threshold, str)
    if percentile:
        message = (
            'If "threshold" is given as string it should be a number followed by the percent '
            'sign, e.g. "25.3%"'
        )
        if not threshold.endswith("%"):
            raise ValueError(message)
        try:
            t = float(threshold[:-1])
        except ValueError as exc:
            raise ValueError(message) from exc
    else:
        t = _check_real(threshold)
    if t >= 0:
        ref = np.abs(values) if two_sided else values[values >= 0]
        if percentile:
            return float(score_at_percentile(ref, t) + 1e-5)
        if ref.size and t > ref.max():
            warnings.warn(
                f"The given float value must not exceed {ref.max()}. "
                f"But, you have given threshold={t}.",
                UserWarning,
                stacklevel=3,
            )
        return t
    if two_sided:
        raise ValueError('"threshold" should not be a negative value when two_sided=True.')
    if percentile:
        raise ValueError('"threshold" should not be a negative percentile value.')
    ref = values[values <= 0]
    if ref.size and t < ref.min():
        warnings.warn(
            f"The given float value must not be less than {ref.min()}. "
            f"But, you have given threshold={t}.",
            UserWarning,
            stacklevel=3,
        )
    return t


def threshold_values(
    maps: np.ndarray,
    threshold,
    *,
    two_sided: bool = False,
    mask: np.ndarray | None = None,
) -> np.ndarray:
    """Zero map values below a value or a percentile (``img_value``/``percentile`` strategies).

    Parameters
    ----------
    maps : ndarray, shape (x, y, z, n_maps)
        Finite map values (not modified).
    threshold : float or str
        A value, or a percentile given as ``"q%"``.
    two_sided : bool
        Keep strong negative values too (``|v| >= t``).
    mask : ndarray of bool, shape (x, y, z), optional
        Voxels outside are zeroed and percentiles use in-mask values only.

    Returns
    -------
    ndarray
        A thresholded copy of ``maps`` (same dtype and layout).
    """
    out = maps.copy(order="K")
    values = out
    if mask is not None:
        values = out[mask]
        out[~mask] = 0.0
    cutoff = _cutoff(threshold, values, two_sided=two_sided)
    # cutoff is a Python float: NumPy's weak-scalar rule compares in the maps' dtype, so a
    # float32 voxel equal to float32(t) survives -- exactly as in the reference.
    if two_sided:
        drop = (-cutoff < out) & (out < cutoff)
    elif cutoff >= 0:
        drop = out < cutoff
    else:
        drop = out > cutoff
    out[drop] = 0.0
    return out


def threshold_maps(
    maps: np.ndarray,
    *,
    strategy: str,
    threshold,
    two_sided: bool = False,
    mask: np.ndarray | None = None,
) -> np.ndarray:
    """Apply one of :data:`STRATEGIES` to 4D maps.

    Parameters
    ----------
    maps : ndarray, shape (x, y, z, n_maps)
        Finite map values (not modified).
    strategy : {"ratio_n_voxels", "img_value", "percentile"}
    threshold : float
        Ratio of brain volumes (``ratio_n_voxels``), value (``img_value``) or percentile in
        [0, 100] (``percentile``).
    two_sided : bool
        Used by ``img_value`` and ``percentile`` only.
    mask : ndarray of bool, shape (x, y, z), optional
        Used by ``img_value`` and ``percentile`` only (``ratio_n_voxels`` ignores it, and the
        mask is applied when the maps are split).

    Returns
    -------
    ndarray
        The thresholded copy.
    """
    if strategy not in STRATEGIES:
        raise ValueError(
            f"'thresholding_strategy' must be one of {list(STRATEGIES)}.\n"
            f"{strategy!r} was provided."
        )
    if threshold is None or isinstance(threshold, str):
        raise ValueError(
            "The given input to threshold is not valid. Please submit a valid number specific "
            f"to either of the strategy in {list(STRATEGIES)}"
        )
    if strategy == "ratio_n_voxels":
        return threshold_ratio(maps, threshold)
    if strategy == "percentile":
        return threshold_values(maps, f"{threshold}%", two_sided=two_sided, mask=mask)
    return threshold_values(maps, threshold, two_sided=two_sided, mask=mask)
