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

The output is allocated as fresh zero pages, and each region writes only its own voxels and
the -0.0 of its parent map (the reference's ``bool * value`` products), by the same threads.
"""

from __future__ import annotations

import os
import warnings
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
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
    value_range : tuple of (numpy.float32 or None)
        ``(regions.min(), regions.max())`` where known without reading ``regions``: the most
        negative and the most positive region value; None when that extreme is a zero, whose
        sign only a pass over ``regions`` can tell.
    """

    regions: np.ndarray
    index: list[int]
    n_voxels: np.ndarray
    value_range: tuple = (None, None)


@dataclass(frozen=True)
class _Piece:
    """One region of one map, as the voxels its output volume must hold besides +0.0.

    Voxels are flat Fortran-order indices into one volume of the output, ascending.
    """

    map_index: int
    index: np.ndarray  # the region's voxels
    values: np.ndarray  # the map's values there (``True * value == value``)
    # The map's voxels with the sign bit set (None if there are none, shared by the map's
    # pieces): outside the region the reference's ``False * value`` leaves -0.0 there.
    signed: np.ndarray | None


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
    # Peaks are few: label their bounding box only (same components, same raster order).
    seeds = np.zeros(peaks.shape, dtype=np.int32)
    peak_box = bounding_box(peaks)
    if peak_box is not None:
        seeds[peak_box], _ = ndimage.label(peaks[peak_box])
    # Seeds off the map's support fall on zeros, which become -1: the walker only needs the
    # support box.
    inner = tuple(
        slice(s.start - c.start, s.stop - c.start) for s, c in zip(support, crop, strict=True)
    )
    seeds = seeds[inner]
    seeds[m[support] == 0] = -1
    walked = random_walker(
        m[support],
        seeds,
        std=walker_std(m),
        cropped=not _is_whole(support, m.shape),
        warn=warn,
    )
    walked[walked == -1] = 0
    return walked


def _split_one(k, m, affine, extractor, min_voxels, smoothing_fwhm, threshold, mask):
    """Regions of map ``k``, and the warnings raised on the way (emitted by the caller).

    ``m`` is the raw map (a view): thresholding and the mask set voxels to +0.0, but only the
    random walker needs the thresholded map itself; otherwise the voxels that survive are read
    from ``m`` directly.
    """
    messages: list[str] = []
    dropped = None if threshold is None else threshold.dropped(m)
    if mask is not None:
        dropped = ~mask if dropped is None else dropped | ~mask
    # Do zeros survive thresholding? Then they keep their sign, and a -0.0 can lie anywhere.
    keeps_zeros = threshold is None or threshold.keeps_zeros(m.dtype)
    if dropped is None:
        nonzero = m != 0
    else:
        nonzero = ~dropped
        if keeps_zeros:
            nonzero &= m != 0
    support = bounding_box(nonzero)
    if support is None:
        return [], messages
    if extractor == "local_regions":
        if dropped is not None:
            m = m.copy(order="K")
            np.copyto(m, 0.0, where=dropped, casting="unsafe")
        labels = _local_region_labels(m, affine, smoothing_fwhm, support, messages.append)
    else:
        # Labels depend only on which voxels are non-zero; scipy scans a C-ordered boolean
        # array faster than the Fortran-ordered map.
        labels, _ = ndimage.label(np.ascontiguousarray(nonzero[support]))

    # Every labelled voxel is non-zero: list those (flat Fortran-order indices in the volume,
    # the layout of an output volume) with their label and value.
    index = np.flatnonzero(nonzero.ravel(order="F"))
    coords = np.unravel_index(index, m.shape, order="F")
    ids = labels[tuple(c - s.start for c, s in zip(coords, support, strict=True))]
    values = m[coords]
    sizes = np.bincount(ids)
    sizes[0] = 0
    kept = np.flatnonzero(sizes > min_voxels)
    if kept.size == 0:
        return [], messages
    signed = None
    if m.dtype.kind == "f":
        if keeps_zeros:
            negative = np.signbit(m)
            if dropped is not None:
                negative &= ~dropped
            signed = np.flatnonzero(negative.ravel(order="F"))
        else:
            # Every zero is +0.0 now: only negative values have the sign bit.
            signed = index[np.signbit(values)]
        if signed.size == 0:
            signed = None
    pieces = []
    for label_id in kept:
        region = ids == label_id
        pieces.append(_Piece(k, index[region], values[region], signed))
    return pieces, messages


def _write_region(volume: np.ndarray, piece: _Piece) -> None:
    """Write a region into ``volume`` (flat, Fortran order, all +0.0 on entry).

    The reference computes ``(labels == id) * map`` over the whole volume: the map's values on
    the region, -0.0 wherever the map's sign bit is set outside it, +0.0 elsewhere. Only the
    first two are written, a few percent of the volume scattered in it, instead of the parent
    map's whole bounding box: the output is mostly +0.0, and its pages that hold neither stay
    untouched zero pages (first-touching memory is most of what assembling the output costs).
    """
    if piece.signed is not None:
        volume[piece.signed] = -0.0
    # Region voxels last (a negative value overwrites its -0.0); cast to float32 as the
    # reference's concatenation of the regions does.
    volume[piece.index] = piece.values


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
    if min_region_size < 0:
        raise ValueError(f"'min_region_size' must be >= 0; got {min_region_size}")
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
    # One pool for both phases (maps, then region writes); serial when one thread suffices.
    with ThreadPoolExecutor(n_threads) if n_threads > 1 else nullcontext() as pool:
        run = map if pool is None else pool.map
        results = list(run(work, range(n_maps)))

        pieces: list[_Piece] = []
        for map_pieces, messages in results:
            for message in messages:
                warnings.warn(message, UserWarning, stacklevel=2)
            pieces.extend(map_pieces)
        if not pieces:
            warnings.warn("No supra threshold regions was found", UserWarning, stacklevel=2)
            return None
        # Fresh zero pages from the system (np.zeros is calloc): those no region writes to
        # are never touched.
        n_voxels = int(np.prod(maps.shape[:3]))
        flat = np.zeros(n_voxels * len(pieces), dtype=np.float32)
        regions = flat.reshape((*maps.shape[:3], len(pieces)), order="F")  # a view

        def write(i):
            _write_region(flat[i * n_voxels : (i + 1) * n_voxels], pieces[i])

        list(run(write, range(len(pieces))))
    # NaN, if any, propagates (as in regions.min()) and then counts as unknown.
    low = np.float32(np.min([np.min(p.values) for p in pieces]))
    high = np.float32(np.max([np.max(p.values) for p in pieces]))
    return RegionSplit(
        regions=regions,
        index=[p.map_index for p in pieces],
        n_voxels=np.array([p.index.size for p in pieces], dtype=np.int64),
        value_range=(low if low < 0 else None, high if high > 0 else None),
    )
