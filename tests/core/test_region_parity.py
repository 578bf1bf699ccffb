"""Region extraction (``RegionExtractor.fit``) against nilearn 0.14, the reference oracle.

Every comparison is exact, for both extractors: ``regions_img_`` data bit for bit (signed zeros
included), dtype, shape and affine, ``index_``, ``n_elements_``, and ``maps_img_``/``mask_img_``
after resampling. The random walker replays nilearn's conjugate-gradient arithmetic, so
``local_regions`` is held to the same standard as ``connected_components``; no case needs the
issue's 99.9 %-of-labelled-voxels floor (the failure message still reports that agreement, to
tell a near miss from a broken extractor).

Grids (spec §0, §4, §5, §2.1):

* ``test_fit_parity_grid``: every map family x thresholding strategy x ``two_sided`` x extractor
  x ``smoothing_fwhm`` x ``min_region_size`` (144 cases); voxel size (1, 2, 3 mm, anisotropic)
  and mask rotate through it so that each of them meets every other value
  (``test_fit_grid_covers_every_pair``).
* ``test_resampling_parity_grid``: every ``resampling_target`` x mask x voxel size x extractor,
  with a data image on an oblique grid passed to ``fit`` and a mask on a third grid.
* the traps of spec §12.7 and the cases of nilearn's own ``test_region_extractor.py`` (§12.1)
  that apply to ``fit``.
* ``slow``: MNI-size maps (91 x 109 x 91 x 30) for each extractor.
"""

from __future__ import annotations

import functools
import itertools
import warnings
from typing import NamedTuple

import nibabel as nib
import numpy as np
import pytest
from nilearn._utils.data_gen import generate_maps
from nilearn.regions import RegionExtractor as NilearnRegionExtractor
from scipy.stats import scoreatpercentile

from bids_regionx.estimator import RegionExtractor
from bids_regionx.synthetic.maps import (
    MNI_2MM_AFFINE,
    MNI_2MM_SHAPE,
    atlas_like_maps,
    binary_network_maps,
    ellipsoid_mask,
    grid_affine,
    ica_like_maps,
)

SHAPE = (30, 32, 28)
N_MAPS = 6
# Blobs of 1.5-3.5 voxels keep several regions per map on a 30-voxel grid.
SIGMA = (1.5, 3.5)

FAMILIES = {
    "ica": lambda: ica_like_maps(SHAPE, N_MAPS, seed=3, sigma_range=SIGMA),
    "atlas": lambda: atlas_like_maps(SHAPE, N_MAPS, seed=3, sigma_range=SIGMA),
    "binary": lambda: binary_network_maps(SHAPE, N_MAPS, seed=3, sigma_range=SIGMA),
}
# One threshold per family and strategy; img_value sits inside each family's value range.
THRESHOLDS = {
    "ica": {"ratio_n_voxels": 1.0, "img_value": 0.3, "percentile": 95},
    "atlas": {"ratio_n_voxels": 1.0, "img_value": 0.3, "percentile": 95},
    "binary": {"ratio_n_voxels": 1.0, "img_value": 0.5, "percentile": 95},
}
VOXEL_SIZES = {
    "1mm": (1.0, 1.0, 1.0),
    "2mm": (2.0, 2.0, 2.0),
    "3mm": (3.0, 3.0, 3.0),
    "aniso": (2.5, 3.0, 1.5),
}
STRATEGIES = ("ratio_n_voxels", "img_value", "percentile")
EXTRACTORS = ("connected_components", "local_regions")
FWHMS = (None, 6)
# mm³: from under one voxel (3 mm) to 300 voxels (1 mm), so the cut bites differently per grid.
MIN_SIZES = (20, 300)
TARGETS = ("data", "mask", "maps", None)


@functools.cache
def family_maps(family: str) -> np.ndarray:
    """The maps of one family (generated once; never modified by the tests)."""
    data = FAMILIES[family]()
    data.setflags(write=False)  # a fit that wrote into its input would fail loudly
    return data


def brain_mask(shape=SHAPE) -> np.ndarray:
    """A uint8 ellipsoid smaller than the maps' support, so the mask removes map voxels."""
    return ellipsoid_mask(shape, fill=0.7).astype(np.uint8)


# ------------------------------------------------------------------------------------------
# running both estimators and comparing them


def fit_both(params: dict, imgs=None) -> tuple:
    """Fit nilearn's and our RegionExtractor; each result is the fitted estimator or the error.

    Warnings are silenced: both libraries warn on the same events (random-walker fallbacks, no
    region) and the tests that care about a warning check it directly.
    """
    results = []
    for cls in (NilearnRegionExtractor, RegionExtractor):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                results.append(cls(**params).fit(imgs))
            except (TypeError, ValueError) as exc:
                results.append(exc)
    return tuple(results)


def _labelled_agreement(ref: np.ndarray, ours: np.ndarray) -> str:
    """Share of labelled voxels (non-zero in either) that agree, for failure messages."""
    if ref.shape != ours.shape:
        return f"shapes differ: {ref.shape} vs {ours.shape}"
    labelled = (ref != 0) | (ours != 0)
    agree = np.count_nonzero(labelled & (ref == ours))
    n = max(np.count_nonzero(labelled), 1)
    return (
        f"{np.count_nonzero(ref != ours)} voxels differ; "
        f"{100.0 * agree / n:.4f} % of {n} labelled voxels agree"
    )


def assert_same_img(ref: nib.Nifti1Image | None, ours: nib.Nifti1Image | None, what: str):
    """Same shape, affine, data dtype and data bits (so -0.0 and 0.0 count as different)."""
    if ref is None or ours is None:
        assert ref is ours, f"{what}: nilearn gives {ref!r}, we give {ours!r}"
        return
    assert ours.shape == ref.shape, f"{what}: shape {ours.shape} != {ref.shape}"
    np.testing.assert_array_equal(ours.affine, ref.affine, err_msg=f"{what}: affine")
    a, b = np.asarray(ref.dataobj), np.asarray(ours.dataobj)
    assert b.dtype == a.dtype, f"{what}: dtype {b.dtype} != {a.dtype}"
    bits = f"u{a.dtype.itemsize}"
    assert np.array_equal(a.view(bits), b.view(bits)), f"{what}: {_labelled_agreement(a, b)}"


def assert_same_fit(ref, ours) -> None:
    """Both fits succeeded with identical results, or failed the same way.

    nilearn's crash when no region survives (a TypeError, spec trap 21) must be our ValueError.
    """
    if isinstance(ref, Exception):
        if isinstance(ref, TypeError) and "NiftiLike" in str(ref):
            assert isinstance(ours, ValueError), f"expected our no-region error, got {ours!r}"
            assert "No region survived" in str(ours)
        else:
            assert type(ours) is type(ref), f"nilearn raised {ref!r}, we gave {ours!r}"
            assert str(ours) == str(ref)
        return
    assert not isinstance(ours, Exception), f"nilearn fitted, we raised {ours!r}"
    assert_same_img(ref.regions_img_, ours.regions_img_, "regions_img_")
    assert ours.index_ == ref.index_
    assert type(ours.index_) is list and all(type(i) is int for i in ours.index_)
    assert ours.n_elements_ == ref.n_elements_
    assert_same_img(ref.maps_img_, ours.maps_img_, "maps_img_")
    assert_same_img(ref.mask_img_, ours.mask_img_, "mask_img_")


def assert_fit_parity(params: dict, imgs=None):
    """Fit both, compare exactly, and return our fitted estimator (or error) for extra checks."""
    ref, ours = fit_both(params, imgs)
    assert_same_fit(ref, ours)
    return ours


# ------------------------------------------------------------------------------------------
# fit grid: strategy x two_sided x extractor x smoothing_fwhm x min_region_size x family


class FitCase(NamedTuple):
    family: str
    voxel: str
    masked: bool
    strategy: str
    two_sided: bool
    extractor: str
    smoothing_fwhm: float | None
    min_region_size: float

    def __str__(self) -> str:
        return "-".join(
            [
                self.family,
                self.voxel,
                "mask" if self.masked else "nomask",
                self.strategy,
                "two_sided" if self.two_sided else "one_sided",
                self.extractor,
                f"fwhm{self.smoothing_fwhm}",
                f"min{self.min_region_size}",
            ]
        )


def _fit_grid() -> list[FitCase]:
    algorithm = itertools.product(
        FAMILIES, STRATEGIES, (False, True), EXTRACTORS, FWHMS, MIN_SIZES
    )
    voxels = list(VOXEL_SIZES)
    cases = []
    for i, (family, strategy, two_sided, extractor, fwhm, min_size) in enumerate(algorithm):
        # Voxel size and mask rotate through the product instead of multiplying it by 8;
        # this rule makes every family x voxel x mask combination and every
        # (parameter value, voxel, mask) triple occur (checked below).
        voxel = voxels[(i + i // 8) % 4]
        masked = bool((i // 4 + i // 24) % 2)
        cases.append(
            FitCase(family, voxel, masked, strategy, two_sided, extractor, fwhm, min_size)
        )
    return cases


FIT_GRID = _fit_grid()


def test_fit_grid_covers_every_pair():
    """The rotation of voxel size and mask misses no combination the issue asks for."""
    assert len(FIT_GRID) == 3 * 3 * 2 * 2 * 2 * 2
    assert {(c.family, c.voxel, c.masked) for c in FIT_GRID} == set(
        itertools.product(FAMILIES, VOXEL_SIZES, (False, True))
    )
    for field in ("family", "strategy", "two_sided", "extractor", "smoothing_fwhm",
                  "min_region_size"):
        values = {getattr(c, field) for c in FIT_GRID}
        seen = {(getattr(c, field), c.voxel, c.masked) for c in FIT_GRID}
        assert seen == set(itertools.product(values, VOXEL_SIZES, (False, True))), field


@pytest.mark.parametrize("case", FIT_GRID, ids=str)
def test_fit_parity_grid(case: FitCase):
    affine = grid_affine(VOXEL_SIZES[case.voxel], SHAPE)
    params = dict(
        maps_img=nib.Nifti1Image(family_maps(case.family), affine),
        mask_img=nib.Nifti1Image(brain_mask(), affine) if case.masked else None,
        thresholding_strategy=case.strategy,
        threshold=THRESHOLDS[case.family][case.strategy],
        two_sided=case.two_sided,
        extractor=case.extractor,
        smoothing_fwhm=case.smoothing_fwhm,
        min_region_size=case.min_region_size,
    )
    assert_fit_parity(params)


def test_fit_grid_finds_regions():
    """Most grid cases must extract regions, or the grid would compare little but errors."""
    failing = []
    for case in FIT_GRID[:: len(FIT_GRID) // 16]:  # a spread sample: the grid itself is slow
        affine = grid_affine(VOXEL_SIZES[case.voxel], SHAPE)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                RegionExtractor(
                    nib.Nifti1Image(family_maps(case.family), affine),
                    mask_img=nib.Nifti1Image(brain_mask(), affine) if case.masked else None,
                    thresholding_strategy=case.strategy,
                    threshold=THRESHOLDS[case.family][case.strategy],
                    two_sided=case.two_sided,
                    extractor=case.extractor,
                    smoothing_fwhm=case.smoothing_fwhm,
                    min_region_size=case.min_region_size,
                ).fit()
            except ValueError:
                failing.append(str(case))
    assert len(failing) <= 2, failing


# ------------------------------------------------------------------------------------------
# resampling grid: resampling_target x mask x voxel size x extractor, data image given to fit


def _rotation_z(degrees: float) -> np.ndarray:
    theta = np.deg2rad(degrees)
    out = np.eye(4)
    out[:2, :2] = [[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]]
    return out


class ResampleCase(NamedTuple):
    target: str | None
    masked: bool
    voxel: str
    extractor: str
    family: str

    def __str__(self) -> str:
        mask = "mask" if self.masked else "nomask"
        return f"target_{self.target}-{mask}-{self.voxel}-{self.extractor}-{self.family}"


RESAMPLE_GRID = [
    ResampleCase(target, masked, voxel, extractor, list(FAMILIES)[i % 3])
    for i, (target, masked, voxel, extractor) in enumerate(
        itertools.product(TARGETS, (False, True), VOXEL_SIZES, EXTRACTORS)
    )
]


@pytest.mark.parametrize("case", RESAMPLE_GRID, ids=str)
def test_resampling_parity_grid(case: ResampleCase):
    voxel = np.asarray(VOXEL_SIZES[case.voxel])
    maps_affine = grid_affine(tuple(voxel), SHAPE)
    if case.target is None:
        # resampling_target=None needs one field of view for everything.
        data_affine, data_shape = maps_affine, SHAPE
        mask_affine, mask_shape = maps_affine, SHAPE
    else:
        # Data on an oblique grid (general affine_transform path), mask on a third, axis-aligned
        # grid shifted by half a voxel (zoom/shift path): every image needs resampling.
        data_shape = (24, 26, 22)
        data_affine = _rotation_z(5.0) @ grid_affine(tuple(1.25 * voxel), data_shape)
        mask_shape = (22, 24, 20)
        mask_affine = grid_affine(tuple(1.4 * voxel), mask_shape)
        mask_affine[:3, 3] += 0.5 * voxel
    rng = np.random.default_rng(7)
    data = nib.Nifti1Image(rng.standard_normal((*data_shape, 3)).astype(np.float32), data_affine)
    mask = nib.Nifti1Image(brain_mask(mask_shape), mask_affine) if case.masked else None
    params = dict(
        maps_img=nib.Nifti1Image(family_maps(case.family), maps_affine),
        mask_img=mask,
        resampling_target=case.target,
        extractor=case.extractor,
        min_region_size=20,
    )
    ours = assert_fit_parity(params, imgs=data)
    if case.target == "mask" and not case.masked:
        assert isinstance(ours, ValueError)
        assert "no mask has been provided" in str(ours)
        return
    expected_grid = {"data": data, "mask": mask, "maps": params["maps_img"], None: data}
    reference = expected_grid[case.target]
    assert ours.maps_img_.shape[:3] == reference.shape[:3]
    np.testing.assert_array_equal(ours.maps_img_.affine, reference.affine)
    # regions_img_ itself always stays on the maps' grid.
    np.testing.assert_array_equal(ours.regions_img_.affine, maps_affine)


# ------------------------------------------------------------------------------------------
# spec §12.7 traps


def test_ratio_cutoff_ties_are_kept():
    """|v| == cutoff survives ratio thresholding (spec §4.1, trap 7), as in nilearn."""
    # Dyadic quantisation: many voxels share each value, and an interpolated percentile between
    # two equal dyadic values is that value exactly, so ties at the cutoff are guaranteed.
    data = np.round(family_maps("ica") * 16) / 16
    ratio = 0.2  # keeps a fifth of a volume: the cutoff falls on a non-zero level (1/8)
    cutoff = scoreatpercentile(np.abs(data), 100.0 - (100.0 / N_MAPS) * ratio)
    n_ties = np.count_nonzero(np.abs(data) == cutoff)
    assert cutoff > 0 and n_ties > 100  # the case exercises the trap
    params = dict(
        maps_img=nib.Nifti1Image(data.astype(np.float32), grid_affine((2, 2, 2), SHAPE)),
        threshold=ratio,
        extractor="connected_components",
        min_region_size=0,
    )
    ours = assert_fit_parity(params)
    # With connected components and no size cut every surviving voxel lands in a region.
    assert np.count_nonzero(ours.regions_img_.get_fdata()) == np.count_nonzero(
        np.abs(data) >= cutoff
    )


@pytest.mark.parametrize("two_sided", [False, True])
@pytest.mark.parametrize("extractor", EXTRACTORS)
def test_img_value_threshold_compared_in_float32(two_sided, extractor):
    """float32(0.7) < 0.7 in float64, yet survives threshold=0.7: nilearn compares in float32."""
    value = np.float32(0.7)
    assert float(value) < 0.7
    data = np.array(family_maps("atlas"))  # writable copy
    data[4:9, 4:9, 4:9, 0] = value  # a plateau exactly at the float32-rounded threshold
    data[18:23, 18:23, 14:19, 1] = -value  # and its mirror for the two-sided rule
    data = np.asfortranarray(data)
    params = dict(
        maps_img=nib.Nifti1Image(data, grid_affine((2, 2, 2), SHAPE)),
        thresholding_strategy="img_value",
        threshold=0.7,
        two_sided=two_sided,
        extractor=extractor,
        min_region_size=0,
    )
    ours = assert_fit_parity(params)
    regions = ours.regions_img_.get_fdata(dtype=np.float32)
    on_plateau = regions[4:9, 4:9, 4:9][..., np.asarray(ours.index_) == 0]
    assert np.all(on_plateau.sum(axis=-1) == value)
    if extractor == "connected_components":
        # (local_regions drops the negative plateau: no positive peak seeds it, trap 12.)
        on_mirror = regions[18:23, 18:23, 14:19][..., np.asarray(ours.index_) == 1]
        assert np.all(on_mirror.sum(axis=-1) == (-value if two_sided else 0))


@pytest.mark.parametrize(
    ("voxel_mm", "n_dropped", "n_kept"),
    [
        # 1350 / 27 is exactly 50.0 voxels: a 50-voxel region is NOT strictly larger.
        (3.0, 50, 51),
        # 1350 / det(2 I) = 168.75000000000003 voxels: 169 is the smallest kept size.
        (2.0, 168, 169),
    ],
)
def test_min_region_size_at_an_integer_voxel_count(voxel_mm, n_dropped, n_kept):
    data = np.zeros((*SHAPE, 2), dtype=np.float32, order="F")
    for k, n in enumerate((n_dropped, n_kept)):
        # Fill n voxels in raster order inside a 10 x 10 x 3 box: one 6-connected component.
        box = np.zeros((10, 10, 3), dtype=bool)
        box.flat[:n] = True
        data[5:15, 5:15, 5:8, k] = box
        data[20:30, 20:30, 20:23, k] = box  # a second region per map
    params = dict(
        maps_img=nib.Nifti1Image(data, grid_affine((voxel_mm,) * 3, SHAPE)),
        thresholding_strategy="img_value",
        threshold=0.5,
        extractor="connected_components",
        min_region_size=1350,
    )
    ours = assert_fit_parity(params)
    assert ours.index_ == [1, 1]
    assert np.count_nonzero(ours.regions_img_.get_fdata()) == 2 * n_kept


def test_negative_only_maps_local_regions_find_nothing():
    """No positive peak, no seed, no region (trap 12): nilearn crashes, we raise ValueError."""
    data = -np.abs(family_maps("ica"))
    params = dict(maps_img=nib.Nifti1Image(data, grid_affine((2, 2, 2), SHAPE)),
                  min_region_size=20)
    ref, ours = fit_both(params)
    assert isinstance(ref, TypeError)
    assert isinstance(ours, ValueError) and "No region survived" in str(ours)
    # connected_components does split negative maps.
    assert_fit_parity({**params, "extractor": "connected_components"})


def test_one_negative_only_map_among_others_local_regions():
    data = np.array(family_maps("ica"))
    data[..., 2] = -np.abs(data[..., 2])
    params = dict(
        maps_img=nib.Nifti1Image(np.asfortranarray(data), grid_affine((2, 2, 2), SHAPE)),
        min_region_size=20,
    )
    ours = assert_fit_parity(params)
    assert 2 not in ours.index_


@pytest.mark.parametrize("layout", ["F", "C", "strided", "C-strided"])
@pytest.mark.parametrize("extractor", EXTRACTORS)
def test_in_memory_layouts(layout, extractor):
    """float32 reductions follow memory order (trap 13): every layout must match nilearn."""
    maps = ica_like_maps(SHAPE, 2 * N_MAPS, seed=5, sigma_range=SIGMA)
    data = {
        "F": np.asfortranarray(maps[..., :N_MAPS]),
        "C": np.ascontiguousarray(maps[..., :N_MAPS]),
        "strided": maps[..., ::2],  # neither C- nor F-contiguous
        "C-strided": np.ascontiguousarray(maps)[..., 1::2],
    }[layout]
    params = dict(
        maps_img=nib.Nifti1Image(data, grid_affine((2, 2, 2), SHAPE)),
        extractor=extractor,
        min_region_size=20,
    )
    assert_fit_parity(params)


@pytest.mark.parametrize("as_path", [str, lambda p: p])
@pytest.mark.parametrize("extractor", EXTRACTORS)
def test_maps_and_mask_from_nii_gz_files(tmp_path, as_path, extractor):
    """Maps read from .nii.gz (F-ordered, proxied) as nilearn reads them; mask from a file."""
    affine = grid_affine((2, 2, 2), SHAPE)
    nib.save(nib.Nifti1Image(family_maps("ica"), affine), tmp_path / "maps.nii.gz")
    nib.save(nib.Nifti1Image(brain_mask().astype(np.int16), affine), tmp_path / "mask.nii.gz")
    params = dict(
        maps_img=as_path(tmp_path / "maps.nii.gz"),
        mask_img=as_path(tmp_path / "mask.nii.gz"),
        thresholding_strategy="percentile",
        threshold=90,
        extractor=extractor,
        min_region_size=20,
    )
    assert_fit_parity(params)


@pytest.mark.parametrize("extractor", EXTRACTORS)
def test_maps_as_a_list_of_3d_images(extractor):
    affine = grid_affine((2, 2, 2), SHAPE)
    data = family_maps("atlas")
    params = dict(
        maps_img=[nib.Nifti1Image(data[..., k], affine) for k in range(N_MAPS)],
        extractor=extractor,
        min_region_size=20,
    )
    assert_fit_parity(params)


@pytest.mark.parametrize("dtype", ["float64", "int16", "uint8", "int32", "uint16", "int64"])
@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("extractor", EXTRACTORS)
def test_maps_dtypes(dtype, strategy, extractor):
    """Integer and float64 maps: same regions (always float32); header dtype: see below."""
    base = family_maps("atlas")
    # Integer maps take 5 levels (0, 50, ..., 200, within uint8): finely graded integer maps
    # make the random walker's systems ill-conditioned and its CG slow, in both libraries.
    data = (np.round(base * 4) * 50).astype(dtype) if dtype != "float64" else base.astype(dtype)
    img = nib.Nifti1Image(data, grid_affine((2, 2, 2), SHAPE), dtype=data.dtype)
    threshold = {"ratio_n_voxels": 1.0, "img_value": 50 if dtype != "float64" else 0.3,
                 "percentile": 95}[strategy]
    params = dict(maps_img=img, thresholding_strategy=strategy, threshold=threshold,
                  extractor=extractor, min_region_size=20)
    ref, ours = fit_both(params)
    # Both hold float32 region data; nilearn's header keeps the maps' on-disk dtype (trap 25),
    # ours says float32 (docs/nilearn-divergences.md). Everything else is compared exactly.
    assert ref.regions_img_.get_data_dtype() == np.dtype(dtype)
    assert ours.regions_img_.get_data_dtype() == np.float32
    assert_same_fit(ref, ours)


# ------------------------------------------------------------------------------------------
# nilearn's own test_region_extractor.py (spec §12.1), as parity checks


@functools.cache
def nilearn_maps(negative_regions: bool = False) -> tuple[nib.Nifti1Image, nib.Nifti1Image]:
    """nilearn's test fixture: 9 float64 maps on 29 x 30 x 31 voxels, and their mask."""
    return generate_maps(
        shape=(29, 30, 31), n_regions=9, rand_gen=42, negative_regions=negative_regions
    )


@pytest.mark.parametrize("threshold", ["80%", "auto", -1.0, 0, 10])
def test_invalid_ratio_thresholds(threshold):
    maps, _ = nilearn_maps()
    ref, ours = fit_both(dict(maps_img=maps, threshold=threshold))
    assert isinstance(ref, ValueError)
    assert_same_fit(ref, ours)


@pytest.mark.parametrize("extractor", EXTRACTORS)
@pytest.mark.parametrize("strategy", STRATEGIES)
def test_maps_with_a_nan_slice(extractor, strategy):
    maps, _ = nilearn_maps()
    data = np.array(maps.dataobj)  # a copy: the cached fixture stays intact
    data[:, :, 0] = np.nan
    before = data.copy()
    threshold = {"ratio_n_voxels": 0.8, "img_value": 0.5, "percentile": 80}[strategy]
    params = dict(maps_img=nib.Nifti1Image(data, maps.affine), thresholding_strategy=strategy,
                  threshold=threshold, extractor=extractor, min_region_size=10)
    ours = assert_fit_parity(params)
    assert np.all(np.isfinite(ours.regions_img_.get_fdata()))
    np.testing.assert_array_equal(data, before)  # the input is not modified


@pytest.mark.parametrize("extractor", EXTRACTORS)
def test_4d_maps_give_at_least_one_region_per_map(extractor):
    maps, _ = nilearn_maps()
    ours = assert_fit_parity(dict(maps_img=maps, min_region_size=10, extractor=extractor))
    assert ours.regions_img_.shape[-1] >= 9
    assert ours.index_


@pytest.mark.parametrize("extractor", EXTRACTORS)
def test_single_noise_map(rng, extractor):
    """nilearn's 3D noise map (7 x 8 x 9, float64), as a one-volume 4D image."""
    data = 0.1 * rng.standard_normal((7, 8, 9, 1))
    ours = assert_fit_parity(dict(maps_img=nib.Nifti1Image(data, np.eye(4)),
                                  min_region_size=10, extractor=extractor))
    assert ours.regions_img_.shape[-1] >= 1


def test_mask_zeroes_regions_outside_it():
    maps, mask_img = nilearn_maps()
    mask = np.asarray(mask_img.dataobj).copy()
    mask[1, 1, 1] = 0
    mask_img = nib.Nifti1Image(mask, mask_img.affine)
    with_mask = assert_fit_parity(dict(maps_img=maps, mask_img=mask_img))
    without = assert_fit_parity(dict(maps_img=maps))
    assert np.all(with_mask.regions_img_.get_fdata()[mask == 0] == 0)
    assert not np.all(without.regions_img_.get_fdata()[mask == 0] == 0)


@pytest.mark.parametrize("extractor", EXTRACTORS)
def test_mask_on_another_grid_is_resampled_to_the_maps(extractor):
    """nilearn's odd mask: 10 x 11 x 12 voxels and an affine whose [3, 3] is 2."""
    maps, _ = nilearn_maps()
    mask = np.zeros((10, 11, 12), dtype=np.uint8)
    mask[1:-1, 1:-1, 1:-1] = 1
    mask_img = nib.Nifti1Image(mask, np.diag([2.0, 2.0, 2.0, 2.0]))
    with_mask = assert_fit_parity(dict(maps_img=maps, mask_img=mask_img, extractor=extractor,
                                       min_region_size=10))
    without = assert_fit_parity(dict(maps_img=maps, extractor=extractor, min_region_size=10))
    assert with_mask.regions_img_.shape[:3] == maps.shape[:3]
    assert np.sum(without.regions_img_.get_fdata() == 0) > 0
    assert np.count_nonzero(with_mask.regions_img_.get_fdata()) < np.count_nonzero(
        without.regions_img_.get_fdata()
    )


def test_no_supra_threshold_region_warns_then_raises():
    maps, _ = nilearn_maps()
    with pytest.warns(UserWarning, match="No supra threshold regions"):
        with pytest.raises(ValueError, match="No region survived"):
            RegionExtractor(maps, min_region_size=1e6).fit()


@pytest.mark.parametrize(
    "params",
    [
        {"thresholding_strategy": "n_"},
        {"threshold": None},
        {"threshold": "30%"},
    ],
    ids=["strategy", "threshold_none", "threshold_str"],
)
def test_invalid_strategy_and_threshold_like_nilearn(params):
    maps, _ = nilearn_maps()
    ref, ours = fit_both({"maps_img": maps, **params})
    assert isinstance(ref, ValueError)
    assert_same_fit(ref, ours)


def test_ratio_0_2():
    maps, _ = nilearn_maps()
    ours = assert_fit_parity(dict(maps_img=maps, threshold=0.2))
    assert ours.regions_img_.shape[-1] >= 3


def test_two_sided_changes_the_regions():
    maps, _ = nilearn_maps(negative_regions=True)
    params = dict(maps_img=maps, threshold=0.4, thresholding_strategy="img_value",
                  min_region_size=5, extractor="connected_components")
    one = assert_fit_parity({**params, "two_sided": False})
    two = assert_fit_parity({**params, "two_sided": True})
    assert not np.array_equal(np.unique(one.regions_img_.get_fdata()),
                              np.unique(two.regions_img_.get_fdata()))


def test_percentile_two_sided_with_mask_then_transform():
    maps, mask_img = nilearn_maps()
    params = dict(maps_img=maps, threshold=30, thresholding_strategy="percentile",
                  mask_img=mask_img, two_sided=True, standardize=None)
    ours = assert_fit_parity(params)
    assert ours.regions_img_.shape[-1] >= 3
    assert ours.threshold == 30  # nilearn would now say "30%"
    # nilearn's smoke test of the inherited transform: data on the MNI grid are resampled.
    zeros = nib.Nifti1Image(np.zeros((91, 109, 91, 7), dtype=np.float32), np.eye(4))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        signals = ours.transform(zeros)
    assert signals.shape == (7, ours.regions_img_.shape[-1])


def test_high_resolution_affine():
    maps, _ = generate_maps(shape=(29, 30, 31), n_regions=9, affine=0.2 * np.eye(4))
    ours = assert_fit_parity(dict(maps_img=maps, smoothing_fwhm=0.6, min_region_size=0.4))
    assert ours.regions_img_.shape[-1] >= 9


def test_permuted_non_diagonal_affine():
    affine = np.eye(4)[[1, 0, 2, 3]]
    maps, _ = generate_maps(shape=(40, 40, 40), n_regions=9, affine=affine, rand_gen=42)
    ours = assert_fit_parity(dict(maps_img=maps, threshold=0.2))
    assert ours.regions_img_.shape[-1] >= 9


# ------------------------------------------------------------------------------------------
# full size


@pytest.mark.slow
@pytest.mark.parametrize("extractor", EXTRACTORS)
def test_mni_size_parity(extractor):
    """91 x 109 x 91 x 30 ICA-like maps, default parameters (spec §11: 61 / 64 regions)."""
    maps = nib.Nifti1Image(ica_like_maps(), MNI_2MM_AFFINE)
    ours = assert_fit_parity(dict(maps_img=maps, extractor=extractor))
    assert ours.n_elements_ > 30


MNI_THRESHOLDS = {"ratio_n_voxels": 1.0, "img_value": 0.3, "percentile": 97}
MNI_CASES = [
    (strategy, two_sided, masked, extractor)
    for strategy, two_sided, masked, extractor in itertools.product(
        STRATEGIES, (False, True), (False, True), EXTRACTORS
    )
    # ratio_n_voxels ignores two_sided (trap 7): one case is enough.
    if not (strategy == "ratio_n_voxels" and two_sided)
]


@functools.cache
def mni_files(directory) -> tuple:
    """MNI-size ICA-like maps and an ellipsoid mask saved as .nii.gz (written once per run)."""
    maps = directory / "mni_maps.nii.gz"
    mask = directory / "mni_mask.nii.gz"
    nib.save(nib.Nifti1Image(ica_like_maps(), MNI_2MM_AFFINE), maps)
    brain = ellipsoid_mask(MNI_2MM_SHAPE, fill=0.75).astype(np.uint8)
    nib.save(nib.Nifti1Image(brain, MNI_2MM_AFFINE), mask)
    return maps, mask


@pytest.mark.slow
@pytest.mark.parametrize(("strategy", "two_sided", "masked", "extractor"), MNI_CASES)
def test_mni_size_parity_from_files(tmp_path_factory, strategy, two_sided, masked, extractor):
    """Spec §12.7: every strategy x two_sided x mask x extractor on MNI-size maps read from
    .nii.gz (F-ordered data, as nilearn reads them)."""
    maps, mask = mni_files(tmp_path_factory.getbasetemp())
    params = dict(maps_img=str(maps), mask_img=str(mask) if masked else None,
                  thresholding_strategy=strategy, threshold=MNI_THRESHOLDS[strategy],
                  two_sided=two_sided, extractor=extractor)
    assert_fit_parity(params)
