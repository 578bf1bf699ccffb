"""Synthetic 4D maps with known structure, for tests, benchmarks and the demo.

Three families, as the product meets them in the wild:

* :func:`ica_like_maps` -- signed components, each a few Gaussian blobs plus smooth noise inside
  the brain (group ICA / dictionary learning output);
* :func:`atlas_like_maps` -- non-negative probabilistic maps in ``[0, 1]`` with overlapping
  compact blobs (a probabilistic atlas such as DiFuMo);
* :func:`binary_network_maps` -- 0/1 network maps (thresholded network templates).

All generators are deterministic for a given ``seed``.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

#: MNI152 2 mm grid (91 x 109 x 91), LAS orientation as distributed by FSL / nilearn.
MNI_2MM_SHAPE = (91, 109, 91)
MNI_2MM_AFFINE = np.array(
    [[-2.0, 0.0, 0.0, 90.0], [0.0, 2.0, 0.0, -126.0], [0.0, 0.0, 2.0, -72.0], [0, 0, 0, 1.0]]
)


def grid_affine(voxel_size: tuple[float, float, float], shape: tuple[int, int, int]) -> np.ndarray:
    """Return an affine centring a grid of ``shape`` voxels of ``voxel_size`` mm on the origin.

    Parameters
    ----------
    voxel_size : tuple of 3 float
        Voxel size in mm along each axis.
    shape : tuple of 3 int
        Grid shape in voxels.

    Returns
    -------
    ndarray, shape (4, 4)
        A diagonal (RAS) affine.
    """
    affine = np.diag([*map(float, voxel_size), 1.0])
    affine[:3, 3] = -np.asarray(voxel_size) * (np.asarray(shape) - 1) / 2.0
    return affine


def ellipsoid_mask(shape: tuple[int, int, int], fill: float = 0.8) -> np.ndarray:
    """Return a boolean ellipsoid "brain" filling ``fill`` of each half-axis.

    Parameters
    ----------
    shape : tuple of 3 int
        Grid shape in voxels.
    fill : float
        Ratio of each ellipsoid half-axis to the grid half-extent.

    Returns
    -------
    ndarray of bool, shape ``shape``
    """
    centre = (np.asarray(shape) - 1) / 2.0
    radii = np.maximum(centre * fill, 1.0)
    coords = np.ogrid[tuple(slice(0, n) for n in shape)]
    dist2 = sum(((c - centre[i]) / radii[i]) ** 2 for i, c in enumerate(coords))
    return dist2 <= 1.0


def _blob(shape, centre, sigma) -> np.ndarray:
    """Separable Gaussian blob of peak 1 (float64)."""
    parts = [
        np.exp(-0.5 * ((np.arange(n) - centre[i]) / sigma[i]) ** 2) for i, n in enumerate(shape)
    ]
    return parts[0][:, None, None] * parts[1][None, :, None] * parts[2][None, None, :]


def _random_centre(rng, brain, margin):
    """Pick a voxel inside ``brain`` at least ``margin`` voxels from the grid border."""
    idx = np.argwhere(brain)
    shape = np.asarray(brain.shape)
    ok = np.all((idx >= margin) & (idx < shape - margin), axis=1)
    idx = idx[ok] if ok.any() else idx
    return idx[rng.integers(len(idx))].astype(float)


def ica_like_maps(
    shape: tuple[int, int, int] = MNI_2MM_SHAPE,
    n_maps: int = 30,
    *,
    seed: int = 0,
    sigma_range: tuple[float, float] = (3.0, 7.0),
    n_blobs: tuple[int, int] = (2, 4),
    negative_fraction: float = 0.2,
    noise: float = 0.002,
    brain: np.ndarray | None = None,
) -> np.ndarray:
    """Signed ICA-like components.

    Each map holds ``n_blobs`` Gaussian blobs of width ``sigma_range`` voxels; a blob is negative
    with probability ``negative_fraction``. Smooth noise (Gaussian-filtered, 3 voxels) of
    standard deviation ``noise`` (relative to the peak) is added inside ``brain``; the
    background is exactly 0.

    Parameters
    ----------
    shape : tuple of 3 int
        Grid shape in voxels.
    n_maps : int
        Number of components.
    seed : int
        Seed of the random generator.
    sigma_range : tuple of 2 float
        Range of the blob standard deviations, in voxels.
    n_blobs : tuple of 2 int
        Inclusive range of the number of blobs per map.
    negative_fraction : float
        Probability that a blob is negative.
    noise : float
        Standard deviation of the smooth in-brain noise, relative to a blob's peak.
    brain : ndarray of bool, optional
        Support of the maps; defaults to :func:`ellipsoid_mask`.

    Returns
    -------
    ndarray of float32, shape ``(*shape, n_maps)``, F-ordered like a NIfTI file's data
    """
    rng = np.random.default_rng(seed)
    brain = ellipsoid_mask(shape) if brain is None else brain
    out = np.zeros((*shape, n_maps), dtype=np.float32, order="F")
    for k in range(n_maps):
        m = np.zeros(shape)
        for _ in range(rng.integers(n_blobs[0], n_blobs[1] + 1)):
            sigma = rng.uniform(*sigma_range, size=3)
            centre = _random_centre(rng, brain, margin=2)
            sign = -1.0 if rng.random() < negative_fraction else 1.0
            m += sign * rng.uniform(0.6, 1.0) * _blob(shape, centre, sigma)
        if noise:
            n = ndimage.gaussian_filter(rng.standard_normal(shape), 3.0)
            m += noise * n / n.std()
        m[~brain] = 0.0
        out[..., k] = m
    return out


def atlas_like_maps(
    shape: tuple[int, int, int] = MNI_2MM_SHAPE,
    n_maps: int = 20,
    *,
    seed: int = 0,
    sigma_range: tuple[float, float] = (2.5, 5.0),
    floor: float = 0.05,
    brain: np.ndarray | None = None,
) -> np.ndarray:
    """Non-negative probabilistic maps in ``[0, 1]`` (DiFuMo-like).

    Each map holds one or two blobs; values below ``floor`` are zero, so maps are sparse.

    Returns
    -------
    ndarray of float32, shape ``(*shape, n_maps)``, F-ordered
    """
    rng = np.random.default_rng(seed)
    brain = ellipsoid_mask(shape) if brain is None else brain
    out = np.zeros((*shape, n_maps), dtype=np.float32, order="F")
    for k in range(n_maps):
        m = np.zeros(shape)
        for _ in range(rng.integers(1, 3)):
            m = np.maximum(
                m, _blob(shape, _random_centre(rng, brain, 2), rng.uniform(*sigma_range, 3))
            )
        m[(m < floor) | ~brain] = 0.0
        out[..., k] = m
    return out


def binary_network_maps(
    shape: tuple[int, int, int] = MNI_2MM_SHAPE,
    n_maps: int = 8,
    *,
    seed: int = 0,
    sigma_range: tuple[float, float] = (2.5, 5.0),
    brain: np.ndarray | None = None,
) -> np.ndarray:
    """Binary 0/1 network maps of two to four compact nodes each.

    Returns
    -------
    ndarray of float32, shape ``(*shape, n_maps)``, F-ordered
    """
    rng = np.random.default_rng(seed)
    brain = ellipsoid_mask(shape) if brain is None else brain
    out = np.zeros((*shape, n_maps), dtype=np.float32, order="F")
    for k in range(n_maps):
        m = np.zeros(shape, dtype=bool)
        for _ in range(rng.integers(2, 5)):
            blob = _blob(shape, _random_centre(rng, brain, 2), rng.uniform(*sigma_range, 3))
            m |= blob > 0.5
        out[..., k] = m & brain
    return out
