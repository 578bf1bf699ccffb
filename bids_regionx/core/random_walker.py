"""Random-walker segmentation, arithmetic-identical to the reference but on the map's support.

The reference (a fork of scikit-image 0.11's ``random_walker``, spec §5.3) builds a graph over the
whole volume for every map, masks it down to the labelled voxels, and solves one conjugate-
gradient system per seed label through ``scipy.sparse.linalg.cg``. The linear systems only
involve voxels with label >= 0, so this module

* builds the graph directly on a crop that contains every voxel with label >= 0, enumerating
  edges in the same order (z, then y, then x neighbours, C order) and numbering nodes in the same
  relative order, so the Laplacian and right-hand sides are the same matrices;
* takes the one whole-volume statistic the weights need (``std`` of the map) from the caller;
* replays scipy's conjugate gradient without its wrapper overhead: row-wise (CSR) products of
  the symmetric Laplacian accumulate in the same order as the reference's column-wise (CSC)
  ones, and the dot products are the same BLAS ``ddot`` calls, so every iterate is
  bit-identical to the reference's.

The output labels are therefore identical to the reference's, voxel for voxel, for the same
BLAS thread configuration (OpenBLAS splits long dot products across threads).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import numpy as np
from scipy import ndimage, sparse

BETA = 130.0
TOL = 1.0e-3
EPS = 1.0e-10


def _warn(message: str) -> None:
    warnings.warn(message, UserWarning, stacklevel=3)


def walker_std(image: np.ndarray) -> np.floating:
    """``std`` of a map exactly as the reference computes it for the edge weights.

    The reference converts the map like ``sklearn.utils.as_float_array`` (float copies keep an
    F layout when F-contiguous, small ints become float32), views it as ``(x, y, z, 1)`` and
    takes ``numpy.std`` over everything, zeros included, in the map's dtype and memory order.
    The memory order changes the last ulp, and the ulp changes boundary voxels.

    Parameters
    ----------
    image : ndarray, shape (x, y, z)
        The full (uncropped) thresholded map.
    """
    if image.dtype in (np.float32, np.float64) and (
        image.flags["F_CONTIGUOUS"] or image.flags["C_CONTIGUOUS"]
    ):
        # A contiguous float map reduces in the same order as the reference's copy of it.
        return image[..., np.newaxis].std()
    return as_float_array(image)[..., np.newaxis].std()


def as_float_array(image: np.ndarray) -> np.ndarray:
    """Float copy of ``image`` with scikit-learn's ``as_float_array`` dtype and layout rules."""
    if image.dtype in (np.float32, np.float64):
        return image.copy("F" if image.flags["F_CONTIGUOUS"] else "C")
    if image.dtype.kind in "uib" and image.dtype.itemsize <= 4:
        return image.astype(np.float32)
    return image.astype(np.float64)


def _edge_arrays(active: np.ndarray, image: np.ndarray, node_id: np.ndarray):
    """Edges between active voxels in the reference's order, with their |intensity| steps.

    Returns the two end-node ids and ``|I[a] - I[b]|`` (in the image dtype) for the edges whose
    two ends are active, listing z-neighbours, then y-, then x-neighbours, each in C order.
    """
    ends_a, ends_b, steps = [], [], []
    for axis in (2, 1, 0):
        lo = [slice(None)] * 3
        hi = [slice(None)] * 3
        lo[axis] = slice(None, -1)
        hi[axis] = slice(1, None)
        lo, hi = tuple(lo), tuple(hi)
        keep = active[lo] & active[hi]
        ends_a.append(node_id[lo][keep])
        ends_b.append(node_id[hi][keep])
        steps.append(np.abs(image[lo][keep] - image[hi][keep]))
    return np.concatenate(ends_a), np.concatenate(ends_b), np.concatenate(steps)


def _laplacian(ends_a, ends_b, weights, n_nodes) -> sparse.csr_matrix:
    """Graph Laplacian built with the reference's sparse calls (so the diagonal sums match)."""
    diag = np.arange(n_nodes)
    i_idx = np.hstack((ends_a, ends_b))
    j_idx = np.hstack((ends_b, ends_a))
    data = np.hstack((-weights, -weights))
    lap = sparse.coo_matrix((data, (i_idx, j_idx)), shape=(n_nodes, n_nodes))
    connect = -np.ravel(lap.sum(axis=1))
    lap = sparse.coo_matrix(
        (np.hstack((data, connect)), (np.hstack((i_idx, diag)), np.hstack((j_idx, diag)))),
        shape=(n_nodes, n_nodes),
    )
    return lap.tocsr()


def conjugate_gradient(matrix: sparse.csr_matrix, b: np.ndarray, rtol: float) -> np.ndarray:
    """Conjugate gradient, iterate-identical to scipy's ``cg(A, b, rtol=rtol, atol=0)``.

    Replays scipy's unpreconditioned CG from x0 = 0 -- the same scalar recurrences, the same
    BLAS ``ddot`` calls on contiguous float64 vectors, the same element-wise roundings and the
    same stopping test -- without its per-iteration wrapper overhead.

    Parameters
    ----------
    matrix : scipy.sparse.csr_matrix, shape (n, n)
        Symmetric with sorted indices, so that its row-wise products accumulate in the same
        order as the reference's column-wise (CSC) products.
    b : ndarray of float64, shape (n,)
    rtol : float

    Returns
    -------
    ndarray of float64, shape (n,)
    """
    n = b.size
    bnorm = np.linalg.norm(b)
    atol = max(0.0, float(rtol) * float(bnorm))
    if bnorm == 0:
        return b
    x = np.zeros(n)
    r = b.copy()
    p = np.empty(n)
    tmp = np.empty(n)
    rho_prev = None
    for iteration in range(n * 10):
        # np.linalg.norm(r) is sqrt(r.dot(r)); scipy's rho = dot(r, z) with z = r is the same
        # ddot, so one call serves both.
        rho = r.dot(r)
        if np.sqrt(rho) < atol:
            return x
        if iteration > 0:
            p *= rho / rho_prev
            p += r
        else:
            p[:] = r
        q = matrix @ p
        alpha = rho / p.dot(q)
        np.multiply(p, alpha, out=tmp)
        x += tmp
        np.multiply(q, alpha, out=tmp)
        r -= tmp
        rho_prev = rho
    return x


def random_walker(
    image: np.ndarray,
    labels: np.ndarray,
    *,
    std: float | None = None,
    beta: float = BETA,
    tol: float = TOL,
    cropped: bool = False,
    warn: Callable[[str], None] | None = None,
) -> np.ndarray:
    """Segment ``image`` from seed ``labels`` by random walks (Grady 2006).

    Parameters
    ----------
    image : ndarray, shape (x, y, z)
        Map values (float32 or float64; other types are converted as the reference does).
    labels : ndarray of int, shape (x, y, z)
        Seeds > 0, unlabelled voxels 0, inactive voxels -1 (removed from the graph).
    std : float, optional
        Standard deviation of the *whole* map for the edge weights (see :func:`walker_std`);
        required when ``image`` is a crop. Computed from ``image`` when omitted.
    beta : float
        Diffusion penalty (the weights are ``exp(-beta / (10 std) * |dI|^2) + 1e-10``).
    tol : float
        Relative tolerance of each conjugate-gradient solve.
    cropped : bool
        ``image``/``labels`` are a crop of a volume whose voxels outside the crop are all
        inactive (-1); only changes which warning is given when nothing can be segmented.
    warn : callable, optional
        Receives the message when nothing can be segmented (default: a UserWarning). Worker
        threads pass a list's ``append`` so the caller can re-emit warnings in map order.

    Returns
    -------
    ndarray of int32, shape (x, y, z)
        Labels: every unlabelled voxel reachable from a seed gets the label whose random walker
        reaches it first; seeds keep theirs (made consecutive); unreachable voxels and isolated
        seeds are -1. If nothing can be segmented the input labels are returned unchanged.
    """
    if warn is None:
        warn = _warn
    out_labels = np.copy(labels)
    if (labels != 0).all():
        warn(
            "Random walker only segments unlabeled areas, where labels == 0. No zero valued "
            "areas in labels were found. Returning provided labels."
        )
        return out_labels
    if not cropped and (labels == 0).all():
        warn("Random walker received no seed label. Returning provided labels.")
        return out_labels
    if image.ndim != 3:
        raise ValueError("For non-multichannel input, data must be of dimension 2 or 3.")
    if std is None:
        std = walker_std(image)
    image = as_float_array(image)

    labels = np.copy(labels)
    values = np.unique(labels)
    if cropped and values[0] != -1:
        values = np.concatenate(([-1], values))
    if np.any(np.diff(values) != 1):
        nonneg = labels >= 0
        labels[nonneg] = np.searchsorted(np.unique(labels[nonneg]), labels[nonneg]).astype(
            labels.dtype
        )
    labels = labels.astype(np.int32)

    if cropped or np.any(labels < 0):
        # Unreachable unlabelled voxels and seeds with nothing to segment leave the graph.
        filled = ndimage.binary_propagation(labels > 0, mask=labels >= 0)
        labels[~filled & (labels == 0)] = -1
        filled = ndimage.binary_propagation(labels == 0, mask=labels >= 0)
        labels[(labels > 0) & ~filled] = -1
    if (labels == -1).all():
        warn(
            "Random walker only segments unlabeled areas, where labels == 0. Data provided only "
            "contains isolated seeds and isolated pixels. Returning provided labels."
        )
        return out_labels

    active = labels >= 0
    node_id = np.full(labels.shape, -1, dtype=np.int64)
    node_id[active] = np.arange(np.count_nonzero(active))
    ends_a, ends_b, steps = _edge_arrays(active, image, node_id)
    # Same expression order as the reference: step / spacing (float64), squared, times the
    # float32 beta / (10 std), exponential, plus eps.
    gradients = (steps / np.float64(1.0)) ** 2
    gradients *= beta / (10 * std)
    weights = np.exp(-gradients)
    weights += EPS
    lap = _laplacian(ends_a, ends_b, weights, int(np.count_nonzero(active)))

    flat = labels[active]
    unlabeled = np.flatnonzero(flat == 0)
    seeds = np.flatnonzero(flat > 0)
    lap_u = lap[unlabeled]
    coupling = lap_u[:, seeds]
    system = lap_u[:, unlabeled].tocsc()
    # The CSC arrays of a symmetric matrix read as CSR are the same matrix with sorted rows.
    system = sparse.csr_matrix(
        (system.data, system.indices, system.indptr), shape=system.shape
    )
    rhs = []
    for lab in range(1, int(flat.max()) + 1):
        indicator = sparse.csr_matrix(flat[seeds] == lab).transpose()
        rhs.append(-np.asarray((coupling * indicator).todense()).ravel())
    solutions = np.array([conjugate_gradient(system, b, tol) for b in rhs])
    winner = np.argmax(solutions, axis=0)

    result = labels.ravel()
    result[result == 0] = (winner + 1).astype(result.dtype)
    return result.reshape(labels.shape)
