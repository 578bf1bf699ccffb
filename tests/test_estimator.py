"""API and fit side of :class:`bids_regionx.RegionExtractor` (nilearn 0.14 as the oracle).

Signature, scikit-learn protocol (get/set_params, clone, pickle, estimator checks), fitted state,
error messages, caching, masks and resampling targets. Region values themselves are compared with
nilearn in ``tests/core/test_region_parity.py``; the transform side is in
``tests/test_estimator_transform.py``. Deliberate divergences from nilearn are asserted here
against nilearn's own behaviour, so a nilearn change that removes one shows up
(``docs/nilearn-divergences.md``).
"""

from __future__ import annotations

import inspect
import pickle
import re
import warnings
from pathlib import Path

import joblib
import nibabel as nib
import numpy as np
import pytest
from nilearn.regions import RegionExtractor as NilearnRegionExtractor
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.utils.estimator_checks import estimator_checks_generator, parametrize_with_checks

import bids_regionx.core.region_extraction as region_extraction
from bids_regionx import RegionExtractor
from bids_regionx.core.errors import DimensionError
from bids_regionx.synthetic.maps import atlas_like_maps, ellipsoid_mask, grid_affine, ica_like_maps

SHAPE = (20, 21, 22)
AFFINE = grid_affine((2.0, 2.0, 2.0), SHAPE)
#: Fit options for small maps: both extractors find several regions in milliseconds.
FAST = {"min_region_size": 10}


def maps_img(seed: int = 0, n_maps: int = 4) -> nib.Nifti1Image:
    return nib.Nifti1Image(ica_like_maps(SHAPE, n_maps, seed=seed, sigma_range=(1.5, 3.0)), AFFINE)


def regions_bits(est) -> bytes:
    """The fitted regions as raw bytes (exact comparison, signed zeros included)."""
    return np.ascontiguousarray(np.asarray(est.regions_img_.dataobj)).tobytes()


def quiet_fit(est, imgs=None):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return est.fit(imgs)


# ------------------------------------------------------------------------------------------
# signature and scikit-learn protocol


def test_signature_is_nilearns():
    """All 25 parameters: names, order, kinds and defaults."""
    ours = inspect.signature(RegionExtractor)
    ref = inspect.signature(NilearnRegionExtractor)
    assert len(ours.parameters) == 25
    assert [(p.name, p.kind, p.default) for p in ours.parameters.values()] == [
        (p.name, p.kind, p.default) for p in ref.parameters.values()
    ]
    assert RegionExtractor().get_params() == NilearnRegionExtractor().get_params()


def test_get_set_params(small_maps_img):
    est = RegionExtractor(small_maps_img)
    assert est.get_params()["maps_img"] is small_maps_img
    assert est.set_params(threshold=0.5, extractor="connected_components") is est
    assert est.get_params()["threshold"] == 0.5
    assert est.extractor == "connected_components"
    with pytest.raises(ValueError, match="Invalid parameter 'spam'"):
        est.set_params(spam=1)


def test_clone(small_maps_img):
    est = quiet_fit(RegionExtractor(small_maps_img, threshold=0.8, **FAST))
    copy = clone(est)
    assert copy.get_params().keys() == est.get_params().keys()
    assert copy.threshold == 0.8
    assert not hasattr(copy, "regions_img_")
    with pytest.raises(NotFittedError):
        copy.transform(small_maps_img)


def test_pickle_round_trip(small_maps_img):
    est = quiet_fit(RegionExtractor(small_maps_img, **FAST))
    back = pickle.loads(pickle.dumps(est))
    assert regions_bits(back) == regions_bits(est)
    assert back.index_ == est.index_
    assert back.get_params().keys() == est.get_params().keys()
    assert back.n_elements_ == est.n_elements_


def test_not_fitted_message(small_maps_img):
    with pytest.raises(NotFittedError, match="This RegionExtractor instance is not fitted yet"):
        RegionExtractor(small_maps_img).transform(small_maps_img)


# ------------------------------------------------------------------------------------------
# fitted state


@pytest.mark.parametrize("masked", [False, True])
def test_fit_returns_self_and_sets_attributes(small_maps_img, masked):
    mask = nib.Nifti1Image(ellipsoid_mask(SHAPE, 0.8).astype(np.int16) * 3, AFFINE)
    est = RegionExtractor(small_maps_img, mask_img=mask if masked else None, **FAST)
    assert quiet_fit(est, None) is est
    assert isinstance(est.regions_img_, nib.Nifti1Image)
    assert est.regions_img_.ndim == 4 and est.regions_img_.shape[:3] == SHAPE
    assert np.asarray(est.regions_img_.dataobj).dtype == np.float32
    assert est.regions_img_.get_data_dtype() == np.float32
    assert type(est.index_) is list and all(type(i) is int for i in est.index_)
    assert est.index_ == sorted(est.index_) and len(est.index_) == est.regions_img_.shape[3]
    assert isinstance(est.maps_img_, nib.Nifti1Image)
    assert np.asarray(est.maps_img_.dataobj).dtype == np.float32
    assert type(est.n_elements_) is int and est.n_elements_ == est.regions_img_.shape[3] > 0
    assert isinstance(est.memory_, joblib.Memory) and est.memory_.location is None
    assert est.clean_args_ == {}
    if masked:
        assert est.mask_img_.ndim == 3
        assert np.asarray(est.mask_img_.dataobj).dtype == np.uint8
        assert set(np.unique(np.asarray(est.mask_img_.dataobj))) == {0, 1}
    else:
        assert est.mask_img_ is None
    assert not hasattr(est, "n_features_in_")  # as nilearn: X is an image, not features


def test_fit_ignores_y(small_maps_img):
    a = quiet_fit(RegionExtractor(small_maps_img, **FAST))
    b = RegionExtractor(small_maps_img, **FAST)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        b.fit(None, y=np.arange(5))
    assert regions_bits(a) == regions_bits(b)


def test_clean_args_are_kept(small_maps_img):
    args = {"filter": "cosine"}
    est = quiet_fit(RegionExtractor(small_maps_img, clean_args=args, **FAST))
    assert est.clean_args_ == args
    assert est.clean_args is args  # the parameter itself is left alone


@pytest.mark.parametrize(
    ("strategy", "threshold"),
    [("ratio_n_voxels", 1.0), ("img_value", 0.3), ("percentile", 90)],
)
@pytest.mark.parametrize("extractor", ["connected_components", "local_regions"])
def test_fit_is_idempotent_and_never_changes_a_parameter(strategy, threshold, extractor):
    maps = maps_img()
    data_before = np.array(maps.dataobj)
    est = RegionExtractor(maps, thresholding_strategy=strategy, threshold=threshold,
                          extractor=extractor, **FAST)
    params = est.get_params()
    quiet_fit(est)
    first = (regions_bits(est), est.index_)
    quiet_fit(est)  # nilearn's second percentile fit raises (trap 8)
    assert (regions_bits(est), est.index_) == first
    after = est.get_params()
    assert after.keys() == params.keys()
    for name, value in params.items():
        assert after[name] is value, name
    np.testing.assert_array_equal(np.asarray(maps.dataobj), data_before)


def test_nilearn_rewrites_the_percentile_threshold(small_maps_img):
    """The divergence above, as nilearn shows it."""
    ref = quiet_fit(NilearnRegionExtractor(small_maps_img, thresholding_strategy="percentile",
                                           threshold=90, **FAST))
    assert ref.threshold == "90%"
    with pytest.raises(ValueError, match="The given input to threshold is not valid"):
        quiet_fit(ref)


def test_refit_with_another_mask_changes_mask_img_(small_maps_img):
    est = RegionExtractor(small_maps_img, **FAST)
    masks = [nib.Nifti1Image(ellipsoid_mask(SHAPE, f).astype(np.uint8), AFFINE) for f in (.9, .6)]
    fitted = [np.asarray(quiet_fit(est.set_params(mask_img=m)).mask_img_.dataobj).copy()
              for m in masks]
    assert not np.array_equal(*fitted)


# ------------------------------------------------------------------------------------------
# errors


def _all_zero_maps():
    return nib.Nifti1Image(np.zeros((*SHAPE, 3), np.float32), AFFINE)


ERROR_CASES = [
    # (id, parameters, exception, pattern of the message)
    ("strategy", {"thresholding_strategy": "n_"}, ValueError,
     r"'thresholding_strategy' must be one of \['ratio_n_voxels', 'img_value', 'percentile'\]"
     r"\.\n'n_' was provided"),
    ("extractor", {"extractor": "spam"}, ValueError,
     r"'extractor' must be one of \['connected_components', 'local_regions'\]\.\n"
     r"'spam' was provided"),
    ("extractor_int", {"extractor": 1}, ValueError, r"'extractor' must be one of"),
    ("target", {"resampling_target": "brain"}, ValueError,
     r"'resampling_target' must be one of \('mask', 'maps', 'data', None\)"),
    ("standardize", {"standardize": "zscore"}, ValueError,
     r"'standardize' must be one of \('zscore_sample', 'psc', True, False, None\)"),
    ("negative_min_region_size", {"min_region_size": -1}, ValueError,
     r"'min_region_size' must be >= 0"),
    ("negative_fwhm", {"smoothing_fwhm": -2}, ValueError, r"'smoothing_fwhm' must be >= 0"),
    ("ratio_zero", {"threshold": 0}, ValueError,
     r"threshold given as ratio .* n_maps=4\. You provided 0"),
    ("ratio_too_big", {"threshold": 4.5}, ValueError, r"n_maps=4\. You provided 4\.5"),
    ("ratio_negative", {"threshold": -1.0}, ValueError, r"n_maps=4\. You provided -1\.0"),
    ("threshold_none", {"threshold": None}, ValueError,
     r"The given input to threshold is not valid"),
    ("threshold_str", {"threshold": "30%"}, ValueError,
     r"The given input to threshold is not valid"),
    ("threshold_bool", {"threshold": True}, TypeError,
     r"'threshold' must be of type\(s\): 'float \| numpy\.floating \| int \| numpy\.integer \| "
     r"str \| None'\.\nGot: 'bool'"),
    ("negative_two_sided", {"thresholding_strategy": "img_value", "threshold": -0.1,
                            "two_sided": True}, ValueError,
     r'"threshold" should not be a negative value when two_sided=True'),
    ("percentile_above_100", {"thresholding_strategy": "percentile", "threshold": 150},
     ValueError, r"percentile must be in the range \[0, 100\]: 'threshold' is 150"),
    ("percentile_negative", {"thresholding_strategy": "percentile", "threshold": -5}, ValueError,
     r'"threshold" should not be a negative percentile value'),
    ("img_value_above_max", {"thresholding_strategy": "img_value", "threshold": 5.0},
     ValueError, r"No region survived thresholding and splitting \(thresholding_strategy="
                 r"'img_value', threshold=5\.0"),
    ("min_region_size_huge", {"min_region_size": 1e6}, ValueError,
     r"No region survived .*min_region_size=1000000\.0 mm3\): lower the threshold or "
     r"min_region_size"),
    ("dtype_bool", {"dtype": bool}, TypeError, r"'dtype' cannot be bool"),
    ("memory_level", {"memory_level": 1.5}, TypeError, r"'memory_level' must be of type"),
    ("two_sided_str", {"two_sided": "yes"}, TypeError, r"'two_sided' must be of type"),
    ("min_region_size_str", {"min_region_size": "a"}, TypeError,
     r"'min_region_size' must be of type"),
    ("clean_args_list", {"clean_args": [1]}, TypeError, r"'clean_args' must be a dict or None"),
    ("no_maps", {"maps_img": None}, TypeError,
     r"input should be a NiftiLike object .* Got: NoneType \(maps_img\)"),
    ("3d_maps", {"maps_img": "3d"}, DimensionError,
     r"maps_img has incompatible dimensionality: Expected dimension is 4D and you provided a "
     r"3D image"),
    ("all_zero_maps", {"maps_img": "zeros"}, ValueError,
     r"maps_img: the maps image is empty \(every value is 0\)"),
    ("empty_mask", {"mask_img": "zeros"}, ValueError,
     r"The mask is invalid as it is empty: it masks all data"),
    ("target_mask_without_mask", {"resampling_target": "mask"}, ValueError,
     r"resampling_target has been set to 'mask' but no mask has been provided\.\n"
     r"Set resampling_target to something else or provide a mask\."),
]


@pytest.mark.parametrize(("params", "exc", "pattern"), [c[1:] for c in ERROR_CASES],
                         ids=[c[0] for c in ERROR_CASES])
def test_bad_input_messages(small_maps_img, params, exc, pattern):
    params = dict(params)
    if params.get("maps_img") == "3d":
        params["maps_img"] = small_maps_img.slicer[..., 0]
    elif params.get("maps_img") == "zeros":
        params["maps_img"] = _all_zero_maps()
    if params.get("mask_img") == "zeros":
        params["mask_img"] = nib.Nifti1Image(np.zeros(SHAPE, np.uint8), AFFINE)
    est = RegionExtractor(**{"maps_img": small_maps_img, **FAST, **params})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(exc, match=pattern):
            est.fit()


def test_img_value_above_max_warns_then_raises(small_maps_img):
    """nilearn's warnings, minus its random-walker warning for each map left empty."""
    params = dict(maps_img=small_maps_img, thresholding_strategy="img_value", threshold=5.0)
    seen = []
    for cls, error in ((NilearnRegionExtractor, TypeError), (RegionExtractor, ValueError)):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            with pytest.raises(error):
                cls(**params).fit()
        seen.append([str(w.message).split(".")[0] for w in caught])
    ref, ours = seen
    assert ours == [
        "The given float value must not exceed 0",
        "No supra threshold regions was found",
    ]
    assert [m for m in ref if not m.startswith("Random walker")] == ours
    assert len(ref) == len(ours) + 4  # one per (emptied) map


def test_no_region_is_a_value_error_where_nilearn_crashes(small_maps_img):
    params = dict(maps_img=small_maps_img, min_region_size=1e6)
    with pytest.raises(TypeError, match="input should be a NiftiLike object"):
        quiet_fit(NilearnRegionExtractor(**params))
    with pytest.warns(UserWarning, match="No supra threshold regions was found"):
        with pytest.raises(ValueError, match="No region survived"):
            RegionExtractor(**params).fit()


def test_all_zero_maps_refused_before_thresholding():
    """nilearn thresholds, splits and crashes with the no-region TypeError; we say why."""
    with pytest.raises(TypeError, match="input should be a NiftiLike object"):
        quiet_fit(NilearnRegionExtractor(_all_zero_maps()))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # refused before any random-walker warning
        with pytest.raises(ValueError, match="maps_img: the maps image is empty"):
            RegionExtractor(_all_zero_maps()).fit()


# ------------------------------------------------------------------------------------------
# allow_overlap


def _two_box_maps(overlap: bool, value: float = 1.0) -> nib.Nifti1Image:
    """Two maps holding one box each (plus a negative box in map 0); optionally overlapping."""
    data = np.zeros((*SHAPE, 2), np.float32, order="F")
    data[2:8, 2:8, 2:8, 0] = value
    data[12:18, 2:8, 2:8, 0] = -value
    start = 5 if overlap else 10
    data[start:start + 6, 12:18, 2:8, 1] = value
    if overlap:
        data[5:8, 5:8, 5:8, 1] = value
    return nib.Nifti1Image(data, AFFINE)


FIT_BOXES = dict(thresholding_strategy="img_value", threshold=0.5, two_sided=True,
                 extractor="connected_components", min_region_size=10, smoothing_fwhm=None,
                 standardize=None)


def test_allow_overlap_false_raises_at_transform_and_keeps_the_maps():
    maps = _two_box_maps(overlap=True)
    est = quiet_fit(RegionExtractor(maps, allow_overlap=False, **FIT_BOXES))
    before = regions_bits(est), np.asarray(est.maps_img_.dataobj).copy()
    with pytest.raises(ValueError, match="Overlap detected in the maps"):
        est.transform(maps)
    assert regions_bits(est) == before[0]
    np.testing.assert_array_equal(np.asarray(est.maps_img_.dataobj), before[1])
    assert np.any(np.asarray(est.maps_img_.dataobj) < 0)  # negative region intact
    # nilearn zeroes every value below eps in maps_img_ before checking (trap 15).
    ref = quiet_fit(NilearnRegionExtractor(maps, allow_overlap=False, **FIT_BOXES))
    with pytest.raises(ValueError, match="Overlap detected in the maps"):
        ref.transform(maps)
    assert not np.any(np.asarray(ref.maps_img_.dataobj) < 0)


def test_allow_overlap_false_without_overlap_keeps_negative_regions():
    """Data equal to the maps: each region's signal is 1 where its map is the volume."""
    maps = _two_box_maps(overlap=False)
    expected = np.array([[1.0, 1.0, 0.0], [0.0, 0.0, 1.0]])  # regions: +box, -box (map 0), box
    est = quiet_fit(RegionExtractor(maps, allow_overlap=False, **FIT_BOXES))
    assert est.index_ == [0, 0, 1]
    np.testing.assert_allclose(est.transform(maps), expected, atol=1e-6)
    # nilearn zeroed the negative region, whose signal is then lost.
    ref = quiet_fit(NilearnRegionExtractor(maps, allow_overlap=False, **FIT_BOXES))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        np.testing.assert_allclose(ref.transform(maps)[:, 1], 0.0, atol=1e-6)


@pytest.mark.parametrize("value", [np.finfo(np.float32).eps, np.finfo(np.float32).eps / 2])
def test_overlap_at_exactly_eps_counts_as_nilearn(value):
    """nilearn zeroes v < eps then counts v > 0: a value of exactly eps overlaps."""
    data = np.array(_two_box_maps(overlap=False).dataobj)
    data[3, 3, 3, 1] = value  # map 1 touches map 0's box with a tiny weight
    maps = nib.Nifti1Image(data, AFFINE)
    params = dict(maps_img=maps, thresholding_strategy="img_value", threshold=value,
                  extractor="connected_components", min_region_size=0, allow_overlap=False,
                  smoothing_fwhm=None)
    raised = []
    for cls in (NilearnRegionExtractor, RegionExtractor):
        est = quiet_fit(cls(**params))
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                est.transform(maps)
            raised.append(False)
        except ValueError as exc:
            assert "Overlap detected" in str(exc)
            raised.append(True)
    assert raised == [value >= np.finfo(np.float32).eps] * 2


# ------------------------------------------------------------------------------------------
# memory


def _spy_on_splitting(monkeypatch) -> list:
    """Count calls of the splitting step inside the (cached) region extraction."""
    calls = []
    original = region_extraction.split_maps

    def spy(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(region_extraction, "split_maps", spy)
    return calls


def _cached_results(location: Path) -> list[Path]:
    return sorted(location.rglob("output.pkl"))


@pytest.mark.parametrize("memory_kind", [str, Path, joblib.Memory])
def test_memory_caches_the_extraction(tmp_path, monkeypatch, small_maps_img, memory_kind):
    calls = _spy_on_splitting(monkeypatch)
    memory = memory_kind(tmp_path) if memory_kind is not joblib.Memory else joblib.Memory(
        tmp_path, verbose=0)
    est = RegionExtractor(small_maps_img, memory=memory, memory_level=1, **FAST)
    first = quiet_fit(est)
    bits, index = regions_bits(first), first.index_
    assert len(calls) == 1 and len(_cached_results(tmp_path)) == 1
    second = quiet_fit(clone(est))
    assert len(calls) == 1  # served from the cache
    assert (regions_bits(second), second.index_) == (bits, index)
    assert isinstance(second.memory_, joblib.Memory)
    quiet_fit(clone(est).set_params(threshold=0.5))
    assert len(calls) == 2 and len(_cached_results(tmp_path)) == 2


def test_memory_level_0_does_not_cache(tmp_path, monkeypatch, small_maps_img):
    calls = _spy_on_splitting(monkeypatch)
    est = RegionExtractor(small_maps_img, memory=str(tmp_path), memory_level=0, **FAST)
    quiet_fit(est)
    quiet_fit(est)
    assert len(calls) == 2 and not _cached_results(tmp_path)


def test_cache_sees_a_rewritten_maps_file(tmp_path):
    """joblib hashes a file-backed image by header and file name: the data must be hashed."""
    path = tmp_path / "maps.nii.gz"
    est = RegionExtractor(str(path), memory=str(tmp_path / "cache"), memory_level=1, **FAST)
    nib.save(maps_img(seed=0), path)
    first = regions_bits(quiet_fit(est))
    nib.save(maps_img(seed=1), path)  # same header, new data
    second = regions_bits(quiet_fit(clone(est)))
    expected = regions_bits(quiet_fit(RegionExtractor(maps_img(seed=1), **FAST)))
    assert second == expected != first


# ------------------------------------------------------------------------------------------
# masks, resampling targets and the data passed to fit


def fit_both(params: dict, imgs=None):
    out = []
    for cls in (NilearnRegionExtractor, RegionExtractor):
        out.append(quiet_fit(cls(**params), imgs))
    return out


def assert_same_mask_img(ref, ours):
    """Fitted ``mask_img_`` of two estimators: same affine, uint8 data, same values."""
    np.testing.assert_array_equal(ours.mask_img_.affine, ref.mask_img_.affine)
    a, b = np.asarray(ref.mask_img_.dataobj), np.asarray(ours.mask_img_.dataobj)
    assert a.dtype == b.dtype == np.uint8
    np.testing.assert_array_equal(b, a)


def test_4d_non_binary_mask_is_the_intersection(small_maps_img):
    inner = ellipsoid_mask(SHAPE, 0.6)
    outer = ellipsoid_mask(SHAPE, 0.9)
    data = np.stack([outer * 2.5, inner * -1.0, outer * 7.0], axis=-1).astype(np.float32)
    ref, ours = fit_both(dict(maps_img=small_maps_img, mask_img=nib.Nifti1Image(data, AFFINE),
                              **FAST))
    np.testing.assert_array_equal(np.asarray(ours.mask_img_.dataobj), inner)
    assert_same_mask_img(ref, ours)
    assert regions_bits(ours) == regions_bits(ref)


def test_mask_with_nan_warns_and_is_finite(small_maps_img):
    data = ellipsoid_mask(SHAPE, 0.8).astype(np.float32)
    data[0, 0, :3] = [np.nan, np.inf, -np.inf]
    mask = nib.Nifti1Image(data, AFFINE)
    with pytest.warns(UserWarning, match="Non-finite values detected"):
        ours = RegionExtractor(small_maps_img, mask_img=mask, **FAST).fit()
    ref = quiet_fit(NilearnRegionExtractor(small_maps_img, mask_img=mask, **FAST))
    assert_same_mask_img(ref, ours)
    assert np.all(np.isfinite(ours.regions_img_.get_fdata()))


def test_no_mask_and_no_imgs_leave_mask_img_none(small_maps_img):
    assert quiet_fit(RegionExtractor(small_maps_img, **FAST)).mask_img_ is None


def test_resampling_target_none_lists_every_field_of_view_problem(small_maps_img):
    mask = nib.Nifti1Image(np.ones((20, 21, 23), np.uint8), AFFINE)
    data = nib.Nifti1Image(np.zeros((*SHAPE, 5), np.float32), grid_affine((2.5, 2, 2), SHAPE))
    params = dict(maps_img=small_maps_img, mask_img=mask, resampling_target=None, **FAST)
    expected = (
        "Following field of view errors were detected:\n"
        "- maps and mask do not have the same shape\n"
        "- maps and data do not have the same affine\n"
        "- mask and data do not have the same shape\n"
        "- mask and data do not have the same affine"
    )
    for cls in (NilearnRegionExtractor, RegionExtractor):
        with pytest.raises(ValueError, match=re.escape(expected) + "$"):
            quiet_fit(cls(**params), data)


def test_fit_with_a_list_of_3d_images_resamples_to_their_grid(small_maps_img):
    grid = grid_affine((2.5, 2.5, 2.5), (16, 17, 18))
    rng = np.random.default_rng(0)
    vols = [nib.Nifti1Image(rng.standard_normal((16, 17, 18)).astype(np.float32), grid)
            for _ in range(3)]
    ref, ours = fit_both(dict(maps_img=small_maps_img, **FAST), vols)
    assert ours.maps_img_.shape == (16, 17, 18, ours.n_elements_)
    np.testing.assert_array_equal(ours.maps_img_.affine, grid)
    np.testing.assert_array_equal(np.asarray(ours.maps_img_.dataobj),
                                  np.asarray(ref.maps_img_.dataobj))
    # regions_img_ stays on the maps' grid
    assert ours.regions_img_.shape[:3] == SHAPE


@pytest.mark.parametrize("shape", [(20, 21, 0), (20, 21, 22, 0)])
def test_fit_with_an_empty_image(small_maps_img, shape):
    empty = nib.Nifti1Image(np.zeros(shape, np.float32), AFFINE)
    for cls in (NilearnRegionExtractor, RegionExtractor):
        with pytest.raises(ValueError, match="The image is empty"):
            quiet_fit(cls(small_maps_img, **FAST), empty)


def test_fit_with_file_inputs(tmp_path):
    """File inputs everywhere: maps, mask and data as .nii paths."""
    maps = nib.Nifti1Image(atlas_like_maps(SHAPE, 5, seed=2, sigma_range=(1.5, 3.0)), AFFINE)
    paths = {name: tmp_path / f"{name}.nii" for name in ("maps", "mask", "data")}
    nib.save(maps, paths["maps"])
    nib.save(nib.Nifti1Image(ellipsoid_mask(SHAPE, 0.8).astype(np.uint8), AFFINE), paths["mask"])
    nib.save(nib.Nifti1Image(np.zeros((16, 17, 18, 2), np.float32),
                             grid_affine((2.5,) * 3, (16, 17, 18))), paths["data"])
    params = dict(maps_img=str(paths["maps"]), mask_img=str(paths["mask"]), **FAST)
    ref, ours = fit_both(params, str(paths["data"]))
    assert regions_bits(ours) == regions_bits(ref)
    assert_same_mask_img(ref, ours)


# ------------------------------------------------------------------------------------------
# deprecations: the same FutureWarnings as nilearn, at the same step


@pytest.mark.parametrize(
    "params",
    [{"standardize": True}, {"standardize": False}, {"standardize": None},
     {"keep_masked_maps": True, "mask_img": "mask"}],
    ids=["standardize_true", "standardize_false", "standardize_none", "keep_masked_maps"],
)
def test_deprecation_warnings_match_nilearn(small_maps_img, params):
    params = dict(params)
    if params.get("mask_img") == "mask":
        params["mask_img"] = nib.Nifti1Image(ellipsoid_mask(SHAPE, 0.6).astype(np.uint8), AFFINE)
    data = nib.Nifti1Image(
        np.random.default_rng(0).standard_normal((*SHAPE, 5)).astype(np.float32), AFFINE
    )
    seen = []
    for cls in (NilearnRegionExtractor, RegionExtractor):
        est = cls(small_maps_img, **FAST, **params)
        steps = []
        for method in ("fit", "transform"):
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                getattr(est, method)(data)
            steps.append(sorted(
                (w.category.__name__, str(w.message).splitlines()[0])
                for w in caught if issubclass(w.category, FutureWarning)
            ))
        seen.append(steps)
    assert seen[1] == seen[0]


# ------------------------------------------------------------------------------------------
# scikit-learn's estimator checks

_ARRAY_X = (
    "fits or transforms a numpy array X; RegionExtractor takes NIfTI images, so fit raises "
    "TypeError('input should be a NiftiLike object ...')"
)
#: Every check expected to fail, with its reason: scikit-learn feeds arrays where this
#: estimator takes images (as for nilearn's maskers, whose list this mirrors). Where the check's
#: intent applies to images, the test that covers it is named.
EXPECTED_FAILED_CHECKS = {
    # not applicable to image input (nilearn: inapplicable_checks)
    "check_complex_data": _ARRAY_X,
    "check_dtype_object": _ARRAY_X,
    "check_estimator_sparse_array": _ARRAY_X + "; sparse input does not apply to images",
    "check_estimator_sparse_matrix": _ARRAY_X + "; sparse input does not apply to images",
    "check_estimator_sparse_tag": _ARRAY_X + "; sparse input does not apply to images",
    "check_f_contiguous_array_estimator": _ARRAY_X,
    "check_fit1d": _ARRAY_X,
    "check_fit2d_1feature": _ARRAY_X,
    "check_fit2d_1sample": _ARRAY_X,
    "check_fit2d_predict1d": _ARRAY_X,
    # the check's intent is tested with images in this file
    "check_dict_unchanged": _ARRAY_X + "; see test_fit_is_idempotent_and_never_changes_a_param",
    "check_dont_overwrite_parameters": _ARRAY_X + "; see test_fit_is_idempotent_and_never_...",
    "check_estimators_overwrite_params": _ARRAY_X + "; see test_fit_is_idempotent_and_never_...",
    "check_estimators_dtypes": _ARRAY_X + "; see test_maps_dtypes (region parity)",
    "check_estimators_empty_data_messages": _ARRAY_X + "; see test_fit_with_an_empty_image",
    "check_estimators_fit_returns_self": _ARRAY_X + "; see test_fit_returns_self_and_sets_...",
    "check_estimators_pickle": _ARRAY_X + "; see test_pickle_round_trip",
    "check_fit_check_is_fitted": _ARRAY_X + "; see test_not_fitted_message and test_clone",
    "check_fit_idempotent": _ARRAY_X + "; see test_fit_is_idempotent_and_never_changes_a_param",
    "check_fit_score_takes_y": _ARRAY_X + "; see test_fit_ignores_y",
    "check_n_features_in": _ARRAY_X + "; n_elements_ replaces n_features_in_ (as in nilearn)",
    "check_n_features_in_after_fitting": _ARRAY_X + "; n_elements_ replaces n_features_in_",
    "check_estimators_nan_inf": _ARRAY_X + "; NaN maps: test_maps_with_a_nan_slice (parity)",
    "check_positive_only_tag_during_fit": _ARRAY_X,
    "check_methods_sample_order_invariance": _ARRAY_X + "; transform side (volumes are samples)",
    "check_methods_subset_invariance": _ARRAY_X + "; transform side (volumes are samples)",
    "check_pipeline_consistency": _ARRAY_X + "; transform side",
    "check_readonly_memmap_input": _ARRAY_X,
    "check_transformer_data_not_an_array": _ARRAY_X + "; transform side",
    "check_transformer_general": _ARRAY_X + "; transform side",
    "check_transformer_preserve_dtypes": _ARRAY_X + "; dtype of signals: transform side",
}


def _estimator_for_checks() -> RegionExtractor:
    # With maps, so that the checks that do not need X (clone, repr, get/set_params, unfitted
    # errors, tags) see a configured estimator.
    return RegionExtractor(maps_img(), **FAST)


@parametrize_with_checks(
    [_estimator_for_checks()],
    expected_failed_checks=lambda est: EXPECTED_FAILED_CHECKS,
    xfail_strict=True,  # a check that starts passing must leave the list
)
def test_sklearn_estimator_checks(estimator, check):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        check(estimator)


def _failing_checks():
    est = _estimator_for_checks()
    return [
        pytest.param(check, id=getattr(check, "func", check).__name__)
        for _, check in estimator_checks_generator(est, legacy=True)
        if getattr(check, "func", check).__name__ in EXPECTED_FAILED_CHECKS
    ]


@pytest.mark.parametrize("check", _failing_checks())
def test_expected_check_failures_fail_for_the_stated_reason(check):
    """Each expected failure is the array-input TypeError, not some other breakage."""
    est = _estimator_for_checks()
    with pytest.raises(Exception) as info:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            check(est)
    chain, exc = [], info.value
    while exc is not None:
        chain.append(exc)
        exc = exc.__cause__ or exc.__context__
    # Some checks wrap the estimator's error in their own AssertionError: look down the chain.
    assert any(isinstance(e, TypeError) and "NiftiLike" in str(e) for e in chain), chain
