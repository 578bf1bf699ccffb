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
    case("low-pass-above-nyquist", {"standardize": None, "t_r": T_R, "low_pass": 0.3}),
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


@pytest.mark.parametrize("bold_dtype", ["float64", "float32"])
@pytest.mark.parametrize("spec", CASES)
def test_cleaning_parity(spec, bold_dtype, maps_img, bold32, bold64, bold32_as64,
                         confounds_table, tmp_path):
    """Signals, shape, dtype and warnings match nilearn for every cleaning option."""
    ours = fit_ours(maps_img, **spec["params"])
    oracle = oracle_for(ours).fit()
    img = bold64 if bold_dtype == "float64" else bold32

    got, got_warnings = run_recording(
        ours.transform, img, **_transform_kwargs(spec, confounds_table, tmp_path)
    )
    want, want_warnings = run_recording(
        oracle.transform, img, **_transform_kwargs(spec, confounds_table, tmp_path)
    )
    assert not isinstance(want, Exception), want
    assert not isinstance(got, Exception), got
    assert got.shape == want.shape
    assert got.dtype == want.dtype
    assert got_warnings == want_warnings
    scale = float(np.max(np.abs(want)))

    if bold_dtype == "float64":
        assert max_rel(got, want, scale) <= RTOL_F64
        return
    if spec["raw"]:
        assert max_rel(got, want, scale) <= RTOL_F32
        return
    # float32 and cleaned: compare both to the truth, nilearn on a float64 copy of the same
    # float32 BOLD (so the input is identical and only the arithmetic differs).
    truth, _ = run_recording(
        oracle.transform, bold32_as64, **_transform_kwargs(spec, confounds_table, tmp_path)
    )
    ours_error = max_rel(got, truth, scale)
    nilearn_error = max_rel(want, truth, scale)
    assert ours_error <= nilearn_error + RTOL_F32
    assert ours_error <= RTOL_F32
