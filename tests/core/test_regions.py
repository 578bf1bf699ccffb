"""Splitting maps into regions (``split_maps``) against nilearn's ``connected_regions``.

``split_maps`` writes into its (zero) output only the voxels that are not +0.0: each region's
values and the -0.0 that nilearn's ``(labels == id) * map`` leaves wherever the parent map's
sign bit is set outside the region. These tests hold it to nilearn bit for bit on maps built
to stress that: negative parts, -0.0 values (kept when thresholding keeps zeros), -0.0 outside
the support, float64 and integer maps, masks.
"""

from __future__ import annotations

import warnings

import nibabel as nib
import numpy as np
import pytest
from nilearn.regions import connected_regions

from bids_regionx.core.images import new_img_like
from bids_regionx.core.regions import split_maps
from bids_regionx.core.thresholding import Threshold, resolve_threshold
from bids_regionx.synthetic.maps import ellipsoid_mask, grid_affine, ica_like_maps

SHAPE = (26, 28, 24)
AFFINE = grid_affine((2.0, 2.0, 2.0), SHAPE)
EXTRACTORS = ("connected_components", "local_regions")


def _signed_maps(seed: int = 0, dtype=np.float32) -> np.ndarray:
    """ICA-like maps (negative blobs included) with -0.0 scattered everywhere, F-ordered."""
    maps = ica_like_maps(SHAPE, 4, seed=seed, sigma_range=(1.5, 3.0))
    maps[np.abs(maps) < 0.15] = 0.0
    rng = np.random.default_rng(seed)
    zeros = np.flatnonzero(maps.ravel(order="F") == 0)
    flat = maps.reshape(-1, order="F")
    flat[rng.choice(zeros, zeros.size // 3, replace=False)] = -0.0  # inside and outside boxes
    return np.asfortranarray(maps.astype(dtype))


def _bits(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a).view(f"u{a.dtype.itemsize}")


def assert_same_as_nilearn(maps, *, extractor, min_region_size=16.0, mask=None, **kwargs):
    """split_maps(maps) equals nilearn's connected_regions on the same (thresholded) maps."""
    mask_img = None if mask is None else nib.Nifti1Image(mask.astype(np.uint8), AFFINE)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref_img, ref_index = connected_regions(
            nib.Nifti1Image(maps, AFFINE), min_region_size=min_region_size,
            extract_type=extractor, smoothing_fwhm=6, mask_img=mask_img,
        )
        split = split_maps(maps, AFFINE, extractor=extractor, min_region_size=min_region_size,
                           smoothing_fwhm=6, mask=mask, **kwargs)
    if ref_img is None:  # no region (e.g. local_regions on negative-only maps, trap 12)
        assert split is None
        return None
    ref = np.asarray(ref_img.dataobj)
    assert split.regions.dtype == ref.dtype == np.float32
    assert split.regions.flags.f_contiguous
    assert split.index == ref_index
    np.testing.assert_array_equal(_bits(split.regions), _bits(ref))
    np.testing.assert_array_equal(split.n_voxels, np.count_nonzero(ref, axis=(0, 1, 2)))
    return split


@pytest.mark.parametrize("extractor", EXTRACTORS)
@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.parametrize("n_threads", [1, 2])
def test_signed_zeros_everywhere_equal_nilearn(extractor, masked, n_threads):
    maps = _signed_maps()
    assert np.count_nonzero(np.signbit(maps) & (maps == 0)) > 1000
    mask = ellipsoid_mask(SHAPE, fill=0.7) if masked else None
    split = assert_same_as_nilearn(maps, extractor=extractor, mask=mask, n_threads=n_threads)
    regions = split.regions
    # The -0.0 of the input survive outside the regions' boxes too (nilearn multiplies the
    # whole volume), but never outside the mask (masking writes +0.0).
    negative_zeros = np.signbit(regions) & (regions == 0)
    assert negative_zeros.any()
    if masked:
        assert not negative_zeros[~mask].any()


@pytest.mark.parametrize("extractor", EXTRACTORS)
@pytest.mark.parametrize("dtype", [np.float64, np.int16])
def test_float64_and_integer_maps_equal_nilearn(extractor, dtype):
    maps = _signed_maps(seed=1, dtype=np.float64)
    if dtype == np.int16:
        maps = np.asfortranarray(np.round(maps * 300).astype(np.int16))  # no signed zeros
    assert_same_as_nilearn(maps, extractor=extractor)


@pytest.mark.parametrize("extractor", EXTRACTORS)
@pytest.mark.parametrize("layout", ["C", "strided"])
def test_in_memory_layouts_equal_nilearn(extractor, layout):
    maps = _signed_maps(seed=2)
    maps = np.ascontiguousarray(maps) if layout == "C" else np.concatenate(
        [maps, maps], axis=-1)[..., ::2]
    assert_same_as_nilearn(maps, extractor=extractor)


@pytest.mark.parametrize("extractor", EXTRACTORS)
@pytest.mark.parametrize(
    "threshold",
    [
        Threshold(np.float64(0.0), "magnitude"),  # a zero cut-off keeps -0.0
        Threshold(np.float64(0.3), "magnitude"),  # any other turns it into +0.0
        Threshold(0.0, "above"),
        Threshold(0.3, "two_sided"),
        Threshold(-0.3, "below"),
    ],
    ids=["ratio-zero", "ratio", "value-zero", "two-sided", "below"],
)
def test_threshold_applied_while_splitting_equals_thresholding_first(extractor, threshold):
    """split_maps(threshold=t) reads the raw maps; it must equal splitting t.apply(maps)."""
    maps = _signed_maps(seed=3)
    mask = ellipsoid_mask(SHAPE, fill=0.8)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fused = split_maps(maps, AFFINE, extractor=extractor, min_region_size=16.0,
                           threshold=threshold, mask=mask)
    first = assert_same_as_nilearn(threshold.apply(maps), extractor=extractor, mask=mask)
    if first is None:
        assert fused is None
        return
    np.testing.assert_array_equal(_bits(fused.regions), _bits(first.regions))
    assert fused.index == first.index


def test_ratio_threshold_on_sparse_maps_keeps_negative_zeros():
    # Fewer non-zero voxels than the ratio asks for: the cut-off is 0, so -0.0 survive it.
    maps = _signed_maps(seed=4)
    threshold = resolve_threshold(maps, strategy="ratio_n_voxels", threshold=3.5)
    assert threshold.cutoff == 0 and threshold.keeps_zeros(maps.dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        split = split_maps(maps, AFFINE, extractor="connected_components", min_region_size=16.0,
                           threshold=threshold)
    first = assert_same_as_nilearn(threshold.apply(maps), extractor="connected_components")
    np.testing.assert_array_equal(_bits(split.regions), _bits(first.regions))


@pytest.mark.parametrize("positive_only", [False, True])
def test_value_range_is_the_data_range(positive_only):
    maps = _signed_maps(seed=5)
    if positive_only:
        maps = np.abs(maps)  # -0.0 become +0.0 and the minimum is a zero
    split = split_maps(maps, AFFINE, extractor="connected_components", min_region_size=16.0)
    low, high = split.value_range
    assert high is not None and _bits(np.asarray(high)) == _bits(split.regions.max())
    if positive_only:
        assert low is None  # its sign would need a pass over the data
    else:
        assert _bits(np.asarray(low)) == _bits(split.regions.min())
    img = new_img_like(nib.Nifti1Image(maps, AFFINE), split.regions, set_dtype=True,
                       value_range=split.value_range)
    assert _bits(np.asarray(img.header["cal_max"])) == _bits(split.regions.max())
    assert _bits(np.asarray(img.header["cal_min"])) == _bits(split.regions.min())


def test_negative_min_region_size_raises():
    with pytest.raises(ValueError, match="min_region_size"):
        split_maps(_signed_maps(), AFFINE, min_region_size=-1.0)
