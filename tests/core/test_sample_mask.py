"""Tests for bids_regionx.core.sample_mask (validation, censoring, interpolation modes)."""

from __future__ import annotations

import numpy as np
import pytest
from nilearn._utils.param_validation import check_run_sample_masks
from nilearn.signal import _handle_scrubbed_volumes

from bids_regionx.core.errors import AllVolumesRemovedError
from bids_regionx.core.sample_mask import (
    censor,
    check_sample_masks,
    interpolate_censored,
    sanitize_sample_mask,
)

N = 40
T_R = 2.5


@pytest.mark.parametrize(
    "mask",
    [
        np.array([1, 2, 4]),
        np.array([1, 2, 4], dtype=np.int32),
        np.array([1, 2, 4], dtype=np.uint8),
        np.isin(np.arange(N), [1, 2, 4]),
        [[1, 2, 4]],
        ([1, 2, 4],),
        [np.isin(np.arange(N), [1, 2, 4])],
        [[True, False, True]],
        [np.array([3, 1, 1])],  # unsorted and repeated indices are allowed
    ],
)
def test_check_sample_masks_matches_nilearn(mask):
    original = [np.copy(m) for m in mask] if isinstance(mask, (list, tuple)) else mask.copy()
    ref = check_run_sample_masks(1, mask)
    ours = check_sample_masks(mask, 1)
    assert len(ours) == len(ref) == 1
    assert ours[0].dtype == ref[0].dtype == np.int32
    np.testing.assert_array_equal(ours[0], ref[0])
    # a fresh array every time: never the caller's (nilearn returns an int32 input as is)
    if isinstance(mask, np.ndarray):
        assert not np.shares_memory(ours[0], mask)
        np.testing.assert_array_equal(mask, original)


@pytest.mark.parametrize(
    ("mask", "n_runs", "exc_type", "match"),
    [
        ("abc", 1, TypeError, "'sample_masks' must be of type"),
        (True, 1, TypeError, "'sample_masks' must be of type"),
        ([1, 2, 4], 1, TypeError, "'int' object is not iterable"),
        (np.array([-1, 2]), 1, ValueError, "sample_mask should not contain negative values."),
        (
            [np.arange(3), np.arange(3)],
            1,
            ValueError,
            r"Number of sample_mask \(2\) not matching number of runs \(1\)\.",
        ),
        (np.arange(3), 2, ValueError, r"Number of sample_mask \(1\) not matching"),
    ],
)
def test_check_sample_masks_errors_match_nilearn(mask, n_runs, exc_type, match):
    with pytest.raises(exc_type, match=match):
        check_run_sample_masks(n_runs, mask)
    with pytest.raises(exc_type, match=match):
        check_sample_masks(mask, n_runs)


def test_sanitize_sample_mask_errors():
    with pytest.raises(
        IndexError,
        match=r"sample_mask 1 of 1 is has more timepoints than the "
        r"current run ;sample_mask contains 41 index",
    ):
        sanitize_sample_mask(np.arange(41) % N, N)
    with pytest.raises(
        IndexError,
        match=r"sample_mask 1 of 1 contains invalid index \[45\]\. "
        r"The signal contains 40 time points\.",
    ):
        sanitize_sample_mask(np.array([1, 45]), N)
    with pytest.raises(IndexError, match=r"invalid index \[40\]"):  # == n_samples
        sanitize_sample_mask(np.array([1, 40]), N)
    with pytest.raises(IndexError, match="sample_mask 2 of 2 contains invalid index"):
        sanitize_sample_mask([np.arange(3), np.array([0, 25])], N, runs=np.repeat([0, 1], 20))
    with pytest.raises(ValueError, match="boolean sample_mask 1 of 1 has 39 entries"):
        sanitize_sample_mask(np.ones(N - 1, dtype=bool), N)
    with pytest.raises(ValueError, match="one-dimensional"):
        sanitize_sample_mask(np.ones((2, 3), dtype=int), N)
    with pytest.raises(AllVolumesRemovedError):
        sanitize_sample_mask(np.zeros(N, dtype=bool), N)
    assert sanitize_sample_mask(None, N) is None


def test_sanitize_sample_mask_runs_by_label():
    # Runs labelled 1 and 2: masks matched by sorted label (nilearn compares the mask number
    # with the labels and wrongly reports "more timepoints" here).
    runs = np.repeat([2, 1], [15, 25])
    masks = sanitize_sample_mask([np.arange(25), np.arange(15)], N, runs=runs)
    assert [m.size for m in masks] == [25, 15]


@pytest.fixture
def data():
    rng = np.random.default_rng(0)
    signals = rng.normal(size=(N, 4)).astype(np.float32)
    confounds = rng.normal(size=(N, 3))
    return signals, confounds


def test_censor(data):
    signals, confounds = data
    mask = np.array([5, 1, 1])
    s, c = censor(signals, confounds, mask)
    np.testing.assert_array_equal(s, signals[mask])
    np.testing.assert_array_equal(c, confounds[mask])
    assert censor(signals, None, mask)[1] is None


@pytest.mark.parametrize("extrapolate", [False, True])
@pytest.mark.parametrize(
    "censored",
    [[0, 1, 2], [0, 1, 2, 10, 20, 30], [0, 1, 38, 39], [10, 29], [5, 6, 33, 34, 39]],
)
def test_nilearn_mode_matches_nilearn(data, extrapolate, censored):
    signals, confounds = data
    kept = np.delete(np.arange(N), censored).astype(np.int32)
    ref_mask = kept.copy()
    ref_s, ref_c, ref_m = _handle_scrubbed_volumes(
        signals.copy(), confounds.copy(), ref_mask, "butterworth", T_R, extrapolate
    )
    ours_mask = kept.copy()
    s, c, m = interpolate_censored(
        signals.copy(),
        confounds.copy(),
        ours_mask,
        t_r=T_R,
        extrapolate=extrapolate,
        mode="nilearn",
    )
    np.testing.assert_array_equal(s, ref_s)
    np.testing.assert_array_equal(c, ref_c)
    np.testing.assert_array_equal(m, ref_m)
    np.testing.assert_array_equal(ours_mask, kept)  # not shifted in place


@pytest.mark.parametrize("extrapolate", [False, True])
@pytest.mark.parametrize("censored", [[0, 1, 2], [0, 1, 38, 39], [10, 29], [5, 6, 20, 33, 34, 39]])
def test_correct_mode_interpolates_every_censored_row(data, extrapolate, censored):
    from scipy.interpolate import CubicSpline

    signals, confounds = data
    kept = np.delete(np.arange(N), censored).astype(np.int32)
    s, c, m = interpolate_censored(
        signals.copy(), confounds.copy(), kept, t_r=T_R, extrapolate=extrapolate
    )
    frame_times = np.arange(N) * T_R
    first, last = (0, N - 1) if extrapolate else (kept[0], kept[-1])
    for out, original in ((s, signals), (c, confounds)):
        assert out.shape == (last - first + 1, original.shape[1])
        assert out.dtype == original.dtype
        spline = CubicSpline(frame_times[kept], original[kept], extrapolate=extrapolate)
        expected = spline(frame_times).astype(original.dtype)
        expected[kept] = original[kept]  # kept rows keep their exact values
        np.testing.assert_array_equal(out, expected[first : last + 1])
        assert np.isfinite(out).all()
        # the returned mask picks exactly the kept rows
        np.testing.assert_array_equal(out[m], original[kept])


def test_modes_agree_when_only_leading_volumes_are_censored(data):
    signals, confounds = data
    kept = np.arange(4, N, dtype=np.int32)
    a = interpolate_censored(signals.copy(), confounds.copy(), kept, t_r=T_R, mode="nilearn")
    b = interpolate_censored(signals.copy(), confounds.copy(), kept, t_r=T_R, mode="correct")
    for x, y in zip(a, b, strict=True):
        assert x.shape == y.shape
        np.testing.assert_allclose(x, y, rtol=1e-6)


def test_interpolation_errors(data):
    signals, confounds = data
    with pytest.raises(ValueError, match="strictly increasing"):
        interpolate_censored(signals.copy(), None, np.array([3, 2, 5], dtype=np.int32), t_r=T_R)
    with pytest.raises(ValueError, match="sample_mask"):
        interpolate_censored(signals.copy(), None, np.array([3], dtype=np.int32), t_r=T_R)
    with pytest.raises(AllVolumesRemovedError):
        interpolate_censored(signals.copy(), None, np.array([], dtype=np.int32), t_r=T_R)
