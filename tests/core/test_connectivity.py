"""Tests for bids_regionx.core.connectivity, with nilearn's ConnectivityMeasure as the oracle."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from sklearn.covariance import EmpiricalCovariance, LedoitWolf

from bids_regionx.core.connectivity import (
    KINDS,
    connectivity,
    fisher_z,
    geometric_mean,
    inverse_fisher_z,
    present_regions,
    tangent,
)

nilearn_connectome = pytest.importorskip("nilearn.connectome")

ESTIMATORS = {
    "empirical": EmpiricalCovariance,
    "ledoit_wolf": lambda: LedoitWolf(store_precision=False),
}


def _timeseries(n_volumes=80, n_regions=7, seed=0):
    """Correlated signals with offsets and unequal scales, as region time series are."""
    rng = np.random.default_rng(seed)
    mixing = rng.standard_normal((n_regions, n_regions))
    scales = rng.uniform(0.5, 20.0, n_regions)
    return rng.standard_normal((n_volumes, n_regions)) @ mixing * scales + rng.normal(
        100.0, 10.0, n_regions
    )


def _nilearn(ts_list, kind, estimator):
    measure = nilearn_connectome.ConnectivityMeasure(
        kind=kind, cov_estimator=ESTIMATORS[estimator](), standardize=True
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = measure.fit_transform(ts_list)
    return out, measure


@pytest.mark.parametrize("estimator", sorted(ESTIMATORS))
@pytest.mark.parametrize("kind", KINDS)
def test_matches_nilearn(kind, estimator):
    ts = _timeseries()
    expected, _ = _nilearn([ts], kind, estimator)
    ours = connectivity(ts, kind=kind, estimator=estimator)
    scale = np.abs(expected).max()
    np.testing.assert_allclose(ours, expected[0], rtol=0, atol=1e-12 * scale)
    np.testing.assert_array_equal(ours, ours.T)


@pytest.mark.parametrize("kind", ["correlation", "partial correlation"])
def test_unit_diagonal_is_exact(kind):
    ours = connectivity(_timeseries(seed=3), kind=kind, estimator="ledoit_wolf")
    assert np.all(np.diag(ours) == 1.0)


def test_empirical_correlation_is_pearson():
    ts = _timeseries(seed=1)
    np.testing.assert_allclose(
        connectivity(ts, kind="correlation"), np.corrcoef(ts, rowvar=False), atol=1e-14
    )


@pytest.mark.parametrize("estimator", sorted(ESTIMATORS))
@pytest.mark.parametrize("kind", KINDS)
def test_missing_regions_are_nan(kind, estimator):
    ts = _timeseries(n_regions=8, seed=2)
    ts[:, [1, 5]] = np.nan
    ts[:, 6] = 3.0  # no variance: treated as missing
    present = np.array([True, False, True, True, True, False, False, True])
    np.testing.assert_array_equal(present_regions(ts), present)

    ours = connectivity(ts, kind=kind, estimator=estimator)
    assert np.isnan(ours[~present]).all() and np.isnan(ours[:, ~present]).all()
    expected, _ = _nilearn([ts[:, present]], kind, estimator)
    block = ours[np.ix_(present, present)]
    np.testing.assert_allclose(block, expected[0], atol=1e-12 * np.abs(expected).max())


def test_all_regions_missing_gives_all_nan():
    ts = np.full((10, 3), np.nan)
    assert np.isnan(connectivity(ts, kind="correlation")).all()


def test_partially_missing_region_is_an_error():
    ts = _timeseries(n_regions=3)
    ts[4, 1] = np.nan
    with pytest.raises(ValueError, match=r"regions \[1\] have n/a in some volumes"):
        connectivity(ts, kind="correlation")


@pytest.mark.parametrize(
    ("shape", "kwargs", "match"),
    [
        ((1, 4), {"kind": "correlation"}, "at least 2 volumes"),
        ((5, 5), {"kind": "precision"}, "needs more volumes than regions"),
        ((5, 5), {"kind": "partial correlation"}, "needs more volumes than regions"),
        ((20, 3), {"kind": "tangent"}, "kind: expected one of"),
        ((20, 3), {"kind": "correlation", "estimator": "oas"}, "estimator: expected one of"),
        ((20,), {"kind": "correlation"}, "expected a 2D array"),
    ],
)
def test_errors(shape, kwargs, match):
    ts = np.random.default_rng(0).standard_normal(shape)
    with pytest.raises(ValueError, match=match):
        connectivity(ts, **kwargs)


def test_singular_covariance_is_reported():
    ts = _timeseries(n_regions=3)
    ts[:, 2] = ts[:, 0] + ts[:, 1]
    with pytest.raises(ValueError, match="singular"):
        connectivity(ts, kind="precision")


def test_ledoit_wolf_handles_few_volumes():
    ts = _timeseries(n_volumes=6, n_regions=10)
    expected, _ = _nilearn([ts], "partial correlation", "ledoit_wolf")
    ours = connectivity(ts, kind="partial correlation", estimator="ledoit_wolf")
    np.testing.assert_allclose(ours, expected[0], atol=1e-12)


# ------------------------------------------------------------------------------ Fisher z


def test_fisher_z_round_trip_and_diagonal():
    r = connectivity(_timeseries(seed=4), kind="correlation")
    z = fisher_z(r)
    assert np.isnan(np.diag(z)).all()
    off = ~np.eye(r.shape[0], dtype=bool)
    np.testing.assert_allclose(z[off], np.arctanh(r[off]), rtol=1e-15)
    np.testing.assert_allclose(inverse_fisher_z(z, diagonal=1.0), r, atol=1e-15)
    assert np.all(np.diag(inverse_fisher_z(z, diagonal=1.0)) == 1.0)


def test_fisher_z_clips_instead_of_inf():
    z = fisher_z(np.array([-1.0, 1.0, 0.5, np.nan]))
    assert np.isfinite(z[:3]).all() and np.isnan(z[3])
    np.testing.assert_allclose(z[:2], [-np.arctanh(1 - 1e-7), np.arctanh(1 - 1e-7)])
    assert fisher_z(np.eye(3), diagonal="clip")[0, 0] == pytest.approx(np.arctanh(1 - 1e-7))
    assert fisher_z(np.eye(3), diagonal=0.0)[1, 1] == 0.0


def test_fisher_z_stacks_and_nan_regions():
    r = np.stack([connectivity(_timeseries(seed=s), kind="correlation") for s in range(3)])
    r[1, 2, :] = r[1, :, 2] = np.nan
    z = fisher_z(r)
    assert z.shape == r.shape
    assert np.isnan(z[:, np.arange(7), np.arange(7)]).all()
    assert np.isnan(z[1, 2]).all() and np.isfinite(z[0, 2, :2]).all()


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"clip": 1.0}, "clip"), ({"diagonal": "one"}, "diagonal"), ({"r": 1.5}, r"\[-1, 1\]")],
)
def test_fisher_z_errors(kwargs, match):
    r = kwargs.pop("r", np.eye(2))
    with pytest.raises(ValueError, match=match):
        fisher_z(r, **kwargs)


# ------------------------------------------------------------------------------ tangent


def _group(n_subjects=5, n_regions=6):
    return [
        _timeseries(n_volumes=40 + 7 * s, n_regions=n_regions, seed=10 + s)
        for s in range(n_subjects)
    ]


@pytest.mark.parametrize("estimator", sorted(ESTIMATORS))
def test_tangent_matches_nilearn(estimator):
    group = _group()
    expected, measure = _nilearn(group, "tangent", estimator)
    result = tangent(group, estimator=estimator)
    scale = np.abs(expected).max()
    np.testing.assert_allclose(result.connectomes, expected, atol=1e-11 * scale)
    np.testing.assert_allclose(result.mean, measure.mean_, rtol=1e-11)
    np.testing.assert_allclose(result.whitening, measure.whitening_, rtol=1e-10)
    connectomes, mean, _ = result  # a NamedTuple unpacks
    assert connectomes.shape == (5, 6, 6) and mean.shape == (6, 6)


def test_tangent_from_covariances_equals_from_timeseries():
    group = _group()
    covs = [LedoitWolf().fit(ts).covariance_ for ts in group]
    a = tangent(group)
    b = tangent(np.array(covs), input_kind="covariance")
    np.testing.assert_allclose(a.connectomes, b.connectomes, atol=1e-13)


def test_tangent_drops_regions_missing_in_any_subject():
    group = _group()
    group[2][:, 4] = np.nan
    result = tangent(group)
    assert np.isnan(result.connectomes[:, 4]).all() and np.isnan(result.mean[:, 4]).all()
    keep = [0, 1, 2, 3, 5]
    expected, _ = _nilearn([ts[:, keep] for ts in group], "tangent", "ledoit_wolf")
    np.testing.assert_allclose(
        result.connectomes[np.ix_(range(5), keep, keep)], expected, atol=1e-11
    )


def test_tangent_errors():
    with pytest.raises(ValueError, match="at least 2 subjects"):
        tangent(_group(n_subjects=1))
    with pytest.raises(ValueError, match="different numbers of regions"):
        tangent([_timeseries(n_regions=3), _timeseries(n_regions=4)])
    with pytest.raises(ValueError, match="positive definite"):
        tangent(np.stack([np.eye(3), -np.eye(3)]), input_kind="covariance")


def test_geometric_mean_of_commuting_matrices():
    diags = np.array([[1.0, 4.0, 9.0], [4.0, 1.0, 1.0], [16.0, 2.0, 3.0]])
    gmean = geometric_mean([np.diag(d) for d in diags], max_iter=50)
    np.testing.assert_allclose(np.diag(gmean), np.exp(np.log(diags).mean(axis=0)), rtol=1e-7)


def test_geometric_mean_warns_when_not_converged():
    mats = [np.diag([1.0, 100.0]), np.diag([100.0, 1.0]), np.array([[5.0, 4.0], [4.0, 5.0]])]
    with pytest.warns(UserWarning, match="Maximum number of iterations 1"):
        geometric_mean(mats, max_iter=1)
