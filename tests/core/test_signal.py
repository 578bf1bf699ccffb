"""Tests for bids_regionx.core.signal (clean and its building blocks).

nilearn 0.14 is the oracle: every parity case runs ``nilearn.signal.clean`` and ours on the same
inputs and compares values, shapes, dtypes and the set of (category, message) warnings.
Tolerances are those of the spec (float32: 1e-5 x max|value|; float64: 1e-10 relative) but
the implementation is bit-identical on this grid in practice.
"""

from __future__ import annotations

import warnings

import nilearn.signal as nsignal
import numpy as np
import pandas as pd
import pytest
import scipy.signal

from bids_regionx.core.errors import AllVolumesRemovedError
from bids_regionx.core.signal import (
    butterworth,
    clean,
    create_cosine_drift,
    detrend,
    even_slices,
    mean_of_squares,
    standardize_signal,
)

T_R = 2.0
N_SAMPLES = 80

MOTION = ["trans_x", "trans_y", "trans_z", "rot_x", "rot_y", "rot_z"]


# ------------------------------------------------------------------------------------------
# data


def fmriprep_confounds(rng: np.random.Generator, n_samples: int, *, fill: bool = True):
    """An fMRIPrep-shaped confounds table: 6 motion + derivatives, csf, wm, gs, FD.

    Derivative and framewise_displacement columns have fMRIPrep's n/a first row, filled with 0
    when ``fill``.
    """
    motion = np.cumsum(rng.normal(0.0, 0.03, (n_samples, 6)), axis=0)
    derivatives = np.vstack([np.full((1, 6), np.nan), np.diff(motion, axis=0)])
    table = pd.DataFrame(motion, columns=MOTION)
    for k, name in enumerate(MOTION):
        table[f"{name}_derivative1"] = derivatives[:, k]
    slow = np.cumsum(rng.normal(0.0, 1.0, n_samples))
    table["csf"] = 800 + 5 * slow + rng.normal(0, 2, n_samples)
    table["white_matter"] = 600 + 3 * slow + rng.normal(0, 1, n_samples)
    table["global_signal"] = 500 + 2 * slow + rng.normal(0, 1, n_samples)
    fd = np.abs(derivatives[:, :3]).sum(1) + 50 * np.abs(derivatives[:, 3:]).sum(1)
    table["framewise_displacement"] = fd
    return table.fillna(0.0) if fill else table


def make_signals(rng, confounds: pd.DataFrame, *, n_features: int = 12, dtype=np.float32):
    """BOLD-like (n_samples, n_features): mean ~100-120, a drift, slow sines, confound mixture."""
    n_samples = len(confounds)
    t = np.arange(n_samples) * T_R
    base = 100 + 20 * rng.random(n_features)
    drift = np.outer(t / t[-1], rng.normal(0, 4, n_features))
    freqs = rng.uniform(0.005, 0.2, n_features)
    sines = np.sin(2 * np.pi * freqs * t[:, None] + rng.uniform(0, np.pi, n_features))
    values = confounds.to_numpy()
    values = (values - values.mean(0)) / (values.std(0) + 1e-12)
    mixture = values @ rng.normal(0, 0.3, (values.shape[1], n_features))
    noise = rng.normal(0, 1, (n_samples, n_features))
    return (base + drift + 3 * sines + mixture + noise).astype(dtype)


@pytest.fixture(scope="module")
def confounds_df():
    return fmriprep_confounds(np.random.default_rng(42), N_SAMPLES)


@pytest.fixture(scope="module")
def signals64(confounds_df):
    return make_signals(np.random.default_rng(7), confounds_df, dtype=np.float64)


def signals_as(signals64, dtype):
    return signals64.astype(dtype)


# ------------------------------------------------------------------------------------------
# parity helpers


def run_recording(func, *args, **kwargs):
    """Call func; return (result, {(category name, message)}) for User/Future warnings."""
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        result = func(*args, **kwargs)
    messages = {
        (w.category.__name__, str(w.message))
        for w in record
        if issubclass(w.category, (UserWarning, FutureWarning))
    }
    return result, messages


def assert_parity(ours, ref):
    assert ours.shape == ref.shape
    assert ours.dtype == ref.dtype
    scale = float(np.abs(ref).max()) if ref.size else 0.0
    if ref.dtype == np.float32:
        assert float(np.abs(ours.astype(np.float64) - ref).max(initial=0.0)) <= 1e-5 * scale
    else:
        np.testing.assert_allclose(ours, ref, rtol=1e-10, atol=1e-10 * scale)


def check_clean_parity(signals, **kwargs):
    """Run both implementations; compare outputs and warnings. Return our output."""
    ref, ref_warnings = run_recording(nsignal.clean, signals.copy(), **kwargs)
    ours, our_warnings = run_recording(clean, signals, **kwargs)
    assert_parity(ours, ref)
    assert our_warnings == ref_warnings
    return ours


FILTERS = {
    "none": {},
    "low": {"low_pass": 0.08},
    "high": {"high_pass": 0.01},
    "band": {"low_pass": 0.08, "high_pass": 0.01},
    "cosine": {"filter": "cosine", "high_pass": 0.01},
}


# ------------------------------------------------------------------------------------------
# clean: parity grid


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("filter_name", list(FILTERS))
@pytest.mark.parametrize("detrend_", [True, False])
@pytest.mark.parametrize("standardize", ["zscore_sample", "psc", None, True, False])
def test_clean_parity_grid(signals64, dtype, filter_name, detrend_, standardize):
    signals = signals_as(signals64, dtype)
    out = check_clean_parity(
        signals, detrend=detrend_, standardize=standardize, t_r=T_R, **FILTERS[filter_name]
    )
    assert out.dtype == dtype


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(
    "options",
    [
        {"butterworth__order": 3},
        {"butterworth__padtype": "even"},
        {"butterworth__padtype": "constant", "butterworth__padlen": 10},
        {"butterworth__padtype": None},
        {"butterworth__padlen": 0},
        {"unrelated_key": 1},
    ],
    ids=lambda o: "-".join(f"{k.split('__')[-1]}={v}" for k, v in o.items()),
)
def test_clean_parity_butterworth_kwargs(signals64, dtype, options):
    signals = signals_as(signals64, dtype)
    out = check_clean_parity(signals, low_pass=0.08, high_pass=0.01, t_r=T_R, **options)
    # the options do change the result
    if "unrelated_key" not in options:
        default = clean(signals, low_pass=0.08, high_pass=0.01, t_r=T_R)
        assert not np.array_equal(out, default)


def _confound_source(kind, confounds_df, tmp_path):
    if kind == "array":
        return confounds_df.to_numpy()
    if kind == "dataframe":
        return confounds_df
    if kind == "tsv":
        path = tmp_path / "desc-confounds_timeseries.tsv"
        confounds_df.to_csv(path, sep="\t", index=False)
        return str(path)
    if kind == "csv-path":
        path = tmp_path / "confounds.csv"
        confounds_df.to_csv(path)  # keeps the index column, which becomes a confound
        return path
    if kind == "txt-no-header":
        path = tmp_path / "confounds.txt"
        np.savetxt(path, confounds_df.to_numpy())
        return str(path)
    if kind == "list":
        return [
            confounds_df[MOTION],
            confounds_df[["csf", "white_matter"]].to_numpy(),
            confounds_df["framewise_displacement"].to_numpy(),  # 1D
        ]
    raise AssertionError(kind)


CONFOUND_KINDS = ["array", "dataframe", "tsv", "csv-path", "txt-no-header", "list"]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("standardize_confounds", [True, False])
@pytest.mark.parametrize("kind", CONFOUND_KINDS)
def test_clean_parity_confounds(
    signals64, confounds_df, tmp_path, dtype, standardize_confounds, kind
):
    signals = signals_as(signals64, dtype)
    confounds = _confound_source(kind, confounds_df, tmp_path)
    check_clean_parity(
        signals,
        confounds=confounds,
        standardize_confounds=standardize_confounds,
        low_pass=0.08,
        high_pass=0.01,
        t_r=T_R,
    )


@pytest.mark.parametrize("filter_name", ["none", "band", "cosine"])
@pytest.mark.parametrize("detrend_", [True, False])
def test_clean_parity_confounds_filters(signals64, confounds_df, filter_name, detrend_):
    # detrend=False with standardize_confounds=False also checks nilearn's warning
    for standardize_confounds in (True, False):
        check_clean_parity(
            signals64.astype(np.float32),
            confounds=confounds_df,
            detrend=detrend_,
            standardize_confounds=standardize_confounds,
            standardize="psc",
            t_r=T_R,
            **FILTERS[filter_name],
        )


def test_clean_parity_cosine_with_user_drift(signals64):
    # A user confound equal to a drift term: nilearn warns and keeps the user regressors only.
    frame_times = np.arange(N_SAMPLES) * T_R
    drift = create_cosine_drift(0.01, frame_times)[:, :2]
    check_clean_parity(
        signals64, confounds=drift, filter="cosine", high_pass=0.01, t_r=T_R, low_pass=0.1
    )
    # No drift for this length/cut-off: warning, no drifts added.
    check_clean_parity(signals64, filter="cosine", high_pass=1e-4, t_r=T_R)


def test_clean_parity_high_variance_confounds(signals64, confounds_df):
    rng = np.random.default_rng(3)
    voxels = (rng.normal(0, 1, (N_SAMPLES, 600)) * rng.uniform(1, 5, 600)).astype(np.float32)
    hv = nsignal.high_variance_confounds(np.asfortranarray(voxels))
    assert hv.dtype == np.float32
    for confounds in (hv, [hv, confounds_df]):
        for dtype in (np.float32, np.float64):
            check_clean_parity(
                signals64.astype(dtype), confounds=confounds, low_pass=0.08, t_r=T_R
            )


@pytest.mark.parametrize("dtype", [np.int16, np.int32, np.int64, np.float16])
def test_clean_parity_other_dtypes(signals64, dtype):
    signals = np.round(signals64).astype(dtype)
    check_clean_parity(signals, low_pass=0.08, t_r=T_R)
    check_clean_parity(signals, detrend=False, standardize=None)


def test_clean_parity_many_features():
    # >= 500 features: detrending in 10 column batches (BLAS rounding depends on them).
    rng = np.random.default_rng(11)
    signals = (rng.normal(100, 5, (60, 523)) + np.arange(60)[:, None] * 0.1).astype(np.float32)
    check_clean_parity(signals, standardize="zscore_sample", high_pass=0.01, t_r=T_R)
    check_clean_parity(np.asfortranarray(signals), standardize="psc", t_r=T_R)


@pytest.mark.parametrize("t_r", [2, 2.0, np.int32(2), np.float32(2.5), np.float64(1.5)])
def test_clean_parity_t_r_types(signals64, t_r):
    check_clean_parity(signals64.astype(np.float32), low_pass=0.1, high_pass=0.01, t_r=t_r)


def test_clean_parity_nyquist_and_ensure_finite(signals64):
    signals = signals64.astype(np.float32)
    # low_pass >= Nyquist (0.25 Hz): warning, lowered just below Nyquist
    out = check_clean_parity(signals, low_pass=0.3, t_r=T_R)
    assert np.isfinite(out).all()
    # negative high_pass: warning, set to eps
    check_clean_parity(signals, high_pass=-0.1, low_pass=0.1, t_r=T_R)
    # both clipped to the same value: warning and unfiltered
    check_clean_parity(signals, high_pass=0.3, low_pass=0.4, t_r=T_R)
    # filter=False with a cut-off: warning, no filtering
    check_clean_parity(signals, filter=False, low_pass=0.1, t_r=T_R)
    # cosine + low_pass: warning, low_pass ignored
    check_clean_parity(signals, filter="cosine", high_pass=0.01, low_pass=0.1, t_r=T_R)
    # NaN/inf set to 0 with ensure_finite, the input is untouched
    dirty = signals.copy()
    dirty[3, 2], dirty[10, 5] = np.nan, np.inf
    before = dirty.copy()
    check_clean_parity(dirty, ensure_finite=True, t_r=T_R, low_pass=0.1)
    np.testing.assert_array_equal(dirty, before)


def test_clean_parity_runs(signals64, confounds_df):
    runs = np.repeat([0, 1], N_SAMPLES // 2)
    confounds = confounds_df.to_numpy()
    out = check_clean_parity(
        signals64.astype(np.float32), runs=runs, confounds=confounds, high_pass=0.01, t_r=T_R
    )
    # each run cleaned independently
    half = N_SAMPLES // 2
    first = clean(
        signals64[:half].astype(np.float32), confounds=confounds[:half], high_pass=0.01, t_r=T_R
    )
    np.testing.assert_array_equal(out[:half], first)
    # with per-run sample masks (indices and booleans), no filter: plain censoring
    masks = [np.delete(np.arange(half), [6, 7, 8]), np.delete(np.arange(half), [10, 11])]
    out_idx = check_clean_parity(signals64, runs=runs, sample_mask=masks, confounds=confounds)
    booleans = [np.isin(np.arange(half), m) for m in masks]
    out_bool = check_clean_parity(signals64, runs=runs, sample_mask=booleans, confounds=confounds)
    assert out_idx.shape == (N_SAMPLES - 5, signals64.shape[1])
    np.testing.assert_array_equal(out_idx, out_bool)


# ------------------------------------------------------------------------------------------
# clean: sample masks


SCRUB_MIDDLE = np.delete(np.arange(N_SAMPLES), [2, 3, 6, 7, 8, 30, 31, 32, 77])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("as_bool", [False, True])
@pytest.mark.parametrize("filter_name", ["none", "cosine"])
def test_sample_mask_parity_without_butterworth(
    signals64, confounds_df, dtype, as_bool, filter_name
):
    # Without Butterworth both modes are plain row selection, wherever the censored rows are.
    mask = SCRUB_MIDDLE
    if as_bool:
        mask = np.isin(np.arange(N_SAMPLES), SCRUB_MIDDLE)
    for mode in ("correct", "nilearn"):
        ref, _ = run_recording(
            nsignal.clean,
            signals64.astype(dtype),
            sample_mask=mask.copy(),
            confounds=confounds_df,
            t_r=T_R,
            **FILTERS[filter_name],
        )
        ours = clean(
            signals64.astype(dtype),
            sample_mask=mask,
            confounds=confounds_df,
            t_r=T_R,
            sample_mask_mode=mode,
            **FILTERS[filter_name],
        )
        assert_parity(ours, ref)
        assert ours.shape[0] == SCRUB_MIDDLE.size


def test_sample_mask_unsorted_and_repeated_indices_without_filter(signals64):
    mask = np.array([5, 3, 3, 40, 10])
    check_clean_parity(signals64, sample_mask=mask, detrend=False, standardize=None)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("as_bool", [False, True])
@pytest.mark.parametrize("extrapolate", [False, True])
@pytest.mark.parametrize("filter_name", ["low", "high", "band"])
@pytest.mark.parametrize("mode", ["correct", "nilearn"])
def test_sample_mask_parity_butterworth_leading_censoring(
    signals64, confounds_df, dtype, as_bool, extrapolate, filter_name, mode
):
    # Censoring only leading non-steady-state volumes: the configuration where nilearn is right.
    kept = np.arange(4, N_SAMPLES)
    mask = np.isin(np.arange(N_SAMPLES), kept) if as_bool else kept
    ref, ref_warnings = run_recording(
        nsignal.clean,
        signals64.astype(dtype),
        sample_mask=mask.copy(),
        confounds=confounds_df,
        extrapolate=extrapolate,
        t_r=T_R,
        **FILTERS[filter_name],
    )
    ours, our_warnings = run_recording(
        clean,
        signals64.astype(dtype),
        sample_mask=mask,
        confounds=confounds_df,
        extrapolate=extrapolate,
        t_r=T_R,
        sample_mask_mode=mode,
        **FILTERS[filter_name],
    )
    assert_parity(ours, ref)
    assert our_warnings == ref_warnings
    assert ours.shape[0] == kept.size


def _spline_fill_reference(signals, kept, **clean_kwargs):
    """The intended result: interpolate *every* censored row inside [kept[0], kept[-1]] with
    a cubic spline, drop the rows outside, clean without a mask, keep the kept rows."""
    from scipy.interpolate import CubicSpline

    frame_times = np.arange(signals.shape[0]) * T_R
    filled = signals.copy()
    spline = CubicSpline(frame_times[kept], signals[kept], extrapolate=False)
    censored = np.setdiff1d(np.arange(kept[0], kept[-1] + 1), kept)
    filled[censored] = spline(frame_times[censored])
    trimmed = filled[kept[0] : kept[-1] + 1]
    cleaned = nsignal.clean(trimmed, **clean_kwargs)
    return cleaned[kept - kept[0]]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(
    "censored",
    [[0, 1, 78, 79], [10, 30, 69], [2, 3, 40, 41, 42, 76, 77, 79]],
    ids=["both-ends", "mirror-pairs", "mixed"],
)
def test_sample_mask_correct_mode_interpolates_every_censored_row(signals64, dtype, censored):
    signals = signals64.astype(dtype)
    kept = np.delete(np.arange(N_SAMPLES), censored).astype(np.int32)
    caller_mask = kept.copy()
    options = {"low_pass": 0.08, "t_r": T_R, "standardize": None}

    ours = clean(signals, sample_mask=caller_mask, **options)
    np.testing.assert_array_equal(caller_mask, kept)  # int32 caller array untouched
    expected = _spline_fill_reference(signals, kept, **options)
    assert ours.shape == (kept.size, signals.shape[1])
    assert_parity(ours, expected)

    # nilearn gets these wrong; "nilearn" mode reproduces it bit for bit
    nilearn_mask = kept.copy()
    ref = nsignal.clean(signals.copy(), sample_mask=nilearn_mask, **options)
    if kept[0] > 0:
        assert not np.array_equal(nilearn_mask, kept)  # nilearn shifted the int32 array in place
    compat = clean(signals, sample_mask=caller_mask, sample_mask_mode="nilearn", **options)
    np.testing.assert_array_equal(caller_mask, kept)
    assert compat.shape == ref.shape
    np.testing.assert_array_equal(compat, ref)
    assert ours.shape != ref.shape or not np.allclose(ours, ref)


def test_sample_mask_both_ends_returns_right_rows(signals64):
    # n=80, censoring [0, 1, 78, 79]: the kept rows are 2..77. nilearn returns the filtered rows
    # 0..75 (shifted by 2 without dropping the leading rows); correct mode returns 2..77.
    signals = signals64.astype(np.float32)
    kept = np.arange(2, 78)
    options = {"low_pass": 0.08, "t_r": T_R, "detrend": False, "standardize": None}
    ours = clean(signals, sample_mask=kept, **options)
    filtered_kept_range = nsignal.clean(signals[2:78].copy(), **options)
    np.testing.assert_array_equal(ours, filtered_kept_range)
    ref = nsignal.clean(signals.copy(), sample_mask=kept.copy(), **options)
    unmasked = nsignal.clean(signals.copy(), **options)
    # nilearn: rows 0..75 of the series filtered over all 80 rows (only ulp-level changes from
    # the kept-row overwrite)
    np.testing.assert_allclose(ref, unmasked[:76], rtol=1e-5, atol=1e-3)
    np.testing.assert_array_equal(
        clean(signals, sample_mask=kept, sample_mask_mode="nilearn", **options), ref
    )


def test_sample_mask_extrapolate_keeps_length(signals64):
    kept = np.delete(np.arange(N_SAMPLES), [0, 1, 2, 40, 79])
    for mode in ("correct", "nilearn"):
        out = clean(
            signals64,
            sample_mask=kept,
            low_pass=0.08,
            t_r=T_R,
            extrapolate=True,
            sample_mask_mode=mode,
        )
        assert out.shape[0] == kept.size


@pytest.mark.parametrize("mask_dtype", [np.int32, np.int64, bool])
def test_sample_mask_caller_array_never_modified(signals64, mask_dtype):
    kept = np.arange(5, N_SAMPLES)
    mask = np.isin(np.arange(N_SAMPLES), kept) if mask_dtype is bool else kept.astype(mask_dtype)
    before = mask.copy()
    for mode in ("correct", "nilearn"):
        clean(signals64, sample_mask=mask, low_pass=0.08, t_r=T_R, sample_mask_mode=mode)
        clean(signals64, sample_mask=[mask], low_pass=0.08, t_r=T_R, sample_mask_mode=mode)
        np.testing.assert_array_equal(mask, before)
        assert mask.dtype == before.dtype


def test_sample_mask_unsorted_with_butterworth_is_an_error(signals64):
    with pytest.raises(ValueError, match="sample_mask.*strictly increasing"):
        clean(
            signals64,
            sample_mask=np.array([5, 4, 6, 7] + list(range(8, 80))),
            low_pass=0.08,
            t_r=T_R,
        )


# ------------------------------------------------------------------------------------------
# clean: errors and messages (same type and text as nilearn)


def _same_error(exc_type, match, **kwargs):
    signals = kwargs.pop("signals")
    with pytest.raises(exc_type, match=match):
        nsignal.clean(signals.copy(), **kwargs)
    with pytest.raises(exc_type, match=match):
        clean(signals, **kwargs)


@pytest.mark.parametrize(
    ("exc_type", "match", "kwargs"),
    [
        (ValueError, r"Confound signal has an incorrect length", {"confounds": np.ones((79, 2))}),
        (ValueError, r"Confound signal has an incorrect length", {"confounds": np.ones(81)}),
        (ValueError, "incorrect number of dimensions: 3", {"confounds": np.ones((80, 2, 2))}),
        (TypeError, "'confounds' must be of type", {"confounds": 1}),
        (TypeError, "confound has an unhandled type", {"confounds": [None]}),
        (IndexError, "invalid index", {"sample_mask": np.array([1, 2, 999])}),
        (IndexError, "more timepoints than the current run", {"sample_mask": np.arange(81) % 80}),
        (ValueError, "should not contain negative values", {"sample_mask": np.array([-1, 2])}),
        (TypeError, "'sample_masks' must be of type", {"sample_mask": "not_supported"}),
        (
            ValueError,
            r"Number of sample_mask \(2\) not matching number of runs \(1\)",
            {"sample_mask": [np.arange(10), np.arange(10)]},
        ),
        (TypeError, "not iterable", {"sample_mask": [1, 2, 4]}),
        (
            ValueError,
            r"Repetition time \(t_r\) must be specified for butterworth",
            {"low_pass": 0.1, "t_r": None},
        ),
        (
            ValueError,
            r"Repetition time \(t_r\) and low cutoff frequency \(high_pass\) must be",
            {"filter": "cosine", "t_r": None, "high_pass": 0.01},
        ),
        (ValueError, "Filter method foo not implemented", {"filter": "foo"}),
        (
            ValueError,
            r"High pass cutoff frequency \(0.1\) is greater than or equal to low pass",
            {"low_pass": 0.1, "high_pass": 0.1},
        ),
        (
            ValueError,
            r"'standardize' must be one of \('zscore_sample', 'psc', True, False, None\)"
            r"\.\n'zscore' was provided",
            {"standardize": "zscore"},
        ),
        (
            ValueError,
            r"'standardize' must be one of \['psc', 'zscore_sample'\]",
            {"standardize": 1},
        ),
        (ValueError, "'ensure_finite' must be one of", {"ensure_finite": None}),
        (TypeError, "'detrend' must be of type", {"detrend": 1}),
        (TypeError, "'t_r' must be of type", {"t_r": "2"}),
        (TypeError, "'low_pass' must be of type", {"low_pass": True}),
        (TypeError, "'standardize_confounds' must be of type", {"standardize_confounds": None}),
        (ValueError, r"The length of the run vector \(3\)", {"runs": np.zeros(3)}),
    ],
)
def test_clean_errors_match_nilearn(signals64, exc_type, match, kwargs):
    _same_error(exc_type, match, signals=signals64, **kwargs)


def test_clean_too_short_for_the_filter(signals64):
    _same_error(
        ValueError,
        "The length of the input vector x must be greater than padlen",
        signals=signals64[:15],
        low_pass=0.1,
    )
    # 15 kept volumes cannot be filtered either; nilearn filters 65 rows (50 of them censored
    # or NaN-dropped mirrors) and returns the wrong rows instead of failing.
    with pytest.raises(ValueError, match="must be greater than padlen"):
        clean(signals64, low_pass=0.1, sample_mask=np.arange(60, 75))


def test_clean_errors_where_we_differ(signals64, confounds_df):
    # index == n_samples: nilearn lets numpy fail; we name the mask
    with pytest.raises(IndexError, match=r"sample_mask 1 of 1 contains invalid index \[80\]"):
        clean(signals64, sample_mask=np.array([1, 80]))
    # empty mask: nilearn fails in numpy ("zero-size array"), we raise AllVolumesRemovedError
    for empty in (np.array([], dtype=int), np.zeros(N_SAMPLES, dtype=bool)):
        with pytest.raises(AllVolumesRemovedError, match="The size of the sample mask is 0"):
            clean(signals64, sample_mask=empty)
    # boolean mask of the wrong length (nilearn reads its True entries as indices)
    with pytest.raises(ValueError, match="boolean sample_mask 1 of 1 has 79 entries"):
        clean(signals64, sample_mask=np.ones(N_SAMPLES - 1, dtype=bool))
    # NaN in confounds: refused up front, naming the columns (nilearn fails in scipy's QR)
    raw = fmriprep_confounds(np.random.default_rng(0), N_SAMPLES, fill=False)
    with pytest.raises(ValueError, match=r"column 6 \('trans_x_derivative1'\)"):
        clean(signals64, confounds=raw)
    fd_message = r"'framewise_displacement'\): 1 value\(s\) at row\(s\) \[0\]"
    with pytest.raises(ValueError, match=fd_message):
        clean(signals64, confounds=raw)
    bad = confounds_df.to_numpy().copy()
    bad[5, 2] = np.inf
    with pytest.raises(ValueError, match=r"column 2: 1 value\(s\) at row\(s\) \[5\]"):
        clean(signals64, confounds=bad)
    with pytest.raises(ValueError, match="sample_mask_mode"):
        clean(signals64, sample_mask_mode="fast")
    with pytest.raises(ValueError, match="2D array"):
        clean(signals64[:, 0])


def test_clean_does_not_modify_input(signals64, confounds_df):
    signals = signals64.astype(np.float32)
    before, conf_before = signals.copy(), confounds_df.copy()
    clean(
        signals,
        confounds=confounds_df,
        low_pass=0.08,
        high_pass=0.01,
        t_r=T_R,
        sample_mask=np.arange(3, N_SAMPLES),
    )
    np.testing.assert_array_equal(signals, before)
    pd.testing.assert_frame_equal(confounds_df, conf_before)


def test_clean_removes_confounds_and_trends():
    rng = np.random.default_rng(0)
    confounds = rng.normal(size=(100, 3))
    noise = confounds @ rng.normal(size=(3, 8))
    signals = rng.normal(size=(100, 8)) + noise + np.linspace(0, 10, 100)[:, None]
    out = clean(signals, confounds=confounds, standardize=None, filter=False)
    # orthogonal to the (centred) confounds
    centred = confounds - confounds.mean(0)
    assert np.abs(centred.T @ out).max() < 1000 * np.finfo(float).eps * np.abs(signals).sum()
    # a constant confound changes nothing
    with_const = clean(
        signals,
        confounds=np.hstack([confounds, np.ones((100, 1))]),
        standardize=None,
        filter=False,
    )
    np.testing.assert_allclose(with_const, out, atol=1e-10)
    # linear trend removed
    trend = np.linspace(-1, 1, 100)[:, None] * np.arange(1, 9)
    np.testing.assert_allclose(clean(trend, standardize=None), 0, atol=1e-12)


def test_clean_noop_and_deprecations(signals64):
    out, messages = run_recording(clean, signals64, detrend=False, standardize=None, filter=False)
    np.testing.assert_array_equal(out, signals64)
    assert messages == set()
    _, messages = run_recording(clean, signals64, standardize=False)
    assert [m for c, m in messages if c == "FutureWarning"][0].startswith(
        "boolean values for 'standardize' will be deprecated in nilearn 0.15.0."
    )


# ------------------------------------------------------------------------------------------
# building blocks


def test_even_slices_matches_sklearn():
    from sklearn.utils import gen_even_slices

    for n, packs in [(10, 3), (10, 10), (501, 10), (3, 10), (1, 4)]:
        assert list(even_slices(n, packs)) == list(gen_even_slices(n, packs))


@pytest.mark.parametrize("layout", ["C", "F"])
@pytest.mark.parametrize("n_features", [7, 523])
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int64, np.int16])
def test_detrend_matches_nilearn(layout, n_features, dtype):
    rng = np.random.default_rng(1)
    data = rng.normal(50, 10, (40, n_features)) + np.arange(40)[:, None]
    data = np.asarray(data.astype(dtype), order=layout)
    before = data.copy()
    from nilearn.signal import _detrend

    for kind in ("linear", "constant"):
        ref = _detrend(data, type=kind)
        ours = detrend(data, kind=kind)
        assert ours.dtype == ref.dtype
        assert ours.flags.f_contiguous == ref.flags.f_contiguous
        np.testing.assert_array_equal(ours, ref)
    np.testing.assert_array_equal(data, before)
    if data.dtype == np.float64:
        np.testing.assert_almost_equal(
            detrend(data), scipy.signal.detrend(data, axis=0), decimal=10
        )
        inplace = data.copy()
        assert detrend(inplace, inplace=True) is inplace


def test_detrend_length_one_and_mean_of_squares():
    one = np.arange(5.0)[np.newaxis]
    with pytest.warns(UserWarning, match="Detrending of 3D signal"):
        np.testing.assert_array_equal(detrend(one), one)
    rng = np.random.default_rng(2)
    data = rng.normal(size=(30, 501)).astype(np.float32)
    np.testing.assert_array_equal(mean_of_squares(data), nsignal._mean_of_squares(data))
    np.testing.assert_allclose(mean_of_squares(data), (data.astype(float) ** 2).mean(0), rtol=1e-5)


def test_standardize_signal():
    rng = np.random.default_rng(3)
    data = rng.normal(10, 2, (50, 4))
    z = standardize_signal(data)
    np.testing.assert_allclose(z.mean(0), 0, atol=1e-12)
    np.testing.assert_allclose(z.std(0, ddof=1), 1)
    psc = standardize_signal(data, standardize="psc")
    for k in range(4):
        assert np.corrcoef(z[:, k], psc[:, k])[0, 1] == pytest.approx(1)
    np.testing.assert_array_equal(standardize_signal(data, standardize=True), z)
    np.testing.assert_array_equal(standardize_signal(data, standardize=False), data)
    with pytest.raises(ValueError, match="'standardize' must be one of"):
        standardize_signal(data, standardize="foo")
    zero_mean = data.copy()
    zero_mean[:, 1] = np.tile([1.0, -1.0], 25)
    with pytest.warns(UserWarning, match="psc standardization strategy is meaningless"):
        out = standardize_signal(zero_mean, standardize="psc")
    np.testing.assert_array_equal(out[:, 1], 0)
    np.testing.assert_array_equal(out[:, [0, 2, 3]], psc[:, [0, 2, 3]])
    with pytest.warns(UserWarning, match="Standardization of 3D signal"):
        np.testing.assert_array_equal(standardize_signal(data[:1]), data[:1])


def test_butterworth():
    rng = np.random.default_rng(4)
    data = rng.normal(size=(100, 5))
    kept = data.copy()
    out = butterworth(data, 1.0, low_pass=0.2, copy=True)
    np.testing.assert_array_equal(data, kept)
    inplace = butterworth(data, 1.0, low_pass=0.2)
    assert inplace is data
    np.testing.assert_array_equal(inplace, out)
    np.testing.assert_array_equal(butterworth(kept[:, 0].copy(), 1.0, low_pass=0.2), out[:, 0])
    # low_pass at and above Nyquist give the same result (both clipped)
    with pytest.warns(UserWarning, match="too high"):
        at = butterworth(kept.copy(), 100, low_pass=50)
    with pytest.warns(UserWarning, match="too high"):
        above = butterworth(kept.copy(), 100, low_pass=80)
    np.testing.assert_array_equal(at, above)
    # float32: padding in float32, filtering in float64 (trap 23), same as nilearn
    data32 = kept.astype(np.float32)
    ref = nsignal.butterworth(data32.copy(), 0.5, low_pass=0.1, high_pass=0.01)
    np.testing.assert_array_equal(
        butterworth(data32.copy(), 0.5, low_pass=0.1, high_pass=0.01), ref
    )
    assert ref.dtype == np.float32
    with pytest.raises(ValueError, match="High pass cutoff frequency"):
        butterworth(kept, 1.0, low_pass=0.1, high_pass=0.2)


def test_create_cosine_drift_matches_nilearn():
    for n, t_r, high_pass in [(80, 2.0, 0.01), (57, 0.72, 0.008), (10, 2.0, 0.5)]:
        frame_times = np.arange(n) * t_r
        ref, ref_w = run_recording(nsignal.create_cosine_drift, high_pass, frame_times)
        ours, our_w = run_recording(create_cosine_drift, high_pass, frame_times)
        np.testing.assert_array_equal(ours, ref)
        assert our_w == ref_w
