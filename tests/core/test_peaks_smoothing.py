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


def _peaky(seed, shape=(24, 27, 22), dtype=np.float32):
    """Smooth signed noise with a few strong blobs: peaks of all heights, some plateaus."""
    rng = np.random.default_rng(seed)
    x = ndimage.gaussian_filter(rng.standard_normal(shape), 1.5)
    for _ in range(3):
        centre = tuple(rng.integers(0, n) for n in shape)
        x[centre] += 3.0
    x = ndimage.gaussian_filter(x, 1.0)
    if seed % 3 == 0:
        x = np.round(x, 2)  # plateaus, ties with the window maximum
    return x.astype(dtype)


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"threshold_rel": 0.5},
        {"threshold_rel": 0.0},  # every local maximum above 0
        {"threshold_abs": 0.05},
        {"threshold_abs": -0.5},
        {"threshold_rel": -0.1},
        {"threshold_rel": -0.1, "threshold_abs": -0.5},  # negative threshold: the
        # non-maxima (zero candidates) count as peaks, only the full filter tells them
        {"min_distance": 3},
    ],
    ids=["default", "rel0.5", "rel0", "abs", "abs-neg", "rel-neg", "both-neg", "dist3"],
)
def test_peak_mask_above_threshold_equals_nilearn(seed, dtype, kwargs):
    image = _peaky(seed, dtype=dtype)
    np.testing.assert_array_equal(peak_mask(image, **kwargs), peak_local_max(image, **kwargs))
    # All-negative images have no maximum above 0 (fallback path).
    negative = image - image.max() - 1
    np.testing.assert_array_equal(peak_mask(negative, **kwargs),
                                  peak_local_max(negative, **kwargs))


def test_peak_mask_filters_only_around_values_above_threshold(monkeypatch):
    """The maximum filter runs on the box of values above the threshold, not the image."""
    from bids_regionx.core import peaks

    shapes = []
    original = peaks.maximum_filter

    def spy(image, **kwargs):
        shapes.append(image.shape)
        return original(image, **kwargs)

    monkeypatch.setattr(peaks, "maximum_filter", spy)
    image = np.zeros((40, 40, 40), np.float32)
    image[10:15, 20:24, 5:8] = ndimage.gaussian_filter(np.ones((5, 4, 3)), 1.0)
    image += 1e-3 * ndimage.gaussian_filter(np.random.default_rng(0).random(image.shape), 2)
    expected = peak_local_max(image)
    np.testing.assert_array_equal(peak_mask(image), expected)
    assert len(shapes) == 1 and np.prod(shapes[0]) <= 5 * 4 * 3


def test_peak_mask_on_crops_of_every_map_equals_nilearn():
    # Crops reaching beyond the support with zeros around (outside_is_zero), as in splitting.
    for seed in range(4):
        s = np.zeros((40, 42, 38), np.float32)
        s[8:32, 9:36, 7:29] = _peaky(seed)
        s[s < 0.02] = 0  # zero outside a compact support, negatives removed
        box = tuple(slice(a.start - 2, a.stop + 2) for a in ndimage.find_objects(
            (s != 0).astype(np.uint8))[0])
        np.testing.assert_array_equal(peak_mask(s[box], outside_is_zero=True),
                                      peak_local_max(s)[box])
