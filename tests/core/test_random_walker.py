"""The random walker replays nilearn's arithmetic exactly on a cropped graph."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from nilearn._utils.segmentation import random_walker as nilearn_random_walker
from scipy import ndimage, sparse
from scipy.sparse.linalg import cg

from bids_regionx.core.random_walker import conjugate_gradient, random_walker, walker_std


def _laplacian(rng, shape=(12, 14, 10)):
    support = ndimage.gaussian_filter(rng.standard_normal(shape), 1.5) > 0
    ids = np.full(shape, -1)
    ids[support] = np.arange(support.sum())
    rows, cols = [], []
    for axis in range(3):
        lo = [slice(None)] * 3
        hi = [slice(None)] * 3
        lo[axis], hi[axis] = slice(None, -1), slice(1, None)
        keep = support[tuple(lo)] & support[tuple(hi)]
        rows.append(ids[tuple(lo)][keep])
        cols.append(ids[tuple(hi)][keep])
    r, c = np.concatenate(rows), np.concatenate(cols)
    w = rng.random(r.size) + 1e-3
    n = int(support.sum())
    lap = sparse.coo_matrix((np.r_[-w, -w], (np.r_[r, c], np.r_[c, r])), shape=(n, n)).tocsr()
    return (lap + sparse.diags(-np.asarray(lap.sum(1)).ravel() + 0.05)).tocsc()


@pytest.mark.parametrize("seed", range(4))
def test_conjugate_gradient_is_scipy_cg_bit_for_bit(seed):
    rng = np.random.default_rng(seed)
    lap = _laplacian(rng)
    as_csr = sparse.csr_matrix((lap.data, lap.indices, lap.indptr), shape=lap.shape)
    b = -rng.random(lap.shape[0])
    expected, _ = cg(lap, b, rtol=1e-3, atol=0)
    np.testing.assert_array_equal(conjugate_gradient(as_csr, b, 1e-3), expected)


def test_conjugate_gradient_zero_rhs_returns_rhs():
    lap = _laplacian(np.random.default_rng(0))
    b = -np.zeros(lap.shape[0])
    out = conjugate_gradient(lap.tocsr(), b, 1e-3)
    assert np.all(out == 0) and np.all(np.signbit(out))


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
