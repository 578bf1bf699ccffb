"""Tests for bids_regionx.core.confounds (loading confounds, high-variance confounds).

nilearn 0.14 is the oracle: ``nilearn.signal.sanitize_confounds`` for loading,
``nilearn.signal.high_variance_confounds`` / ``nilearn.image.high_variance_confounds`` for the
CompCor-like confounds (compared bit for bit).
"""

from __future__ import annotations

from pathlib import Path

import nilearn.signal as nsignal
import numpy as np
import pandas as pd
import pytest

from bids_regionx.core.confounds import (
    high_variance_confounds,
    load_confounds,
)

N = 40
MOTION = ["trans_x", "trans_y", "trans_z", "rot_x", "rot_y", "rot_z"]


def fmriprep_table(rng, n_samples=N, *, fill=True) -> pd.DataFrame:
    """Motion (6) + derivatives, csf, white_matter, global_signal, framewise_displacement."""
    motion = np.cumsum(rng.normal(0, 0.03, (n_samples, 6)), axis=0)
    deriv = np.vstack([np.full((1, 6), np.nan), np.diff(motion, axis=0)])
    table = pd.DataFrame(motion, columns=MOTION)
    for k, name in enumerate(MOTION):
        table[f"{name}_derivative1"] = deriv[:, k]
    for name, level in (("csf", 800), ("white_matter", 600), ("global_signal", 500)):
        table[name] = level + rng.normal(0, 3, n_samples)
    table["framewise_displacement"] = np.abs(deriv[:, :3]).sum(1) + 50 * np.abs(deriv[:, 3:]).sum(
        1
    )
    return table.fillna(0.0) if fill else table


@pytest.fixture(scope="module")
def table():
    return fmriprep_table(np.random.default_rng(0))


def assert_same_array(ours, ref):
    assert ours.shape == ref.shape
    assert ours.dtype == ref.dtype
    # the layout feeds later float32 reductions: it must match too
    assert ours.flags.f_contiguous == ref.flags.f_contiguous
    assert ours.flags.c_contiguous == ref.flags.c_contiguous
    np.testing.assert_array_equal(ours, ref)


# ------------------------------------------------------------------------------------------
# load_confounds


def _sources(table: pd.DataFrame, tmp_path: Path):
    values = table.to_numpy()
    tsv = tmp_path / "desc-confounds_timeseries.tsv"
    table.to_csv(tsv, sep="\t", index=False)
    csv_index = tmp_path / "with_index.csv"
    table.to_csv(csv_index)
    semicolon = tmp_path / "semicolon.csv"
    table.to_csv(semicolon, sep=";", index=False)
    plain = tmp_path / "plain.txt"
    np.savetxt(plain, values[:, :4])
    return {
        "array-C": np.ascontiguousarray(values),
        "array-F": np.asfortranarray(values),
        "array-1d": values[:, 0].copy(),
        "array-int32": np.arange(N * 2, dtype=np.int32).reshape(N, 2),
        "array-bool": np.arange(N)[:, None] % 3 == 0,
        "dataframe": table,
        "dataframe-int": pd.DataFrame({"a": np.arange(N), "b": np.arange(N) * 2}),
        "tsv-header": str(tsv),
        "csv-index": str(csv_index),
        "semicolon": str(semicolon),
        "txt-no-header": str(plain),
        "path": tsv,
        "list": [table[MOTION], values[:, -1], str(plain)],
        "tuple": (values[:, :2], table[["csf"]]),
    }


SOURCE_NAMES = [
    "array-C",
    "array-F",
    "array-1d",
    "array-int32",
    "array-bool",
    "dataframe",
    "dataframe-int",
    "tsv-header",
    "csv-index",
    "semicolon",
    "txt-no-header",
    "path",
    "list",
    "tuple",
]


@pytest.mark.parametrize("name", SOURCE_NAMES)
def test_load_confounds_matches_nilearn(table, tmp_path, name):
    source = _sources(table, tmp_path)[name]
    ref_input = str(source) if isinstance(source, Path) else source  # clean stringifies it
    ref = nsignal.sanitize_confounds(N, ref_input)
    assert_same_array(load_confounds(source, N), ref)


def test_load_confounds_extra_cases(table, tmp_path):
    assert load_confounds(None, N) is None
    # the index column written by DataFrame.to_csv is kept (as nilearn does)
    csv_index = tmp_path / "i.csv"
    table.to_csv(csv_index)
    loaded = load_confounds(str(csv_index), N)
    assert loaded.shape == (N, table.shape[1] + 1)
    np.testing.assert_array_equal(loaded[:, 0], np.arange(N))
    # a single-column file becomes one column (nilearn crashes with an IndexError)
    single = tmp_path / "single.txt"
    np.savetxt(single, table["csf"].to_numpy())
    with pytest.raises(IndexError):
        nsignal.clean(np.ones((N, 2)), confounds=str(single))
    np.testing.assert_array_equal(load_confounds(single, N), table[["csf"]].to_numpy())
    # the input array is never returned (clean modifies confounds in place)
    values = table.to_numpy()
    assert load_confounds(values, N) is not values


@pytest.mark.parametrize(
    ("confounds", "exc_type", "match"),
    [
        (
            np.ones((N - 1, 2)),
            ValueError,
            r"Confound signal has an incorrect length. Signal length: 40; confound length: 39\.",
        ),
        (np.ones(N + 1), ValueError, "Confound signal has an incorrect length"),
        (pd.DataFrame(np.ones((3, 2))), ValueError, "confound length: 3"),
        (
            np.ones((N, 2, 2)),
            ValueError,
            "confound array has an incorrect number of dimensions: 3",
        ),
        (
            1,
            TypeError,
            r"'confounds' must be of type\(s\): '<class 'list'>, <class 'tuple'>, "
            r"<class 'str'>, <class 'numpy.ndarray'>, <class 'pandas.DataFrame'>'",
        ),
        ([np.ones((N, 1)), None], TypeError, "confound has an unhandled type: <class 'NoneType'>"),
        ({"a": 1}, TypeError, "'confounds' must be of type"),
        ("/nonexistent/confounds.tsv", FileNotFoundError, "confounds.tsv"),
    ],
)
def test_load_confounds_errors_match_nilearn(confounds, exc_type, match):
    with pytest.raises(exc_type, match=match):
        nsignal.sanitize_confounds(N, confounds)
    with pytest.raises(exc_type, match=match):
        load_confounds(confounds, N)


def test_load_confounds_wrong_length_file(table, tmp_path):
    path = tmp_path / "short.tsv"
    table.iloc[:-2].to_csv(path, sep="\t", index=False)
    match = "Confound signal has an incorrect length. \nSignal length: 40; confound length: 38"
    for loader in (nsignal.sanitize_confounds, lambda n, c: load_confounds(c, n)):
        with pytest.raises(ValueError, match=match):
            loader(N, str(path))


def test_load_confounds_refuses_non_finite_values_naming_columns(tmp_path):
    raw = fmriprep_table(np.random.default_rng(1), fill=False)  # fMRIPrep's n/a first row
    # nilearn fails inside scipy's QR without saying which confound is at fault
    signals = np.random.default_rng(2).normal(size=(N, 3))
    with pytest.raises(ValueError, match="array must not contain infs or NaNs"):
        nsignal.clean(signals, confounds=raw)

    with pytest.raises(
        ValueError,
        match=r"column 6 \('trans_x_derivative1'\): 1 value\(s\) "
        r"at row\(s\) \[0\]",
    ):
        load_confounds(raw, N)
    # from an fMRIPrep TSV with 'n/a': names from the header
    tsv = tmp_path / "sub-01_desc-confounds_timeseries.tsv"
    raw.to_csv(tsv, sep="\t", index=False, na_rep="n/a")
    with pytest.raises(ValueError, match=r"'framewise_displacement'\): 1 value\(s\)"):
        load_confounds(tsv, N)
    # arrays: the column index counts across the stacked list
    values = raw.fillna(0.0).to_numpy()
    bad = values[:, :3].copy()
    bad[[4, 5, 6, 7, 8, 9, 10], 1] = np.inf
    with pytest.raises(
        ValueError,
        match=r"column 7: 7 value\(s\) at row\(s\) \[4, 5, 6, 7, 8, "
        r"\.\.\.\]",
    ):
        load_confounds([values[:, :6], bad], N)
    with pytest.raises(ValueError, match=r"NaN or inf"):
        load_confounds(raw["framewise_displacement"].to_numpy(), N)


# ------------------------------------------------------------------------------------------
# high_variance_confounds


@pytest.mark.parametrize("layout", ["C", "F"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n_features", [300, 1203])
def test_high_variance_confounds_matches_nilearn(layout, dtype, n_features):
    rng = np.random.default_rng(n_features)
    series = rng.normal(0, 1, (N, n_features)) * rng.uniform(0.5, 5, n_features)
    series += np.linspace(0, 3, N)[:, None] * rng.normal(size=n_features)
    series = np.asarray(series.astype(dtype), order=layout)
    before = series.copy()
    for options in (
        {},
        {"detrend": False},
        {"n_confounds": 3, "percentile": 10.0},
    ):
        ref = nsignal.high_variance_confounds(series, **options)
        ours = high_variance_confounds(series, **options)
        assert_same_array(ours, ref)
    np.testing.assert_array_equal(series, before)


def test_high_variance_confounds_properties():
    rng = np.random.default_rng(5)
    series = rng.normal(size=(N, 800)) * rng.uniform(0.5, 5, 800)
    out = high_variance_confounds(series)
    assert out.shape == (N, 5)
    # scaling invariant, and layout-insensitive up to rounding
    np.testing.assert_allclose(
        np.abs(high_variance_confounds(series * 3)), np.abs(out), atol=1e-10
    )
    np.testing.assert_allclose(
        np.abs(high_variance_confounds(np.asfortranarray(series))), np.abs(out), atol=1e-10
    )
    # a NaN column is ignored by the percentile and never selected (NaN rows then propagate
    # only if selected)
    with_nan = series.copy()
    with_nan[:, 0] = np.nan
    ref = nsignal.high_variance_confounds(with_nan)
    assert_same_array(high_variance_confounds(with_nan), ref)
    assert np.isfinite(ref).all()
    # invariant to an added trend when detrending (up to sign)
    trended = series + np.linspace(0, 50, N)[:, None]
    np.testing.assert_allclose(np.abs(high_variance_confounds(trended)), np.abs(out), atol=1e-8)
    with pytest.raises(TypeError, match="'detrend' must be of type"):
        high_variance_confounds(series, detrend=1)
