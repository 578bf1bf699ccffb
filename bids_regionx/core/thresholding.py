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
from concurrent.futures import ThreadPoolExecutor
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
    return _interpolated(
        flat.size + n_zeros, q, lambda ranks: _order_statistics(flat, ranks, n_zeros)
    )


def _interpolated(size: int, q: float, order_statistics) -> np.float64:
    """scipy's "fraction" interpolation at percentile ``q`` of ``size`` values.

    ``order_statistics(ranks)`` returns the values of 0-based ascending ``ranks`` (one rank,
    or two consecutive ones) as an array of the data's dtype.
    """
    if size == 0:
        return np.float64(np.nan)
    idx = q / 100.0 * (size - 1)
    i = int(idx)
    if i == idx:
        low = order_statistics([i])
        # Same expression as scipy: (value * array(1)) / 1.0 promotes to float64.
        return np.add.reduce(low * np.array(1), axis=0) / 1.0
    pair = order_statistics([i, i + 1])
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
        np.copyto(out, 0.0, where=self.dropped(maps), casting="unsafe")
        return out

    def dropped(self, maps: np.ndarray) -> np.ndarray:
        """Boolean array, shaped like ``maps``: the voxels :meth:`apply` sets to +0.0."""
        drop = self._drops(maps)
        if self.mask is not None:
            drop |= ~self.mask.reshape(self.mask.shape + (1,) * (maps.ndim - self.mask.ndim))
        return drop

    def keeps_zeros(self, dtype) -> bool:
        """Whether zeros of ``dtype`` survive (a -0.0 then stays -0.0, else it becomes +0.0).

        Only a zero cut-off keeps them (``ratio_n_voxels`` on maps with fewer non-zero values
        than the ratio asks for, or a threshold of 0).
        """
        return not self._drops(np.zeros(1, dtype=dtype))[0]

    def _drops(self, values: np.ndarray) -> np.ndarray:
        """Boolean array: which ``values`` the rule zeroes."""
        c = self.cutoff
        if self.rule == "magnitude":
            return np.abs(values) < c
        if self.rule == "two_sided":
            return (-c < values) & (values < c)
        if self.rule == "above":
            return values < c
        return values > c


def _check_real(threshold, name: str = "threshold") -> float:
    if isinstance(threshold, bool) or not isinstance(threshold, numbers.Real):
        raise TypeError(f"'{name}' must be a number; got {threshold!r}")
    return float(threshold)


def ratio_threshold(maps: np.ndarray, ratio: float, *, n_threads: int = 1) -> Threshold:
    """Threshold keeping the ``ratio`` x n_voxels strongest voxels across all maps.

    Parameters
    ----------
    maps : ndarray, shape (x, y, z, n_maps)
        Finite map values (not modified).
    ratio : float
        In ``(0, n_maps]``.
    n_threads : int
        Threads scanning the maps (the cut-off does not depend on it).
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
    q = 100.0 - (100.0 / n_maps) * ratio
    cutoff = _strong_magnitude_percentile(maps, q, n_threads)
    if cutoff is None:
        # |maps| of the whole 4D array, background included; only its non-zero part is kept.
        strong, n_zeros = [], 0
        for k in range(n_maps):
            magnitude = np.abs(maps[..., k])
            values = magnitude[magnitude != 0]
            strong.append(values)
            n_zeros += magnitude.size - values.size
        cutoff = score_at_percentile(np.concatenate(strong), q, n_zeros=n_zeros)
    return Threshold(cutoff=cutoff, rule="magnitude")


#: About this many values of |maps| are sampled to bracket a percentile (see below).
_SAMPLE_SIZE = 200_000


def _strong_magnitude_percentile(
    maps: np.ndarray, q: float, n_threads: int = 1
) -> np.float64 | None:
    """``score_at_percentile(|maps|, q)`` from the values around the percentile, or None.

    Sorting (or partitioning) all of ``|maps|`` is not needed for two order statistics. A
    sample of ``|maps|`` brackets them with high probability between two magnitudes
    ``lower < upper``; one pass over the maps then counts the values below ``lower`` and
    collects those in ``[lower, upper)``, a few percent of the maps, among which the order
    statistics are selected with ranks shifted by that count. The counts are checked, so the
    result is exact whatever the sample: if the bracket misses, the upper bound is dropped
    and, failing that too, None is returned (the caller computes the full way). None is also
    returned when the lower bound would be 0 (the percentile falls among the zeros) and for
    non-float maps (whose ``abs`` can overflow).

    Parameters
    ----------
    maps : ndarray, shape (x, y, z, n_maps)
    q : float
        Percentile in [0, 100].
    n_threads : int
        Maps are scanned by this many threads.
    """
    size = maps.size
    if maps.dtype.kind != "f" or maps.ndim != 4 or size == 0:
        return None
    low_rank = int(q / 100.0 * (size - 1))  # the ranks _interpolated asks for
    high_rank = min(low_rank + 1, size - 1)
    # A strided sample in memory order; a prime stride larger than the volume's sides does
    # not alias with the grid (a regular 3D grid of samples did, by 10 %).
    step = _next_prime(size // _SAMPLE_SIZE) if size > 2 * _SAMPLE_SIZE else 1
    sample = np.abs(np.ravel(maps, order="K")[::step])
    n = sample.size
    # The sample ranks of the two order statistics, four standard deviations apart and more.
    spread = 4.0 * np.sqrt(n * (low_rank / size) * (1 - low_rank / size)) + 16
    k_low = int(n * low_rank / size - spread)
    k_high = int(np.ceil(n * (high_rank + 1) / size + spread))
    if k_low < 0:
        return None
    kth = [k_low] if k_high >= n else [k_low, k_high]
    bounds = np.partition(sample, kth)[kth]
    lower = bounds[0]
    if not lower > 0:
        return None
    for upper in (bounds[1:2], []):  # then without an upper bound, if the bracket missed
        n_below, values = _bracket(maps, lower, upper[0] if len(upper) else None, n_threads)
        if n_below <= low_rank and high_rank - n_below < values.size:
            break
    else:
        return None

    def order_statistics(ranks):
        shifted = [r - n_below for r in ranks]
        values.partition(shifted)
        return values[shifted]

    return _interpolated(size, q, order_statistics)


def _bracket(maps, lower, upper, n_threads: int) -> tuple[int, np.ndarray]:
    """Count the ``|maps|`` values below ``lower``; collect those in ``[lower, upper)``.

    ``upper=None`` means no upper bound. A NaN counts as the largest value (as in a sort).
    """
    n_maps = maps.shape[-1]

    def scan(ks):
        # Buffers reused map after map, in the maps' own layout (sequential passes).
        magnitude = np.empty_like(maps[..., 0])
        flat = magnitude.ravel(order="K")  # a view: empty_like is contiguous
        below = np.empty(flat.shape, dtype=bool)
        inside = np.empty(flat.shape, dtype=bool)
        n_below, values = 0, []
        for k in ks:
            np.abs(maps[..., k], out=magnitude)
            np.less(flat, lower, out=below)
            n_below += np.count_nonzero(below)
            if upper is None:
                np.logical_not(below, out=inside)
            else:
                np.less(flat, upper, out=inside)
                inside &= ~below
            values.append(flat[inside])
        return n_below, values

    n_threads = max(1, min(n_threads, n_maps))
    chunks = np.array_split(np.arange(n_maps), n_threads)
    if n_threads == 1:
        results = [scan(chunks[0])]
    else:
        with ThreadPoolExecutor(n_threads) as pool:
            results = list(pool.map(scan, chunks))
    n_below = sum(r[0] for r in results)
    return n_below, np.concatenate([v for r in results for v in r[1]])


def _next_prime(n: int) -> int:
    """The smallest prime >= ``n`` (n >= 2)."""
    while any(n % d == 0 for d in range(2, int(n**0.5) + 1)):
        n += 1
    return n


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
    n_threads: int = 1,
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
    n_threads : int
        Threads for ``ratio_n_voxels`` (the result does not depend on it).
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
        return ratio_threshold(maps, threshold, n_threads=n_threads)
    if strategy == "percentile":
        return value_threshold(maps, f"{threshold}%", two_sided=two_sided, mask=mask)
    return value_threshold(maps, threshold, two_sided=two_sided, mask=mask)


def threshold_maps(maps: np.ndarray, **options) -> np.ndarray:
    """Thresholded copy of 4D maps; ``options`` as :func:`resolve_threshold`."""
    return resolve_threshold(maps, **options).apply(maps)
