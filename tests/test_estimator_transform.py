"""Transform side of :class:`bids_regionx.RegionExtractor`, against nilearn 0.14 as the oracle.

The oracle is ``nilearn.maskers.NiftiMapsMasker`` built on *our* fitted ``regions_img_`` with the
same parameters: nilearn's ``RegionExtractor.transform`` is exactly that masker's transform (spec
trap 1), and using our regions keeps these tests independent of fit-side parity (tested
elsewhere; one end-to-end test below uses ``nilearn.regions.RegionExtractor`` itself).

Tolerances (spec traps 2-4; measured numbers are in ``docs/nilearn-divergences.md``):

* float64 BOLD: ``|ours - nilearn| <= 1e-10 * max|nilearn|`` for every option. This is the strict
  end-to-end test of the cleaning semantics.
* float32 BOLD, raw signals (no cleaning): ``|ours - nilearn| <= 1e-5 * max|nilearn|``.
* float32 BOLD, cleaned signals: nilearn smooths and solves the least squares in float32, and
  detrending / filtering / standardization amplify that rounding (~1e-3 of the largest value on
  realistic BOLD; nilearn differs from itself by that much between 1 and 2 BLAS threads). We
  accumulate and clean in float64, so the honest criterion is against the float64 truth
  (nilearn run on a float64 copy of the same BOLD): ours is at least as close to it as nilearn's
  float32 output is (plus ``1e-5 * max`` slack) *and* within ``1e-5 * max`` of it.

Shapes, dtypes and the set of warning messages are always compared with nilearn's.
"""

from __future__ import annotations

import functools
import warnings

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from nilearn.maskers import NiftiMapsMasker
from scipy import ndimage
from scipy.interpolate import CubicSpline

from bids_regionx import RegionExtractor
from bids_regionx.synthetic.maps import ellipsoid_mask, grid_affine, ica_like_maps

SHAPE = (28, 28, 28)
VOXEL_MM = 3.0
N_VOLUMES = 60
T_R = 2.0
AFFINE = grid_affine((VOXEL_MM,) * 3, SHAPE)
MOTION = ["trans_x", "trans_y", "trans_z", "rot_x", "rot_y", "rot_z"]

#: Fit options giving compact, signed, well-conditioned regions (13 regions, cond(M) ~ 4) in a
#: few milliseconds. The transform does not depend on how the regions were found.
FIT = {
    "thresholding_strategy": "img_value",
    "threshold": 0.2,
    "two_sided": True,
    "extractor": "connected_components",
    "min_region_size": 200,
}

#: Parameters shared by RegionExtractor and NiftiMapsMasker (passed on to the oracle).
MASKER_PARAMS = (
    "mask_img",
    "smoothing_fwhm",
    "standardize",
    "standardize_confounds",
    "high_variance_confounds",
    "detrend",
    "low_pass",
    "high_pass",
    "t_r",
    "dtype",
    "resampling_target",
    "keep_masked_maps",
    "allow_overlap",
    "clean_args",
)

RTOL_F64 = 1e-10
RTOL_F32 = 1e-5


# ----------------------------------------------------------------------------------------------
# data


def _smooth_series(rng: np.random.Generator, n: int, k: int, sigma: float) -> np.ndarray:
    """``k`` unit-variance, temporally smooth series of length ``n`` (float64)."""
    series = ndimage.gaussian_filter1d(rng.standard_normal((n, k)), sigma, axis=0)
    return (series - series.mean(0)) / series.std(0)


def _smooth_field(rng: np.random.Generator, shape, sigma: float) -> np.ndarray:
    field = ndimage.gaussian_filter(rng.standard_normal(shape), sigma)
    return field / field.std()


def simulate_run(
    maps: np.ndarray, *, n_volumes: int = N_VOLUMES, seed: int = 0
) -> tuple[np.ndarray, pd.DataFrame]:
    """A small BOLD run with fMRIPrep-like confounds, in float64.

    Intensity ~1000 in the brain (GM 1000, WM 850, CSF 1200, ±5 % smooth inhomogeneity) and ~60
    outside. Fluctuations in percent of the local mean: 1 % network signals carried by ``maps``,
    global / white-matter / CSF physiological signals, six motion parameters with smooth voxel
    loadings, a linear + quadratic drift, and 0.5 % thermal noise.

    Parameters
    ----------
    maps : ndarray, shape (x, y, z, n_maps)
        Spatial weights of the planted network signals.
    n_volumes : int
    seed : int

    Returns
    -------
    data : ndarray of float64, shape (x, y, z, n_volumes)
    confounds : pandas.DataFrame, shape (n_volumes, 16)
        ``trans_*``/``rot_*`` and their ``*_derivative1``, ``csf``, ``white_matter``,
        ``global_signal``, ``framewise_displacement``; the derivative and FD columns start with
        NaN, as fMRIPrep's ``n/a``.
    """
    rng = np.random.default_rng(seed)
    shape = maps.shape[:3]
    brain = ellipsoid_mask(shape, 0.8)
    csf = ellipsoid_mask(shape, 0.2)
    wm = ellipsoid_mask(shape, 0.5) & ~csf
    gm = brain & ~wm & ~csf
    base = np.full(shape, 60.0)
    base[gm], base[wm], base[csf] = 1000.0, 850.0, 1200.0
    base *= 1 + 0.05 * _smooth_field(rng, shape, 4.0)

    t = np.linspace(-1.0, 1.0, n_volumes)
    network = _smooth_series(rng, n_volumes, maps.shape[3], 1.5)
    physio = _smooth_series(rng, n_volumes, 3, 1.0)  # global, white matter, csf
    motion = np.cumsum(rng.normal(0.0, 0.02, (n_volumes, 6)), axis=0)
    motion[:, 3:] /= 50.0  # rotations in radians
    percent = np.tensordot(maps.astype(np.float64), network.T, axes=1)
    percent += 0.5 * physio[:, 0]
    percent += 0.8 * wm[..., None] * physio[:, 1] + 1.5 * csf[..., None] * physio[:, 2]
    for k in range(6):
        scale = 1.0 if k < 3 else 50.0
        percent += 0.3 * _smooth_field(rng, shape, 5.0)[..., None] * (scale * motion[:, k])
    percent += 0.5 * _smooth_field(rng, shape, 6.0)[..., None] * (t + 0.5 * t**2)
    percent += 0.5 * rng.standard_normal((*shape, n_volumes))
    data = base[..., None] * (1.0 + 0.01 * percent)

    table = pd.DataFrame(motion, columns=MOTION)
    derivatives = np.vstack([np.full((1, 6), np.nan), np.diff(motion, axis=0)])
    for k, name in enumerate(MOTION):
        table[f"{name}_derivative1"] = derivatives[:, k]
    table["csf"] = data[csf].mean(0)
    table["white_matter"] = data[wm].mean(0)
    table["global_signal"] = data[brain].mean(0)
    table["framewise_displacement"] = (
        np.abs(derivatives[:, :3]).sum(1) + 50.0 * np.abs(derivatives[:, 3:]).sum(1)
    )
    return data, table


@pytest.fixture(scope="module")
def maps_img() -> nib.Nifti1Image:
    """Six signed ICA-like float32 maps on the 3 mm test grid."""
    maps = ica_like_maps(SHAPE, 6, seed=0, sigma_range=(2.0, 3.5))
    return nib.Nifti1Image(maps, AFFINE)


@functools.cache
def _run() -> tuple[np.ndarray, pd.DataFrame]:
    maps = ica_like_maps(SHAPE, 6, seed=0, sigma_range=(2.0, 3.5))
    return simulate_run(maps)


@pytest.fixture(scope="module")
def bold64() -> nib.Nifti1Image:
    """The simulated run as a float64 image."""
    return nib.Nifti1Image(_run()[0], AFFINE)


@pytest.fixture(scope="module")
def bold32() -> nib.Nifti1Image:
    """The simulated run as a float32 image (the usual fMRIPrep output)."""
    return nib.Nifti1Image(_run()[0].astype(np.float32), AFFINE)


@pytest.fixture(scope="module")
def bold32_as64() -> nib.Nifti1Image:
    """The float32 run's values in float64: nilearn on it is the exact-arithmetic reference."""
    return nib.Nifti1Image(_run()[0].astype(np.float32).astype(np.float64), AFFINE)


@pytest.fixture(scope="module")
def confounds_table() -> pd.DataFrame:
    """fMRIPrep-like confounds with the ``n/a`` first row filled with 0."""
    return _run()[1].fillna(0.0)


@pytest.fixture(scope="module")
def brain_mask_img() -> nib.Nifti1Image:
    """A uint8 mask that cuts through some regions and empties others."""
    mask = np.zeros(SHAPE, dtype=np.uint8)
    mask[:16] = 1
    return nib.Nifti1Image(mask, AFFINE)


# ----------------------------------------------------------------------------------------------
# oracle helpers


def fit_ours(maps_img, **params) -> RegionExtractor:
    return RegionExtractor(maps_img, **{**FIT, **params}).fit()


def oracle_for(ours: RegionExtractor, **overrides) -> NiftiMapsMasker:
    """nilearn's masker on our regions with our (cleaning, grid, dtype) parameters."""
    params = {name: getattr(ours, name) for name in MASKER_PARAMS}
    if params["clean_args"]:
        # Our own extension; nilearn would ignore it anyway.
        params["clean_args"] = {
            k: v for k, v in params["clean_args"].items() if k != "sample_mask_mode"
        }
    params.update(overrides)
    return NiftiMapsMasker(ours.regions_img_, **params)


def run_recording(func, *args, **kwargs):
    """Call ``func`` and return (result or exception, set of (category, message) warnings)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            result = func(*args, **kwargs)
        except Exception as exc:  # noqa: BLE001 - compared with nilearn's by the caller
            result = exc
    return result, {(w.category.__name__, str(w.message)) for w in caught}


def max_rel(a, b, scale) -> float:
    return float(np.max(np.abs(np.asarray(a, float) - np.asarray(b, float))) / scale)


# ----------------------------------------------------------------------------------------------
# the cleaning grid

BAND = {"t_r": T_R, "high_pass": 0.01, "low_pass": 0.1}
ZSCORE = {"standardize": "zscore_sample"}
#: A scrubbing mask every mode agrees on: the censored volumes' mirror volumes (n - 1 - k) are
#: all kept, so nilearn's bitwise-NOT interpolation covers them (spec §7.4).
SCRUBBED = np.setdiff1d(np.arange(N_VOLUMES), [0, 1, 2, 3, 17, 18, 40])


def _as_bool(indices) -> np.ndarray:
    mask = np.zeros(N_VOLUMES, dtype=bool)
    mask[indices] = True
    return mask


#: Sample masks by name; built fresh for every call (nilearn mutates int32 arrays in place).
SAMPLE_MASKS = {
    "indices": lambda: SCRUBBED.copy(),
    "boolean": lambda: _as_bool(SCRUBBED),
    "list-wrapped": lambda: [SCRUBBED.tolist()],
    "int32": lambda: SCRUBBED.astype(np.int32),
    "unsorted-repeats": lambda: np.r_[10:50, 5, 5, 0],
    "leading": lambda: np.arange(5, N_VOLUMES),
    "leading-boolean": lambda: _as_bool(np.arange(5, N_VOLUMES)),
    "trailing": lambda: np.arange(N_VOLUMES - 3),
}


def make_confounds(form: str, table: pd.DataFrame, tmp_path):
    """The confounds ``table`` in one of the forms ``transform`` accepts."""
    if form == "array":
        return table.to_numpy()
    if form == "dataframe":
        return table
    if form == "tsv":  # fMRIPrep's format (header, tab-separated)
        path = tmp_path / "desc-confounds_timeseries.tsv"
        table.to_csv(path, sep="\t", index=False)
        return str(path)
    if form == "csv":
        path = tmp_path / "confounds.csv"
        table.to_csv(path, index=False)
        return path
    if form == "csv-with-index":  # the index column is kept as a confound, as in nilearn
        path = tmp_path / "confounds_index.csv"
        table.to_csv(path)
        return str(path)
    if form == "txt":  # whitespace-separated, no header
        path = tmp_path / "confounds.txt"
        np.savetxt(path, table.to_numpy())
        return str(path)
    if form == "list":
        return [table[MOTION].to_numpy(), table[["csf", "white_matter", "global_signal"]]]
    if form == "1d":
        return table["global_signal"].to_numpy()
    raise AssertionError(form)


def case(name, params=None, *, confounds=None, sample_mask=None, raw=False, marks=()):
    """One point of the cleaning grid; ``raw`` marks outputs that no cleaning step touches."""
    spec = {"params": params or {}, "confounds": confounds, "sample_mask": sample_mask,
            "raw": raw}
    return pytest.param(spec, id=name, marks=marks)


CASES = [
    # raw signals (criterion (a) for float32)
    case("raw", {"standardize": None}, raw=True),
    case("raw-standardize-False", {}, raw=True),  # the default: FutureWarning
    case("raw-no-smoothing", {"standardize": None, "smoothing_fwhm": None}, raw=True),
    case("raw-t_r-only", {"standardize": None, "t_r": T_R}, raw=True),
    case("raw-sample-mask-indices", {"standardize": None}, sample_mask="indices", raw=True),
    case("raw-sample-mask-boolean", {"standardize": None}, sample_mask="boolean", raw=True),
    case("raw-sample-mask-list", {"standardize": None}, sample_mask="list-wrapped", raw=True),
    case("raw-sample-mask-unsorted", {"standardize": None}, sample_mask="unsorted-repeats",
         raw=True),
    # standardize and detrend
    case("zscore_sample", ZSCORE),
    case("standardize-True", {"standardize": True}),
    case("psc", {"standardize": "psc"}),
    case("detrend", {"standardize": None, "detrend": True}),
    case("detrend-zscore", {**ZSCORE, "detrend": True}),
    case("detrend-psc", {"standardize": "psc", "detrend": True}),  # trap 24
    # Butterworth filters
    case("low-pass", {"standardize": None, "t_r": T_R, "low_pass": 0.1}),
    case("high-pass", {"standardize": None, "t_r": T_R, "high_pass": 0.01}),
    case("band-pass", {"standardize": None, **BAND}),
    case("band-pass-detrend-zscore", {**ZSCORE, "detrend": True, **BAND}),
    case("high-pass-psc", {"standardize": "psc", "t_r": T_R, "high_pass": 0.01}),  # trap 24
    case("high-pass-negative", {"standardize": None, "t_r": T_R, "high_pass": -0.01}),
    # confounds in each form, with and without standardize_confounds
    *[
        case(f"confounds-{form}", ZSCORE, confounds=form)
        for form in ("array", "dataframe", "tsv", "csv", "csv-with-index", "txt", "list", "1d")
    ],
    case("confounds-array-unstandardized", {**ZSCORE, "standardize_confounds": False,
                                            "detrend": True}, confounds="array"),
    # neither detrend nor standardize_confounds: nilearn's warning
    case("confounds-dataframe-unstandardized-no-detrend",
         {"standardize": None, "standardize_confounds": False}, confounds="dataframe"),
    case("confounds-band-detrend-zscore", {**ZSCORE, "detrend": True, **BAND},
         confounds="dataframe"),
    case("confounds-psc", {"standardize": "psc"}, confounds="array"),
    # high-variance confounds (placed before the user's)
    case("hv", {"standardize": None, "high_variance_confounds": True}),
    case("hv-zscore-confounds", {**ZSCORE, "high_variance_confounds": True},
         confounds="array"),
    case("hv-confounds-list", {**ZSCORE, "high_variance_confounds": True}, confounds="list"),
    case("hv-band-detrend", {**ZSCORE, "high_variance_confounds": True, "detrend": True, **BAND},
         confounds="tsv"),
    # sample masks with cleaning (no filter: plain selection)
    case("sample-mask-detrend-zscore-confounds", {**ZSCORE, "detrend": True},
         confounds="array", sample_mask="indices"),
    case("sample-mask-boolean-psc", {"standardize": "psc"}, sample_mask="boolean"),
    case("sample-mask-unsorted-zscore", ZSCORE, sample_mask="unsorted-repeats"),
    # sample masks with Butterworth: censored volumes interpolated first (configurations where
    # nilearn is right; the others are in the explicit tests further down)
    *[
        case(f"butterworth-sample-mask-{name}", {**ZSCORE, **BAND}, sample_mask=name)
        for name in ("indices", "boolean", "list-wrapped", "int32", "leading",
                     "leading-boolean", "trailing")
    ],
    case("butterworth-sample-mask-confounds-detrend", {**ZSCORE, "detrend": True, **BAND},
         confounds="dataframe", sample_mask="indices"),
    case("butterworth-sample-mask-hv", {**ZSCORE, "high_variance_confounds": True,
                                        "t_r": T_R, "low_pass": 0.1},
         confounds="array", sample_mask="leading"),
    case("butterworth-sample-mask-extrapolate",
         {**ZSCORE, **BAND, "clean_args": {"extrapolate": True}}, sample_mask="indices"),
    case("butterworth-sample-mask-nilearn-mode",
         {**ZSCORE, **BAND, "clean_args": {"sample_mask_mode": "nilearn"}},
         sample_mask="indices"),
    # clean_args
    case("cosine", {**ZSCORE, "t_r": T_R, "high_pass": 0.01, "clean_args": {"filter": "cosine"}}),
    case("cosine-confounds-sample-mask",
         {**ZSCORE, "detrend": True, "t_r": T_R, "high_pass": 0.02,
          "clean_args": {"filter": "cosine"}}, confounds="dataframe", sample_mask="indices"),
    case("cosine-low-pass-ignored", {**ZSCORE, **BAND, "clean_args": {"filter": "cosine"}}),
    # the cosine filter ignores low_pass: no error for low_pass <= high_pass or above Nyquist
    case("cosine-low-pass-ignored-even-if-invalid",
         {**ZSCORE, "t_r": T_R, "high_pass": 0.01, "low_pass": 0.005,
          "clean_args": {"filter": "cosine"}}),
    case("filter-False-warns", {**ZSCORE, **BAND, "clean_args": {"filter": False}}),
    case("butterworth-order-3", {**ZSCORE, **BAND, "clean_args": {"butterworth__order": 3}}),
    case("butterworth-padtype-even",
         {**ZSCORE, **BAND, "clean_args": {"butterworth__padtype": "even"}}),
    case("butterworth-padlen-40",
         {**ZSCORE, "t_r": T_R, "low_pass": 0.1, "clean_args": {"butterworth__padlen": 40}}),
]


def _transform_kwargs(spec, table, tmp_path) -> dict:
    kwargs = {}
    if spec["confounds"] is not None:
        kwargs["confounds"] = make_confounds(spec["confounds"], table, tmp_path)
    if spec["sample_mask"] is not None:
        kwargs["sample_mask"] = SAMPLE_MASKS[spec["sample_mask"]]()
    return kwargs


def assert_signals_match(got, want, truth=None, *, raw: bool = False, precision=None) -> None:
    """The tolerance rules of the module docstring.

    ``truth`` is nilearn on a float64 copy of the same BOLD; it is needed only for cleaned
    signals from a BOLD that nilearn processes in float32. ``precision`` is the dtype nilearn
    computes in (default: the output dtype).
    """
    assert got.shape == want.shape
    assert got.dtype == want.dtype
    precision = np.dtype(want.dtype if precision is None else precision)
    scale = float(np.max(np.abs(want)))
    if want.dtype.kind == "i":
        # nilearn truncates its float32 values, we truncate float64 ones: a value within
        # nilearn's rounding of an integer may land on either side.
        assert np.max(np.abs(got.astype(np.int64) - want)) <= 1
    elif precision == np.float64 and truth is None:
        assert max_rel(got, want, scale) <= RTOL_F64
    elif raw or truth is None:
        assert max_rel(got, want, scale) <= RTOL_F32
    else:
        ours_error = max_rel(got, truth, scale)
        nilearn_error = max_rel(want, truth, scale)
        assert ours_error <= nilearn_error + RTOL_F32
        assert ours_error <= RTOL_F32


@pytest.mark.parametrize("bold_dtype", ["float64", "float32"])
@pytest.mark.parametrize("spec", CASES)
def test_cleaning_parity(spec, bold_dtype, maps_img, bold32, bold64, bold32_as64,
                         confounds_table, tmp_path):
    """Signals, shape, dtype and warnings match nilearn for every cleaning option."""
    ours = fit_ours(maps_img, **spec["params"])
    oracle = oracle_for(ours).fit()
    img = bold64 if bold_dtype == "float64" else bold32

    def kwargs():
        return _transform_kwargs(spec, confounds_table, tmp_path)

    got, got_warnings = run_recording(ours.transform, img, **kwargs())
    want, want_warnings = run_recording(oracle.transform, img, **kwargs())
    assert not isinstance(want, Exception), want
    assert not isinstance(got, Exception), got
    assert got_warnings == want_warnings
    truth = None
    if bold_dtype == "float32" and not spec["raw"]:
        # Same float32 values in float64: only the arithmetic differs from nilearn's run.
        truth, _ = run_recording(oracle.transform, bold32_as64, **kwargs())
    assert_signals_match(got, want, truth, raw=spec["raw"])


# ----------------------------------------------------------------------------------------------
# sample_mask with Butterworth filtering: where nilearn 0.14 is wrong (spec trap 14, §7.4)

#: Butterworth low-pass + z-score with confounds: every censored-volume code path is used.
SCRUB_PARAMS = {**ZSCORE, "detrend": True, "t_r": T_R, "low_pass": 0.1}


def _spline_filled(values: np.ndarray, kept: np.ndarray, axis: int) -> np.ndarray:
    """Censored samples replaced by the not-a-knot cubic spline through the kept ones."""
    frame_times = np.arange(values.shape[axis]) * T_R
    spline = CubicSpline(frame_times[kept], np.take(values, kept, axis=axis), axis=axis)
    censored = np.setdiff1d(np.arange(values.shape[axis]), kept)
    filled = values.copy()
    index = [slice(None)] * values.ndim
    index[axis] = censored
    filled[tuple(index)] = spline(frame_times[censored])
    return filled


def test_sample_mask_censored_edges_corrected(maps_img, bold64, confounds_table):
    """Censoring both ends (spec's example): nilearn filters the raw censored volumes and returns
    the wrong rows; we drop the edges before filtering and return the kept volumes.

    The right answer is independent of censoring: nilearn on the run cut to volumes 2..n-3.
    """
    kept = np.arange(2, N_VOLUMES - 2)
    confounds = confounds_table.to_numpy()
    ours = fit_ours(maps_img, **SCRUB_PARAMS)
    oracle = oracle_for(ours).fit()

    got = ours.transform(bold64, confounds=confounds, sample_mask=kept.copy())
    cut = bold64.slicer[..., 2 : N_VOLUMES - 2]
    expected = oracle.transform(cut, confounds=confounds[kept])
    assert_signals_match(got, expected)

    nilearn_output = oracle.transform(bold64, confounds=confounds, sample_mask=kept.copy())
    assert nilearn_output.shape == got.shape
    assert max_rel(nilearn_output, got, np.abs(got).max()) > 0.1  # the bug is large

    # ... and nilearn's output is reproducible on request
    quirky = fit_ours(maps_img, **SCRUB_PARAMS, clean_args={"sample_mask_mode": "nilearn"})
    quirk = quirky.transform(bold64, confounds=confounds, sample_mask=kept.copy())
    assert_signals_match(quirk, nilearn_output)


def test_sample_mask_mirrored_censoring_corrected(maps_img, bold64, confounds_table):
    """Volumes 20 and 39 are each other's mirror (n - 1 - k): nilearn interpolates neither and
    filters their raw values; we interpolate every censored volume.

    The right answer: nilearn given the run (and confounds) with those volumes already replaced
    by the spline through the kept volumes -- then there is nothing left for it to get wrong.
    Extraction is linear, so filling voxels equals filling region signals.
    """
    censored = [10, 20, 39]  # 10's mirror (49) is kept, so nilearn gets that one right
    kept = np.setdiff1d(np.arange(N_VOLUMES), censored)
    confounds = confounds_table.to_numpy()
    ours = fit_ours(maps_img, **SCRUB_PARAMS)
    oracle = oracle_for(ours).fit()

    got = ours.transform(bold64, confounds=confounds, sample_mask=kept.copy())
    filled = nib.Nifti1Image(_spline_filled(bold64.get_fdata(), kept, axis=3), AFFINE)
    expected = oracle.transform(
        filled, confounds=_spline_filled(confounds, kept, axis=0), sample_mask=kept.copy()
    )
    assert_signals_match(got, expected)

    nilearn_output = oracle.transform(bold64, confounds=confounds, sample_mask=kept.copy())
    assert max_rel(nilearn_output, got, np.abs(got).max()) > 1e-3
    quirky = fit_ours(maps_img, **SCRUB_PARAMS, clean_args={"sample_mask_mode": "nilearn"})
    quirk = quirky.transform(bold64, confounds=confounds, sample_mask=kept.copy())
    assert_signals_match(quirk, nilearn_output)


@pytest.mark.parametrize("mode", ["correct", "nilearn"])
def test_int32_sample_mask_is_not_modified(mode, maps_img, bold64):
    """nilearn shifts a caller's int32 sample mask in place (by its first index); we never do."""
    mask = np.arange(5, N_VOLUMES, dtype=np.int32)
    ours = fit_ours(maps_img, **SCRUB_PARAMS, clean_args={"sample_mask_mode": mode})
    ours.transform(bold64, sample_mask=mask)
    np.testing.assert_array_equal(mask, np.arange(5, N_VOLUMES))

    oracle = oracle_for(ours).fit()
    oracle.transform(bold64, sample_mask=mask)
    np.testing.assert_array_equal(mask, np.arange(N_VOLUMES - 5))  # nilearn's mutation


# ----------------------------------------------------------------------------------------------
# resampling at transform time (spec §2.2)

OTHER_SHAPE = (24, 26, 22)
OTHER_AFFINE = grid_affine((3.5,) * 3, OTHER_SHAPE) + np.array(
    [[0, 0, 0, 1.0], [0, 0, 0, -0.5], [0, 0, 0, 0.7], [0, 0, 0, 0]]
)
MASK_SHAPE = (30, 30, 30)
MASK_AFFINE = grid_affine((2.8,) * 3, MASK_SHAPE)


@functools.cache
def _other_run() -> np.ndarray:
    return simulate_run(ica_like_maps(OTHER_SHAPE, 6, seed=1), n_volumes=40, seed=1)[0]


@pytest.fixture(scope="module")
def other_bolds() -> dict[str, nib.Nifti1Image]:
    """A 40-volume run on a 3.5 mm grid shifted from the maps': float64, float32, and the
    float32 values in float64 (the exact-arithmetic reference)."""
    data = _other_run()
    return {
        "float64": nib.Nifti1Image(data, OTHER_AFFINE),
        "float32": nib.Nifti1Image(data.astype(np.float32), OTHER_AFFINE),
        "float32_as64": nib.Nifti1Image(data.astype(np.float32).astype(np.float64), OTHER_AFFINE),
    }


@pytest.fixture(scope="module")
def masks() -> dict[str, nib.Nifti1Image]:
    """Masks by name: on the maps' grid (emptying some regions) and on a third, 2.8 mm grid."""
    half = np.zeros(SHAPE, dtype=np.uint8)
    half[:16] = 1
    other = ellipsoid_mask(MASK_SHAPE, 0.7).astype(np.int8)
    return {
        "maps-grid": nib.Nifti1Image(half, AFFINE),
        "mask-grid": nib.Nifti1Image(other, MASK_AFFINE),
    }


@pytest.mark.parametrize("bold_dtype", ["float64", "float32"])
@pytest.mark.parametrize("standardize", [None, "zscore_sample"])
@pytest.mark.parametrize(
    ("target", "mask", "keep_masked_maps"),
    [
        ("data", None, False),
        ("data", "maps-grid", False),
        ("data", "maps-grid", True),
        ("data", "mask-grid", False),
        ("maps", None, False),
        ("maps", "maps-grid", False),
        ("maps", "mask-grid", True),
        ("mask", "mask-grid", False),
        ("mask", "mask-grid", True),
    ],
)
def test_resampling_at_transform_time(target, mask, keep_masked_maps, standardize, bold_dtype,
                                      maps_img, masks, other_bolds):
    """Data on another grid: maps (and mask) resampled onto the data for "data"; the data
    resampled onto the maps for "maps"/"mask". Values, warnings, shape and dtype as nilearn."""
    ours = fit_ours(
        maps_img,
        mask_img=None if mask is None else masks[mask],
        resampling_target=target,
        keep_masked_maps=keep_masked_maps,
        standardize=standardize,
        detrend=standardize is not None,
    )
    oracle = run_recording(oracle_for(ours).fit)[0]
    img = other_bolds[bold_dtype]
    got, got_warnings = run_recording(ours.transform, img)
    want, want_warnings = run_recording(oracle.transform, img)
    assert not isinstance(got, Exception), got
    assert got_warnings == want_warnings
    truth = None
    if bold_dtype == "float32" and standardize is not None:
        truth, _ = run_recording(oracle.transform, other_bolds["float32_as64"])
    assert_signals_match(got, want, truth, raw=standardize is None)


def test_resampling_target_none_refuses_another_grid(maps_img, other_bolds, bold64):
    ours = fit_ours(maps_img, resampling_target=None)
    ours.transform(bold64)  # same grid: fine
    oracle = oracle_for(ours).fit()
    with pytest.raises(ValueError, match="field of view") as ours_error:
        ours.transform(other_bolds["float64"])
    with pytest.raises(ValueError, match="field of view") as nilearn_error:
        oracle.transform(other_bolds["float64"])
    assert str(ours_error.value) == str(nilearn_error.value)
    assert "data" in str(ours_error.value)


def test_fit_on_the_data_grid_then_transform_without_warning(maps_img, other_bolds):
    """fit(imgs) puts the regions on the data grid once, so transform does not resample."""
    ours = RegionExtractor(maps_img, **FIT, standardize=None).fit(other_bolds["float64"])
    assert ours.maps_img_.shape[:3] == OTHER_SHAPE
    got, got_warnings = run_recording(ours.transform, other_bolds["float64"])
    assert not any("Resampling" in message for _, message in got_warnings)
    oracle = run_recording(oracle_for(ours).fit, other_bolds["float64"])[0]
    assert_signals_match(got, oracle.transform(other_bolds["float64"]))


# ----------------------------------------------------------------------------------------------
# dtypes (spec trap 2, §6.4)


def _bold_as(dtype: str) -> nib.Nifti1Image:
    data = _run()[0]
    if dtype == "uint8":
        data = data / 8.0  # brain ~125, within uint8
    return nib.Nifti1Image(np.round(data).astype(dtype) if dtype[0] in "iu" else
                           data.astype(dtype), AFFINE)


def _nilearn_precision(bold_dtype: str, smoothing_fwhm) -> str:
    """float32 or float64: the dtype nilearn smooths and solves in (trap 2)."""
    src = np.dtype(bold_dtype)
    if smoothing_fwhm is not None and src.kind in "iu" and src.itemsize < 8:
        return "float32"
    return "float64" if np.result_type(np.float32, src) == np.float64 else "float32"


@pytest.mark.parametrize("dtype", [None, "auto", np.float64, "float64", np.int32])
@pytest.mark.parametrize(
    ("bold_dtype", "smoothing_fwhm"),
    [
        ("int16", 6),
        ("uint8", 6),
        ("int32", 6),
        ("float32", 6),
        ("float64", 6),
        ("int16", None),
        ("int32", None),  # no smoothing: int32 data are solved in float64
    ],
)
def test_output_dtype_matrix(bold_dtype, smoothing_fwhm, dtype, maps_img):
    """Output dtype (and values) as nilearn for every BOLD dtype x requested dtype."""
    ours = fit_ours(maps_img, standardize=None, dtype=dtype, smoothing_fwhm=smoothing_fwhm)
    oracle = oracle_for(ours).fit()
    img = _bold_as(bold_dtype)
    got, got_warnings = run_recording(ours.transform, img)
    want, want_warnings = run_recording(oracle.transform, img)
    assert got_warnings == want_warnings
    assert_signals_match(got, want, raw=True,
                         precision=_nilearn_precision(bold_dtype, smoothing_fwhm))


@pytest.mark.parametrize("smoothing_fwhm", [6, None])
@pytest.mark.parametrize("bold_dtype", ["int16", "uint8", "int32", "float32", "float64"])
def test_output_dtype_of_data_resampled_onto_the_maps(bold_dtype, smoothing_fwhm, maps_img):
    """Cubic-spline resampling changes the dtype first (int32 -> float32, uint8 kept), and so
    the precision nilearn solves in: int32 without smoothing gives float32 here."""
    ours = fit_ours(maps_img, standardize=None, smoothing_fwhm=smoothing_fwhm,
                    resampling_target="maps")
    oracle = oracle_for(ours).fit()
    data = _other_run() / (8.0 if bold_dtype == "uint8" else 1.0)
    values = np.round(data).astype(bold_dtype) if bold_dtype[0] in "iu" else data
    img = nib.Nifti1Image(values.astype(bold_dtype), OTHER_AFFINE)
    got, got_warnings = run_recording(ours.transform, img)
    want, want_warnings = run_recording(oracle.transform, img)
    assert got_warnings == want_warnings
    precision = "float64" if bold_dtype == "float64" else "float32"
    assert_signals_match(got, want, raw=True, precision=precision)


@pytest.mark.parametrize("bold_dtype", ["int16", "uint8"])
def test_integer_bold_cleaned_in_float(bold_dtype, maps_img):
    """Cleaning integer BOLD returns float signals (nilearn's clean-dtype regression check)."""
    ours = fit_ours(maps_img, standardize="zscore_sample", detrend=True)
    got = ours.transform(_bold_as(bold_dtype))
    assert got.dtype == np.float32
    np.testing.assert_allclose(got.std(axis=0, ddof=1), 1.0, rtol=1e-5)


# ----------------------------------------------------------------------------------------------
# input and output shapes (spec trap 20, §1.3)


@pytest.fixture(scope="module")
def single_region_maps_img() -> nib.Nifti1Image:
    """One positive single-blob map: a single region."""
    maps = ica_like_maps(SHAPE, 1, seed=2, n_blobs=(1, 1), negative_fraction=0.0, noise=0.0)
    return nib.Nifti1Image(maps, AFFINE)


@pytest.mark.parametrize("which_maps", ["several", "single"])
@pytest.mark.parametrize("output", [None, "default", "pandas"])
def test_3d_image(which_maps, output, maps_img, single_region_maps_img, bold64):
    """A 3D image gives (n,) -- 0-d for one region -- unless an output config is set: (1, n)."""
    ours = fit_ours(maps_img if which_maps == "several" else single_region_maps_img,
                    standardize=None)
    oracle = oracle_for(ours).fit()
    if output is not None:
        ours.set_output(transform=output)
        oracle.set_output(transform=output)
    volume = bold64.slicer[..., 7]
    got, want = ours.transform(volume), oracle.transform(volume)
    n = ours.n_elements_
    assert (n == 1) == (which_maps == "single")
    expected_shape = {None: (n,) if n > 1 else (), "default": (1, n), "pandas": (1, n)}[output]
    assert got.shape == want.shape == expected_shape
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=RTOL_F64, atol=0)


def test_list_of_3d_images_is_one_run(maps_img, bold64):
    ours = fit_ours(maps_img, standardize="zscore_sample")
    oracle = oracle_for(ours).fit()
    volumes = [bold64.slicer[..., t] for t in range(10)]
    got, want = ours.transform(volumes), oracle.transform(volumes)
    assert got.shape == (10, ours.n_elements_)
    assert_signals_match(got, want)


@pytest.mark.parametrize("output", [None, "pandas"])
def test_list_of_4d_images_gives_a_list(output, maps_img, bold64, bold32, bold32_as64,
                                        confounds_table):
    """Our extension: one signal array per run (nilearn raises DimensionError), each equal to
    nilearn's transform of that run with its own confounds and sample mask."""
    ours = fit_ours(maps_img, **ZSCORE, detrend=True, **BAND).set_output(transform=output)
    oracle = oracle_for(ours).fit()
    runs = [bold64, bold32]
    confounds = [confounds_table, confounds_table.to_numpy()[:, :6]]
    masks = [SCRUBBED.copy(), None]
    got = ours.transform(runs, confounds=confounds, sample_mask=masks)
    assert isinstance(got, list) and len(got) == 2
    for k, (run, conf, mask) in enumerate(zip(runs, confounds, masks, strict=True)):
        want = oracle.transform(run, confounds=conf, sample_mask=mask)
        truth = None
        if run is bold32:
            truth = oracle.transform(bold32_as64, confounds=conf, sample_mask=mask)
        if output == "pandas":
            assert list(got[k].columns) == list(ours.get_feature_names_out())
        assert_signals_match(np.asarray(got[k]), want, truth)

    from nilearn.exceptions import DimensionError

    with pytest.raises(DimensionError):
        oracle.transform(runs)


def test_list_of_4d_images_needs_per_run_confounds(maps_img, bold64, confounds_table):
    ours = fit_ours(maps_img)
    with pytest.raises(ValueError, match="'confounds' must be a list with one entry per image"):
        ours.transform([bold64, bold64], confounds=confounds_table)
    with pytest.raises(ValueError, match="'sample_mask' must be a list with one entry per"):
        ours.transform([bold64, bold64], sample_mask=[SCRUBBED])


def test_confounds_tuple_with_high_variance_confounds(maps_img, bold64, confounds_table):
    """A tuple of confound sources is stacked like a list (nilearn rejects it with
    high_variance_confounds=True)."""
    ours = fit_ours(maps_img, **ZSCORE, high_variance_confounds=True)
    parts = (confounds_table[MOTION].to_numpy(), confounds_table[["csf", "white_matter"]])
    np.testing.assert_array_equal(ours.transform(bold64, confounds=parts),
                                  ours.transform(bold64, confounds=list(parts)))
    with pytest.raises(TypeError, match="confound has an unhandled type"):
        oracle_for(ours).fit().transform(bold64, confounds=parts)


def test_fit_transform_equals_fit_then_transform(maps_img, bold64, confounds_table):
    est = RegionExtractor(maps_img, **FIT, **ZSCORE, detrend=True)
    got = est.fit_transform(bold64, confounds=confounds_table, sample_mask=SCRUBBED)
    np.testing.assert_array_equal(
        got, est.transform(bold64, confounds=confounds_table, sample_mask=SCRUBBED)
    )


# ----------------------------------------------------------------------------------------------
# inverse_transform (spec §8)


@pytest.mark.parametrize("mask", [None, "maps-grid"])
@pytest.mark.parametrize("dtype", [None, "auto", "float64", np.int32, np.int64])
@pytest.mark.parametrize("signals_dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n_rows", [None, 1, 5])
def test_inverse_transform_equals_nilearn(n_rows, signals_dtype, dtype, mask, maps_img, masks):
    """1D -> 3D, 2D -> 4D; mask trimming (maps emptied by the mask keep their column); dtype
    and values as nilearn's."""
    ours = fit_ours(maps_img, mask_img=None if mask is None else masks[mask], dtype=dtype)
    oracle = oracle_for(ours).fit()
    rng = np.random.default_rng(3)
    shape = (ours.n_elements_,) if n_rows is None else (n_rows, ours.n_elements_)
    signals = (100 * rng.standard_normal(shape)).astype(signals_dtype)

    got, got_warnings = run_recording(ours.inverse_transform, signals)
    want, want_warnings = run_recording(oracle.inverse_transform, signals)
    assert got_warnings == want_warnings
    expected_shape = SHAPE if n_rows is None else (*SHAPE, n_rows)
    assert got.shape == want.shape == expected_shape
    np.testing.assert_array_equal(got.affine, want.affine)
    assert got.get_data_dtype() == want.get_data_dtype()
    got_data, want_data = np.asanyarray(got.dataobj), np.asanyarray(want.dataobj)
    assert got_data.dtype == want_data.dtype
    np.testing.assert_allclose(got_data, want_data, rtol=1e-6, atol=1e-6 * np.abs(want_data).max())
    if mask is not None:
        outside = np.asanyarray(masks[mask].dataobj) == 0
        assert not np.any(got_data[outside])


@pytest.mark.parametrize("frame", ["pandas", "polars"])
def test_inverse_transform_of_a_data_frame(frame, maps_img, bold64):
    ours = fit_ours(maps_img, standardize=None).set_output(transform=frame)
    signals = ours.transform(bold64.slicer[..., :3])
    assert type(signals).__module__.split(".")[0] == frame
    ours_default = fit_ours(maps_img, standardize=None)
    array = ours_default.transform(bold64.slicer[..., :3])
    np.testing.assert_array_equal(
        ours.inverse_transform(signals).get_fdata(),
        ours_default.inverse_transform(array).get_fdata(),
    )
    # a one-row frame is squeezed, as in nilearn: a 3D image
    assert ours.inverse_transform(signals[:1]).shape == SHAPE


def test_inverse_transform_bool_input_warns(maps_img):
    ours = fit_ours(maps_img)
    oracle = oracle_for(ours).fit()
    signals = np.ones((2, ours.n_elements_), dtype=bool)
    # nilearn prints the type object ("<class 'numpy.int32'>"), we print the dtype ("int32")
    with pytest.warns(UserWarning, match="Casting boolean input to int32"):
        got = ours.inverse_transform(signals)
    with pytest.warns(UserWarning, match="Casting boolean input to .*int32"):
        want = oracle.inverse_transform(signals)
    assert got.get_data_dtype() == want.get_data_dtype()
    np.testing.assert_array_equal(np.asanyarray(got.dataobj), np.asanyarray(want.dataobj))


@pytest.mark.parametrize("shape_delta", [(0, 1), (0, -1), "3d"])
def test_inverse_transform_wrong_shape(shape_delta, maps_img):
    ours = fit_ours(maps_img)
    n = ours.n_elements_
    signals = (np.zeros((2, 2, n)) if shape_delta == "3d"
               else np.zeros((4 + shape_delta[0], n + shape_delta[1])))
    with pytest.raises(ValueError, match=r"(?s)Input to 'inverse_transform' has wrong shape"):
        ours.inverse_transform(signals)


def test_inverse_transform_needs_fit(maps_img):
    from sklearn.exceptions import NotFittedError

    with pytest.raises(NotFittedError):
        RegionExtractor(maps_img).inverse_transform(np.zeros(3))


# ----------------------------------------------------------------------------------------------
# feature names and set_output (spec §6.5)


def test_get_feature_names_out(maps_img):
    ours = fit_ours(maps_img)
    names = ours.get_feature_names_out()
    assert names.dtype == object
    assert list(names) == [f"regionextractor{i}" for i in range(ours.n_elements_)]


@pytest.mark.parametrize("frame", ["pandas", "polars"])
def test_set_output_frames(frame, maps_img, bold32):
    ours = fit_ours(maps_img, standardize="zscore_sample").set_output(transform=frame)
    plain = fit_ours(maps_img, standardize="zscore_sample")
    got = ours.transform(bold32)
    assert type(got).__module__.split(".")[0] == frame
    assert list(got.columns) == list(ours.get_feature_names_out())
    values = got.to_numpy()
    assert values.dtype == np.float32  # preserved
    np.testing.assert_array_equal(values, plain.transform(bold32))
    if frame == "pandas":
        pd.testing.assert_index_equal(got.index, pd.RangeIndex(N_VOLUMES))
    fitted = RegionExtractor(maps_img, **FIT).set_output(transform=frame).fit_transform(bold32)
    assert type(fitted).__module__.split(".")[0] == frame


def test_set_output_rejects_unknown_container(maps_img):
    with pytest.raises(ValueError, match="output config"):
        RegionExtractor(maps_img).set_output(transform="xarray")


# ----------------------------------------------------------------------------------------------
# bad input: a clear error naming the argument, raised before the BOLD data are read


class _Unreadable:
    """A nibabel data object whose values must not be read (shape and dtype only)."""

    def __init__(self, shape, dtype=np.float32):
        self.shape, self.dtype, self.ndim = tuple(shape), np.dtype(dtype), len(shape)

    def __array__(self, *args, **kwargs):
        raise AssertionError("BOLD data read before the inputs were checked")

    __getitem__ = __array__


@pytest.fixture(scope="module")
def unreadable_bold() -> nib.Nifti1Image:
    return nib.Nifti1Image(_Unreadable((*SHAPE, N_VOLUMES)), AFFINE)


def _fmriprep_raw_table() -> pd.DataFrame:
    return _run()[1]  # derivative and FD columns start with NaN (fMRIPrep's n/a)


BAD_INPUTS = [
    pytest.param({}, {"confounds": lambda t: t.to_numpy()[:-1]}, ValueError,
                 r"Confound signal has an incorrect length", id="confounds-too-short"),
    pytest.param({}, {"confounds": lambda t: _fmriprep_raw_table()}, ValueError,
                 r"confounds contain NaN .*'trans_x_derivative1'.*row\(s\) \[0\]",
                 id="confounds-nan"),
    pytest.param({}, {"confounds": lambda t: np.zeros((N_VOLUMES, 2, 2))}, ValueError,
                 r"confound array has an incorrect number of dimensions", id="confounds-3d"),
    pytest.param({}, {"confounds": lambda t: 3}, TypeError, r"'confounds' must be of type",
                 id="confounds-type"),
    pytest.param({}, {"sample_mask": lambda t: np.array([0, 5, N_VOLUMES + 3])}, IndexError,
                 r"sample_mask 1 of 1 contains invalid index", id="sample-mask-out-of-range"),
    pytest.param({}, {"sample_mask": lambda t: np.array([0, 5, N_VOLUMES])}, IndexError,
                 r"sample_mask 1 of 1 contains invalid index \[60\]",
                 id="sample-mask-index-n"),
    pytest.param({}, {"sample_mask": lambda t: np.array([-1, 5])}, ValueError,
                 r"sample_mask should not contain negative values", id="sample-mask-negative"),
    pytest.param({}, {"sample_mask": lambda t: np.ones(N_VOLUMES - 1, dtype=bool)}, ValueError,
                 r"boolean sample_mask 1 of 1 has 59 entries but the run has 60 volumes",
                 id="sample-mask-boolean-length"),
    pytest.param({}, {"sample_mask": lambda t: np.arange(N_VOLUMES + 2) % N_VOLUMES},
                 IndexError, r"sample_mask 1 of 1 is has more timepoints",
                 id="sample-mask-too-long"),
    pytest.param({}, {"sample_mask": lambda t: [np.arange(4), np.arange(4)]}, ValueError,
                 r"Number of sample_mask \(2\) not matching number of runs \(1\)",
                 id="sample-mask-two-runs"),
    pytest.param({"low_pass": 0.1}, {}, ValueError,
                 r"Repetition time \(t_r\) must be specified for butterworth", id="no-t_r"),
    pytest.param({"high_pass": 0.01, "clean_args": {"filter": "cosine"}}, {}, ValueError,
                 r"Repetition time \(t_r\) and low cutoff frequency \(high_pass\) must be "
                 r"specified for cosine", id="cosine-no-t_r"),
    pytest.param({"t_r": T_R, "low_pass": 0.25}, {}, ValueError,
                 r"'low_pass' \(0.25 Hz\) must be below the Nyquist frequency \(0.25 Hz for "
                 r"t_r=2.0 s\)", id="low-pass-at-nyquist"),
    pytest.param({"t_r": T_R, "high_pass": 0.3}, {}, ValueError,
                 r"'high_pass' \(0.3 Hz\) must be below the Nyquist", id="high-pass-nyquist"),
    pytest.param({"t_r": T_R, "high_pass": 0.1, "low_pass": 0.1}, {}, ValueError,
                 r"'high_pass' \(0.1 Hz\) must be lower than 'low_pass' \(0.1 Hz\)",
                 id="high-pass-equals-low-pass"),
    pytest.param({"t_r": T_R, "low_pass": 0.1, "clean_args": {"filter": "fft"}}, {},
                 ValueError, r"Filter method fft not implemented", id="unknown-filter"),
    pytest.param({"clean_args": {"sample_mask_mode": "fast"}}, {}, ValueError,
                 r"'sample_mask_mode' must be one of", id="sample-mask-mode"),
]


@pytest.mark.parametrize(("params", "inputs", "error", "match"), BAD_INPUTS)
def test_bad_cleaning_inputs_fail_before_reading_data(params, inputs, error, match, maps_img,
                                                      unreadable_bold, confounds_table):
    ours = fit_ours(maps_img, **params)
    kwargs = {name: make(confounds_table) for name, make in inputs.items()}
    with pytest.raises(error, match=match):
        ours.transform(unreadable_bold, **kwargs)
    if params.get("high_variance_confounds") is None:
        # the high-variance confounds read the run too: the checks come first there as well
        ours = fit_ours(maps_img, **params, high_variance_confounds=True)
        with pytest.raises(error, match=match):
            ours.transform(unreadable_bold, **kwargs)


def test_bad_inputs_of_a_later_run_fail_before_the_first_run_is_read(maps_img, unreadable_bold,
                                                                     confounds_table):
    ours = fit_ours(maps_img)
    good, bad = confounds_table, confounds_table.iloc[:-1]
    with pytest.raises(ValueError, match="Confound signal has an incorrect length"):
        ours.transform([unreadable_bold, unreadable_bold], confounds=[good, bad])


def test_nilearn_fails_later_on_nan_confounds(maps_img, bold32):
    """nilearn only fails inside scipy's QR, after extraction, with a message naming neither
    the argument nor the column (a documented divergence)."""
    oracle = oracle_for(fit_ours(maps_img)).fit()
    with pytest.raises(ValueError, match="must not contain infs or NaNs"):
        oracle.transform(bold32, confounds=_fmriprep_raw_table())


def test_nilearn_lowers_a_low_pass_above_nyquist(maps_img, bold32):
    """Where we refuse a cut-off at or above Nyquist, nilearn warns and filters just below it."""
    ours = fit_ours(maps_img, t_r=T_R, low_pass=0.3)
    oracle = oracle_for(ours).fit()
    with pytest.warns(UserWarning, match="too high to be handled by a digital filter"):
        oracle.transform(bold32)


@pytest.mark.parametrize(
    ("imgs", "error", "match"),
    [
        (lambda b: [b.slicer[..., 0], b], ValueError, r"imgs: a list must hold either the 3D"),
        (lambda b: [b, b.slicer[..., 0]], ValueError, r"imgs: a list must hold either the 3D"),
        (lambda b: nib.Nifti1Image(np.zeros((*SHAPE, 2, 2), np.float32), AFFINE),
         TypeError, r"imgs has incompatible dimensionality"),
        (lambda b: nib.Nifti1Image(np.zeros((*SHAPE, 0), np.float32), AFFINE), ValueError,
         r"The image is empty"),
        (lambda b: "missing.nii.gz", FileNotFoundError, r"imgs: file not found"),
        (lambda b: None, TypeError, r"input should be a NiftiLike object.*\(imgs\)"),
    ],
    ids=["3d-then-4d", "4d-then-3d", "5d", "empty", "missing-file", "none"],
)
def test_bad_images(imgs, error, match, maps_img, bold32):
    ours = fit_ours(maps_img)
    with pytest.raises(error, match=match):
        ours.transform(imgs(bold32))


def test_transform_needs_fit(maps_img, bold32):
    from sklearn.exceptions import NotFittedError

    with pytest.raises(NotFittedError):
        RegionExtractor(maps_img).transform(bold32)


# ----------------------------------------------------------------------------------------------
# end to end against nilearn's own RegionExtractor


@pytest.mark.parametrize("bold_dtype", ["float64", "float32"])
def test_nilearn_region_extractor_end_to_end(bold_dtype, maps_img, bold32, bold64, bold32_as64,
                                             confounds_table):
    """nilearn.regions.RegionExtractor (not only its masker): same regions, then the same
    signals, feature names and data-frame columns."""
    from nilearn.regions import RegionExtractor as NilearnRegionExtractor

    params = {**FIT, **ZSCORE, "detrend": True, **BAND, "high_variance_confounds": True}
    ours = RegionExtractor(maps_img, **params).set_output(transform="pandas").fit()
    theirs = NilearnRegionExtractor(maps_img, **params).set_output(transform="pandas").fit()
    np.testing.assert_array_equal(np.asanyarray(ours.regions_img_.dataobj),
                                  np.asanyarray(theirs.regions_img_.dataobj))
    np.testing.assert_array_equal(ours.get_feature_names_out(), theirs.get_feature_names_out())

    img = bold64 if bold_dtype == "float64" else bold32
    kwargs = {"confounds": confounds_table, "sample_mask": SCRUBBED}
    got, got_warnings = run_recording(ours.transform, img, **kwargs)
    want, want_warnings = run_recording(theirs.transform, img, **kwargs)
    assert got_warnings == want_warnings
    assert list(got.columns) == list(want.columns)
    truth = None
    if bold_dtype == "float32":
        truth = run_recording(theirs.transform, bold32_as64, **kwargs)[0].to_numpy()
    assert_signals_match(got.to_numpy(), want.to_numpy(), truth)


# ----------------------------------------------------------------------------------------------
# non-finite BOLD values


@pytest.mark.parametrize("value", [np.nan, np.inf])
@pytest.mark.parametrize("smoothing_fwhm", [6, None])
@pytest.mark.parametrize("used", [True, False])
def test_non_finite_voxels(used, smoothing_fwhm, value, maps_img):
    """Non-finite values count as 0, as in nilearn (same signals). We warn iff a voxel the
    signals depend on is non-finite; nilearn never warns when it smooths (it zeroes them
    silently) and warns for any non-finite voxel of the image when it does not."""
    ours = fit_ours(maps_img, standardize=None, smoothing_fwhm=smoothing_fwhm)
    oracle = oracle_for(ours).fit()
    plan = ours._plan(ours.maps_img_, None, np.float64)
    is_used = np.zeros(int(np.prod(SHAPE)), dtype=bool)
    is_used[plan.rows] = True
    is_used = is_used.reshape(SHAPE, order="F")
    voxel = tuple(np.argwhere(is_used if used else ~is_used)[len(plan.rows) // 3 % 100])
    data = _run()[0].copy()
    data[(*voxel, 5)] = value
    img = nib.Nifti1Image(data, AFFINE)

    got, got_warnings = run_recording(ours.transform, img)
    want, want_warnings = run_recording(oracle.transform, img)
    assert_signals_match(got, want)
    message = ("UserWarning", "Non-finite values detected. These values will be replaced with "
               "zeros.")
    assert (message in got_warnings) == used
    assert (message in want_warnings) == (smoothing_fwhm is None)


# ----------------------------------------------------------------------------------------------
# MNI size (make test skips these: -m slow)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("params", "with_confounds", "sample_mask"),
    [
        ({"standardize": None}, False, None),
        ({**ZSCORE, "detrend": True, **BAND}, True, SCRUBBED),
        ({**ZSCORE, "high_variance_confounds": True, "t_r": T_R, "high_pass": 0.01,
          "clean_args": {"filter": "cosine"}}, True, None),
    ],
    ids=["raw", "band-detrend-zscore-confounds-scrubbed", "hv-cosine"],
)
def test_mni_size_parity(params, with_confounds, sample_mask, tmp_path):
    """91 x 109 x 91 x 60 float32 BOLD read from .nii.gz, 20 ICA-like maps at 2 mm."""
    from bids_regionx.synthetic.maps import MNI_2MM_AFFINE, MNI_2MM_SHAPE

    maps = ica_like_maps(MNI_2MM_SHAPE, 20, seed=0)
    data, table = simulate_run(maps, n_volumes=N_VOLUMES, seed=0)
    path = tmp_path / "bold.nii.gz"
    nib.save(nib.Nifti1Image(data.astype(np.float32), MNI_2MM_AFFINE), path)
    as64 = nib.Nifti1Image(data.astype(np.float32).astype(np.float64), MNI_2MM_AFFINE)
    del data
    ours = RegionExtractor(nib.Nifti1Image(maps, MNI_2MM_AFFINE), **{**FIT, "threshold": 0.3},
                           **params).fit()
    oracle = oracle_for(ours).fit()
    kwargs = {"confounds": table.fillna(0.0) if with_confounds else None,
              "sample_mask": sample_mask}
    got, got_warnings = run_recording(ours.transform, str(path), **kwargs)
    want, want_warnings = run_recording(oracle.transform, str(path), **kwargs)
    assert got_warnings == want_warnings
    raw = params.get("standardize") is None
    truth = None if raw else run_recording(oracle.transform, as64, **kwargs)[0]
    assert_signals_match(got, want, truth, raw=raw)
