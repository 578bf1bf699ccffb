"""Random-walker segmentation, arithmetic-identical to the reference but on the map's support.

The reference (a fork of scikit-image 0.11's ``random_walker``, spec §5.3) builds a graph over the
whole volume for every map, masks it down to the labelled voxels, and solves one conjugate-
gradient system per seed label through ``scipy.sparse.linalg.cg``. The linear systems only
involve voxels with label >= 0, so this module

* works on a crop that contains every voxel with label >= 0, and takes the one whole-volume
  statistic the edge weights need (``std`` of the map) from the caller;
* builds the system directly as a 7-point stencil (:mod:`bids_regionx.core._stencil`): the same
  matrix entries, diagonal sums and right-hand sides as the reference's sparse Laplacian, bit
  for bit, without the sparse-matrix assembly;
* replays scipy's conjugate gradient in compiled steps, all labels of a map together: every
  iterate equals the reference's, with the dot products still numpy's BLAS ``ddot``.

The output labels are therefore identical to the reference's, voxel for voxel, for the same
BLAS thread configuration (OpenBLAS splits long dot products across threads).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import numpy as np

from bids_regionx.core import _stencil

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
    given = labels  # returned (as a copy) when nothing can be segmented
    if (labels != 0).all():
        warn(
            "Random walker only segments unlabeled areas, where labels == 0. No zero valued "
            "areas in labels were found. Returning provided labels."
        )
        return np.copy(given)
    if not cropped and (labels == 0).all():
        warn("Random walker received no seed label. Returning provided labels.")
        return np.copy(given)
    if image.ndim != 3:
        raise ValueError("For non-multichannel input, data must be of dimension 2 or 3.")
    if std is None:
        std = walker_std(image)
    if image.dtype not in (np.float32, np.float64):
        # The reference's float conversion; float32/float64 maps are read in place.
        image = as_float_array(image)

    labels = np.array(labels, dtype=np.int32, order="C")  # a copy: relabelled in place
    labels = _consecutive_labels(labels, add_inactive=cropped)

    if cropped or labels.min() < 0:
        # Unreachable unlabelled voxels and seeds with nothing to segment leave the graph.
        _stencil.prune(labels)
    if (labels == -1).all():
        warn(
            "Random walker only segments unlabeled areas, where labels == 0. Data provided only "
            "contains isolated seeds and isolated pixels. Returning provided labels."
        )
        return np.copy(given)

    # Same expression order as the reference: |step| in the image dtype, float64, squared,
    # times the (float32 for float32 maps) beta / (10 std), exponential, plus eps.
    scale = float(beta / (10 * std))
    neighbours, edges, gradients = _stencil.neighbour_steps(labels, image, scale)
    weights = np.exp(-gradients)
    weights += EPS
    n_unknown = neighbours.shape[1]
    stride = -(-n_unknown // 8) * 8  # each label's vectors start 64-byte aligned
    system, rhs = _stencil.assemble(neighbours, edges, weights, int(labels.max()), stride)
    solutions = _stencil.solve(system, rhs, float(tol))
    winner = np.argmax(solutions, axis=0)

    result = labels.ravel()
    result[result == 0] = (winner + 1).astype(result.dtype)
    return result.reshape(labels.shape)


def _consecutive_labels(labels: np.ndarray, *, add_inactive: bool) -> np.ndarray:
    """Renumber labels >= 0 to consecutive ranks when the values present have gaps.

    As the reference: the values present (with -1 counted as present for a crop of a volume
    that has inactive voxels outside it) must be consecutive, otherwise the non-negative ones
    are replaced by their rank.
    """
    low = int(labels.min())
    if low >= -1:
        # A count per value instead of a sort: labels are small non-negative integers.
        present = np.flatnonzero(np.bincount((labels + 1).ravel())) - 1
    else:
        present = np.unique(labels)
    if add_inactive and present[0] != -1:
        present = np.concatenate(([-1], present))
    if not np.any(np.diff(present) != 1):
        return labels
    values = present[present >= 0]
    rank = np.zeros(int(values[-1]) + 1, dtype=labels.dtype)
    rank[values] = np.arange(values.size, dtype=labels.dtype)
    nonneg = labels >= 0
    labels[nonneg] = rank[labels[nonneg]]
    return labels
