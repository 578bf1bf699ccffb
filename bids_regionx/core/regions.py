"""Splitting thresholded maps into spatially separate regions.

For each map, in order, voxels are grouped into connected components (``connected_components``)
or into random-walker basins grown from the peaks of the smoothed map (``local_regions``);
groups larger than ``min_region_size`` mm³ become regions, each one volume of the output that
holds the map's values on the region and 0 elsewhere. The result and the parent-map index are
identical to the reference's (spec §5), region order included.

Everything per map runs on the bounding box of the map's non-zero voxels (plus the smoothing
kernel's reach for ``local_regions``): labelling, smoothing, peak finding and the random walker
give the same numbers on that crop as on the whole volume, at a fraction of the cost. Maps are
independent, so they are processed by a pool of threads when the BLAS library is
single-threaded (the random walker's dot products then have the same rounding whatever the
thread that computes them; with a multi-threaded BLAS the maps run one after the other so
results still equal the reference's in that configuration).
"""

from __future__ import annotations

import os
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from bids_regionx.core.images import bounding_box, voxel_volume_mm3
from bids_regionx.core.peaks import peak_mask
from bids_regionx.core.random_walker import random_walker, walker_std
from bids_regionx.core.smoothing import fwhm_to_sigma_voxels, kernel_radius_voxels, smooth_array
from bids_regionx.core.thresholding import Threshold

EXTRACTORS = ("connected_components", "local_regions")

Box = tuple[slice, slice, slice]


@dataclass(frozen=True)
class RegionSplit:
    """Regions extracted from a set of maps.

    Attributes
    ----------
    regions : ndarray of float32, shape (x, y, z, n_regions), F-ordered
        One region per volume, holding the parent map's values on the region and 0 elsewhere.
    index : list of int
        Parent map of each region (non-decreasing).
    n_voxels : ndarray of int, shape (n_regions,)
        Size of each region in voxels.
    """

    regions: np.ndarray
    index: list[int]
    n_voxels: np.ndarray


@dataclass(frozen=True)
class _Piece:
    """One region of one map: where it lies and which voxels of that box it holds."""

    map_index: int
    box: Box
    inside: np.ndarray
    n_voxels: int
    values: np.ndarray  # the (thresholded, masked) map on ``box``


def _grow(box: Box, margin: tuple[int, ...], shape: tuple[int, ...]) -> Box:
    return tuple(
        slice(max(s.start - m, 0), min(s.stop + m, n))
        for s, m, n in zip(box, margin, shape, strict=True)
    )


def _is_whole(box: Box, shape: tuple[int, ...]) -> bool:
    return all(s.start == 0 and s.stop == n for s, n in zip(box, shape, strict=True))


def _local_region_labels(m, affine, smoothing_fwhm, support, warn) -> np.ndarray:
    """Random-walker labels of one map on its support box (-1 replaced by 0)."""
    reach = tuple(kernel_radius_voxels(s) for s in fwhm_to_sigma_voxels(affine, smoothing_fwhm))
    # The smoothed map is exactly 0 beyond the kernel's reach, so its peaks lie in this crop,
    # the "reflect" boundary only ever reflects zeros, and the maximum filter's zero padding
    # outside the crop is the truth.
    crop = _grow(support, reach, m.shape)
    smoothed = smooth_array(m[crop], affine, smoothing_fwhm)
    peaks = peak_mask(smoothed, outside_is_zero=not _is_whole(crop, m.shape))
    seeds, _ = ndimage.label(peaks)
    seeds[m[crop] == 0] = -1
    # Seeds off the map's support are now -1, so the walker only needs the support box.
    inner = tuple(
        slice(s.start - c.start, s.stop - c.start) for s, c in zip(support, crop, strict=True)
    )
    walked = random_walker(
        m[support],
        seeds[inner],
        std=walker_std(m),
        cropped=not _is_whole(support, m.shape),
        warn=warn,
    )
    walked[walked == -1] = 0
    return walked


def _split_one(k, m, affine, extractor, min_voxels, smoothing_fwhm, threshold, mask):
    """Regions of map ``k``, and the warnings raised on the way (emitted by the caller)."""
    messages: list[str] = []
    if threshold is not None:
        m = threshold.apply(m)
    if mask is not None:
        m = m.copy(order="K") if threshold is None else m
        m[~mask] = 0.0
    support = bounding_box(m != 0)
    if support is None:
        return [], messages
    if extractor == "local_regions":
        labels = _local_region_labels(m, affine, smoothing_fwhm, support, messages.append)
    else:
        labels, _ = ndimage.label(m[support])
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    # A copy of the support box only: a view would keep this map's whole thresholded copy
    # alive until every region has been assembled.
    values = m[support].copy(order="K")
    pieces = [
        _Piece(k, support, labels == label_id, int(sizes[label_id]), values)
        for label_id in np.flatnonzero(sizes > min_voxels)
    ]
    return pieces, messages


def _blas_is_single_threaded() -> bool:
    from threadpoolctl import threadpool_info

    return all(
        pool.get("num_threads", 1) == 1
        for pool in threadpool_info()
        if pool.get("user_api") == "blas"
    )


def default_n_threads() -> int:
    """Threads for per-map work: the CPUs this process may use if BLAS is single-threaded."""
    if not _blas_is_single_threaded():
        return 1
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def split_maps(
    maps: np.ndarray,
    affine: np.ndarray,
    *,
    extractor: str = "local_regions",
    min_region_size: float = 1350,
    smoothing_fwhm: float | None = 6,
    mask: np.ndarray | None = None,
    threshold: Threshold | None = None,
    n_threads: int | None = None,
) -> RegionSplit | None:
    """Split each map into separate regions.

    Parameters
    ----------
    maps : ndarray, shape (x, y, z, n_maps)
        Maps (not modified), thresholded already or through ``threshold``. Positive and
        negative voxels of a map can join the same region.
    affine : ndarray, shape (4, 4)
        Voxel-to-mm affine (for ``min_region_size`` and the smoothing kernel).
    extractor : {"local_regions", "connected_components"}
        ``connected_components``: 6-connected components. ``local_regions``: random-walker
        segmentation seeded at the peaks of the map smoothed by ``smoothing_fwhm``; connected
        pieces without a peak are dropped.
    min_region_size : float
        Regions must be strictly larger than this volume, in mm³.
    smoothing_fwhm : float or None
        FWHM in mm of the smoothing used to find peaks (``local_regions`` only).
    mask : ndarray of bool, shape (x, y, z), optional
        Map voxels outside it are set to 0 before splitting.
    threshold : Threshold, optional
        Applied to each map first (so thresholded copies of all maps never coexist).
    n_threads : int, optional
        Maps processed concurrently; default :func:`default_n_threads`.

    Returns
    -------
    RegionSplit or None
        None (with a warning) when no region survives.
    """
    if extractor not in EXTRACTORS:
        raise ValueError(
            f"'extract_type' must be one of {list(EXTRACTORS)}.\n{extractor!r} was provided."
        )
    if maps.ndim == 3:
        maps = maps[..., np.newaxis]
    min_voxels = min_region_size / voxel_volume_mm3(affine)
    if extractor == "local_regions" and smoothing_fwhm is not None and smoothing_fwhm == 0:
        for _ in range(maps.shape[-1]):  # the reference warns once per map
            warnings.warn(
                "The parameter 'fwhm' for smoothing is specified as 0. "
                "Setting it to None (no smoothing will be performed)",
                stacklevel=2,
            )
        smoothing_fwhm = None

    def work(k):
        return _split_one(
            k, maps[..., k], affine, extractor, min_voxels, smoothing_fwhm, threshold, mask
        )

    n_maps = maps.shape[-1]
    n_threads = min(n_threads or default_n_threads(), n_maps)
    if n_threads > 1:
        with ThreadPoolExecutor(n_threads) as pool:
            results = list(pool.map(work, range(n_maps)))
    else:
        results = [work(k) for k in range(n_maps)]

    pieces: list[_Piece] = []
    for map_pieces, messages in results:
        for message in messages:
            warnings.warn(message, UserWarning, stacklevel=2)
        pieces.extend(map_pieces)
    if not pieces:
        warnings.warn("No supra threshold regions was found", UserWarning, stacklevel=2)
        return None
    regions = np.zeros((*maps.shape[:3], len(pieces)), dtype=np.float32, order="F")
    for i, piece in enumerate(pieces):
        # bool * value as in the reference (same signed zeros), then the float32 cast.
        np.multiply(piece.inside, piece.values, out=regions[piece.box + (i,)], casting="unsafe")
    return RegionSplit(
        regions=regions,
        index=[p.map_index for p in pieces],
        n_voxels=np.array([p.n_voxels for p in pieces], dtype=np.int64),
    )
