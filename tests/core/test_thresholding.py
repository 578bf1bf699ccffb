"""Thresholding cut-offs and comparisons equal nilearn's, precision quirks included."""

from __future__ import annotations

import warnings

import nibabel as nib
import numpy as np
import pytest
from nilearn.image import threshold_img
from nilearn.regions.region_extractor import _threshold_maps_ratio
from scipy.stats import scoreatpercentile

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
