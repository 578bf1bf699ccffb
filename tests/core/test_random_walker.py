"""The random walker replays nilearn's arithmetic exactly on a cropped graph.

The linear system, its products and the conjugate gradient are checked against nilearn's own
sparse Laplacian and scipy's ``cg`` bit for bit; the labels against nilearn's walker."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from nilearn._utils.segmentation import _build_ab, _build_laplacian
from nilearn._utils.segmentation import random_walker as nilearn_random_walker
from scipy import ndimage
from scipy.sparse.linalg import cg

from bids_regionx.core import _stencil
from bids_regionx.core.random_walker import (
    _consecutive_labels,
    random_walker,
    walker_std,
)


def _blob_map(rng, shape=(24, 26, 22)):
    m = ndimage.gaussian_filter(rng.standard_normal(shape), 2.0).astype(np.float32)
    m[np.abs(m) < 0.05] = 0
    return np.asfortranarray(m)


def _seeds(m, rng, n_seeds=4):
    labels = np.zeros(m.shape, dtype=np.int32)
    support = np.argwhere(m != 0)
    for k in range(1, n_seeds + 1):
        labels[tuple(support[rng.integers(len(support))])] = 3 * k  # non-consecutive labels
    labels[m == 0] = -1
    return labels


def _graph_case(seed, dtype=np.float32, n_seeds=4):
    """A map and consecutive, pruned labels, as the walker hands them to its linear system."""
    rng = np.random.default_rng(seed)
    m = _blob_map(rng).astype(dtype)
    labels = _seeds(m, rng, n_seeds)
    labels[labels > 0] //= 3
    reach = ndimage.binary_propagation(labels > 0, mask=labels >= 0)
    labels[~reach & (labels == 0)] = -1
    reach = ndimage.binary_propagation(labels == 0, mask=labels >= 0)
    labels[(labels > 0) & ~reach] = -1
    return m, np.ascontiguousarray(labels)


def _nilearn_system(m, labels):
    """nilearn's own matrix (CSC, as its CG gets it) and right-hand sides."""
    data = np.atleast_3d(m)[..., np.newaxis]
    lap = _build_laplacian(data, np.ones(3), mask=labels >= 0, beta=130)
    matrix, rhs = _build_ab(lap, labels)
    return matrix.tocsc(), [-np.asarray(b.todense()).ravel() for b in rhs]


def _our_system(m, labels):
    scale = float(130.0 / (10 * walker_std(m)))
    neighbours, edges, gradients = _stencil.neighbour_steps(labels, m, scale)
    weights = np.exp(-gradients)
    weights += 1e-10
    n = neighbours.shape[1]
    return _stencil.assemble(neighbours, edges, weights, int(labels.max()), n + 3)


def _rows(system):
    """Each row's seven (column, value) slots, from the packed groups and singles."""
    groups, gcols, gvals, singles, scols, svals = system
    n = 4 * len(groups) + len(singles)
    cols = np.empty((7, n), dtype=np.int64)
    vals = np.empty((7, n))
    lanes = np.arange(4)
    cols[:, (groups[:, None] + lanes).ravel()] = (gcols.T[:, :, None] + lanes).reshape(7, -1)
    vals[:, (groups[:, None] + lanes).ravel()] = gvals.transpose(1, 0, 2).reshape(7, -1)
    cols[:, singles] = scols.T
    vals[:, singles] = svals.T
    return cols, vals


def _dense(system):
    cols, vals = _rows(system)
    n = cols.shape[1]
    dense = np.zeros((n, n))
    for t in range(7):
        real = vals[t] != 0  # every true entry is -w or a degree, never 0
        dense[np.flatnonzero(real), cols[t, real]] = vals[t, real]
    return dense


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("seed", range(3))
def test_stencil_system_is_nilearns_laplacian_bit_for_bit(seed, dtype):
    m, labels = _graph_case(seed, dtype)
    matrix, rhs = _nilearn_system(m, labels)
    system, ours_rhs = _our_system(m, labels)
    dense = _dense(system)
    n = dense.shape[0]
    assert matrix.shape == (n, n)
    np.testing.assert_array_equal(dense, matrix.toarray())
    assert dense.tobytes() == matrix.toarray().tobytes()
    assert ours_rhs.shape[0] == len(rhs)
    for ours, expected in zip(ours_rhs, rhs, strict=True):
        # -0.0 where no seed is adjacent, as nilearn's negated sparse product gives.
        assert ours[:n].tobytes() == expected.tobytes()


def test_stencil_rows_split_into_simd_groups_and_singles():
    m, labels = _graph_case(0)
    system, _ = _our_system(m, labels)
    groups, gcols, _, singles, scols, _ = system
    n = 4 * len(groups) + len(singles)
    rows = np.concatenate([(groups[:, None] + np.arange(4)).ravel(), singles])
    np.testing.assert_array_equal(np.sort(rows), np.arange(n))  # every row exactly once
    assert len(groups) and len(singles)  # both product paths are exercised below
    assert 4 * len(groups) > 0.5 * n  # most rows: the short z-runs of these small blobs
    # A group reads each slot as one run of four columns, all valid.
    assert gcols.min() >= 0 and gcols.max() + 3 < n
    assert scols.min() >= 0 and scols.max() < n


@pytest.mark.parametrize("seed", range(3))
def test_stencil_product_is_scipys_csc_product_bit_for_bit(seed):
    m, labels = _graph_case(seed)
    matrix, _ = _nilearn_system(m, labels)
    system, _ = _our_system(m, labels)
    p = np.random.default_rng(seed).standard_normal(matrix.shape[0])
    p[::7] = 0.0
    p[1::7] = -0.0
    ours = _stencil.matvec(system, p)
    assert ours.tobytes() == (matrix @ p).tobytes()


@pytest.mark.parametrize("seed", range(4))
def test_solve_is_scipy_cg_bit_for_bit(seed):
    m, labels = _graph_case(seed, n_seeds=2 + seed)
    matrix, rhs = _nilearn_system(m, labels)
    solutions = _stencil.solve(*_our_system(m, labels), 1e-3)
    assert len(solutions) == len(rhs) >= 2
    for ours, b in zip(solutions, rhs, strict=True):
        expected, info = cg(matrix, b, rtol=1e-3, atol=0)
        assert info == 0
        assert ours.tobytes() == expected.tobytes()


def test_solve_zero_rhs_returns_rhs():
    m, labels = _graph_case(0)
    system, rhs = _our_system(m, labels)
    rhs[1] = -0.0
    n = len(_nilearn_system(m, labels)[1][0])
    out = _stencil.solve(system, rhs, 1e-3)
    assert np.all(out[1] == 0) and np.all(np.signbit(out[1]))
    expected, _ = cg(_nilearn_system(m, labels)[0], rhs[0, :n], rtol=1e-3, atol=0)
    assert out[0].tobytes() == expected.tobytes()


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("crop", [False, True])
def test_random_walker_equals_nilearn(seed, crop):
    rng = np.random.default_rng(seed)
    m = _blob_map(rng)
    labels = _seeds(m, rng)
    expected = nilearn_random_walker(m, labels.copy())
    if crop:
        box = ndimage.find_objects((m != 0).astype(np.uint8))[0]
        out = np.full(m.shape, -1, dtype=np.int32)
        out[box] = random_walker(m[box], labels[box], std=walker_std(m), cropped=True)
        np.testing.assert_array_equal(out[box], expected[box])
        outside = np.ones(m.shape, dtype=bool)
        outside[box] = False
        assert np.all(expected[outside] == -1)
    else:
        np.testing.assert_array_equal(random_walker(m, labels), expected)


def _messages(record):
    return sorted(str(w.message) for w in record)


@pytest.mark.parametrize(
    "case",
    ["all_labelled", "no_seed", "only_isolated", "no_negative"],
)
def test_random_walker_degenerate_cases_match_nilearn(case):
    rng = np.random.default_rng(1)
    m = _blob_map(rng, (10, 10, 10))
    labels = _seeds(m, rng, 2)
    if case == "all_labelled":
        labels[labels == 0] = 1
    elif case == "no_seed":
        labels = np.zeros_like(labels)
    elif case == "only_isolated":
        labels = np.full(m.shape, -1, dtype=np.int32)
        labels[5, 5, 5] = 1
    else:
        labels[labels < 0] = 0
    with warnings.catch_warnings(record=True) as ours_w:
        warnings.simplefilter("always")
        ours = random_walker(m, labels.copy())
    with warnings.catch_warnings(record=True) as ref_w:
        warnings.simplefilter("always")
        expected = nilearn_random_walker(m, labels.copy())
    np.testing.assert_array_equal(ours, expected)
    assert _messages(ours_w) == _messages(ref_w)


@pytest.mark.parametrize("order", ["C", "F"])
def test_walker_std_follows_memory_layout_like_nilearn(order):
    rng = np.random.default_rng(0)
    m = np.asarray(rng.standard_normal((31, 29, 27)).astype(np.float32), order=order)
    expected = np.atleast_3d(m.copy("F" if m.flags["F_CONTIGUOUS"] else "C"))[..., None].std()
    assert walker_std(m) == expected
    strided = np.asarray(rng.standard_normal((31, 29, 27, 3)).astype(np.float32), order="C")
    view = strided[..., 1]
    assert walker_std(view) == view.copy("C")[..., None].std()


@pytest.mark.parametrize("seed", range(6))
def test_prune_equals_nilearns_two_propagations(seed):
    rng = np.random.default_rng(seed)
    labels = rng.choice([-1, 0, 0, 1, 2], size=(9, 10, 8), p=[0.45, 0.3, 0.15, 0.05, 0.05])
    labels = labels.astype(np.int32)
    expected = labels.copy()
    filled = ndimage.binary_propagation(expected > 0, mask=expected >= 0)
    expected[~filled & (expected == 0)] = -1
    filled = ndimage.binary_propagation(expected == 0, mask=expected >= 0)
    expected[(expected > 0) & ~filled] = -1
    ours = labels.copy()
    _stencil.prune(ours)
    np.testing.assert_array_equal(ours, expected)
    assert (labels != expected).any()  # the case prunes something


@pytest.mark.parametrize(
    ("values", "add_inactive"),
    [([0, 1, 2], False), ([0, 2, 5], False), ([-1, 0, 3, 4], False), ([0, 1, 2], True),
     ([-3, 0, 2, 7], False)],
)
def test_consecutive_labels_as_nilearn(values, add_inactive):
    rng = np.random.default_rng(0)
    labels = rng.choice(values, size=(6, 7, 5)).astype(np.int32)
    expected = labels.copy()
    present = np.unique(expected)
    if add_inactive and present[0] != -1:
        present = np.concatenate(([-1], present))
    if np.any(np.diff(present) != 1):
        keep = expected >= 0
        expected[keep] = np.searchsorted(np.unique(expected[keep]), expected[keep])
    np.testing.assert_array_equal(_consecutive_labels(labels, add_inactive=add_inactive), expected)
