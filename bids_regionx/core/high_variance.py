"""High-variance confounds of a 4D run, streamed over blocks of volumes (two sequential passes).

``nilearn.image.high_variance_confounds(img)`` (what the maskers use with
``high_variance_confounds=True``) loads the whole run as a ``(n_volumes, n_voxels)`` array,
background included, linearly detrends every voxel, keeps the voxels whose mean square is
strictly above the 98th percentile, and returns the 5 leading eigenvectors of ``X X^T / T`` of
those voxels. Reading such voxel blocks from a ``.nii.gz`` run would decompress the whole file
once per block.

This module computes the same quantities in float64 from blocks of *volumes*, in the order the
file stores them:

1. while the run is read for signal extraction, accumulate per voxel ``sum(x)``,
   ``sum(r * x)`` (``r`` the unit-norm centred ramp) and ``sum(x**2)``, on values shifted by the
   first volume so the subtraction below does not cancel; the mean square of the detrended
   series is ``(sum(x**2) - sum(x)**2 / T - sum(r * x)**2) / T``;
2. select the voxels above the percentile, read the run a second time keeping only those
   voxels' series, detrend them and solve the same eigenproblem.

The result equals nilearn's on a float64 run (the voxel ranking could only differ for values
tied to ~1e-12 at the percentile) and is closer to exact arithmetic than nilearn's float32
computation on a float32 run.
"""

from __future__ import annotations

import numpy as np
from scipy import linalg

from bids_regionx.core.bold import iter_blocks

__all__ = ["HighVarianceConfounds"]


class HighVarianceConfounds:
    """Accumulator for the high-variance confounds of one run.

    Parameters
    ----------
    shape : tuple of 3 int
        Voxel grid of the run.
    n_volumes : int
    n_confounds : int
        Number of confounds returned (nilearn's masker uses 5).
    percentile : float
        Percentage (0-100) of the highest-variance voxels kept (nilearn: 2).

    Examples
    --------
    >>> hv = HighVarianceConfounds(img.shape[:3], img.shape[3])   # doctest: +SKIP
    >>> signals = extract_signals(img, plan, on_block=hv.add)     # doctest: +SKIP
    >>> confounds = hv.confounds(img)                              # doctest: +SKIP
    """

    def __init__(self, shape, n_volumes: int, *, n_confounds: int = 5, percentile: float = 2.0):
        self.shape = tuple(int(n) for n in shape)
        self.n_volumes = int(n_volumes)
        self.n_confounds = n_confounds
        self.percentile = percentile
        # nilearn skips detrending (with a warning) for a single volume.
        self._detrend = self.n_volumes > 1
        ramp = np.arange(self.n_volumes, dtype=np.float64)
        ramp -= ramp.mean()
        norm = np.sqrt((ramp**2).sum())
        self._ramp = ramp / norm if norm > 0 else ramp
        self._shift: np.ndarray | None = None
        self._sums = [np.zeros(self.shape) for _ in range(3)]  # x, r x, x^2
        self._next = 0

    def add(self, start: int, block: np.ndarray) -> None:
        """Accumulate volumes ``start .. start + n - 1`` (a block of shape (x, y, z, n))."""
        if start != self._next:
            raise ValueError(f"blocks must arrive in order: expected volume {self._next}, "
                             f"got {start}")
        values = np.asarray(block, dtype=np.float64)
        if self._shift is None:
            self._shift = values[..., 0].copy()
        values = values - self._shift[..., np.newaxis]
        n = values.shape[3]
        self._sums[0] += values.sum(axis=3)
        self._sums[1] += values @ self._ramp[start : start + n]
        self._sums[2] += np.einsum("xyzt,xyzt->xyz", values, values)
        self._next = start + n

    def mean_squares(self) -> np.ndarray:
        """Mean over time of each voxel's squared (detrended) series, shape (x, y, z)."""
        if self._next != self.n_volumes:
            raise ValueError(f"only {self._next} of {self.n_volumes} volumes were added")
        total, along_ramp, squares = self._sums
        if not self._detrend:
            # No mean removal either: the raw values (the shift is the value itself).
            return self._shift**2
        residual = squares - total**2 / self.n_volumes - along_ramp**2
        # Rounding can leave a tiny negative residual for a constant voxel.
        return np.maximum(residual, 0.0) / self.n_volumes

    def selected(self) -> np.ndarray:
        """Voxels strictly above the ``100 - percentile`` percentile (bool, (x, y, z))."""
        variance = self.mean_squares()
        return variance > np.nanpercentile(variance, 100.0 - self.percentile)

    def confounds(self, img, *, volumes: int | None = None) -> np.ndarray:
        """Second pass over ``img``: the confounds, shape (n_volumes, n_confounds), float64."""
        from bids_regionx.core.signal import detrend

        keep = self.selected()
        # Boolean selection walks the grid in C order, the column order of nilearn's reshape.
        series = np.empty((self.n_volumes, int(keep.sum())))
        for start, block in iter_blocks(img, volumes=volumes):
            series[start : start + block.shape[3]] = block[keep].T
        if self._detrend:
            series = detrend(series, inplace=True)
        values, vectors = linalg.eigh(series @ series.T / self.n_volumes)
        order = np.argsort(values)[::-1]
        return vectors[:, order[: self.n_confounds]].copy()
