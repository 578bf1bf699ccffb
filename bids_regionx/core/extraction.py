"""Region time series: least squares of the BOLD data on the region maps, streamed.

The reference (spec §6) Gaussian-smooths the whole 4D run, then solves, for every volume,
``min_x || M x - d ||`` over the maps' voxels with ``scipy.linalg.lstsq`` (``M``: voxels x maps).
Both steps are linear in the data: with ``G`` the smoothing operator and ``C = (M^T M)^+`` the
signals are ``pinv(M) G d = C (G^T M)^T d``, with ``G^T M`` and ``C`` computed once per
(maps, grid, mask, FWHM):

* ``G^T M`` smooths each region map once (the reference smooths every volume of every run);
  the reference's separable reflect-boundary Gaussian is applied through its transpose, which
  away from the volume's edges is the same symmetric kernel;
* ``C`` is block diagonal, one block per group of maps that share voxels, computed from the
  maps' Gram matrix in float64 -- or, for an ill-conditioned group, from an SVD of its voxels --
  with singular values below the reference's LAPACK cutoff treated as zero (minimum-norm
  solutions, as ``gelsd``); zero rows of ``M`` add nothing to a least-squares fit;
* each block of volumes costs one sparse product with ``G^T M`` and one small dense product
  with ``C`` per group, in float64.

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
from bids_regionx.core.images import bounding_box
from bids_regionx.core.smoothing import fwhm_to_sigma_voxels, kernel_radius_voxels

#: Groups whose Gram matrix is worse conditioned than this (cond(M) squared) are solved from an
#: SVD of their voxels: the Gram route loses cond(M)^2 * eps of accuracy.
_GRAM_CONDITION_LIMIT = 1e5


@dataclass(frozen=True)
class ExtractionBlock:
    """One group of maps that share voxels (maps in different groups never overlap).

    Attributes
    ----------
    signals : ndarray of int, shape (n_group,)
        Positions of the group's signals in the plan's output.
    smoothed : scipy.sparse.csc_matrix, shape (n_group, n_rows)
        The group's maps after the adjoint smoothing, ``(G^T M_J)^T``, over the plan's rows.
    inverse : ndarray of float64, shape (n_group, n_group)
        ``(M_J^T M_J)^+``, so that ``signals[group] = inverse @ smoothed @ volume[rows]``.
    """

    signals: np.ndarray
    smoothed: sparse.csc_matrix
    inverse: np.ndarray


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
    blocks : tuple of ExtractionBlock
        The linear map from ``volume[rows]`` to the signals, one dense block per group.
    kept : ndarray of int, shape (n_signals,)
        Index of the map behind each signal (maps emptied by the mask are dropped).
    n_maps : int
        Number of maps the plan was built from.
    """

    shape: tuple[int, int, int]
    affine: np.ndarray
    rows: np.ndarray
    blocks: tuple[ExtractionBlock, ...]
    kept: np.ndarray
    n_maps: int

    @property
    def n_signals(self) -> int:
        return int(self.kept.size)

    def apply(self, data: np.ndarray) -> np.ndarray:
        """Signals of gathered data ``(n_rows, n_volumes)`` -> ``(n_volumes, n_signals)``."""
        n = data.shape[1]
        if n == 1:
            # scipy routes a single column to another kernel (csr_matvec) whose rounding can
            # differ in the last bit; two columns keep the multi-vector kernel, so signals never
            # depend on how the run was cut into blocks.
            data = np.repeat(data, 2, axis=1)
        out = np.zeros((data.shape[1], self.n_signals))
        for block in self.blocks:
            projected = block.smoothed @ data  # (n_group, n_volumes), column by column
            # einsum's plain loops (no BLAS) sum in a fixed order whatever the number of
            # volumes, so the signals do not depend on the block size.
            out[:, block.signals] = np.einsum(
                "ij,jt->ti", block.inverse, projected, optimize=False
            )
        return out[:n]


class _AdjointSmoother:
    """Applies the transpose of the reference's BOLD smoothing to maps given on a box."""

    def __init__(self, shape, affine, fwhm):
        self.shape = tuple(shape)
        sigmas = fwhm_to_sigma_voxels(affine, fwhm)
        self.reach = [kernel_radius_voxels(s) for s in sigmas]
        self.kernels = []
        self.matrices = []
        for n, sigma, r in zip(self.shape, sigmas, self.reach, strict=True):
            if sigma > 0:
                # scipy's own weights (truncate 4) and its reflect-boundary folding, read off by
                # filtering an impulse and the identity.
                impulse = np.zeros(2 * r + 1)
                impulse[r] = 1.0
                self.kernels.append(ndimage.gaussian_filter1d(impulse, sigma, mode="constant"))
                self.matrices.append(ndimage.gaussian_filter1d(np.eye(n), sigma, axis=0))
            else:
                self.kernels.append(None)
                self.matrices.append(None)

    @property
    def active(self) -> bool:
        return any(k is not None for k in self.kernels)

    def grow(self, box):
        return tuple(
            slice(max(b.start - r, 0), min(b.stop + r, n))
            for b, r, n in zip(box, self.reach, self.shape, strict=True)
        )

    def __call__(self, values: np.ndarray, box) -> tuple[np.ndarray, tuple]:
        """``G^T`` of columns given on ``box`` (shape ``(*box, n)``), on the grown box."""
        grown = self.grow(box)
        pad = [(b.start - g.start, g.stop - b.stop) for b, g in zip(box, grown, strict=True)]
        out = np.pad(values, pad + [(0, 0)])
        for axis, (kernel, mat) in enumerate(zip(self.kernels, self.matrices, strict=True)):
            if kernel is None:
                continue
            g, n, r = grown[axis], self.shape[axis], self.reach[axis]
            if box[axis].start - r >= 0 and box[axis].stop + r <= n:
                # Away from the edges G^T is the symmetric kernel itself.
                ndimage.correlate1d(out, kernel, axis=axis, output=out, mode="constant")
            else:
                block = mat[g, g]  # G[i, j] for i, j in the grown range
                out = np.moveaxis(np.tensordot(out, block, axes=([axis], [0])), -1, axis)
        return out, grown


def _gram_inverse(gram: np.ndarray, design, idx, rcond: float, top: float) -> np.ndarray:
    """``(M_J^T M_J)^+`` of one group, singular values of ``M`` below ``rcond * top`` dropped.

    Well-conditioned groups use the Gram matrix's eigen-decomposition. Otherwise the singular
    values and right vectors come from the triangular factor of a QR of the group's voxels,
    which keeps the solution's error at cond(M) * eps instead of cond(M)^2 * eps.
    """
    if not np.any(gram):  # maps emptied by the mask but kept: their signals are 0
        return np.zeros_like(gram)
    w, v = np.linalg.eigh(gram)
    w_max = float(w.max()) if w.size else 0.0
    if w.size and (w.min() <= 0 or w_max / w.min() > _GRAM_CONDITION_LIMIT):
        sub = design[:, idx]
        _, sv, vt = np.linalg.svd(_r_factor(sub[_unique_rows(sub.indices, sub.shape[0])]),
                                  full_matrices=False)
        w, v = sv**2, vt.T
    keep = np.sqrt(np.maximum(w, 0)) > rcond * top
    return (v[:, keep] / w[keep]) @ v[:, keep].T


def _box_entries(values: np.ndarray, box, shape) -> tuple[np.ndarray, np.ndarray]:
    """Flat (Fortran-order) voxel indices, ascending, and values of the non-zeros of a box."""
    # Scanning the box in Fortran order visits voxels in increasing flat index.
    local = np.nonzero(values.T)[::-1]
    grid = tuple(loc + b.start for loc, b in zip(local, box, strict=True))
    return np.ravel_multi_index(grid, shape, order="F"), values[local]


def _column_matrix(parts, n_rows: int) -> sparse.csc_matrix:
    """Sparse ``(n_rows, len(parts))`` matrix whose column j holds ``parts[j]``'s entries."""
    indptr = np.concatenate([[0], np.cumsum([rows.size for rows, _ in parts])])
    rows = np.concatenate([r for r, _ in parts]) if parts else np.zeros(0, np.int64)
    data = np.concatenate([v for _, v in parts]) if parts else np.zeros(0)
    matrix = sparse.csc_matrix((data, rows, indptr), shape=(n_rows, len(parts)))
    matrix.has_sorted_indices = True  # each part's rows are ascending (_box_entries)
    return matrix


def _r_factor(rows: sparse.spmatrix, chunk: int = 8192) -> np.ndarray:
    """Triangular factor ``R`` of ``rows = Q R`` (n x k), reading ``chunk`` rows at a time.

    A tall-skinny QR: each chunk is factored densely and the stacked factors once more, so
    memory stays at a chunk rather than the whole dense ``n x k`` matrix.
    """
    rows = rows.tocsr()
    factors = [
        np.linalg.qr(rows[start : start + chunk].toarray(), mode="r")
        for start in range(0, rows.shape[0], chunk)
    ]
    return np.linalg.qr(np.vstack(factors), mode="r")


def _positions(rows: np.ndarray, n: int) -> np.ndarray:
    """Look-up table from a voxel index in ``[0, n)`` to its position in ``rows``."""
    table = np.full(n, -1, dtype=np.int32)
    table[rows] = np.arange(rows.size, dtype=np.int32)
    return table


def _unique_rows(indices: np.ndarray, n: int) -> np.ndarray:
    """Sorted distinct values of ``indices`` (all in ``[0, n)``), in O(n)."""
    seen = np.zeros(n, dtype=bool)
    seen[indices] = True
    return np.flatnonzero(seen)


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
        sums = np.array([np.abs(maps[..., k][mask]).sum() for k in range(n_maps)])
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

    # One map at a time (so only one box is ever held densely): its voxels for the sparse M,
    # and W = G^T M, the map smoothed adjointly once on its grown box. Voxels are numbered in
    # Fortran order, like the files.
    smoother = _AdjointSmoother(shape, affine, smoothing_fwhm)
    m_parts: list[tuple[np.ndarray, np.ndarray]] = []
    w_parts: list[tuple[np.ndarray, np.ndarray]] = []
    for k in kept:
        box = bounding_box(maps[..., k] != 0) or (slice(0, 1),) * 3
        vals = np.asarray(maps[(*box, k)], dtype=np.float64)
        if mask is not None:
            vals = np.where(mask[box], vals, 0.0)
        m_parts.append(_box_entries(vals, box, shape))
        if smoother.active:
            vals, box = smoother(vals[..., np.newaxis], box)
            vals = vals[..., 0]
        w_parts.append(_box_entries(vals, box, shape))
    n_vox = int(np.prod(shape))
    design = _column_matrix(m_parts, n_vox)
    gram = (design.T @ design).toarray()
    w_all = _column_matrix(w_parts, n_vox).T.tocsr()  # (n_signals, n_vox), sorted columns
    del w_parts
    all_rows = _unique_rows(w_all.indices, n_vox)
    smoothed = sparse.csr_matrix(
        (w_all.data, _positions(all_rows, n_vox)[w_all.indices], w_all.indptr),
        shape=(kept.size, all_rows.size),
    )
    del w_all

    n_groups, group = connected_components(sparse.csr_matrix(gram != 0), directed=False)
    # rcond applies to the singular values of all of M (as gelsd's): the largest one is taken
    # over every group.
    top = np.sqrt(max(float(np.linalg.eigvalsh(gram).max()), 0.0)) if kept.size else 0.0
    blocks = []
    for g in range(n_groups):
        idx = np.flatnonzero(group == g)
        inverse = _gram_inverse(gram[np.ix_(idx, idx)], design, idx, rcond, top)
        # CSC: the product then reads each voxel's data once (CSR would sweep them once per map),
        # with the same summation order.
        blocks.append(
            ExtractionBlock(signals=idx, smoothed=smoothed[idx].tocsc(), inverse=inverse)
        )
    return ExtractionPlan(
        shape=shape,
        affine=np.asarray(affine, dtype=float),
        rows=all_rows.astype(np.int64),
        blocks=tuple(blocks),
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
    out = np.empty((n_volumes, plan.n_signals))
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
        out[start : start + n] = plan.apply(data)
    return out
