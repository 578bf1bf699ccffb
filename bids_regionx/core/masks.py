"""Brain masks: binarisation, validation and putting a mask on another grid."""

from __future__ import annotations

import warnings

import nibabel as nib
import numpy as np

from bids_regionx.core.images import get_data, load_img, new_img_like, same_fov
from bids_regionx.core.resampling import resample_data


def binarize_mask(mask_img, *, name: str = "mask_img") -> nib.Nifti1Image:
    """Return a 3D uint8 mask image from any 3D/4D image.

    Non-zero voxels are in the mask; for a 4D image a voxel must be non-zero in every volume
    (so non-binary, multi-volume masks are accepted). NaN/inf count as 0, with a warning.

    Parameters
    ----------
    mask_img : path or image, 3D or 4D
    name : str
        Name used in error messages.

    Returns
    -------
    nibabel.Nifti1Image
        uint8 data in {0, 1}, shape (x, y, z), the input's affine and header.

    Raises
    ------
    ValueError
        The mask is empty, or (after binarisation) not a valid mask.
    """
    img = load_img(mask_img, name=name, atleast_4d=True)
    data = get_data(img)
    if data.dtype.kind == "f" and not np.all(np.isfinite(data)):
        warnings.warn(
            "Non-finite values detected. These values will be replaced with zeros.",
            stacklevel=2,
        )
        data = np.where(np.isfinite(data), data, 0)
    mask = data.astype(bool).all(axis=3)
    check_mask(mask, name=name)
    return new_img_like(img, mask)


def check_mask(mask: np.ndarray, *, name: str = "mask_img") -> None:
    """Raise a ValueError when a binary mask array selects no voxel."""
    if not mask.any():
        raise ValueError(
            f"The mask is invalid as it is empty: it masks all data ({name} has no non-zero "
            "voxel)."
        )


def mask_on_grid(
    mask_img: nib.Nifti1Image, affine: np.ndarray, shape: tuple[int, ...]
) -> np.ndarray:
    """Boolean mask array on the grid ``(affine, shape[:3])`` (nearest-neighbour resampling)."""
    data = get_data(mask_img)
    if not same_fov(mask_img.affine, mask_img.shape, affine, shape):
        data = resample_data(data, mask_img.affine, affine, shape[:3], interpolation="nearest")
    return np.asarray(data) != 0
