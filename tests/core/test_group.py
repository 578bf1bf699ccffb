"""Group aggregation maths: edge-wise means against explicit loops, tangent against nilearn."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from scipy import linalg
from sklearn.covariance import EmpiricalCovariance, LedoitWolf

from bids_regionx.core.group import group_mean, group_tangent, unit_labels

nilearn_connectome = pytest.importorskip("nilearn.connectome")

ESTIMATORS = {
    "empirical": EmpiricalCovariance,
    "ledoit_wolf": lambda: LedoitWolf(store_precision=False),
}


def _series(n_volumes, n_regions, seed):
    rng = np.random.default_rng(seed)
    mixing = rng.standard_normal((n_regions, n_regions))
    return rng.standard_normal((n_volumes, n_regions)) @ mixing + rng.normal(50, 5, n_regions)


def _correlations(n_runs=5, n=4, seed=0):
    mats = []
    for k in range(n_runs):
        r = np.corrcoef(_series(30, n, seed + k), rowvar=False)
        np.fill_diagonal(r, 1.0)
        mats.append(r)
    mats = np.array(mats)
    mats[1, 2, :] = mats[1, :, 2] = np.nan  # region 2 set to n/a in run 1
    mats[3, 0, 3] = mats[3, 3, 0] = 1.0  # a perfect correlation (clipped before arctanh)
    return mats


def _loop_mean(mats, *, fisher, groups=None):
    """Edge by edge, with plain Python: the reference the vectorised code must match."""
    n = mats.shape[1]
    labels = list(range(len(mats))) if groups is None else list(groups)
    units = list(dict.fromkeys(labels))
    mean = np.full((n, n), np.nan)
    count = np.zeros((n, n), dtype=int)
    for i in range(n):
        for j in range(n):
            per_unit = []
            for unit in units:
                values = [
                    float(mats[k, i, j]) for k in range(len(mats))
                    if labels[k] == unit and not np.isnan(mats[k, i, j])
                ]
                if fisher:
                    values = [np.arctanh(min(max(v, -(1 - 1e-7)), 1 - 1e-7)) for v in values]
                if values:
                    per_unit.append(sum(values) / len(values))
            count[i, j] = len(per_unit)
            if per_unit:
                mean[i, j] = sum(per_unit) / len(per_unit)
    return mean, count


@pytest.mark.parametrize("groups", [None, ["a", "a", "b", "c", "c"]])
def test_fisher_mean_equals_loop(groups):
    mats = _correlations()
    result = group_mean(mats, transform="fisher_z", groups=groups)
    z, count = _loop_mean(mats, fisher=True, groups=groups)
    off = ~np.eye(4, dtype=bool)
    np.testing.assert_allclose(result.fisherz[off], z[off], rtol=1e-13)
    assert np.isnan(np.diag(result.fisherz)).all()
    np.testing.assert_allclose(result.mean[off], np.tanh(z[off]), rtol=1e-13)
    np.testing.assert_array_equal(np.diag(result.mean), 1.0)
    np.testing.assert_array_equal(result.count, count)
    # region 2 is missing from run 1 only
    expected_n = 5 if groups is None else 3
    assert result.count[0, 1] == expected_n
    assert result.count[2, 0] == (4 if groups is None else 3)


def test_plain_mean_and_all_missing_region():
    mats = _correlations() * 3.0
    mats[:, 1, :] = mats[:, :, 1] = np.nan  # region 1 missing everywhere
    result = group_mean(mats, transform="none")
    mean, count = _loop_mean(mats, fisher=False)
    np.testing.assert_allclose(result.mean, mean, rtol=1e-13, equal_nan=True)
    np.testing.assert_array_equal(result.count, count)
    assert result.fisherz is None
    assert np.isnan(result.mean[1]).all() and (result.count[1] == 0).all()


def test_fisher_mean_of_absent_region_has_nan_diagonal():
    mats = _correlations()
    mats[:, 3, :] = mats[:, :, 3] = np.nan
    result = group_mean(mats, transform="fisher_z")
    assert np.isnan(result.mean[3, 3]) and result.mean[2, 2] == 1.0


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"matrices": [], "transform": "none"}, "at least one"),
        ({"matrices": [np.eye(3), np.eye(4)], "transform": "none"}, "different shapes"),
        ({"matrices": [np.ones((2, 3))], "transform": "none"}, "square"),
        ({"matrices": [np.eye(3)], "transform": "log"}, "transform"),
        ({"matrices": [np.eye(3)] * 2, "transform": "none", "groups": ["a"]}, "one label"),
        ({"matrices": [np.eye(3) * 2], "transform": "fisher_z"}, r"\[-1, 1\]"),
    ],
)
def test_group_mean_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        group_mean(**kwargs)


def test_unit_labels_keep_first_appearance():
    assert unit_labels(None, 3) == [0, 1, 2]
    assert unit_labels(["b", "a", "b"], 3) == ["b", "a"]


# ------------------------------------------------------------------------------ tangent
def _group(n=4, regions=5):
    return [_series(40 + 5 * s, regions, 100 + s) for s in range(n)]


@pytest.mark.filterwarnings("ignore:Maximum number of iterations")
@pytest.mark.parametrize("estimator", sorted(ESTIMATORS))
def test_tangent_runs_match_nilearn(estimator):
    series = _group()
    measure = nilearn_connectome.ConnectivityMeasure(
        kind="tangent", cov_estimator=ESTIMATORS[estimator]()
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = measure.fit_transform(series)
    result = group_tangent(series, estimator=estimator)
    np.testing.assert_allclose(result.connectomes, expected, atol=1e-10 * np.abs(expected).max())
    np.testing.assert_allclose(result.reference, measure.mean_, rtol=1e-10)
    np.testing.assert_allclose(result.whitening, measure.whitening_, rtol=1e-9)
    assert (result.count == 4).all() and result.units == [0, 1, 2, 3]


def test_tangent_subjects_are_geometric_means_of_their_runs():
    series = _group(n=5)
    groups = ["a", "a", "b", "c", "c"]
    result = group_tangent(series, estimator="empirical", groups=groups)
    covs = [np.cov(ts, rowvar=False, bias=True) for ts in series]
    nilearn_cm = pytest.importorskip("nilearn.connectome.connectivity_matrices")
    subject_covs = [
        nilearn_cm._geometric_mean([covs[0], covs[1]], max_iter=30, tol=1e-7),
        covs[2],
        nilearn_cm._geometric_mean([covs[3], covs[4]], max_iter=30, tol=1e-7),
    ]
    reference = nilearn_cm._geometric_mean(subject_covs, max_iter=30, tol=1e-7)
    white = linalg.inv(linalg.sqrtm(reference).real)
    expected = [linalg.logm(white @ c @ white).real for c in subject_covs]
    assert result.units == ["a", "b", "c"]
    np.testing.assert_allclose(result.reference, reference, rtol=1e-9)
    np.testing.assert_allclose(result.connectomes, expected, atol=1e-9)
    assert (result.count == 3).all()


def test_tangent_one_run_per_subject_equals_run_units():
    series = _group()
    a = group_tangent(series, estimator="ledoit_wolf")
    b = group_tangent(series, estimator="ledoit_wolf", groups=["s1", "s2", "s3", "s4"])
    np.testing.assert_allclose(a.connectomes, b.connectomes, atol=1e-10)


def test_tangent_leaves_out_regions_missing_anywhere():
    series = _group()
    series[1][:, 3] = np.nan
    result = group_tangent(series, estimator="ledoit_wolf", groups=["x", "x", "y", "z"])
    assert np.isnan(result.connectomes[:, 3]).all() and np.isnan(result.reference[3]).all()
    assert (result.count[3] == 0).all() and result.count[0, 1] == 3


def test_tangent_errors():
    with pytest.raises(ValueError, match="at least 2"):
        group_tangent(_group(n=1))
    with pytest.raises(ValueError, match="estimator"):
        group_tangent(_group(), estimator="oas")
    few = [_series(4, 6, s) for s in range(3)]  # fewer volumes than regions: singular
    with pytest.raises(ValueError, match="positive definite"):
        group_tangent(few, estimator="empirical")
