"""Peak finding and smoothing equal nilearn's, including on crops of a larger volume."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from nilearn._utils.ndimage import peak_local_max
from nilearn.image.image import smooth_array as nilearn_smooth
from scipy import ndimage

from bids_regionx.core.peaks import peak_mask
from bids_regionx.core.smoothing import (
    fwhm_to_sigma_voxels,
    kernel_radius_voxels,
    smooth_array,
)

AFFINES = {
    "iso2": np.diag([2.0, 2.0, 2.0, 1.0]),
    "aniso": np.diag([1.5, 2.0, 3.5, 1.0]),
    "oblique": np.array([[0, 2.0, 0, 1], [-3.0, 0, 0, 2], [0, 0, 2.5, 3], [0, 0, 0, 1]]),
}


def _blob(seed=0, shape=(30, 34, 28), dtype=np.float32):
    rng = np.random.default_rng(seed)
    m = np.zeros(shape)
    m[10:20, 12:22, 9:17] = ndimage.gaussian_filter(rng.standard_normal((10, 10, 8)), 1.0)
    return np.asfortranarray(m.astype(dtype))


@pytest.mark.parametrize("affine", AFFINES)
@pytest.mark.parametrize("fwhm", [None, 0.5, 6, 10])
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int16])
def test_smooth_array_equals_nilearn(affine, fwhm, dtype):
    m = _blob(dtype=dtype) if dtype != np.int16 else (_blob() * 100).astype(np.int16)
    expected = nilearn_smooth(m, AFFINES[affine], fwhm=fwhm)
    out = smooth_array(m, AFFINES[affine], fwhm)
    assert out.dtype == expected.dtype
    np.testing.assert_array_equal(out, expected)


def test_smooth_array_zero_fwhm_warns_and_copies():
    m = _blob()
    with pytest.warns(UserWarning, match="specified as 0"):
        out = smooth_array(m, np.eye(4), 0)
    np.testing.assert_array_equal(out, m)
    assert out is not m


@pytest.mark.parametrize("affine", AFFINES)
def test_smoothing_on_a_crop_is_exact(affine):
    # Smoothed values inside a crop grown by the kernel radius equal whole-volume smoothing.
    m = _blob()
    full = smooth_array(m, AFFINES[affine], 6)
    reach = [kernel_radius_voxels(s) for s in fwhm_to_sigma_voxels(AFFINES[affine], 6)]
    box = tuple(slice(max(a - r, 0), b + r) for (a, b), r in zip([(10, 20), (12, 22), (9, 17)],
                                                                reach, strict=True))
    np.testing.assert_array_equal(smooth_array(m[box], AFFINES[affine], 6), full[box])


@pytest.mark.parametrize("seed", range(4))
def test_peak_mask_equals_nilearn(seed):
    s = smooth_array(_blob(seed), AFFINES["iso2"], 6)
    np.testing.assert_array_equal(peak_mask(s), peak_local_max(s))


@pytest.mark.parametrize(
    "image",
    [np.zeros((5, 5, 5)), np.ones((5, 5, 5)), np.pad(np.ones((2, 2, 1)), 2)],
    ids=["zeros", "constant", "plateau"],
)
def test_peak_mask_edge_cases(image):
    np.testing.assert_array_equal(peak_mask(image), peak_local_max(image))


def test_peak_mask_on_crop_with_zero_outside():
    s = smooth_array(_blob(3), AFFINES["iso2"], 6)
    box = ndimage.find_objects((s != 0).astype(np.uint8))[0]
    crop = peak_mask(s[box], outside_is_zero=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        np.testing.assert_array_equal(crop, peak_local_max(s)[box])
