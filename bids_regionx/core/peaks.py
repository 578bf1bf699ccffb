"""Local maxima used as random-walker seeds.

This is the reference's own peak finder, not scikit-image's ``peak_local_max``: a voxel is a
peak when it equals the maximum of its ``(2 * min_distance + 1)``-wide cube (zero outside the
volume) and exceeds ``max(threshold_rel * max(peaks), threshold_abs)``. Plateaus keep all their
voxels; there is no border exclusion and no distance-based suppression (spec trap 10).
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import maximum_filter

from bids_regionx.core.images import bounding_box


def peak_mask(
    image: np.ndarray,
    *,
    min_distance: int = 10,
    threshold_abs: float = 0,
    threshold_rel: float = 0.1,
    outside_is_zero: bool = False,
) -> np.ndarray:
    """Boolean mask of local maxima.

    Parameters
    ----------
    image : ndarray, shape (x, y, z)
        Smoothed map.
    min_distance : int
        Half-width of the maximum-filter window, in voxels (whatever the voxel size).
    threshold_abs, threshold_rel : float
        A peak must exceed ``max(threshold_rel * max_peak, threshold_abs)``; the product is
        taken in ``image``'s dtype.
    outside_is_zero : bool
        ``image`` is a crop of a larger volume that is exactly zero outside it (the crop
        reaches at least ``min_distance`` voxels beyond any non-zero value, or the volume
        border). The "constant image" test then reads "all zero".

    Returns
    -------
    ndarray of bool, shape ``image.shape``
    """
    out = np.zeros(image.shape, dtype=bool)
    if outside_is_zero:
        if not np.any(image):
            return out
    elif np.all(image == image.flat[0]):
        return out
    size = 2 * min_distance + 1
    top = np.max(image)
    if top > 0:
        # The top peak is the image's maximum (its window holds nothing larger, and the
        # zeros around the volume are smaller), so the threshold is known before filtering.
        threshold = max(top * threshold_rel, threshold_abs)
        if threshold >= 0:
            _mark_peaks_above(image, threshold, size, out)
            return out
    window_max = maximum_filter(image, size=size, mode="constant")
    candidates = image * (image == window_max)
    top = np.max(candidates)
    if outside_is_zero:
        # Outside the crop the candidates are zeros, which take part in the maximum.
        top = max(top, candidates.dtype.type(0))
    threshold = max(top * threshold_rel, threshold_abs)
    out[candidates > threshold] = True
    return out


def _mark_peaks_above(image: np.ndarray, threshold, size: int, out: np.ndarray) -> None:
    """Set ``out`` where ``image > threshold`` (>= 0) equals the maximum of its window.

    Only such voxels can be peaks, and for them the window's values <= ``threshold`` (and the
    zero padding) cannot change the outcome: ``image`` is below its window's maximum iff
    some value above it, hence above ``threshold``, shares the window. So the maximum filter
    runs on the bounding box of ``image > threshold`` alone, with zero padding around it,
    a fraction of the image for peaked maps.
    """
    above = image > threshold
    box = bounding_box(above)
    if box is None:
        return
    crop = image[box]
    window_max = maximum_filter(crop, size=size, mode="constant")
    out[box] = above[box] & (crop == window_max)
