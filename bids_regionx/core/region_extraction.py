"""From a 4D maps image to a region set: maps masking, thresholding, splitting.

The three steps are separate functions so the BIDS App runs each as its own node; the
estimator calls :func:`extract_regions`, which chains them.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import nibabel as nib
import numpy as np

from bids_regionx.core.images import get_data, load_img, new_img_like
from bids_regionx.core.masks import mask_on_grid
from bids_regionx.core.regions import EXTRACTORS, RegionSplit, default_n_threads, split_maps
from bids_regionx.core.thresholding import STRATEGIES, resolve_threshold


@dataclass(frozen=True)
class RegionParams:
    """Region-extraction options (the estimator's parameters of the same names).

    Attributes
    ----------
    threshold : float
        Ratio of brain volumes, value or percentile (see ``thresholding_strategy``).
    thresholding_strategy : {"ratio_n_voxels", "img_value", "percentile"}
    two_sided : bool
    extractor : {"local_regions", "connected_components"}
    smoothing_fwhm : float or None
        mm; for peak finding with ``local_regions``.
    min_region_size : float
        mm³; regions must be strictly larger.
    """

    threshold: float = 1.0
    thresholding_strategy: str = "ratio_n_voxels"
    two_sided: bool = False
    extractor: str = "local_regions"
    smoothing_fwhm: float | None = 6
    min_region_size: float = 1350

    def validate(self) -> None:
        """Raise a ValueError/TypeError naming the first invalid option."""
        if self.thresholding_strategy not in STRATEGIES:
            raise ValueError(
                f"'thresholding_strategy' must be one of {list(STRATEGIES)}.\n"
                f"{self.thresholding_strategy!r} was provided."
            )
        if self.extractor not in EXTRACTORS:
            raise ValueError(
                f"'extractor' must be one of {list(EXTRACTORS)}.\n{self.extractor!r} was provided."
            )
        if self.threshold is None or isinstance(self.threshold, str):
            raise ValueError(
                "The given input to threshold is not valid. Please submit a valid number "
                f"specific to either of the strategy in {list(STRATEGIES)}"
            )
        for name in ("min_region_size", "smoothing_fwhm"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise ValueError(f"'{name}' must be >= 0; got {value}")


def load_maps(maps_img, *, name: str = "maps_img") -> tuple[nib.Nifti1Image, np.ndarray]:
    """Load a 4D maps image and its data, with non-finite values set to 0 (with a warning).

    Returns
    -------
    img : nibabel image
    data : ndarray, shape (x, y, z, n_maps)
        The file's data (F-ordered) or a finite copy of it.

    Raises
    ------
    DimensionError
        The image is not 4D.
    ValueError
        The image has no non-zero value.
    """
    img = load_img(maps_img, name=name, ndim=4)
    data = get_data(img)
    if data.size == 0:
        raise ValueError(f"{name}: the maps image is empty (every value is 0)")
    # Two vectorised passes, no temporary: NaN propagates through min and max, an infinity
    # shows in one of them, and all-zero maps have min == max == 0.
    low, high = data.min(), data.max()
    if data.dtype.kind == "f" and not (np.isfinite(low) and np.isfinite(high)):
        warnings.warn(
            "Non-finite values detected. These values will be replaced with zeros.",
            stacklevel=2,
        )
        data = np.where(np.isfinite(data), data, 0).astype(data.dtype, order="F")
        low, high = data.min(), data.max()
    if low == 0 and high == 0:
        raise ValueError(f"{name}: the maps image is empty (every value is 0)")
    return img, data


def mask_maps(
    data: np.ndarray, affine: np.ndarray, mask_img: nib.Nifti1Image | None
) -> tuple[np.ndarray, np.ndarray | None]:
    """Put a mask on the maps' grid (nearest neighbour) and zero map voxels outside it.

    Returns
    -------
    masked : ndarray
        ``data`` itself when there is no mask, else a masked copy (same dtype and layout).
    mask : ndarray of bool or None
        The mask on the maps' grid.
    """
    if mask_img is None:
        return data, None
    mask = mask_on_grid(mask_img, affine, data.shape)
    masked = data.copy(order="K")
    masked[~mask] = 0
    return masked, mask


def extract_regions(
    maps_img,
    params: RegionParams,
    *,
    mask_img: nib.Nifti1Image | None = None,
    n_threads: int | None = None,
) -> tuple[nib.Nifti1Image, RegionSplit]:
    """Threshold a 4D maps image and split it into regions.

    Parameters
    ----------
    maps_img : path or image, 4D
    params : RegionParams
    mask_img : nibabel image, optional
        A binary mask (any grid; resampled to the maps' grid by nearest neighbour).
    n_threads : int, optional
        Maps processed concurrently (see :func:`bids_regionx.core.regions.split_maps`).

    Returns
    -------
    regions_img : nibabel.Nifti1Image
        4D float32, one region per volume, on the maps' grid with the maps' header.
    split : RegionSplit
        The regions, their parent map index and their sizes in voxels.

    Raises
    ------
    ValueError
        Invalid options, or no region survives (the message says which options to relax).
    """
    params.validate()
    img, data = load_maps(maps_img)
    mask = None if mask_img is None else mask_on_grid(mask_img, img.affine, data.shape)
    if n_threads is None:
        n_threads = default_n_threads()
    threshold = resolve_threshold(
        data,
        strategy=params.thresholding_strategy,
        threshold=params.threshold,
        two_sided=params.two_sided,
        # ratio_n_voxels ignores the mask (it is applied when splitting), as the reference.
        mask=mask,
        n_threads=n_threads,
    )
    split = split_maps(
        data,
        img.affine,
        threshold=threshold,
        extractor=params.extractor,
        min_region_size=params.min_region_size,
        smoothing_fwhm=params.smoothing_fwhm,
        mask=mask,
        n_threads=n_threads,
    )
    if split is None:
        raise ValueError(
            "No region survived thresholding and splitting "
            f"(thresholding_strategy={params.thresholding_strategy!r}, "
            f"threshold={params.threshold!r}, extractor={params.extractor!r}, "
            f"min_region_size={params.min_region_size!r} mm3): lower the threshold or "
            "min_region_size."
        )
    regions_img = new_img_like(
        img, split.regions, set_dtype=True, value_range=split.value_range
    )
    return regions_img, split
