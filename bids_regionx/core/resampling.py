"""Resampling of 3D/4D data onto another voxel grid.

Reproduces the reference (``nilearn.image.resample_img``) step for step -- transform matrix,
output dtype and F-ordered allocation, ``scipy.ndimage.affine_transform`` per volume, then
clipping to the input range -- so that resampled maps, masks and BOLD data are identical to it.
"""

from __future__ import annotations

import warnings
from typing import Literal

import nibabel as nib
import numpy as np
from scipy import linalg, ndimage

from bids_regionx.core.images import get_data, new_img_like, same_fov

Interpolation = Literal["continuous", "linear", "nearest"]
_ORDER = {"continuous": 3, "linear": 1, "nearest": 0}


def _resampled_dtype(dtype: np.dtype, interpolation: str) -> np.dtype:
    # Spline interpolation is not defined for signed integers in scipy: the reference casts
    # int16/int32 to float32 and int64 to float64 (unsigned ints are left alone).
    if interpolation == "continuous" and dtype.kind == "i":
        name = dtype.name.replace("int", "float")
        if name in ("float8", "float16"):
            name = "float32"
        return np.dtype(name)
    return np.dtype(dtype).newbyteorder("=")


def resample_data(
    data: np.ndarray,
    source_affine: np.ndarray,
    target_affine: np.ndarray,
    target_shape: tuple[int, int, int],
    *,
    interpolation: Interpolation = "continuous",
    clip: bool = True,
) -> np.ndarray:
    """Resample a 3D or 4D array from one voxel grid to another.

    Parameters
    ----------
    data : ndarray, shape (x, y, z) or (x, y, z, t)
        Input data on the source grid.
    source_affine, target_affine : ndarray, shape (4, 4)
        Voxel-to-world (mm) affines of the source and target grids.
    target_shape : tuple of 3 int
        Target grid shape in voxels.
    interpolation : {"continuous", "linear", "nearest"}
        Cubic spline (with prefilter), trilinear, or nearest neighbour.
    clip : bool
        Clip the output to ``[min(data, 0), max(data, 0)]`` (spline overshoot).

    Returns
    -------
    ndarray, shape ``(*target_shape, *data.shape[3:])``, F-ordered.
    """
    if interpolation not in _ORDER:
        raise ValueError(
            f"interpolation must be one of {sorted(_ORDER)}; got {interpolation!r}"
        )
    target_affine = np.asarray(target_affine, dtype=float)
    source_affine = np.asarray(source_affine, dtype=float)
    target_shape = tuple(int(n) for n in target_shape)
    # Bounding-box check, as the reference does: the target must see some of the data.
    to_target = np.linalg.inv(target_affine).dot(source_affine)
    corners = np.array(np.meshgrid(*[[0, n - 1] for n in data.shape[:3]], indexing="ij"))
    corners = np.vstack([corners.reshape(3, -1), np.ones((1, 8))])
    upper = to_target.dot(corners)[:3].max(axis=1)
    if np.any(upper < 0):
        raise ValueError(
            "The field of view given by the target affine does not contain any of the data"
        )
    if np.all(target_affine == source_affine):
        transform = np.eye(4)
    else:
        transform = np.dot(linalg.inv(source_affine), target_affine)
    matrix, offset = transform[:3, :3], transform[:3, 3]
    if np.all(np.diag(np.diag(matrix)) == matrix):
        # A diagonal matrix takes scipy's faster zoom/shift path (and its exact arithmetic).
        matrix = np.diag(matrix)
    out_dtype = _resampled_dtype(data.dtype, interpolation)
    out = np.zeros(target_shape + data.shape[3:], dtype=out_dtype, order="F")
    order = _ORDER[interpolation]
    for idx in np.ndindex(*data.shape[3:]):
        vol = data[(slice(None),) * 3 + idx]
        if vol.dtype.kind == "f" and not np.all(np.isfinite(vol)):
            # Callers sanitise maps and BOLD before resampling; if NaN/inf still arrive they
            # become 0 rather than spreading through the spline.
            warnings.warn(
                "NaNs or infinite values are present in the data passed to resample; "
                "they are set to 0.",
                RuntimeWarning,
                stacklevel=2,
            )
            vol = np.where(np.isfinite(vol), vol, 0).astype(vol.dtype)
        ndimage.affine_transform(
            vol,
            matrix,
            offset=offset,
            output_shape=target_shape,
            output=out[(slice(None),) * 3 + idx],
            order=order,
            mode="constant",
            cval=0.0,
        )
    if clip and data.size:
        vmin = min(np.nanmin(data), 0)
        vmax = max(np.nanmax(data), 0)
        out.clip(vmin, vmax, out=out)
    return out


def resample_img(
    img: nib.Nifti1Image,
    target_affine: np.ndarray,
    target_shape: tuple[int, int, int],
    *,
    interpolation: Interpolation = "continuous",
) -> nib.Nifti1Image:
    """Resample an image onto ``(target_affine, target_shape)``.

    Returns ``img`` unchanged (no copy) when the grids already match; otherwise a new image
    with ``img``'s header. See :func:`resample_data` for the parameters.
    """
    if same_fov(img.affine, img.shape, target_affine, target_shape):
        return img
    data = resample_data(
        get_data(img),
        img.affine,
        target_affine,
        target_shape,
        interpolation=interpolation,
    )
    return new_img_like(img, data, np.asarray(target_affine, dtype=float).copy())
