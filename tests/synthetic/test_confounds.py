"""Unit tests of bids_regionx.synthetic.confounds (the fMRIPrep confound measures)."""

from __future__ import annotations

import numpy as np
import pytest

from bids_regionx.synthetic import confounds as cf


def test_framewise_displacement_power_formula():
    params = np.zeros((3, 6))
    params[1, 0] = 0.3  # 0.3 mm along x
    params[2, 5] = 0.01  # then 0.01 rad about z: 0.5 mm at 50 mm
    fd = cf.framewise_displacement(params)
    assert np.isnan(fd[0])
    np.testing.assert_allclose(fd[1:], [0.3, 0.3 + 0.5])


def test_rms_displacement():
    params = np.zeros((3, 6))
    params[1, :3] = [3.0, 4.0, 0.0]  # pure translation: RMS = |t|
    params[2, :3] = [3.0, 4.0, 0.0]
    rmsd = cf.rms_displacement(params)
    assert np.isnan(rmsd[0])
    np.testing.assert_allclose(rmsd[1:], [5.0, 0.0], atol=1e-12)
    # A small rotation theta about z at radius R: A has two entries ~theta -> sqrt(2/5) R theta.
    rot = np.zeros((2, 6))
    rot[1, 5] = 1e-4
    np.testing.assert_allclose(cf.rms_displacement(rot)[1], np.sqrt(0.4) * 80 * 1e-4, rtol=1e-3)


def test_simulate_motion_spikes_and_scale():
    rng = np.random.default_rng(0)
    motion = cf.simulate_motion(100, rng=rng, n_spikes=3, first_spike=5)
    assert motion.params.shape == (100, 6) and np.all(motion.params[0] == 0)
    assert len(motion.spikes) == 3 and min(motion.spikes) >= 5 and max(motion.spikes) <= 96
    assert np.all(np.diff(motion.spikes) >= 4)
    fd = cf.framewise_displacement(motion.params)
    for t, back in zip(motion.spikes, motion.transient, strict=True):
        assert fd[t] > 0.8
        assert (fd[t + 1] > 0.8) == back
    calm = cf.simulate_motion(100, rng=np.random.default_rng(0), scale=1.0)
    wild = cf.simulate_motion(100, rng=np.random.default_rng(0), scale=2.0)
    np.testing.assert_allclose(wild.params, 2 * calm.params)
    with pytest.raises(ValueError, match="n_volumes"):
        cf.simulate_motion(1, rng=rng)


@pytest.mark.parametrize(
    ("n", "t_r", "n_dummy", "n_cos"), [(100, 2.0, 0, 2), (60, 2.5, 2, 1), (40, 2.0, 0, 0)]
)
def test_cosine_basis_is_nipype_dct(n, t_r, n_dummy, n_cos):
    basis = cf.cosine_basis(n, t_r=t_r, n_dummy=n_dummy)
    assert basis.shape == (n, n_cos)
    assert np.all(basis[:n_dummy] == 0)
    steady = basis[n_dummy:]
    np.testing.assert_allclose(steady.T @ steady, np.eye(n_cos), atol=1e-12)
    if n_cos:
        m = n - n_dummy
        np.testing.assert_allclose(steady[0, 0], np.sqrt(2 / m) * np.cos(np.pi / m * 0.5))


def test_dvars_of_white_noise_and_a_jump():
    rng = np.random.default_rng(1)
    data = 1000 + rng.standard_normal((500, 80)) * 10
    data[:, 40] += 30  # a transient: the differences into and out of volume 40 jump
    dvars, std = cf.compute_dvars(data)
    assert np.isnan(dvars[0]) and np.isnan(std[0])
    assert abs(np.median(std[1:]) - 1) < 0.1
    assert std[40] > 2 and std[41] > 2 and dvars[40] > 2 * np.median(dvars[1:])


def test_compcor_recovers_a_planted_component_and_pads_dummies():
    rng = np.random.default_rng(2)
    n, v, dummy = 80, 200, 3
    source = np.sin(np.linspace(0, 12 * np.pi, n))
    data = 500 + np.outer(rng.uniform(5, 10, v), source) + rng.standard_normal((v, n))
    cc = cf.compcor(data, t_r=2.0, n_dummy=dummy)
    assert cc.components.shape[0] == n and 1 <= cc.n_retained
    assert np.all(cc.components[:dummy] == 0)
    assert abs(np.corrcoef(cc.components[dummy:, 0], source[dummy:])[0, 1]) > 0.95
    assert np.cumsum(cc.variance_explained)[cc.n_retained - 1] >= 0.5
    assert cf.compcor(data, t_r=2.0, n_components=5).n_retained == 5


def test_expand_and_spike_regressors():
    cols = cf.expand("csf", np.array([1.0, 3.0, 2.0]))
    assert list(cols) == ["csf", "csf_derivative1", "csf_derivative1_power2", "csf_power2"]
    np.testing.assert_array_equal(cols["csf_derivative1"][1:], [2.0, -1.0])
    assert np.isnan(cols["csf_derivative1_power2"][0])
    spikes = cf.spike_regressors(
        np.array([np.nan, 0.1, 0.7, 0.1]), np.array([np.nan, 2.0, 1.0, 1.0])
    )
    assert list(spikes) == ["motion_outlier00", "motion_outlier01"]
    assert [int(np.flatnonzero(c)[0]) for c in spikes.values()] == [1, 2]


@pytest.mark.parametrize(
    ("version", "flavour"),
    [
        ("1.4.1", "1.4"),
        ("20.1.0", "1.4"),
        ("20.2.7", "20.2"),
        ("21.0.0", "modern"),
        ("24.1.1", "modern"),
    ],
)
def test_flavour_for(version, flavour):
    assert cf.flavour_for(version) == flavour


def test_confounds_table_tsv_format():
    table = cf.ConfoundsTable(columns={"a": np.array([np.nan, 0.5]), "b": np.array([1.0, 2e-7])})
    assert table.to_tsv() == "a\tb\nn/a\t1.0\n0.5\t2e-07\n"
