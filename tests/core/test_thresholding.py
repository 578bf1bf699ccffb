"""Thresholding cut-offs and comparisons equal nilearn's, precision quirks included."""

from __future__ import annotations

import warnings

import nibabel as nib
import numpy as np
import pytest
from nilearn.image import threshold_img
from nilearn.regions.region_extractor import _threshold_maps_ratio
from scipy import ndimage
from scipy.stats import scoreatpercentile

from bids_regionx.core import thresholding
from bids_regionx.core.thresholding import (
    resolve_threshold,
    score_at_percentile,
    threshold_maps,
)


@pytest.mark.parametrize("q", [0, 12.5, 50, 96.6666, 99.9, 100])
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int16])
@pytest.mark.parametrize("sparse_zeros", [0, 500])
def test_score_at_percentile_is_scipy(q, dtype, sparse_zeros):
    rng = np.random.default_rng(0)
    values = (rng.standard_normal(1000) * 50).astype(dtype)
    values = np.abs(values)
    full = np.concatenate([np.zeros(sparse_zeros, dtype), values])
    expected = scoreatpercentile(full, q)
    assert score_at_percentile(full, q) == expected
    assert score_at_percentile(values, q, n_zeros=sparse_zeros) == expected


def test_score_at_percentile_signed_values():
    values = np.random.default_rng(1).standard_normal((7, 9, 5)).astype(np.float32)
    assert score_at_percentile(values, 37.5) == scoreatpercentile(values, 37.5)


def _maps(seed=0, order="F"):
    rng = np.random.default_rng(seed)
    data = rng.standard_normal((12, 13, 11, 5)).astype(np.float32)
    data[np.abs(data) < 0.8] = 0
    return np.asarray(data, order=order)


@pytest.mark.parametrize("ratio", [0.5, 1.0, 2.5, 5])
@pytest.mark.parametrize("order", ["C", "F"])
def test_ratio_equals_nilearn(ratio, order):
    maps = _maps(order=order)
    expected = _threshold_maps_ratio(nib.Nifti1Image(maps, np.eye(4)), ratio).get_fdata(
        dtype=np.float32
    )
    np.testing.assert_array_equal(threshold_maps(maps, strategy="ratio_n_voxels",
                                                 threshold=ratio), expected)


def test_ratio_keeps_ties_at_cutoff():
    maps = np.zeros((4, 4, 4, 2), np.float32)
    maps[..., 0].flat[:20] = 1.0  # 20 equal values straddle the cut-off
    out = threshold_maps(maps, strategy="ratio_n_voxels", threshold=0.25)
    assert np.count_nonzero(out) == 20


@pytest.mark.parametrize("bad", [0, -1.0, 6, "80%"])
def test_ratio_out_of_range(bad):
    with pytest.raises(ValueError, match="ratio to the number of voxels|threshold is not valid"):
        resolve_threshold(_maps(), strategy="ratio_n_voxels", threshold=bad)


@pytest.mark.parametrize("strategy,threshold", [("img_value", 0.9), ("img_value", -1.1),
                                                ("percentile", 30), ("percentile", 97.5)])
@pytest.mark.parametrize("two_sided", [False, True])
@pytest.mark.parametrize("with_mask", [False, True])
def test_value_and_percentile_equal_nilearn(strategy, threshold, two_sided, with_mask):
    maps = _maps(2)
    mask = np.zeros(maps.shape[:3], bool)
    mask[2:10, 1:11, 3:9] = True
    mask_img = nib.Nifti1Image(mask.astype(np.uint8), np.eye(4)) if with_mask else None
    nil_threshold = f"{threshold}%" if strategy == "percentile" else threshold
    if two_sided and threshold < 0:
        with pytest.raises(ValueError, match="should not be a negative value"):
            resolve_threshold(maps, strategy=strategy, threshold=threshold, two_sided=True)
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = threshold_img(nib.Nifti1Image(maps, np.eye(4)), nil_threshold,
                                 two_sided=two_sided, mask_img=mask_img).get_fdata(
                                     dtype=np.float32)
        out = threshold_maps(maps, strategy=strategy, threshold=threshold,
                             two_sided=two_sided, mask=mask if with_mask else None)
    np.testing.assert_array_equal(out, expected)


def test_img_value_compares_in_map_dtype():
    # float32(0.7) survives threshold=0.7 because the comparison is done in float32 (trap 5).
    maps = np.zeros((3, 3, 3, 1), np.float32)
    maps[1, 1, 1, 0] = np.float32(0.7)
    out = threshold_maps(maps, strategy="img_value", threshold=0.7)
    assert out[1, 1, 1, 0] == np.float32(0.7)


def test_unknown_strategy_lists_choices():
    with pytest.raises(ValueError, match=r"'thresholding_strategy' must be one of \['ratio"):
        resolve_threshold(_maps(), strategy="otsu", threshold=1)


def test_input_not_modified():
    maps = _maps()
    before = maps.copy()
    threshold_maps(maps, strategy="img_value", threshold=1.0, mask=np.ones(maps.shape[:3], bool))
    np.testing.assert_array_equal(maps, before)


# ------------------------------------------------------------------------------------------
# ratio_n_voxels: the percentile from the strongest magnitudes only (sampled bracket)


def _ica_like(shape=(40, 44, 38, 6), seed=0, dtype=np.float32, order="F"):
    """Sparse blobby maps with negative parts, like ICA maps: mostly exact zeros."""
    rng = np.random.default_rng(seed)
    maps = np.zeros(shape)
    for k in range(shape[-1]):
        noise = ndimage.gaussian_filter(rng.standard_normal(shape[:3]), 2.0)
        maps[..., k] = np.where(np.abs(noise) > 0.05, noise, 0.0)
    return np.asarray(maps.astype(dtype), order=order)


def _spy_on_brackets(monkeypatch) -> list:
    """Record the (lower, upper) bounds of every pass over the maps."""
    calls = []
    original = thresholding._bracket

    def spy(maps, lower, upper, n_threads):
        calls.append((lower, upper))
        return original(maps, lower, upper, n_threads)

    monkeypatch.setattr(thresholding, "_bracket", spy)
    return calls


@pytest.mark.parametrize(
    "ratio,bounds",
    [
        (0.002, "lower"),  # the sample's top cannot bound so few values from above
        (0.5, "both"),
        (1.0, "both"),
        (2.0, "both"),
        (5.0, "none"),  # the percentile falls among the zeros
    ],
)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("order", ["F", "C", "strided"])
@pytest.mark.parametrize("n_threads", [1, 2])
def test_ratio_cutoff_from_a_bracket_is_scipy(
    monkeypatch, ratio, bounds, dtype, order, n_threads
):
    # A small sample size so that these maps are sampled with a stride, as MNI-size maps are.
    monkeypatch.setattr(thresholding, "_SAMPLE_SIZE", 5_000)
    calls = _spy_on_brackets(monkeypatch)
    maps = _ica_like(dtype=dtype, order="C" if order == "C" else "F")
    if order == "strided":
        maps = np.concatenate([maps, maps[::-1]], axis=-1)[..., ::2]
    q = 100.0 - (100.0 / maps.shape[-1]) * ratio
    cutoff = thresholding.ratio_threshold(maps, ratio, n_threads=n_threads).cutoff
    assert cutoff == scoreatpercentile(np.abs(maps), q)
    assert type(cutoff) is np.float64
    # One pass over the maps, with the bounds the sample could give.
    assert [("lower" if upper is None else "both") for _, upper in calls] == (
        [] if bounds == "none" else [bounds]
    )


def test_ratio_cutoff_with_ties_at_the_bracket(monkeypatch):
    # Values on a coarse grid: the order statistics and the bounds are tied with many others.
    monkeypatch.setattr(thresholding, "_SAMPLE_SIZE", 5_000)
    maps = np.round(_ica_like(seed=1) * 20) / 20
    for ratio in (0.3, 1.0, 2.5):
        q = 100.0 - (100.0 / maps.shape[-1]) * ratio
        assert thresholding.ratio_threshold(maps, ratio).cutoff == scoreatpercentile(
            np.abs(maps), q
        )


def _biased_sample_maps(sampled_value: float, other_value: float) -> np.ndarray:
    """Maps whose strided sample sees only ``sampled_value``: it misjudges every percentile."""
    maps = _ica_like(seed=2)
    flat = maps.ravel(order="K")
    step = thresholding._next_prime(maps.size // thresholding._SAMPLE_SIZE)
    nonzero = flat != 0
    flat[nonzero] = other_value * np.sign(flat[nonzero])
    flat[::step] = sampled_value
    flat[np.flatnonzero(nonzero)[::7]] *= 1.5  # two distinct strong values besides
    return maps


@pytest.mark.parametrize(
    "sampled_value",
    [
        # The sample holds small values only: both bounds are too low, too many values lie
        # above; the retry without an upper bound finds them.
        pytest.param(0.01, id="too-low-retries-without-upper-bound"),
        # The sample holds large values only: the lower bound leaves out needed values, the
        # retry fails too and the full computation runs.
        pytest.param(100.0, id="too-high-falls-back-to-full-computation"),
    ],
)
def test_ratio_bracket_that_misses_still_gives_scipys_cutoff(monkeypatch, sampled_value):
    monkeypatch.setattr(thresholding, "_SAMPLE_SIZE", 5_000)
    calls = _spy_on_brackets(monkeypatch)
    maps = _biased_sample_maps(sampled_value=sampled_value, other_value=1.0)
    cutoff = thresholding.ratio_threshold(maps, 1.0).cutoff
    assert cutoff == scoreatpercentile(np.abs(maps), 100.0 - 100.0 / maps.shape[-1])
    assert [upper is None for _, upper in calls] == [False, True]


@pytest.mark.parametrize("dtype", [np.int16, np.uint8])
def test_ratio_cutoff_integer_maps_take_the_full_computation(monkeypatch, dtype):
    calls = _spy_on_brackets(monkeypatch)
    maps = (np.abs(_ica_like(seed=3)) * 400).astype(dtype)
    cutoff = thresholding.ratio_threshold(maps, 1.0).cutoff
    assert cutoff == scoreatpercentile(np.abs(maps), 100.0 - 100.0 / maps.shape[-1])
    assert calls == []


def test_ratio_cutoff_among_zeros_is_zero(monkeypatch):
    # More voxels asked for than there are non-zero values: the percentile is a zero.
    calls = _spy_on_brackets(monkeypatch)
    maps = np.zeros((20, 20, 20, 4), np.float32)
    maps[5:8, 5:8, 5:8] = 1.5
    maps[6, 6, 6, 2] = -3.0
    assert thresholding.ratio_threshold(maps, 3.0).cutoff == scoreatpercentile(
        np.abs(maps), 100.0 - 100.0 / 4 * 3.0
    ) == 0.0
    assert calls == []


def test_ratio_cutoff_nan_sorts_last(monkeypatch):
    # Not reachable from a maps image (non-finite values are zeroed on loading), but the
    # cut-off still equals scipy's, which sorts NaN above every value.
    monkeypatch.setattr(thresholding, "_SAMPLE_SIZE", 5_000)
    maps = _ica_like(seed=4)
    maps[3, 4, 5, 1] = np.nan
    q = 100.0 - 100.0 / maps.shape[-1] * 0.0001
    expected = scoreatpercentile(np.abs(maps), q)
    assert np.array_equal(thresholding.ratio_threshold(maps, 0.0001).cutoff, expected,
                          equal_nan=True)


@pytest.mark.parametrize(
    "threshold,keeps",
    [
        (thresholding.Threshold(0.0, "magnitude"), True),
        (thresholding.Threshold(np.float64(0.2), "magnitude"), False),
        (thresholding.Threshold(0.0, "above"), True),
        (thresholding.Threshold(0.3, "above"), False),
        (thresholding.Threshold(0.0, "two_sided"), True),
        (thresholding.Threshold(0.3, "two_sided"), False),
        (thresholding.Threshold(-0.3, "below"), False),
    ],
)
def test_which_thresholds_keep_signed_zeros(threshold, keeps):
    maps = np.array([-0.0, 0.0, -0.5, 0.5], np.float32).reshape(1, 1, 4, 1)
    out = threshold.apply(maps)
    assert threshold.keeps_zeros(np.float32) is keeps
    # A kept -0.0 keeps its sign bit; a dropped one becomes +0.0, like nilearn's "= 0.0".
    assert bool(np.signbit(out[0, 0, 0, 0])) is keeps
    expected = np.where(threshold.dropped(maps), np.float32(0.0), maps)
    np.testing.assert_array_equal(out.view(np.uint32), expected.view(np.uint32))
