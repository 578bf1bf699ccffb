"""Region time series: least squares of the BOLD data on the region maps, streamed.

The reference (spec §6) Gaussian-smooths the whole 4D run, then solves, for every volume,
``min_x || M x - d ||`` over the maps' voxels with ``scipy.linalg.lstsq`` (``M``: voxels x maps).
Both steps are linear in the data, so with ``P = pinv(M)`` and ``G`` the smoothing operator the
signals are ``P G d = Z^T d`` with ``Z = G^T P^T`` computed once per (maps, grid, mask, FWHM):

* ``P`` comes from one small SVD per group of overlapping maps, on the group's voxels only
  (float64; singular values below the reference's LAPACK cutoff dropped), so it keeps the maps'
  sparsity: zero rows of ``M`` add nothing to a least-squares fit;
* ``G^T`` is applied to the few columns of ``P^T`` rather than ``G`` to hundreds of volumes: the
  separable, reflect-boundary Gaussian of the reference is written as one small matrix per axis;
* ``Z`` is a sparse ``(n_maps, n_rows)`` matrix over the voxels its columns touch, and each block
  of volumes contributes ``Z @ data[rows]`` in float64.

Results equal the reference's within its own float32 rounding (the reference rounds the smoothed
data to float32 and solves in float32 for float32 runs; this module accumulates in float64).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy import ndimage, sparse
from scipy.sparse.csgraph import connected_components

from bids_regionx.core.bold import iter_blocks
from bids_regionx.core.smoothing import fwhm_to_sigma_voxels, kernel_radius_voxels


@dataclass(frozen=True)
class ExtractionPlan:
    """Everything needed to turn volumes into region signals on one voxel grid.

    Attributes
    ----------
    shape : tuple of 3 int
        Voxel grid of the data the plan applies to.
    affine : ndarray, shape (4, 4)
    rows : ndarray of int64, shape (n_rows,)
        Flat (Fortran-order) indices of the voxels read from each volume, ascending.
    weights : scipy.sparse.csr_matrix, shape (n_signals, n_rows)
        ``signals = weights @ volume_data[rows]``.
    kept : ndarray of int, shape (n_signals,)
        Index of the map behind each signal (maps emptied by the mask are dropped).
    n_maps : int
        Number of maps the plan was built from.
    """

    shape: tuple[int, int, int]
    affine: np.ndarray
    rows: np.ndarray
    weights: sparse.csr_matrix
    kept: np.ndarray
    n_maps: int


def _smoothing_matrices(shape, affine, fwhm) -> list[np.ndarray | None]:
    """Per-axis matrices ``G_a`` of the reference's smoothing (``out = G_a @ line``).

    Built by filtering the identity with the same ``gaussian_filter1d`` call (reflect boundary,
    truncate 4), so the weights are scipy's own, boundary folding included.
    """
    mats: list[np.ndarray | None] = []
    for n, sigma in zip(shape, fwhm_to_sigma_voxels(affine, fwhm), strict=True):
        if sigma > 0:
            mats.append(ndimage.gaussian_filter1d(np.eye(n), sigma, axis=0))
        else:
            mats.append(None)
    return mats


def _adjoint_smooth(values: np.ndarray, box, grown, mats) -> np.ndarray:
    """Apply ``G^T`` to columns given on ``box``; the result lives on ``grown``.

    ``values`` has shape ``(*box_shape, n_columns)``; each axis is contracted with the block of
    ``G_a`` mapping the box's rows to the grown box's columns.
    """
    out = values
    for axis, mat in enumerate(mats):
        if mat is None:
            continue
        block = mat[box[axis], grown[axis]]  # (len(box), len(grown)) = G[i, j]
        out = np.moveaxis(np.tensordot(out, block, axes=([axis], [0])), -1, axis)
    return out


def _coupled_groups(design: sparse.csc_matrix) -> list[np.ndarray]:
    """Indices of maps grouped by shared voxels (maps in different groups never overlap)."""
    overlap = (design.T @ design).tocsr()
    n_groups, group = connected_components(overlap != 0, directed=False)
    return [np.flatnonzero(group == g) for g in range(n_groups)]


def _group_pinv_t(design: sparse.csc_matrix, rcond: float):
    """``pinv(M)^T`` restricted to each group of overlapping maps, on the group's voxels.

    ``M`` is block diagonal across groups, so its pseudo-inverse is too. Each group's
    pseudo-inverse comes from the SVD of its (voxels x maps) block; singular values below
    ``rcond`` times the largest singular value of all of ``M`` count as zero, which is the rank
    decision LAPACK's ``gelsd`` makes with ``cond = rcond``.

    Returns
    -------
    list of (map indices, voxel indices, pinv^T values of shape (n_voxels, n_maps))
    """
    decomposed = []
    top = 0.0
    for idx in _coupled_groups(design):
        sub = design[:, idx]
        support = np.unique(sub.indices)
        u, sv, vt = np.linalg.svd(sub[support].toarray(), full_matrices=False)
        decomposed.append((idx, support, u, sv, vt))
        top = max(top, float(sv.max()) if sv.size else 0.0)
    out = []
    for idx, support, u, sv, vt in decomposed:
        keep = sv > rcond * top
        out.append((idx, support, (u[:, keep] / sv[keep]) @ vt[keep]))
    return out


def plan_extraction(
    maps: np.ndarray,
    affine: np.ndarray,
    *,
    mask: np.ndarray | None = None,
    smoothing_fwhm: float | None = None,
    rcond: float = float(np.finfo(np.float32).eps),
    keep_masked_maps: bool = False,
) -> ExtractionPlan:
    """Precompute the linear map from a volume to its region signals.

    Parameters
    ----------
    maps : ndarray, shape (x, y, z, n_maps)
        Region maps on the data grid.
    affine : ndarray, shape (4, 4)
        Affine of that grid (for the smoothing kernel, in mm).
    mask : ndarray of bool, shape (x, y, z), optional
        Maps are trimmed to it and only maps with a voxel inside are kept (unless
        ``keep_masked_maps``). The data themselves are not masked.
    smoothing_fwhm : float, optional
        FWHM in mm of the Gaussian smoothing applied to the data before the fit.
    rcond : float
        Relative cutoff for small singular values of the maps (the machine epsilon of the
        precision the reference solves in: float32 for float32 runs, float64 otherwise).
    keep_masked_maps : bool
        Keep maps emptied by the mask (their signals are 0).

    Returns
    -------
    ExtractionPlan

    Raises
    ------
    ValueError
        No map has a voxel inside the mask.
    """
    shape = tuple(int(n) for n in maps.shape[:3])
    n_maps = maps.shape[3]
    kept = np.arange(n_maps)
    if mask is not None:
        maps = maps * mask[..., np.newaxis]
        sums = np.abs(maps[mask]).sum(axis=0) if mask.any() else np.zeros(n_maps)
        if not keep_masked_maps:
            kept = np.flatnonzero(sums > 0)
            removed = sorted(set(range(n_maps)) - {int(k) for k in kept})
            if removed:
                if kept.size == 0:
                    raise ValueError("No map left after applying mask to the maps image.")
                warnings.warn(
                    "After applying mask to the maps image, maps with the following indices "
                    f"were removed: {set(removed)}. Out of {n_maps} maps, the masked map image "
                    f"only contains {kept.size} maps.",
                    stacklevel=2,
                )
        else:
            warnings.warn(
                'Applying "mask_img" before signal extraction may result in empty region '
                'signals in the output. These are currently kept.\n"keep_masked_maps" '
                'parameter will be removed in version 0.15. Set "keep_masked_maps=False" '
                "to silence this warning.",
                FutureWarning,
                stacklevel=2,
            )

    # Sparse M (voxels x kept maps), voxels numbered in Fortran order like the files.
    cols, flat_rows, values = [], [], []
    for j, k in enumerate(kept):
        flat = np.ravel(maps[..., k], order="F")
        nz = np.flatnonzero(flat)
        cols.append(np.full(nz.size, j))
        flat_rows.append(nz)
        values.append(flat[nz].astype(np.float64))
    n_vox = int(np.prod(shape))
    design = sparse.csc_matrix(
        (np.concatenate(values), (np.concatenate(flat_rows), np.concatenate(cols))),
        shape=(n_vox, kept.size),
    )
    mats = _smoothing_matrices(shape, affine, smoothing_fwhm)
    reach = [kernel_radius_voxels(s) for s in fwhm_to_sigma_voxels(affine, smoothing_fwhm)]

    out_cols, out_rows, out_vals = [], [], []
    for idx, support, dense in _group_pinv_t(design, rcond):
        if any(m is not None for m in mats):
            coords = np.unravel_index(support, shape, order="F")
            box = tuple(slice(int(c.min()), int(c.max()) + 1) for c in coords)
            grown = tuple(
                slice(max(b.start - r, 0), min(b.stop + r, n))
                for b, r, n in zip(box, reach, shape, strict=True)
            )
            vol = np.zeros(tuple(b.stop - b.start for b in box) + (idx.size,))
            vol[tuple(c - b.start for c, b in zip(coords, box, strict=True))] = dense
            smoothed = _adjoint_smooth(vol, box, grown, mats)
            local = np.nonzero(np.any(smoothed != 0, axis=3))
            grid = tuple(loc + g.start for loc, g in zip(local, grown, strict=True))
            support = np.ravel_multi_index(grid, shape, order="F")
            dense = smoothed[local]
        for j, k in enumerate(idx):
            nz = np.flatnonzero(dense[:, j])
            out_cols.append(np.full(nz.size, k))
            out_rows.append(support[nz])
            out_vals.append(dense[nz, j])

    flat_rows = np.concatenate(out_rows)
    rows, position = np.unique(flat_rows, return_inverse=True)
    weights = sparse.csr_matrix(
        (np.concatenate(out_vals), (np.concatenate(out_cols), position)),
        shape=(kept.size, rows.size),
    )
    return ExtractionPlan(
        shape=shape,
        affine=np.asarray(affine, dtype=float),
        rows=rows.astype(np.int64),
        weights=weights,
        kept=kept,
        n_maps=n_maps,
    )


def extract_signals(
    img,
    plan: ExtractionPlan,
    *,
    volumes: int | None = None,
    prepare: Callable[[np.ndarray], np.ndarray] | None = None,
    on_block: Callable[[int, np.ndarray], None] | None = None,
) -> np.ndarray:
    """Region signals of a 3D/4D image, reading it one block of volumes at a time.

    Parameters
    ----------
    img : nibabel image
        On ``plan``'s grid (or brought onto it by ``prepare``).
    plan : ExtractionPlan
    volumes : int, optional
        Volumes per block (default: about 64 MB of data per block).
    prepare : callable, optional
        ``prepare(block) -> block`` applied to each (x, y, z, n) block first (e.g. resampling).
    on_block : callable, optional
        ``on_block(first_volume, block)`` is called with each raw block (e.g. to gather other
        statistics in the same pass).

    Returns
    -------
    ndarray of float64, shape (n_volumes, n_signals)
        Non-finite voxel values count as 0 (with a warning).
    """
    n_volumes = img.shape[3] if len(img.shape) == 4 else 1
    out = np.empty((n_volumes, plan.weights.shape[0]))
    warned = False
    for start, block in iter_blocks(img, volumes=volumes):
        if on_block is not None:
            on_block(start, block)
        if prepare is not None:
            block = prepare(block)
        if block.shape[:3] != plan.shape:
            raise ValueError(
                f"Images have incompatible shapes: data {block.shape[:3]} vs maps {plan.shape}"
            )
        n = block.shape[3]
        data = block.reshape(-1, n, order="F")[plan.rows].astype(np.float64)
        finite = np.isfinite(data)
        if not finite.all():
            data[~finite] = 0.0
            if not warned:
                warnings.warn(
                    "Non-finite values detected. These values will be replaced with zeros.",
                    stacklevel=2,
                )
                warned = True
        out[start : start + n] = (plan.weights @ data).T
    return out
