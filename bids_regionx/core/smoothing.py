"""Isotropic Gaussian smoothing given a FWHM in mm (voxel-size aware)."""

from __future__ import annotations

import warnings

import numpy as np
from scipy.ndimage import gaussian_filter1d

from bids_regionx.core.images import voxel_sizes_mm

#: FWHM / sigma for a Gaussian: sqrt(8 ln 2).
FWHM_OVER_SIGMA = np.sqrt(8 * np.log(2))


def fwhm_to_sigma_voxels(affine: np.ndarray, fwhm: float | None) -> np.ndarray:
    """Gaussian sigma along each array axis, in voxels, for a FWHM in mm.

    Parameters
    ----------
    affine : ndarray, shape (4, 4)
        Voxel-to-mm affine (voxel sizes are its column norms, so oblique grids work).
    fwhm : float or None
        Full width at half maximum in mm; None or 0 means no smoothing.

    Returns
    -------
    ndarray, shape (3,)
    """
    if not fwhm:
        return np.zeros(3)
    return np.asarray([fwhm], dtype=float) / (FWHM_OVER_SIGMA * voxel_sizes_mm(affine))


def kernel_radius_voxels(sigma: float) -> int:
    """Half-width of scipy's truncated Gaussian kernel (``truncate=4``) in voxels."""
    return int(4.0 * float(sigma) + 0.5) if sigma > 0 else 0


def smooth_array(
    arr: np.ndarray, affine: np.ndarray, fwhm: float | None, *, copy: bool = True
) -> np.ndarray:
    """Smooth the first three axes of a 3D/4D array with a Gaussian of ``fwhm`` mm.

    Integer arrays are smoothed as float32 (float64 for 64-bit integers); NaN/inf become 0.
    The three separable passes run in place in the array's dtype with scipy's "reflect"
    boundary, the same sequence of operations as the reference, so results are bit-identical.

    Parameters
    ----------
    arr : ndarray, shape (x, y, z[, t])
    affine : ndarray, shape (4, 4)
    fwhm : float or None
        In mm. ``0`` warns and means no smoothing.
    copy : bool
        Work on a copy (the input is never modified when True).

    Returns
    -------
    ndarray
        Smoothed float array, same shape.
    """
    if arr.dtype.kind in "iub":
        arr = arr.astype(np.float64 if arr.dtype.itemsize == 8 else np.float32)
    elif copy:
        arr = arr.copy()
    if arr.dtype.kind == "f":
        bad = ~np.isfinite(arr)
        if bad.any():
            arr[bad] = 0
    if isinstance(fwhm, (int, float)) and not isinstance(fwhm, bool) and fwhm == 0:
        warnings.warn(
            "The parameter 'fwhm' for smoothing is specified as 0. "
            "Setting it to None (no smoothing will be performed)",
            stacklevel=2,
        )
        fwhm = None
    for axis, sigma in enumerate(fwhm_to_sigma_voxels(affine, fwhm)):
        if sigma > 0.0:
            gaussian_filter1d(arr, sigma, output=arr, axis=axis)
    return arr
