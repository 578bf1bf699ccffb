"""How much of each region lies inside a run's brain mask."""

from __future__ import annotations

import numpy as np


def region_coverage(regions: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    """Fraction of each region's weight inside a mask.

    The weight is ``|value|``, so for binary maps this is the fraction of the region's voxels in
    the mask, and for probabilistic or ICA maps voxels count by how much they belong to the
    region (a region whose strong core is covered is well covered).

    Parameters
    ----------
    regions : ndarray, shape (x, y, z, n_regions)
        Regions on the run's grid.
    mask : ndarray of bool, shape (x, y, z), or None
        The run's brain mask (None: everything is covered).

    Returns
    -------
    ndarray of float64, shape (n_regions,)
        In [0, 1]; 0 for an empty region.
    """
    n = regions.shape[3]
    if mask is None:
        return np.ones(n)
    out = np.zeros(n)
    for r in range(n):
        weight = np.abs(np.asarray(regions[..., r], dtype=np.float64))
        total = weight.sum()
        if total > 0:
            out[r] = weight[mask].sum() / total
    return out
