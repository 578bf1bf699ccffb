"""The per-run step of the BIDS App: high-variance confounds from the streamed run."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest
from nilearn.image import high_variance_confounds

from bids_regionx.core.denoise import load_strategy, read_confounds
from bids_regionx.core.run_signals import CleaningOptions, region_signals_for_run
from bids_regionx.synthetic.dataset import make_preset


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return make_preset(tmp_path_factory.mktemp("tiny"), "tiny", seed=0)


def _run(tiny, *, min_time=0.0):
    run = tiny.runs[0]
    bold = nib.load(run.bold)
    maps = nib.load(tiny.maps)
    confounds, meta = read_confounds(run.confounds, run.confounds_json)
    t_r = json.loads(run.bold_json.read_text())["RepetitionTime"]
    options = CleaningOptions(t_r=t_r, high_variance_confounds=True, min_time=min_time)
    names = [f"r{i}" for i in range(maps.shape[3])]
    result = region_signals_for_run(bold, maps, names, confounds, load_strategy("simple"),
                                    options, confounds_meta=meta)
    return result, bold


def test_high_variance_columns_equal_nilearns_algorithm(tiny):
    result, bold = _run(tiny)
    got = result.design.filter(like="high_variance_").to_numpy()
    # nilearn's algorithm on a float64 copy: the streamed version works in float64 (nilearn's
    # float32 arithmetic on a float32 run is ~1e-6 off both).
    data = np.asanyarray(bold.dataobj, dtype=np.float64)
    expected = high_variance_confounds(nib.Nifti1Image(data, bold.affine))
    assert got.shape == expected.shape == (bold.shape[3], 5)
    # Eigenvector signs are LAPACK's choice: compare up to sign, column by column.
    for a, b in zip(got.T, expected.T, strict=True):
        sign = np.sign(a @ b)
        np.testing.assert_allclose(a, sign * b, atol=1e-10)
    assert list(result.design.columns[:5]) == [f"high_variance_{i:02d}" for i in range(5)]
    assert result.summary["n_regressors"] == result.design.shape[1]


def test_dropped_run_counts_high_variance_regressors_without_computing_them(tiny):
    result, _ = _run(tiny, min_time=1e6)
    assert result.dropped is not None and result.timeseries is None
    assert not any(c.startswith("high_variance_") for c in result.design.columns)
    assert result.summary["n_regressors"] == result.design.shape[1] + 5
