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
from dataclasses import dataclass

import numpy as np

STRATEGIES = ("ratio_n_voxels", "img_value", "percentile")


def score_at_percentile(values: np.ndarray, q: float, *, n_zeros: int = 0) -> np.float64:
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
    n_zeros : int
        Zeros that belong to the data but were left out of ``values`` (which must then be
        non-negative): sparse maps need not be materialised in full.

    Returns
    -------
    numpy.float64
    """
    if not 0 <= q <= 100:
        raise ValueError("percentile must be in the range [0, 100]")
    flat = np.ravel(values, order="K")  # order is irrelevant to a percentile: avoid a copy
    size = flat.size + n_zeros
    if size == 0:
        return np.float64(np.nan)
    idx = q / 100.0 * (size - 1)
    i = int(idx)
    if i == idx:
        low = _order_statistics(flat, [i], n_zeros)
        # Same expression as scipy: (value * array(1)) / 1.0 promotes to float64.
        return np.add.reduce(low * np.array(1), axis=0) / 1.0
    pair = _order_statistics(flat, [i, i + 1], n_zeros)
    weights = np.array([(i + 1 - idx), (idx - i)], float)
    return np.add.reduce(pair * weights, axis=0) / weights.sum()


def _order_statistics(flat: np.ndarray, ranks: list[int], n_zeros: int = 0) -> np.ndarray:
    """Values of rank ``ranks`` (0-based, ascending), exactly as a full sort gives them.

    When every value is >= 0, zeros fill the lowest ranks and only the non-zero values need
    partitioning (maps are mostly zeros).
    """
    nonzero = flat[flat != 0]
    n_zeros += flat.size - nonzero.size
    if n_zeros and (nonzero.size == 0 or nonzero.min() > 0):
        out = np.zeros(len(ranks), dtype=flat.dtype)
        upper = [r - n_zeros for r in ranks if r >= n_zeros]
        if upper:
            out[len(ranks) - len(upper) :] = np.partition(nonzero, upper)[upper]
        return out
    if n_zeros:
        flat = np.concatenate([np.zeros(n_zeros, flat.dtype), flat])
    return np.partition(flat, ranks)[ranks]


@dataclass(frozen=True)
class Threshold:
    """A resolved threshold, applied to maps one at a time.

    Attributes
    ----------
    cutoff : float
        A numpy float64 for ``ratio_n_voxels`` (compared in float64) or a Python float (compared
        in the maps' dtype, NumPy's weak-scalar rule), as in the reference (spec trap 5).
    rule : {"magnitude", "two_sided", "above", "below"}
        Which values are zeroed: ``|v| < c``; ``-c < v < c``; ``v < c``; ``v > c``.
    mask : ndarray of bool, shape (x, y, z), optional
        Voxels outside are zeroed (value and percentile strategies).
    """

    cutoff: float
    rule: str
    mask: np.ndarray | None = None

    def apply(self, maps: np.ndarray) -> np.ndarray:
        """A thresholded copy of a 3D map or 4D maps (dtype and memory layout kept)."""
        out = maps.copy(order="K")
        if self.mask is not None:
            out[~self.mask] = 0.0
        c = self.cutoff
        if self.rule == "magnitude":
            drop = np.abs(out) < c
        elif self.rule == "two_sided":
            drop = (-c < out) & (out < c)
        elif self.rule == "above":
            drop = out < c
        else:
            drop = out > c
        out[drop] = 0.0
        return out


def _check_real(threshold, name: str = "threshold") -> float:
    if isinstance(threshold, bool) or not isinstance(threshold, numbers.Real):
        raise TypeError(f"'{name}' must be a number; got {threshold!r}")
    return float(threshold)


def ratio_threshold(maps: np.ndarray, ratio: float) -> Threshold:
    """Threshold keeping the ``ratio`` x n_voxels strongest voxels across all maps.

    Parameters
    ----------
    maps : ndarray, shape (x, y, z, n_maps)
        Finite map values (not modified).
    ratio : float
        In ``(0, n_maps]``.
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
    # |maps| of the whole 4D array, background included, but only its non-zero part is kept.
    strong, n_zeros = [], 0
    for k in range(n_maps):
        magnitude = np.abs(maps[..., k])
        values = magnitude[magnitude != 0]
        strong.append(values)
        n_zeros += magnitude.size - values.size
    cutoff = score_at_percentile(
        np.concatenate(strong), 100.0 - (100.0 / n_maps) * ratio, n_zeros=n_zeros
    )
    return Threshold(cutoff=cutoff, rule="magnitude")


def value_threshold(
    maps: np.ndarray, threshold, *, two_sided: bool = False, mask: np.ndarray | None = None
) -> Threshold:
    """Threshold at a value, or at a percentile given as ``"q%"``.

    Parameters
    ----------
    maps : ndarray, shape (x, y, z, n_maps)
        Finite map values (not modified).
    threshold : float or str
        A value, or a percentile of the (in-mask) values given as ``"q%"``.
    two_sided : bool
        Keep strong negative values too (``|v| >= t``).
    mask : ndarray of bool, shape (x, y, z), optional
        Voxels outside are zeroed and percentiles use in-mask values only.
    """
    values = maps if mask is None else maps[mask]
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
            if t > 100:
                raise ValueError(
                    "percentile must be in the range [0, 100]: 'threshold' is "
                    f"{threshold[:-1]} with thresholding_strategy='percentile'"
                )
            t = float(score_at_percentile(ref, t) + 1e-5)
        elif ref.size and t > ref.max():
            warnings.warn(
                f"The given float value must not exceed {ref.max()}. "
                f"But, you have given threshold={t}.",
                UserWarning,
                stacklevel=3,
            )
        return Threshold(cutoff=t, rule="two_sided" if two_sided else "above", mask=mask)
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
    return Threshold(cutoff=t, rule="below", mask=mask)


def resolve_threshold(
    maps: np.ndarray,
    *,
    strategy: str,
    threshold,
    two_sided: bool = False,
    mask: np.ndarray | None = None,
) -> Threshold:
    """Resolve one of :data:`STRATEGIES` on 4D maps into a :class:`Threshold`.

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
        Used by ``img_value`` and ``percentile`` only (``ratio_n_voxels`` ignores it; the mask
        is applied when the maps are split).
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
        return ratio_threshold(maps, threshold)
    if strategy == "percentile":
        return value_threshold(maps, f"{threshold}%", two_sided=two_sided, mask=mask)
    return value_threshold(maps, threshold, two_sided=two_sided, mask=mask)


def threshold_maps(maps: np.ndarray, **options) -> np.ndarray:
    """Thresholded copy of 4D maps; ``options`` as :func:`resolve_threshold`."""
    return resolve_threshold(maps, **options).apply(maps)
